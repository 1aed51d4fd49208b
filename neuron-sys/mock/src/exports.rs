//! The exported C functions: libnrt's ABI (`neuron-sys/include/nrt_abi.h`) plus three mock
//! controls (`nrt_mock_get_counters`, `nrt_mock_reset_counters`, `nrt_mock_set_faults`).
//!
//! This module owns the boundary: every function here runs its body inside a panic boundary
//! (a panic becomes `NRT_FAILURE`, or NULL / 0 for functions returning a pointer or size),
//! checks every pointer argument for NULL (`NRT_INVALID`), and resolves handles through the
//! runtime's registries (`NRT_INVALID_HANDLE` for unknown ones) before doing anything else.
//! Each export's signature is pinned at compile time to the loader's typedef in
//! `neuron_sys::bindings`.
//!
//! Deliberate NULL exceptions, as in libnrt: `nrt_init`'s two version strings and the `name`
//! of `nrt_tensor_allocate`, `nrt_tensor_allocate_empty` and `nrt_tensor_allocate_slice` may
//! be NULL; `nrt_tensor_free` and `nrt_destroy_tensor_set` ignore a NULL argument or a NULL
//! `*argument`.
//!
//! Before `nrt_init` every call returns `NRT_UNINITIALIZED`, after `nrt_close`
//! `NRT_CLOSED`, except the version, status-string and core-count queries and the mock
//! controls, which work at any time.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

use neuron_sys::bindings::*;

use crate::control::{
    nrt_mock_get_counters_fn, nrt_mock_reset_counters_fn, nrt_mock_set_faults_fn,
};
use crate::counters::{self, COUNTERS, Counters};
use crate::exec;
use crate::faults;
use crate::model::{self, Model};
use crate::neff::MockModel;
use crate::report::{Res, fail, quiet};
use crate::state::{self, lock, runtime};
use crate::tensor::{AlignedBuf, CallerPtr, Storage, Tensor, TensorState};
use crate::tensor_set::TensorSet;

/// The libnrt version the mock reports unless `NRT_MOCK_RUNTIME_VERSION` names another.
pub const MOCK_RT_VERSION: (u64, u64, u64, u64) = (2, 30, 50, 0);
const _: () = assert!(
    MOCK_RT_VERSION.0 == crate::version::DEFAULT.0
        && MOCK_RT_VERSION.1 == crate::version::DEFAULT.1
        && MOCK_RT_VERSION.2 == crate::version::DEFAULT.2
        && MOCK_RT_VERSION.3 == crate::version::DEFAULT.3
);

/// Runs an export body that returns a status, converting failures and panics.
fn guard(func: &str, body: impl FnOnce() -> Res) -> NRT_STATUS {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => NRT_SUCCESS,
        Ok(Err(f)) => f.0,
        Err(_) => {
            fail(
                NRT_FAILURE,
                format!("{func}: internal error (panic); please report it"),
            )
            .0
        }
    }
}

/// Runs an export body that returns a value, with `default` on panic.
fn guard_value<T>(func: &str, default: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        fail(
            NRT_FAILURE,
            format!("{func}: internal error (panic); please report it"),
        );
        default
    })
}

/// `NRT_INVALID` when `p` is NULL.
fn need<T: ?Sized>(func: &str, what: &str, p: *const T) -> Res {
    if p.is_null() {
        Err(fail(NRT_INVALID, format!("{func}: {what} is NULL")))
    } else {
        Ok(())
    }
}

/// The bytes of a C string.
///
/// # Safety
/// `p` must be non-NULL and point to a NUL-terminated string valid for the call.
unsafe fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// A tensor name from an optional C string.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for the call.
unsafe fn opt_name(p: *const c_char, fallback: &str) -> String {
    if p.is_null() {
        fallback.to_owned()
    } else {
        // SAFETY: non-NULL here, and valid by the caller's promise.
        String::from_utf8_lossy(unsafe { c_bytes(p) }).into_owned()
    }
}

/// Copies `min(size, size_of::<T>())` bytes of `value` to `out`.
///
/// # Safety
/// `out` must be valid for writes of `min(size, size_of::<T>())` bytes.
unsafe fn write_prefix<T>(value: &T, out: *mut c_void, size: usize) -> usize {
    let n = size.min(size_of::<T>());
    // SAFETY: `value` is a live `T`, readable for size_of::<T>() >= n bytes; `out` is writable
    // for n bytes by the caller's promise; a Rust local cannot overlap the caller's buffer.
    unsafe { ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), out.cast::<u8>(), n) };
    n
}

// ---------------------------------------------------------------------------------------------
// Initialisation, version, status
// ---------------------------------------------------------------------------------------------

/// Starts the runtime: reads the environment, locks the requested cores.
///
/// # Safety
/// `fw_version` and `fal_version` must each be NULL or a valid C string (they are not read).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_init(
    framework: nrt_framework_type_t,
    fw_version: *const c_char,
    fal_version: *const c_char,
) -> NRT_STATUS {
    let _ = (fw_version, fal_version);
    guard("nrt_init", || {
        log::debug!("nrt_init(framework={framework})");
        state::init()
    })
}
const _: nrt_init_fn = Some(nrt_init);

