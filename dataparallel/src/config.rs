//! Engine configuration: the knobs of `torch_neuronx.DataParallel`, plus CPU pinning and the
//! attach mode.

use std::num::NonZeroUsize;

use neuron_rt::DeviceIds;

/// The most worker threads per core an engine starts ([`Config::num_workers`] and
/// [`Config::workers_per_core`] above it are refused at build). Each worker holds a tensor
/// set on its core and a host thread; more than a few per core only adds contention, and an
/// unbounded count (`num_workers(usize::MAX)` from a command line or a C caller) would create
/// workers until memory runs out.
pub const MAX_WORKERS_PER_CORE: usize = 64;

/// How to build a [`DataParallel`](crate::DataParallel) engine.
///
/// ```
/// use dataparallel::Config;
/// let config = Config::default().dim(0).split_size(4).workers_per_core(2);
/// assert_eq!(config.dim_value(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) device_ids: Option<DeviceSpec>,
    pub(crate) dim: usize,
    pub(crate) dynamic_batching: bool,
    pub(crate) split_size: Option<usize>,
    pub(crate) workers: Workers,
    pub(crate) pin_cpus: bool,
    pub(crate) attach: bool,
    pub(crate) quarantine_after: u32,
    pub(crate) spread_small_calls: bool,
    pub(crate) pack: bool,
}

/// How many worker threads to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    /// In total, spread round-robin over the cores.
    Total(usize),
    /// Per core.
    PerCore(usize),
}

/// Which cores to use, as the caller gave them; validated against the runtime at build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Already parsed ids.
    Ids(DeviceIds),
    /// A list such as `"nc:0,nc:3"` or `"0,3"`.
    List(String),
    /// Plain integers (negative ones are rejected at build).
    Indices(Vec<i64>),
}

impl Default for Config {
    fn default() -> Config {
        Config {
            device_ids: None,
            dim: 0,
            dynamic_batching: true,
            split_size: None,
            workers: Workers::PerCore(2),
            pin_cpus: false,
            attach: false,
            quarantine_after: crate::health::DEFAULT_QUARANTINE_AFTER,
            spread_small_calls: false,
            pack: false,
        }
    }
}

impl Config {
    /// The cores to replicate the model on (default: every core the process owns).
    #[must_use]
    pub fn device_ids(mut self, ids: DeviceIds) -> Config {
        self.device_ids = Some(DeviceSpec::Ids(ids));
        self
    }

    /// The cores as a list string: `"nc:0,nc:1"` or `"0,1"`.
    #[must_use]
    pub fn device_list(mut self, list: impl Into<String>) -> Config {
        self.device_ids = Some(DeviceSpec::List(list.into()));
        self
    }

    /// The cores as integers.
    #[must_use]
    pub fn device_indices(mut self, indices: impl Into<Vec<i64>>) -> Config {
        self.device_ids = Some(DeviceSpec::Indices(indices.into()));
        self
    }

    /// The dimension to scatter inputs and gather outputs along (default 0).
    #[must_use]
    pub fn dim(mut self, dim: usize) -> Config {
        self.dim = dim;
        self
    }

    /// Dynamic batching (default on): run any batch size as pieces of the compiled batch.
    /// Only possible with `dim == 0`; with another dim it is switched off at build (logged).
    #[must_use]
    pub fn dynamic_batching(mut self, on: bool) -> Config {
        self.dynamic_batching = on;
        self
    }

    /// Rows per chunk (default: split the batch evenly over the cores). Chunks are assigned
    /// to cores round-robin. 0 is rejected at build.
    #[must_use]
    pub fn split_size(mut self, rows: usize) -> Config {
        self.split_size = Some(rows);
        self
    }

    /// Worker threads in total (default: 2 per core, so one piece's transfers overlap the
    /// other's execution). With fewer workers than cores, a worker serves several cores.
    /// More than [`MAX_WORKERS_PER_CORE`] × cores is refused at build.
    #[must_use]
    pub fn num_workers(mut self, workers: usize) -> Config {
        self.workers = Workers::Total(workers);
        self
    }

