//! Running pieces: the per-core replica (models, counters, health), the stations
//! (pre-allocated input and output tensor sets on a core), the worker threads that take jobs
//! from their queue, and [`serve`], which runs one piece — on a worker, or on a caller that
//! runs it itself — writing the caller's rows into device tensors (zeroing pad rows),
//! executing, and reading the outputs straight into the caller's output rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};

use neuron_rt::{DeviceId, Model, Tensor, TensorSet};

use crate::call::{Call, Failure, Job, catch_panic};
use crate::error::Error;
use crate::health::Health;
use crate::layout::{Geometry, LayoutError};
use crate::metrics::AtomicHistogram;
use crate::queue::JobQueue;

/// One replica: the model loaded on a core, and that core's counters and health.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) core: DeviceId,
    pub(crate) physical_core: Option<u32>,
    /// One model per bucket (ascending batch), swapped by a re-admission (reload); pieces
    /// hold their own `Arc` while they run.
    models: Vec<RwLock<Arc<Model>>>,
    pub(crate) stats: CoreStats,
    pub(crate) health: Health,
    /// Consecutive hardware-class failures that quarantine the core (0: never).
    pub(crate) quarantine_after: u32,
}

impl Replica {
    /// A replica of `models` (one per bucket, ascending batch; at least one), all on one core.
    pub(crate) fn new(models: Vec<Model>, quarantine_after: u32) -> Replica {
        let (core, physical_core) = models
            .first()
            .map(|m| (m.core(), m.physical_core()))
            .unwrap_or((DeviceId::new(0), None));
        Replica {
            core,
            physical_core,
            models: models
                .into_iter()
                .map(|m| RwLock::new(Arc::new(m)))
                .collect(),
            stats: CoreStats::default(),
            health: Health::default(),
            quarantine_after,
        }
    }

    /// Number of buckets (models).
    pub(crate) fn buckets(&self) -> usize {
        self.models.len()
    }

    /// The current model of `bucket`.
    pub(crate) fn model(&self, bucket: usize) -> Option<Arc<Model>> {
        let slot = self.models.get(bucket)?;
        Some(Arc::clone(
            &slot.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }

    /// Replaces the model of `bucket` (after a reload); the old one unloads when its last
    /// piece ends.
    pub(crate) fn replace_model(&self, bucket: usize, model: Model) {
        if let Some(slot) = self.models.get(bucket) {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(model);
        }
    }
}

/// Counters per core, updated by its workers.
#[derive(Debug, Default)]
pub(crate) struct CoreStats {
    /// A moving average of recent piece times in nanoseconds (0: none measured yet).
    pub(crate) recent_piece_ns: AtomicU64,
    pub(crate) executions: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) pad_rows: AtomicU64,
    /// Executions retried after a busy status (`busy.rs`).
    pub(crate) busy_retries: AtomicU64,
    pub(crate) piece_latency: AtomicHistogram,
}

impl CoreStats {
    /// Folds one piece's time into the moving average (weight 1/8; racy updates only lose
    /// a sample).
    fn record_piece_ns(&self, ns: u64) {
        let old = self.recent_piece_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.recent_piece_ns.store(new.max(1), Ordering::Relaxed);
    }
}

/// Tensor sets on one core, one input and one output set per bucket: what a thread needs
/// to run pieces there. A core has one per worker serving it; a worker uses its own, and a
/// caller that runs a piece itself borrows a free one.
pub(crate) struct Station {
    replica: Arc<Replica>,
    /// The replica's models, one per bucket, held here so a piece needs no lock to reach
    /// them; [`Station::refresh`] picks up a reload.
    models: Vec<Arc<Model>>,
    sets: Vec<(TensorSet<'static>, TensorSet<'static>)>,
}

impl Station {
    pub(crate) fn new(replica: Arc<Replica>) -> Result<Station, neuron_rt::Error> {
        let models: Vec<Arc<Model>> = (0..replica.buckets())
            .filter_map(|bucket| replica.model(bucket))
            .collect();
        let sets = models
            .iter()
            .map(|model| Ok((model.allocate_inputs()?, model.allocate_outputs()?)))
            .collect::<Result<_, neuron_rt::Error>>()?;
        Ok(Station {
            replica,
            models,
            sets,
        })
    }

