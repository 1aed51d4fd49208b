//! Element types of model tensors, and libnrt's two numeric encodings of them.
//!
//! This module owns [`DType`] (names, sizes, parsing) and the translation to and from
//! `nrt_dtype_t` under a [`DTypeEncoding`].

use std::fmt;
use std::str::FromStr;

use neuron_sys::bindings as b;

/// The element type of a tensor.
///
/// Names follow numpy's spelling (`float32`, `bfloat16`, `uint8`, ...); the types libnrt
/// added later (`fp32r`, `fp8_e3`, `fp8_e4`, `fp8_e5`) use libnrt's names in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    Float32,
    /// IEEE 754 binary16.
    Float16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    BFloat16,
    /// Signed 8-bit integer.
    Int8,
    /// Unsigned 8-bit integer.
    UInt8,
    /// Signed 16-bit integer.
    Int16,
    /// Unsigned 16-bit integer.
    UInt16,
    /// Signed 32-bit integer.
    Int32,
    /// Unsigned 32-bit integer.
    UInt32,
    /// Signed 64-bit integer.
    Int64,
    /// Unsigned 64-bit integer.
    UInt64,
    /// libnrt's `FP32R`: a 32-bit float stored as float32 (hardware encoding only).
    Fp32R,
    /// libnrt's `FP8_E3`: 8-bit float with a 3-bit exponent (hardware encoding only).
    Fp8E3,
    /// libnrt's `FP8_E4`: 8-bit float with a 4-bit exponent (hardware encoding only).
    Fp8E4,
    /// libnrt's `FP8_E5`: 8-bit float with a 5-bit exponent (hardware encoding only).
    Fp8E5,
}

/// A dtype name [`DType::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dtype {input:?}: expected one of float32, float16, bfloat16, int8, uint8, int16, \
     uint16, int32, uint32, int64, uint64, fp32r, fp8_e3, fp8_e4, fp8_e5 (or f32, f16, bf16, \
     i8, u8, i16, u16, i32, u32, i64, u64)"
)]
#[non_exhaustive]
pub struct UnknownDType {
    /// The name given.
    pub input: String,
}

/// How a libnrt build numbers `nrt_dtype_t` (ARCHITECTURE.md, "Dtype encodings").
///
/// libnrt has used two incompatible numberings:
///
/// - [`DTypeEncoding::Sequential`] (column A): `FLOAT32 = 1, FLOAT16 = 2, ... UINT64 = 11`,
///   from the old `nrt_experimental.h`; assumed for runtimes before 2.30.
/// - [`DTypeEncoding::Hardware`] (column B): the current `nrt.h` numbering (`FLOAT32 = 10`,
///   `UINT64 = 1`, FP8 types at 13-15), used by runtime 2.30 and later and by the mock. Its
///   values are neuron-sys's `NRT_DTYPE_*` constants.
///
/// The same number means different types in the two (10 is INT64 in A and FLOAT32 in B), so
/// the encoding is chosen from the runtime version with [`DTypeEncoding::for_runtime`]. libnrt
/// also reports some dtypes wrongly (FP8 as int8, some outputs without one), so treat a
/// reported dtype as advisory and size buffers from the tensor's byte size.
///
/// ```
/// use neuron_rt::{DType, DTypeEncoding};
///
/// let enc = DTypeEncoding::for_runtime(2, 30);
/// assert_eq!(enc, DTypeEncoding::Hardware);
/// assert_eq!(DType::from_nrt(10, enc), Some(DType::Float32));
/// assert_eq!(DType::from_nrt(10, DTypeEncoding::Sequential), Some(DType::Int64));
/// assert_eq!("bfloat16".parse::<DType>()?.size_bytes(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DTypeEncoding {
    /// Column A: `FLOAT32 = 1` ... `UINT64 = 11`, no FP32R/FP8 (runtimes before 2.30).
    Sequential,
    /// Column B: neuron-sys's `NRT_DTYPE_*` values (runtime 2.30 and later, and the mock).
    Hardware,
}

