//! The server's batching as its `GET /metrics` reports it, and the same figures for the
//! in-process batcher: batches, rows and pad rows, and what a run's difference of two
//! readings makes of them (mean rows per batch, pad ratio).

/// Cumulative batching counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Batching {
    /// Batches run.
    pub(crate) batches: u64,
    /// Request rows run, over all batches.
    pub(crate) rows: u64,
    /// Zero rows executed to fill compiled batches.
    pub(crate) pad_rows: u64,
}

impl Batching {
    /// Reads the counters from a Prometheus text exposition (`GET /metrics`), summed over
    /// their labels.
    ///
    /// # Errors
    ///
    /// A message naming the first counter that is missing or not a count.
    pub(crate) fn from_metrics(text: &str) -> Result<Batching, String> {
        Ok(Batching {
            batches: counter(text, "neuron_dp_batches_total")?,
            rows: counter(text, "neuron_dp_batch_rows_total")?,
            pad_rows: counter(text, "neuron_dp_pad_rows_total")?,
        })
    }

    /// What happened between `before` and `self`.
    pub(crate) fn since(&self, before: &Batching) -> Batching {
        Batching {
            batches: self.batches.saturating_sub(before.batches),
            rows: self.rows.saturating_sub(before.rows),
            pad_rows: self.pad_rows.saturating_sub(before.pad_rows),
        }
    }

    /// Mean request rows per batch (`None` when no batch ran).
    pub(crate) fn mean_batch_rows(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.rows as f64 / self.batches as f64)
    }

    /// Share of the executed rows that were padding (`None` when nothing ran).
    pub(crate) fn pad_ratio(&self) -> Option<f64> {
        let executed = self.rows + self.pad_rows;
        (executed > 0).then(|| self.pad_rows as f64 / executed as f64)
    }
}

/// The sum of the samples of `name` (any labels) in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> Result<u64, String> {
    let mut found = false;
    let mut sum = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `name 5` or `name{labels} 5`, not `name_bucket...`.
        let value = match rest.as_bytes().first() {
            Some(b' ') => rest,
            Some(b'{') => match rest.find('}') {
                Some(end) => &rest[end + 1..],
                None => return Err(format!("metric {name} has unclosed labels: {line:?}")),
            },
            _ => continue,
        };
        let value: u64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("metric {name} is not a count: {line:?}"))?;
        sum = sum.saturating_add(value);
        found = true;
    }
    if found {
        Ok(sum)
    } else {
        Err(format!(
            "GET /metrics has no {name}; is this a neuron-dp-server?"
        ))
    }
}
