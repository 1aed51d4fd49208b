//! The native part of the `neuron_dp` Python package (`neuron_dp._native`): the
//! [`dataparallel`] engine for Python, built by maturin (`pip install ./dataparallel/python`).
//!
//! | module | owns |
//! |---|---|
//! | `model` | `DataParallel`: construction, `model(x)`, `forward_into`, waves and Ctrl-C, reports |
//! | `batcher` | `Batcher`: `infer`, `infer_async` (asyncio), `stats`, `close` and `with` / `async with` |
//! | `arrays` | Python objects → views of their memory (numpy, buffer protocol, `__array_interface__`), output arrays |
//! | `dlpack` | reading `__dlpack__` capsules (torch tensors, bfloat16) |
//! | `errors` | the one mapping from engine errors to `neuron_dp` exceptions |
//! | `convert` | reports as dicts and lists |
//!
//! The Python side (`python/neuron_dp/`) holds the exception classes, type stubs and the
//! mock-NEFF writer for tests and examples. This crate uses only the engine's public API.

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod arrays;
mod batcher;
mod convert;
mod dlpack;
mod errors;
mod model;

/// Facts about the loaded Neuron runtime library (initialising it if no model holds it).
#[pyfunction]
fn runtime_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let runtime = py
        .detach(neuron_rt::Runtime::init)
        .map_err(|e| errors::engine_error(py, &dataparallel::Error::Runtime(e)))?;
    let d = PyDict::new(py);
    d.set_item("library", runtime.library_path().display().to_string())?;
    d.set_item("version", runtime.version().to_string())?;
    d.set_item("is_mock", runtime.version().is_mock())?;
    d.set_item("total_cores", runtime.total_cores())?;
    d.set_item("visible_cores", runtime.visible_cores())?;
    d.set_item("lnc", runtime.lnc())?;
    let physical: Vec<Option<u32>> = (0..runtime.visible_cores())
        .map(|i| runtime.physical_core(neuron_rt::DeviceId::new(i)))
        .collect();
    d.set_item("physical_cores", physical)?;
    d.set_item("engine_version", env!("CARGO_PKG_VERSION"))?;
    Ok(d)
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<model::PyDataParallel>()?;
    module.add_class::<batcher::PyBatcher>()?;
    module.add_function(wrap_pyfunction!(runtime_info, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