impl DTypeEncoding {
    /// The encoding a runtime of version `major.minor` uses: [`DTypeEncoding::Hardware`]
    /// from 2.30 on, [`DTypeEncoding::Sequential`] before.
    ///
    /// ```
    /// use neuron_rt::DTypeEncoding;
    ///
    /// assert_eq!(DTypeEncoding::for_runtime(2, 29), DTypeEncoding::Sequential);
    /// assert_eq!(DTypeEncoding::for_runtime(2, 31), DTypeEncoding::Hardware);
    /// assert_eq!(DTypeEncoding::for_runtime(3, 0), DTypeEncoding::Hardware);
    /// ```
    pub fn for_runtime(major: u64, minor: u64) -> Self {
        if (major, minor) >= (2, 30) {
            Self::Hardware
        } else {
            Self::Sequential
        }
    }
}

/// Every dtype with its name, short alias, size, column-A code (0 = none), column-B code.
const TABLE: [(DType, &str, &str, usize, u32, u32); 15] = [
    (DType::Float32, "float32", "f32", 4, 1, b::NRT_DTYPE_FLOAT32),
    (DType::Float16, "float16", "f16", 2, 2, b::NRT_DTYPE_FLOAT16),
    (
        DType::BFloat16,
        "bfloat16",
        "bf16",
        2,
        3,
        b::NRT_DTYPE_BFLOAT16,
    ),
    (DType::Int8, "int8", "i8", 1, 4, b::NRT_DTYPE_INT8),
    (DType::UInt8, "uint8", "u8", 1, 5, b::NRT_DTYPE_UINT8),
    (DType::Int16, "int16", "i16", 2, 6, b::NRT_DTYPE_INT16),
    (DType::UInt16, "uint16", "u16", 2, 7, b::NRT_DTYPE_UINT16),
    (DType::Int32, "int32", "i32", 4, 8, b::NRT_DTYPE_INT32),
    (DType::UInt32, "uint32", "u32", 4, 9, b::NRT_DTYPE_UINT32),
    (DType::Int64, "int64", "i64", 8, 10, b::NRT_DTYPE_INT64),
    (DType::UInt64, "uint64", "u64", 8, 11, b::NRT_DTYPE_UINT64),
    (DType::Fp32R, "fp32r", "fp32r", 4, 0, b::NRT_DTYPE_FP32R),
    (DType::Fp8E3, "fp8_e3", "fp8_e3", 1, 0, b::NRT_DTYPE_FP8_E3),
    (DType::Fp8E4, "fp8_e4", "fp8_e4", 1, 0, b::NRT_DTYPE_FP8_E4),
    (DType::Fp8E5, "fp8_e5", "fp8_e5", 1, 0, b::NRT_DTYPE_FP8_E5),
];

