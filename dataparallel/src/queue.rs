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
    /// Callers waiting for space.
    blocked: usize,
}

/// A bounded multi-producer, multi-consumer job queue.
pub(crate) struct JobQueue {
    state: Mutex<State>,
    capacity: usize,
    job_ready: Condvar,
    space: Condvar,
}

impl JobQueue {
    pub(crate) fn new(capacity: usize) -> JobQueue {
        let capacity = capacity.max(1);
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
                idle: 0,
                blocked: 0,
            }),
            capacity,
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
    pub(crate) fn push(&self, job: Job) -> Result<(), Job> {
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
        let wake = state.idle > 0;
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
        }
    }

    /// Stops the queue: pushes fail from now on, workers finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.job_ready.notify_all();
        self.space.notify_all();
    }
}
