//! The open-loop schedule and what one run measured.
//!
//! Request `i` of a run is due `i / rate` seconds after the start, whatever the earlier
//! requests did, and its latency is taken from that due time: a slow server (or a generator
//! that falls behind) cannot slow the schedule, so its queueing shows up in the latencies
//! (no coordinated omission). A request not sent by the end of the schedule plus [`GRACE`],
//! or turned away because the server's queue was full, is *unserved*; a request answered
//! wrongly (status, body, values) or not at all is an *error*. Both count as infinitely late
//! in the percentiles, so a p99 is finite only when at least 99 % were answered correctly;
//! a run is *sustained* when its p99 is under [`P99_LIMIT_MS`]. These are the definitions of
//! the engine suite's serving scenario (`dataparallel/benches/suite/serving.rs`).

use std::time::Duration;

/// Highest rate a run may offer, requests per second.
pub(crate) const MAX_RATE: f64 = 200_000.0;
/// Longest schedule of one run, in seconds.
pub(crate) const MAX_SECONDS: f64 = 60.0;
/// Most requests one run may schedule (bounds its latency buffer: 16 MB of `f64`s).
pub(crate) const MAX_REQUESTS: usize = 2_000_000;
/// How long after the last scheduled time a request not yet sent is given up as unserved.
pub(crate) const GRACE: Duration = Duration::from_millis(500);
/// A run whose p99 is under this is sustained.
pub(crate) const P99_LIMIT_MS: f64 = 10.0;

/// One run's schedule: `total` requests at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    rate: f64,
    total: usize,
}

impl Plan {
    /// `rate` requests per second for `seconds` (at least one request).
    ///
    /// # Errors
    ///
    /// A message when the rate or the duration is not a positive finite number, or is over
    /// [`MAX_RATE`] or [`MAX_SECONDS`], or together they make over [`MAX_REQUESTS`].
    pub(crate) fn new(rate: f64, seconds: f64) -> Result<Plan, String> {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
            return Err(format!(
                "rate {rate} req/s is out of range; give a rate in (0, {MAX_RATE}]"
            ));
        }
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS) {
            return Err(format!(
                "duration {seconds} s is out of range; give seconds in (0, {MAX_SECONDS}]"
            ));
        }
        // Both are bounded above, so the product is finite and far below usize::MAX.
        let total = ((rate * seconds).round() as usize).max(1);
        if total > MAX_REQUESTS {
            return Err(format!(
                "{rate} req/s for {seconds} s is {total} requests; give at most {MAX_REQUESTS} \
                 per run (a lower rate or a shorter run)"
            ));
        }
        Ok(Plan { rate, total })
    }

    /// Requests per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Requests scheduled.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// When request `i` is due, after the start.
    pub(crate) fn due(&self, i: usize) -> Duration {
        // `i / rate` directly rather than `i × (1 / rate)`: no rounding error that grows
        // with `i`.
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// When requests not yet sent are given up as unserved, after the start.
    pub(crate) fn give_up(&self) -> Duration {
        self.due(self.total) + GRACE
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub(crate) scheduled: usize,
    /// Per request answered correctly: ms from its due time to its whole response.
    pub(crate) latencies_ms: Vec<f64>,
    /// Per request sent: ms from its due time until the generator sent it (a connection
    /// free, the dispatcher and the async thread awake); the part of the latency that is the
    /// generator's.
    pub(crate) send_lags_ms: Vec<f64>,
    /// Turned away (queue full) or never sent.
    pub(crate) unserved: usize,
    /// Of the unserved, those turned away (503, or a refused `try_submit`).
    pub(crate) turned_away: usize,
    /// Answered wrongly or not at all.
    pub(crate) errors: usize,
    /// The first error, for the report.
    pub(crate) first_error: Option<String>,
    /// From the start of the schedule to the last response.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// An empty outcome of a run of `scheduled` requests, with room for every latency.
    pub(crate) fn new(scheduled: usize) -> Outcome {
        Outcome {
            scheduled,
            latencies_ms: Vec::with_capacity(scheduled),
            send_lags_ms: Vec::with_capacity(scheduled),
            ..Outcome::default()
        }
    }

    /// Records a request turned away.
    pub(crate) fn turn_away(&mut self) {
        self.unserved += 1;
        self.turned_away += 1;
    }

    /// Records a failed request.
    pub(crate) fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    /// Requests answered correctly.
    pub(crate) fn completed(&self) -> usize {
        self.latencies_ms.len()
    }

    /// Requests answered correctly per second of the run.
    pub(crate) fn throughput(&self) -> f64 {
        self.completed() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies in ms, unserved and failed requests counted
    /// as infinitely late.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let mut all = self.latencies_ms.clone();
        all.extend(std::iter::repeat_n(
            f64::INFINITY,
            self.unserved + self.errors,
        ));
        percentile(&mut all, q)
    }

    /// The `q` quantile (0..=1) of the send lags in ms (NaN when nothing was sent).
    pub(crate) fn send_lag(&self, q: f64) -> f64 {
        percentile(&mut self.send_lags_ms.clone(), q)
    }

    /// Whether the run is sustained: p99 under [`P99_LIMIT_MS`].
    pub(crate) fn sustained(&self) -> bool {
        self.quantile(0.99) < P99_LIMIT_MS
    }
}

/// The `q` quantile (0..=1) of `samples`, nearest rank (sorts them); NaN when empty.
pub(crate) fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