/// `NRT_DTYPE_UNKNOWN`, 0 in both encodings.
const UNKNOWN: u32 = b::NRT_DTYPE_UNKNOWN;

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 15] = [
        DType::Float32,
        DType::Float16,
        DType::BFloat16,
        DType::Int8,
        DType::UInt8,
        DType::Int16,
        DType::UInt16,
        DType::Int32,
        DType::UInt32,
        DType::Int64,
        DType::UInt64,
        DType::Fp32R,
        DType::Fp8E3,
        DType::Fp8E4,
        DType::Fp8E5,
    ];

    fn row(self) -> (DType, &'static str, &'static str, usize, u32, u32) {
        // `TABLE` lists every variant, so the search always succeeds; the fallback only keeps
        // this total without a panic path.
        TABLE
            .iter()
            .copied()
            .find(|row| row.0 == self)
            .unwrap_or((self, "unknown", "unknown", 0, UNKNOWN, UNKNOWN))
    }

    /// Bytes per element.
    ///
    /// ```
    /// use neuron_rt::DType;
    ///
    /// assert_eq!(DType::Float32.size_bytes(), 4);
    /// assert_eq!(DType::BFloat16.size_bytes(), 2);
    /// assert_eq!(DType::Fp8E4.size_bytes(), 1);
    /// ```
    pub fn size_bytes(self) -> usize {
        self.row().3
    }

    /// The canonical lower-case name (`float32`, `bfloat16`, `uint8`, `fp8_e4`, ...).
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Whether this is a floating-point type (including bfloat16, fp32r and the FP8 types).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::Float32
                | DType::Float16
                | DType::BFloat16
                | DType::Fp32R
                | DType::Fp8E3
                | DType::Fp8E4
                | DType::Fp8E5
        )
    }

    /// The dtype a libnrt `nrt_dtype_t` value means in `encoding`; `None` for
    /// `NRT_DTYPE_UNKNOWN` (0) and for values the encoding does not define.
    ///
    /// ```
    /// use neuron_rt::{DType, DTypeEncoding};
    ///
    /// assert_eq!(DType::from_nrt(1, DTypeEncoding::Sequential), Some(DType::Float32));
    /// assert_eq!(DType::from_nrt(1, DTypeEncoding::Hardware), Some(DType::UInt64));
    /// assert_eq!(DType::from_nrt(0, DTypeEncoding::Hardware), None);
    /// assert_eq!(DType::from_nrt(13, DTypeEncoding::Sequential), None);
    /// ```
    pub fn from_nrt(code: u32, encoding: DTypeEncoding) -> Option<DType> {
        if code == UNKNOWN {
            return None;
        }
        TABLE
            .iter()
            .find(|row| match encoding {
                DTypeEncoding::Sequential => row.4 == code,
                DTypeEncoding::Hardware => row.5 == code,
            })
            .map(|row| row.0)
    }

    /// The `nrt_dtype_t` value for this dtype in `encoding`, or `None` if the encoding has
    /// none (FP32R and the FP8 types in [`DTypeEncoding::Sequential`]).
    pub fn try_to_nrt(self, encoding: DTypeEncoding) -> Option<u32> {
        let row = self.row();
        let code = match encoding {
            DTypeEncoding::Sequential => row.4,
            DTypeEncoding::Hardware => row.5,
        };
        (code != UNKNOWN).then_some(code)
    }

    /// The `nrt_dtype_t` value for this dtype in `encoding`; `NRT_DTYPE_UNKNOWN` (0) when the
    /// encoding has none (FP32R and the FP8 types in [`DTypeEncoding::Sequential`]). Use
    /// [`DType::try_to_nrt`] to tell that case apart.
    ///
    /// ```
    /// use neuron_rt::{DType, DTypeEncoding};
    ///
    /// assert_eq!(DType::Float32.to_nrt(DTypeEncoding::Hardware), 10);
    /// assert_eq!(DType::Float32.to_nrt(DTypeEncoding::Sequential), 1);
    /// assert_eq!(DType::Fp8E4.to_nrt(DTypeEncoding::Sequential), 0);
    /// ```
    pub fn to_nrt(self, encoding: DTypeEncoding) -> u32 {
        self.try_to_nrt(encoding).unwrap_or(UNKNOWN)
    }
}

