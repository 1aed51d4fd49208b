//! Loaded models and the tensor-info arrays describing them.
//!
//! This module owns [`Model`] (the object behind an `nrt_model_t*`: the parsed
//! [`MockModel`], the logical/physical core it is loaded on and the execution timeout read
//! at load) and the C tensor-info arrays of `nrt_get_model_tensor_info`: one zeroed
//! allocation of `8 + 296 * n` bytes (u64 count, then the entries, inputs first) followed by
//! every entry's `u32` shape array, recorded in a process-wide registry so that
//! `nrt_free_model_tensor_info` frees exactly what was handed out, independently of the model.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::mem::size_of;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neuron_sys::bindings::{
    NRT_RESOURCE, NRT_TENSOR_USAGE_INPUT, NRT_TENSOR_USAGE_OUTPUT, nrt_tensor_info_array_t,
    nrt_tensor_info_t,
};

use crate::counters::{self, COUNTERS};
use crate::exec::CoreState;
use crate::neff::MockModel;
use crate::report::{Res, fail};
use crate::state::lock;

/// Default `NEURON_RT_EXEC_TIMEOUT`, seconds.
pub(crate) const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// The object behind an `nrt_model_t*`.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) spec: MockModel,
    pub(crate) logical: usize,
    pub(crate) core: Arc<CoreState>,
    pub(crate) timeout: Duration,
}

impl Model {
    pub(crate) fn new(spec: MockModel, core: Arc<CoreState>, timeout: Duration) -> Self {
        core.models.fetch_add(1, Ordering::Relaxed);
        counters::add(&COUNTERS.live_models, 1);
        Model {
            spec,
            logical: core.logical,
            core,
            timeout,
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.core.models.fetch_sub(1, Ordering::Relaxed);
        counters::dec(&COUNTERS.live_models);
    }
}

/// `NEURON_RT_EXEC_TIMEOUT` in (possibly fractional) seconds, default 30.
pub(crate) fn exec_timeout() -> Result<Duration, String> {
    match std::env::var("NEURON_RT_EXEC_TIMEOUT") {
        Err(_) => Ok(DEFAULT_EXEC_TIMEOUT),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
            _ => Err(format!(
                "NEURON_RT_EXEC_TIMEOUT={v:?} is not a positive number of seconds"
            )),
        },
    }
}

/// Live tensor-info arrays: address -> layout of the allocation.
static INFO_ARRAYS: Mutex<BTreeMap<usize, Layout>> = Mutex::new(BTreeMap::new());

const ENTRY: usize = size_of::<nrt_tensor_info_t>();
const HEAD: usize = size_of::<nrt_tensor_info_array_t>();

/// Allocates and fills the tensor-info array of `spec`.
pub(crate) fn info_array(
    spec: &MockModel,
    encoding: crate::version::Encoding,
) -> Res<*mut nrt_tensor_info_array_t> {
    let tensors: Vec<_> = spec
        .inputs
        .iter()
        .map(|t| (t, NRT_TENSOR_USAGE_INPUT))
        .chain(spec.outputs.iter().map(|t| (t, NRT_TENSOR_USAGE_OUTPUT)))
        .collect();
    let n = tensors.len();
    let shapes_at = HEAD + ENTRY * n;
    let dims: usize = tensors.iter().map(|(t, _)| t.shape.len()).sum();
    let total = shapes_at + dims * size_of::<u32>();
    let layout = Layout::from_size_align(total, 8)
        .map_err(|_| fail(NRT_RESOURCE, "tensor info array too large"))?;
    // SAFETY: `total >= HEAD = 8 > 0` and the alignment is a power of two.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return Err(fail(
            NRT_RESOURCE,
            format!("cannot allocate {total} bytes of tensor info"),
        ));
    }
    let mut shape_off = shapes_at;
    for (i, (t, usage)) in tensors.iter().enumerate() {
        let mut name = [0 as std::os::raw::c_char; 256];
        for (d, s) in name.iter_mut().zip(t.name.bytes().take(255)) {
            *d = s as std::os::raw::c_char;
        }
        // SAFETY: the shape array of this entry occupies [shape_off, shape_off + 4*ndim),
        // inside the allocation by the computation of `total`; shape_off is a multiple of 4
        // (HEAD and ENTRY are multiples of 8), so the u32 writes are aligned.
        let shape = unsafe {
            let p = base.add(shape_off).cast::<u32>();
            for (k, d) in t.shape.iter().enumerate() {
                p.add(k).write(*d);
            }
            p
        };
        shape_off += t.shape.len() * size_of::<u32>();
        let entry = nrt_tensor_info_t {
            name,
            usage: *usage,
            // validate() guarantees the size fits in usize.
            size: t.size_bytes().unwrap_or(0) as usize,
            dtype: encoding.code(t.dtype),
            shape,
            ndim: t.shape.len() as u32,
        };
        // SAFETY: entry i occupies [HEAD + ENTRY*i, HEAD + ENTRY*(i+1)) inside the
        // allocation; the offset is a multiple of 8, the struct's alignment.
        unsafe {
            base.add(HEAD + ENTRY * i)
                .cast::<nrt_tensor_info_t>()
                .write(entry)
        };
    }
    // SAFETY: the count occupies the first 8 bytes, 8-aligned.
    unsafe { base.cast::<u64>().write(n as u64) };
    lock(&INFO_ARRAYS).insert(base as usize, layout);
    Ok(base.cast())
}

/// Frees an array from [`info_array`]; `false` if `ptr` is not one (or was freed already).
pub(crate) fn free_info_array(ptr: *mut nrt_tensor_info_array_t) -> bool {
    let Some(layout) = lock(&INFO_ARRAYS).remove(&(ptr as usize)) else {
        return false;
    };
    // SAFETY: the registry held `ptr` with the layout it was allocated with, and removing
    // the entry guarantees this is the only free.
    unsafe { std::alloc::dealloc(ptr.cast(), layout) };
    true
}
