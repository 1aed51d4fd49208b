//! `NEURON_RT_VISIBLE_CORES` parser: never panics; what it accepts is a consistent
//! logical <-> physical mapping inside the instance.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuron_rt::VisibleCores;

fuzz_target!(|data: &[u8]| {
    // First two bytes: the instance's core count (0..=65535); the rest: the variable.
    let (total, text) = match data {
        [a, b, rest @ ..] => (u32::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (24, data),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(cores) = VisibleCores::parse(text, total) else {
        return;
    };
    assert!(!cores.is_empty(), "accepted an empty set: {text:?}");
    assert!(
        cores.len() <= total,
        "{text:?}: {} cores of {total}",
        cores.len()
    );
    let mut previous = None;
    for (logical, physical) in cores.iter().enumerate() {
        let logical = u32::try_from(logical).expect("fewer than 2^32 cores");
        assert!(physical < total, "{text:?}: physical {physical} of {total}");
        assert!(previous < Some(physical), "{text:?}: physical order");
        previous = Some(physical);
        assert_eq!(cores.physical(logical), Some(physical));
        assert_eq!(cores.logical(physical), Some(logical));
        assert!(cores.contains(physical));
    }
    assert_eq!(cores.physical(cores.len()), None);
});
