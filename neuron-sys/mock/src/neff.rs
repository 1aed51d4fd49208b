//! Mock NEFF files: the model description the mock runs, and its file format.
//!
//! This module owns the [`MockModel`] description (op, inputs, outputs, simulated timing), its
//! validation rules, and the bytes of a mock NEFF file. Tests, `cargo xtask mock-neff` and the
//! CLI build models here; `nrt_load` parses them here.
//!
//! # File format
//!
//! A mock NEFF is the real NEFF container (ARCHITECTURE.md, "The NEFF container"): a 1024-byte
//! little-endian header followed by the payload. The mock writes and requires
//!
//! | Offset | Field | Value |
//! |---|---|---|
//! | 0 | `pkg_version` (u64) | 1 |
//! | 8 | `header_size` (u64) | 1024 |
//! | 16 | `data_size` (u64) | payload length in bytes |
//! | 24 | `neff_version_major` (u64) | 2 |
//! | 32 | `neff_version_minor` (u64) | 0 |
//! | 40 | `neff_build_version` (128 bytes) | `"nrt-mock <crate version>"`, NUL-padded |
//! | 168 | `num_tpb` (u32) | 1 |
//! | 172 | `hash` (32 bytes) | zero (the mock does not hash) |
//! | 204 | `uuid` (16 bytes) | derived from the name and payload |
//! | 220 | `name` (256 bytes) | the model name, NUL-terminated |
//! | 476 | `requested_tpb_count` (u32) | 1 |
//! | 544 | `feature_bits` (u64) | 0 |
//! | 552 | `lnc_size` (u32) | 1 |
//!
//! A header with `pkg_version` 2, a payload starting with the gzip magic `1f 8b`, or a build
//! version that does not start with `nrt-mock` is a real NEFF and is rejected with "real NEFF:
//! this is the mock runtime". `neff_version_major > 2` (above `NRT_MOCK_MAX_NEFF_MAJOR` when
//! set) is
//! [`NeffError::UnsupportedVersion`] (`NRT_UNSUPPORTED_NEFF_VERSION`); everything else that
//! does not match the table is `NRT_INVALID`. Bytes after `data_size` are ignored.
//!
//! # Payload schema
//!
//! The payload is UTF-8 JSON, one object:
//!
//! ```json
//! {
//!   "format": "nrt-mock-model",
//!   "version": 1,
//!   "name": "affine",
//!   "op": { "kind": "affine", "scale": 2.0, "bias": 0.5 },
//!   "inputs":  [ { "name": "x", "dtype": "float32", "shape": [4, 8] } ],
//!   "outputs": [ { "name": "y", "dtype": "float32", "shape": [4, 8] } ],
//!   "exec_us": 100,
//!   "exec_us_per_row": 10
//! }
//! ```
//!
//! - `format` must be `"nrt-mock-model"` and `version` must be `1`; unknown keys are errors.
//! - `name` equals the header's `name`.
//! - `op` is an object tagged by `kind`: `{"kind":"identity"}`,
//!   `{"kind":"affine","scale":f32,"bias":f32}`, `{"kind":"add"}`,
//!   `{"kind":"rowsum","out_features":u32}`, `{"kind":"core_id"}`.
//! - each tensor is `{name, dtype, shape}`; `dtype` is one of [`DType::name`]; `shape` lists the
//!   dims, dim 0 being the compiled batch (rows).
//! - `exec_us` and `exec_us_per_row` are optional (default 0): simulated device time per
//!   execution and extra time per compiled row (dim 0 of the first input).
//!
//! # Ops
//!
//! Every op is independent per row of dim 0 (see [`Op`] for the exact rules that
//! [`MockModel::validate`] enforces).

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use neuron_sys::bindings::{
    NRT_DTYPE_BFLOAT16, NRT_DTYPE_FLOAT16, NRT_DTYPE_FLOAT32, NRT_DTYPE_INT8, NRT_DTYPE_INT16,
    NRT_DTYPE_INT32, NRT_DTYPE_INT64, NRT_DTYPE_UINT8, NRT_DTYPE_UINT16, NRT_DTYPE_UINT32,
    NRT_DTYPE_UINT64, NRT_INVALID, NRT_STATUS, NRT_UNSUPPORTED_NEFF_VERSION, nrt_dtype_t,
};
use serde::{Deserialize, Serialize};