/// Stops the runtime: frees every model, tensor and set, and releases the cores.
///
/// # Safety
/// No other call may be in flight on another thread (libnrt's own rule).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_close() {
    guard_value("nrt_close", (), state::close)
}
const _: nrt_close_fn = Some(nrt_close);

/// Fills `min(size, 224)` bytes of the version: 2.30.50.0 or `NRT_MOCK_RUNTIME_VERSION`,
/// detail `nrt-mock ...`. Under `NRT_MOCK_STRICT_INIT` it is `NRT_UNINITIALIZED` before
/// `nrt_init`.
///
/// # Safety
/// `ver` must be NULL or writable for `min(size, 224)` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_version(ver: *mut nrt_version_t, size: usize) -> NRT_STATUS {
    guard("nrt_get_version", || {
        need("nrt_get_version", "ver", ver)?;
        if crate::version::strict_init() && state::runtime_quiet().is_none() {
            runtime("nrt_get_version")?;
        }
        let crate::version::Version(major, minor, patch, maint) = crate::version::reported()
            .map_err(|e| fail(NRT_INVALID, format!("nrt_get_version: {e}")))?;
        let mut v = nrt_version_t {
            rt_major: major,
            rt_minor: minor,
            rt_patch: patch,
            rt_maintenance: maint,
            rt_detail: [0; 128],
            git_hash: [0; 64],
        };
        let detail = format!(
            "nrt-mock {} (simulated NeuronCores, libnrt ABI 2.30)",
            env!("CARGO_PKG_VERSION")
        );
        for (d, s) in v.rt_detail.iter_mut().zip(detail.bytes().take(127)) {
            *d = s as c_char;
        }
        for (d, s) in v.git_hash.iter_mut().zip(b"nrt-mock".iter()) {
            *d = *s as c_char;
        }
        // SAFETY: `ver` is non-NULL and writable for min(size, 224) bytes (caller's promise).
        unsafe { write_prefix(&v, ver.cast(), size) };
        Ok(())
    })
}
const _: nrt_get_version_fn = Some(nrt_get_version);

/// The static name of a status, e.g. `"NRT_INVALID"`; `"NRT_UNKNOWN_STATUS"` if unknown.
///
/// # Safety
/// Always safe to call; declared `unsafe` to match the loader's typedef.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_status_as_str(status: NRT_STATUS) -> *const c_char {
    let s: &'static CStr = match status {
        NRT_SUCCESS => c"NRT_SUCCESS",
        NRT_FAILURE => c"NRT_FAILURE",
        NRT_INVALID => c"NRT_INVALID",
        NRT_INVALID_HANDLE => c"NRT_INVALID_HANDLE",
        NRT_RESOURCE => c"NRT_RESOURCE",
        NRT_TIMEOUT => c"NRT_TIMEOUT",
        NRT_HW_ERROR => c"NRT_HW_ERROR",
        NRT_QUEUE_FULL => c"NRT_QUEUE_FULL",
        NRT_LOAD_NOT_ENOUGH_NC => c"NRT_LOAD_NOT_ENOUGH_NC",
        NRT_UNSUPPORTED_NEFF_VERSION => c"NRT_UNSUPPORTED_NEFF_VERSION",
        NRT_FAIL_HOST_MEM_ALLOC => c"NRT_FAIL_HOST_MEM_ALLOC",
        NRT_UNINITIALIZED => c"NRT_UNINITIALIZED",
        NRT_CLOSED => c"NRT_CLOSED",
        NRT_QUEUE_EMPTY => c"NRT_QUEUE_EMPTY",
        NRT_EXEC_UNIT_UNRECOVERABLE => c"NRT_EXEC_UNIT_UNRECOVERABLE",
        NRT_EXEC_BAD_INPUT => c"NRT_EXEC_BAD_INPUT",
        NRT_EXEC_COMPLETED_WITH_NUM_ERR => c"NRT_EXEC_COMPLETED_WITH_NUM_ERR",
        NRT_EXEC_COMPLETED_WITH_ERR => c"NRT_EXEC_COMPLETED_WITH_ERR",
        NRT_EXEC_NC_BUSY => c"NRT_EXEC_NC_BUSY",
        NRT_EXEC_OOB => c"NRT_EXEC_OOB",
        NRT_COLL_PENDING => c"NRT_COLL_PENDING",
        NRT_EXEC_HW_ERR_COLLECTIVES => c"NRT_EXEC_HW_ERR_COLLECTIVES",
        NRT_EXEC_HW_ERR_HBM_UE => c"NRT_EXEC_HW_ERR_HBM_UE",
        NRT_EXEC_HW_ERR_NC_UE => c"NRT_EXEC_HW_ERR_NC_UE",
        NRT_EXEC_HW_ERR_DMA_ABORT => c"NRT_EXEC_HW_ERR_DMA_ABORT",
        NRT_EXEC_SW_NQ_OVERFLOW => c"NRT_EXEC_SW_NQ_OVERFLOW",
        NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE => c"NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE",
        NRT_NETWORK_PROXY_FAILURE => c"NRT_NETWORK_PROXY_FAILURE",
        _ => c"NRT_UNKNOWN_STATUS",
    };
    s.as_ptr()
}
const _: nrt_get_status_as_str_fn = Some(nrt_get_status_as_str);

