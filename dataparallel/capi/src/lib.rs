//! `libneuron_dp`: the C ABI of the [`dataparallel`] engine, for C and C++ hosts.
//!
//! Every item here is part of the C API (`include/neuron_dp.h`); Rust callers use
//! [`dataparallel::DataParallel`] instead. The header is generated from this crate by
//! `cargo xtask header` (cbindgen, configured by `cbindgen.toml`) and committed; the
//! documentation of each function below is copied into it. The crate builds
//! `libneuron_dp.so` (SONAME `libneuron_dp.so.<major>`, see `build.rs`) and `libneuron_dp.a`.
//! It uses only the engine's public API.
//!
//! # Rules every function follows
//!
//! - It returns an [`ndp_status_t`] (except the few that cannot fail); on failure
//!   [`ndp_last_error`] returns the message (the text the Rust error's `Display` prints) and
//!   [`ndp_last_nrt_status`] the libnrt status, on the calling thread.
//! - It checks every pointer and length it can: NULL where a pointer is required is
//!   `NDP_ERR_NULL_POINTER`, never a crash. What it cannot check (that a non-NULL pointer
//!   points to as much memory as its length says) is the caller's contract, stated in each
//!   function's `# Safety`.
//! - It runs inside a panic boundary: a panic is contained and returned as `NDP_ERR_PANIC`
//!   with its message; nothing unwinds into C. (The library must be built with the default
//!   `panic = "unwind"`.)
//!
//! # Engine handles and threads
//!
//! An `ndp_engine_t*` is an opaque key into a registry of live engines, never dereferenced:
//!
//! - every function may be called on one engine from any number of threads at once;
//! - `ndp_engine_destroy` may run while other threads are inside calls on the same engine:
//!   those calls finish normally, and the engine is freed when the last of them returns;
//! - a call that starts after the handle was destroyed (or with a pointer that never was a
//!   handle) returns `NDP_ERR_INVALID_ARGUMENT`; handles are never reused, so a stale one
//!   cannot reach a newer engine;
//! - pointers an engine hands out (`ndp_tensor_info_t::name`, `shape`, the runtime version
//!   string) are valid until `ndp_engine_destroy` is called on it.

#![allow(non_camel_case_types)]
#![warn(missing_docs)]

mod error;
mod registry;
mod types;
mod views;

use std::ffi::{CStr, c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use neuron_rt::{Neff, Runtime};

pub use error::ndp_status_t;
#[doc(hidden)]
pub use error::run_in_boundary_for_tests;
#[doc(hidden)]
pub use error::status_of_kind;
use error::{Failure, boundary};
use registry::EngineHandle;
pub use registry::ndp_engine_t;
pub use types::{
    ndp_config_t, ndp_core_health_t, ndp_core_metrics_t, ndp_dtype_t, ndp_tensor_info_t,
    ndp_tensor_t,
};

use dataparallel::DataParallel;

/// Writes `value` through the out-pointer `out`.
///
/// # Safety
///
/// `out` is NULL or points to memory writable as a `T` (checked for NULL and alignment).
unsafe fn write_out<T>(function: &str, name: &str, out: *mut T, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(function, name));
    }
    if !out.is_aligned() {
        return Err(Failure::invalid(format!(
            "{function}: `{name}` is not aligned"
        )));
    }
    // SAFETY: non-NULL, aligned, and writable as a `T` by the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// The library's version, e.g. "0.1.0". A static string: never freed, never changes. Never
/// fails.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(version) => version,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The message of the last failed `ndp_` call on this thread, or "" when the last call
/// succeeded. The text is what the Rust error's `Display` prints.
///
/// The string is owned by the library and valid until the next `ndp_` call on this thread
/// (other than `ndp_last_error`, `ndp_last_nrt_status`, `ndp_version` and
/// `ndp_config_default`, which leave it alone). Never NULL; never fails.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// The libnrt status code behind the last failed `ndp_` call on this thread, or -1 when that
/// error did not come from libnrt (or the last call succeeded). Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_last_nrt_status() -> i32 {
    error::last_nrt_status()
}

/// The default configuration: every core the process owns, dim 0, dynamic batching on,
/// even split, two workers per core, no CPU pinning, no attach mode, small calls on the
/// first cores (as the reference). Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_config_default() -> ndp_config_t {
    ndp_config_t::default()
}

