//! Python objects → raw tensor descriptions the engine can view, and numpy outputs.
//!
//! Inputs may be numpy arrays, anything with the buffer protocol or `__array_interface__`
//! (viewed through `numpy.asarray`, which does not copy those), or anything with
//! `__dlpack__` (a PyTorch CPU tensor, bfloat16 included; read here, in `dlpack`). C-contiguous
//! memory is read in place; anything else is refused with the fix, or copied once with
//! `numpy.ascontiguousarray` when the model was built with `allow_copy=True`.
//!
//! A [`Raw`] is a pointer, a length, a dtype and a shape. It does not keep the memory alive:
//! the [`Held`] that produced it does, and the caller keeps that alive (holding the Python
//! object, with the GIL released) until the engine has returned.

use neuron_rt::DType;
use numpy::npyffi::{self, NPY_ARRAY_WRITEABLE, npy_intp};
use numpy::{PyArrayDescr, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::dlpack;
use crate::errors::input_error;

/// One tensor in memory the engine may read (inputs) or write (outputs).
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    /// Matched by name when set.
    pub(crate) name: Option<String>,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    /// Address of the first byte (stored as an integer so a `Raw` may cross into the
    /// GIL-released section; see `Held`).
    pub(crate) addr: usize,
    pub(crate) len: usize,
}

impl Raw {
    /// The byte range, for overlap checks.
    fn range(&self) -> (usize, usize) {
        (self.addr, self.addr.saturating_add(self.len))
    }
}

/// A resolved input or output and the Python object that keeps its memory alive.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) raw: Raw,
    /// The numpy array, or the DLPack capsule (whose destructor releases the producer's
    /// tensor), that owns or pins the memory.
    pub(crate) _keep: Py<PyAny>,
    /// Whether the caller passed a torch tensor (outputs then come back as torch tensors).
    pub(crate) torch: bool,
}

/// The engine dtype for a numpy dtype, or a message.
fn dtype_of(descr: &Bound<'_, PyArrayDescr>) -> Result<DType, String> {
    if descr.is_native_byteorder() == Some(false) {
        return Err(format!(
            "dtype {descr} is not in native byte order; convert with .astype(x.dtype.newbyteorder('='))"
        ));
    }
    let size = descr.itemsize();
    let dtype = match (descr.kind(), size) {
        (b'f', 4) => DType::Float32,
        (b'f', 2) => DType::Float16,
        (b'i', 1) => DType::Int8,
        (b'i', 2) => DType::Int16,
        (b'i', 4) => DType::Int32,
        (b'i', 8) => DType::Int64,
        (b'u', 1) => DType::UInt8,
        (b'u', 2) => DType::UInt16,
        (b'u', 4) => DType::UInt32,
        (b'u', 8) => DType::UInt64,
        // ml_dtypes' bfloat16 is a 2-byte numpy dtype named "bfloat16".
        (_, 2)
            if descr
                .getattr("name")
                .and_then(|n| n.extract::<String>())
                .is_ok_and(|n| n == "bfloat16") =>
        {
            DType::BFloat16
        }
        _ => {
            return Err(format!(
                "dtype {descr} is not supported; use float32, float16, bfloat16 (through \
                 DLPack), int8/16/32/64 or uint8/16/32/64"
            ));
        }
    };
    Ok(dtype)
}

/// Names a tensor in messages: "input 0", "input `mask`", "output 1", "output". Formatted
/// only when a message is built, never on the way to a successful call.
#[derive(Debug, Clone, Copy)]
struct What<'a> {
    kind: &'static str,
    position: Option<usize>,
    name: Option<&'a str>,
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.name, self.position) {
            (Some(name), _) => write!(f, "{} `{}`", self.kind, dataparallel::quote::quote(name)),
            (None, Some(position)) => write!(f, "{} {position}", self.kind),
            (None, None) => f.write_str(self.kind),
        }
    }
}

/// Resolves a numpy array. `write` asks for a writable array (outputs).
fn from_numpy(
    py: Python<'_>,
    array: &Bound<'_, PyUntypedArray>,
    kind: &'static str,
    position: Option<usize>,
    name: Option<String>,
    allow_copy: bool,
    write: bool,
) -> PyResult<Held> {
    let what = What {
        kind,
        position,
        name: name.as_deref(),
    };
    if !array.is_c_contiguous() {
        if allow_copy && !write {
            let copy = py
                .import("numpy")?
                .call_method1("ascontiguousarray", (array,))?;
            let copy = copy.cast_into::<PyUntypedArray>()?;
            return from_numpy(py, &copy, kind, position, name, false, write);
        }
        return Err(input_error(
            py,
            format!(
                "{what} is not C-contiguous (shape {:?}, strides {:?}): call \
                 numpy.ascontiguousarray on it first{}",
                array.shape(),
                array.strides(),
                if write {
                    " (outputs are written in place, so they must be contiguous)"
                } else {
                    ", or build the model with allow_copy=True to copy it"
                }
            ),
        ));
    }
    let dtype = dtype_of(&array.dtype()).map_err(|m| input_error(py, format!("{what}: {m}")))?;
    // SAFETY: `as_array_ptr` points to the live array object `array` refers to; reading its
    // `flags` and `data` fields does not outlive this borrow.
    let (flags, data) = unsafe {
        let object = &*array.as_array_ptr();
        (object.fields.flags, object.fields.data)
    };
    if write && flags & NPY_ARRAY_WRITEABLE == 0 {
        return Err(input_error(
            py,
            format!("{what} is read-only; pass a writable array (e.g. numpy.empty_like(...))"),
        ));
    }
    let shape = array.shape().to_vec();
    let len = shape
        .iter()
        .try_fold(dtype.size_bytes(), |a, &d| a.checked_mul(d))
        .ok_or_else(|| input_error(py, format!("{what}: shape {shape:?} is too large")))?;
    Ok(Held {
        raw: Raw {
            name,
            dtype,
            shape,
            addr: data as usize,
            len,
        },
        _keep: array.clone().into_any().unbind(),
        torch: false,
    })
}

