//! Reading a DLPack capsule (`obj.__dlpack__()`, the unversioned `"dltensor"` form every
//! producer supports): the tensor's dtype, shape and CPU memory, without copying.
//!
//! The capsule is not consumed (not renamed `"used_dltensor"`): the caller keeps it alive
//! for the whole call, and when it is released its destructor calls the producer's deleter,
//! as the protocol specifies for a capsule nobody took ownership of.

use std::ffi::c_void;
use std::fmt;

use neuron_rt::DType;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

/// `DLDevice` (DLPack's `dlpack.h`, ABI 0.x and 1.x alike).
#[repr(C)]
struct DlDevice {
    device_type: i32,
    device_id: i32,
}

/// `DLDataType`.
#[repr(C)]
struct DlDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

/// `DLTensor`.
#[repr(C)]
struct DlTensor {
    data: *mut c_void,
    device: DlDevice,
    ndim: i32,
    dtype: DlDataType,
    shape: *const i64,
    strides: *const i64,
    byte_offset: u64,
}

/// `DLManagedTensor`: what a `"dltensor"` capsule points to.
#[repr(C)]
struct DlManagedTensor {
    dl_tensor: DlTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DlManagedTensor)>,
}

/// `kDLCPU`.
const DEVICE_CPU: i32 = 1;
/// `kDLCUDAHost`: pinned host memory, readable from the CPU.
const DEVICE_CUDA_HOST: i32 = 3;
/// Most dimensions accepted (a corrupt capsule cannot make us read far).
const MAX_DIMS: i32 = 64;

/// Why a DLPack tensor cannot be read in place.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Strided memory.
    NotContiguous,
    /// Anything else, with the message.
    Other(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotContiguous => write!(
                f,
                "the tensor is not contiguous: call .contiguous() (torch) or \
                 numpy.ascontiguousarray on it first, or build the model with allow_copy=True"
            ),
            Refused::Other(message) => f.write_str(message),
        }
    }
}

fn dtype(code: u8, bits: u8, lanes: u16) -> Result<DType, Refused> {
    let dtype = match (code, bits, lanes) {
        (0, 8, 1) => DType::Int8,
        (0, 16, 1) => DType::Int16,
        (0, 32, 1) => DType::Int32,
        (0, 64, 1) => DType::Int64,
        (1, 8, 1) => DType::UInt8,
        (1, 16, 1) => DType::UInt16,
        (1, 32, 1) => DType::UInt32,
        (1, 64, 1) => DType::UInt64,
        (2, 16, 1) => DType::Float16,
        (2, 32, 1) => DType::Float32,
        (4, 16, 1) => DType::BFloat16,
        _ => {
            return Err(Refused::Other(format!(
                "DLPack dtype (code {code}, {bits} bits, {lanes} lanes) is not supported; use \
                 float32, float16, bfloat16, int8/16/32/64 or uint8/16/32/64"
            )));
        }
    };
    Ok(dtype)
}

/// The dtype, shape, address and byte length of the tensor in a `"dltensor"` capsule.
pub(crate) fn describe(
    capsule: &Bound<'_, PyCapsule>,
) -> Result<(DType, Vec<usize>, usize, usize), Refused> {
    let pointer = capsule
        .pointer_checked(Some(c"dltensor"))
        .map_err(|_| {
            Refused::Other(
                "__dlpack__() returned a capsule that is not an unconsumed \"dltensor\"".into(),
            )
        })?
        .cast::<DlManagedTensor>();
    // SAFETY: a live capsule named "dltensor" points to a `DLManagedTensor` that stays valid
    // until its deleter runs, which happens only when the capsule (borrowed here) is
    // destroyed. Only plain fields are read.
    let tensor = unsafe { &pointer.as_ref().dl_tensor };
    if tensor.device.device_type != DEVICE_CPU && tensor.device.device_type != DEVICE_CUDA_HOST {
        return Err(Refused::Other(format!(
            "the tensor is on device type {} (not the CPU): move it to the CPU first (.cpu())",
            tensor.device.device_type
        )));
    }
    let dtype = dtype(tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes)?;
    if !(0..=MAX_DIMS).contains(&tensor.ndim) || (tensor.ndim > 0 && tensor.shape.is_null()) {
        return Err(Refused::Other(format!(
            "the DLPack tensor reports {} dimensions; at most {MAX_DIMS} are supported",
            tensor.ndim
        )));
    }
    let ndim = tensor.ndim as usize;
    let dims: &[i64] = if ndim == 0 {
        &[]
    } else {
        // SAFETY: DLPack requires `shape` to hold `ndim` entries (checked non-null above).
        unsafe { std::slice::from_raw_parts(tensor.shape, ndim) }
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| Refused::Other(format!("the DLPack tensor has a negative dim: {dims:?}")))?;
    if !tensor.strides.is_null() && ndim > 0 {
        // SAFETY: non-null `strides` holds `ndim` entries, as `shape` does.
        let strides = unsafe { std::slice::from_raw_parts(tensor.strides, ndim) };
        let mut expected: i64 = 1;
        for (&dim, &stride) in dims.iter().zip(strides).rev() {
            if dim != 1 && stride != expected {
                return Err(Refused::NotContiguous);
            }
            expected = expected.saturating_mul(dim);
        }
    }
    let len = shape
        .iter()
        .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d))
        .ok_or_else(|| Refused::Other(format!("the DLPack shape {shape:?} is too large")))?;
    let offset = usize::try_from(tensor.byte_offset)
        .map_err(|_| Refused::Other("the DLPack byte offset is too large".into()))?;
    let addr = (tensor.data as usize)
        .checked_add(offset)
        .ok_or_else(|| Refused::Other("the DLPack byte offset is too large".into()))?;
    if addr == 0 && len > 0 {
        return Err(Refused::Other(
            "the DLPack tensor has no data pointer".into(),
        ));
    }
    Ok((dtype, shape, addr, len))
}
