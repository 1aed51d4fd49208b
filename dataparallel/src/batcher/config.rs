//! How to build a [`Batcher`](super::Batcher): batch size, delay, queue bound, default
//! deadline.

use std::time::Duration;

/// How a [`Batcher`](super::Batcher) forms batches and bounds its queue.
///
/// ```
/// use dataparallel::batcher::BatcherConfig;
/// use std::time::Duration;
///
/// let config = BatcherConfig::default()
///     .max_batch_rows(32)
///     .max_delay(Duration::from_millis(2))
///     .queue_capacity(256)
///     .default_deadline(Some(Duration::from_millis(100)));
/// assert_eq!(config.max_batch_rows_value(), Some(32));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatcherConfig {
    pub(super) max_batch_rows: Option<usize>,
    pub(super) max_delay: Duration,
    pub(super) queue_capacity: usize,
    pub(super) default_deadline: Option<Duration>,
    pub(super) batches_in_flight: usize,
    pub(super) pack: bool,
}

/// `max_delay` by default: TF Serving's advice for online serving (~1 ms).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(1);
/// `queue_capacity` by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// `batches_in_flight` by default: one batch runs while the next forms.
pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 2;

impl Default for BatcherConfig {
    fn default() -> BatcherConfig {
        BatcherConfig {
            max_batch_rows: None,
            max_delay: DEFAULT_MAX_DELAY,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            default_deadline: None,
            batches_in_flight: DEFAULT_BATCHES_IN_FLIGHT,
            pack: true,
        }
    }
}

impl BatcherConfig {
    /// Most rows per batch (default: cores × the model's compiled batch, so a full batch is
    /// exactly one compiled piece per core). Requests with more rows are refused at submit.
    /// 0 is rejected when the batcher is built.
    #[must_use]
    pub fn max_batch_rows(mut self, rows: usize) -> BatcherConfig {
        self.max_batch_rows = Some(rows);
        self
    }

    /// Longest a batch waits to fill, counted from when its first (oldest) request was
    /// submitted (default 1 ms). A batch runs earlier when it is full or a request's deadline
    /// comes first. `Duration::ZERO` runs whatever is queued at once; `Duration::MAX` waits
    /// for a full batch.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> BatcherConfig {
        self.max_delay = delay;
        self
    }

    /// Requests the queue holds before `try_submit` reports it full and `submit` blocks
    /// (default 1024). 0 is rejected when the batcher is built.
    #[must_use]
    pub fn queue_capacity(mut self, requests: usize) -> BatcherConfig {
        self.queue_capacity = requests;
        self
    }

    /// The deadline of requests that set none, counted from submit (default none: requests
    /// wait as long as it takes).
    #[must_use]
    pub fn default_deadline(mut self, timeout: Option<Duration>) -> BatcherConfig {
        self.default_deadline = timeout;
        self
    }

    /// Batches that may run on the engine at once (default 2), each on its own batcher
    /// thread. Only one batch forms at a time; with 2, the next batch forms (and starts)
    /// while the previous one still runs, so the cores never wait for the batcher to copy
    /// results out and collect the next requests. 1 runs one batch at a time. 0 is rejected
    /// when the batcher is built.
    #[must_use]
    pub fn batches_in_flight(mut self, batches: usize) -> BatcherConfig {
        self.batches_in_flight = batches;
        self
    }

    /// Run each batch as whole compiled batches (default on): a batch of `n` rows runs as
    /// `ceil(n / b)` executions of the compiled batch `b` (with buckets, the mix that pads
    /// least), only the last one padded, each on the next core in turn, instead of the
    /// engine's own split, which cuts a small batch into one padded chunk per core. See
    /// [`Config::pack`](crate::Config::pack). A batch that closes before it is full and
    /// would end in a padded execution holds its newest requests back for the next batch
    /// while a whole compiled batch stays. Off, batches run as the engine's configuration
    /// says. Needs dynamic batching on the engine (without it, batches use
    /// the engine's split).
    #[must_use]
    pub fn pack(mut self, on: bool) -> BatcherConfig {
        self.pack = on;
        self
    }

    /// The configured `pack`.
    pub fn pack_value(&self) -> bool {
        self.pack
    }

    /// The configured `batches_in_flight`.
    pub fn batches_in_flight_value(&self) -> usize {
        self.batches_in_flight
    }

    /// The configured `max_batch_rows` (`None`: the default, resolved against the engine).
    pub fn max_batch_rows_value(&self) -> Option<usize> {
        self.max_batch_rows
    }

    /// The configured `max_delay`.
    pub fn max_delay_value(&self) -> Duration {
        self.max_delay
    }

    /// The configured `queue_capacity`.
    pub fn queue_capacity_value(&self) -> usize {
        self.queue_capacity
    }

    /// The configured `default_deadline`.
    pub fn default_deadline_value(&self) -> Option<Duration> {
        self.default_deadline
    }
}
