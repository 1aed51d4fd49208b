//! `neuron_dp.DataParallel`: the engine as a Python class, shaped like
//! `torch_neuronx.DataParallel` (`model(x)`, `disable_dynamic_batching()`), plus
//! `forward_into`, `plan`, `metrics`, `health`, `readmit` and `cores`.
//!
//! Every forward runs with the GIL released. A long call (more than [`WAVE_PIECES`] pieces
//! per core on dim 0 with dynamic batching) runs as consecutive waves of rows, and between
//! waves the calling thread checks for signals: Ctrl-C raises `KeyboardInterrupt` once the
//! wave in flight has finished, and no buffer is released while a worker still uses it,
//! because each wave's `forward_into` returns only after every piece of it completed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;

use dataparallel::{Config, DataParallel, Error, Input, Output};
use neuron_rt::{DeviceId, Neff, Runtime};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::arrays::{self, Held, Raw};
use crate::convert;
use crate::errors::{engine_error, input_error, panic_error};

/// Pieces per core in one wave of a long call: Ctrl-C is seen within about this many
/// executions.
pub(crate) const WAVE_PIECES: usize = 8;

/// A model replicated on several NeuronCores; see the type stubs (`python/neuron_dp/_native.pyi`).
#[pyclass(frozen, name = "DataParallel", module = "neuron_dp._native")]
#[derive(Debug)]
pub(crate) struct PyDataParallel {
    pub(crate) engine: Arc<DataParallel>,
    allow_copy: bool,
    /// Whether the user set `split_size` (then calls are not cut into waves).
    split: bool,
}

/// Views of `raws` as engine inputs.
///
/// # Safety
///
/// Each `Raw` must describe `len` readable bytes at `addr` that stay valid, and are not
/// written, for as long as the returned views are used (the `Held` objects they came from
/// are alive and the caller does not mutate them).
unsafe fn input_views<'a>(raws: impl IntoIterator<Item = &'a Raw>) -> Vec<Input<'a>> {
    raws.into_iter()
        .map(|r| {
            let data: &[u8] = if r.len == 0 {
                &[]
            } else {
                // SAFETY: the caller guarantees `len` valid bytes at `addr`.
                unsafe { std::slice::from_raw_parts(r.addr as *const u8, r.len) }
            };
            let view = Input::new(r.dtype, &r.shape, data);
            match &r.name {
                Some(name) => view.named(name),
                None => view,
            }
        })
        .collect()
}

/// Views of `raws` as engine outputs.
///
/// # Safety
///
/// As [`input_views`], and the ranges are writable and overlap no other view
/// (`arrays::check_disjoint`).
unsafe fn output_views<'a>(raws: impl IntoIterator<Item = &'a Raw>) -> Vec<Output<'a>> {
    raws.into_iter()
        .map(|r| {
            let data: &mut [u8] = if r.len == 0 {
                &mut []
            } else {
                // SAFETY: the caller guarantees `len` writable, unaliased bytes at `addr`.
                unsafe { std::slice::from_raw_parts_mut(r.addr as *mut u8, r.len) }
            };
            let view = Output::new(r.dtype, &r.shape, data);
            match &r.name {
                Some(name) => view.named(name),
                None => view,
            }
        })
        .collect()
}

/// Rows `start..end` (on dim 0) of a tensor whose dim 0 is `rows`.
fn rows_of(raw: &Raw, rows: usize, start: usize, end: usize) -> Raw {
    let row_bytes = raw.len / rows;
    let mut shape = raw.shape.clone();
    shape[0] = end - start;
    Raw {
        name: raw.name.clone(),
        dtype: raw.dtype,
        shape,
        addr: raw.addr + start * row_bytes,
        len: (end - start) * row_bytes,
    }
}

/// Runs `f` on the engine with the GIL released, turning a panic into an exception.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(engine_error(py, &error)),
        Err(panic) => Err(panic_error(py, panic.as_ref())),
    }
}