// ---------------------------------------------------------------------------------------------
// Core counts (callable at any time)
// ---------------------------------------------------------------------------------------------

fn count(func: &str, out: *mut u32, get: fn() -> Result<u32, String>) -> NRT_STATUS {
    guard(func, || {
        need(func, "the output pointer", out)?;
        let n = get().map_err(|e| fail(NRT_INVALID, format!("{func}: {e}")))?;
        // SAFETY: `out` is non-NULL and, by the export's contract, writable for a u32.
        unsafe { out.write_unaligned(n) };
        Ok(())
    })
}

/// Physical cores on the simulated instance (`NRT_MOCK_TOTAL_CORES`).
///
/// # Safety
/// `nc_count` must be NULL or writable for a `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_total_nc_count(nc_count: *mut u32) -> NRT_STATUS {
    count("nrt_get_total_nc_count", nc_count, state::total_count)
}
const _: nrt_get_total_nc_count_fn = Some(nrt_get_total_nc_count);

/// Physical cores this process owns (logical cores times `NRT_MOCK_LNC`; before
/// `nrt_init`: what it would own).
///
/// # Safety
/// `nc_count` must be NULL or writable for a `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_visible_nc_count(nc_count: *mut u32) -> NRT_STATUS {
    count("nrt_get_visible_nc_count", nc_count, state::visible_count)
}
const _: nrt_get_visible_nc_count_fn = Some(nrt_get_visible_nc_count);

/// Logical cores on the instance: physical cores / `NRT_MOCK_LNC`.
///
/// # Safety
/// `vnc_count` must be NULL or writable for a `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_total_vnc_count(vnc_count: *mut u32) -> NRT_STATUS {
    count("nrt_get_total_vnc_count", vnc_count, state::total_vnc_count)
}
const _: nrt_get_total_vnc_count_fn = Some(nrt_get_total_vnc_count);

/// Logical cores this process owns (before `nrt_init`: what it would own).
///
/// # Safety
/// `vnc_count` must be NULL or writable for a `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_visible_vnc_count(vnc_count: *mut u32) -> NRT_STATUS {
    count(
        "nrt_get_visible_vnc_count",
        vnc_count,
        state::visible_vnc_count,
    )
}
const _: nrt_get_visible_vnc_count_fn = Some(nrt_get_visible_vnc_count);

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/// Parses a mock NEFF and loads it on logical core `vnc` (`-1`: the least-loaded core).
///
/// # Safety
/// `neff_bytes` must be NULL or readable for `size` bytes; `model` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_load(
    neff_bytes: *const c_void,
    size: usize,
    vnc: i32,
    vnc_count: i32,
    model: *mut *mut nrt_model_t,
) -> NRT_STATUS {
    const F: &str = "nrt_load";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "neff_bytes", neff_bytes)?;
        need(F, "the model output pointer", model)?;
        if vnc_count != -1 && vnc_count != 1 {
            return Err(fail(
                NRT_INVALID,
                format!("{F}: vnc_count {vnc_count} is not supported (deprecated; pass -1)"),
            ));
        }
        // SAFETY: non-NULL and readable for `size` bytes by the caller's promise; the mock
        // copies what it needs before returning.
        let bytes = unsafe { std::slice::from_raw_parts(neff_bytes.cast::<u8>(), size) };
        let max_major =
            crate::version::max_neff_major().map_err(|e| fail(NRT_INVALID, format!("{F}: {e}")))?;
        let spec = MockModel::from_neff_bytes_up_to(bytes, max_major)
            .map_err(|e| fail(e.status(), format!("{F}: {e}")))?;
        // `lnc_size` (u32 at 552; 0 in NEFFs that predate it, meaning 1) must match.
        let lnc_size = match u32::from_le_bytes([bytes[552], bytes[553], bytes[554], bytes[555]]) {
            0 => 1,
            n => n,
        };
        if lnc_size != rt.lnc {
            return Err(fail(
                NRT_INVALID,
                format!(
                    "{F}: the NEFF was compiled for lnc_size {lnc_size}, but this runtime has \
                     LNC {} (NRT_MOCK_LNC)",
                    rt.lnc
                ),
            ));
        }
        let timeout = model::exec_timeout().map_err(|e| fail(NRT_INVALID, format!("{F}: {e}")))?;
        let core =
            if vnc == -1 {
                rt.least_loaded()
            } else {
                let l = rt.logical(vnc).ok_or_else(|| {
                fail(NRT_LOAD_NOT_ENOUGH_NC, format!(
                    "{F}: logical core {vnc} does not exist: this process owns {} cores (0-{})",
                    rt.cores.len(),
                    rt.cores.len() - 1
                ))
            })?;
                rt.cores[l].clone()
            };
        log::info!(
            "{F}: model {:?} on logical core {} (nc{})",
            spec.name,
            core.logical,
            core.phys
        );
        let handle = rt.add_model(Model::new(spec, core, timeout));
        counters::add(&COUNTERS.loads, 1);
        // SAFETY: `model` is non-NULL and writable by the caller's promise.
        unsafe { model.write_unaligned(handle) };
        Ok(())
    })
}
const _: nrt_load_fn = Some(nrt_load);

