//! Turning the caller's `ndp_tensor_t` arrays into the engine's borrowed views, with every
//! pointer, length, dtype and name checked first.

use std::ffi::CStr;

use neuron_rt::DType;

use super::error::Failure;
use super::types::{TensorAbi, check_len, ndp_dtype_t, ndp_tensor_t, slice};
use dataparallel::{Input, Output};

/// One tensor's checked parts.
struct Parts<'a> {
    name: Option<&'a str>,
    dtype: DType,
    shape: &'a [usize],
    data: *const u8,
    byte_len: usize,
}

/// Reads the array of `n` tensors at `tensors`.
///
/// # Safety
///
/// As for the `inputs`/`outputs` of `ndp_engine_forward`: `tensors` is NULL (only when
/// `n == 0`) or points to `n` readable `ndp_tensor_t`s whose `name`, `shape` and `data`
/// pointers satisfy that function's contract for `'a`.
unsafe fn read<'a>(
    tensors: *const ndp_tensor_t,
    n: usize,
    what: &str,
) -> Result<Vec<Parts<'a>>, Failure> {
    // SAFETY: `TensorAbi` has `ndp_tensor_t`'s layout (asserted in `types`) and accepts every
    // bit pattern; the caller guarantees `n` readable elements.
    let raw: &[TensorAbi] = unsafe { slice(tensors.cast::<TensorAbi>(), n, what) }?;
    let mut parts = Vec::with_capacity(n);
    for (i, t) in raw.iter().enumerate() {
        let name =
            if t.name.is_null() {
                None
            } else {
                // SAFETY: a non-NULL name is a NUL-terminated string (caller's contract).
                let name = unsafe { CStr::from_ptr(t.name) };
                Some(name.to_str().map_err(|_| {
                    Failure::invalid(format!("{what}[{i}].name {name:?} is not UTF-8"))
                })?)
            };
        let dtype = ndp_dtype_t::to_dtype(t.dtype).ok_or_else(|| {
            Failure::invalid(format!(
                "{what}[{i}].dtype is {}, which is not an ndp_dtype_t (1 = NDP_DTYPE_FLOAT32 ... \
                 15 = NDP_DTYPE_FP8_E5)",
                t.dtype
            ))
        })?;
        // SAFETY: `shape` points to `ndim` readable `size_t`s (caller's contract); `size_t`
        // is `usize` on every target Rust supports.
        let shape = unsafe { slice(t.shape, t.ndim, &format!("{what}[{i}].shape")) }?;
        if t.data.is_null() && t.byte_len != 0 {
            return Err(Failure::new(
                super::ndp_status_t::NDP_ERR_NULL_POINTER,
                format!("{what}[{i}].data is NULL but byte_len is {}", t.byte_len),
            ));
        }
        check_len::<u8>(t.byte_len, &format!("{what}[{i}].byte_len"))?;
        parts.push(Parts {
            name,
            dtype,
            shape,
            data: t.data,
            byte_len: t.byte_len,
        });
    }
    Ok(parts)
}

/// The byte range of a tensor's data (empty for no bytes).
fn range(p: &Parts<'_>) -> std::ops::Range<usize> {
    let start = p.data.addr();
    start..start.saturating_add(p.byte_len)
}

fn overlaps(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
}

/// Input and output views for one call.
pub(crate) struct Views<'a> {
    pub(crate) inputs: Vec<Input<'a>>,
    pub(crate) outputs: Vec<Output<'a>>,
}

/// Reads and checks inputs and (when `outputs` is given) outputs.
///
/// # Safety
///
/// As for `ndp_engine_forward`: every pointer in both arrays valid as documented there for
/// `'a`, input bytes not written and output bytes not accessed by anyone else during `'a`.
pub(crate) unsafe fn views<'a>(
    inputs: *const ndp_tensor_t,
    n_inputs: usize,
    outputs: Option<(*const ndp_tensor_t, usize)>,
) -> Result<Views<'a>, Failure> {
    // SAFETY: forwarded from the caller's contract.
    let ins = unsafe { read(inputs, n_inputs, "inputs") }?;
    let outs = match outputs {
        // SAFETY: forwarded from the caller's contract.
        Some((ptr, n)) => unsafe { read(ptr, n, "outputs") }?,
        None => Vec::new(),
    };
    // Output bytes become `&mut [u8]`: they must alias nothing else in the call.
    for (i, out) in outs.iter().enumerate() {
        let r = range(out);
        if let Some(j) = (0..i).find(|&j| overlaps(&r, &range(&outs[j]))) {
            return Err(Failure::invalid(format!(
                "outputs[{i}].data overlaps outputs[{j}].data: output buffers must be disjoint"
            )));
        }
        if let Some(j) = ins.iter().position(|inp| overlaps(&r, &range(inp))) {
            return Err(Failure::invalid(format!(
                "outputs[{i}].data overlaps inputs[{j}].data: outputs must not alias inputs"
            )));
        }
    }
    let inputs = ins
        .iter()
        .map(|p| {
            let data: &'a [u8] = if p.byte_len == 0 {
                &[]
            } else {
                // SAFETY: non-NULL (checked in `read`), `byte_len` readable bytes that nobody
                // writes during the call (caller's contract), size within `isize::MAX`.
                unsafe { std::slice::from_raw_parts(p.data, p.byte_len) }
            };
            let view = Input::new(p.dtype, p.shape, data);
            match p.name {
                Some(name) => view.named(name),
                None => view,
            }
        })
        .collect();
    let outputs = outs
        .iter()
        .map(|p| {
            let data: &'a mut [u8] = if p.byte_len == 0 {
                &mut []
            } else {
                // SAFETY: non-NULL, `byte_len` writable bytes (caller's contract: an output's
                // `data` is `const` in the struct it shares with inputs, but must point to
                // writable memory), disjoint from every other buffer of the call (checked
                // above) and not accessed by anyone else during the call (caller's contract).
                unsafe { std::slice::from_raw_parts_mut(p.data.cast_mut(), p.byte_len) }
            };
            let view = Output::new(p.dtype, p.shape, data);
            match p.name {
                Some(name) => view.named(name),
                None => view,
            }
        })
        .collect();
    Ok(Views { inputs, outputs })
}
