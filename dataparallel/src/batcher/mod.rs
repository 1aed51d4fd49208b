//! A request batcher for serving: many callers submit small requests, the batcher coalesces
//! them into batches and runs them on a [`DataParallel`] engine.
//!
//! The shape follows Triton's dynamic batcher, TF Serving's `BasicBatchScheduler` and Ray
//! Serve's `@serve.batch`:
//!
//! - **Bounded queue.** [`Batcher::try_submit`] never blocks and hands the request back when
//!   the queue is full ([`TrySubmitError::Full`], crossbeam style);
//!   [`Batcher::submit_timeout`] blocks for room up to a timeout
//!   ([`SubmitTimeoutError::Timeout`]); [`Batcher::submit`] blocks until there is room.
//! - **Checked at submit.** A request that does not fit the model (input count, names,
//!   dtypes, shapes, rows ≥ 1, rows ≤ `max_batch_rows`) is refused at once with the reason
//!   ([`InvalidRequest`]), never queued.
//! - **Batch formation.** A batcher thread blocks for a first request, then takes more in
//!   arrival order until the next would exceed `max_batch_rows`, or `max_delay` has passed
//!   since the first was submitted, or a request's deadline comes. `max_delay` is an upper
//!   bound on waiting *for more requests*, not on latency. One batch forms at a time; with
//!   [`BatcherConfig::batches_in_flight`] at its default 2, the next batch forms and starts
//!   while the previous one runs, so responses of different batches can arrive out of
//!   submission order.
//! - **Deadlines.** A request carries a deadline ([`Request::deadline`],
//!   [`Request::timeout`], or [`BatcherConfig::default_deadline`]). It is checked when the
//!   batcher takes the request off the queue (and again if the request did not fit the
//!   batch being formed and waits to start the next one): an expired request completes with
//!   [`RequestError::DeadlineExceeded`] and is never run. A request that joined a batch in
//!   time runs to completion. A request queued behind running batches learns it expired when
//!   a batcher thread is next free to form a batch.
//! - **Completion.** Each submit returns a [`Ticket`]: [`Ticket::wait`],
//!   [`Ticket::wait_timeout`], [`Ticket::is_ready`], [`Ticket::try_result`], or `.await` (a
//!   std [`Future`] with its own waker; no runtime needed). Dropping a ticket cancels its
//!   request if it has not joined a batch yet.
//! - **Packing.** A batch of `n` rows runs as `ceil(n / b)` whole compiled batches, each on
//!   the next core in turn, only the last one padded ([`BatcherConfig::pack`], on by
//!   default; off, the engine's own split cuts a small batch into one padded chunk per
//!   core). A packed batch that closes before it is full and would end in a padded
//!   execution holds its newest requests back to start the next batch, as long as at least
//!   one whole compiled batch stays; its oldest request is never held back, and the held
//!   ones still wait at most their own `max_delay`.
//! - **Results.** Each request gets exactly its rows of every output, in order, in a
//!   [`Response`]. When a core fails a chunk of a batch, the requests with rows in that
//!   chunk get the error ([`RequestError::Engine`], sharing the engine's [`Error`] through an
//!   `Arc`) and the others their outputs; when the batch fails before it runs, every
//!   request in it gets the error.
//! - **Shutdown.** Dropping the [`Batcher`] (or [`Batcher::shutdown`]) stops accepting
//!   requests (it takes the batcher by value, so no submit can race it), **runs** every
//!   request already queued (expired ones still expire), then joins the threads.
//!
//! # Copies
//!
//! The engine itself never stages bytes (ARCHITECTURE.md, "The path of one batch"), but coalescing requests from
//! different callers into one batch is inherently a copy: a batcher thread copies each
//! request's rows into one staging buffer per input (reused from batch to batch), runs
//! the batch on the engine into staging output buffers it owns, and copies each
//! request's rows out into the request's own [`OwnedTensor`]s. Those two copies are the price
//! of batching; call the engine directly when a caller already has a full batch.
//!
//! The engine must split along dim 0 with dynamic batching on (the default), and every model
//! input and output must have a batch dimension.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request};
//! use dataparallel::{Config, DataParallel};
//! use neuron_rt::{Neff, Runtime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::init()?;
//! let neff = Neff::from_path("model.neff".as_ref())?; // x: [8, 4] -> y: [8, 4]
//! let engine = Arc::new(DataParallel::new(&runtime, &neff, Config::default())?);
//! let batcher = Batcher::new(
//!     engine,
//!     BatcherConfig::default().max_batch_rows(32).max_delay(Duration::from_millis(2)),
//! )?;
//!
//! // From any number of threads:
//! let request = Request::new(vec![OwnedTensor::f32([2, 4], &[1.0; 8])])
//!     .timeout(Duration::from_millis(50));
//! let ticket = batcher.try_submit(request)?;
//! let response = ticket.wait()?;
//! let y: Vec<f32> = response.outputs[0].to_vec().unwrap_or_default();
//! assert_eq!(y.len(), 8);
//!
//! let stats = batcher.shutdown();
//! println!("{} batches, p99 {:?}", stats.batches, stats.latency_p99());
//! # Ok(()) }
//! ```
//!
//! `Batcher` is `Send + Sync`, and so are tickets:
//!
//! ```
//! fn assert_send_sync<T: Send + Sync>() {}
//! assert_send_sync::<dataparallel::batcher::Batcher>();
//! assert_send_sync::<dataparallel::batcher::Ticket>();
//! ```

