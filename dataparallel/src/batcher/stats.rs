//! The batcher's metrics: counters (atomics, bumped by submitters and the batcher's threads),
//! two histograms (behind a mutex only the batcher's threads write), and the
//! [`BatcherStats`] snapshot that [`Batcher::stats`](super::Batcher::stats) returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Sub-buckets per power of two (2^4): values below 32 are exact, larger ones within 1/16.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets: exact values `0..2*SUB`, then `SUB` per power of two up to 2^63.
const BUCKETS: usize = (2 * SUB + (63 - SUB_BITS as u64) * SUB) as usize;

/// A log-linear histogram of `u64` values (HDR-style): exact below 32, then 16 buckets per
/// power of two, so a quantile is reported within about 6 % (one bucket's width).
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("buckets", &self.buckets().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        if value < 2 * SUB {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros(); // >= SUB_BITS + 1
        let shift = exponent - SUB_BITS;
        let top = value >> shift; // in SUB..2*SUB
        (2 * SUB + u64::from(exponent - SUB_BITS - 1) * SUB + (top - SUB)) as usize
    }

    /// The values bucket `index` holds, inclusive.
    fn bounds(index: usize) -> (u64, u64) {
        let i = index as u64;
        if i < 2 * SUB {
            return (i, i);
        }
        let j = i - 2 * SUB;
        let shift = j / SUB + 1;
        let lower = (SUB + j % SUB) << shift;
        (lower, lower + ((1u64 << shift) - 1))
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        if let Some(count) = self.counts.get_mut(Histogram::index(value)) {
            *count += 1;
        }
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The smallest value recorded.
    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// The largest value recorded.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The mean of the values recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// The value at quantile `q` (0.0 ..= 1.0, clamped): the upper bound of the bucket that
    /// holds it, capped at the largest value recorded. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the value wanted, 1-based: at least the first value.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (_, upper) = Histogram::bounds(index);
                return Some(upper.min(self.max).max(self.min));
            }
        }
        Some(self.max)
    }

    /// The non-empty buckets in increasing order: `(lowest value, highest value, count)`,
    /// the range narrowed to the smallest and largest values recorded.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, &count)| {
                let (lower, upper) = Histogram::bounds(index);
                (lower.max(self.min), upper.min(self.max), count)
            })
    }
}

/// A snapshot of a batcher's metrics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Requests waiting in the queue now (not counting those in the batch being formed or
    /// run).
    pub queue_depth: usize,
    /// Requests accepted into the queue.
    pub submitted: u64,
    /// Requests that ran and got their outputs.
    pub completed: u64,
    /// Requests that ran in a batch the engine failed (they got the error).
    pub failed: u64,
    /// `try_submit` calls turned away because the queue was full.
    pub rejected_full: u64,
    /// `submit_timeout` calls that gave up waiting for room in the queue.
    pub submit_timeouts: u64,
    /// Requests refused at submit because they do not fit the model.
    pub invalid: u64,
    /// Requests whose deadline passed while queued (never run).
    pub expired: u64,
    /// Requests skipped because their ticket was dropped before they joined a batch.
    pub abandoned: u64,
    /// Batches run.
    pub batches: u64,
    /// Rows run, over all batches.
    pub rows: u64,
    /// Rows per batch.
    pub batch_rows: Histogram,
    /// Requests per batch.
    pub batch_requests: Histogram,
    /// Submit to batch start, in microseconds, per request that ran.
    pub queue_wait_us: Histogram,
    /// Submit to completion, in microseconds, per request that ran.
    pub latency_us: Histogram,
}

impl BatcherStats {
    /// The mean time requests waited in the queue before their batch started.
    pub fn mean_queue_wait(&self) -> Option<Duration> {
        self.queue_wait_us
            .mean()
            .map(|us| Duration::from_secs_f64(us / 1e6))
    }

    /// Submit-to-completion latency at quantile `q` (0.0 ..= 1.0).
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        self.latency_us.quantile(q).map(Duration::from_micros)
    }

    /// The median submit-to-completion latency.
    pub fn latency_p50(&self) -> Option<Duration> {
        self.latency_quantile(0.50)
    }

    /// The 99th-percentile submit-to-completion latency.
    pub fn latency_p99(&self) -> Option<Duration> {
        self.latency_quantile(0.99)
    }

    /// Mean rows per batch.
    pub fn mean_batch_rows(&self) -> Option<f64> {
        self.batch_rows.mean()
    }
}

/// The live metrics, shared by the [`Batcher`](super::Batcher) and its thread.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    pub(super) submitted: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) rejected_full: AtomicU64,
    pub(super) submit_timeouts: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) rows: AtomicU64,
    histograms: Mutex<Histograms>,
}

#[derive(Debug, Default)]
struct Histograms {
    batch_rows: Histogram,
    batch_requests: Histogram,
    queue_wait_us: Histogram,
    latency_us: Histogram,
}

/// One request's timings, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestTimes {
    pub(super) queue_wait_us: u64,
    pub(super) latency_us: u64,
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    /// Records one batch that ran, with its requests' timings and how many of them failed.
    pub(super) fn batch(&self, rows: usize, requests: &[RequestTimes], failed: usize) {
        let n = requests.len() as u64;
        let failed = (failed as u64).min(n);
        bump(&self.batches, 1);
        bump(&self.rows, rows as u64);
        bump(&self.completed, n - failed);
        bump(&self.failed, failed);
        let mut h = self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        h.batch_rows.record(rows as u64);
        h.batch_requests.record(n);
        for t in requests {
            h.queue_wait_us.record(t.queue_wait_us);
            h.latency_us.record(t.latency_us);
        }
    }

    pub(super) fn snapshot(&self, queue_depth: usize) -> BatcherStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let h = self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        BatcherStats {
            queue_depth,
            submitted: get(&self.submitted),
            completed: get(&self.completed),
            failed: get(&self.failed),
            rejected_full: get(&self.rejected_full),
            submit_timeouts: get(&self.submit_timeouts),
            invalid: get(&self.invalid),
            expired: get(&self.expired),
            abandoned: get(&self.abandoned),
            batches: get(&self.batches),
            rows: get(&self.rows),
            batch_rows: h.batch_rows.clone(),
            batch_requests: h.batch_requests.clone(),
            queue_wait_us: h.queue_wait_us.clone(),
            latency_us: h.latency_us.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_values() {
        // Every bucket starts right after the previous one ends.
        let mut next = 0u64;
        for index in 0..BUCKETS {
            let (lower, upper) = Histogram::bounds(index);
            assert_eq!(lower, next, "bucket {index}");
            assert!(upper >= lower);
            assert_eq!(Histogram::index(lower), index);
            assert_eq!(Histogram::index(upper), index);
            next = upper.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(Histogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact_and_quantiles_bounded() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=10 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(5));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.quantile(1.0), Some(10));
        assert_eq!(h.mean(), Some(5.5));

        let mut h = Histogram::new();
        for v in 0..1000u64 {
            h.record(v * 1000);
        }
        let p99 = h.quantile(0.99).unwrap();
        // Within one bucket (1/16) of the true value, never below it.
        assert!((989_000..=989_000 + 989_000 / 16).contains(&p99), "{p99}");
        assert_eq!(h.buckets().map(|b| b.2).sum::<u64>(), 1000);
    }
}
