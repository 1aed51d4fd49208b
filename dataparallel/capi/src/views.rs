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

/// The view construction on its own, without an engine, so that it runs under Miri
/// (`cargo xtask miri`): every raw pointer the C caller hands over is turned into a slice
/// here, and Miri checks each such slice against the memory it claims.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ndp_status_t;

    /// A tensor as C would write it, dtype as a raw integer (C may write any value).
    fn raw(name: Option<&CStr>, dtype: u32, shape: &[usize], data: &[u8]) -> TensorAbi {
        TensorAbi {
            name: name.map_or(std::ptr::null(), CStr::as_ptr),
            dtype,
            ndim: shape.len(),
            shape: if shape.is_empty() {
                std::ptr::null()
            } else {
                shape.as_ptr()
            },
            data: if data.is_empty() {
                std::ptr::null()
            } else {
                data.as_ptr()
            },
            byte_len: data.len(),
        }
    }

    /// `views` over arrays of [`TensorAbi`] (the layout of `ndp_tensor_t`).
    fn build<'a>(
        inputs: &'a [TensorAbi],
        outputs: Option<&'a [TensorAbi]>,
    ) -> Result<Views<'a>, Failure> {
        // SAFETY: both arrays are live for `'a`, and every pointer in them comes from a
        // slice or CStr the test keeps alive at least as long; `TensorAbi` has the layout of
        // `ndp_tensor_t` (asserted in `types`).
        unsafe {
            views(
                inputs.as_ptr().cast(),
                inputs.len(),
                outputs.map(|o| (o.as_ptr().cast(), o.len())),
            )
        }
    }

    const F32: u32 = 1;
    const I32: u32 = 8;

    #[test]
    fn named_inputs_and_outputs_become_views_of_the_callers_memory() {
        let shape = [2usize, 3];
        let x = [7u8; 24];
        let y = [1u8; 8];
        let mut out = [0u8; 24];
        let (nx, ny, nz) = (c"x", c"y", c"z");
        let inputs = [
            raw(Some(nx), F32, &shape, &x),
            raw(Some(ny), I32, &shape[..1], &y),
        ];
        let out_shape = [2usize, 3];
        let outputs = [TensorAbi {
            data: out.as_mut_ptr(),
            byte_len: out.len(),
            ..raw(Some(nz), F32, &out_shape, &[])
        }];
        let views = build(&inputs, Some(&outputs)).expect("valid tensors");
        assert_eq!(views.inputs.len(), 2);
        assert_eq!(views.inputs[0].name(), Some("x"));
        assert_eq!(views.inputs[0].dtype(), DType::Float32);
        assert_eq!(views.inputs[0].shape(), &[2, 3]);
        assert_eq!(views.inputs[1].name(), Some("y"));
        assert_eq!(views.inputs[1].dtype(), DType::Int32);
        assert_eq!(views.inputs[1].shape(), &[2]);
        assert_eq!(views.outputs.len(), 1);
        assert_eq!(views.outputs[0].name(), Some("z"));
        assert_eq!(views.outputs[0].shape(), &[2, 3]);
        drop(views);
        // The caller's buffer is still its own once the views are gone.
        out[23] = 9;
        assert_eq!(out[23], 9);
    }

    #[test]
    fn empty_arrays_and_empty_tensors_need_no_pointers() {
        // SAFETY: NULL with a count of 0 is allowed by the contract.
        let views =
            unsafe { views(std::ptr::null(), 0, Some((std::ptr::null(), 0))) }.expect("no tensors");
        assert!(views.inputs.is_empty() && views.outputs.is_empty());

        let inputs = [raw(None, F32, &[], &[])];
        let views = build(&inputs, None).expect("a scalar of no bytes");
        assert_eq!(views.inputs[0].name(), None);
        assert_eq!(views.inputs[0].shape(), &[] as &[usize]);
    }

    #[test]
    fn null_pointers_with_lengths_are_refused_before_any_read() {
        // SAFETY: NULL with a non-zero count is exactly what `views` must refuse unread.
        let e = unsafe { views(std::ptr::null(), 3, None) }
            .err()
            .expect("refused");
        assert_eq!(e.status, ndp_status_t::NDP_ERR_NULL_POINTER);

        let mut t = raw(None, F32, &[4], &[]);
        t.byte_len = 16;
        let e = build(&[t], None).err().expect("refused");
        assert_eq!(e.status, ndp_status_t::NDP_ERR_NULL_POINTER);
        assert!(
            e.message.contains("inputs[0].data is NULL"),
            "{}",
            e.message
        );

        let mut t = raw(None, F32, &[], &[0; 4]);
        t.ndim = 2;
        let e = build(&[t], None).err().expect("refused");
        assert_eq!(e.status, ndp_status_t::NDP_ERR_NULL_POINTER);
        assert!(e.message.contains("inputs[0].shape"), "{}", e.message);
    }

    #[test]
    fn values_c_may_write_but_rust_cannot_hold_are_refused() {
        let data = [0u8; 4];
        let e = build(&[raw(None, 999, &[1], &data)], None)
            .err()
            .expect("unknown dtype");
        assert_eq!(e.status, ndp_status_t::NDP_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("999"), "{}", e.message);

        let name = c"\xff\xfe";
        let e = build(&[raw(Some(name), F32, &[1], &data)], None)
            .err()
            .expect("non-UTF-8 name");
        assert_eq!(e.status, ndp_status_t::NDP_ERR_INVALID_ARGUMENT);
        assert!(e.message.contains("not UTF-8"), "{}", e.message);

        let mut t = raw(None, F32, &[1], &data);
        t.byte_len = usize::MAX;
        let e = build(&[t], None).err().expect("length beyond isize::MAX");
        assert!(e.message.contains("too large"), "{}", e.message);
    }

    #[test]
    fn outputs_that_alias_anything_are_refused() {
        let mut buffer = [0u8; 32];
        let base = buffer.as_mut_ptr();
        let at = |offset: usize, len: usize| TensorAbi {
            // SAFETY: every offset used below is within the 32-byte buffer.
            data: unsafe { base.add(offset) },
            byte_len: len,
            ..raw(None, F32, &[], &[])
        };
        let input = [at(0, 8)];
        let e = build(&input, Some(&[at(4, 8)]))
            .err()
            .expect("output over an input");
        assert!(e.message.contains("must not alias inputs"), "{}", e.message);

        let e = build(&[], Some(&[at(8, 8), at(12, 8)]))
            .err()
            .expect("outputs over each other");
        assert!(e.message.contains("must be disjoint"), "{}", e.message);

        // Adjacent but disjoint ranges are fine.
        let outputs = [at(8, 8), at(16, 16)];
        let views = build(&input, Some(&outputs)).expect("disjoint");
        assert_eq!(views.outputs.len(), 2);
    }
}
