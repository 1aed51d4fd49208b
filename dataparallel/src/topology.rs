//! Which threads serve which NeuronCores: the job queues an engine has, the queue each
//! core's jobs go to, how many workers (and so stations) serve each core, and the core and
//! station each worker starts on. Pure arithmetic on the core and worker counts, decided
//! once when the engine is built (`engine::build` turns it into queues, stations and
//! threads).
//!
//! - **At least one worker per core** (the default is two): each core has a queue that its
//!   workers share. Worker `w` serves core `w % cores` and is that core's `w / cores`-th
//!   worker, which is also the index of its own station there. Callers serve the last chunk
//!   of a call themselves, on a free station of its core.
//! - **Fewer workers than cores**: each worker has a queue, for the cores `c` with
//!   `c % workers == w`; each core has one station, and callers run nothing themselves,
//!   because asking for fewer workers than cores caps concurrency on purpose.

use std::num::NonZeroUsize;

/// How `workers` threads serve `cores` cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Topology {
    cores: usize,
    workers: NonZeroUsize,
}

impl Topology {
    /// The topology of `workers` threads over `cores` cores (an engine has at least one).
    pub(crate) fn new(cores: usize, workers: NonZeroUsize) -> Topology {
        Topology { cores, workers }
    }

    /// Whether each core has a queue of its own: at least as many workers as cores.
    fn queue_per_core(&self) -> bool {
        self.workers.get() >= self.cores
    }

    /// Whether a caller serves chunks of its call itself (on a free station of the core)
    /// instead of handing every one to a worker.
    pub(crate) fn callers_serve(&self) -> bool {
        self.queue_per_core()
    }

    /// Number of job queues.
    pub(crate) fn queues(&self) -> usize {
        self.cores.min(self.workers.get())
    }

    /// The queue that serves `core` (below `cores`).
    pub(crate) fn queue_of(&self, core: usize) -> usize {
        if self.queue_per_core() {
            core
        } else {
            core % self.workers
        }
    }

    /// Workers taking jobs from `queue` (below [`queues`](Self::queues)).
    pub(crate) fn workers_on_queue(&self, queue: usize) -> usize {
        if self.queue_per_core() {
            // Workers w with w % cores == queue: queue, queue + cores, ... below workers.
            (self.workers.get().saturating_sub(queue)).div_ceil(self.cores)
        } else {
            1
        }
    }

    /// Stations (tensor sets) on `core` (below `cores`): one per worker serving it.
    pub(crate) fn stations_on(&self, core: usize) -> usize {
        if self.queue_per_core() {
            self.workers_on_queue(core)
        } else {
            1
        }
    }

    /// The core worker `worker` starts on: the one it serves, or the first of its queue's.
    pub(crate) fn first_core(&self, worker: usize) -> usize {
        if self.queue_per_core() {
            worker % self.cores
        } else {
            worker
        }
    }

