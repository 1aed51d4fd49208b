//! The batcher's threads: form batches from the queue, run them on the engine, and hand
//! every request exactly its rows back.
//!
//! Several threads (`batches_in_flight`) share the queue, but only one forms a batch at a
//! time: the formation lock also holds the request carried over from the last batch. A
//! thread releases it once its batch is formed and runs the batch while the next thread forms
//! the next one, so the engine gets the next batch without waiting for the previous one's
//! copies and completions.
//!
//! Batch formation: block for the first request; then take more, in arrival order, until the
//! next one would push the batch past `max_batch_rows` (it starts the next batch) or the batch
//! must close: `max_delay` after the first request was *submitted*, or at the earliest
//! deadline among its requests, whichever comes first. Requests already queued when the batch
//! must close still join it (up to the row limit), so a backlog drains in full batches. When
//! batches are packed, a batch that closes before it is full and would end in a padded
//! execution holds its newest requests back to start the next batch, as long as a whole
//! compiled batch stays (`hold_back_padded_tail`).
//!
//! Each request is checked as it comes off the queue, and again when a request held over
//! from the previous batch starts the next: expired (its deadline passed) or abandoned (its
//! ticket dropped) requests are completed or skipped there and never run.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use neuron_rt::DType;

use super::handle::{Outcome, RequestError, Response, Slot, Ticket};
use super::request::{Layout, OwnedTensor, Request};
use super::stats::{Recorder, RequestTimes, bump, micros};
use crate::engine::{BatchFailure, DataParallel};
use crate::view::{Input, Output};

/// A queued request and what the batcher needs to run it.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) request: Request,
    /// Per model input, the index of the request's tensor that feeds it.
    pub(super) order: Vec<usize>,
    pub(super) rows: usize,
    pub(super) submitted: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) slot: CompleteOnDrop,
}

/// The batcher's reference to a request's slot: completes it with
/// [`RequestError::Stopped`] if the request is dropped unanswered (the thread died, or the
/// channel was torn down), so that no ticket ever waits forever.
#[derive(Debug)]
pub(super) struct CompleteOnDrop(pub(super) Arc<Slot>);

impl CompleteOnDrop {
    fn complete(&self, outcome: Outcome) {
        self.0.complete(outcome);
    }
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        // A no-op when already completed (the first outcome wins).
        self.0.complete(Err(RequestError::Stopped));
    }
}

/// One batcher thread's state.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    pub(super) engine: Arc<DataParallel>,
    pub(super) jobs: Receiver<Job>,
    pub(super) layout: Layout,
    pub(super) max_rows: usize,
    pub(super) max_delay: Duration,
    /// Whether batches run as whole compiled batches ([`super::BatcherConfig::pack`]).
    pub(super) pack: bool,
    pub(super) recorder: Arc<Recorder>,
    /// The formation lock, shared by the batcher's threads; it holds the requests carried
    /// over from the last batch formed (the one that did not fit, or the tail held back from
    /// a padded execution), oldest first, which start the next one.
    pub(super) forming: Arc<Mutex<VecDeque<Job>>>,
}

/// Buffers reused from batch to batch (grown to the largest batch seen, never shrunk).
#[derive(Debug, Default)]
struct Staging {
    inputs: Vec<Vec<u8>>,
    input_shapes: Vec<Vec<usize>>,
    outputs: Vec<Vec<u8>>,
    output_shapes: Vec<Vec<usize>>,
}

impl Worker {
    /// Serves until every submitter is gone and the queue is empty (the shutdown drain).
    pub(super) fn run(self) {
        let mut staging = Staging {
            inputs: vec![Vec::new(); self.layout.inputs.len()],
            input_shapes: self
                .layout
                .inputs
                .iter()
                .map(|l| [&[0][..], &l.row_shape].concat())
                .collect(),
            outputs: vec![Vec::new(); self.layout.outputs.len()],
            output_shapes: self
                .layout
                .outputs
                .iter()
                .map(|l| [&[0][..], &l.row_shape].concat())
                .collect(),
        };
        let mut batch: Vec<Job> = Vec::new();
        while let Some(rows) = self.form(&mut batch) {
            self.run_batch(&mut batch, rows, &mut staging);
        }
    }

