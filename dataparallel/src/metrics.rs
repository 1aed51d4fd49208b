//! Metrics: per-core counters and piece-latency histograms, readable as a snapshot at any
//! time from any thread without stopping the engine.

use std::sync::atomic::{AtomicU64, Ordering};

use neuron_rt::DeviceId;

/// Buckets in a [`Histogram`].
pub const HISTOGRAM_BUCKETS: usize = 32;

/// A log2 histogram of durations in microseconds: bucket 0 counts 0 µs, bucket `i > 0`
/// counts `[2^(i-1), 2^i)` µs, and the last bucket everything from `2^30` µs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Counts per bucket.
    pub counts: [u64; HISTOGRAM_BUCKETS],
}

impl Histogram {
    /// The bucket a duration of `us` microseconds falls in.
    pub fn bucket(us: u64) -> usize {
        // 0 -> 0, 1 -> 1, 2..4 -> 2, 4..8 -> 3, ...
        (u64::BITS - us.leading_zeros()).min(HISTOGRAM_BUCKETS as u32 - 1) as usize
    }

    /// The exclusive upper bound of bucket `i`, in microseconds (`u64::MAX` for the last).
    pub fn upper_us(i: usize) -> u64 {
        if i + 1 >= HISTOGRAM_BUCKETS {
            u64::MAX
        } else {
            1u64 << i
        }
    }

    /// Number of recorded durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// An upper bound on the `p`-quantile (0.0 ..= 1.0) in microseconds: the upper edge of
    /// the bucket holding it. `None` when empty.
    pub fn quantile_us(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_us(i));
            }
        }
        Some(u64::MAX)
    }

    /// Bucket-wise difference `self - earlier` (for a window between two snapshots).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut counts = [0; HISTOGRAM_BUCKETS];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        Histogram { counts }
    }
}

/// A histogram that workers update lock-free.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; HISTOGRAM_BUCKETS],
}

impl AtomicHistogram {
    pub(crate) fn record_us(&self, us: u64) {
        self.counts[Histogram::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut counts = [0; HISTOGRAM_BUCKETS];
        for (c, a) in counts.iter_mut().zip(&self.counts) {
            *c = a.load(Ordering::Relaxed);
        }
        Histogram { counts }
    }
}

/// One core's counters since the engine was built, from
/// [`DataParallel::core_stats`](crate::DataParallel::core_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreReport {
    /// The logical core.
    pub core: DeviceId,
    /// The physical core, when known.
    pub physical_core: Option<u32>,
    /// Executions started on the core.
    pub executions: u64,
    /// Nanoseconds workers spent running pieces on the core (transfers and execution).
    pub busy_ns: u64,
    /// Pieces that failed on the core.
    pub failures: u64,
    /// Real rows of the pieces that succeeded.
    pub rows: u64,
    /// Zero pad rows executed (and thrown away) in the pieces that succeeded.
    pub pad_rows: u64,
    /// Executions retried because the runtime said the core was busy (`NRT_EXEC_NC_BUSY`)
    /// or its queue full (`NRT_QUEUE_FULL`); they never count toward quarantine.
    pub busy_retries: u64,
    /// Time per piece (write, execute, read), in microseconds.
    pub piece_latency: Histogram,
}

/// A snapshot of the whole engine's metrics, from
/// [`DataParallel::metrics`](crate::DataParallel::metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Per core, in device order.
    pub cores: Vec<CoreReport>,
}

impl Metrics {
    /// Real rows executed, over all cores.
    pub fn rows(&self) -> u64 {
        self.cores.iter().map(|c| c.rows).sum()
    }

    /// Pad rows executed, over all cores.
    pub fn pad_rows(&self) -> u64 {
        self.cores.iter().map(|c| c.pad_rows).sum()
    }

    /// Share of executed rows that were padding (0 when nothing ran).
    pub fn pad_ratio(&self) -> f64 {
        let executed = self.rows() + self.pad_rows();
        if executed == 0 {
            0.0
        } else {
            self.pad_rows() as f64 / executed as f64
        }
    }

    /// Piece latency over all cores.
    pub fn piece_latency(&self) -> Histogram {
        let mut all = Histogram::default();
        for core in &self.cores {
            for (a, c) in all.counts.iter_mut().zip(&core.piece_latency.counts) {
                *a += c;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        assert_eq!(Histogram::bucket(0), 0);
        assert_eq!(Histogram::bucket(1), 1);
        assert_eq!(Histogram::bucket(3), 2);
        assert_eq!(Histogram::bucket(4), 3);
        assert_eq!(Histogram::bucket(u64::MAX), HISTOGRAM_BUCKETS - 1);
        let h = AtomicHistogram::default();
        assert_eq!(h.snapshot().quantile_us(0.5), None);
        for us in [10, 10, 10, 1000] {
            h.record_us(us);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.quantile_us(0.5), Some(16), "10 µs is in [8, 16)");
        assert_eq!(s.quantile_us(0.99), Some(1024));
        assert_eq!(s.since(&s).count(), 0);
    }
}