/// Size of the NEFF container header in bytes.
pub const HEADER_SIZE: usize = 1024;
/// Every mock NEFF's build-version string starts with this.
pub const BUILD_VERSION_PREFIX: &str = "nrt-mock";
/// The `format` value of the JSON payload.
pub const PAYLOAD_FORMAT: &str = "nrt-mock-model";
/// The `version` value of the JSON payload.
pub const PAYLOAD_VERSION: u32 = 1;
/// Longest tensor or model name in bytes (the C field is 256 bytes with the NUL).
pub const MAX_NAME_LEN: usize = 255;

const OFF_PKG_VERSION: usize = 0;
const OFF_HEADER_SIZE: usize = 8;
const OFF_DATA_SIZE: usize = 16;
const OFF_MAJOR: usize = 24;
const OFF_MINOR: usize = 32;
const OFF_BUILD: usize = 40;
const BUILD_LEN: usize = 128;
const OFF_NUM_TPB: usize = 168;
const OFF_UUID: usize = 204;
const OFF_NAME: usize = 220;
const NAME_LEN: usize = 256;
const OFF_REQUESTED_TPB: usize = 476;
const OFF_FEATURE_BITS: usize = 544;
const OFF_LNC_SIZE: usize = 552;

/// Why a NEFF or a model description was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NeffError {
    /// The file is shorter than the 1024-byte header.
    #[error("NEFF is {len} bytes, shorter than the {HEADER_SIZE}-byte header")]
    TooShort {
        /// Length of the rejected bytes.
        len: usize,
    },
    /// A NEFF produced by the Neuron compiler, which the mock cannot run.
    #[error(
        "real NEFF: this is the mock runtime ({reason}); run it on a Neuron host with the \
         real libnrt, or build a mock NEFF with `cargo xtask mock-neff`"
    )]
    RealNeff {
        /// What identified the file as a real NEFF.
        reason: String,
    },
    /// `neff_version_major` is newer than the mock supports.
    #[error("NEFF version {major}.{minor} is not supported: the mock runs NEFF version 2")]
    UnsupportedVersion {
        /// `neff_version_major` from the header.
        major: u64,
        /// `neff_version_minor` from the header.
        minor: u64,
    },
    /// A header field has a value a mock NEFF never has.
    #[error("bad NEFF header: {0}")]
    Header(String),
    /// The payload is not the mock's JSON model description.
    #[error("bad mock NEFF payload: {0}")]
    Payload(String),
    /// The model description breaks an op, shape, dtype or name rule.
    #[error("invalid mock model: {0}")]
    Model(String),
    /// A `name:dtype:d0,d1,...` tensor spec could not be parsed.
    #[error(
        "bad tensor spec {spec:?}: {reason}; expected name:dtype:d0,d1,... (e.g. x:float32:4,8)"
    )]
    TensorSpec {
        /// The text given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl NeffError {
    /// The libnrt status `nrt_load` returns for this error.
    pub fn status(&self) -> NRT_STATUS {
        match self {
            NeffError::UnsupportedVersion { .. } => NRT_UNSUPPORTED_NEFF_VERSION,
            _ => NRT_INVALID,
        }
    }
}