/// Initialises (or shares) the runtime, loads the model on the configured cores and
/// registers the engine.
///
/// # Safety
///
/// `config` as for `ndp_engine_create_from_path`.
unsafe fn create(
    config: *const ndp_config_t,
    neff: impl FnOnce() -> Result<Neff, Failure>,
) -> Result<*mut ndp_engine_t, Failure> {
    // SAFETY: forwarded from the exported function's contract on `config`.
    let config = unsafe { types::ConfigAbi::read(config) }?;
    let neff = neff()?;
    let runtime = Runtime::init()?;
    let engine = DataParallel::new(&runtime, &neff, config)?;
    registry::insert(EngineHandle::new(engine))
}

/// Creates an engine from a NEFF file: loads the model on every configured core and starts
/// the workers. On success `*engine_out` is the new engine (destroy it with
/// `ndp_engine_destroy`); on failure it is set to NULL.
///
/// `config` may be NULL for `ndp_config_default()`. `dynamic_batching` with `dim != 0` is
/// not an error: dynamic batching is switched off (see `ndp_config_t::dynamic_batching`).
///
/// Errors: NULL `neff_path` or `engine_out`: NDP_ERR_NULL_POINTER; a bad `config` field
/// (both `device_ids` and `device_list`, a misaligned pointer): NDP_ERR_INVALID_ARGUMENT;
/// the file cannot be read: NDP_ERR_IO; a malformed NEFF, or one libnrt refuses as invalid
/// or unsupported: NDP_ERR_NEFF; bad device ids, NEURON_RT_VISIBLE_CORES or
/// NEURON_RT_NUM_CORES: NDP_ERR_DEVICE_IDS; a configuration the model cannot run (zero
/// split size or workers, `dim` out of range): NDP_ERR_CONFIG; no libnrt:
/// NDP_ERR_LIBRARY_NOT_FOUND; libnrt failing (init, load, allocate): NDP_ERR_RUNTIME; a
/// worker thread cannot start: NDP_ERR_SYSTEM; a contained bug: NDP_ERR_PANIC.
///
/// # Safety
///
/// `neff_path` is NULL or a NUL-terminated string; `config` is NULL or points to a readable
/// `ndp_config_t` whose `device_ids` (NULL, or `num_device_ids` `int32_t`s) and
/// `device_list` (NULL, or a NUL-terminated string) are valid; `engine_out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_create_from_path(
    neff_path: *const c_char,
    config: *const ndp_config_t,
    engine_out: *mut *mut ndp_engine_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_create_from_path";
    boundary(F, || {
        // SAFETY: `engine_out` is NULL or writable (caller's contract).
        unsafe { write_out(F, "engine_out", engine_out, std::ptr::null_mut()) }?;
        if neff_path.is_null() {
            return Err(Failure::null(F, "neff_path"));
        }
        let read_neff = || {
            // SAFETY: a non-NULL `neff_path` is NUL-terminated (caller's contract).
            let path = unsafe { CStr::from_ptr(neff_path) };
            let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
            Ok(Neff::from_path(path)?)
        };
        // SAFETY: forwarded from the caller's contract on `config`.
        let engine = unsafe { create(config, read_neff) }?;
        // SAFETY: checked writable above.
        unsafe { write_out(F, "engine_out", engine_out, engine) }
    })
}

/// Creates an engine from a NEFF in memory (`neff_len` bytes at `neff`, copied; the caller
/// may free them when this returns). Otherwise as `ndp_engine_create_from_path`.
///
/// Errors: as `ndp_engine_create_from_path`, with NULL `neff` (and no NDP_ERR_IO).
///
/// # Safety
///
/// `neff` is NULL or points to `neff_len` readable bytes; `config` and `engine_out` as for
/// `ndp_engine_create_from_path`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_create_from_bytes(
    neff: *const c_void,
    neff_len: usize,
    config: *const ndp_config_t,
    engine_out: *mut *mut ndp_engine_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_create_from_bytes";
    boundary(F, || {
        // SAFETY: `engine_out` is NULL or writable (caller's contract).
        unsafe { write_out(F, "engine_out", engine_out, std::ptr::null_mut()) }?;
        if neff.is_null() {
            return Err(Failure::null(F, "neff"));
        }
        let read_neff = || {
            // SAFETY: `neff_len` readable bytes at the non-NULL `neff` (caller's contract).
            let bytes = unsafe { types::slice(neff.cast::<u8>(), neff_len, "neff") }?;
            Ok(Neff::from_bytes(bytes.to_vec())?)
        };
        // SAFETY: forwarded from the caller's contract on `config`.
        let engine = unsafe { create(config, read_neff) }?;
        // SAFETY: checked writable above.
        unsafe { write_out(F, "engine_out", engine_out, engine) }
    })
}