impl PyDataParallel {
    /// Inputs from positional and keyword arguments.
    fn resolve_inputs<'py>(
        &self,
        py: Python<'py>,
        args: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Vec<Held>> {
        let spec = self.engine.spec();
        let mut held = Vec::with_capacity(args.len());
        for (i, arg) in args.enumerate() {
            let hint = spec.inputs.get(i).and_then(|s| s.dtype);
            held.push(arrays::input(py, &arg, i, None, self.allow_copy, hint)?);
        }
        if let Some(kwargs) = kwargs {
            for (i, (key, value)) in kwargs.iter().enumerate() {
                let name: String = key.extract()?;
                let hint = spec
                    .inputs
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.dtype);
                held.push(arrays::input(
                    py,
                    &value,
                    i,
                    Some(name),
                    self.allow_copy,
                    hint,
                )?);
            }
        }
        Ok(held)
    }

    /// `(start, end)` row ranges to run one after the other, or `None` to run the call
    /// whole (unless it is long enough to cut into waves).
    fn waves(&self, inputs: &[Held], outputs: &[Held]) -> Option<Vec<(usize, usize)>> {
        let engine = &self.engine;
        let rows = *inputs.first()?.raw.shape.first()?;
        let largest = engine.batch_sizes().iter().copied().max().unwrap_or(1);
        let wave = engine
            .devices()
            .len()
            .saturating_mul(largest)
            .saturating_mul(WAVE_PIECES)
            .max(1);
        if self.split || engine.dim() != 0 || !engine.dynamic_batching() || rows <= wave {
            return None;
        }
        let uniform = inputs
            .iter()
            .chain(outputs)
            .all(|h| h.raw.shape.first() == Some(&rows));
        if !uniform {
            return None;
        }
        Some(
            (0..rows)
                .step_by(wave)
                .map(|start| (start, (start + wave).min(rows)))
                .collect(),
        )
    }

    /// Runs the forward into `outputs`, in waves, checking for signals between them.
    fn run(&self, py: Python<'_>, inputs: &[Held], outputs: &[Held]) -> PyResult<()> {
        arrays::check_disjoint(py, inputs, outputs)?;
        let engine = &self.engine;
        let Some(waves) = self.waves(inputs, outputs) else {
            // The common case: one forward over the callers' memory, views built once.
            return detached(py, || {
                // SAFETY: `inputs` and `outputs` (alive for this whole function) own or pin
                // the memory the raws describe; outputs were checked disjoint from each
                // other and from the inputs.
                let (views, mut out_views) = unsafe {
                    (
                        input_views(inputs.iter().map(|h| &h.raw)),
                        output_views(outputs.iter().map(|h| &h.raw)),
                    )
                };
                engine.forward_into(&views, &mut out_views)
            });
        };
        let rows = inputs[0].raw.shape[0];
        let last = waves.len().saturating_sub(1);
        for (i, &(start, end)) in waves.iter().enumerate() {
            let wave_ins: Vec<Raw> = inputs
                .iter()
                .map(|h| rows_of(&h.raw, rows, start, end))
                .collect();
            let wave_outs: Vec<Raw> = outputs
                .iter()
                .map(|h| rows_of(&h.raw, rows, start, end))
                .collect();
            detached(py, || {
                // SAFETY: as above, and the wave ranges stay inside each tensor (every
                // tensor has `rows` rows on dim 0: `waves` checked).
                let (views, mut out_views) =
                    unsafe { (input_views(&wave_ins), output_views(&wave_outs)) };
                engine.forward_into(&views, &mut out_views)
            })?;
            if i != last {
                py.check_signals()?;
            }
        }
        Ok(())
    }

    /// Allocates the outputs a forward of `inputs` produces.
    fn allocate(&self, py: Python<'_>, inputs: &[Held]) -> PyResult<Vec<Held>> {
        let shapes = {
            // SAFETY: `inputs` keeps the memory alive; `output_shapes` only validates.
            let views = unsafe { input_views(inputs.iter().map(|h| &h.raw)) };
            self.engine
                .output_shapes(&views)
                .map_err(|e| engine_error(py, &e))?
        };
        self.engine
            .spec()
            .outputs
            .iter()
            .zip(&shapes)
            .map(|(spec, shape)| {
                let dtype = spec.dtype.ok_or_else(|| {
                    input_error(
                        py,
                        format!(
                            "the model's output `{}` has a dtype this runtime does not name; \
                             use forward_into with your own buffers",
                            spec.name
                        ),
                    )
                })?;
                arrays::empty(py, dtype, shape)
            })
            .collect()
    }

    /// Outputs given to `forward_into`: one array, a sequence, or a dict by name.
    fn resolve_outputs(py: Python<'_>, outputs: &Bound<'_, PyAny>) -> PyResult<Vec<Held>> {
        if let Ok(dict) = outputs.cast::<PyDict>() {
            return dict
                .iter()
                .enumerate()
                .map(|(i, (k, v))| arrays::output(py, &v, i, Some(k.extract()?)))
                .collect();
        }
        if outputs.cast::<PyList>().is_ok() || outputs.cast::<PyTuple>().is_ok() {
            return outputs
                .try_iter()?
                .enumerate()
                .map(|(i, v)| arrays::output(py, &v?, i, None))
                .collect();
        }
        Ok(vec![arrays::output(py, outputs, 0, None)?])
    }
}