/// Unloads a model; the handle is invalid afterwards.
///
/// # Safety
/// Always memory-safe: the handle is only looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_unload(model: *mut nrt_model_t) -> NRT_STATUS {
    guard("nrt_unload", || {
        runtime("nrt_unload")?.remove_model("nrt_unload", model)
    })
}
const _: nrt_unload_fn = Some(nrt_unload);

/// Allocates the model's tensor-info array (inputs, then outputs); free it with
/// `nrt_free_model_tensor_info`.
///
/// # Safety
/// `info` must be NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_model_tensor_info(
    model: *mut nrt_model_t,
    info: *mut *mut nrt_tensor_info_array_t,
) -> NRT_STATUS {
    const F: &str = "nrt_get_model_tensor_info";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "the info output pointer", info)?;
        let m = rt.model(F, model)?;
        let array = model::info_array(&m.spec, rt.encoding)?;
        // SAFETY: `info` is non-NULL and writable by the caller's promise.
        unsafe { info.write_unaligned(array) };
        Ok(())
    })
}
const _: nrt_get_model_tensor_info_fn = Some(nrt_get_model_tensor_info);

/// Frees an array from `nrt_get_model_tensor_info` (also after the model is unloaded, and
/// after `nrt_close`).
///
/// # Safety
/// Always memory-safe: the pointer is looked up in a registry before it is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_free_model_tensor_info(
    info: *mut nrt_tensor_info_array_t,
) -> NRT_STATUS {
    const F: &str = "nrt_free_model_tensor_info";
    guard(F, || {
        need(F, "info", info)?;
        if model::free_info_array(info) {
            return Ok(());
        }
        runtime(F)?;
        Err(fail(
            NRT_INVALID_HANDLE,
            format!(
                "{F}: {info:p} is not a tensor info array from nrt_get_model_tensor_info (or was freed)"
            ),
        ))
    })
}
const _: nrt_free_model_tensor_info_fn = Some(nrt_free_model_tensor_info);

/// Fills `min(info_size_in, 4)` bytes of `nrt_model_info_t` (the logical core) and reports the
/// count in `*info_size_out`.
///
/// # Safety
/// `info` must be NULL or writable for `min(info_size_in, 4)` bytes; `info_size_out` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_model_info(
    model: *const nrt_model_t,
    info: *mut nrt_model_info_t,
    info_size_in: usize,
    info_size_out: *mut usize,
) -> NRT_STATUS {
    const F: &str = "nrt_get_model_info";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "info", info)?;
        need(F, "info_size_out", info_size_out)?;
        let m = rt.model(F, model)?;
        let v = nrt_model_info_t {
            vnc: m.logical as u32,
        };
        // SAFETY: `info` is writable for min(info_size_in, 4) bytes and `info_size_out` for a
        // usize, both non-NULL, by the caller's promise.
        unsafe {
            let n = write_prefix(&v, info.cast(), info_size_in);
            info_size_out.write_unaligned(n);
        }
        Ok(())
    })
}
const _: nrt_get_model_info_fn = Some(nrt_get_model_info);

/// Always 1: the mock stages every model once.
///
/// # Safety
/// `instance_count` must be NULL or writable for a `u32`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_model_instance_count(
    model: *mut nrt_model_t,
    instance_count: *mut u32,
) -> NRT_STATUS {
    const F: &str = "nrt_get_model_instance_count";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "instance_count", instance_count)?;
        rt.model(F, model)?;
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { instance_count.write_unaligned(1) };
        Ok(())
    })
}
const _: nrt_get_model_instance_count_fn = Some(nrt_get_model_instance_count);

// ---------------------------------------------------------------------------------------------
// Tensor sets
// ---------------------------------------------------------------------------------------------

/// Creates an empty tensor set.
///
/// # Safety
/// `result` must be NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_allocate_tensor_set(result: *mut *mut nrt_tensor_set_t) -> NRT_STATUS {
    const F: &str = "nrt_allocate_tensor_set";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "result", result)?;
        let set = rt.add_set(TensorSet::new());
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { result.write_unaligned(set) };
        Ok(())
    })
}
const _: nrt_allocate_tensor_set_fn = Some(nrt_allocate_tensor_set);

/// Destroys a tensor set (not its tensors) and sets `*tensor_set = NULL`.
///
/// # Safety
/// `tensor_set` must be NULL or point to a readable and writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_destroy_tensor_set(tensor_set: *mut *mut nrt_tensor_set_t) {
    const F: &str = "nrt_destroy_tensor_set";
    guard_value(F, (), || {
        if tensor_set.is_null() {
            return;
        }
        // SAFETY: non-NULL and readable by the caller's promise.
        let p = unsafe { tensor_set.read_unaligned() };
        if !p.is_null() {
            if let Some(rt) = state::runtime_quiet() {
                let _ = rt.remove_set(F, p);
            }
        }
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor_set.write_unaligned(ptr::null_mut()) };
    })
}
const _: nrt_destroy_tensor_set_fn = Some(nrt_destroy_tensor_set);