/// An element type of a model tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    Float32,
    /// IEEE 754 binary16.
    Float16,
    /// bfloat16.
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
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 11] = [
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
    ];

    /// The lower-case name used in the JSON payload and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::BFloat16 => "bfloat16",
            DType::Int8 => "int8",
            DType::UInt8 => "uint8",
            DType::Int16 => "int16",
            DType::UInt16 => "uint16",
            DType::Int32 => "int32",
            DType::UInt32 => "uint32",
            DType::Int64 => "int64",
            DType::UInt64 => "uint64",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::Int8 | DType::UInt8 => 1,
            DType::Float16 | DType::BFloat16 | DType::Int16 | DType::UInt16 => 2,
            DType::Float32 | DType::Int32 | DType::UInt32 => 4,
            DType::Int64 | DType::UInt64 => 8,
        }
    }

    /// The `nrt_dtype_t` value in the encoding of runtime 2.30 and later
    /// (the newer numbering: ARCHITECTURE.md, "Dtype encodings"), which the mock reports in tensor infos.
    pub fn nrt_code(self) -> nrt_dtype_t {
        match self {
            DType::Float32 => NRT_DTYPE_FLOAT32,
            DType::Float16 => NRT_DTYPE_FLOAT16,
            DType::BFloat16 => NRT_DTYPE_BFLOAT16,
            DType::Int8 => NRT_DTYPE_INT8,
            DType::UInt8 => NRT_DTYPE_UINT8,
            DType::Int16 => NRT_DTYPE_INT16,
            DType::UInt16 => NRT_DTYPE_UINT16,
            DType::Int32 => NRT_DTYPE_INT32,
            DType::UInt32 => NRT_DTYPE_UINT32,
            DType::Int64 => NRT_DTYPE_INT64,
            DType::UInt64 => NRT_DTYPE_UINT64,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that [`DType::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dtype {0:?}; expected one of float32, float16, bfloat16, int8, uint8, int16, \
     uint16, int32, uint32, int64, uint64"
)]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDType(s.to_owned()))
    }
}

/// What a mock model computes. Every op is independent per row of dim 0, so running a batch
/// split across cores gives the same bytes as running it on one core.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// Output k is a copy of input k: any dtype, same dtype and shape, as many outputs as
    /// inputs (at least one).
    Identity,
    /// Output k = input k * `scale` + `bias` elementwise (two roundings, no fused
    /// multiply-add): float32 only, same shapes, as many outputs as inputs (at least one).
    Affine {
        /// Multiplier.
        scale: f32,
        /// Addend.
        bias: f32,
    },
    /// One float32 output = input 0 + input 1 elementwise; two float32 inputs; all three the
    /// same shape.
    Add,
    /// One float32 input `[b, ...]`, one float32 output `[b, out_features]`:
    /// `out[r][j]` = the sum of the row's flattened elements `x[i]` with
    /// `i % out_features == j`, accumulated in f32 in order of `i`, starting from `0.0`.
    #[serde(rename = "rowsum")]
    RowSum {
        /// Width of the output rows (at least 1).
        out_features: u32,
    },
    /// One input of any dtype `[b, ...]`; one int32 output `[b, 1]` filled with the
    /// **physical** index of the core that ran the execution.
    CoreId,
}

impl Op {
    /// The op's name in the JSON payload (`kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Identity => "identity",
            Op::Affine { .. } => "affine",
            Op::Add => "add",
            Op::RowSum { .. } => "rowsum",
            Op::CoreId => "core_id",
        }
    }
}

/// One model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Name: the tensor-set key callers must use (1..=255 bytes, no NUL).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Dimensions; dim 0 is the compiled batch. At least one dim, every dim at least 1.
    pub shape: Vec<u32>,
}

impl TensorSpec {
    /// A spec from its parts.
    pub fn new(name: impl Into<String>, dtype: DType, shape: &[u32]) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// Parses `name:dtype:d0,d1,...` (the `cargo xtask mock-neff` syntax), e.g. `x:float32:4,8`.
    pub fn parse(spec: &str) -> Result<TensorSpec, NeffError> {
        let err = |reason: &str| NeffError::TensorSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = spec.splitn(3, ':');
        let (Some(name), Some(dtype), Some(dims)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(err("it needs three ':'-separated fields"));
        };
        if name.is_empty() {
            return Err(err("the name is empty"));
        }
        let dtype = DType::from_str(dtype).map_err(|e| err(&e.to_string()))?;
        let shape = dims
            .split(',')
            .map(|d| d.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| err("every dim must be a non-negative integer"))?;
        Ok(TensorSpec::new(name, dtype, &shape))
    }

    /// Number of elements, or `None` on overflow.
    pub fn element_count(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
    }

    /// Size in bytes, or `None` on overflow.
    pub fn size_bytes(&self) -> Option<u64> {
        self.element_count()?
            .checked_mul(self.dtype.size_bytes() as u64)
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(u32::to_string).collect();
        write!(f, "{}:{}:{}", self.name, self.dtype, dims.join(","))
    }
}

/// A mock model: what a mock NEFF describes.
#[derive(Debug, Clone, PartialEq)]
pub struct MockModel {
    /// Model name, also written into the NEFF header (1..=255 bytes, no NUL).
    pub name: String,
    /// What the model computes.
    pub op: Op,
    /// Inputs, in order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in order.
    pub outputs: Vec<TensorSpec>,
    /// Simulated device time per execution, microseconds.
    pub exec_us: u64,
    /// Extra simulated device time per compiled row (dim 0 of the first input), microseconds.
    pub exec_us_per_row: u64,
}

/// The JSON payload on the wire (see the module docs).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    format: String,
    version: u32,
    name: String,
    op: Op,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    #[serde(default)]
    exec_us: u64,
    #[serde(default)]
    exec_us_per_row: u64,
}

impl MockModel {
    /// A model with no tensors and no simulated time; add them with the builder methods.
    pub fn new(name: impl Into<String>, op: Op) -> Self {
        MockModel {
            name: name.into(),
            op,
            inputs: Vec::new(),
            outputs: Vec::new(),
            exec_us: 0,
            exec_us_per_row: 0,
        }
    }