/// Reads the model argument: one path, or a list of paths (batch-size buckets).
fn model_paths(model: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if let Ok(path) = model.extract::<PathBuf>() {
        return Ok(vec![path]);
    }
    model
        .try_iter()?
        .map(|item| item?.extract::<PathBuf>())
        .collect()
}

/// Applies `device_ids` (None, "nc:0,nc:1", or a sequence of ints / "nc:N" strings).
fn with_devices(config: Config, device_ids: Option<&Bound<'_, PyAny>>) -> PyResult<Config> {
    let Some(ids) = device_ids else {
        return Ok(config);
    };
    if ids.is_none() {
        return Ok(config);
    }
    if let Ok(list) = ids.extract::<String>() {
        return Ok(config.device_list(list));
    }
    if let Ok(indices) = ids.extract::<Vec<i64>>() {
        return Ok(config.device_indices(indices));
    }
    let entries: Vec<String> = ids
        .try_iter()?
        .map(|item| {
            let item = item?;
            match item.extract::<i64>() {
                Ok(i) => Ok(i.to_string()),
                Err(_) => item.extract::<String>(),
            }
        })
        .collect::<PyResult<_>>()?;
    Ok(config.device_list(entries.join(",")))
}

#[pymethods]
impl PyDataParallel {
    /// Loads the NEFF (or the bucket NEFFs) on the chosen cores; see `neuron_dp.DataParallel`.
    #[new]
    #[pyo3(signature = (
        model, device_ids=None, dim=0, set_dynamic_batching=true, *, split_size=None,
        num_workers=None, spread_small_calls=false, pack=false, allow_copy=false,
        pin_cpus=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        device_ids: Option<&Bound<'_, PyAny>>,
        dim: usize,
        set_dynamic_batching: bool,
        split_size: Option<usize>,
        num_workers: Option<usize>,
        spread_small_calls: bool,
        pack: bool,
        allow_copy: bool,
        pin_cpus: bool,
    ) -> PyResult<PyDataParallel> {
        let paths = model_paths(model).map_err(|_| {
            crate::errors::raise(
                py,
                "ConfigError",
                "model must be a path to a NEFF file (str or os.PathLike) or a list of paths \
                 (one NEFF per compiled batch size)",
                &[],
            )
        })?;
        let mut config = Config::default()
            .dim(dim)
            .dynamic_batching(set_dynamic_batching)
            .spread_small_calls(spread_small_calls)
            .pack(pack)
            .pin_cpus(pin_cpus);
        if let Some(rows) = split_size {
            config = config.split_size(rows);
        }
        if let Some(workers) = num_workers {
            config = config.num_workers(workers);
        }
        let config = with_devices(config, device_ids)?;
        let engine = detached(py, move || {
            let runtime = Runtime::init()?;
            let neffs = paths
                .iter()
                .map(|p| Neff::from_path(p).map_err(|e| Error::Runtime(e.into())))
                .collect::<Result<Vec<_>, _>>()?;
            if neffs.len() == 1 {
                DataParallel::new(&runtime, &neffs[0], config)
            } else {
                DataParallel::with_buckets(&runtime, &neffs, config)
            }
        })?;
        Ok(PyDataParallel {
            engine: Arc::new(engine),
            allow_copy,
            split: split_size.is_some(),
        })
    }

    /// Runs a batch (inputs by position or name); returns the outputs, newly allocated.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let inputs = self.resolve_inputs(py, args.iter(), kwargs)?;
        let torch = inputs.iter().any(|h| h.torch);
        let outputs = self.allocate(py, &inputs)?;
        self.run(py, &inputs, &outputs)?;
        drop(inputs);
        let mut returned = outputs
            .into_iter()
            .map(|held| arrays::returned(py, held, torch))
            .collect::<PyResult<Vec<_>>>()?;
        if returned.len() == 1 {
            return Ok(returned.remove(0));
        }
        Ok(PyTuple::new(py, returned)?.into_any().unbind())
    }

    /// Runs a batch into the caller's writable, C-contiguous output arrays.
    fn forward_into(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let held = if let Ok(dict) = inputs.cast::<PyDict>() {
            self.resolve_inputs(py, std::iter::empty(), Some(dict))?
        } else if inputs.cast::<PyList>().is_ok() || inputs.cast::<PyTuple>().is_ok() {
            let items = inputs.try_iter()?.collect::<PyResult<Vec<_>>>()?;
            self.resolve_inputs(py, items.into_iter(), None)?
        } else {
            self.resolve_inputs(py, std::iter::once(inputs.clone()), None)?
        };
        let outputs = Self::resolve_outputs(py, outputs)?;
        self.run(py, &held, &outputs)
    }

    /// From now on every batch must be exactly cores x compiled batch rows.
    fn disable_dynamic_batching(&self) {
        self.engine.disable_dynamic_batching();
    }

    /// Whether dynamic batching is on.
    #[getter]
    fn dynamic_batching(&self) -> bool {
        self.engine.dynamic_batching()
    }

    /// The split dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.engine.dim()
    }

    /// Worker threads.
    #[getter]
    fn num_workers(&self) -> usize {
        self.engine.num_workers()
    }

    /// The compiled batch sizes, ascending (one per NEFF).
    #[getter]
    fn batch_sizes(&self) -> Vec<usize> {
        self.engine.batch_sizes().to_vec()
    }

    /// (logical, physical) per core; physical is None when unknown.
    #[getter]
    fn cores(&self) -> Vec<(u32, Option<u32>)> {
        self.engine
            .devices()
            .iter()
            .zip(self.engine.physical_cores())
            .map(|(d, p)| (d.index(), p))
            .collect()
    }

    /// The model's inputs: {"name", "dtype", "shape"}.
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        convert::io_specs(py, &self.engine.spec().inputs)
    }

    /// The model's outputs: {"name", "dtype", "shape"}.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        convert::io_specs(py, &self.engine.spec().outputs)
    }

    /// How `rows` rows would be split: one dict per chunk.
    fn plan<'py>(&self, py: Python<'py>, rows: usize) -> PyResult<Bound<'py, PyList>> {
        let plan = self.engine.plan(rows).map_err(|e| engine_error(py, &e))?;
        convert::plan(py, &plan)
    }

    /// Totals and per-core counters and latencies since the model was built.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        convert::metrics(py, &self.engine.metrics())
    }

    /// Per core: state, consecutive failures, last status, executions.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        convert::health(py, &self.engine.health())
    }

    /// Reloads the model on a quarantined core (int or "nc:N") and takes it back.
    fn readmit(&self, py: Python<'_>, core: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = match core.extract::<i64>() {
            Ok(index) => DeviceId::from_index(index),
            Err(_) => core.extract::<String>()?.parse::<DeviceId>(),
        }
        .map_err(|e| engine_error(py, &Error::Runtime(e.into())))?;
        let engine = &self.engine;
        detached(py, || engine.readmit(id))
    }

    fn __repr__(&self) -> String {
        format!(
            "neuron_dp.DataParallel(cores={:?}, dim={}, dynamic_batching={}, batch_sizes={:?})",
            self.cores()
                .iter()
                .map(|(l, _)| format!("nc:{l}"))
                .collect::<Vec<_>>(),
            self.engine.dim(),
            self.engine.dynamic_batching(),
            self.engine.batch_sizes()
        )
    }
}