/// Whether `object` is a torch tensor (by its type's module, so torch need not be imported).
fn is_torch(object: &Bound<'_, PyAny>) -> bool {
    object
        .get_type()
        .getattr("__module__")
        .and_then(|m| m.extract::<String>())
        .is_ok_and(|m| m == "torch" || m.starts_with("torch."))
}

/// Resolves one input object.
pub(crate) fn input(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    position: usize,
    name: Option<String>,
    allow_copy: bool,
    hint: Option<DType>,
) -> PyResult<Held> {
    if let Ok(array) = object.cast::<PyUntypedArray>() {
        return from_numpy(py, array, "input", Some(position), name, allow_copy, false);
    }
    let what = What {
        kind: "input",
        position: Some(position),
        name: name.as_deref(),
    }
    .to_string();
    if object.hasattr("__dlpack__")? {
        let capsule = object.call_method0("__dlpack__")?;
        let capsule = capsule.cast_into::<PyCapsule>().map_err(|_| {
            input_error(py, format!("{what}: __dlpack__() did not return a capsule"))
        })?;
        match dlpack::describe(&capsule) {
            Ok((dtype, shape, addr, len)) => {
                return Ok(Held {
                    raw: Raw {
                        name,
                        dtype,
                        shape,
                        addr,
                        len,
                    },
                    // Unconsumed (still named "dltensor"), the capsule's destructor calls
                    // the producer's deleter when the last reference goes.
                    _keep: capsule.into_any().unbind(),
                    torch: is_torch(object),
                });
            }
            Err(dlpack::Refused::NotContiguous) if allow_copy => {
                let copy = py.import("numpy")?.call_method1("from_dlpack", (object,))?;
                let copy = py
                    .import("numpy")?
                    .call_method1("ascontiguousarray", (copy,))?
                    .cast_into::<PyUntypedArray>()?;
                let mut held = from_numpy(py, &copy, "input", Some(position), name, false, false)?;
                held.torch = is_torch(object);
                return Ok(held);
            }
            Err(refused) => {
                return Err(input_error(py, format!("{what}: {refused}")));
            }
        }
    }
    let array_like = object.hasattr("__array_interface__")?
        || object.hasattr("__array_struct__")?
        || py
            .import("builtins")?
            .getattr("memoryview")?
            .call1((object,))
            .is_ok();
    if array_like || allow_copy {
        // No copy for the buffer protocol and __array_interface__; lists and scalars are
        // converted (a copy, to the model's dtype) only with allow_copy.
        let numpy = py.import("numpy")?;
        let array = match hint {
            Some(dtype) if !array_like => {
                numpy.call_method1("asarray", (object, descr(py, dtype)?))?
            }
            _ => numpy.call_method1("asarray", (object,))?,
        }
        .cast_into::<PyUntypedArray>()?;
        return from_numpy(py, &array, "input", Some(position), name, allow_copy, false);
    }
    Err(input_error(
        py,
        format!(
            "{what} is a {}, not an array: pass a numpy array or anything with the buffer \
             protocol, __array_interface__ or __dlpack__ (or build the model with \
             allow_copy=True to convert it)",
            object.get_type().name()?
        ),
    ))
}

/// Resolves one caller-provided output (a writable C-contiguous numpy array, or a writable
/// buffer).
pub(crate) fn output(
    py: Python<'_>,
    object: &Bound<'_, PyAny>,
    position: usize,
    name: Option<String>,
) -> PyResult<Held> {
    let what = What {
        kind: "output",
        position: Some(position),
        name: name.as_deref(),
    };
    let array = match object.cast::<PyUntypedArray>() {
        Ok(array) => array.clone(),
        Err(_) => py
            .import("numpy")?
            .call_method1("asarray", (object,))
            .and_then(|a| Ok(a.cast_into::<PyUntypedArray>()?))
            .map_err(|_| {
                input_error(
                    py,
                    format!("{what} must be a writable numpy array (or a writable buffer)"),
                )
            })?,
    };
    from_numpy(py, &array, "output", Some(position), name, false, true)
}

