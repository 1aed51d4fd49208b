//! `neuron_dp.Batcher`: the engine's request batcher for Python servers. Many callers submit
//! small requests; the batcher coalesces them into batches on one `DataParallel`.
//!
//! `infer` blocks with the GIL released (waking every 100 ms to see Ctrl-C). `infer_async`
//! returns an asyncio future: the request's ticket is polled with a waker that, when the
//! batcher completes the request, sends its id to this batcher's notifier thread, which
//! takes the GIL and completes the future with `loop.call_soon_threadsafe`. The batcher's
//! own threads never wait for the GIL.
//!
//! Lifecycle: `close()` (also `with`, `async with`, `await aclose()`) stops accepting
//! requests, runs every request already queued, and stops the notifier thread once their
//! futures are completed. The drain runs on a thread of its own so the caller can wait for it
//! with the GIL released and still see Ctrl-C; later submits raise `BatcherClosedError`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dataparallel::batcher::{
    Batcher, BatcherConfig, BatcherStats, OwnedTensor, Request, RequestError, Response, Ticket,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::arrays::{self, Held};
use crate::convert;
use crate::errors::{closed_error, engine_error, request_error, submit_error, try_submit_error};
use crate::model::PyDataParallel;

/// How often a blocking `infer` (or `close`) wakes to check for Ctrl-C.
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

/// What the notifier thread is told.
#[derive(Debug, Clone, Copy)]
enum Wakeup {
    /// Request `id`'s ticket may be ready: poll it.
    Request(u64),
    /// The batcher is drained (or gone): every ticket is complete and its wake-up was sent
    /// before this, so stop.
    Stop,
}

/// Wakes the notifier thread for one request.
#[derive(Debug)]
struct IdWaker {
    id: u64,
    notify: Sender<Wakeup>,
}

impl Wake for IdWaker {
    fn wake(self: Arc<Self>) {
        // A closed channel means the notifier has stopped; nobody is waiting any more.
        let _ = self.notify.send(Wakeup::Request(self.id));
    }
}

/// Where the batcher is in its life. Open while `PyBatcher::batcher` holds it.
#[derive(Debug)]
enum Phase {
    Open,
    /// `close` began; the drain thread owns the batcher. The stats as of that moment.
    Closing(BatcherStats),
    /// Drained and stopped; the final stats.
    Closed(BatcherStats),
}

/// The close bookkeeping, behind one mutex (held only briefly, never across a wait).
#[derive(Debug)]
struct Lifecycle {
    phase: Phase,
    /// Disconnected (every clone sees it) once the drain thread has finished; `Some` from
    /// the first `close`.
    drained: Option<Receiver<()>>,
    /// The notifier thread, until the drain thread takes it to join it.
    notifier: Option<JoinHandle<()>>,
}