    /// Worker threads per core (default 2; at most [`MAX_WORKERS_PER_CORE`], checked at
    /// build).
    #[must_use]
    pub fn workers_per_core(mut self, per_core: usize) -> Config {
        self.workers = Workers::PerCore(per_core);
        self
    }

    /// Pin worker threads to CPUs (default off), spread over the CPUs this process may use.
    #[must_use]
    pub fn pin_cpus(mut self, on: bool) -> Config {
        self.pin_cpus = on;
        self
    }

    /// Attach mode (default off): unpadded `dim == 0` pieces run directly on the caller's
    /// memory (`nrt_tensor_attach_buffer`) instead of being copied to device tensors. Saves
    /// the copies at the cost of creating tensor handles per piece.
    #[must_use]
    pub fn attach(mut self, on: bool) -> Config {
        self.attach = on;
        self
    }

    /// Quarantine a core after this many hardware-class failures in a row (default 3; 0
    /// never quarantines). A failure is one failed execution (piece), so a call whose chunk
    /// runs as several pieces on a dead core can quarantine it at once. Its chunks then go to
    /// the remaining cores.
    #[must_use]
    pub fn quarantine_after(mut self, failures: u32) -> Config {
        self.quarantine_after = failures;
        self
    }

    /// Spread calls that have fewer chunks than cores over the cores (default off).
    ///
    /// As in the reference, chunk `i` of a call runs on core `i`, so a call of one row always
    /// runs on the first core: many threads each calling with a single request all queue on
    /// it while the other cores idle. With this on, each such call starts on the core after
    /// the last one the previous such call used, so concurrent small calls share out the
    /// cores. Outputs and their order are unchanged; calls with at least as many chunks as
    /// cores keep the reference's mapping. [`DataParallel::plan`](crate::DataParallel::plan)
    /// shows the reference mapping; [`forward_into_report`](crate::DataParallel::forward_into_report)
    /// shows the cores a call actually used.
    ///
    /// ```
    /// use dataparallel::Config;
    /// let config = Config::default().spread_small_calls(true);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn spread_small_calls(mut self, on: bool) -> Config {
        self.spread_small_calls = on;
        self
    }

    /// Run every call as whole compiled batches (default off: the reference's split).
    ///
    /// The reference cuts a batch of `n` rows into `min(n, k)` chunks, one per core, and pads
    /// every chunk up to the compiled batch `b`: a batch of 4 rows on 8 cores compiled at
    /// batch 8 runs 4 executions of 8 rows, 28 of them padding. Packed, the same batch runs
    /// as `ceil(n / b)` whole compiled batches, only the last one padded (with buckets, the
    /// mix of compiled sizes that pads least: [`DataParallel::with_buckets`]), each on the
    /// next core in turn, so concurrent calls share out the cores: one execution of 8 rows
    /// with 4 of padding. Device time per row falls; a call of few rows uses fewer cores, so
    /// its own latency can be longer when the cores would otherwise be idle.
    ///
    /// Outputs are the same rows in the same order. Packing needs dynamic batching (with it
    /// off, calls use the reference's split and its exact-batch rule) and cannot be combined
    /// with [`split_size`](Self::split_size) (refused at build). The request batcher packs
    /// its batches whatever this says
    /// ([`BatcherConfig::pack`](crate::batcher::BatcherConfig::pack)).
    ///
    /// [`DataParallel::with_buckets`]: crate::DataParallel::with_buckets
    ///
    /// ```
    /// use dataparallel::Config;
    /// let config = Config::default().pack(true);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn pack(mut self, on: bool) -> Config {
        self.pack = on;
        self
    }

    /// The configured dim.
    pub fn dim_value(&self) -> usize {
        self.dim
    }

    /// Resolves the worker count for `cores` cores.
    pub(crate) fn resolved_workers(&self, cores: usize) -> usize {
        match self.workers {
            Workers::Total(n) => n,
            Workers::PerCore(per_core) => cores.saturating_mul(per_core),
        }
    }

    /// The split size, as given.
    pub(crate) fn split_size_value(&self) -> Option<NonZeroUsize> {
        self.split_size.and_then(NonZeroUsize::new)
    }
}