/// Refuses outputs that overlap each other or an input: the engine writes outputs while
/// it reads inputs, from several threads.
pub(crate) fn check_disjoint(py: Python<'_>, inputs: &[Held], outputs: &[Held]) -> PyResult<()> {
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    for (i, out) in outputs.iter().enumerate() {
        if out.raw.len == 0 {
            continue;
        }
        for (j, other) in outputs.iter().enumerate().skip(i + 1) {
            if other.raw.len > 0 && overlaps(out.raw.range(), other.raw.range()) {
                return Err(input_error(
                    py,
                    format!("outputs {i} and {j} share memory; pass separate arrays"),
                ));
            }
        }
        for (j, input) in inputs.iter().enumerate() {
            if input.raw.len > 0 && overlaps(out.raw.range(), input.raw.range()) {
                return Err(input_error(
                    py,
                    format!(
                        "output {i} shares memory with input {j}; the engine reads inputs \
                         while it writes outputs, so pass a separate output array"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The numpy dtype an engine dtype is returned as (bfloat16 as its raw `uint16` bits,
/// since numpy has no bfloat16).
fn descr<'py>(py: Python<'py>, dtype: DType) -> PyResult<Bound<'py, PyArrayDescr>> {
    Ok(match dtype {
        DType::Float32 => numpy::dtype::<f32>(py),
        DType::Int8 => numpy::dtype::<i8>(py),
        DType::UInt8 => numpy::dtype::<u8>(py),
        DType::Int16 => numpy::dtype::<i16>(py),
        DType::UInt16 | DType::BFloat16 => numpy::dtype::<u16>(py),
        DType::Int32 => numpy::dtype::<i32>(py),
        DType::UInt32 => numpy::dtype::<u32>(py),
        DType::Int64 => numpy::dtype::<i64>(py),
        DType::UInt64 => numpy::dtype::<u64>(py),
        DType::Float16 => PyArrayDescr::new(py, "float16")?,
        other => {
            return Err(input_error(
                py,
                format!(
                    "the model has a {} output, which numpy cannot hold; use forward_into with \
                     a uint8 array of the right size",
                    other.name()
                ),
            ));
        }
    })
}

/// A new, uninitialised C-contiguous numpy array for an output of `dtype` and `shape`.
pub(crate) fn empty(py: Python<'_>, dtype: DType, shape: &[usize]) -> PyResult<Held> {
    let descr = descr(py, dtype)?;
    let mut dims: Vec<npy_intp> = shape
        .iter()
        .map(|&d| npy_intp::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| input_error(py, format!("output shape {shape:?} is too large")))?;
    let ndim = std::ffi::c_int::try_from(dims.len())
        .map_err(|_| input_error(py, "too many output dimensions"))?;
    // SAFETY: `PyArray_Empty` reads `ndim` dims from `dims` (alive for the call) and steals
    // one reference to the descriptor, which `into_dtype_ptr` hands over. It returns a new
    // reference or NULL with a Python error set, which `from_owned_ptr_or_err` turns into
    // an owned object or that error.
    let array = unsafe {
        let object = npyffi::PY_ARRAY_API.PyArray_Empty(
            py,
            ndim,
            dims.as_mut_ptr(),
            descr.into_dtype_ptr(),
            0,
        );
        Bound::from_owned_ptr_or_err(py, object)?
    };
    let array = array.cast_into::<PyUntypedArray>()?;
    let mut held = from_numpy(py, &array, "output", None, None, false, true)?;
    // The engine's dtype (bfloat16 is held in uint16 storage).
    held.raw.dtype = dtype;
    Ok(held)
}

/// The Python object to hand back for an output: the numpy array, or a torch tensor over
/// the same memory when the caller passed torch tensors.
pub(crate) fn returned(py: Python<'_>, held: Held, torch: bool) -> PyResult<Py<PyAny>> {
    let array = held._keep;
    if !torch {
        return Ok(array);
    }
    let torch_module = py.import("torch")?;
    let tensor = torch_module.call_method1("from_numpy", (array,))?;
    if held.raw.dtype == DType::BFloat16 {
        return Ok(tensor
            .call_method1("view", (torch_module.getattr("bfloat16")?,))?
            .unbind());
    }
    Ok(tensor.unbind())
}

/// A batcher output (bytes it owns) as a numpy array over those same bytes (no copy), or a
/// torch tensor over them.
pub(crate) fn owned(
    py: Python<'_>,
    tensor: dataparallel::batcher::OwnedTensor,
    torch: bool,
) -> PyResult<Py<PyAny>> {
    let dtype = tensor.dtype;
    let bytes = numpy::PyArray1::<u8>::from_vec(py, tensor.data);
    let array = bytes
        .call_method1("view", (descr(py, dtype)?,))?
        .call_method1("reshape", (tensor.shape,))?;
    let array = array.cast_into::<PyUntypedArray>()?;
    let held = Held {
        raw: Raw {
            name: None,
            dtype,
            shape: array.shape().to_vec(),
            addr: 0,
            len: 0,
        },
        _keep: array.into_any().unbind(),
        torch,
    };
    returned(py, held, torch)
}
