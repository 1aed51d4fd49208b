//! The engine: the [`DataParallel`] struct (replicas on the chosen cores, their queues,
//! stations and persistent workers), its accessors, core health and re-admission, and the
//! public report types ([`ForwardReport`], [`ChunkPlan`]).
//!
//! The rest of the engine is in two child modules, which share the struct's private fields:
//! [`build`] brings an engine up (configuration checks, replicas, queues and stations laid
//! out by the [`Topology`](crate::topology::Topology), workers, CPU pinning) and takes it
//! down; [`dispatch`] runs the path of one batch (validate → split → dispatch → complete).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use neuron_rt::{DeviceId, DeviceIds, Model, Runtime};

use crate::buckets::Buckets;
use crate::error::{Error, Result};
use crate::health::{CoreHealth, CoreState};
use crate::metrics::{CoreReport, Metrics};
use crate::queue::JobQueue;
use crate::spec::ModelSpec;
use crate::worker::{Replica, Station};

mod build;
mod dispatch;

pub(crate) use dispatch::BatchFailure;

/// A model replicated on several NeuronCores, running each batch data-parallel.
///
/// Build it with [`DataParallel::new`]; call [`forward`](Self::forward) or
/// [`forward_into`](Self::forward_into) from any number of threads (`&self`). Dropping the
/// engine stops and joins its workers, then unloads the replicas.
pub struct DataParallel {
    runtime: Runtime,
    spec: ModelSpec,
    /// The compiled batch sizes (one per NEFF) and the piece planner over them.
    buckets: Buckets,
    devices: DeviceIds,
    replicas: Vec<Arc<Replica>>,
    /// The job queues, and which queue serves each replica.
    queues: Vec<Arc<JobQueue>>,
    queue_of: Vec<usize>,
    /// Per core, the stations its workers (and callers running a piece) use.
    stations: Arc<[Vec<Mutex<Station>>]>,
    /// Whether callers serve the last chunk of a call themselves.
    caller_runs: bool,
    /// Whether pieces are large enough to wake a second worker at once.
    overlap_transfers: bool,
    workers: Vec<JoinHandle<()>>,
    dim: usize,
    dynamic: AtomicBool,
    split_size: Option<NonZeroUsize>,
    attach: bool,
    /// Whether calls run as whole compiled batches (`Config::pack`).
    pack: bool,
    /// Whether calls with fewer chunks than cores are spread (`Config::spread_small_calls`).
    spread: bool,
    /// Where the next spread or packed call starts.
    next_slot: AtomicUsize,
}

impl std::fmt::Debug for DataParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataParallel")
            .field("devices", &self.devices)
            .field("workers", &self.workers.len())
            .field("dim", &self.dim)
            .field("dynamic_batching", &self.dynamic_batching())
            .field("split_size", &self.split_size)
            .field("pack", &self.pack)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// What one forward did, from [`DataParallel::forward_into_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardReport {
    /// Rows on the split dim.
    pub rows: usize,
    /// Each chunk with the time from its first piece starting to its last piece ending.
    pub chunks: Vec<(ChunkPlan, Duration)>,
    /// Wall time of the whole call, validation included.
    pub wall: Duration,
}

/// How one forward of `n` rows is split, from [`DataParallel::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Chunk index.
    pub chunk: usize,
    /// First row on the split dim.
    pub start: usize,
    /// Rows in the chunk.
    pub rows: usize,
    /// The logical core.
    pub core: DeviceId,
    /// The physical core, when known.
    pub physical_core: Option<u32>,
    /// Executions (pieces of the compiled batch).
    pub pieces: usize,
    /// Zero rows added to fill the last piece.
    pub pad_rows: usize,
    /// The compiled batch size of each piece, in order (several sizes with buckets).
    pub batch_sizes: Vec<usize>,
}

