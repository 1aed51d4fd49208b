//! Job queues between callers and workers: a bounded FIFO of [`Job`]s per group of workers,
//! pre-allocated, whose idle workers sleep at once.
//!
//! A general-purpose channel spins and yields before a receiver sleeps; with dozens of idle
//! workers on a machine with few CPUs that spinning takes CPU from the workers that have
//! work. Here an idle worker waits on a condition variable straight away, a push wakes one
//! worker only when one is waiting, and the ring buffer is allocated once, at build, so the
//! steady state allocates nothing.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::call::Job;

struct State {
    jobs: VecDeque<Job>,
    /// No more pushes; workers drain what is queued, then stop.
    closed: bool,
    /// Workers waiting for a job.
    idle: usize,
    /// Idle workers notified but not yet running (so a burst of pushes does not wake more
    /// workers than it needs).
    waking: usize,
    /// Callers waiting for space.
    blocked: usize,
}

/// A bounded multi-producer, multi-consumer job queue.
pub(crate) struct JobQueue {
    state: Mutex<State>,
    capacity: usize,
    /// Workers taking jobs from this queue.
    workers: usize,
    job_ready: Condvar,
    space: Condvar,
}

impl JobQueue {
    /// A queue of `capacity` jobs served by `workers` threads.
    pub(crate) fn new(capacity: usize, workers: usize) -> JobQueue {
        let capacity = capacity.max(1);
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
                idle: 0,
                waking: 0,
                blocked: 0,
            }),
            capacity,
            workers,
            job_ready: Condvar::new(),
            space: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a queue and counters that every path leaves consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a job, waiting while the queue is full. Hands the job back if the queue is
    /// closed.
    ///
    /// `eager` wakes an idle worker whenever there is one, so two workers of a core overlap
    /// one piece's transfers with another's execution. Otherwise a worker is woken only when
    /// none is awake: an awake worker takes the job when it finishes its piece, which costs
    /// less than another thread's wake-up when the transfers are small.
    pub(crate) fn push(&self, job: Job, eager: bool) -> Result<(), Job> {
        let mut state = self.lock();
        while state.jobs.len() >= self.capacity && !state.closed {
            state.blocked += 1;
            state = self
                .space
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.blocked -= 1;
        }
        if state.closed {
            return Err(job);
        }
        state.jobs.push_back(job);
        // Counts are consistent under the lock: a worker registers as idle before it waits,
        // so a job pushed while one is still awake is seen by it before it sleeps.
        let all_asleep = state.idle >= self.workers && state.waking == 0;
        let wake = state.idle > state.waking && (eager || all_asleep);
        if wake {
            state.waking += 1;
        }
        drop(state);
        if wake {
            self.job_ready.notify_one();
        }
        Ok(())
    }

    /// Takes the oldest job, sleeping while there is none. `None` once the queue is closed
    /// and drained.
    pub(crate) fn pop(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                let wake = state.blocked > 0;
                drop(state);
                if wake {
                    self.space.notify_one();
                }
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state.idle += 1;
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.idle -= 1;
            state.waking = state.waking.saturating_sub(1);
        }
    }

    /// Stops the queue: pushes fail from now on, workers finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
        self.space.notify_all();
    }
}
