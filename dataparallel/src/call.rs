//! The only state a caller shares with the workers: one [`Call`] per forward, living on the
//! caller's stack, and the [`Job`]s that point into it. The caller blocks until every job of
//! the call has completed, so the borrowed views outlive every use by a worker.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::{self, Thread};

use quanta::Instant;

use crate::error::Error;
use crate::plan::Piece;
use crate::spec::Matching;
use crate::spec::ModelSpec;
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
    /// Per-chunk timing and failure, when the caller asked for a report (or needs to know
    /// which chunks failed).
    pub(crate) timings: Option<&'a [ChunkTiming]>,
}

impl Call<'_> {
    /// Records a failed piece: the call's failure (lowest chunk kept) and, with per-chunk
    /// records, its chunk's.
    pub(crate) fn fail(&self, failure: Failure) {
        if let Some(record) = self.timings.and_then(|t| t.get(failure.chunk)) {
            record.failed.store(true, Ordering::Relaxed);
        }
        self.completion.fail(failure);
    }
}

/// When a chunk's first piece started and its last piece ended, in nanoseconds since
/// `epoch`, and whether any of its pieces failed.
#[derive(Debug)]
pub(crate) struct ChunkTiming {
    epoch: Instant,
    first_start: AtomicU64,
    last_end: AtomicU64,
    failed: AtomicBool,
}

impl ChunkTiming {
    pub(crate) fn new() -> ChunkTiming {
        ChunkTiming {
            epoch: Instant::now(),
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// Whether a piece of the chunk failed; read after the call's wait, whose Acquire
    /// ordered every job's stores before it.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
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
// waits, even while unwinding, until every job it sent has called `Job::finish`.
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
    /// Only before this job's [`Job::finish`]; the reference must not be used after.
    pub(crate) unsafe fn call(&self) -> &Call<'static> {
        // SAFETY: the caller of `Job::new` keeps the call alive until `finish` has run for
        // this job (see `dispatch`), and the caller of this function stops using it then.
        unsafe { &*self.call }
    }

    /// Marks this job finished, waking the caller if it was the last of its call. After this
    /// returns the call may be gone.
    ///
    /// Nothing here holds a reference to the call or its whole [`Completion`] across the
    /// decrement of `remaining`: a reference passed to a function must stay valid until that
    /// function returns, and once `remaining` reaches zero the caller may return and free the
    /// call while this thread is still inside the function (Miri reports a `&self` method
    /// here as undefined behaviour). Only the counter itself, all interior mutability, is
    /// borrowed for the decrement, as `Arc`'s drop does.
    ///
    /// # Safety
    ///
    /// At most once per job (each of its copies), and no use of [`Job::call`]'s reference
    /// afterwards.
    pub(crate) unsafe fn finish(self) {
        // SAFETY: this job has not finished (the caller's contract), so the call is alive:
        // the caller of `Job::new` keeps it until every job it sent has finished.
        let completion = unsafe { &raw const (*self.call).completion };
        // Clone the handle first: once `remaining` reaches zero the caller may return and
        // free the completion.
        // SAFETY: as above, before the decrement.
        let waiter = unsafe { (*completion).waiter.get().cloned() };
        // SAFETY: as above; the reference is used for the decrement only.
        let remaining = unsafe { &(*completion).remaining };
        if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waiter) = waiter {
                waiter.unpark();
            }
        }
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

/// Runs the body of one job, catching a panic so that the job still completes: the panic
/// comes back as its message (for [`Error::WorkerPanicked`]) instead of unwinding out of a
/// worker, which would never finish the job, or out of a caller running it.
pub(crate) fn catch_panic<R>(body: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

/// Waits for the call's jobs when dropped, so an unwinding caller never frees a `Call` that
/// workers still use.
pub(crate) struct WaitOnDrop<'c>(pub(crate) &'c Completion);

impl Drop for WaitOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{self, Sender};
    use std::thread::{self, Scope};
    use std::time::Duration;

    use neuron_rt::{DType, DeviceId};

    use super::*;
    use crate::queue::JobQueue;
    use crate::spec::Matching;

    /// A bound on every wait, so a bug fails the test instead of hanging it; never an
    /// expectation about speed.
    const HANG_GUARD: Duration = Duration::from_secs(60);
    /// Rows of the caller's output; each chunk has `ROWS / CHUNKS` of them.
    const ROWS: usize = 12;
    const CHUNKS: usize = 4;
    /// Calls in the repeated test (Miri runs a few hundred times slower).
    const CALLS: usize = if cfg!(miri) { 3 } else { 200 };

