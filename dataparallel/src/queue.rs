//! Job queues between callers and workers: a bounded FIFO of [`Job`]s per group of workers,
//! pre-allocated, whose idle workers sleep at once. The queue is generic over what it holds
//! (the engine only ever queues `Job`s) so its unit tests run on plain values and threads.
//!
//! A general-purpose channel spins and yields before a receiver sleeps; with dozens of idle
//! workers on a machine with few CPUs that spinning takes CPU from the workers that have
//! work. Here an idle worker waits on a condition variable straight away, a push wakes one
//! worker only when one is waiting, and the ring buffer is allocated once, at build, so the
//! steady state allocates nothing.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::call::Job;

struct State<T> {
    jobs: VecDeque<T>,
    /// No more pushes; workers drain what is queued, then stop.
    closed: bool,
    /// Workers waiting for a job.
    idle: usize,
    /// Idle workers notified but not yet running (so a burst of pushes does not wake more
    /// workers than it needs).
    waking: usize,
    /// Callers waiting for space.
    blocked: usize,
    /// Wake-ups `push` has asked for: how the tests see its decisions, whichever thread
    /// then runs first.
    #[cfg(test)]
    notified: usize,
}

/// A bounded multi-producer, multi-consumer job queue.
pub(crate) struct JobQueue<T = Job> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Workers taking jobs from this queue.
    workers: usize,
    job_ready: Condvar,
    space: Condvar,
}

