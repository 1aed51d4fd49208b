//! `neuron_dp.Batcher`: the engine's request batcher for Python servers. Many callers submit
//! small requests; the batcher coalesces them into batches on one `DataParallel`.
//!
//! `infer` blocks with the GIL released (waking every 100 ms to see Ctrl-C). `infer_async`
//! returns an asyncio future: the request's ticket is polled with a waker that, when the
//! batcher completes the request, sends its id to this batcher's notifier thread, which
//! takes the GIL and completes the future with `loop.call_soon_threadsafe`. The batcher's
//! own threads never wait for the GIL.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dataparallel::batcher::{
    Batcher, BatcherConfig, OwnedTensor, Request, RequestError, Response, Ticket,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::arrays::{self, Held};
use crate::convert;
use crate::errors::{engine_error, request_error, submit_error, try_submit_error};
use crate::model::PyDataParallel;

/// How often a blocking `infer` wakes to check for Ctrl-C.
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// A request waiting for its asyncio future to be completed.
#[derive(Debug)]
struct Pending {
    ticket: Ticket,
    future: Py<PyAny>,
    event_loop: Py<PyAny>,
    torch: bool,
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

/// Wakes the notifier thread for one request.
#[derive(Debug)]
struct IdWaker {
    id: u64,
    notify: Sender<u64>,
}

impl Wake for IdWaker {
    fn wake(self: Arc<Self>) {
        // A closed channel means the notifier is gone (interpreter shutting down).
        let _ = self.notify.send(self.id);
    }
}

/// Coalesces requests from many threads or tasks into batches on one model.
#[pyclass(frozen, name = "Batcher", module = "neuron_dp._native")]
#[derive(Debug)]
pub(crate) struct PyBatcher {
    batcher: Batcher,
    allow_copy: bool,
    pending: PendingMap,
    notify: Sender<u64>,
    next_id: AtomicU64,
}

/// Copies the request's inputs (coalescing requests is a copy by nature).
fn request(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    allow_copy: bool,
) -> PyResult<(Request, bool)> {
    let mut held: Vec<Held> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        held.push(arrays::input(py, &arg, i, None, allow_copy, None)?);
    }
    if let Some(kwargs) = kwargs {
        for (i, (key, value)) in kwargs.iter().enumerate() {
            held.push(arrays::input(
                py,
                &value,
                i,
                Some(key.extract()?),
                allow_copy,
                None,
            )?);
        }
    }
    let torch = held.iter().any(|h| h.torch);
    let tensors = held
        .iter()
        .map(|h| {
            let bytes = if h.raw.len == 0 {
                Vec::new()
            } else {
                // SAFETY: `held` keeps the memory alive and the GIL is held while copying.
                unsafe { std::slice::from_raw_parts(h.raw.addr as *const u8, h.raw.len) }.to_vec()
            };
            let tensor = OwnedTensor::new(h.raw.dtype, h.raw.shape.clone(), bytes);
            match &h.raw.name {
                Some(name) => tensor.named(name.clone()),
                None => tensor,
            }
        })
        .collect();
    Ok((Request::new(tensors), torch))
}

/// The Python value of a response: one array, or a tuple.
fn response(py: Python<'_>, response: Response, torch: bool) -> PyResult<Py<PyAny>> {
    let mut outputs = response
        .outputs
        .into_iter()
        .map(|t| arrays::owned(py, t, torch))
        .collect::<PyResult<Vec<_>>>()?;
    if outputs.len() == 1 {
        return Ok(outputs.remove(0));
    }
    Ok(PyTuple::new(py, outputs)?.into_any().unbind())
}

/// Completes `pending`'s future on its loop with the outcome.
fn complete(
    py: Python<'_>,
    pending: Pending,
    outcome: Result<Response, RequestError>,
) -> PyResult<()> {
    let (value, error) = match outcome.map(|r| response(py, r, pending.torch)) {
        Ok(Ok(value)) => (value, py.None()),
        Ok(Err(error)) => (py.None(), error.into_value(py).into_any()),
        Err(error) => (
            py.None(),
            request_error(py, &error).into_value(py).into_any(),
        ),
    };
    let setter = py
        .import("neuron_dp._asyncio")?
        .getattr("complete_future")?;
    pending.event_loop.bind(py).call_method1(
        "call_soon_threadsafe",
        (setter, pending.future, value, error),
    )?;
    Ok(())
}