    /// Takes the replica's current models (after a reload); the old ones unload once no
    /// station holds them.
    pub(crate) fn refresh(&mut self) {
        self.models = (0..self.replica.buckets())
            .filter_map(|bucket| self.replica.model(bucket))
            .collect();
    }

    fn core(&self) -> DeviceId {
        self.replica.core
    }
}

/// What a worker needs: its queue, the stations of every core (it uses those of the cores
/// whose jobs come through its queue), and the station it prefers.
pub(crate) struct WorkerSetup {
    pub(crate) queue: Arc<JobQueue>,
    pub(crate) stations: Arc<[Vec<Mutex<Station>>]>,
    /// Index of this worker's own station within a core's stations.
    pub(crate) home: usize,
}

/// The body of a worker thread: serves jobs until its queue is closed and drained.
pub(crate) fn run(setup: WorkerSetup) {
    while let Some(job) = setup.queue.pop() {
        match setup.stations.get(job.replica) {
            Some(stations) if !stations.is_empty() => {
                let mut station = lock_station(stations, setup.home);
                serve(&mut station, job);
            }
            _ => misrouted(job),
        }
    }
}

/// This worker's own station, or another free one of the core while a caller borrows it;
/// waits for its own when all are busy.
fn lock_station(stations: &[Mutex<Station>], home: usize) -> MutexGuard<'_, Station> {
    let home = home % stations.len();
    if let Some(free) = try_lock_any(stations, home) {
        return free;
    }
    stations[home]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A free station of the core, trying `first` first.
pub(crate) fn try_lock_any(
    stations: &[Mutex<Station>],
    first: usize,
) -> Option<MutexGuard<'_, Station>> {
    let n = stations.len();
    (0..n).find_map(|i| match stations[(first + i) % n].try_lock() {
        Ok(guard) => Some(guard),
        // A panic while a station was held is caught inside `serve`; the station itself is
        // left consistent either way.
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    })
}

/// A job for a core this worker does not serve (an engine bug): fail it, never drop it.
fn misrouted(job: Job) {
    // SAFETY: the call outlives this job until `finish` below, after which it is not used.
    let call = unsafe { job.call() };
    call.fail(Failure {
        chunk: job.chunk,
        error: Error::WorkerPanicked {
            chunk: job.chunk,
            core: DeviceId::new(u32::try_from(job.replica).unwrap_or(u32::MAX)),
            message: "job routed to a worker that does not serve its core".to_owned(),
        },
    });
    // SAFETY: the job's one finish; `call` is not used after it.
    unsafe { job.finish() };
}

/// Runs one job and signals its completion, whatever happens.
pub(crate) fn serve(station: &mut Station, job: Job) {
    // SAFETY: the call outlives this job until `finish` below, after which it is not used.
    let call = unsafe { job.call() };
    run_job(station, call, &job);
    // SAFETY: the job's one finish; `call` is not used after it.
    unsafe { job.finish() };
}

/// Runs one job of `call` and records its metrics, health and any failure in the call; does
/// not count it finished. The caller of a call uses this for the jobs it runs itself, which
/// it never counted as outstanding.
pub(crate) fn run_job(station: &mut Station, call: &Call<'_>, job: &Job) {
    let started = quanta::Instant::now();
    let result = catch_panic(|| run_piece(station, call, job));
    let ended = quanta::Instant::now();
    if let Some(timing) = call.timings.and_then(|t| t.get(job.chunk)) {
        timing.record(started, ended);
    }
    let stats = &station.replica.stats;
    let piece_ns = u64::try_from(ended.duration_since(started).as_nanos()).unwrap_or(u64::MAX);
    stats.record_piece_ns(piece_ns);
    stats.busy_ns.fetch_add(piece_ns, Ordering::Relaxed);
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(PieceError::Runtime(source))) => Some(Error::Chunk {
            chunk: job.chunk,
            core: station.core(),
            physical_core: station.replica.physical_core,
            source,
        }),
        Ok(Err(PieceError::Internal(message))) => Some(Error::Internal {
            chunk: job.chunk,
            core: station.core(),
            message,
        }),
        Err(message) => Some(Error::WorkerPanicked {
            chunk: job.chunk,
            core: station.core(),
            message,
        }),
    };
    stats.piece_latency.record_us(piece_ns / 1_000);
    let health = &station.replica.health;
    match &error {
        None => {
            health.succeeded();
            stats
                .rows
                .fetch_add(job.piece.rows as u64, Ordering::Relaxed);
            stats
                .pad_rows
                .fetch_add(job.piece.pad as u64, Ordering::Relaxed);
        }
        Some(error) => {
            if health.failed(error.status(), station.replica.quarantine_after) {
                log::warn!(
                    "{} (physical core {}) quarantined after {} hardware-class failures in a row \
                     (last: {}); its chunks go to the remaining cores until readmit()",
                    station.replica.core,
                    station
                        .replica
                        .physical_core
                        .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
                    health.consecutive_failures(),
                    error
                );
            }
        }
    }
    if let Some(error) = error {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        call.fail(Failure {
            chunk: job.chunk,
            error,
        });
    }
}

