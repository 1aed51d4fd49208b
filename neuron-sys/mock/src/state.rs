//! The runtime's life cycle and its handle registries.
//!
//! This module owns the process-wide phase (uninitialised, running, closed), the
//! [`Runtime`] of a running phase (owned cores, their memory budgets and locks) and the
//! registries of live handles. A handle given to C is the address of an `Arc` the registry
//! holds; the mock never dereferences a pointer a caller passes back, it looks the address up,
//! so a stale or garbage handle gives `NRT_INVALID_HANDLE` instead of undefined behaviour.
//! `nrt_close` drops every handle and releases the core locks; executions still in flight
//! keep what they use alive until they finish.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use neuron_sys::bindings::{
    NRT_CLOSED, NRT_FAILURE, NRT_INVALID, NRT_INVALID_HANDLE, NRT_RESOURCE, NRT_UNINITIALIZED,
    nrt_model_t, nrt_tensor_t,
};

use crate::exec::CoreState;
use crate::faults;
use crate::locks::{self, CoreLocks};
use crate::model::Model;
use crate::report::{Res, fail};
use crate::tensor::{CoreBudget, DEFAULT_CORE_MEMORY, Tensor};
use crate::tensor_set::TensorSet;
use crate::topology::{self, Request};

/// Locks a mutex, ignoring poisoning: every export catches panics, and the data the mock keeps
/// behind its mutexes stays consistent at every await-free step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Phase {
    Uninitialized,
    Running(Arc<Runtime>),
    Closed,
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Uninitialized);

#[derive(Default)]
struct Handles {
    models: HashMap<usize, Arc<Model>>,
    tensors: HashMap<usize, Arc<Tensor>>,
    sets: HashMap<usize, Arc<TensorSet>>,
}

/// What `nrt_init` set up.
pub(crate) struct Runtime {
    /// Physical cores on the instance.
    pub(crate) total: u32,
    /// Physical cores per logical core (`NRT_MOCK_LNC`).
    pub(crate) lnc: u32,
    /// The version reported (`NRT_MOCK_RUNTIME_VERSION`): older versions' known issues are
    /// reproduced by the calls they affect.
    pub(crate) version: crate::version::Version,
    /// The dtype numbering of tensor infos (`NRT_MOCK_DTYPE_ENCODING`, or by version).
    pub(crate) encoding: crate::version::Encoding,
    /// Indexed by logical core.
    pub(crate) cores: Vec<Arc<CoreState>>,
    /// Indexed by logical core.
    pub(crate) budgets: Vec<Arc<CoreBudget>>,
    locks: Mutex<Option<CoreLocks>>,
    handles: Mutex<Handles>,
}

fn insert<T>(map: &mut HashMap<usize, Arc<T>>, v: Arc<T>) -> usize {
    let addr = Arc::as_ptr(&v) as usize;
    map.insert(addr, v);
    addr
}

fn find<T>(func: &str, what: &str, map: &HashMap<usize, Arc<T>>, p: usize) -> Res<Arc<T>> {
    if p == 0 {
        return Err(fail(NRT_INVALID, format!("{func}: the {what} is NULL")));
    }
    map.get(&p).cloned().ok_or_else(|| {
        fail(
            NRT_INVALID_HANDLE,
            format!("{func}: {p:#x} is not a live {what} handle"),
        )
    })
}

impl Runtime {
    /// The logical core `vnc` names, if this process owns it.
    pub(crate) fn logical(&self, vnc: i32) -> Option<usize> {
        usize::try_from(vnc).ok().filter(|&v| v < self.cores.len())
    }

    pub(crate) fn add_model(&self, m: Model) -> *mut nrt_model_t {
        insert(&mut lock(&self.handles).models, Arc::new(m)) as *mut nrt_model_t
    }

    pub(crate) fn model(&self, func: &str, p: *const nrt_model_t) -> Res<Arc<Model>> {
        find(func, "model", &lock(&self.handles).models, p as usize)
    }

    /// Removes a model handle; the model is dropped once no execution uses it.
    pub(crate) fn remove_model(&self, func: &str, p: *const nrt_model_t) -> Res {
        let removed = {
            let mut h = lock(&self.handles);
            find(func, "model", &h.models, p as usize)?;
            h.models.remove(&(p as usize))
        };
        drop(removed);
        Ok(())
    }

