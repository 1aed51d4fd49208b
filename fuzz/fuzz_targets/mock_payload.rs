//! The mock's NEFF parser (`nrt_mock::neff::MockModel::from_neff_bytes`): never panics, and
//! what it accepts survives a write/parse round trip.
//!
//! Raw bytes rarely get past the 1024-byte header, so input that starts with `{` is taken as
//! a JSON payload and wrapped in a valid mock header named `m`; anything else is parsed as a
//! whole file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nrt_mock::neff::{MockModel, container};

fuzz_target!(|data: &[u8]| {
    let bytes = if data.starts_with(b"{") {
        // The header name must match the payload's: the seeds use `m`.
        container("m", data)
    } else {
        data.to_vec()
    };
    let Ok(model) = MockModel::from_neff_bytes(&bytes) else {
        return;
    };
    model.validate().expect("accepted models are valid");
    let again = MockModel::from_neff_bytes(&model.to_neff_bytes()).expect("round trip parses");
    assert_eq!(again, model);
});