    /// Index of worker `worker`'s own station among its cores' stations.
    pub(crate) fn home(&self, worker: usize) -> usize {
        if self.queue_per_core() {
            worker / self.cores
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(cores: usize, workers: usize) -> Topology {
        Topology::new(
            cores,
            NonZeroUsize::new(workers).expect("tests use workers >= 1"),
        )
    }

    /// Everything a topology says, per queue, core and worker, for the worked examples.
    #[derive(Debug, PartialEq, Eq)]
    struct Layout {
        callers_serve: bool,
        queue_of: Vec<usize>,
        workers_on_queue: Vec<usize>,
        stations_on: Vec<usize>,
        first_core: Vec<usize>,
        home: Vec<usize>,
    }

    fn layout(cores: usize, workers: usize) -> Layout {
        let t = topology(cores, workers);
        Layout {
            callers_serve: t.callers_serve(),
            queue_of: (0..cores).map(|c| t.queue_of(c)).collect(),
            workers_on_queue: (0..t.queues()).map(|q| t.workers_on_queue(q)).collect(),
            stations_on: (0..cores).map(|c| t.stations_on(c)).collect(),
            first_core: (0..workers).map(|w| t.first_core(w)).collect(),
            home: (0..workers).map(|w| t.home(w)).collect(),
        }
    }

    #[test]
    fn two_workers_per_core_share_each_cores_queue() {
        assert_eq!(
            layout(4, 8),
            Layout {
                callers_serve: true,
                queue_of: vec![0, 1, 2, 3],
                workers_on_queue: vec![2, 2, 2, 2],
                stations_on: vec![2, 2, 2, 2],
                first_core: vec![0, 1, 2, 3, 0, 1, 2, 3],
                home: vec![0, 0, 0, 0, 1, 1, 1, 1],
            }
        );
    }

    #[test]
    fn one_worker_per_core() {
        assert_eq!(
            layout(3, 3),
            Layout {
                callers_serve: true,
                queue_of: vec![0, 1, 2],
                workers_on_queue: vec![1, 1, 1],
                stations_on: vec![1, 1, 1],
                first_core: vec![0, 1, 2],
                home: vec![0, 0, 0],
            }
        );
    }

    #[test]
    fn workers_not_a_multiple_of_cores_go_to_the_first_cores() {
        assert_eq!(
            layout(4, 6),
            Layout {
                callers_serve: true,
                queue_of: vec![0, 1, 2, 3],
                workers_on_queue: vec![2, 2, 1, 1],
                stations_on: vec![2, 2, 1, 1],
                first_core: vec![0, 1, 2, 3, 0, 1],
                home: vec![0, 0, 0, 0, 1, 1],
            }
        );
    }

    #[test]
    fn fewer_workers_than_cores_give_each_worker_a_queue_and_callers_nothing() {
        assert_eq!(
            layout(5, 2),
            Layout {
                callers_serve: false,
                queue_of: vec![0, 1, 0, 1, 0],
                workers_on_queue: vec![1, 1],
                stations_on: vec![1, 1, 1, 1, 1],
                first_core: vec![0, 1],
                home: vec![0, 0],
            }
        );
        assert_eq!(
            layout(3, 1),
            Layout {
                callers_serve: false,
                queue_of: vec![0, 0, 0],
                workers_on_queue: vec![1],
                stations_on: vec![1, 1, 1],
                first_core: vec![0],
                home: vec![0],
            }
        );
    }

    #[test]
    fn one_core() {
        assert_eq!(
            layout(1, 1),
            Layout {
                callers_serve: true,
                queue_of: vec![0],
                workers_on_queue: vec![1],
                stations_on: vec![1],
                first_core: vec![0],
                home: vec![0],
            }
        );
        assert_eq!(
            layout(1, 3),
            Layout {
                callers_serve: true,
                queue_of: vec![0],
                workers_on_queue: vec![3],
                stations_on: vec![3],
                first_core: vec![0, 0, 0],
                home: vec![0, 1, 2],
            }
        );
    }

    /// Every combination up to 9 cores and 20 workers against what the engine relies on,
    /// each property counted from the workers' side independently of the closed forms.
    #[test]
    fn every_small_topology_is_consistent() {
        for cores in 1..=9 {
            for workers in 1..=20 {
                let t = topology(cores, workers);
                let case = format!("{cores} cores, {workers} workers");
                assert_eq!(t.queues(), cores.min(workers), "{case}");
                assert_eq!(t.callers_serve(), workers >= cores, "{case}");
                // Every core's jobs reach a queue, and every queue serves some core.
                for c in 0..cores {
                    assert!(t.queue_of(c) < t.queues(), "{case}: core {c}");
                }
                for q in 0..t.queues() {
                    assert!((0..cores).any(|c| t.queue_of(c) == q), "{case}: queue {q}");
                }
                // A queue's worker count is the number of workers that start on a core it
                // serves; every queue has one, and they are spread within one of each other.
                for q in 0..t.queues() {
                    let counted = (0..workers)
                        .filter(|&w| t.queue_of(t.first_core(w)) == q)
                        .count();
                    assert_eq!(t.workers_on_queue(q), counted, "{case}: queue {q}");
                    assert!(counted >= 1, "{case}: queue {q} has no worker");
                }
                let on_queues: Vec<usize> =
                    (0..t.queues()).map(|q| t.workers_on_queue(q)).collect();
                let (least, most) = (on_queues.iter().min(), on_queues.iter().max());
                assert!(most.zip(least).is_some_and(|(m, l)| m - l <= 1), "{case}");
                // Each core has a station per worker starting on it (at least one), and the
                // workers of a core have distinct homes among its stations.
                let mut stations = 0;
                for c in 0..cores {
                    let mut homes: Vec<usize> = (0..workers)
                        .filter(|&w| t.first_core(w) == c)
                        .map(|w| t.home(w))
                        .collect();
                    homes.sort_unstable();
                    let n = t.stations_on(c);
                    assert!(n >= 1, "{case}: core {c} has no station");
                    if t.callers_serve() {
                        assert_eq!(homes, (0..n).collect::<Vec<_>>(), "{case}: core {c}");
                    } else {
                        assert!(homes.iter().all(|&h| h < n), "{case}: core {c}");
                        assert!(homes.len() <= 1, "{case}: core {c}");
                    }
                    stations += n;
                }
                assert_eq!(stations, cores.max(workers), "{case}");
                for w in 0..workers {
                    assert!(t.first_core(w) < cores, "{case}: worker {w}");
                }
            }
        }
    }
}