/// Adds `tensor` under `tensor_name`, replacing an entry of that name. The set does not own it.
///
/// # Safety
/// `tensor_name` must be NULL or a valid C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_add_tensor_to_tensor_set(
    tensor_set: *mut nrt_tensor_set_t,
    tensor_name: *const c_char,
    tensor: *mut nrt_tensor_t,
) -> NRT_STATUS {
    const F: &str = "nrt_add_tensor_to_tensor_set";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "tensor_name", tensor_name)?;
        let set = rt.set(F, tensor_set)?;
        rt.tensor(F, tensor)?;
        // SAFETY: non-NULL and a valid C string by the caller's promise.
        let name = unsafe { c_bytes(tensor_name) };
        set.add(name, tensor as usize);
        Ok(())
    })
}
const _: nrt_add_tensor_to_tensor_set_fn = Some(nrt_add_tensor_to_tensor_set);

/// Looks a tensor up by name; `NRT_FAILURE` (output untouched) when the name is missing.
///
/// # Safety
/// `tensor_name` must be NULL or a valid C string; `tensor` NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_get_tensor_from_tensor_set(
    tensor_set: *mut nrt_tensor_set_t,
    tensor_name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    const F: &str = "nrt_get_tensor_from_tensor_set";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "tensor_name", tensor_name)?;
        need(F, "the tensor output pointer", tensor)?;
        let set = rt.set(F, tensor_set)?;
        // SAFETY: non-NULL and a valid C string by the caller's promise.
        let name = unsafe { c_bytes(tensor_name) };
        let Some(addr) = set.get(name) else {
            // A lookup miss is an answer, not an error worth a stderr line.
            log::debug!("{F}: no tensor named {:?}", String::from_utf8_lossy(name));
            return Err(quiet(NRT_FAILURE));
        };
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor.write_unaligned(addr as *mut nrt_tensor_t) };
        Ok(())
    })
}
const _: nrt_get_tensor_from_tensor_set_fn = Some(nrt_get_tensor_from_tensor_set);

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

fn run(
    func: &str,
    model: *mut nrt_model_t,
    input_set: *const c_void,
    output_set: *mut c_void,
    repeat: c_int,
) -> Res {
    let rt = runtime(func)?;
    let m = rt.model(func, model)?;
    let ins = rt.set(func, input_set)?;
    let outs = rt.set(func, output_set)?;
    let repeat = u32::try_from(repeat)
        .ok()
        .filter(|&r| r >= 1)
        .ok_or_else(|| {
            fail(
                NRT_INVALID,
                format!("{func}: repeat_count {repeat} must be at least 1"),
            )
        })?;
    exec::execute(&rt, &m, &ins, &outs, repeat)
}

/// Runs the model once on the input set's tensors, writing the output set's tensors.
///
/// # Safety
/// Always memory-safe with respect to the handles (looked up, never dereferenced); the tensors'
/// attached caller buffers must still be valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_execute(
    model: *mut nrt_model_t,
    input_set: *const nrt_tensor_set_t,
    output_set: *mut nrt_tensor_set_t,
) -> NRT_STATUS {
    guard("nrt_execute", || {
        run("nrt_execute", model, input_set, output_set, 1)
    })
}
const _: nrt_execute_fn = Some(nrt_execute);

/// Runs the model `repeat_count` (>= 1) times; see the `exec` module docs for chaining.
///
/// # Safety
/// As for [`nrt_execute`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_execute_repeat(
    model: *mut nrt_model_t,
    input_set: *const nrt_tensor_set_t,
    output_set: *mut nrt_tensor_set_t,
    repeat_count: c_int,
) -> NRT_STATUS {
    guard("nrt_execute_repeat", || {
        run(
            "nrt_execute_repeat",
            model,
            input_set,
            output_set,
            repeat_count,
        )
    })
}
const _: nrt_execute_repeat_fn = Some(nrt_execute_repeat);

// ---------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------

/// Allocates `size` zeroed bytes: DEVICE on logical core `vnc` (charged to its budget), or
/// HOST / VIRTUAL host memory (`vnc` ignored). `name` may be NULL.
///
/// # Safety
/// `name` must be NULL or a valid C string; `tensor` NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_allocate(
    tensor_placement: nrt_tensor_placement_t,
    vnc: c_int,
    size: usize,
    name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_allocate";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "the tensor output pointer", tensor)?;
        // SAFETY: NULL or a valid C string by the caller's promise.
        let name = unsafe { opt_name(name, "(unnamed)") };
        if size == 0 {
            return Err(fail(
                NRT_INVALID,
                format!("{F}: tensor {name:?} has size 0"),
            ));
        }
        let (core, budget) = match tensor_placement {
            NRT_TENSOR_PLACEMENT_DEVICE => {
                let l = rt.logical(vnc).ok_or_else(|| {
                    fail(NRT_INVALID, format!(
                        "{F}: tensor {name:?}: vnc {vnc} is not a logical core of this process (0-{})",
                        rt.cores.len() - 1
                    ))
                })?;
                (Some(l), Some(rt.budgets[l].clone()))
            }
            NRT_TENSOR_PLACEMENT_HOST | NRT_TENSOR_PLACEMENT_VIRTUAL => (None, None),
            other => {
                return Err(fail(
                    NRT_INVALID,
                    format!("{F}: tensor {name:?}: unknown placement {other}"),
                ));
            }
        };
        // Runtimes before 2.30.50 overflow allocations of 4 GiB or more (a known issue): the
        // mock reproduces it when it reports such a version, allocating the size modulo 4 GiB.
        let size = if rt.version < crate::version::Version(2, 30, 50, 0) && size >> 32 != 0 {
            let wrapped = size & 0xFFFF_FFFF;
            log::warn!(
                "{F}: tensor {name:?}: {size} bytes overflow to {wrapped} on runtimes before \
                 2.30.50 (NRT_MOCK_RUNTIME_VERSION)"
            );
            if wrapped == 0 {
                return Err(fail(
                    NRT_INVALID,
                    format!("{F}: tensor {name:?} has size 0"),
                ));
            }
            wrapped
        } else {
            size
        };
        let buf = AlignedBuf::new(size, budget)?;
        let t = Tensor::new(
            name,
            TensorState {
                placement: tensor_placement,
                core,
                storage: Storage::Owned {
                    buf: buf.into(),
                    offset: 0,
                    len: size,
                },
            },
        );
        let handle = rt.add_tensor(t);
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor.write_unaligned(handle) };
        Ok(())
    })
}
const _: nrt_tensor_allocate_fn = Some(nrt_tensor_allocate);