    pub(crate) fn add_tensor(&self, t: Tensor) -> *mut nrt_tensor_t {
        insert(&mut lock(&self.handles).tensors, Arc::new(t)) as *mut nrt_tensor_t
    }

    pub(crate) fn tensor(&self, func: &str, p: *const nrt_tensor_t) -> Res<Arc<Tensor>> {
        find(func, "tensor", &lock(&self.handles).tensors, p as usize)
    }

    /// The live tensor at a handle address, if any.
    pub(crate) fn tensor_at(&self, addr: usize) -> Option<Arc<Tensor>> {
        lock(&self.handles).tensors.get(&addr).cloned()
    }

    pub(crate) fn remove_tensor(&self, func: &str, p: *const nrt_tensor_t) -> Res {
        let removed = {
            let mut h = lock(&self.handles);
            find(func, "tensor", &h.tensors, p as usize)?;
            h.tensors.remove(&(p as usize))
        };
        drop(removed);
        Ok(())
    }

    pub(crate) fn add_set(&self, s: TensorSet) -> *mut c_void {
        insert(&mut lock(&self.handles).sets, Arc::new(s)) as *mut c_void
    }

    pub(crate) fn set(&self, func: &str, p: *const c_void) -> Res<Arc<TensorSet>> {
        find(func, "tensor set", &lock(&self.handles).sets, p as usize)
    }

    pub(crate) fn remove_set(&self, func: &str, p: *const c_void) -> Res {
        let removed = {
            let mut h = lock(&self.handles);
            find(func, "tensor set", &h.sets, p as usize)?;
            h.sets.remove(&(p as usize))
        };
        drop(removed);
        Ok(())
    }

    /// The logical core with the fewest models (lowest index on ties).
    pub(crate) fn least_loaded(&self) -> Arc<CoreState> {
        let pick = self
            .cores
            .iter()
            .min_by_key(|c| {
                (
                    c.models.load(std::sync::atomic::Ordering::Relaxed),
                    c.logical,
                )
            })
            .cloned();
        // `cores` is never empty: nrt_init owns at least one core.
        pick.unwrap_or_else(|| {
            Arc::new(CoreState::new(0, 0, 1, crate::exec::ExecPolicy::Serialize))
        })
    }

    fn shutdown(&self) {
        let handles = std::mem::take(&mut *lock(&self.handles));
        drop(handles);
        lock(&self.locks).take();
    }
}

/// The running runtime, or `NRT_UNINITIALIZED` / `NRT_CLOSED`.
pub(crate) fn runtime(func: &str) -> Res<Arc<Runtime>> {
    match &*lock(&PHASE) {
        Phase::Running(rt) => Ok(Arc::clone(rt)),
        Phase::Uninitialized => Err(fail(
            NRT_UNINITIALIZED,
            format!("{func}: called before nrt_init"),
        )),
        Phase::Closed => Err(fail(NRT_CLOSED, format!("{func}: called after nrt_close"))),
    }
}

/// The running runtime without reporting anything when there is none.
pub(crate) fn runtime_quiet() -> Option<Arc<Runtime>> {
    match &*lock(&PHASE) {
        Phase::Running(rt) => Some(Arc::clone(rt)),
        _ => None,
    }
}

fn core_memory() -> Result<u64, String> {
    match std::env::var("NRT_MOCK_CORE_MEMORY") {
        Err(_) => Ok(DEFAULT_CORE_MEMORY),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("NRT_MOCK_CORE_MEMORY={v:?} is not a byte count")),
    }
}