    /// Adds an input.
    pub fn input(mut self, name: impl Into<String>, dtype: DType, shape: &[u32]) -> Self {
        self.inputs.push(TensorSpec::new(name, dtype, shape));
        self
    }

    /// Adds an output.
    pub fn output(mut self, name: impl Into<String>, dtype: DType, shape: &[u32]) -> Self {
        self.outputs.push(TensorSpec::new(name, dtype, shape));
        self
    }

    /// Sets the simulated device time per execution.
    pub fn exec_us(mut self, us: u64) -> Self {
        self.exec_us = us;
        self
    }

    /// Sets the extra simulated device time per compiled row.
    pub fn exec_us_per_row(mut self, us: u64) -> Self {
        self.exec_us_per_row = us;
        self
    }

    /// The compiled batch: dim 0 of the first input (0 when there is none).
    pub fn compiled_rows(&self) -> u32 {
        self.inputs
            .first()
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(0)
    }

    /// Checks names, shapes and the op's dtype and shape rules (see [`Op`]).
    pub fn validate(&self) -> Result<(), NeffError> {
        let bad = |m: String| Err(NeffError::Model(format!("model {:?}: {m}", self.name)));
        if let Err(e) = check_name(&self.name) {
            return bad(format!("model name {e}"));
        }
        for (kind, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (i, t) in list.iter().enumerate() {
                if let Err(e) = check_name(&t.name) {
                    return bad(format!("{kind} {i} name {e}"));
                }
                if list[..i].iter().any(|o| o.name == t.name) {
                    return bad(format!("{kind} name {:?} appears twice", t.name));
                }
                if t.shape.is_empty() {
                    return bad(format!(
                        "{kind} {:?} has no dims (dim 0 is the batch)",
                        t.name
                    ));
                }
                if t.shape.contains(&0) {
                    return bad(format!("{kind} {:?} has a zero dim: {:?}", t.name, t.shape));
                }
                match t.size_bytes() {
                    Some(n) if usize::try_from(n).is_ok() => {}
                    _ => return bad(format!("{kind} {:?} is too large", t.name)),
                }
            }
        }
        let (ins, outs) = (&self.inputs, &self.outputs);
        let all_f32 = |l: &[TensorSpec]| l.iter().all(|t| t.dtype == DType::Float32);
        let op = self.op.kind();
        match self.op {
            Op::Identity | Op::Affine { .. } => {
                if ins.is_empty() || ins.len() != outs.len() {
                    return bad(format!(
                        "{op} needs as many outputs as inputs (at least one), got {} and {}",
                        ins.len(),
                        outs.len()
                    ));
                }
                for (i, o) in ins.iter().zip(outs) {
                    if i.shape != o.shape || i.dtype != o.dtype {
                        return bad(format!(
                            "{op}: output {} must match input {} ({} vs {})",
                            o.name, i.name, o, i
                        ));
                    }
                }
                if let Op::Affine { scale, bias } = self.op {
                    if !all_f32(ins) {
                        return bad("affine takes float32 tensors only".into());
                    }
                    if !scale.is_finite() || !bias.is_finite() {
                        return bad("affine scale and bias must be finite".into());
                    }
                }
            }
            Op::Add => {
                if ins.len() != 2 || outs.len() != 1 {
                    return bad(format!(
                        "add takes 2 inputs and 1 output, got {} and {}",
                        ins.len(),
                        outs.len()
                    ));
                }
                if !all_f32(ins) || !all_f32(outs) {
                    return bad("add takes float32 tensors only".into());
                }
                if ins[0].shape != ins[1].shape || ins[0].shape != outs[0].shape {
                    return bad("add needs inputs and output of one shape".into());
                }
            }
            Op::RowSum { out_features } => {
                if ins.len() != 1 || outs.len() != 1 {
                    return bad(format!(
                        "rowsum takes 1 input and 1 output, got {} and {}",
                        ins.len(),
                        outs.len()
                    ));
                }
                if !all_f32(ins) || !all_f32(outs) {
                    return bad("rowsum takes float32 tensors only".into());
                }
                if out_features == 0 {
                    return bad("rowsum needs out_features >= 1".into());
                }
                let want = [ins[0].shape[0], out_features];
                if outs[0].shape != want {
                    return bad(format!(
                        "rowsum output must be shaped {want:?}, got {:?}",
                        outs[0].shape
                    ));
                }
            }
            Op::CoreId => {
                if ins.len() != 1 || outs.len() != 1 {
                    return bad(format!(
                        "core_id takes 1 input and 1 output, got {} and {}",
                        ins.len(),
                        outs.len()
                    ));
                }
                let want = [ins[0].shape[0], 1];
                if outs[0].dtype != DType::Int32 || outs[0].shape != want {
                    return bad(format!(
                        "core_id output must be int32 {want:?}, got {}",
                        outs[0]
                    ));
                }
            }
        }
        Ok(())
    }