    /// What the fake model of each bucket does with a piece (the test's stand-in for a
    /// device): write the rows, fail, or panic.
    const WRITES: usize = 0;
    const FAILS: usize = 1;
    const PANICS: usize = 2;

    /// A call writing one output of `ROWS` bytes, one byte per row, with nothing else.
    fn call<'a>(spec: &'a ModelSpec, outputs: &'a [Output<'a>]) -> Call<'a> {
        Call {
            spec,
            inputs: &[],
            input_matching: Matching::Position,
            outputs,
            output_matching: Matching::Position,
            dim: 0,
            dynamic: true,
            batch_sizes: &[1, 1, 1],
            attach: false,
            overlap_transfers: false,
            completion: Completion::new(),
            timings: None,
        }
    }

    fn empty_spec() -> ModelSpec {
        ModelSpec {
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Chunk `chunk`'s one job, run by the fake model `bucket`.
    fn job(call: &Call<'_>, chunk: usize, bucket: usize) -> Job {
        let rows = ROWS / CHUNKS;
        Job::new(
            call,
            0,
            chunk,
            chunk * rows,
            bucket,
            Piece {
                start: 0,
                rows,
                pad: 0,
            },
        )
    }

    /// What a worker does with a job (`worker::serve` without a device): run the fake
    /// model, writing `chunk + 1` into each of the job's rows of the caller's output, record
    /// a failure or a caught panic, and finish the job whatever happened.
    fn serve(job: Job) {
        // SAFETY: the call outlives this job until its `finish` below, after which it is
        // not used.
        let call = unsafe { job.call() };
        let run = || match job.bucket {
            WRITES => {
                let start = job.chunk_start + job.piece.start;
                // SAFETY: the job's rows lie inside the caller's view, different jobs have
                // different rows, and the caller reads the buffer only after every job has
                // finished, as with the engine's output views.
                let rows = unsafe { call.outputs[0].bytes_mut(start, job.piece.rows) };
                rows.fill(u8::try_from(job.chunk + 1).expect("few chunks"));
                None
            }
            FAILS => Some(Error::WorkersGone {
                core: DeviceId::new(7),
            }),
            _ => panic!("the model of chunk {} panicked", job.chunk),
        };
        let error = match catch_panic(run) {
            Ok(error) => error,
            Err(message) => Some(Error::WorkerPanicked {
                chunk: job.chunk,
                core: DeviceId::new(0),
                message,
            }),
        };
        if let Some(error) = error {
            call.fail(Failure {
                chunk: job.chunk,
                error,
            });
        }
        // SAFETY: the job's one finish; `call` is not used after it.
        unsafe { job.finish() };
    }

    /// `n` worker threads serving `queue` until it is closed.
    fn start_workers<'s>(scope: &'s Scope<'s, '_>, queue: &'s JobQueue, n: usize) {
        for _ in 0..n {
            scope.spawn(move || {
                while let Some(job) = queue.pop() {
                    serve(job);
                }
            });
        }
    }

    /// The engine's hand-off (`engine::dispatch`) for one call: count each job, record the
    /// caller as the one to wake, queue it; then wait for all of them (`WaitOnDrop`).
    /// Returns the output rows and the call's failure.
    fn run_call(queue: &JobQueue, buckets: [usize; CHUNKS]) -> (Vec<u8>, Option<Failure>) {
        let spec = empty_spec();
        let mut buffer = vec![0u8; ROWS];
        let failure = {
            let shape = [ROWS];
            let outputs = [Output::new(DType::UInt8, &shape, &mut buffer)];
            let call = call(&spec, &outputs);
            {
                let _wait = WaitOnDrop(&call.completion);
                for (chunk, bucket) in buckets.into_iter().enumerate() {
                    call.completion.expect(1);
                    call.completion.before_handoff();
                    let pushed = queue.push(job(&call, chunk, bucket), chunk % 2 == 0);
                    assert!(pushed.is_ok(), "the queue is open");
                }
            }
            call.completion.take_failure()
        };
        (buffer, failure)
    }

    /// Each chunk's rows hold its index + 1, or 0 for chunks whose job did not write.
    fn expected_rows(written: impl Fn(usize) -> bool) -> Vec<u8> {
        (0..ROWS)
            .map(|row| {
                let chunk = row / (ROWS / CHUNKS);
                if written(chunk) { chunk as u8 + 1 } else { 0 }
            })
            .collect()
    }

    #[test]
    fn workers_write_the_callers_rows_before_the_caller_wakes() {
        let queue = JobQueue::new(2, 2);
        thread::scope(|s| {
            start_workers(s, &queue, 2);
            for _ in 0..CALLS {
                // Non-atomic writes by the workers, read by the caller after it wakes: a
                // missing happens-before edge is a data race (Miri and TSan report it).
                let (rows, failure) = run_call(&queue, [WRITES; CHUNKS]);
                assert_eq!(rows, expected_rows(|_| true));
                assert!(failure.is_none());
            }
            queue.close();
        });
    }

    #[test]
    fn a_call_run_wholly_by_its_caller_never_waits() {
        let spec = empty_spec();
        let call = call(&spec, &[]);
        // No job was counted or handed off: nothing to wait for, no waiter recorded.
        call.completion.wait();
        assert!(call.completion.waiter.get().is_none());
        assert!(call.completion.take_failure().is_none());
    }

    #[test]
    fn the_lowest_failing_chunk_is_reported_after_every_job_ran() {
        let queue = JobQueue::new(4, 3);
        thread::scope(|s| {
            start_workers(s, &queue, 3);
            let (rows, failure) = run_call(&queue, [WRITES, FAILS, WRITES, FAILS]);
            // Failed chunks do not stop the others.
            assert_eq!(rows, expected_rows(|chunk| chunk % 2 == 0));
            let failure = failure.expect("a failure");
            assert_eq!(failure.chunk, 1);
            assert!(matches!(failure.error, Error::WorkersGone { .. }));
            queue.close();
        });
    }

    #[test]
    fn a_panicking_job_still_completes_and_reports_the_panic() {
        let queue = JobQueue::new(4, 1);
        thread::scope(|s| {
            start_workers(s, &queue, 1);
            let (rows, failure) = run_call(&queue, [WRITES, WRITES, PANICS, PANICS]);
            assert_eq!(rows, expected_rows(|chunk| chunk < 2));
            match failure.map(|f| (f.chunk, f.error)) {
                Some((
                    2,
                    Error::WorkerPanicked {
                        chunk: 2, message, ..
                    },
                )) => {
                    assert_eq!(message, "the model of chunk 2 panicked");
                }
                other => panic!("expected chunk 2's panic, got {other:?}"),
            }
            // The one worker survived its panics and serves the next call.
            let (rows, failure) = run_call(&queue, [WRITES; CHUNKS]);
            assert_eq!(rows, expected_rows(|_| true));
            assert!(failure.is_none());
            queue.close();
        });
    }

    #[test]
    fn a_panic_of_any_payload_becomes_a_message() {
        assert_eq!(catch_panic(|| 5), Ok(5));
        assert_eq!(
            catch_panic(|| panic!("static")),
            Err::<(), _>("static".to_owned())
        );
        let n = 3;
        assert_eq!(
            catch_panic(|| panic!("formatted {n}")),
            Err::<(), _>("formatted 3".to_owned())
        );
        assert_eq!(
            catch_panic(|| std::panic::panic_any(42_u32)),
            Err::<(), _>("unknown panic".to_owned())
        );
    }

    /// Sends on drop: lets the gated worker run only once the caller is unwinding.
    struct Release(Sender<()>);

    impl Drop for Release {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    #[test]
    fn an_unwinding_caller_waits_for_its_jobs_before_its_frame_goes() {
        let queue = JobQueue::new(4, 1);
        let served = AtomicBool::new(false);
        let (release, released) = mpsc::channel();
        thread::scope(|s| {
            // The worker takes the job at once but serves it only after the caller has
            // started to unwind.
            let (queue, served) = (&queue, &served);
            s.spawn(move || {
                let job = queue.pop().expect("a job");
                released
                    .recv_timeout(HANG_GUARD)
                    .expect("the caller unwinds within the hang guard");
                served.store(true, Ordering::Relaxed);
                serve(job);
            });
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                let spec = empty_spec();
                let mut buffer = [0u8; ROWS];
                let shape = [ROWS];
                let outputs = [Output::new(DType::UInt8, &shape, &mut buffer)];
                let call = call(&spec, &outputs);
                let _wait = WaitOnDrop(&call.completion);
                call.completion.expect(1);
                call.completion.before_handoff();
                assert!(queue.push(job(&call, 0, WRITES), false).is_ok());
                // Dropped first while unwinding, then `_wait` waits: the worker writes into
                // `buffer` on this frame only after the unwinding began. If the frame went
                // without waiting, Miri reports the worker's write as a use after free.
                let _release = Release(release);
                resume_unwind(Box::new("the caller unwinds"));
            }));
            assert!(unwound.is_err());
            // `served` was stored before the job's `finish`, which `_wait` waited for.
            assert!(served.load(Ordering::Relaxed));
            queue.close();
        });
    }
}
