//! The build path: check the configuration, load a replica of the model on every core,
//! create the queues and stations the [`Topology`] calls for, and start the workers, each
//! pinned to a CPU when asked. CPU affinity (which CPUs the process may use, pinning a worker
//! to one) lives here and only here. Dropping the engine takes the same steps back: close the
//! queues, join the workers, then let the replicas unload.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use neuron_rt::{DeviceIds, Model, Neff, Runtime};

use super::DataParallel;
use crate::buckets::{self, Buckets};
use crate::config::{Config, DeviceSpec};
use crate::error::{Error, Result};
use crate::queue::JobQueue;
use crate::topology::Topology;
use crate::worker::{self, Replica, Station, WorkerSetup};

/// Jobs each core's queue holds before `forward` waits for a worker to take one.
const QUEUE_DEPTH: usize = 1024;

/// Pieces that move at least this many bytes (inputs plus outputs) wake a core's second
/// worker as soon as it is queued, so one piece's transfers overlap another's execution;
/// smaller pieces wait for the core's awake worker, whose next pop is cheaper than another
/// thread's wake-up (measured in BENCHMARKS.md: scenarios 1 and 5).
const OVERLAP_BYTES: usize = 64 * 1024;

impl DataParallel {
    /// Loads `neff` on the configured cores and starts the workers.
    ///
    /// # Errors
    ///
    /// - [`Error::DeviceIds`] for invalid device ids (each form is rejected with a message
    ///   naming the entry);
    /// - [`Error::Neff`] when libnrt refuses the NEFF as invalid or unsupported;
    /// - [`Error::Runtime`] when loading or allocating fails otherwise;
    /// - [`Error::Config`] for a zero `split_size` or worker count, or a `dim` the model's
    ///   inputs do not have;
    /// - [`Error::Spawn`] when a worker thread cannot be started.
    pub fn new(runtime: &Runtime, neff: &Neff, config: Config) -> Result<DataParallel> {
        Self::with_buckets(runtime, std::slice::from_ref(neff), config)
    }