/// `nrt_init`: reads the environment, locks the cores, starts the runtime.
pub(crate) fn init() -> Res {
    let mut phase = lock(&PHASE);
    if let Phase::Running(_) = *phase {
        return Err(fail(
            NRT_FAILURE,
            "nrt_init: the runtime is already initialized; call nrt_close first",
        ));
    }
    let invalid = |e: String| fail(NRT_INVALID, format!("nrt_init: {e}"));
    let total = topology::total_cores().map_err(invalid)?;
    let lnc = topology::lnc(total).map_err(invalid)?;
    let request = topology::request_from_env(total / lnc).map_err(invalid)?;
    let memory = core_memory().map_err(invalid)?;
    let version = crate::version::reported().map_err(invalid)?;
    let encoding = crate::version::dtype_encoding(version).map_err(invalid)?;
    let policy = crate::exec::exec_policy().map_err(invalid)?;
    let rules = match std::env::var("NRT_MOCK_FAULTS") {
        Ok(text) => {
            Some(faults::parse_rules(&text).map_err(|e| invalid(format!("NRT_MOCK_FAULTS: {e}")))?)
        }
        Err(_) => None,
    };
    if let Request::Exact(v) = &request {
        let gaps = v.windows(2).any(|w| w[1] != w[0] + 1);
        if gaps && crate::version::contiguous_cores_only() {
            return Err(invalid(format!(
                "NEURON_RT_VISIBLE_CORES names cores {v:?}, which are not a contiguous range \
                 (NRT_MOCK_CONTIGUOUS_CORES)"
            )));
        }
    }
    let dir = locks::lock_dir();
    let busy = |e: String| fail(NRT_RESOURCE, format!("nrt_init: {e}"));
    // `groups` are the logical cores (global numbering); each is `lnc` physical cores.
    let (groups, core_locks) = match request {
        Request::All => {
            let all: Vec<u32> = (0..total / lnc).collect();
            let l = locks::acquire_exact(&dir, &topology::physical_of(&all, lnc), total)
                .map_err(busy)?;
            (all, l)
        }
        Request::Count(n) => locks::acquire_any(&dir, n, total, lnc).map_err(busy)?,
        Request::Exact(v) => {
            let l =
                locks::acquire_exact(&dir, &topology::physical_of(&v, lnc), total).map_err(busy)?;
            (v, l)
        }
    };
    // A logical core is named by its first physical core.
    let phys: Vec<u32> = groups.iter().map(|g| g * lnc).collect();
    if let Some(rules) = rules {
        faults::install(rules);
    }
    let cores = phys
        .iter()
        .enumerate()
        .map(|(l, &p)| Arc::new(CoreState::new(l, p, lnc, policy)))
        .collect();
    let budgets = phys
        .iter()
        .enumerate()
        .map(|(l, &p)| Arc::new(CoreBudget::new(l, p, memory)))
        .collect();
    log::info!("nrt-mock: initialized with physical cores {phys:?} of {total} (LNC {lnc})");
    *phase = Phase::Running(Arc::new(Runtime {
        total,
        lnc,
        version,
        encoding,
        cores,
        budgets,
        locks: Mutex::new(Some(core_locks)),
        handles: Mutex::new(Handles::default()),
    }));
    Ok(())
}

/// `nrt_close`: drops every handle and releases the cores. No-op unless running.
pub(crate) fn close() {
    let rt = {
        let mut phase = lock(&PHASE);
        match std::mem::replace(&mut *phase, Phase::Closed) {
            Phase::Running(rt) => rt,
            other => {
                *phase = other;
                return;
            }
        }
    };
    rt.shutdown();
    log::info!("nrt-mock: closed");
}

/// Total physical cores: the running runtime's, else from the environment.
pub(crate) fn total_count() -> Result<u32, String> {
    match runtime_quiet() {
        Some(rt) => Ok(rt.total),
        None => topology::total_cores(),
    }
}

/// Total logical cores (physical / LNC).
pub(crate) fn total_vnc_count() -> Result<u32, String> {
    match runtime_quiet() {
        Some(rt) => Ok(rt.total / rt.lnc),
        None => {
            let total = topology::total_cores()?;
            Ok(total / topology::lnc(total)?)
        }
    }
}

/// Visible logical cores: the running runtime's, else what `nrt_init` would select.
pub(crate) fn visible_vnc_count() -> Result<u32, String> {
    match runtime_quiet() {
        Some(rt) => Ok(rt.cores.len() as u32),
        None => {
            let total = topology::total_cores()?;
            let logical = total / topology::lnc(total)?;
            Ok(topology::request_from_env(logical)?.count(logical))
        }
    }
}

/// Visible physical cores (visible logical cores times LNC).
pub(crate) fn visible_count() -> Result<u32, String> {
    let lnc = match runtime_quiet() {
        Some(rt) => rt.lnc,
        None => topology::lnc(topology::total_cores()?)?,
    };
    Ok(visible_vnc_count()? * lnc)
}