impl<T> JobQueue<T> {
    /// A queue of `capacity` jobs served by `workers` threads.
    pub(crate) fn new(capacity: usize, workers: usize) -> JobQueue<T> {
        let capacity = capacity.max(1);
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
                idle: 0,
                waking: 0,
                blocked: 0,
                #[cfg(test)]
                notified: 0,
            }),
            capacity,
            workers,
            job_ready: Condvar::new(),
            space: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
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
    pub(crate) fn push(&self, job: T, eager: bool) -> Result<(), T> {
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
        let wake = should_wake(state.idle, state.waking, self.workers, eager);
        if wake {
            state.waking += 1;
            #[cfg(test)]
            {
                state.notified += 1;
            }
        }
        drop(state);
        if wake {
            self.job_ready.notify_one();
        }
        Ok(())
    }

    /// Takes the oldest job, sleeping while there is none. `None` once the queue is closed
    /// and drained.
    pub(crate) fn pop(&self) -> Option<T> {
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

/// Whether a push wakes one of the `idle` workers (of `workers`), `waking` of which were
/// notified already: never more than are idle; when `eager`, whenever one is left to wake;
/// otherwise only when every worker sleeps, since an awake one takes the job next.
#[inline]
fn should_wake(idle: usize, waking: usize, workers: usize, eager: bool) -> bool {
    let all_asleep = idle >= workers && waking == 0;
    idle > waking && (eager || all_asleep)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    /// A bound on every wait, so a bug fails the test instead of hanging it; never an
    /// expectation about speed.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// Jobs per producer in the many-threads test (Miri runs a few hundred times slower).
    const JOBS_PER_PRODUCER: usize = if cfg!(miri) { 20 } else { 2_000 };

    /// The queue's bookkeeping, read under its lock.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Counts {
        queued: usize,
        idle: usize,
        blocked: usize,
        notified: usize,
    }

    fn counts<T>(queue: &JobQueue<T>) -> Counts {
        let state = queue.lock();
        Counts {
            queued: state.jobs.len(),
            idle: state.idle,
            blocked: state.blocked,
            notified: state.notified,
        }
    }

    /// Waits until `ready` holds for the queue's counts (other threads got where the test
    /// needs them: asleep in `pop`, blocked in `push`).
    fn wait_until<T>(queue: &JobQueue<T>, what: &str, ready: impl Fn(Counts) -> bool) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let now = counts(queue);
            if ready(now) {
                return;
            }
            assert!(Instant::now() < deadline, "never {what}: {now:?}");
            thread::yield_now();
        }
    }

    fn recv<T>(rx: &Receiver<T>) -> T {
        rx.recv_timeout(HANG_GUARD)
            .expect("a worker thread answers within the hang guard")
    }

    /// A worker: pops until the queue is closed and drained, sending each job, then `None`.
    fn drain_into<T>(queue: &JobQueue<T>, tx: &Sender<Option<T>>) {
        while let Some(job) = queue.pop() {
            tx.send(Some(job)).expect("the test is listening");
        }
        tx.send(None).expect("the test is listening");
    }

    #[test]
    fn wakes_follow_idle_waking_and_eagerness() {
        // (idle, waking, workers, eager) -> wake
        let table = [
            // Nobody idle: nobody to wake.
            ((0, 0, 2, true), false),
            ((0, 0, 2, false), false),
            // Every worker asleep: wake one either way.
            ((2, 0, 2, false), true),
            ((2, 0, 2, true), true),
            // One awake: only an eager push wakes the sleeper.
            ((1, 0, 2, false), false),
            ((1, 0, 2, true), true),
            // Every idle worker already being woken: no more.
            ((1, 1, 2, true), false),
            ((2, 2, 2, true), false),
            // One of two sleepers already woken: eager wakes the other, lazy does not.
            ((2, 1, 2, true), true),
            ((2, 1, 2, false), false),
        ];
        for ((idle, waking, workers, eager), wake) in table {
            assert_eq!(
                should_wake(idle, waking, workers, eager),
                wake,
                "idle {idle}, waking {waking}, workers {workers}, eager {eager}"
            );
        }
    }

    #[test]
    fn jobs_come_out_in_push_order() {
        let queue = JobQueue::new(4, 1);
        // Several rounds, so the ring buffer wraps around.
        for round in 0..3 {
            for i in 0..4 {
                assert_eq!(queue.push(round * 10 + i, i % 2 == 0), Ok(()));
            }
            for i in 0..4 {
                assert_eq!(queue.pop(), Some(round * 10 + i));
            }
        }
        assert_eq!(counts(&queue).queued, 0);
    }

    #[test]
    fn a_zero_capacity_still_holds_one_job() {
        let queue = JobQueue::new(0, 1);
        assert_eq!(queue.push(1, false), Ok(()));
        assert_eq!(counts(&queue).queued, 1);
        assert_eq!(queue.pop(), Some(1));
    }

    #[test]
    fn a_push_wakes_the_sleeping_worker() {
        let queue = JobQueue::new(4, 1);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| drain_into(&queue, &tx));
            wait_until(&queue, "the worker sleeps", |c| c.idle == 1);
            // Its only worker asleep: even a lazy push wakes it.
            assert_eq!(queue.push(7, false), Ok(()));
            assert_eq!(counts(&queue).notified, 1);
            assert_eq!(recv(&rx), Some(7));
            queue.close();
            assert_eq!(recv(&rx), None);
        });
    }

    #[test]
    fn an_eager_push_wakes_an_idle_worker_while_another_is_awake() {
        // Two workers: one asleep in `pop`, the other (this thread) awake and not popping.
        let queue = JobQueue::new(4, 2);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| drain_into(&queue, &tx));
            wait_until(&queue, "one worker sleeps", |c| c.idle == 1);
            assert_eq!(queue.push(1, true), Ok(()));
            assert_eq!(counts(&queue).notified, 1, "the sleeper was woken");
            assert_eq!(recv(&rx), Some(1));
            queue.close();
            assert_eq!(recv(&rx), None);
        });
    }

    #[test]
    fn a_lazy_push_leaves_the_job_to_the_awake_worker() {
        let queue = JobQueue::new(4, 2);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| drain_into(&queue, &tx));
            wait_until(&queue, "one worker sleeps", |c| c.idle == 1);
            assert_eq!(queue.push(1, false), Ok(()));
            assert_eq!(counts(&queue).notified, 0, "the sleeper was left asleep");
            // Closing wakes the sleeper, which still drains the job before it stops.
            queue.close();
            assert_eq!(recv(&rx), Some(1));
            assert_eq!(recv(&rx), None);
        });
    }

    #[test]
    fn a_burst_wakes_no_more_workers_than_are_idle() {
        let queue = JobQueue::new(8, 2);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            // Two workers that take one job each, then stop.
            for _ in 0..2 {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || tx.send(queue.pop()).expect("the test is listening"));
            }
            wait_until(&queue, "both workers sleep", |c| c.idle == 2);
            for job in 0..3 {
                assert_eq!(queue.push(job, true), Ok(()));
            }
            // However the woken workers interleave with the pushes, the third push finds
            // every idle worker awake or being woken.
            assert_eq!(counts(&queue).notified, 2);
            let mut got = BTreeSet::new();
            for _ in 0..2 {
                got.insert(recv(&rx).expect("a job"));
            }
            got.insert(queue.pop().expect("the job no worker took"));
            assert_eq!(got, BTreeSet::from([0, 1, 2]));
        });
    }

    #[test]
    fn a_full_queue_blocks_the_pusher_until_a_pop() {
        let queue = JobQueue::new(1, 1);
        assert_eq!(queue.push(1, false), Ok(()));
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| {
                tx.send(queue.push(2, false))
                    .expect("the test is listening")
            });
            wait_until(&queue, "the pusher blocks", |c| c.blocked == 1);
            // A blocked pusher only returns once there is space (or the queue closes).
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(queue.pop(), Some(1));
            assert_eq!(recv(&rx), Ok(()));
        });
        assert_eq!(queue.pop(), Some(2));
        assert_eq!(counts(&queue).blocked, 0);
    }

    #[test]
    fn a_closed_queue_is_drained_before_workers_stop() {
        let queue = JobQueue::new(8, 2);
        for job in 0..5 {
            assert_eq!(queue.push(job, false), Ok(()));
        }
        queue.close();
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            for _ in 0..2 {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || drain_into(queue, &tx));
            }
            let mut got = Vec::new();
            let mut stopped = 0;
            while stopped < 2 {
                match recv(&rx) {
                    Some(job) => got.push(job),
                    None => stopped += 1,
                }
            }
            got.sort_unstable();
            assert_eq!(got, [0, 1, 2, 3, 4]);
        });
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn closing_wakes_sleeping_workers_with_none() {
        let queue = JobQueue::<u32>::new(4, 3);
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            for _ in 0..3 {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || drain_into(queue, &tx));
            }
            wait_until(&queue, "every worker sleeps", |c| c.idle == 3);
            queue.close();
            for _ in 0..3 {
                assert_eq!(recv(&rx), None);
            }
        });
    }

    #[test]
    fn pushes_after_close_hand_the_job_back() {
        let queue = JobQueue::new(4, 1);
        queue.close();
        assert_eq!(queue.push(5, false), Err(5));
        assert_eq!(queue.push(6, true), Err(6));
        assert_eq!(counts(&queue).queued, 0);
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn closing_releases_blocked_pushers_with_their_jobs() {
        let queue = JobQueue::new(1, 1);
        assert_eq!(queue.push(0, false), Ok(()));
        thread::scope(|s| {
            let pushers: Vec<_> = [1, 2]
                .into_iter()
                .map(|job| {
                    let queue = &queue;
                    s.spawn(move || queue.push(job, false))
                })
                .collect();
            wait_until(&queue, "both pushers block", |c| c.blocked == 2);
            queue.close();
            let results: Vec<_> = pushers
                .into_iter()
                .map(|p| p.join().expect("the pusher does not panic"))
                .collect();
            assert_eq!(results, [Err(1), Err(2)]);
        });
        // What was queued before the close still comes out.
        assert_eq!(queue.pop(), Some(0));
        assert_eq!(queue.pop(), None);
    }

    /// Producers and consumers at once through a queue small enough that producers block:
    /// every job arrives exactly once, and each consumer sees each producer's jobs in the
    /// order they were pushed.
    #[test]
    fn many_producers_and_consumers_deliver_every_job_once_in_order() {
        const PRODUCERS: usize = 3;
        const CONSUMERS: usize = 3;
        let queue = JobQueue::new(2, CONSUMERS);
        let seen: Vec<Vec<(usize, usize)>> = thread::scope(|s| {
            let consumers: Vec<_> = (0..CONSUMERS)
                .map(|_| {
                    let queue = &queue;
                    s.spawn(move || {
                        let mut seen = Vec::new();
                        while let Some(job) = queue.pop() {
                            seen.push(job);
                        }
                        seen
                    })
                })
                .collect();
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let queue = &queue;
                    s.spawn(move || {
                        for i in 0..JOBS_PER_PRODUCER {
                            queue.push((p, i), i % 3 == 0).expect("the queue is open");
                        }
                    })
                })
                .collect();
            for producer in producers {
                producer.join().expect("a producer does not panic");
            }
            queue.close();
            consumers
                .into_iter()
                .map(|c| c.join().expect("a consumer does not panic"))
                .collect()
        });
        for consumer in &seen {
            for p in 0..PRODUCERS {
                let order: Vec<usize> = consumer
                    .iter()
                    .filter(|(q, _)| *q == p)
                    .map(|&(_, i)| i)
                    .collect();
                assert!(order.is_sorted(), "producer {p}'s jobs out of order");
            }
        }
        let mut all: Vec<(usize, usize)> = seen.into_iter().flatten().collect();
        all.sort_unstable();
        let expected: Vec<(usize, usize)> = (0..PRODUCERS)
            .flat_map(|p| (0..JOBS_PER_PRODUCER).map(move |i| (p, i)))
            .collect();
        assert_eq!(all, expected);
    }
}