/// Destroys an engine handle. Calls already running on it on other threads finish normally;
/// the engine (workers, replicas, strings it handed out) is freed when the last of them
/// returns. Afterwards every call with this handle returns `NDP_ERR_INVALID_ARGUMENT`,
/// including a second destroy. NULL returns `NDP_ERR_NULL_POINTER` (and does nothing).
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_engine_destroy(engine: *mut ndp_engine_t) -> ndp_status_t {
    const F: &str = "ndp_engine_destroy";
    boundary(F, || {
        let handle = registry::remove(F, engine)?;
        // Joins the workers now unless another thread is inside a call on this engine.
        drop(handle);
        Ok(())
    })
}

/// The number of model inputs, into `*count_out`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `count_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_num_inputs(
    engine: *const ndp_engine_t,
    count_out: *mut usize,
) -> ndp_status_t {
    const F: &str = "ndp_engine_num_inputs";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        // SAFETY: `count_out` is NULL or writable (caller's contract).
        unsafe { write_out(F, "count_out", count_out, handle.engine.spec().inputs.len()) }
    })
}

/// The number of model outputs, into `*count_out`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `count_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_num_outputs(
    engine: *const ndp_engine_t,
    count_out: *mut usize,
) -> ndp_status_t {
    const F: &str = "ndp_engine_num_outputs";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        // SAFETY: `count_out` is NULL or writable (caller's contract).
        unsafe {
            write_out(
                F,
                "count_out",
                count_out,
                handle.engine.spec().outputs.len(),
            )
        }
    })
}

/// Fills `info_out` for input (`output == false`) or output `index`.
///
/// # Safety
///
/// `info_out` is NULL or writable.
unsafe fn io_info(
    function: &str,
    engine: *const ndp_engine_t,
    output: bool,
    index: usize,
    info_out: *mut ndp_tensor_info_t,
) -> Result<(), Failure> {
    let handle = registry::get(function, engine)?;
    let dp = &handle.engine;
    let (specs, names, what) = if output {
        (&dp.spec().outputs, &handle.output_names, "outputs")
    } else {
        (&dp.spec().inputs, &handle.input_names, "inputs")
    };
    let (Some(spec), Some(name)) = (specs.get(index), names.get(index)) else {
        return Err(Failure::invalid(format!(
            "{function}: index {index} is out of range: the model has {} {what}",
            specs.len()
        )));
    };
    let info = ndp_tensor_info_t {
        name: name.as_ptr(),
        dtype: ndp_dtype_t::from_dtype(spec.dtype),
        elem_size: spec.elem_size,
        ndim: spec.shape.len(),
        shape: spec.shape.as_ptr(),
        compiled_batch: spec.shape.get(dp.dim()).copied().unwrap_or(0),
        byte_size: spec.size,
    };
    // SAFETY: `info_out` is NULL or writable (this function's contract).
    unsafe { write_out(function, "info_out", info_out, info) }
}

/// Describes model input `index` (0-based): name, dtype, compiled shape and batch. The
/// pointers in `*info_out` stay valid until the engine is destroyed.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `index` past the inputs: NDP_ERR_INVALID_ARGUMENT; NULL `info_out`:
/// NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `info_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_input_info(
    engine: *const ndp_engine_t,
    index: usize,
    info_out: *mut ndp_tensor_info_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_input_info";
    // SAFETY: `info_out` is NULL or writable (caller's contract).
    boundary(F, || unsafe { io_info(F, engine, false, index, info_out) })
}

/// Describes model output `index` (0-based), as `ndp_engine_input_info`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `index` past the outputs: NDP_ERR_INVALID_ARGUMENT; NULL `info_out`:
/// NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `info_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_output_info(
    engine: *const ndp_engine_t,
    index: usize,
    info_out: *mut ndp_tensor_info_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_output_info";
    // SAFETY: `info_out` is NULL or writable (caller's contract).
    boundary(F, || unsafe { io_info(F, engine, true, index, info_out) })
}

/// The number of cores the model is replicated on, into `*count_out`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `count_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `count_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_num_cores(
    engine: *const ndp_engine_t,
    count_out: *mut usize,
) -> ndp_status_t {
    const F: &str = "ndp_engine_num_cores";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        // SAFETY: `count_out` is NULL or writable (caller's contract).
        unsafe { write_out(F, "count_out", count_out, handle.engine.devices().len()) }
    })
}