/// Why a piece failed.
#[derive(Debug)]
enum PieceError {
    /// libnrt (or a copy to or from a device tensor) reported an error.
    Runtime(neuron_rt::Error),
    /// The engine broke one of its own invariants (validation should have caught it).
    Internal(String),
}

impl From<neuron_rt::Error> for PieceError {
    fn from(error: neuron_rt::Error) -> PieceError {
        PieceError::Runtime(error)
    }
}

fn layout_error(error: LayoutError) -> PieceError {
    PieceError::Internal(format!(
        "scatter/gather: {error} (validated earlier: this is a bug)"
    ))
}

/// Scatter one piece's rows into the device tensors, execute, gather the outputs.
fn run_piece(station: &mut Station, call: &Call<'_>, job: &Job) -> Result<(), PieceError> {
    let piece = job.piece;
    let b = call
        .batch_sizes
        .get(job.bucket)
        .copied()
        .ok_or_else(|| missing("bucket", "of the piece"))?;
    let src_row = job.chunk_start + piece.start;
    // Attach needs whole, unpadded dim-0 pieces whose output rows are the input rows: always
    // so with dynamic batching, and without it when every output has b rows on dim 0.
    let rows_line_up = || {
        call.dynamic
            || call
                .spec
                .outputs
                .iter()
                .all(|o| o.shape.first() == Some(&b))
    };
    if call.attach && call.dim == 0 && piece.pad == 0 && piece.rows == b && rows_line_up() {
        return run_attached(station, call, job.bucket, b, src_row);
    }
    let model = station
        .models
        .get(job.bucket)
        .ok_or_else(|| missing("model", "of the bucket"))?;
    let (inputs, outputs) = station
        .sets
        .get_mut(job.bucket)
        .ok_or_else(|| missing("tensor sets", "of the bucket"))?;

    for (index, spec) in call.spec.inputs.iter().enumerate() {
        let view = call
            .input_matching
            .find(call.inputs, index, &spec.name, |v| v.name)
            .map(|(_, v)| v)
            .ok_or_else(|| missing("input", &spec.name))?;
        let tensor = inputs
            .tensor_mut(index)
            .ok_or_else(|| missing("device input", &spec.name))?;
        if view.broadcast {
            tensor.write(0, view.data)?;
            continue;
        }
        let geometry = Geometry::new(view.shape, call.dim, spec.elem_size).map_err(layout_error)?;
        for run in geometry
            .runs(src_row, piece.rows, b, 0)
            .map_err(layout_error)?
        {
            tensor.write(run.dst, &view.data[run.src..run.src + run.len])?;
        }
        if piece.pad > 0 {
            for span in geometry
                .pad_runs(b, piece.rows, piece.pad)
                .map_err(layout_error)?
            {
                tensor.memset(span.offset, 0, span.len)?;
            }
        }
    }

    execute(&station.replica, model, inputs, outputs)?;

    for (index, spec) in call.spec.outputs.iter().enumerate() {
        let view = call
            .output_matching
            .find(call.outputs, index, &spec.name, |v| v.name)
            .map(|(_, v)| v)
            .ok_or_else(|| missing("output", &spec.name))?;
        let tensor = outputs
            .tensor(index)
            .ok_or_else(|| missing("device output", &spec.name))?;
        let geometry = Geometry::new(view.shape, call.dim, spec.elem_size).map_err(layout_error)?;
        // With dynamic batching every output has the piece's bucket size on dim 0 (checked
        // at validation and, for buckets, at build); otherwise the one model's own size.
        let compiled_rows = if call.dynamic {
            b
        } else {
            spec.shape.get(call.dim).copied().unwrap_or(0)
        };
        // With dynamic batching output rows follow input rows (pad rows are dropped);
        // otherwise each chunk contributes one whole compiled output along `dim`.
        let (out_row, out_rows) = if call.dynamic {
            (src_row, piece.rows)
        } else {
            (job.chunk * compiled_rows, compiled_rows)
        };
        for run in geometry
            .runs(out_row, out_rows, compiled_rows, 0)
            .map_err(layout_error)?
        {
            // SAFETY: validation fixed the view's shape, so the run lies inside it; runs of
            // different jobs cover disjoint rows of the output, and the caller does not touch
            // the buffer until every job has finished.
            let out = unsafe { view.bytes_mut(run.src, run.len) };
            tensor.read(run.dst, out)?;
        }
    }
    Ok(())
}

