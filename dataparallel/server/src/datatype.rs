//! The Open Inference Protocol's tensor datatypes (`FP32`, `INT64`, ...) and how each maps to
//! the engine's dtypes and to JSON numbers.

use neuron_rt::DType;
use serde_json::Value;

/// A protocol datatype the server can carry: every fixed-size numeric type of the protocol.
/// (`BOOL` and `BYTES` have no engine dtype, so no model tensor has them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datatype {
    Fp32,
    Fp16,
    Bf16,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
}

impl Datatype {
    /// The protocol datatype that carries a model tensor of `dtype`: its bytes, element for
    /// element. `None` for the hardware-only 8-bit floats, which the protocol has no name for.
    pub(crate) fn of(dtype: DType) -> Option<Datatype> {
        Some(match dtype {
            // FP32R is stored as float32.
            DType::Float32 | DType::Fp32R => Datatype::Fp32,
            DType::Float16 => Datatype::Fp16,
            DType::BFloat16 => Datatype::Bf16,
            DType::Int8 => Datatype::Int8,
            DType::UInt8 => Datatype::Uint8,
            DType::Int16 => Datatype::Int16,
            DType::UInt16 => Datatype::Uint16,
            DType::Int32 => Datatype::Int32,
            DType::UInt32 => Datatype::Uint32,
            DType::Int64 => Datatype::Int64,
            DType::UInt64 => Datatype::Uint64,
            _ => return None,
        })
    }

    /// The protocol's name: `FP32`, `UINT8`, ...
    pub(crate) fn name(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Fp16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::Int8 => "INT8",
            Datatype::Uint8 => "UINT8",
            Datatype::Int16 => "INT16",
            Datatype::Uint16 => "UINT16",
            Datatype::Int32 => "INT32",
            Datatype::Uint32 => "UINT32",
            Datatype::Int64 => "INT64",
            Datatype::Uint64 => "UINT64",
        }
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Datatype::Int8 | Datatype::Uint8 => 1,
            Datatype::Fp16 | Datatype::Bf16 | Datatype::Int16 | Datatype::Uint16 => 2,
            Datatype::Fp32 | Datatype::Int32 | Datatype::Uint32 => 4,
            Datatype::Int64 | Datatype::Uint64 => 8,
        }
    }

    /// Appends one JSON number as this datatype's little-endian bytes. Floats take any JSON
    /// number (rounded to the type); integers take integral numbers in range only.
    pub(crate) fn push(self, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let float = || {
            value
                .as_f64()
                .ok_or_else(|| format!("{value} is not a number"))
        };
        let int = |min: i64, max: u64| -> Result<i128, String> {
            let n = value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from))
                .ok_or_else(|| format!("{value} is not an integer"))?;
            if n < i128::from(min) || n > i128::from(max) {
                return Err(format!("{n} is out of range for {}", self.name()));
            }
            Ok(n)
        };
        // Each cast below is exact: `int` checked the range.
        match self {
            Datatype::Fp32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
            Datatype::Fp16 => {
                out.extend_from_slice(&half::f16::from_f64(float()?).to_le_bytes());
            }
            Datatype::Bf16 => {
                out.extend_from_slice(&half::bf16::from_f64(float()?).to_le_bytes());
            }
            Datatype::Int8 => out.push((int(-128, 127)? as i8) as u8),
            Datatype::Uint8 => out.push(int(0, 255)? as u8),
            Datatype::Int16 => {
                out.extend_from_slice(&(int(i16::MIN.into(), 32767)? as i16).to_le_bytes());
            }
            Datatype::Uint16 => out.extend_from_slice(&(int(0, 65535)? as u16).to_le_bytes()),
            Datatype::Int32 => out
                .extend_from_slice(&(int(i32::MIN.into(), i32::MAX as u64)? as i32).to_le_bytes()),
            Datatype::Uint32 => {
                out.extend_from_slice(&(int(0, u32::MAX.into())? as u32).to_le_bytes());
            }
            Datatype::Int64 => {
                out.extend_from_slice(&(int(i64::MIN, i64::MAX as u64)? as i64).to_le_bytes());
            }
            Datatype::Uint64 => out.extend_from_slice(&(int(0, u64::MAX)? as u64).to_le_bytes()),
        }
        Ok(())
    }

    /// The elements of `bytes` (little-endian, a whole number of elements) as JSON numbers.
    /// A float that JSON cannot hold (NaN, ±infinity) becomes `null`; ask for the output as
    /// binary data to get its bits.
    pub(crate) fn to_json(self, bytes: &[u8]) -> Vec<Value> {
        let chunks = bytes.chunks_exact(self.size());
        let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
        match self {
            Datatype::Fp32 => chunks
                .map(|c| float(f64::from(f32::from_le_bytes(array(c)))))
                .collect(),
            Datatype::Fp16 => chunks
                .map(|c| float(half::f16::from_le_bytes(array(c)).to_f64()))
                .collect(),
            Datatype::Bf16 => chunks
                .map(|c| float(half::bf16::from_le_bytes(array(c)).to_f64()))
                .collect(),
            Datatype::Int8 => chunks.map(|c| Value::from(c[0] as i8)).collect(),
            Datatype::Uint8 => chunks.map(|c| Value::from(c[0])).collect(),
            Datatype::Int16 => chunks
                .map(|c| Value::from(i16::from_le_bytes(array(c))))
                .collect(),
            Datatype::Uint16 => chunks
                .map(|c| Value::from(u16::from_le_bytes(array(c))))
                .collect(),
            Datatype::Int32 => chunks
                .map(|c| Value::from(i32::from_le_bytes(array(c))))
                .collect(),
            Datatype::Uint32 => chunks
                .map(|c| Value::from(u32::from_le_bytes(array(c))))
                .collect(),
            Datatype::Int64 => chunks
                .map(|c| Value::from(i64::from_le_bytes(array(c))))
                .collect(),
            Datatype::Uint64 => chunks
                .map(|c| Value::from(u64::from_le_bytes(array(c))))
                .collect(),
        }
    }
}

/// The first `N` bytes of `chunk` (`chunks_exact` of the element size gives exactly `N`).
fn array<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&chunk[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_ranges() {
        let mut bytes = Vec::new();
        Datatype::Int8.push(&Value::from(-128), &mut bytes).unwrap();
        Datatype::Int8.push(&Value::from(127), &mut bytes).unwrap();
        assert_eq!(
            Datatype::Int8.to_json(&bytes),
            [Value::from(-128), Value::from(127)]
        );
        assert!(Datatype::Int8.push(&Value::from(128), &mut bytes).is_err());
        assert!(Datatype::Uint8.push(&Value::from(-1), &mut bytes).is_err());
        assert!(Datatype::Int32.push(&Value::from(1.5), &mut bytes).is_err());
        assert!(Datatype::Fp32.push(&Value::from("1"), &mut bytes).is_err());

        let mut bytes = Vec::new();
        Datatype::Uint64
            .push(&Value::from(u64::MAX), &mut bytes)
            .unwrap();
        assert_eq!(Datatype::Uint64.to_json(&bytes), [Value::from(u64::MAX)]);

        let mut bytes = Vec::new();
        for v in [1.5, -0.25, 3.0] {
            Datatype::Bf16.push(&Value::from(v), &mut bytes).unwrap();
        }
        assert_eq!(
            Datatype::Bf16.to_json(&bytes),
            [Value::from(1.5), Value::from(-0.25), Value::from(3.0)]
        );
        assert_eq!(
            Datatype::Fp32.to_json(&f32::NAN.to_le_bytes()),
            [Value::Null]
        );
    }
}