/// The core at `position` (0-based, in device order; not a logical core number) of the
/// engine: its logical index (within NEURON_RT_VISIBLE_CORES) into `*logical_out`, and its physical index into
/// `*physical_out` (-1 when the runtime does not say). Either out-pointer may be NULL when
/// not wanted.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `position` not below `ndp_engine_num_cores`: NDP_ERR_INVALID_ARGUMENT.
///
/// # Safety
///
/// `logical_out` and `physical_out` are each NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_core(
    engine: *const ndp_engine_t,
    position: usize,
    logical_out: *mut i32,
    physical_out: *mut i32,
) -> ndp_status_t {
    const F: &str = "ndp_engine_core";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        let dp = &handle.engine;
        let cores = dp.devices().as_slice();
        let core = at_position(F, cores, position)?;
        let logical = i32::try_from(core.index()).unwrap_or(-1);
        let physical = dp
            .physical_cores()
            .nth(position)
            .flatten()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(-1);
        if !logical_out.is_null() {
            // SAFETY: non-NULL, so writable (caller's contract).
            unsafe { write_out(F, "logical_out", logical_out, logical) }?;
        }
        if !physical_out.is_null() {
            // SAFETY: non-NULL, so writable (caller's contract).
            unsafe { write_out(F, "physical_out", physical_out, physical) }?;
        }
        Ok(())
    })
}

/// The health of the core at `position` (0-based, in `ndp_engine_core` order; not a logical
/// core number) into
/// `*health_out`: whether it is quarantined after repeated hardware failures, its failures in
/// a row, the last failure's libnrt status and its executions.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `position` not below `ndp_engine_num_cores`: NDP_ERR_INVALID_ARGUMENT;
/// NULL `health_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `health_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_core_health(
    engine: *const ndp_engine_t,
    position: usize,
    health_out: *mut ndp_core_health_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_core_health";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        let health = handle.engine.health();
        let core = at_position(F, &health, position)?;
        let value = ndp_core_health_t {
            logical: i32::try_from(core.core.index()).unwrap_or(-1),
            physical: core
                .physical_core
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(-1),
            quarantined: u32::from(core.state == dataparallel::CoreState::Quarantined),
            consecutive_failures: core.consecutive_failures,
            last_status: core.last_status.map_or(-1, |s| i64::from(s.raw())),
            executions: core.executions,
        };
        // SAFETY: checked for NULL and alignment inside; writable by the caller's contract.
        unsafe { write_out(F, "health_out", health_out, value) }
    })
}

/// The metrics of the core at `position` (0-based, in `ndp_engine_core` order; not a
/// logical core number) into
/// `*metrics_out`: executions, busy time, rows and pad rows, and the piece-latency
/// histogram. The pad ratio over the engine is the sum of `pad_rows` over the sum of
/// `rows + pad_rows`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `position` not below `ndp_engine_num_cores`: NDP_ERR_INVALID_ARGUMENT;
/// NULL `metrics_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `metrics_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_core_metrics(
    engine: *const ndp_engine_t,
    position: usize,
    metrics_out: *mut ndp_core_metrics_t,
) -> ndp_status_t {
    const F: &str = "ndp_engine_core_metrics";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        let cores = handle.engine.core_stats();
        let core = at_position(F, &cores, position)?;
        let value = ndp_core_metrics_t {
            logical: i32::try_from(core.core.index()).unwrap_or(-1),
            physical: core
                .physical_core
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(-1),
            executions: core.executions,
            busy_ns: core.busy_ns,
            failures: core.failures,
            rows: core.rows,
            pad_rows: core.pad_rows,
            piece_latency_us: core.piece_latency.counts,
        };
        // SAFETY: checked for NULL and alignment inside; writable by the caller's contract.
        unsafe { write_out(F, "metrics_out", metrics_out, value) }
    })
}

/// Executions on the core at `position` (0-based, in `ndp_engine_core` order) that the runtime
/// refused as busy (`NRT_EXEC_NC_BUSY`, 1005) or queue-full (`NRT_QUEUE_FULL`, 7) and the
/// engine retried after a short back-off, since the engine was built, into `*retries_out`.
/// Such retries never count toward quarantine. (A function of its own, so that
/// `ndp_core_metrics_t` keeps its layout.)
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `position` not below `ndp_engine_num_cores`: NDP_ERR_INVALID_ARGUMENT;
/// NULL `retries_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `retries_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_core_busy_retries(
    engine: *const ndp_engine_t,
    position: usize,
    retries_out: *mut u64,
) -> ndp_status_t {
    const F: &str = "ndp_engine_core_busy_retries";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        let cores = handle.engine.core_stats();
        let core = at_position(F, &cores, position)?;
        // SAFETY: checked for NULL and alignment inside; writable by the caller's contract.
        unsafe { write_out(F, "retries_out", retries_out, core.busy_retries) }
    })
}