/// Frees a tensor handle (its storage goes with the last slice) and sets `*tensor = NULL`.
///
/// # Safety
/// `tensor` must be NULL or point to a readable and writable pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_free(tensor: *mut *mut nrt_tensor_t) {
    const F: &str = "nrt_tensor_free";
    guard_value(F, (), || {
        if tensor.is_null() {
            return;
        }
        // SAFETY: non-NULL and readable by the caller's promise.
        let p = unsafe { tensor.read_unaligned() };
        if !p.is_null() {
            if let Some(rt) = state::runtime_quiet() {
                if let Ok(t) = rt.tensor(F, p) {
                    if rt.version < crate::version::Version(2, 29, 40, 0)
                        && t.is_empty()
                        && t.attach_failed.load(std::sync::atomic::Ordering::Relaxed)
                    {
                        // Runtimes before 2.29.40 crash here (a known issue); so does the mock
                        // when it reports such a version, so a regression cannot pass.
                        eprintln!(
                            "nrt-mock: {F} of empty tensor {:?} after a failed attach: runtimes \
                             before 2.29.40 crash here (NRT_MOCK_RUNTIME_VERSION); aborting",
                            t.name
                        );
                        std::process::abort();
                    }
                }
                let _ = rt.remove_tensor(F, p);
            }
        }
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor.write_unaligned(ptr::null_mut()) };
    })
}
const _: nrt_tensor_free_fn = Some(nrt_tensor_free);

fn storage_of(func: &str, t: &Tensor) -> Res<crate::tensor::View> {
    t.view().ok_or_else(|| {
        fail(
            NRT_INVALID,
            format!(
                "{func}: tensor {:?} has no storage (allocate_empty without attach)",
                t.name
            ),
        )
    })
}

fn out_of_bounds(
    func: &str,
    t: &Tensor,
    offset: u64,
    size: usize,
    len: usize,
) -> crate::report::Fail {
    fail(
        NRT_INVALID,
        format!(
            "{func}: range [{offset}, {offset}+{size}) is outside tensor {:?} of {len} bytes",
            t.name
        ),
    )
}

/// Copies `size` bytes at `offset` of the tensor into `buf`.
///
/// # Safety
/// `buf` must be NULL or writable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_read(
    tensor: *const nrt_tensor_t,
    buf: *mut c_void,
    offset: usize,
    size: usize,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_read";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "buf", buf)?;
        let t = rt.tensor(F, tensor)?;
        let view = storage_of(F, &t)?;
        // SAFETY: non-NULL and writable for `size` bytes by the caller's promise.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), size) };
        view.read(offset, dst)
            .map_err(|()| out_of_bounds(F, &t, offset as u64, size, view.len()))?;
        counters::add(&COUNTERS.bytes_read, size as u64);
        counters::add(&COUNTERS.tensor_reads, 1);
        Ok(())
    })
}
const _: nrt_tensor_read_fn = Some(nrt_tensor_read);

/// Copies `size` bytes from `buf` into the tensor at `offset`.
///
/// # Safety
/// `buf` must be NULL or readable for `size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_write(
    tensor: *mut nrt_tensor_t,
    buf: *const c_void,
    offset: usize,
    size: usize,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_write";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "buf", buf)?;
        let t = rt.tensor(F, tensor)?;
        let view = storage_of(F, &t)?;
        // SAFETY: non-NULL and readable for `size` bytes by the caller's promise.
        let src = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
        view.write(offset, src)
            .map_err(|()| out_of_bounds(F, &t, offset as u64, size, view.len()))?;
        counters::add(&COUNTERS.bytes_written, size as u64);
        counters::add(&COUNTERS.tensor_writes, 1);
        Ok(())
    })
}
const _: nrt_tensor_write_fn = Some(nrt_tensor_write);