    /// Loads several NEFFs of the same model, compiled at different batch sizes ("buckets",
    /// e.g. 1, 4 and 16), on every configured core. Each chunk then runs as the pieces that
    /// minimise padded rows, then executions (see [`DataParallel::plan`]).
    ///
    /// The NEFFs must have the same inputs and outputs (names, dtypes, shapes) except the
    /// batch on dim 0, and every input and output must carry that batch. Buckets need
    /// dynamic batching on dim 0.
    ///
    /// # Errors
    ///
    /// As [`DataParallel::new`]; also [`Error::Config`] when the NEFFs differ in anything but
    /// the batch, share a batch size, or are combined with `dim != 0` or dynamic batching off.
    pub fn with_buckets(runtime: &Runtime, neffs: &[Neff], config: Config) -> Result<DataParallel> {
        let devices = resolve_devices(runtime, config.device_ids.as_ref())?;
        if neffs.is_empty() {
            return Err(Error::config("no NEFF given"));
        }
        if config.pack && config.split_size.is_some() {
            return Err(Error::config(
                "pack and split_size both set: packing cuts calls into compiled batches itself; \
                 unset one of them",
            ));
        }
        if config.split_size == Some(0) {
            return Err(Error::config(
                "split_size must be at least 1 (or unset to split evenly over the cores)",
            ));
        }
        // The first reading of the piece clock calibrates it (about 0.6 ms here): pay that
        // at build, not in the first forward.
        let _ = quanta::Instant::now();
        let cores = devices.len();
        let num_workers = config.resolved_workers(cores);
        let Some(workers) = NonZeroUsize::new(num_workers) else {
            return Err(Error::config(
                "num_workers must be at least 1 (default: 2 per core)",
            ));
        };
        let most = cores.saturating_mul(crate::config::MAX_WORKERS_PER_CORE);
        if num_workers > most {
            return Err(Error::config(format!(
                "{num_workers} workers is above the limit of {} per core ({most} for {cores} \
                 cores); use fewer workers (default: 2 per core)",
                crate::config::MAX_WORKERS_PER_CORE
            )));
        }
        let topology = Topology::new(cores, workers);
        let mut dynamic = config.dynamic_batching;
        if neffs.len() > 1 && (config.dim != 0 || !dynamic) {
            return Err(Error::config(format!(
                "{} NEFFs (batch-size buckets) need dynamic batching on dim 0; got dim {} with \
                 dynamic batching {}",
                neffs.len(),
                config.dim,
                if dynamic { "on" } else { "off" }
            )));
        }
        if dynamic && config.dim != 0 {
            log::info!(
                "dynamic batching is switched off because dim is {} (it needs dim 0)",
                config.dim
            );
            dynamic = false;
        }

        // Load every NEFF on the first core to learn the buckets, then on the rest.
        let first_core = devices.as_slice()[0];
        let mut first_models = Vec::with_capacity(neffs.len());
        for neff in neffs {
            first_models.push(Model::load(runtime, neff, first_core)?);
        }
        let (spec, order, batches) = buckets::bucket_specs(&first_models, config.dim)?;
        if spec.inputs.iter().all(|i| i.shape.len() <= config.dim) {
            return Err(Error::config(format!(
                "dim {} is out of range: the model's inputs have rank {}",
                config.dim,
                spec.inputs.iter().map(|i| i.shape.len()).max().unwrap_or(0)
            )));
        }
        let buckets = Buckets::new(&batches).map_err(|e| Error::config(e.to_string()))?;
        let mut first_models: Vec<Option<Model>> = first_models.into_iter().map(Some).collect();
        let mut replicas = Vec::with_capacity(cores);
        for &core in devices.iter() {
            let mut models = Vec::with_capacity(order.len());
            for &index in &order {
                let model = match first_models[index].take() {
                    Some(model) if core == first_core => model,
                    _ => Model::load(runtime, &neffs[index], core)?,
                };
                models.push(model);
            }
            replicas.push(Arc::new(Replica::new(models, config.quarantine_after)));
        }

        let queue_of: Vec<usize> = (0..cores).map(|c| topology.queue_of(c)).collect();
        let queues: Vec<Arc<JobQueue>> = (0..topology.queues())
            .map(|q| Arc::new(JobQueue::new(QUEUE_DEPTH, topology.workers_on_queue(q))))
            .collect();
        // One station (tensor sets) per worker serving a core; callers borrow free ones
        // when the topology lets them serve chunks.
        let stations: Arc<[Vec<Mutex<Station>>]> = replicas
            .iter()
            .enumerate()
            .map(|(c, replica)| {
                (0..topology.stations_on(c))
                    .map(|_| Ok(Mutex::new(Station::new(Arc::clone(replica))?)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?
            .into();
        let cpus = if config.pin_cpus {
            allowed_cpus()
        } else {
            Vec::new()
        };
        let piece_bytes: usize = spec
            .inputs
            .iter()
            .chain(&spec.outputs)
            .map(|t| t.size)
            .sum();
        let mut engine = DataParallel {
            runtime: runtime.clone(),
            spec,
            buckets,
            devices,
            replicas,
            queues,
            queue_of,
            stations: Arc::clone(&stations),
            caller_runs: topology.callers_serve(),
            overlap_transfers: piece_bytes >= OVERLAP_BYTES,
            workers: Vec::with_capacity(num_workers),
            dim: config.dim,
            dynamic: AtomicBool::new(dynamic),
            split_size: config.split_size_value(),
            attach: config.attach,
            pack: config.pack,
            spread: config.spread_small_calls,
            next_slot: AtomicUsize::new(0),
        };
        for w in 0..num_workers {
            let first_core = topology.first_core(w);
            let setup = WorkerSetup {
                queue: Arc::clone(&engine.queues[engine.queue_of[first_core]]),
                stations: Arc::clone(&stations),
                home: topology.home(w),
            };
            let name = format!(
                "neuron-dp-w{w}-nc{}",
                engine.devices.as_slice()[first_core].index()
            );
            let cpu = (!cpus.is_empty()).then(|| cpus[w % cpus.len()]);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu);
                    }
                    worker::run(setup);
                })
                .map_err(|e| Error::config(format!("cannot start a worker thread: {e}")))?;
            engine.workers.push(handle);
        }
        Ok(engine)
    }
}

impl Drop for DataParallel {
    fn drop(&mut self) {
        // Closing the queues ends the workers' loops once they are drained; join them before
        // the replicas (and the runtime handle) go.
        for queue in &self.queues {
            queue.close();
        }
        for handle in self.workers.drain(..) {
            if handle.join().is_err() {
                log::error!("a neuron-dp worker panicked outside a job");
            }
        }
    }
}

/// The configured cores (all visible ones by default), checked against the visible ones.
fn resolve_devices(runtime: &Runtime, spec: Option<&DeviceSpec>) -> Result<DeviceIds> {
    let visible = runtime.visible_cores();
    let ids = match spec {
        None => DeviceIds::all(visible),
        Some(DeviceSpec::Ids(ids)) => Ok(ids.clone()),
        Some(DeviceSpec::List(list)) => DeviceIds::parse_list(list),
        Some(DeviceSpec::Indices(indices)) => DeviceIds::from_indices(indices),
    }
    .map_err(|e| Error::DeviceIds(e.into()))?;
    ids.validate(visible)
        .map_err(|e| Error::DeviceIds(e.into()))
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; all-zero bytes are the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; `set` is a valid, writable `cpu_set_t` of that size.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        log::warn!(
            "cannot read the CPU affinity ({}); workers are not pinned",
            std::io::Error::last_os_error()
        );
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `CPU_ISSET` reads one bit of `set`, below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread (a worker, first thing) to `cpu`; logs and carries on unpinned
/// when it cannot.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `cpu_set_t` is plain data for which all-zero bytes are the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu < libc::CPU_SETSIZE as usize {
        // SAFETY: `CPU_SET` writes one bit inside `set`; `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the given size.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        log::warn!(
            "could not pin worker to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}