    /// The JSON payload of this model (not validated).
    pub fn to_json(&self) -> String {
        let payload = Payload {
            format: PAYLOAD_FORMAT.to_owned(),
            version: PAYLOAD_VERSION,
            name: self.name.clone(),
            op: self.op,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            exec_us: self.exec_us,
            exec_us_per_row: self.exec_us_per_row,
        };
        // Serialising plain data (strings, numbers, finite or not) into a String cannot fail
        // except for non-finite floats, which serde_json writes as `null`.
        serde_json::to_string_pretty(&payload).unwrap_or_default()
    }

    /// The bytes of a mock NEFF for this model (header + JSON payload). Does not validate;
    /// use [`MockModel::write_neff`] or call [`MockModel::validate`] first.
    pub fn to_neff_bytes(&self) -> Vec<u8> {
        container(&self.name, self.to_json().as_bytes())
    }

    /// Validates the model, then writes its mock NEFF to `path`.
    pub fn write_neff(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        std::fs::write(path, self.to_neff_bytes())
    }

    /// Parses and validates a mock NEFF.
    pub fn from_neff_bytes(bytes: &[u8]) -> Result<MockModel, NeffError> {
        Self::from_neff_bytes_up_to(bytes, 2)
    }

    /// Parses and validates a mock NEFF, accepting `neff_version_major` from 2 up to
    /// `max_major` (what `NRT_MOCK_MAX_NEFF_MAJOR` sets for `nrt_load`, to stand in for a
    /// runtime newer than this crate knows).
    pub fn from_neff_bytes_up_to(bytes: &[u8], max_major: u64) -> Result<MockModel, NeffError> {
        if bytes.len() < HEADER_SIZE {
            return Err(NeffError::TooShort { len: bytes.len() });
        }
        let pkg = read_u64(bytes, OFF_PKG_VERSION);
        if pkg == 2 {
            return Err(NeffError::RealNeff {
                reason: "pkg_version 2, a gzip-compressed archive".into(),
            });
        }
        if bytes[HEADER_SIZE..].starts_with(&[0x1f, 0x8b]) {
            return Err(NeffError::RealNeff {
                reason: "the payload is gzip-compressed".into(),
            });
        }
        let header_size = read_u64(bytes, OFF_HEADER_SIZE);
        if header_size != HEADER_SIZE as u64 {
            return Err(NeffError::Header(format!(
                "header_size is {header_size}, expected {HEADER_SIZE}"
            )));
        }
        if pkg != 1 {
            return Err(NeffError::Header(format!(
                "unsupported packager version {pkg}, expected 1"
            )));
        }
        let (major, minor) = (read_u64(bytes, OFF_MAJOR), read_u64(bytes, OFF_MINOR));
        if major > max_major.max(2) {
            return Err(NeffError::UnsupportedVersion { major, minor });
        }
        if major < 2 {
            return Err(NeffError::Header(format!(
                "neff_version_major is {major}, mock NEFFs are version 2"
            )));
        }
        let data_size = read_u64(bytes, OFF_DATA_SIZE);
        let available = (bytes.len() - HEADER_SIZE) as u64;
        if data_size > available {
            return Err(NeffError::Header(format!(
                "data_size {data_size} runs past the end of the file ({available} payload bytes)"
            )));
        }
        let build = c_field(&bytes[OFF_BUILD..OFF_BUILD + BUILD_LEN]);
        if !build.starts_with(BUILD_VERSION_PREFIX.as_bytes()) {
            return Err(NeffError::RealNeff {
                reason: format!(
                    "build version {:?} does not start with {BUILD_VERSION_PREFIX:?}",
                    String::from_utf8_lossy(build)
                ),
            });
        }
        let feature_bits = read_u64(bytes, OFF_FEATURE_BITS);
        if feature_bits != 0 {
            return Err(NeffError::Header(format!(
                "feature_bits {feature_bits:#x} are not supported"
            )));
        }
        // data_size <= available, so it fits in usize.
        let payload = &bytes[HEADER_SIZE..HEADER_SIZE + data_size as usize];
        let text = std::str::from_utf8(payload)
            .map_err(|e| NeffError::Payload(format!("not UTF-8: {e}")))?;
        let p: Payload =
            serde_json::from_str(text).map_err(|e| NeffError::Payload(e.to_string()))?;
        if p.format != PAYLOAD_FORMAT || p.version != PAYLOAD_VERSION {
            return Err(NeffError::Payload(format!(
                "format {:?} version {}, expected {PAYLOAD_FORMAT:?} version {PAYLOAD_VERSION}",
                p.format, p.version
            )));
        }
        let model = MockModel {
            name: p.name,
            op: p.op,
            inputs: p.inputs,
            outputs: p.outputs,
            exec_us: p.exec_us,
            exec_us_per_row: p.exec_us_per_row,
        };
        let header_name = c_field(&bytes[OFF_NAME..OFF_NAME + NAME_LEN]);
        if header_name != model.name.as_bytes() {
            return Err(NeffError::Header(format!(
                "header name {:?} differs from the payload's {:?}",
                String::from_utf8_lossy(header_name),
                model.name
            )));
        }
        model.validate()?;
        Ok(model)
    }
}

