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

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use neuron_sys::bindings::{
    NRT_INVALID, NRT_INVALID_HANDLE, NRT_SUCCESS, NRT_TENSOR_PLACEMENT_DEVICE, NRT_TIMEOUT,
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

/// One core owned by the process.
#[derive(Debug)]
pub(crate) struct CoreState {
    pub(crate) logical: usize,
    pub(crate) phys: u32,
    exec: Mutex<()>,
    /// Models loaded on this core (for `nrt_load` with `vnc = -1`).
    pub(crate) models: AtomicUsize,
}

impl CoreState {
    pub(crate) fn new(logical: usize, phys: u32) -> Self {
        CoreState {
            logical,
            phys,
            exec: Mutex::new(()),
            models: AtomicUsize::new(0),
        }
    }
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

    let _core = lock(&model.core.exec);
    let mut data: Vec<Vec<u8>> = ins.iter().map(View::to_vec).collect();
    for iteration in 0..repeat {
        let start = Instant::now();
        counters::add(&COUNTERS.executions[phys as usize], 1);
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
        let results = ops::run(spec, &data, phys);
        for (view, bytes) in outs.iter().zip(&results) {
            // Sizes were checked by `bind`, and ops produce exactly the output sizes.
            let _ = view.write(0, bytes);
        }
        sleep_until(start + device_time);
        if iteration + 1 < repeat {
            data = if chain {
                results
            } else {
                ins.iter().map(View::to_vec).collect()
            };
        }
    }
    Ok(())
}
