//! Execution: binding tensor sets to a model, per-core serialisation, simulated device time,
//! timeouts and injected faults.
//!
//! This module owns [`CoreState`] (one per owned core: the lock that lets one execution at a
//! time run on a physical core, and the number of models loaded on it) and [`execute`].
//! Simulated device time is spent sleeping until a deadline, never spinning, so many simulated
//! cores run on a small machine.
//!
//! `nrt_execute_repeat` runs the model `repeat_count` times under one hold of the core lock.
//! When every output has the size of the input at the same position (identity, affine), the
//! outputs of iteration n feed iteration n+1, as on hardware; otherwise each iteration reads
//! the input tensors again. Only the last iteration's outputs remain in the output tensors.
//!
//! The mock stands in for the device in every benchmark, so its own CPU cost must not hide the
//! engine's: a single execution whose tensors do not overlap computes straight from the input
//! tensors' storage into the output tensors' storage (an identity is one `memcpy`). Only a
//! repeat or overlapping tensors stage bytes, in buffers each core keeps and reuses
//! ([`Scratch`]), so no execution allocates or zeroes memory after a core's first.
//!
//! What a call on a core that is already executing does is the [`ExecPolicy`]
//! (`NRT_MOCK_EXEC_POLICY`): by default it waits for the core (`serialize`); with `busy` a call
//! for another model than the one running returns `NRT_EXEC_NC_BUSY` at once, as the runtime's
//! developer guide documents for a core "locked by another model/thread", while calls of the
//! running model still queue behind it (the runtime pipelines executions of one model).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use neuron_sys::bindings::{
    NRT_EXEC_NC_BUSY, NRT_INVALID, NRT_INVALID_HANDLE, NRT_SUCCESS, NRT_TENSOR_PLACEMENT_DEVICE,
    NRT_TIMEOUT,
};

use crate::counters::{self, COUNTERS};
use crate::faults::{self, FaultAction};
use crate::model::Model;
use crate::neff::TensorSpec;
use crate::ops;
use crate::report::{Res, fail};
use crate::state::{Runtime, lock};
use crate::tensor::View;
use crate::tensor_set::TensorSet;

/// How far past the timeout a `hang` fault sleeps.
const HANG_MARGIN: Duration = Duration::from_millis(20);

/// What `nrt_execute` does when the core is already executing (`NRT_MOCK_EXEC_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecPolicy {
    /// Wait for the core (the default).
    Serialize,
    /// Return `NRT_EXEC_NC_BUSY` when the core is executing another model; executions of the
    /// running model wait.
    Busy,
}

/// `NRT_MOCK_EXEC_POLICY` (`serialize` or `busy`; unset: `serialize`).
pub(crate) fn exec_policy() -> Result<ExecPolicy, String> {
    match std::env::var("NRT_MOCK_EXEC_POLICY")
        .as_deref()
        .map(str::trim)
    {
        Err(_) | Ok("serialize") => Ok(ExecPolicy::Serialize),
        Ok("busy") => Ok(ExecPolicy::Busy),
        Ok(other) => Err(format!(
            "NRT_MOCK_EXEC_POLICY={other:?} is not one of serialize, busy"
        )),
    }
}

/// One core owned by the process.
#[derive(Debug)]
pub(crate) struct CoreState {
    pub(crate) logical: usize,
    /// The first physical core of this (logical) core.
    pub(crate) phys: u32,
    /// Physical cores it spans (`NRT_MOCK_LNC`).
    pub(crate) width: u32,
    /// Held while an execution runs; the staging buffers it keeps are reused by the next.
    exec: Mutex<Scratch>,
    /// Models loaded on this core (for `nrt_load` with `vnc = -1`).
    pub(crate) models: AtomicUsize,
    /// What a call finding the core executing does.
    policy: ExecPolicy,
    /// The address of the model executing now (0: none), set while `exec` is held.
    running: AtomicUsize,
}

impl CoreState {
    pub(crate) fn new(logical: usize, phys: u32, width: u32, policy: ExecPolicy) -> Self {
        CoreState {
            logical,
            phys,
            width,
            exec: Mutex::new(Scratch::default()),
            models: AtomicUsize::new(0),
            policy,
            running: AtomicUsize::new(0),
        }
    }