/// The entry for the core at `position` (in `ndp_engine_core` order) of a per-core list.
fn at_position<'a, T>(function: &str, cores: &'a [T], position: usize) -> Result<&'a T, Failure> {
    cores.get(position).ok_or_else(|| {
        Failure::invalid(format!(
            "{function}: position {position} is out of range: the engine has {} cores, at \
             positions 0 to {}; pass a position, not a logical core number",
            cores.len(),
            cores.len().saturating_sub(1)
        ))
    })
}

/// Takes a quarantined core back into service: the model is reloaded on it and its failure
/// count reset. Calls in flight are not disturbed. `logical_core` is the core's logical
/// number (`nc:N`, as `ndp_engine_core` writes to `*logical_out`), not its position in the
/// engine.
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; `logical_core` not one of the engine's cores: NDP_ERR_INVALID_ARGUMENT;
/// the reload failing: NDP_ERR_RUNTIME (or NDP_ERR_NEFF if libnrt now refuses the model),
/// and the core stays quarantined.
#[unsafe(no_mangle)]
pub extern "C" fn ndp_engine_readmit(
    engine: *const ndp_engine_t,
    logical_core: u32,
) -> ndp_status_t {
    const F: &str = "ndp_engine_readmit";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        handle
            .engine
            .readmit(neuron_rt::DeviceId::new(logical_core))
            .map_err(Failure::from)
    })
}

/// The version of the libnrt the engine runs on (e.g. "2.31.0.0 (nrt-mock ...)"), into
/// `*version_out`; valid until the engine is destroyed.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `version_out`: NDP_ERR_NULL_POINTER.
///
/// # Safety
///
/// `version_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_runtime_version(
    engine: *const ndp_engine_t,
    version_out: *mut *const c_char,
) -> ndp_status_t {
    const F: &str = "ndp_engine_runtime_version";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        let version = handle.runtime_version.as_ptr();
        // SAFETY: `version_out` is NULL or writable (caller's contract).
        unsafe { write_out(F, "version_out", version_out, version) }
    })
}

/// The shape output `output_index` has for these inputs (a forward of them would need an
/// output buffer of that shape), so hosts can size buffers for a batch.
///
/// On entry `*ndim_inout` is the capacity of `shape` (in entries); on success it is the
/// output's rank and `shape` holds the dims. When the capacity is too small the result is
/// `NDP_ERR_BUFFER_TOO_SMALL` with `*ndim_inout` set to the rank needed (`shape` may be NULL
/// with a capacity of 0 to ask for the rank). Invalid inputs fail as in `ndp_engine_forward`.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `ndim_inout` (or `shape` with a capacity that suffices):
/// NDP_ERR_NULL_POINTER; `output_index` past the outputs: NDP_ERR_INVALID_ARGUMENT; a
/// capacity below the rank: NDP_ERR_BUFFER_TOO_SMALL; inputs as in `ndp_engine_forward`
/// (NDP_ERR_INVALID_INPUT, NDP_ERR_BATCH, NDP_ERR_ALL_CORES_QUARANTINED).
///
/// # Safety
///
/// `inputs` as for `ndp_engine_forward`; `ndim_inout` is NULL or readable and writable;
/// `shape` is NULL or has `*ndim_inout` writable entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_output_shape(
    engine: *const ndp_engine_t,
    inputs: *const ndp_tensor_t,
    n_inputs: usize,
    output_index: usize,
    shape: *mut usize,
    ndim_inout: *mut usize,
) -> ndp_status_t {
    const F: &str = "ndp_engine_output_shape";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        if ndim_inout.is_null() {
            return Err(Failure::null(F, "ndim_inout"));
        }
        if !ndim_inout.is_aligned() {
            return Err(Failure::invalid(format!(
                "{F}: `ndim_inout` is not aligned"
            )));
        }
        // SAFETY: non-NULL, aligned, readable (caller's contract).
        let capacity = unsafe { ndim_inout.read() };
        // SAFETY: forwarded from the caller's contract on `inputs`.
        let views = unsafe { views::views(inputs, n_inputs, None) }?;
        let shapes = handle.engine.output_shapes(&views.inputs)?;
        let Some(dims) = shapes.get(output_index) else {
            return Err(Failure::invalid(format!(
                "{F}: output_index {output_index} is out of range: the model has {} outputs",
                shapes.len()
            )));
        };
        // SAFETY: checked writable above.
        unsafe { ndim_inout.write(dims.len()) };
        if capacity < dims.len() {
            return Err(Failure::new(
                ndp_status_t::NDP_ERR_BUFFER_TOO_SMALL,
                format!(
                    "{F}: output {output_index} has {} dims but `shape` holds {capacity}; \
                     *ndim_inout now says how many are needed",
                    dims.len()
                ),
            ));
        }
        if dims.is_empty() {
            return Ok(());
        }
        if shape.is_null() {
            return Err(Failure::null(F, "shape"));
        }
        if !shape.is_aligned() {
            return Err(Failure::invalid(format!("{F}: `shape` is not aligned")));
        }
        // SAFETY: `shape` is non-NULL, aligned and has at least `capacity >= dims.len()`
        // writable entries (caller's contract); `dims` is our own Vec, so they cannot
        // overlap.
        unsafe { std::ptr::copy_nonoverlapping(dims.as_ptr(), shape, dims.len()) };
        Ok(())
    })
}

