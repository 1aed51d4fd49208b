//! The libnrt version the mock reports, and the older runtimes' behaviour it reproduces.
//!
//! This module owns `NRT_MOCK_RUNTIME_VERSION` (the version `nrt_get_version` reports,
//! default 2.30.50.0), `NRT_MOCK_DTYPE_ENCODING` (the `nrt_dtype_t` numbering of tensor infos:
//! by default the one the version implies, ARCHITECTURE.md "Dtype encodings") and
//! `NRT_MOCK_STRICT_INIT` (refuse `nrt_get_version` before `nrt_init`, as only the core-count
//! queries are documented as usable then). All are read from the environment when used, so a
//! re-init after `nrt_close` sees new values.

use neuron_sys::bindings::nrt_dtype_t;

use crate::neff::DType;

/// The version the mock reports unless `NRT_MOCK_RUNTIME_VERSION` says otherwise.
pub(crate) const DEFAULT: Version = Version(2, 30, 50, 0);

/// A runtime version, `major.minor.patch.maintenance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
);

/// `NRT_MOCK_RUNTIME_VERSION` (`2.29.0` or `2.29.0.0`), default [`DEFAULT`].
pub(crate) fn reported() -> Result<Version, String> {
    let Ok(text) = std::env::var("NRT_MOCK_RUNTIME_VERSION") else {
        return Ok(DEFAULT);
    };
    let parts: Vec<Option<u64>> = text.trim().split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok(Version(*a, *b, *c, 0)),
        [Some(a), Some(b), Some(c), Some(d)] => Ok(Version(*a, *b, *c, *d)),
        _ => Err(format!(
            "NRT_MOCK_RUNTIME_VERSION={text:?} is not a version such as 2.29.0 or 2.30.50.0"
        )),
    }
}

/// How tensor infos number dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `FLOAT32 = 1` ... `UINT64 = 11` (runtimes before 2.30).
    Sequential,
    /// neuron-sys's `NRT_DTYPE_*` values (runtime 2.30 and later).
    Hardware,
    /// Every dtype reported as `NRT_DTYPE_UNKNOWN` (0).
    Unknown,
}

/// `NRT_MOCK_DTYPE_ENCODING` (`sequential`, `hardware`, `unknown`), else the one `version`
/// implies.
pub(crate) fn dtype_encoding(version: Version) -> Result<Encoding, String> {
    match std::env::var("NRT_MOCK_DTYPE_ENCODING").as_deref() {
        Err(_) if version < Version(2, 30, 0, 0) => Ok(Encoding::Sequential),
        Err(_) => Ok(Encoding::Hardware),
        Ok("sequential") => Ok(Encoding::Sequential),
        Ok("hardware") => Ok(Encoding::Hardware),
        Ok("unknown") => Ok(Encoding::Unknown),
        Ok(other) => Err(format!(
            "NRT_MOCK_DTYPE_ENCODING={other:?} is not one of sequential, hardware, unknown"
        )),
    }
}

/// `NRT_MOCK_MAX_NEFF_MAJOR`: the newest NEFF major version `nrt_load` accepts (default 2).
pub(crate) fn max_neff_major() -> Result<u64, String> {
    match std::env::var("NRT_MOCK_MAX_NEFF_MAJOR") {
        Err(_) => Ok(2),
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            format!("NRT_MOCK_MAX_NEFF_MAJOR={v:?} is not a NEFF major version such as 3")
        }),
    }
}

/// `NRT_MOCK_CONTIGUOUS_CORES` is set to anything but empty or `0`: `nrt_init` refuses a
/// `NEURON_RT_VISIBLE_CORES` set with gaps, as a runtime that enforces the developer guide's
/// contiguous range may.
pub(crate) fn contiguous_cores_only() -> bool {
    std::env::var_os("NRT_MOCK_CONTIGUOUS_CORES").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `NRT_MOCK_STRICT_INIT` is set to anything but empty or `0`.
pub(crate) fn strict_init() -> bool {
    std::env::var_os("NRT_MOCK_STRICT_INIT").is_some_and(|v| !v.is_empty() && v != "0")
}

impl Encoding {
    /// The code of `dtype` in this encoding.
    pub(crate) fn code(self, dtype: DType) -> nrt_dtype_t {
        match self {
            Encoding::Hardware => dtype.nrt_code(),
            Encoding::Unknown => 0,
            Encoding::Sequential => match dtype {
                DType::Float32 => 1,
                DType::Float16 => 2,
                DType::BFloat16 => 3,
                DType::Int8 => 4,
                DType::UInt8 => 5,
                DType::Int16 => 6,
                DType::UInt16 => 7,
                DType::Int32 => 8,
                DType::UInt32 => 9,
                DType::Int64 => 10,
                DType::UInt64 => 11,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_differ_where_the_reference_table_says() {
        assert_eq!(Encoding::Sequential.code(DType::Float32), 1);
        assert_eq!(Encoding::Hardware.code(DType::Float32), 10);
        assert_eq!(Encoding::Sequential.code(DType::Int64), 10);
        assert_eq!(Encoding::Unknown.code(DType::Int64), 0);
        assert!(Version(2, 29, 40, 0) < Version(2, 30, 0, 0));
        assert_eq!(
            dtype_encoding(Version(2, 29, 0, 0)),
            Ok(Encoding::Sequential)
        );
    }
}