    /// Takes the core for an execution of `model` (whose address is `id`): waits for it, or
    /// under [`ExecPolicy::Busy`] refuses with `NRT_EXEC_NC_BUSY` while another model runs.
    fn acquire(&self, model: &Model, id: usize) -> Res<Running<'_>> {
        let scratch = match self.policy {
            ExecPolicy::Serialize => lock(&self.exec),
            ExecPolicy::Busy => match self.exec.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // The holder records itself right after taking the lock and clears the
                    // mark before releasing it; 0 (between the two) means "about to change
                    // hands", so wait like a call of the running model would.
                    let running = self.running.load(Ordering::Acquire);
                    if running != 0 && running != id {
                        counters::add(&COUNTERS.busy_returns, 1);
                        return Err(fail(
                            NRT_EXEC_NC_BUSY,
                            format!(
                                "nrt_execute: nc{} is executing another model; model {:?} was not \
                                 started (NRT_MOCK_EXEC_POLICY=busy)",
                                self.phys, model.spec.name
                            ),
                        ));
                    }
                    self.exec.lock().unwrap_or_else(PoisonError::into_inner)
                }
            },
        };
        self.running.store(id, Ordering::Release);
        Ok(Running {
            core: self,
            scratch,
        })
    }
}

/// A core held for one execution; clears the running mark before the core is released.
struct Running<'a> {
    core: &'a CoreState,
    scratch: MutexGuard<'a, Scratch>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // `scratch` (the lock) is released after this body runs.
        self.core.running.store(0, Ordering::Release);
    }
}

/// Staging buffers of one core, kept between executions (capacity is reused, never zeroed
/// again unless a size changes).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

impl Scratch {
    /// Copies the input tensors' bytes in (no zeroing: `extend_from_slice` into kept capacity).
    fn load_inputs(&mut self, ins: &[View]) {
        self.inputs.resize_with(ins.len(), Vec::new);
        for (buf, view) in self.inputs.iter_mut().zip(ins) {
            buf.clear();
            // SAFETY: the view's storage holds `len` valid bytes while the view lives, and no
            // `&mut` to it exists in this function (see `View::as_slice`).
            buf.extend_from_slice(unsafe { view.as_slice() });
        }
    }

    /// Sizes the output buffers like the output tensors (zeroed only when a size changes;
    /// every op writes each output byte).
    fn size_outputs(&mut self, outs: &[View]) {
        self.outputs.resize_with(outs.len(), Vec::new);
        for (buf, view) in self.outputs.iter_mut().zip(outs) {
            if buf.len() != view.len() {
                buf.clear();
                buf.resize(view.len(), 0);
            }
        }
    }
}

/// Whether an output overlaps another output or an input (then the op cannot read and write
/// the tensors' storage in place).
fn overlapping(ins: &[View], outs: &[View]) -> bool {
    outs.iter()
        .enumerate()
        .any(|(k, o)| outs[..k].iter().chain(ins).any(|other| o.overlaps(other)))
}

/// Sleeps until `deadline` (looping over early wake-ups).
fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep(deadline - now);
    }
}

/// Resolves every tensor the model needs from `set` and checks its size and core.
fn bind(
    rt: &Runtime,
    model: &Model,
    specs: &[TensorSpec],
    set: &TensorSet,
    kind: &str,
) -> Res<Vec<View>> {
    let m = &model.spec.name;
    specs
        .iter()
        .map(|spec| {
            let name = &spec.name;
            let addr = set.get(name.as_bytes()).ok_or_else(|| {
                fail(NRT_INVALID, format!(
                    "nrt_execute: model {m:?} needs {kind} {name:?}, which is missing from the {kind} set"
                ))
            })?;
            let tensor = rt.tensor_at(addr).ok_or_else(|| {
                fail(NRT_INVALID_HANDLE, format!(
                    "nrt_execute: the tensor under {kind} name {name:?} has been freed"
                ))
            })?;
            let view = tensor.view().ok_or_else(|| {
                fail(NRT_INVALID, format!(
                    "nrt_execute: {kind} {name:?} (tensor {:?}) has no storage attached", tensor.name
                ))
            })?;
            let want = spec.size_bytes().unwrap_or(0);
            if view.len() as u64 != want {
                return Err(fail(NRT_INVALID, format!(
                    "nrt_execute: {kind} {name:?} is {} bytes but model {m:?} expects {want} ({spec})",
                    view.len()
                )));
            }
            let (placement, core) = tensor.placement();
            if placement == NRT_TENSOR_PLACEMENT_DEVICE && core != Some(model.logical) {
                return Err(fail(NRT_INVALID, format!(
                    "nrt_execute: {kind} {name:?} is a device tensor on logical core {}, but model \
                     {m:?} is loaded on logical core {} (nc{})",
                    core.map_or("?".to_string(), |c| c.to_string()),
                    model.logical,
                    model.core.phys
                )));
            }
            Ok(view)
        })
        .collect()
}