/// Size in bytes; 0 for NULL, unknown handles, tensors without storage, or outside a running
/// runtime.
///
/// # Safety
/// Always memory-safe: the handle is only looked up.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_get_size(tensor: *const nrt_tensor_t) -> usize {
    const F: &str = "nrt_tensor_get_size";
    guard_value(F, 0, || {
        let Ok(rt) = runtime(F) else { return 0 };
        rt.tensor(F, tensor)
            .ok()
            .and_then(|t| t.view())
            .map_or(0, |v| v.len())
    })
}
const _: nrt_tensor_get_size_fn = Some(nrt_tensor_get_size);

/// A tensor handle with no storage (placement VIRTUAL); attach a buffer before using it.
///
/// # Safety
/// `name` must be NULL or a valid C string; `tensor` NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_allocate_empty(
    name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_allocate_empty";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "the tensor output pointer", tensor)?;
        // SAFETY: NULL or a valid C string by the caller's promise.
        let name = unsafe { opt_name(name, "(unnamed)") };
        let t = Tensor::new(
            name,
            TensorState {
                placement: NRT_TENSOR_PLACEMENT_VIRTUAL,
                core: None,
                storage: Storage::Empty,
            },
        );
        let handle = rt.add_tensor(t);
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor.write_unaligned(handle) };
        Ok(())
    })
}
const _: nrt_tensor_allocate_empty_fn = Some(nrt_tensor_allocate_empty);

/// Makes `buffer[0..size)` the tensor's storage (placement becomes VIRTUAL). Storage the tensor
/// owned is released (when no slice shares it); the caller's buffer is never freed.
///
/// # Safety
/// `buffer` must stay valid for reads and writes of `size` bytes until the tensor (and every
/// slice of it) is freed or re-attached.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_attach_buffer(
    tensor: *mut nrt_tensor_t,
    buffer: *mut c_void,
    size: usize,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_attach_buffer";
    guard(F, || {
        let rt = runtime(F)?;
        let t = rt.tensor(F, tensor)?;
        let refused = if buffer.is_null() {
            Some(format!("{F}: tensor {:?}: buffer is NULL", t.name))
        } else if size == 0 {
            Some(format!("{F}: tensor {:?}: size 0", t.name))
        } else {
            None
        };
        if let Some(message) = refused {
            t.attach_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(fail(NRT_INVALID, message));
        }
        let old = {
            let mut st = lock(&t.state);
            st.placement = NRT_TENSOR_PLACEMENT_VIRTUAL;
            st.core = None;
            std::mem::replace(
                &mut st.storage,
                Storage::Attached {
                    ptr: CallerPtr(buffer.cast()),
                    len: size,
                },
            )
        };
        drop(old);
        Ok(())
    })
}
const _: nrt_tensor_attach_buffer_fn = Some(nrt_tensor_attach_buffer);

/// A new handle aliasing `[offset, offset+size)` of the source's storage (no copy). Owned
/// storage is shared and freed with the last handle. `name` may be NULL.
///
/// # Safety
/// `name` must be NULL or a valid C string; `tensor_slice` NULL or writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_allocate_slice(
    tensor_source: *const nrt_tensor_t,
    offset: usize,
    size: usize,
    name: *const c_char,
    tensor_slice: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_allocate_slice";
    guard(F, || {
        let rt = runtime(F)?;
        need(F, "the slice output pointer", tensor_slice)?;
        let src = rt.tensor(F, tensor_source)?;
        // SAFETY: NULL or a valid C string by the caller's promise.
        let name = unsafe { opt_name(name, &format!("{}[{offset}..]", src.name)) };
        if size == 0 {
            return Err(fail(NRT_INVALID, format!("{F}: slice {name:?} has size 0")));
        }
        let state = {
            let st = lock(&src.state);
            let len = match &st.storage {
                Storage::Empty => 0,
                Storage::Owned { len, .. } | Storage::Attached { len, .. } => *len,
            };
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(out_of_bounds(F, &src, offset as u64, size, len));
            }
            let storage = match &st.storage {
                Storage::Empty => unreachable!("len 0 rejects every slice"),
                Storage::Owned {
                    buf, offset: base, ..
                } => Storage::Owned {
                    buf: buf.clone(),
                    offset: base + offset,
                    len: size,
                },
                Storage::Attached { ptr, .. } => Storage::Attached {
                    // SAFETY: offset + size <= len, so the result stays inside the caller's buffer.
                    ptr: CallerPtr(unsafe { ptr.0.add(offset) }),
                    len: size,
                },
            };
            TensorState {
                placement: st.placement,
                core: st.core,
                storage,
            }
        };
        let handle = rt.add_tensor(Tensor::new(name, state));
        // SAFETY: non-NULL and writable by the caller's promise.
        unsafe { tensor_slice.write_unaligned(handle) };
        Ok(())
    })
}
const _: nrt_tensor_allocate_slice_fn = Some(nrt_tensor_allocate_slice);

/// The address of the tensor's storage; NULL on any error or when it has none.
///
/// # Safety
/// Always memory-safe: the handle is only looked up.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_get_va(tensor: *const nrt_tensor_t) -> *mut c_void {
    const F: &str = "nrt_tensor_get_va";
    guard_value(F, ptr::null_mut(), || {
        let Ok(rt) = runtime(F) else {
            return ptr::null_mut();
        };
        match rt.tensor(F, tensor).and_then(|t| storage_of(F, &t)) {
            Ok(v) => v.ptr().cast(),
            Err(_) => ptr::null_mut(),
        }
    })
}
const _: nrt_tensor_get_va_fn = Some(nrt_tensor_get_va);