/// Sets the `lnc_size` header field of a NEFF's bytes (the mock writes 1; a NEFF for trn2's
/// default logical cores has 2). Does nothing to bytes shorter than the header.
///
/// ```
/// use nrt_mock::neff::{DType, MockModel, Op, set_lnc_size};
///
/// let mut bytes = MockModel::new("m", Op::Identity)
///     .input("x", DType::Float32, &[1, 4])
///     .output("y", DType::Float32, &[1, 4])
///     .to_neff_bytes();
/// set_lnc_size(&mut bytes, 2);
/// assert_eq!(bytes[552..556], 2u32.to_le_bytes());
/// ```
pub fn set_lnc_size(neff: &mut [u8], lnc_size: u32) {
    if neff.len() >= HEADER_SIZE {
        write_u32(neff, OFF_LNC_SIZE, lnc_size);
    }
}

/// Wraps `payload` in a mock NEFF header named `name` (truncated to 255 bytes). Useful to
/// build deliberately malformed NEFFs; [`MockModel::to_neff_bytes`] is the normal way.
pub fn container(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_SIZE + payload.len()];
    write_u64(&mut out, OFF_PKG_VERSION, 1);
    write_u64(&mut out, OFF_HEADER_SIZE, HEADER_SIZE as u64);
    write_u64(&mut out, OFF_DATA_SIZE, payload.len() as u64);
    write_u64(&mut out, OFF_MAJOR, 2);
    write_u64(&mut out, OFF_MINOR, 0);
    let build = format!("{BUILD_VERSION_PREFIX} {}", env!("CARGO_PKG_VERSION"));
    put_str(&mut out[OFF_BUILD..OFF_BUILD + BUILD_LEN], build.as_bytes());
    write_u32(&mut out, OFF_NUM_TPB, 1);
    let uuid = uuid_for(name.as_bytes(), payload);
    out[OFF_UUID..OFF_UUID + 16].copy_from_slice(&uuid);
    put_str(&mut out[OFF_NAME..OFF_NAME + NAME_LEN], name.as_bytes());
    write_u32(&mut out, OFF_REQUESTED_TPB, 1);
    write_u32(&mut out, OFF_LNC_SIZE, 1);
    out[HEADER_SIZE..].copy_from_slice(payload);
    out
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("is empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Err(format!("is {} bytes, more than {MAX_NAME_LEN}", name.len()))
    } else if name.contains('\0') {
        Err("contains a NUL byte".into())
    } else {
        Ok(())
    }
}

/// Copies `s` into a fixed C field, keeping at least one trailing NUL.
fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len() - 1);
    field[..n].copy_from_slice(&s[..n]);
}