    /// Forms the next batch into `batch` (empty on entry), holding the formation lock while
    /// it does; the batch's rows, or `None` once every sender is gone and the queue is
    /// drained.
    fn form(&self, batch: &mut Vec<Job>) -> Option<usize> {
        // The lock only guards which thread forms and the carried requests, which every path
        // leaves consistent.
        let mut carry = self.forming.lock().unwrap_or_else(PoisonError::into_inner);
        let first = loop {
            let job = match carry.pop_front() {
                Some(job) => job,
                // Every sender is gone and the queue is drained.
                None => self.jobs.recv().ok()?,
            };
            if let Some(job) = self.admit(job) {
                break job;
            }
        };
        let mut rows = first.rows;
        let mut close_at = first.submitted.checked_add(self.max_delay);
        close_at = earliest(close_at, first.deadline);
        batch.push(first);
        let mut full = false;
        while rows < self.max_rows {
            // Carried requests are older than any still queued: they come first.
            let next = match carry.pop_front() {
                Some(job) => job,
                None => match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        let received = match close_at {
                            Some(at) => self.jobs.recv_deadline(at),
                            None => self.jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        };
                        match received {
                            Ok(job) => job,
                            Err(_) => break,
                        }
                    }
                },
            };
            let Some(next) = self.admit(next) else {
                continue;
            };
            if rows + next.rows > self.max_rows {
                carry.push_front(next);
                full = true;
                break;
            }
            rows += next.rows;
            close_at = earliest(close_at, next.deadline);
            batch.push(next);
        }
        if self.pack && !full && rows < self.max_rows {
            rows = self.hold_back_padded_tail(batch, rows, &mut carry);
        }
        Some(rows)
    }

    /// A packed batch that closes before it is full runs whole compiled batches when it can:
    /// while its last execution would be padded, its newest requests go back to start the
    /// next batch, as long as a whole largest compiled batch stays. The oldest request (whose
    /// `max_delay` or deadline closed the batch) always stays, so no request waits longer
    /// than it would have; the ones held back wait at most their own `max_delay`.
    fn hold_back_padded_tail(
        &self,
        batch: &mut Vec<Job>,
        mut rows: usize,
        carry: &mut VecDeque<Job>,
    ) -> usize {
        let largest = self.engine.largest_batch();
        while self.engine.packed_pad_rows(rows) > 0
            && batch
                .last()
                .is_some_and(|newest| rows - newest.rows >= largest)
        {
            if let Some(job) = batch.pop() {
                rows -= job.rows;
                carry.push_front(job);
            }
        }
        rows
    }

    /// Takes a request off the queue: `None` when it expired (completed with
    /// `DeadlineExceeded`) or was abandoned (skipped).
    fn admit(&self, job: Job) -> Option<Job> {
        if Ticket::abandoned(&job.slot.0) {
            bump(&self.recorder.abandoned, 1);
            return None;
        }
        let now = Instant::now();
        if job.deadline.is_some_and(|deadline| deadline <= now) {
            // Count first: a caller that sees the error also sees it counted.
            bump(&self.recorder.expired, 1);
            job.slot.complete(Err(RequestError::DeadlineExceeded {
                waited: now.saturating_duration_since(job.submitted),
            }));
            return None;
        }
        Some(job)
    }

    /// Runs `batch` (`rows` rows in all) and completes every request in it.
    fn run_batch(&self, batch: &mut Vec<Job>, rows: usize, staging: &mut Staging) {
        let started = Instant::now();
        // The one copy: coalesce the requests' rows into one contiguous batch per input.
        for (index, layout) in self.layout.inputs.iter().enumerate() {
            let buffer = &mut staging.inputs[index];
            let need = rows * layout.row_bytes;
            if buffer.len() < need {
                buffer.resize(need, 0);
            }
            let mut offset = 0;
            for job in batch.iter() {
                let data = &job.request.inputs()[job.order[index]].data;
                buffer[offset..offset + data.len()].copy_from_slice(data);
                offset += data.len();
            }
            staging.input_shapes[index][0] = rows;
        }
        for (index, layout) in self.layout.outputs.iter().enumerate() {
            let buffer = &mut staging.outputs[index];
            let need = rows * layout.row_bytes;
            if buffer.len() < need {
                buffer.resize(need, 0);
            }
            staging.output_shapes[index][0] = rows;
        }

        let result = {
            let inputs: Vec<Input<'_>> = self
                .layout
                .inputs
                .iter()
                .zip(&staging.inputs)
                .zip(&staging.input_shapes)
                .enumerate()
                .map(|(index, ((layout, buffer), shape))| {
                    // An input of unknown dtype takes the requests' (all checked to have the
                    // model's element size).
                    let dtype = layout
                        .dtype
                        .unwrap_or_else(|| batch[0].request.inputs()[batch[0].order[index]].dtype);
                    Input::new(dtype, shape, &buffer[..rows * layout.row_bytes])
                })
                .collect();
            let mut outputs: Vec<Output<'_>> = self
                .layout
                .outputs
                .iter()
                .zip(staging.outputs.iter_mut())
                .zip(&staging.output_shapes)
                .map(|((layout, buffer), shape)| {
                    let dtype = layout.dtype.unwrap_or(DType::UInt8);
                    Output::new(dtype, shape, &mut buffer[..rows * layout.row_bytes])
                })
                .collect();
            catch_unwind(AssertUnwindSafe(|| {
                self.engine
                    .forward_into_batch(&inputs, &mut outputs, self.pack)
            }))
        };
        let finished = Instant::now();
        let times: Vec<RequestTimes> = batch
            .iter()
            .map(|job| RequestTimes {
                queue_wait_us: micros(started.saturating_duration_since(job.submitted)),
                latency_us: micros(finished.saturating_duration_since(job.submitted)),
            })
            .collect();
        let requests = batch.len();
        // The rows that failed (empty when none did), and the error they share.
        let (failed_rows, error) = match result {
            Ok(Ok(())) => (Vec::new(), None),
            Ok(Err(BatchFailure {
                error,
                rows: failed,
            })) => (
                failed.unwrap_or_else(|| std::iter::once(0..rows).collect()),
                Some(Arc::new(error)),
            ),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                log::error!("the engine panicked running a batch of {rows} rows: {message}");
                // Record first: a caller that sees its result also sees it counted.
                self.recorder.batch(rows, &times, requests);
                for job in batch.drain(..) {
                    job.slot.complete(Err(RequestError::EnginePanicked {
                        message: message.clone(),
                    }));
                }
                return;
            }
        };
        // A request fails when any of its rows is in a failed chunk (none without an error).
        let fails = |rows: Range<usize>| {
            failed_rows
                .iter()
                .any(|f| f.start < rows.end && rows.start < f.end)
        };
        let failed = batch
            .iter()
            .scan(0, |start, job| {
                let rows = *start..*start + job.rows;
                *start = rows.end;
                Some(rows)
            })
            .filter(|rows| fails(rows.clone()))
            .count();
        // Record first: a caller that sees its result also sees it counted.
        self.recorder.batch(rows, &times, failed);

        let mut start = 0;
        for job in batch.drain(..) {
            let first = start;
            start += job.rows;
            if let (true, Some(source)) = (fails(first..start), &error) {
                job.slot.complete(Err(RequestError::Engine {
                    batch_rows: rows,
                    batch_requests: requests,
                    source: Arc::clone(source),
                }));
                continue;
            }
            let outputs = self
                .layout
                .outputs
                .iter()
                .zip(&staging.outputs)
                .map(|(layout, buffer)| OwnedTensor {
                    name: Some(layout.name.clone()),
                    dtype: layout.dtype.unwrap_or(DType::UInt8),
                    shape: [&[job.rows][..], &layout.row_shape].concat(),
                    data: buffer[first * layout.row_bytes..start * layout.row_bytes].to_vec(),
                })
                .collect();
            job.slot.complete(Ok(Response {
                outputs,
                batch_rows: rows,
                batch_requests: requests,
                queue_wait: started.saturating_duration_since(job.submitted),
            }));
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