mod config;
mod error;
mod handle;
mod request;
mod stats;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

pub use config::{
    BatcherConfig, DEFAULT_BATCHES_IN_FLIGHT, DEFAULT_MAX_DELAY, DEFAULT_QUEUE_CAPACITY,
};
pub use error::{InvalidRequest, SubmitError, SubmitTimeoutError, TrySubmitError};
pub use handle::{RequestError, Response, Ticket};
pub use request::{OwnedTensor, Request};
pub use stats::{BatcherStats, Histogram};

use crate::engine::DataParallel;
use crate::error::{Error, Result};
use handle::Slot;
use request::Layout;
use stats::{Recorder, bump};
use worker::{CompleteOnDrop, Job, Worker};

/// Coalesces requests from many threads into batches on one engine. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Batcher {
    engine: Arc<DataParallel>,
    /// `None` once shutting down (dropping it is what tells the threads to drain and stop).
    jobs: Option<Sender<Job>>,
    /// `batches_in_flight` threads; empty once stopped.
    threads: Vec<JoinHandle<()>>,
    layout: Layout,
    max_batch_rows: usize,
    default_deadline: Option<Duration>,
    recorder: Arc<Recorder>,
}

impl Batcher {
    /// Starts a batcher (`batches_in_flight` threads) over `engine`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the configuration is invalid (`max_batch_rows` or
    /// `queue_capacity` or `batches_in_flight` 0), the engine cannot batch requests
    /// (`dim != 0`, dynamic batching off, a scalar model input or output, an output of
    /// unknown dtype whose elements are not 1, 2, 4 or 8 bytes: other unknown outputs come
    /// back labelled as the unsigned integer of their size); [`Error::Spawn`] when a thread cannot be started.
    pub fn new(engine: Arc<DataParallel>, config: BatcherConfig) -> Result<Batcher> {
        if engine.dim() != 0 {
            return Err(Error::config(format!(
                "the batcher concatenates requests along dim 0 but the engine splits along dim \
                 {}; build the engine with dim 0",
                engine.dim()
            )));
        }
        if !engine.dynamic_batching() {
            return Err(Error::config(
                "the batcher forms batches of any size, which needs dynamic batching; build the \
                 engine with dynamic_batching(true)",
            ));
        }
        let layout = Layout::new(engine.spec())?;
        let max_batch_rows = match config.max_batch_rows {
            Some(0) => {
                return Err(Error::config("max_batch_rows must be at least 1"));
            }
            Some(rows) => rows,
            None => {
                let compiled = engine
                    .spec()
                    .inputs
                    .first()
                    .and_then(|i| i.shape.first().copied())
                    .unwrap_or(1)
                    .max(1);
                compiled.saturating_mul(engine.devices().len().max(1))
            }
        };
        if config.queue_capacity == 0 {
            return Err(Error::config("queue_capacity must be at least 1"));
        }
        if config.batches_in_flight == 0 {
            return Err(Error::config(
                "batches_in_flight must be at least 1 (default 2)",
            ));
        }
        let (jobs, queue) = crossbeam_channel::bounded(config.queue_capacity);
        let recorder = Arc::new(Recorder::default());
        let worker = Worker {
            engine: Arc::clone(&engine),
            jobs: queue,
            layout: layout.clone(),
            max_rows: max_batch_rows,
            max_delay: config.max_delay,
            pack: config.pack,
            recorder: Arc::clone(&recorder),
            forming: Arc::default(),
        };
        let mut threads = Vec::with_capacity(config.batches_in_flight);
        for i in 0..config.batches_in_flight {
            let worker = worker.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("dp-batcher-{i}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    // Closing the queue stops the threads already started.
                    drop(jobs);
                    join_all(threads);
                    return Err(Error::Spawn {
                        thread: format!("batcher thread {i}"),
                        source: e,
                    });
                }
            }
        }
        Ok(Batcher {
            engine,
            jobs: Some(jobs),
            threads,
            layout,
            max_batch_rows,
            default_deadline: config.default_deadline,
            recorder,
        })
    }

    /// The engine the batcher runs on.
    pub fn engine(&self) -> &Arc<DataParallel> {
        &self.engine
    }

    /// Most rows per batch (resolved: the configured value or the engine's default).
    pub fn max_batch_rows(&self) -> usize {
        self.max_batch_rows
    }

    /// Queues `request` if there is room; never blocks.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] with the request when the queue is full;
    /// [`TrySubmitError::Invalid`] when it does not fit the model.
    pub fn try_submit(&self, request: Request) -> Result<Ticket, TrySubmitError> {
        let (job, slot) = self.job(request).map_err(TrySubmitError::Invalid)?;
        match self.sender().try_send(job) {
            Ok(()) => Ok(self.accepted(slot)),
            Err(TrySendError::Full(job)) => {
                bump(&self.recorder.rejected_full, 1);
                Err(TrySubmitError::Full(job.request))
            }
            Err(TrySendError::Disconnected(job)) => Err(TrySubmitError::Stopped(job.request)),
        }
    }

    /// Queues `request`, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`SubmitTimeoutError::Timeout`] with the request when the queue stayed full;
    /// [`SubmitTimeoutError::Invalid`] when it does not fit the model.
    pub fn submit_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Ticket, SubmitTimeoutError> {
        let (job, slot) = self.job(request).map_err(SubmitTimeoutError::Invalid)?;
        match self.sender().send_timeout(job, timeout) {
            Ok(()) => Ok(self.accepted(slot)),
            Err(SendTimeoutError::Timeout(job)) => {
                bump(&self.recorder.submit_timeouts, 1);
                Err(SubmitTimeoutError::Timeout(job.request))
            }
            Err(SendTimeoutError::Disconnected(job)) => {
                Err(SubmitTimeoutError::Stopped(job.request))
            }
        }
    }

    /// Queues `request`, waiting as long as it takes for room.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Invalid`] when it does not fit the model.
    pub fn submit(&self, request: Request) -> Result<Ticket, SubmitError> {
        let (job, slot) = self.job(request).map_err(SubmitError::Invalid)?;
        match self.sender().send(job) {
            Ok(()) => Ok(self.accepted(slot)),
            Err(crossbeam_channel::SendError(job)) => Err(SubmitError::Stopped(job.request)),
        }
    }

    /// A snapshot of the metrics.
    pub fn stats(&self) -> BatcherStats {
        self.recorder
            .snapshot(self.jobs.as_ref().map_or(0, Sender::len))
    }

    /// Stops accepting requests, runs every request already queued, joins the threads and
    /// returns the final metrics. Dropping the batcher does the same.
    pub fn shutdown(mut self) -> BatcherStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        // The threads drain the queue once every sender is gone, then return.
        self.jobs = None;
        join_all(std::mem::take(&mut self.threads));
    }

    fn sender(&self) -> &Sender<Job> {
        // Only `stop` (from `shutdown(self)` or `drop`) takes the sender, and nothing can
        // submit after either.
        match &self.jobs {
            Some(jobs) => jobs,
            None => unreachable!("submit after shutdown is impossible: shutdown takes self"),
        }
    }

    /// Checks `request` and wraps it for the queue.
    fn job(&self, request: Request) -> Result<(Job, Arc<Slot>), InvalidRequest> {
        let now = Instant::now();
        let (rows, order) = match self.layout.check(&request, self.max_batch_rows) {
            Ok(checked) => checked,
            Err(reason) => {
                bump(&self.recorder.invalid, 1);
                return Err(InvalidRequest { request, reason });
            }
        };
        let slot = Slot::new();
        let deadline = request.resolve_deadline(now, self.default_deadline);
        let job = Job {
            request,
            order,
            rows,
            submitted: now,
            deadline,
            slot: CompleteOnDrop(Arc::clone(&slot)),
        };
        Ok((job, slot))
    }

    fn accepted(&self, slot: Arc<Slot>) -> Ticket {
        bump(&self.recorder.submitted, 1);
        Ticket::new(slot)
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn join_all(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        if thread.join().is_err() {
            log::error!("a batcher thread panicked (a bug, please report)");
        }
    }
}