/// The bytes of a NUL-terminated fixed C field, up to the first NUL.
fn c_field(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn read_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn write_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn write_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// A deterministic 128-bit id from two FNV-1a passes (the mock needs uniqueness per content,
/// not randomness).
fn uuid_for(name: &[u8], payload: &[u8]) -> [u8; 16] {
    let fnv = |seed: u64| {
        let mut h = seed;
        for &b in name.iter().chain(payload) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_le_bytes());
    out[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn affine() -> MockModel {
        MockModel::new(
            "aff",
            Op::Affine {
                scale: 2.0,
                bias: 0.5,
            },
        )
        .input("x", DType::Float32, &[4, 8])
        .output("y", DType::Float32, &[4, 8])
        .exec_us(100)
        .exec_us_per_row(3)
    }

    #[test]
    fn round_trip() {
        let m = affine();
        m.validate().unwrap();
        let bytes = m.to_neff_bytes();
        assert_eq!(
            read_u64(&bytes, OFF_DATA_SIZE) as usize,
            bytes.len() - HEADER_SIZE
        );
        assert_eq!(MockModel::from_neff_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn every_op_round_trips() {
        let models = [
            MockModel::new("id", Op::Identity)
                .input("a", DType::UInt16, &[2, 3])
                .input("b", DType::Int64, &[2])
                .output("c", DType::UInt16, &[2, 3])
                .output("d", DType::Int64, &[2]),
            MockModel::new("add", Op::Add)
                .input("a", DType::Float32, &[2, 3])
                .input("b", DType::Float32, &[2, 3])
                .output("c", DType::Float32, &[2, 3]),
            MockModel::new("rs", Op::RowSum { out_features: 3 })
                .input("a", DType::Float32, &[2, 5, 2])
                .output("c", DType::Float32, &[2, 3]),
            MockModel::new("cid", Op::CoreId)
                .input("a", DType::BFloat16, &[7, 2])
                .output("c", DType::Int32, &[7, 1]),
        ];
        for m in models {
            m.validate().unwrap();
            assert_eq!(MockModel::from_neff_bytes(&m.to_neff_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn op_rules() {
        let bad = [
            MockModel::new(
                "a",
                Op::Affine {
                    scale: 1.0,
                    bias: 0.0,
                },
            )
            .input("x", DType::Int32, &[2])
            .output("y", DType::Int32, &[2]),
            MockModel::new("a", Op::Identity)
                .input("x", DType::Int32, &[2])
                .output("y", DType::Int32, &[3]),
            MockModel::new("a", Op::Identity).input("x", DType::Int32, &[2]),
            MockModel::new("a", Op::Add)
                .input("x", DType::Float32, &[2])
                .input("z", DType::Float32, &[3])
                .output("y", DType::Float32, &[2]),
            MockModel::new("a", Op::RowSum { out_features: 2 })
                .input("x", DType::Float32, &[2, 4])
                .output("y", DType::Float32, &[2, 3]),
            MockModel::new("a", Op::RowSum { out_features: 0 })
                .input("x", DType::Float32, &[2, 4])
                .output("y", DType::Float32, &[2, 0]),
            MockModel::new("a", Op::CoreId)
                .input("x", DType::Float32, &[2, 4])
                .output("y", DType::Int64, &[2, 1]),
            MockModel::new("a", Op::Identity)
                .input("x", DType::Int8, &[0])
                .output("y", DType::Int8, &[0]),
            MockModel::new("", Op::Identity)
                .input("x", DType::Int8, &[1])
                .output("y", DType::Int8, &[1]),
            MockModel::new("a", Op::Identity)
                .input("x", DType::Int8, &[1])
                .input("x", DType::Int8, &[1])
                .output("y", DType::Int8, &[1])
                .output("z", DType::Int8, &[1]),
        ];
        for m in bad {
            let e = m.validate().unwrap_err();
            assert!(matches!(e, NeffError::Model(_)), "{m:?}: {e}");
            assert!(MockModel::from_neff_bytes(&m.to_neff_bytes()).is_err());
        }
    }

    #[test]
    fn header_checks() {
        let good = affine().to_neff_bytes();
        assert!(matches!(
            MockModel::from_neff_bytes(&good[..1000]),
            Err(NeffError::TooShort { len: 1000 })
        ));
        let mut b = good.clone();
        write_u64(&mut b, OFF_PKG_VERSION, 2);
        assert!(matches!(
            MockModel::from_neff_bytes(&b),
            Err(NeffError::RealNeff { .. })
        ));
        let mut b = good.clone();
        write_u64(&mut b, OFF_MAJOR, 3);
        let e = MockModel::from_neff_bytes(&b).unwrap_err();
        assert_eq!(e.status(), NRT_UNSUPPORTED_NEFF_VERSION);
        let mut b = good.clone();
        write_u64(&mut b, OFF_HEADER_SIZE, 512);
        assert!(matches!(
            MockModel::from_neff_bytes(&b),
            Err(NeffError::Header(_))
        ));
        let mut b = good.clone();
        write_u64(&mut b, OFF_DATA_SIZE, (good.len() - HEADER_SIZE + 1) as u64);
        assert!(matches!(
            MockModel::from_neff_bytes(&b),
            Err(NeffError::Header(_))
        ));
        let b = container("gz", &[0x1f, 0x8b, 8, 0]);
        let e = MockModel::from_neff_bytes(&b).unwrap_err();
        assert!(
            e.to_string()
                .contains("real NEFF: this is the mock runtime"),
            "{e}"
        );
        let b = container("j", b"{not json");
        assert!(matches!(
            MockModel::from_neff_bytes(&b),
            Err(NeffError::Payload(_))
        ));
    }

    #[test]
    fn tensor_spec_parse() {
        let t = TensorSpec::parse("x:float32:4,8").unwrap();
        assert_eq!(t, TensorSpec::new("x", DType::Float32, &[4, 8]));
        assert_eq!(t.to_string(), "x:float32:4,8");
        for bad in [
            "x",
            "x:float32",
            ":float32:1",
            "x:f32:1",
            "x:float32:a",
            "x:int8:",
        ] {
            assert!(TensorSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dtype_names_and_codes() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.name())
            );
        }
        assert_eq!(DType::Float32.nrt_code(), 0xA);
        assert_eq!(DType::Int64.nrt_code(), 0xC);
        assert_eq!(DType::UInt64.nrt_code(), 0x1);
        assert_eq!(DType::BFloat16.size_bytes(), 2);
    }

    proptest! {
        #[test]
        fn affine_round_trips_exactly(
            scale in -1e6f32..1e6,
            bias in -1e6f32..1e6,
            rows in 1u32..64,
            cols in 1u32..64,
            exec_us in 0u64..1_000_000,
        ) {
            let m = MockModel::new("p", Op::Affine { scale, bias })
                .input("x", DType::Float32, &[rows, cols])
                .output("y", DType::Float32, &[rows, cols])
                .exec_us(exec_us);
            prop_assert_eq!(MockModel::from_neff_bytes(&m.to_neff_bytes()).unwrap(), m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = MockModel::from_neff_bytes(&bytes);
        }
    }

    // Never-panic twins of the `mock_payload` fuzz target (fuzz/fuzz_targets/mock_payload.rs):
    // payloads behind a valid header, mutated valid files, and generated models.

    fn arbitrary_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Identity),
            (any::<f32>(), any::<f32>()).prop_map(|(scale, bias)| Op::Affine { scale, bias }),
            Just(Op::Add),
            (0u32..6).prop_map(|out_features| Op::RowSum { out_features }),
            Just(Op::CoreId),
        ]
    }

    fn arbitrary_tensor() -> impl Strategy<Value = TensorSpec> {
        (
            prop_oneof!["[a-z]{1,3}", ".{0,4}"],
            proptest::sample::select(DType::ALL.to_vec()),
            proptest::collection::vec(prop_oneof![0u32..5, Just(u32::MAX), any::<u32>()], 0..4),
        )
            .prop_map(|(name, dtype, shape)| TensorSpec::new(name, dtype, &shape))
    }

    fn arbitrary_model() -> impl Strategy<Value = MockModel> {
        (
            prop_oneof!["m", ".{0,6}"],
            arbitrary_op(),
            proptest::collection::vec(arbitrary_tensor(), 0..3),
            proptest::collection::vec(arbitrary_tensor(), 0..3),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(name, op, inputs, outputs, exec_us, per_row)| MockModel {
                name,
                op,
                inputs,
                outputs,
                exec_us,
                exec_us_per_row: per_row,
            })
    }

    proptest! {
        #[test]
        fn payload_behind_a_valid_header_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            json in r#"\{("[a-z_]{1,8}":( ?[0-9.e+-]{1,6}|"[a-z0-9_]{0,8}"|\[[0-9, ]{0,8}\]|null|true|\{\}),?){0,8}\}"#,
        ) {
            let _ = MockModel::from_neff_bytes(&container("m", &payload));
            let _ = MockModel::from_neff_bytes(&container("m", json.as_bytes()));
        }

        #[test]
        fn mutated_valid_files_never_panic_and_accept_only_valid_models(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = affine().to_neff_bytes();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            if let Ok(model) = MockModel::from_neff_bytes(&bytes) {
                prop_assert!(model.validate().is_ok());
                prop_assert_eq!(MockModel::from_neff_bytes(&model.to_neff_bytes()).ok(), Some(model));
            }
        }

        #[test]
        fn generated_models_round_trip_exactly_when_valid(model in arbitrary_model()) {
            let parsed = MockModel::from_neff_bytes(&model.to_neff_bytes());
            match model.validate() {
                Ok(()) => prop_assert_eq!(parsed.ok(), Some(model)),
                Err(_) => prop_assert!(parsed.is_err(), "an invalid model was accepted: {:?}", model),
            }
        }
    }
}
