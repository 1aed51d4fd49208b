//! The `.npy` reader (`neuron_dp_cli::npy::read_from`) on arbitrary bytes: it must never
//! panic or allocate more than the input holds, an accepted array's data must be exactly
//! what its dtype and shape say (and come from the input), and every refusal is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuron_dp_cli::npy;

fuzz_target!(|data: &[u8]| {
    match npy::read_from(data, data.len() as u64, "\"fuzz.npy\"") {
        Ok(array) => {
            let len = array
                .shape
                .iter()
                .try_fold(array.dtype.size_bytes(), |acc, &d| acc.checked_mul(d))
                .expect("an accepted shape's byte count fits");
            assert_eq!(array.data.bytes().len(), len);
            assert!(
                len <= data.len(),
                "{len} data bytes from {} input bytes",
                data.len()
            );
        }
        Err(message) => {
            assert!(!message.contains(['\n', '\r']), "multi-line: {message}");
            // The header is at most 10 000 bytes; a message quotes at most a short prefix.
            assert!(message.len() < 1024, "{} bytes: {message}", message.len());
            assert!(message.starts_with("\"fuzz.npy\""), "{message}");
        }
    }
});