impl DataParallel {
    /// Switches dynamic batching off (as `torch_neuronx`'s `disable_dynamic_batching()`):
    /// from now on every batch must be exactly cores × compiled batch rows.
    pub fn disable_dynamic_batching(&self) {
        self.dynamic.store(false, Ordering::Release);
    }

    /// Whether dynamic batching is on.
    pub fn dynamic_batching(&self) -> bool {
        self.dynamic.load(Ordering::Acquire)
    }

    /// The cores the model is replicated on.
    pub fn devices(&self) -> &DeviceIds {
        &self.devices
    }

    /// The physical core behind each replica, in device order.
    pub fn physical_cores(&self) -> impl Iterator<Item = Option<u32>> + '_ {
        self.replicas.iter().map(|r| r.physical_core)
    }

    /// The model's inputs and outputs.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The runtime the engine runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The split dim.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of worker threads.
    pub fn num_workers(&self) -> usize {
        self.workers.len()
    }

    /// Per-core counters since the engine was built.
    pub fn core_stats(&self) -> Vec<CoreReport> {
        self.replicas
            .iter()
            .map(|r| CoreReport {
                core: r.core,
                physical_core: r.physical_core,
                executions: r.stats.executions.load(Ordering::Relaxed),
                busy_ns: r.stats.busy_ns.load(Ordering::Relaxed),
                failures: r.stats.failures.load(Ordering::Relaxed),
                rows: r.stats.rows.load(Ordering::Relaxed),
                pad_rows: r.stats.pad_rows.load(Ordering::Relaxed),
                busy_retries: r.stats.busy_retries.load(Ordering::Relaxed),
                piece_latency: r.stats.piece_latency.snapshot(),
            })
            .collect()
    }

    /// A snapshot of the engine's metrics: per core its executions, busy time, rows, pad
    /// rows and piece-latency histogram, with totals and the pad ratio.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            cores: self.core_stats(),
        }
    }

    /// Each core's health: state, consecutive failures, last failure status, executions.
    pub fn health(&self) -> Vec<CoreHealth> {
        self.replicas
            .iter()
            .map(|r| CoreHealth {
                core: r.core,
                physical_core: r.physical_core,
                state: if r.health.is_quarantined() {
                    CoreState::Quarantined
                } else {
                    CoreState::Healthy
                },
                consecutive_failures: r.health.consecutive_failures(),
                last_status: r.health.last_status(),
                executions: r.stats.executions.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Takes a quarantined core back into service: reloads the model on it (pieces still
    /// running on the old copy finish first) and resets its failure count.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownCore`] when `core` is not one of the engine's cores;
    /// [`Error::Runtime`] (or [`Error::Neff`]) when the reload fails (the core stays
    /// quarantined).
    pub fn readmit(&self, core: DeviceId) -> Result<()> {
        let index = self
            .replicas
            .iter()
            .position(|r| r.core == core)
            .ok_or_else(|| Error::UnknownCore {
                core,
                cores: self.devices.to_string(),
            })?;
        let replica = &self.replicas[index];
        // Load every bucket afresh first, so a failed reload leaves the replica as it was.
        let mut reloaded = Vec::with_capacity(replica.buckets());
        for bucket in 0..replica.buckets() {
            if let Some(current) = replica.model(bucket) {
                reloaded.push(Model::load_bytes(
                    &self.runtime,
                    current.neff_image(),
                    core,
                )?);
            }
        }
        for (bucket, model) in reloaded.into_iter().enumerate() {
            replica.replace_model(bucket, model);
        }
        // Every station of the core takes the new models now (waiting for a piece in
        // flight on it), so the old ones unload before this returns.
        for station in self.stations.get(index).into_iter().flatten() {
            station
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .refresh();
        }
        replica.health.readmit();
        log::info!("{core} re-admitted after a reload");
        Ok(())
    }

    /// The compiled batch sizes, ascending (one per NEFF).
    pub fn batch_sizes(&self) -> &[usize] {
        self.buckets.sizes()
    }
}
