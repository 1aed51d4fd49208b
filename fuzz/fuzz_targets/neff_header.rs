//! NEFF header parser (`neuron_rt::NeffHeader::parse`, `Neff::from_bytes`): never panics on
//! any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuron_rt::{Neff, NeffHeader};

fuzz_target!(|data: &[u8]| {
    let full = NeffHeader::parse(data);
    let header_only = NeffHeader::parse_header_only(data);
    if full.is_ok() {
        assert!(
            header_only.is_ok(),
            "the header alone must parse when the file does"
        );
    }
    if let Ok(header) = &full {
        let _ = (
            header.is_mock(),
            header.is_compressed(),
            header.uuid_string(),
        );
    }
    if let Ok(neff) = Neff::from_bytes(data.to_vec()) {
        assert!(full.is_ok());
        let _ = (neff.name(), neff.payload().len(), neff.is_mock());
    }
});
