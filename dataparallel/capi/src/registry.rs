//! Engine handles: what an `ndp_engine_t*` is, and why a stale one cannot crash the host.
//!
//! An `ndp_engine_t*` is never a real address. It is a key (a non-zero multiple of 16 from a
//! counter that never repeats) into a process-wide registry of live engines, each an
//! `Arc<EngineHandle>`. Every call looks its key up under a read lock and clones the `Arc`,
//! then releases the lock and runs on that clone:
//!
//! - a call on a handle that was destroyed, or was never created, finds no entry and returns
//!   `NDP_ERR_INVALID_ARGUMENT` (keys are not reused, so a stale handle can never reach a
//!   newer engine);
//! - `ndp_engine_destroy` removes the entry and drops the registry's `Arc`: calls already
//!   inside the engine hold their own clone and finish normally; the engine (its workers,
//!   replicas and the strings `ndp_engine_*_info` handed out) is freed when the last of
//!   them returns, on that thread.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::{Arc, PoisonError, RwLock};

use super::error::{Failure, c_string_lossy};
use dataparallel::DataParallel;

/// The opaque engine type of the C API; only pointers to it exist (and those are registry
/// keys, never dereferenced). Not `repr(C)`, so the header declares it as an incomplete type.
#[derive(Debug)]
pub struct ndp_engine_t {
    _private: [u8; 0],
}

/// An engine and the C strings its queries hand out.
#[derive(Debug)]
pub(crate) struct EngineHandle {
    pub(crate) engine: DataParallel,
    pub(crate) input_names: Vec<CString>,
    pub(crate) output_names: Vec<CString>,
    pub(crate) runtime_version: CString,
}

impl EngineHandle {
    pub(crate) fn new(engine: DataParallel) -> EngineHandle {
        let names = |specs: &[dataparallel::IoSpec]| -> Vec<CString> {
            specs.iter().map(|s| c_string_lossy(&s.name)).collect()
        };
        EngineHandle {
            input_names: names(&engine.spec().inputs),
            output_names: names(&engine.spec().outputs),
            runtime_version: c_string_lossy(&engine.runtime().version().to_string()),
            engine,
        }
    }
}

#[derive(Debug)]
struct Registry {
    live: BTreeMap<usize, Arc<EngineHandle>>,
    /// The last key handed out.
    last: usize,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    live: BTreeMap::new(),
    last: 0,
});

/// Keys are multiples of this, so they look like aligned pointers to any tool that checks.
const KEY_STEP: usize = 16;

/// Registers an engine and returns its handle.
pub(crate) fn insert(handle: EngineHandle) -> Result<*mut ndp_engine_t, Failure> {
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    let key = registry
        .last
        .checked_add(KEY_STEP)
        .ok_or_else(|| Failure::invalid("too many engines created in this process"))?;
    registry.last = key;
    registry.live.insert(key, Arc::new(handle));
    Ok(std::ptr::without_provenance_mut(key))
}

/// The engine behind a handle, for one call.
pub(crate) fn get(
    function: &str,
    engine: *const ndp_engine_t,
) -> Result<Arc<EngineHandle>, Failure> {
    if engine.is_null() {
        return Err(Failure::null(function, "engine"));
    }
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    registry
        .live
        .get(&engine.addr())
        .cloned()
        .ok_or_else(|| unknown(function, engine))
}

/// Removes a handle; the engine is freed when the last call using it returns.
pub(crate) fn remove(
    function: &str,
    engine: *mut ndp_engine_t,
) -> Result<Arc<EngineHandle>, Failure> {
    if engine.is_null() {
        return Err(Failure::null(function, "engine"));
    }
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    registry
        .live
        .remove(&engine.addr())
        .ok_or_else(|| unknown(function, engine))
}

fn unknown(function: &str, engine: *const ndp_engine_t) -> Failure {
    Failure::invalid(format!(
        "{function}: {engine:p} is not a live engine (destroyed already, or never returned by \
         ndp_engine_create_*)"
    ))
}
