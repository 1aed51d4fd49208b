//! The only state a caller shares with the workers: one [`Call`] per forward, living on the
//! caller's stack, and the [`Job`]s that point into it. The caller blocks until every job of
//! the call has completed, so the borrowed views outlive every use by a worker.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, Thread};

use quanta::Instant;

use crate::error::Error;
use crate::plan::Piece;
use crate::spec::ModelSpec;
use crate::validate::Matching;
use crate::view::{Input, Output};

/// Everything a worker needs to run pieces of one forward.
pub(crate) struct Call<'a> {
    pub(crate) spec: &'a ModelSpec,
    pub(crate) inputs: &'a [Input<'a>],
    pub(crate) input_matching: Matching,
    pub(crate) outputs: &'a [Output<'a>],
    pub(crate) output_matching: Matching,
    pub(crate) dim: usize,
    pub(crate) dynamic: bool,
    /// The compiled batch of each bucket (one per NEFF), ascending.
    pub(crate) batch_sizes: &'a [usize],
    pub(crate) attach: bool,
    /// Wake a core's second worker as soon as a piece is queued (large transfers).
    pub(crate) overlap_transfers: bool,
    pub(crate) completion: Completion,
    /// Per-chunk timing, when the caller asked for a report.
    pub(crate) timings: Option<&'a [ChunkTiming]>,
}

/// When a chunk's first piece started and its last piece ended, in nanoseconds since
/// `epoch`.
#[derive(Debug)]
pub(crate) struct ChunkTiming {
    epoch: Instant,
    first_start: AtomicU64,
    last_end: AtomicU64,
}

impl ChunkTiming {
    pub(crate) fn new() -> ChunkTiming {
        ChunkTiming {
            epoch: Instant::now(),
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
        }
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records one piece that ran from `start` to `end`.
    pub(crate) fn record(&self, start: Instant, end: Instant) {
        self.first_start
            .fetch_min(self.nanos_since_epoch(start), Ordering::Relaxed);
        self.last_end
            .fetch_max(self.nanos_since_epoch(end), Ordering::Relaxed);
    }

    /// Nanoseconds from the chunk's first piece starting to its last piece ending.
    pub(crate) fn elapsed_ns(&self) -> u64 {
        self.last_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.first_start.load(Ordering::Relaxed))
    }
}

/// One piece of one chunk, sent to the chunk's core.
#[derive(Clone, Copy)]
pub(crate) struct Job {
    call: *const Call<'static>,
    /// The replica (index into the engine's cores) that runs the piece.
    pub(crate) replica: usize,
    /// The chunk's index in the call.
    pub(crate) chunk: usize,
    /// The chunk's first row on the split dim.
    pub(crate) chunk_start: usize,
    /// Which compiled batch size (index into `Call::batch_sizes`) runs the piece.
    pub(crate) bucket: usize,
    /// The piece of the chunk this job runs.
    pub(crate) piece: Piece,
}

// SAFETY: a `Job` points at a `Call` that is `Sync` (shared views over caller memory that
// workers only read, or write in disjoint ranges) and that outlives the job: `dispatch`
// waits, even while unwinding, until every job it sent has called `Completion::finish`.
unsafe impl Send for Job {}

impl Job {
    pub(crate) fn new(
        call: &Call<'_>,
        replica: usize,
        chunk: usize,
        chunk_start: usize,
        bucket: usize,
        piece: Piece,
    ) -> Job {
        Job {
            call: std::ptr::from_ref(call).cast(),
            replica,
            chunk,
            chunk_start,
            bucket,
            piece,
        }
    }

    /// The call this job belongs to.
    ///
    /// # Safety
    ///
    /// Only before this job's `Completion::finish`; the reference must not be used after.
    pub(crate) unsafe fn call(&self) -> &Call<'static> {
        // SAFETY: the caller of `Job::new` keeps the call alive until `finish` has run for
        // this job (see `dispatch`), and the caller of this function stops using it then.
        unsafe { &*self.call }
    }
}

/// A failed piece: which chunk, on which core slot, and why.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) chunk: usize,
    pub(crate) error: Error,
}

/// Per-call completion: a countdown of outstanding jobs, the caller to wake, and the failure
/// with the lowest chunk index. Needs no allocation.
pub(crate) struct Completion {
    remaining: AtomicUsize,
    /// The caller, to wake when the last job finishes; set before the first job goes to a
    /// worker (a call run wholly on the caller never needs it).
    waiter: OnceLock<Thread>,
    /// Set (before `remaining` drops) when `failure` holds something, so a call without
    /// failures never takes the lock.
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
}

impl Completion {
    pub(crate) fn new() -> Completion {
        Completion {
            remaining: AtomicUsize::new(0),
            waiter: OnceLock::new(),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Counts `jobs` more outstanding jobs (before they are sent).
    pub(crate) fn expect(&self, jobs: usize) {
        self.remaining.fetch_add(jobs, Ordering::Relaxed);
    }

    /// Records a failure, keeping the lowest chunk.
    pub(crate) fn fail(&self, failure: Failure) {
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(|f| failure.chunk < f.chunk) {
            *slot = Some(failure);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Marks one job finished. After this returns the completion may be gone: callers must
    /// not touch the job's call again.
    pub(crate) fn finish(&self) {
        // Clone the handle first: once `remaining` reaches zero the caller may return and
        // free this completion.
        let waiter = self.waiter.get().cloned();
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waiter) = waiter {
                waiter.unpark();
            }
        }
    }

    /// Records the calling thread as the one to wake; call before handing a job to a worker.
    pub(crate) fn before_handoff(&self) {
        self.waiter.get_or_init(thread::current);
    }

    /// Blocks until every expected job has finished.
    pub(crate) fn wait(&self) {
        while self.remaining.load(Ordering::Acquire) != 0 {
            thread::park();
        }
    }

    /// The recorded failure, after `wait`.
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        // `wait` returned after an Acquire load of `remaining` that saw every job's
        // AcqRel decrement, which came after its `failed` store.
        if !self.failed.load(Ordering::Relaxed) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Waits for the call's jobs when dropped, so an unwinding caller never frees a `Call` that
/// workers still use.
pub(crate) struct WaitOnDrop<'c>(pub(crate) &'c Completion);

impl Drop for WaitOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}