/// Sets `size` bytes at `offset` to `value as u8`.
///
/// # Safety
/// Always memory-safe: the handle is looked up and the range bounds-checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_memset(
    tensor: *mut nrt_tensor_t,
    offset: u64,
    value: c_int,
    size: usize,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_memset";
    guard(F, || {
        let rt = runtime(F)?;
        let t = rt.tensor(F, tensor)?;
        let view = storage_of(F, &t)?;
        let off =
            usize::try_from(offset).map_err(|_| out_of_bounds(F, &t, offset, size, view.len()))?;
        view.fill(off, value as u8, size)
            .map_err(|()| out_of_bounds(F, &t, offset, size, view.len()))?;
        counters::add(&COUNTERS.bytes_memset, size as u64);
        Ok(())
    })
}
const _: nrt_tensor_memset_fn = Some(nrt_tensor_memset);

/// Copies `size` bytes between tensors (overlap allowed). Two DEVICE tensors must be on the
/// same logical core.
///
/// # Safety
/// Always memory-safe: the handles are looked up and both ranges bounds-checked.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_tensor_copy(
    src: *const nrt_tensor_t,
    src_offset: usize,
    dst: *mut nrt_tensor_t,
    dst_offset: usize,
    size: usize,
) -> NRT_STATUS {
    const F: &str = "nrt_tensor_copy";
    guard(F, || {
        let rt = runtime(F)?;
        let s = rt.tensor(F, src)?;
        let d = rt.tensor(F, dst)?;
        let (sp, sc) = s.placement();
        let (dp, dc) = d.placement();
        if sp == NRT_TENSOR_PLACEMENT_DEVICE && dp == NRT_TENSOR_PLACEMENT_DEVICE && sc != dc {
            return Err(fail(
                NRT_INVALID,
                format!(
                    "{F}: {:?} is on logical core {sc:?} and {:?} on {dc:?}: device tensors must share a core",
                    s.name, d.name
                ),
            ));
        }
        let sv = storage_of(F, &s)?;
        let dv = storage_of(F, &d)?;
        let (from, _) = sv
            .sub(src_offset, size)
            .map_err(|()| out_of_bounds(F, &s, src_offset as u64, size, sv.len()))?;
        let (to, _) = dv
            .sub(dst_offset, size)
            .map_err(|()| out_of_bounds(F, &d, dst_offset as u64, size, dv.len()))?;
        // SAFETY: both ranges are inside live storage (bounds-checked above; owned buffers kept
        // alive by the views, attached ones by the caller's promise); `copy` is a memmove, so
        // overlapping ranges of one buffer are fine.
        unsafe { ptr::copy(from, to, size) };
        counters::add(&COUNTERS.bytes_copied, size as u64);
        Ok(())
    })
}
const _: nrt_tensor_copy_fn = Some(nrt_tensor_copy);

// ---------------------------------------------------------------------------------------------
// Mock controls
// ---------------------------------------------------------------------------------------------

/// Copies `min(size, sizeof(nrt_mock_counters_t))` bytes of the counters to `out`.
///
/// # Safety
/// `out` must be NULL or writable for `min(size, size_of::<Counters>())` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_mock_get_counters(out: *mut Counters, size: usize) -> NRT_STATUS {
    guard("nrt_mock_get_counters", || {
        need("nrt_mock_get_counters", "out", out)?;
        let snapshot = COUNTERS.snapshot();
        // SAFETY: `out` is non-NULL and writable for min(size, sizeof) bytes by the caller's
        // promise.
        unsafe { write_prefix(&snapshot, out.cast(), size) };
        Ok(())
    })
}
const _: nrt_mock_get_counters_fn = nrt_mock_get_counters;

/// Zeroes the counters except the `live_*` gauges.
///
/// # Safety
/// Always safe to call; `unsafe` only for symmetry with the other exports.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_mock_reset_counters() {
    guard_value("nrt_mock_reset_counters", (), || COUNTERS.reset())
}
const _: nrt_mock_reset_counters_fn = nrt_mock_reset_counters;

/// Replaces the fault rules (`PHYS_CORE:NTH:STATUS;...`); NULL or `""` clears them. A
/// malformed list leaves the rules unchanged and returns `NRT_INVALID`.
///
/// # Safety
/// `rules` must be NULL or a valid C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nrt_mock_set_faults(rules: *const c_char) -> NRT_STATUS {
    const F: &str = "nrt_mock_set_faults";
    guard(F, || {
        let text = if rules.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and a valid C string by the caller's promise.
            std::str::from_utf8(unsafe { c_bytes(rules) })
                .map_err(|_| fail(NRT_INVALID, format!("{F}: the rules are not UTF-8")))?
        };
        let parsed =
            faults::parse_rules(text).map_err(|e| fail(NRT_INVALID, format!("{F}: {e}")))?;
        faults::install(parsed);
        Ok(())
    })
}
const _: nrt_mock_set_faults_fn = nrt_mock_set_faults;