/// Polls the ticket of request `id` (in `map`); completes it when ready.
fn poll(py: Python<'_>, map: &PendingMap, id: u64, notify: &Sender<u64>) {
    let ready = {
        let mut guard = map.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = guard.get_mut(&id) else {
            return;
        };
        let waker = Waker::from(Arc::new(IdWaker {
            id,
            notify: notify.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        match Pin::new(&mut entry.ticket).poll(&mut cx) {
            Poll::Pending => None,
            Poll::Ready(outcome) => guard.remove(&id).map(|p| (p, outcome)),
        }
    };
    if let Some((pending, outcome)) = ready {
        // A closed event loop cannot take the result; nobody is waiting for it then.
        let _ = complete(py, pending, outcome);
    }
}

/// The notifier thread: completes futures as their requests finish.
fn notifier(map: PendingMap, wakeups: Receiver<u64>, notify: Sender<u64>) {
    while let Ok(id) = wakeups.recv() {
        Python::attach(|py| poll(py, &map, id, &notify));
    }
}

#[pymethods]
impl PyBatcher {
    /// Starts a batcher over `model`; see `neuron_dp.Batcher`.
    #[new]
    #[pyo3(signature = (
        model, max_batch_rows=None, max_delay_us=None, batches_in_flight=2, max_queue=None,
        timeout_ms=None, allow_copy=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyDataParallel>,
        max_batch_rows: Option<usize>,
        max_delay_us: Option<u64>,
        batches_in_flight: usize,
        max_queue: Option<usize>,
        timeout_ms: Option<u64>,
        allow_copy: bool,
    ) -> PyResult<PyBatcher> {
        let mut config = BatcherConfig::default().batches_in_flight(batches_in_flight);
        if let Some(rows) = max_batch_rows {
            config = config.max_batch_rows(rows);
        }
        if let Some(us) = max_delay_us {
            config = config.max_delay(Duration::from_micros(us));
        }
        if let Some(requests) = max_queue {
            config = config.queue_capacity(requests);
        }
        if let Some(ms) = timeout_ms {
            config = config.default_deadline(Some(Duration::from_millis(ms)));
        }
        let engine = model.get().engine.clone();
        let batcher = Batcher::new(engine, config).map_err(|e| engine_error(py, &e))?;
        let pending: PendingMap = Arc::default();
        let (notify, wakeups) = crossbeam_channel::unbounded();
        let (map, tx) = (pending.clone(), notify.clone());
        std::thread::Builder::new()
            .name("neuron-dp-asyncio".into())
            .spawn(move || notifier(map, wakeups, tx))
            .map_err(|e| {
                crate::errors::raise(
                    py,
                    "Error",
                    &format!("cannot start the batcher's notifier thread: {e}"),
                    &[],
                )
            })?;
        Ok(PyBatcher {
            batcher,
            allow_copy,
            pending,
            notify,
            next_id: AtomicU64::new(0),
        })
    }

    /// Submits one request and blocks (GIL released) until its outputs are ready.
    #[pyo3(signature = (*args, **kwargs))]
    fn infer(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let (request, torch) = request(py, args, kwargs, self.allow_copy)?;
        let batcher = &self.batcher;
        let mut ticket = py
            .detach(|| batcher.submit(request))
            .map_err(|e| submit_error(py, &e))?;
        loop {
            match py.detach(move || ticket.wait_timeout(SIGNAL_SLICE)) {
                Ok(outcome) => {
                    let outputs = outcome.map_err(|e| request_error(py, &e))?;
                    return response(py, outputs, torch);
                }
                Err(still) => {
                    // On Ctrl-C the ticket drops here, which cancels the request if it
                    // has not joined a batch yet.
                    py.check_signals()?;
                    ticket = still;
                }
            }
        }
    }

    /// Submits one request from a running event loop; returns an asyncio future.
    #[pyo3(signature = (*args, **kwargs))]
    fn infer_async(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let (request, torch) = request(py, args, kwargs, self.allow_copy)?;
        let ticket = self
            .batcher
            .try_submit(request)
            .map_err(|e| try_submit_error(py, &e))?;
        let future = event_loop.call_method0("create_future")?.unbind();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Pending {
                    ticket,
                    future: future.clone_ref(py),
                    event_loop: event_loop.unbind(),
                    torch,
                },
            );
        poll(py, &self.pending, id, &self.notify);
        Ok(future)
    }

    /// Counters and latencies, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        convert::batcher_stats(py, &self.batcher.stats())
    }

    /// Most rows per batch.
    #[getter]
    fn max_batch_rows(&self) -> usize {
        self.batcher.max_batch_rows()
    }
}