/// Coalesces requests from many threads or tasks into batches on one model.
#[pyclass(frozen, name = "Batcher", module = "neuron_dp._native")]
#[derive(Debug)]
pub(crate) struct PyBatcher {
    /// The engine's batcher while open; `close` takes it (under the write lock, so no submit
    /// is half-way through when it does). Submitters hold the read lock while submitting.
    batcher: Arc<RwLock<Option<Batcher>>>,
    lifecycle: Arc<Mutex<Lifecycle>>,
    max_batch_rows: usize,
    allow_copy: bool,
    pending: PendingMap,
    notify: Sender<Wakeup>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; the data stays consistent if one did.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs on its own thread: takes the batcher (waiting for submits in progress), drains it,
/// then stops and joins the notifier. Dropping `done` tells every waiting `close`.
fn drain(
    batcher: Arc<RwLock<Option<Batcher>>>,
    lifecycle: Arc<Mutex<Lifecycle>>,
    notify: Sender<Wakeup>,
    done: Sender<()>,
) {
    let mut slot = batcher.write().unwrap_or_else(PoisonError::into_inner);
    let taken = slot.take();
    if let Some(taken) = &taken {
        // Before the write lock goes: whoever then finds the slot empty finds the stats.
        lock(&lifecycle).phase = Phase::Closing(taken.stats());
    }
    drop(slot);
    if let Some(taken) = taken {
        let stats = taken.shutdown();
        lock(&lifecycle).phase = Phase::Closed(stats);
    }
    // Every ticket is complete now and its wake-up was sent before this message.
    let _ = notify.send(Wakeup::Stop);
    let notifier = lock(&lifecycle).notifier.take();
    if let Some(notifier) = notifier {
        // The notifier only returns; a panic in it would already have been reported.
        let _ = notifier.join();
    }
    drop(done);
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

/// `neuron_dp._asyncio.complete_many`, looked up once.
static COMPLETE_MANY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `asyncio.get_running_loop`, looked up once.
static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The value and the exception (one of them `None`) a request's future gets.
fn settle(
    py: Python<'_>,
    torch: bool,
    outcome: Result<Response, RequestError>,
) -> (Py<PyAny>, Py<PyAny>) {
    match outcome.map(|r| response(py, r, torch)) {
        Ok(Ok(value)) => (value, py.None()),
        Ok(Err(error)) => (py.None(), error.into_value(py).into_any()),
        Err(error) => (
            py.None(),
            request_error(py, &error).into_value(py).into_any(),
        ),
    }
}

/// Polls the tickets of requests `ids` (in `map`) and completes the ready ones: one
/// `call_soon_threadsafe` per event loop for all of its futures, so a burst of completions
/// costs each loop one wake-up.
fn poll(py: Python<'_>, map: &PendingMap, ids: &[u64], notify: &Sender<Wakeup>) {
    let mut ready = Vec::new();
    {
        let mut guard = lock(map);
        for &id in ids {
            let Some(entry) = guard.get_mut(&id) else {
                continue; // completed already (woken twice)
            };
            let waker = Waker::from(Arc::new(IdWaker {
                id,
                notify: notify.clone(),
            }));
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(outcome) = Pin::new(&mut entry.ticket).poll(&mut cx) {
                ready.extend(guard.remove(&id).map(|p| (p, outcome)));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    type Settled = (Py<PyAny>, Py<PyAny>, Py<PyAny>);
    let mut loops: Vec<(Py<PyAny>, Vec<Settled>)> = Vec::new();
    for (pending, outcome) in ready {
        let (value, error) = settle(py, pending.torch, outcome);
        let item = (pending.future, value, error);
        match loops
            .iter_mut()
            .find(|(event_loop, _)| event_loop.as_ptr() == pending.event_loop.as_ptr())
        {
            Some((_, items)) => items.push(item),
            None => loops.push((pending.event_loop, vec![item])),
        }
    }
    let Ok(complete) = COMPLETE_MANY.import(py, "neuron_dp._asyncio", "complete_many") else {
        return; // the package is broken; nothing here can tell anyone
    };
    for (event_loop, items) in loops {
        // A closed event loop cannot take the results; nobody is waiting for them then.
        let _ = PyList::new(py, items).and_then(|items| {
            event_loop
                .bind(py)
                .call_method1("call_soon_threadsafe", (complete, items))
        });
    }
}

/// The notifier thread: completes futures as their requests finish, until told to stop.
fn notifier(map: PendingMap, wakeups: Receiver<Wakeup>, notify: Sender<Wakeup>) {
    let mut ids = Vec::new();
    while let Ok(Wakeup::Request(first)) = wakeups.recv() {
        ids.clear();
        ids.push(first);
        let stop = Python::attach(|py| {
            // Wake-ups that arrived while this thread waited for the GIL join this round.
            let mut stop = false;
            while let Ok(next) = wakeups.try_recv() {
                match next {
                    Wakeup::Request(id) => ids.push(id),
                    Wakeup::Stop => {
                        stop = true;
                        break;
                    }
                }
            }
            poll(py, &map, &ids, &notify);
            stop
        });
        if stop {
            break;
        }
    }
}

#[pymethods]
impl PyBatcher {
    /// Starts a batcher over `model`; see `neuron_dp.Batcher`.
    #[new]
    #[pyo3(signature = (
        model, max_batch_rows=None, max_delay_us=None, batches_in_flight=2, max_queue=None,
        timeout_ms=None, allow_copy=false, pack=true
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
        pack: bool,
    ) -> PyResult<PyBatcher> {
        let mut config = BatcherConfig::default()
            .batches_in_flight(batches_in_flight)
            .pack(pack);
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
        let max_batch_rows = batcher.max_batch_rows();
        let pending: PendingMap = Arc::default();
        let (notify, wakeups) = crossbeam_channel::unbounded();
        let (map, tx) = (pending.clone(), notify.clone());
        let notifier = std::thread::Builder::new()
            .name("neuron-dp-asyncio".into())
            .spawn(move || notifier(map, wakeups, tx))
            .map_err(|e| {
                crate::errors::raise(
                    py,
                    "Error",
                    &format!(
                        "cannot start the batcher's notifier thread: {e}; free threads or \
                         memory and create the Batcher again"
                    ),
                    &[],
                )
            })?;
        Ok(PyBatcher {
            batcher: Arc::new(RwLock::new(Some(batcher))),
            lifecycle: Arc::new(Mutex::new(Lifecycle {
                phase: Phase::Open,
                drained: None,
                notifier: Some(notifier),
            })),
            max_batch_rows,
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
        let slot = &self.batcher;
        // The read lock is held while waiting for room, so `close` waits for this submit.
        let submitted = py.detach(|| {
            let guard = slot.read().unwrap_or_else(PoisonError::into_inner);
            guard.as_ref().map(|batcher| batcher.submit(request))
        });
        let mut ticket = submitted
            .ok_or_else(|| closed_error(py))?
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
        let event_loop = GET_RUNNING_LOOP
            .import(py, "asyncio", "get_running_loop")?
            .call0()?;
        let (request, torch) = request(py, args, kwargs, self.allow_copy)?;
        let submitted = match self.batcher.try_read() {
            Ok(guard) => guard.as_ref().map(|batcher| batcher.try_submit(request)),
            Err(TryLockError::Poisoned(poisoned)) => poisoned
                .into_inner()
                .as_ref()
                .map(|batcher| batcher.try_submit(request)),
            // Only `close` takes the write lock: it is under way.
            Err(TryLockError::WouldBlock) => None,
        };
        let ticket = submitted
            .ok_or_else(|| closed_error(py))?
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
        poll(py, &self.pending, &[id], &self.notify);
        Ok(future)
    }

    /// Counters and latencies, as a dict (the final ones once closed).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // Blocks only while `close` waits for submits in progress to get into the queue.
        let slot = &self.batcher;
        let live = py.detach(|| {
            let guard = slot.read().unwrap_or_else(PoisonError::into_inner);
            guard.as_ref().map(Batcher::stats)
        });
        let stats = match live {
            Some(stats) => stats,
            // `drain` records the phase before it releases the write lock.
            None => match &lock(&self.lifecycle).phase {
                Phase::Closing(stats) | Phase::Closed(stats) => stats.clone(),
                Phase::Open => {
                    return Err(crate::errors::raise(
                        py,
                        "Error",
                        "internal error in neuron_dp (a bug, please report): the batcher is \
                         gone but was never closed",
                        &[],
                    ));
                }
            },
        };
        convert::batcher_stats(py, &stats)
    }

    /// Most rows per batch.
    #[getter]
    fn max_batch_rows(&self) -> usize {
        self.max_batch_rows
    }

    /// Whether `close` has been called (the batcher may still be draining).
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.lifecycle).drained.is_some()
    }

    /// Stops accepting requests, runs every request already queued, and returns once they
    /// are all complete (their asyncio futures scheduled). Idempotent; Ctrl-C stops the
    /// wait, not the drain.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let drained = {
            let mut lifecycle = lock(&self.lifecycle);
            match &lifecycle.drained {
                Some(drained) => drained.clone(),
                None => {
                    let (done, drained) = crossbeam_channel::bounded::<()>(0);
                    let (batcher, state, notify) = (
                        Arc::clone(&self.batcher),
                        Arc::clone(&self.lifecycle),
                        self.notify.clone(),
                    );
                    std::thread::Builder::new()
                        .name("neuron-dp-close".into())
                        .spawn(move || drain(batcher, state, notify, done))
                        .map_err(|e| {
                            crate::errors::raise(
                                py,
                                "Error",
                                &format!(
                                    "cannot start the thread that drains the batcher: {e}; \
                                     free threads or memory and call close() again"
                                ),
                                &[],
                            )
                        })?;
                    lifecycle.drained = Some(drained.clone());
                    drained
                }
            }
        };
        loop {
            match py.detach(|| drained.recv_timeout(SIGNAL_SLICE)) {
                Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// `with Batcher(model) as b:` closes `b` (draining it) when the block ends.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the batcher; never suppresses the block's exception.
    fn __exit__(
        &self,
        py: Python<'_>,
        _kind: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// `async with Batcher(model) as b:`: awaitable of the batcher itself.
    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("neuron_dp._asyncio")?
            .getattr("ready")?
            .call1((slf,))
    }

    /// Awaitable that closes the batcher on the loop's default executor (the event loop
    /// keeps running, so the queued requests' futures complete meanwhile).
    fn __aexit__<'py>(
        slf: Bound<'py, Self>,
        _kind: &Bound<'py, PyAny>,
        _value: &Bound<'py, PyAny>,
        _traceback: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::aclose(slf)
    }

    /// `await b.aclose()`: `close()` without blocking the event loop.
    fn aclose(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        py.import("neuron_dp._asyncio")?
            .getattr("close_in_executor")?
            .call1((slf,))
    }
}

impl Drop for PyBatcher {
    fn drop(&mut self) {
        // Without `close`: drain here (the batcher's threads never need the GIL, so holding
        // it is safe), then let the notifier finish the futures and stop. Not joined: it
        // needs the GIL this thread holds.
        let taken = self
            .batcher
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(taken);
        let _ = self.notify.send(Wakeup::Stop);
    }
}
