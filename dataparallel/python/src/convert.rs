//! The engine's reports (plan, metrics, health, model tensors, batcher stats) as plain
//! Python dicts and lists: easy to print, log or return as JSON from a server.

use dataparallel::batcher::BatcherStats;
use dataparallel::{ChunkPlan, CoreHealth, CoreState, IoSpec, Metrics};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// `[{"name", "dtype", "shape"}, ...]`.
pub(crate) fn io_specs<'py>(py: Python<'py>, specs: &[IoSpec]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for spec in specs {
        let d = PyDict::new(py);
        d.set_item("name", &spec.name)?;
        d.set_item("dtype", spec.dtype.map(|t| t.name()))?;
        d.set_item("shape", spec.shape.clone())?;
        list.append(d)?;
    }
    Ok(list)
}

/// One dict per chunk.
pub(crate) fn plan<'py>(py: Python<'py>, plan: &[ChunkPlan]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for chunk in plan {
        let d = PyDict::new(py);
        d.set_item("chunk", chunk.chunk)?;
        d.set_item("start", chunk.start)?;
        d.set_item("rows", chunk.rows)?;
        d.set_item("core", chunk.core.index())?;
        d.set_item("physical_core", chunk.physical_core)?;
        d.set_item("pieces", chunk.pieces)?;
        d.set_item("pad_rows", chunk.pad_rows)?;
        d.set_item("batch_sizes", chunk.batch_sizes.clone())?;
        list.append(d)?;
    }
    Ok(list)
}

/// Totals and one dict per core.
pub(crate) fn metrics<'py>(py: Python<'py>, metrics: &Metrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows", metrics.rows())?;
    d.set_item("pad_rows", metrics.pad_rows())?;
    d.set_item("pad_ratio", metrics.pad_ratio())?;
    let all = metrics.piece_latency();
    d.set_item("piece_latency_p50_us", all.quantile_us(0.5))?;
    d.set_item("piece_latency_p99_us", all.quantile_us(0.99))?;
    let cores = PyList::empty(py);
    for core in &metrics.cores {
        let c = PyDict::new(py);
        c.set_item("core", core.core.index())?;
        c.set_item("physical_core", core.physical_core)?;
        c.set_item("executions", core.executions)?;
        c.set_item("busy_ns", core.busy_ns)?;
        c.set_item("failures", core.failures)?;
        c.set_item("rows", core.rows)?;
        c.set_item("pad_rows", core.pad_rows)?;
        c.set_item("busy_retries", core.busy_retries)?;
        c.set_item("piece_latency_p50_us", core.piece_latency.quantile_us(0.5))?;
        c.set_item("piece_latency_p99_us", core.piece_latency.quantile_us(0.99))?;
        cores.append(c)?;
    }
    d.set_item("cores", cores)?;
    Ok(d)
}

/// One dict per core.
pub(crate) fn health<'py>(py: Python<'py>, health: &[CoreHealth]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for core in health {
        let d = PyDict::new(py);
        d.set_item("core", core.core.index())?;
        d.set_item("physical_core", core.physical_core)?;
        d.set_item(
            "state",
            match core.state {
                CoreState::Healthy => "healthy",
                CoreState::Quarantined => "quarantined",
            },
        )?;
        d.set_item("consecutive_failures", core.consecutive_failures)?;
        d.set_item("last_status", core.last_status.map(|s| s.raw()))?;
        d.set_item("executions", core.executions)?;
        list.append(d)?;
    }
    Ok(list)
}

/// A batcher's counters and latency quantiles.
pub(crate) fn batcher_stats<'py>(
    py: Python<'py>,
    stats: &BatcherStats,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("queue_depth", stats.queue_depth)?;
    d.set_item("submitted", stats.submitted)?;
    d.set_item("completed", stats.completed)?;
    d.set_item("failed", stats.failed)?;
    d.set_item("rejected_full", stats.rejected_full)?;
    d.set_item("invalid", stats.invalid)?;
    d.set_item("expired", stats.expired)?;
    d.set_item("abandoned", stats.abandoned)?;
    d.set_item("batches", stats.batches)?;
    d.set_item("rows", stats.rows)?;
    d.set_item("mean_batch_rows", stats.mean_batch_rows())?;
    d.set_item(
        "latency_p50_us",
        stats.latency_p50().map(|l| l.as_micros() as u64),
    )?;
    d.set_item(
        "latency_p99_us",
        stats.latency_p99().map(|l| l.as_micros() as u64),
    )?;
    d.set_item(
        "mean_queue_wait_us",
        stats.mean_queue_wait().map(|l| l.as_micros() as u64),
    )?;
    Ok(d)
}