/// Runs a batch: splits the inputs over the engine's cores, runs the chunks concurrently and
/// writes the gathered outputs into the caller's buffers.
///
/// Inputs and outputs are matched to the model's by name when named, else by position. Each
/// output's dtype and shape must be exactly what the forward produces
/// (`ndp_engine_output_shape`) and its `byte_len` exactly the bytes of that shape.
/// Every chunk runs to completion; on a failure the lowest failing chunk is reported
/// (`NDP_ERR_CHUNK_FAILED`, naming the logical and physical core). Validation errors
/// (`NDP_ERR_INVALID_INPUT`, `NDP_ERR_INVALID_OUTPUT`, `NDP_ERR_BATCH`) happen before any
/// device work. Blocks until done; any number of threads may call it on one engine at once.
///
/// Errors: NULL engine: NDP_ERR_NULL_POINTER; an unknown or destroyed engine: NDP_ERR_INVALID_ARGUMENT; NULL `inputs` or `outputs` with a non-zero count, or a NULL `data` or
/// `shape` with a non-zero length: NDP_ERR_NULL_POINTER; an unknown dtype value, a name
/// that is not UTF-8, overlapping output buffers: NDP_ERR_INVALID_ARGUMENT; inputs that do
/// not fit the model: NDP_ERR_INVALID_INPUT; outputs that do not fit: NDP_ERR_INVALID_OUTPUT;
/// a batch that cannot be split (dynamic batching off) or cannot use dynamic batching:
/// NDP_ERR_BATCH; every core quarantined: NDP_ERR_ALL_CORES_QUARANTINED; a chunk failing on a
/// core: NDP_ERR_CHUNK_FAILED; a core's workers gone: NDP_ERR_SHUTTING_DOWN; a contained
/// bug: NDP_ERR_PANIC.
///
/// # Safety
///
/// `inputs` points to `n_inputs` readable `ndp_tensor_t`s (may be NULL when `n_inputs` is
/// 0), likewise `outputs` and `n_outputs`. In each, `name` is NULL or NUL-terminated,
/// `shape` points to `ndim` readable `size_t`s, and `data` to `byte_len` bytes: readable for
/// inputs, writable for outputs. Until the call returns, no other thread may write input
/// bytes or access output bytes. Output buffers must not overlap each other or an input
/// (checked: `NDP_ERR_INVALID_ARGUMENT`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ndp_engine_forward(
    engine: *const ndp_engine_t,
    inputs: *const ndp_tensor_t,
    n_inputs: usize,
    outputs: *const ndp_tensor_t,
    n_outputs: usize,
) -> ndp_status_t {
    const F: &str = "ndp_engine_forward";
    boundary(F, || {
        let handle = registry::get(F, engine)?;
        if inputs.is_null() && n_inputs != 0 {
            return Err(Failure::null(F, "inputs"));
        }
        if outputs.is_null() && n_outputs != 0 {
            return Err(Failure::null(F, "outputs"));
        }
        // SAFETY: forwarded from the caller's contract on both arrays.
        let mut views = unsafe { views::views(inputs, n_inputs, Some((outputs, n_outputs))) }?;
        handle
            .engine
            .forward_into(&views.inputs, &mut views.outputs)?;
        Ok(())
    })
}