/// Executes, retrying while the runtime says the core is busy (`busy.rs`).
fn execute(
    replica: &Replica,
    model: &Model,
    inputs: &TensorSet<'_>,
    outputs: &mut TensorSet<'_>,
) -> Result<(), neuron_rt::Error> {
    replica.stats.executions.fetch_add(1, Ordering::Relaxed);
    crate::busy::retry_busy(
        || model.execute(inputs, outputs),
        || {
            replica.stats.busy_retries.fetch_add(1, Ordering::Relaxed);
        },
        std::thread::sleep,
    )
}

/// Attach mode: an unpadded `dim == 0` piece runs directly on the caller's memory.
fn run_attached(
    station: &Station,
    call: &Call<'_>,
    bucket: usize,
    b: usize,
    src_row: usize,
) -> Result<(), PieceError> {
    let model = station
        .models
        .get(bucket)
        .ok_or_else(|| missing("model", "of the bucket"))?;
    let runtime = model.runtime();
    let mut attached_inputs = Vec::with_capacity(call.spec.inputs.len());
    for (index, spec) in call.spec.inputs.iter().enumerate() {
        let view = call
            .input_matching
            .find(call.inputs, index, &spec.name, |v| v.name)
            .map(|(_, v)| v)
            .ok_or_else(|| missing("input", &spec.name))?;
        let bytes = if view.broadcast {
            view.data
        } else {
            let geometry = Geometry::new(view.shape, 0, spec.elem_size).map_err(layout_error)?;
            let range = geometry
                .contiguous(src_row, b)
                .ok_or_else(|| missing("contiguous rows of input", &spec.name))?;
            &view.data[range]
        };
        attached_inputs.push(Tensor::attach(runtime, bytes, &spec.name)?);
    }
    let mut attached_outputs = Vec::with_capacity(call.spec.outputs.len());
    for (index, spec) in call.spec.outputs.iter().enumerate() {
        let view = call
            .output_matching
            .find(call.outputs, index, &spec.name, |v| v.name)
            .map(|(_, v)| v)
            .ok_or_else(|| missing("output", &spec.name))?;
        let geometry = Geometry::new(view.shape, 0, spec.elem_size).map_err(layout_error)?;
        let range = geometry
            .contiguous(src_row, b)
            .ok_or_else(|| missing("contiguous rows of output", &spec.name))?;
        // SAFETY: as in `run_piece`: in bounds by validation, disjoint from every other
        // job's rows, and untouched by the caller until the call completes.
        let out = unsafe { view.bytes_mut(range.start, range.len()) };
        attached_outputs.push(Tensor::attach_mut(runtime, out, &spec.name)?);
    }
    let mut inputs = TensorSet::new(runtime)?;
    for (spec, tensor) in call.spec.inputs.iter().zip(&attached_inputs) {
        inputs.add(&spec.name, tensor)?;
    }
    let mut outputs = TensorSet::new(runtime)?;
    for (spec, tensor) in call.spec.outputs.iter().zip(attached_outputs.iter_mut()) {
        outputs.add_mut(&spec.name, tensor)?;
    }
    Ok(execute(&station.replica, model, &inputs, &mut outputs)?)
}

fn missing(what: &str, name: &str) -> PieceError {
    PieceError::Internal(format!(
        "scatter/gather: {what} {} not found (validated earlier: this is a bug)",
        crate::quote::quote(name)
    ))
}