/// The dtype of a model tensor whose libnrt code is `code`, checked against what the tensor's
/// byte `size` and `shape` say (ARCHITECTURE.md, "Dtype encodings").
///
/// The size and shape are what the runtime allocates and checks, so they win: the code is
/// decoded with `encoding`; if that dtype's element size does not fit `size` and `shape`, the
/// other encoding is tried; if neither fits (or the code is unknown in both), the result is
/// `None`, and callers infer the element size from `size / elements` and accept any dtype of
/// that size. The second element says whether the code disagreed with the size (so the caller
/// can say so, once). A scalar or empty shape cannot disagree.
///
/// ```
/// use neuron_rt::{DType, DTypeEncoding, dtype::resolve};
///
/// // float32 [2, 3] in the newer numbering, decoded as the runtime's version says.
/// assert_eq!(resolve(10, DTypeEncoding::Hardware, 24, &[2, 3]), (Some(DType::Float32), false));
/// // The same code from a runtime whose version implies the older numbering (INT64 there):
/// // 8-byte elements do not fit 24 bytes, float32 in the other numbering does.
/// assert_eq!(resolve(10, DTypeEncoding::Sequential, 24, &[2, 3]), (Some(DType::Float32), true));
/// // Unknown code: left to the size (4-byte elements).
/// assert_eq!(resolve(0, DTypeEncoding::Hardware, 24, &[2, 3]), (None, false));
/// ```
pub fn resolve(
    code: u32,
    encoding: DTypeEncoding,
    size: usize,
    shape: &[usize],
) -> (Option<DType>, bool) {
    let decoded = DType::from_nrt(code, encoding);
    let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let fits = |d: DType| match elements {
        Some(0) | None => true,
        Some(n) => n.checked_mul(d.size_bytes()) == Some(size),
    };
    match decoded {
        None => (None, false),
        Some(d) if fits(d) => (Some(d), false),
        Some(_) => {
            let other = match encoding {
                DTypeEncoding::Sequential => DTypeEncoding::Hardware,
                DTypeEncoding::Hardware => DTypeEncoding::Sequential,
            };
            (DType::from_nrt(code, other).filter(|&d| fits(d)), true)
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a canonical name (`float32`) or a Rust-style alias (`f32`, `bf16`, `u8`); exact,
/// lower-case.
impl FromStr for DType {
    type Err = UnknownDType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TABLE
            .iter()
            .find(|row| row.1 == s || row.2 == s)
            .map(|row| row.0)
            .ok_or_else(|| UnknownDType {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_is_complete_and_consistent() {
        assert_eq!(TABLE.len(), DType::ALL.len());
        for (row, &d) in TABLE.iter().zip(DType::ALL.iter()) {
            assert_eq!(row.0, d);
            assert!(d.size_bytes() > 0);
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            assert_eq!(row.2.parse::<DType>().unwrap(), d);
            assert_eq!(d.to_string(), d.name());
            let hw = d.to_nrt(DTypeEncoding::Hardware);
            assert_eq!(DType::from_nrt(hw, DTypeEncoding::Hardware), Some(d));
            if let Some(a) = d.try_to_nrt(DTypeEncoding::Sequential) {
                assert_eq!(DType::from_nrt(a, DTypeEncoding::Sequential), Some(d));
            }
        }
    }

    #[test]
    fn encodings_match_reference_table() {
        // (old, new) pairs from ARCHITECTURE.md, "Dtype encodings".
        let expected = [
            (DType::Float32, Some(1), 0xA),
            (DType::Float16, Some(2), 0x7),
            (DType::BFloat16, Some(3), 0x6),
            (DType::Int8, Some(4), 0x2),
            (DType::UInt8, Some(5), 0x3),
            (DType::Int16, Some(6), 0x4),
            (DType::UInt16, Some(7), 0x5),
            (DType::Int32, Some(8), 0x8),
            (DType::UInt32, Some(9), 0x9),
            (DType::Int64, Some(10), 0xC),
            (DType::UInt64, Some(11), 0x1),
            (DType::Fp32R, None, 0xB),
            (DType::Fp8E3, None, 0xD),
            (DType::Fp8E4, None, 0xE),
            (DType::Fp8E5, None, 0xF),
        ];
        for (d, a, hw) in expected {
            assert_eq!(d.try_to_nrt(DTypeEncoding::Sequential), a, "{d}");
            assert_eq!(d.to_nrt(DTypeEncoding::Sequential), a.unwrap_or(0), "{d}");
            assert_eq!(d.to_nrt(DTypeEncoding::Hardware), hw, "{d}");
        }
        for code in [0, 12, 13, 16, u32::MAX] {
            assert_eq!(DType::from_nrt(code, DTypeEncoding::Sequential), None);
        }
        for code in [0, 16, u32::MAX] {
            assert_eq!(DType::from_nrt(code, DTypeEncoding::Hardware), None);
        }
    }

    #[test]
    fn runtime_version_picks_encoding() {
        assert_eq!(DTypeEncoding::for_runtime(2, 30), DTypeEncoding::Hardware);
        assert_eq!(DTypeEncoding::for_runtime(2, 29), DTypeEncoding::Sequential);
        assert_eq!(DTypeEncoding::for_runtime(1, 99), DTypeEncoding::Sequential);
        assert_eq!(DTypeEncoding::for_runtime(3, 0), DTypeEncoding::Hardware);
    }

    #[test]
    fn sizes_and_names() {
        let sizes: Vec<(&str, usize)> = DType::ALL
            .iter()
            .map(|d| (d.name(), d.size_bytes()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("float32", 4),
                ("float16", 2),
                ("bfloat16", 2),
                ("int8", 1),
                ("uint8", 1),
                ("int16", 2),
                ("uint16", 2),
                ("int32", 4),
                ("uint32", 4),
                ("int64", 8),
                ("uint64", 8),
                ("fp32r", 4),
                ("fp8_e3", 1),
                ("fp8_e4", 1),
                ("fp8_e5", 1),
            ]
        );
        assert!(DType::BFloat16.is_float());
        assert!(!DType::UInt8.is_float());
    }

    #[test]
    fn rejects_unknown_names() {
        for bad in ["", "Float32", "float", "float64", " f32", "int"] {
            let m = bad.parse::<DType>().unwrap_err().to_string();
            assert!(m.contains(&format!("unknown dtype {bad:?}")), "{m}");
            assert!(m.contains("float32, float16, bfloat16"), "{m}");
        }
    }

    #[test]
    fn resolve_trusts_size_and_shape() {
        use DTypeEncoding::{Hardware, Sequential};
        // Consistent codes in either numbering are kept as decoded.
        assert_eq!(
            resolve(1, Sequential, 32, &[8]),
            (Some(DType::Float32), false)
        );
        assert_eq!(resolve(12, Hardware, 64, &[8]), (Some(DType::Int64), false));
        // Codes in the other numbering than the version's are recognised by their size.
        assert_eq!(resolve(1, Hardware, 32, &[8]), (Some(DType::Float32), true));
        assert_eq!(resolve(2, Sequential, 8, &[8]), (Some(DType::Int8), true));
        // A code that fits neither numbering leaves the dtype to the size.
        assert_eq!(resolve(1, Sequential, 24, &[8]), (None, true));
        assert_eq!(resolve(99, Hardware, 24, &[8]), (None, false));
        // Scalars, empty and overflowing shapes cannot disagree.
        assert_eq!(resolve(10, Hardware, 4, &[]), (Some(DType::Float32), false));
        assert_eq!(
            resolve(10, Hardware, 0, &[0, 3]),
            (Some(DType::Float32), false)
        );
        assert_eq!(
            resolve(10, Hardware, 4, &[usize::MAX, 2]),
            (Some(DType::Float32), false)
        );
    }

    proptest! {
        #[test]
        fn resolved_dtypes_fit_the_size(code in 0u32..20, n in 1usize..64, elem in 1usize..9) {
            for enc in [DTypeEncoding::Sequential, DTypeEncoding::Hardware] {
                if let (Some(d), _) = resolve(code, enc, n * elem, &[n]) {
                    prop_assert_eq!(d.size_bytes(), elem);
                }
            }
        }

        #[test]
        fn never_panics(s in ".{0,12}", code in any::<u32>()) {
            let _ = s.parse::<DType>();
            for enc in [DTypeEncoding::Sequential, DTypeEncoding::Hardware] {
                if let Some(d) = DType::from_nrt(code, enc) {
                    prop_assert_eq!(d.to_nrt(enc), code);
                }
            }
        }
    }
}
