//! Device-id parsers (`nc:N`, plain integers, lists): never panic; accepted ids validate
//! against a visible-core count exactly when every id is below it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuron_rt::{DeviceId, DeviceIds};

fuzz_target!(|data: &[u8]| {
    // First byte: the visible-core count; the rest: a list string, and also i64 indices.
    let (visible, rest) = match data {
        [v, rest @ ..] => (u32::from(*v), rest),
        [] => return,
    };
    let indices: Vec<i64> = rest
        .chunks_exact(8)
        .take(16)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if let Ok(ids) = DeviceIds::from_indices(&indices) {
        assert_eq!(ids.len(), indices.len());
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = text.parse::<DeviceId>();
    if let Ok(ids) = DeviceIds::parse_list(text) {
        assert!(!ids.is_empty(), "accepted an empty list: {text:?}");
        let all_below = ids.iter().all(|id| id.index() < visible);
        // The Display form parses back to the same ids.
        let shown = ids.to_string();
        if let Ok(again) = DeviceIds::parse_list(&shown) {
            assert_eq!(again, ids, "{text:?} -> {shown:?}");
        }
        assert_eq!(
            ids.validate(visible).is_ok(),
            all_below,
            "{text:?} with {visible}"
        );
    }
});