/// Runs `model` `repeat` (>= 1) times on the tensors of `inputs`, writing `outputs`.
pub(crate) fn execute(
    rt: &Runtime,
    model: &Model,
    inputs: &TensorSet,
    outputs: &TensorSet,
    repeat: u32,
) -> Res {
    let ins = bind(rt, model, &model.spec.inputs, inputs, "input")?;
    let outs = bind(rt, model, &model.spec.outputs, outputs, "output")?;
    let spec = &model.spec;
    let phys = model.core.phys;
    let device_time = Duration::from_micros(spec.exec_us).saturating_add(Duration::from_micros(
        u64::from(spec.compiled_rows()).saturating_mul(spec.exec_us_per_row),
    ));
    let chain = ins.len() == outs.len() && ins.iter().zip(&outs).all(|(i, o)| i.len() == o.len());

    let mut running = model
        .core
        .acquire(model, std::ptr::from_ref(model) as usize)?;
    let scratch = &mut running.scratch;
    let direct = repeat == 1 && !overlapping(&ins, &outs);
    for iteration in 0..repeat {
        let start = Instant::now();
        for p in phys..phys + model.core.width {
            counters::add(&COUNTERS.executions[p as usize], 1);
        }
        match faults::on_execution(phys) {
            Some(FaultAction::Hang) => {
                sleep_until(start + model.timeout + HANG_MARGIN);
                return Err(fail(
                    NRT_TIMEOUT,
                    format!(
                        "nrt_execute: model {:?} on nc{phys} hung (injected fault) and timed out after {:?} \
                     (NEURON_RT_EXEC_TIMEOUT)",
                        spec.name, model.timeout
                    ),
                ));
            }
            Some(FaultAction::Status(s)) if s != NRT_SUCCESS => {
                return Err(fail(
                    s,
                    format!(
                        "nrt_execute: model {:?} on nc{phys} failed with status {s} (injected fault)",
                        spec.name
                    ),
                ));
            }
            _ => {}
        }
        if device_time > model.timeout {
            sleep_until(start + model.timeout);
            return Err(fail(
                NRT_TIMEOUT,
                format!(
                    "nrt_execute: model {:?} on nc{phys} needs {device_time:?} of device time, more than \
                 the {:?} timeout (NEURON_RT_EXEC_TIMEOUT)",
                    spec.name, model.timeout
                ),
            ));
        }
        if direct {
            // SAFETY: each view's storage holds `len` valid bytes while the view lives (owned
            // buffers are kept alive by the view, attached ones by the caller's promise to
            // nrt_tensor_attach_buffer); no output overlaps an input or another output
            // (`overlapping` said so), so the shared and exclusive slices never alias. Other
            // threads touching these bytes meanwhile race as they would with a device's DMA
            // (see the `tensor` module docs).
            let in_slices: Vec<&[u8]> = ins.iter().map(|v| unsafe { v.as_slice() }).collect();
            // SAFETY: as above.
            let mut out_slices: Vec<&mut [u8]> =
                outs.iter().map(|v| unsafe { v.as_mut_slice() }).collect();
            ops::run_into(spec, &in_slices, &mut out_slices, phys);
        } else {
            if iteration == 0 || !chain {
                scratch.load_inputs(&ins);
            }
            scratch.size_outputs(&outs);
            let Scratch { inputs, outputs } = &mut **scratch;
            let in_slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let mut out_slices: Vec<&mut [u8]> =
                outputs.iter_mut().map(Vec::as_mut_slice).collect();
            ops::run_into(spec, &in_slices, &mut out_slices, phys);
            for (view, bytes) in outs.iter().zip(outputs.iter()) {
                // Sizes were checked by `bind`, and the buffers have the output sizes.
                let _ = view.write(0, bytes);
            }
            if chain {
                // The outputs of this iteration are the inputs of the next.
                std::mem::swap(inputs, outputs);
            }
        }
        sleep_until(start + device_time);
    }
    Ok(())
}
