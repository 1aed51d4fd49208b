//! `GET /metrics`: each model's request counters, its batcher's stats and its engine's
//! per-core metrics and health in the Prometheus text exposition format, every sample
//! labelled `model="NAME"` (and `core="nc:N"` per core). Each family is written once, with
//! the samples of every model under it, as the format requires.
//!
//! Latency histograms come from the batcher's log-linear histogram (microseconds), cumulated
//! at fixed bounds: a count at a bound is exact to within one of its buckets (about 6 %).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use dataparallel::CoreState;
use dataparallel::batcher::{BatcherStats, Histogram};
use neuron_rt::DeviceId;

use crate::Shared;
use crate::model::ServedModel;

/// Latency bounds, in seconds.
const LATENCY_BOUNDS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One model's part of the metrics: its label value, its batcher's stats.
struct Labelled<'s> {
    model: &'s ServedModel,
    /// The model's name, escaped for a label value.
    label: String,
    stats: &'s BatcherStats,
}

/// The metrics text, with each model's batcher `stats` (in the models' order). Every family
/// is written once, with a sample per model (`model="NAME"`), and per core for the per-core
/// families.
pub(crate) fn render(shared: &Shared, stats: &[BatcherStats]) -> String {
    let models: Vec<Labelled<'_>> = shared
        .models
        .iter()
        .zip(stats)
        .map(|(model, stats)| Labelled {
            model,
            label: escape(&model.name),
            stats,
        })
        .collect();
    let mut out = String::new();
    family(
        &mut out,
        "neuron_dp_requests_total",
        "counter",
        "Inference requests answered, by outcome (success, rejected: 4xx, failure: 5xx).",
    );
    for m in &models {
        let c = &m.model.counters;
        for (outcome, counter) in [
            ("success", &c.success),
            ("rejected", &c.rejected),
            ("failure", &c.failure),
        ] {
            let _ = writeln!(
                out,
                "neuron_dp_requests_total{{model=\"{}\",outcome=\"{outcome}\"}} {}",
                m.label,
                counter.load(Ordering::Relaxed)
            );
        }
    }
    type Value = fn(&Labelled<'_>) -> u64;
    let gauges: [(&str, &str, &str, Value); 9] = [
        (
            "neuron_dp_requests_reading",
            "gauge",
            "Inference requests whose bodies are being read and parsed.",
            |m| m.model.counters.reading.load(Ordering::Relaxed) as u64,
        ),
        (
            "neuron_dp_accepted_total",
            "counter",
            "Requests accepted into the batcher's queue.",
            |m| m.stats.submitted,
        ),
        (
            "neuron_dp_queue_depth",
            "gauge",
            "Requests waiting in the batcher's queue.",
            |m| m.stats.queue_depth as u64,
        ),
        (
            "neuron_dp_queue_full_total",
            "counter",
            "Requests turned away because the queue was full.",
            |m| m.stats.rejected_full,
        ),
        (
            "neuron_dp_expired_total",
            "counter",
            "Requests whose timeout passed while queued (never run).",
            |m| m.stats.expired,
        ),
        (
            "neuron_dp_batch_failed_requests_total",
            "counter",
            "Requests that ran in a batch the engine failed.",
            |m| m.stats.failed,
        ),
        ("neuron_dp_batches_total", "counter", "Batches run.", |m| {
            m.stats.batches
        }),
        (
            "neuron_dp_batch_rows_total",
            "counter",
            "Rows run, over all batches.",
            |m| m.stats.rows,
        ),
        (
            "neuron_dp_pad_rows_total",
            "counter",
            "Zero rows executed to fill compiled batches.",
            |m| m.model.engine().metrics().pad_rows(),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(&mut out, name, kind, help);
        for m in &models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", m.label, value(m));
        }
    }
    let latency = "neuron_dp_request_latency_seconds";
    family(
        &mut out,
        latency,
        "histogram",
        "Submit to completion, per request that ran.",
    );
    for m in &models {
        seconds(&mut out, latency, &m.label, &m.stats.latency_us);
    }
    let wait = "neuron_dp_queue_wait_seconds";
    family(
        &mut out,
        wait,
        "histogram",
        "Submit to batch start, per request that ran.",
    );
    for m in &models {
        seconds(&mut out, wait, &m.label, &m.stats.queue_wait_us);
    }
    family(&mut out, BATCH_ROWS, "histogram", "Rows per batch.");
    for m in &models {
        batch_rows(&mut out, &m.label, &m.stats.batch_rows, m.model.max_rows);
    }
    cores(&mut out, &models);
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A model's samples of a histogram of microsecond values, in seconds.
fn seconds(out: &mut String, name: &str, label: &str, h: &Histogram) {
    for bound in LATENCY_BOUNDS_S {
        let us = (bound * 1e6) as u64;
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{label}\",le=\"{bound}\"}} {}",
            at_most(h, us)
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{model=\"{label}\",le=\"+Inf\"}} {}",
        h.count()
    );
    let sum_s = h.mean().unwrap_or(0.0) * h.count() as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{model=\"{label}\"}} {sum_s}");
    let _ = writeln!(out, "{name}_count{{model=\"{label}\"}} {}", h.count());
}

/// The rows-per-batch histogram's name.
const BATCH_ROWS: &str = "neuron_dp_batch_rows";

/// A model's samples of rows per batch, at powers of two up to `max_rows`.
fn batch_rows(out: &mut String, label: &str, h: &Histogram, max_rows: usize) {
    let name = BATCH_ROWS;
    let mut bound = 1u64;
    while bound < max_rows as u64 {
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{label}\",le=\"{bound}\"}} {}",
            at_most(h, bound)
        );
        bound = bound.saturating_mul(2);
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{model=\"{label}\",le=\"+Inf\"}} {}",
        h.count()
    );
    let sum = h.mean().unwrap_or(0.0) * h.count() as f64;
    let _ = writeln!(out, "{name}_sum{{model=\"{label}\"}} {sum}");
    let _ = writeln!(out, "{name}_count{{model=\"{label}\"}} {}", h.count());
}

/// Values recorded in buckets that end at or below `bound`.
fn at_most(h: &Histogram, bound: u64) -> u64 {
    h.buckets()
        .take_while(|&(_, upper, _)| upper <= bound)
        .map(|(_, _, count)| count)
        .sum()
}

/// Per model and core: executions, busy time, failures, health.
fn cores(out: &mut String, models: &[Labelled<'_>]) {
    let reports: Vec<_> = models
        .iter()
        .map(|m| (m.label.as_str(), m.model.engine().core_stats()))
        .collect();
    let health: Vec<_> = models
        .iter()
        .map(|m| (m.label.as_str(), m.model.engine().health()))
        .collect();
    per_core(
        out,
        ("neuron_dp_core_executions_total", "counter"),
        "Executions started on the core.",
        reports.iter().flat_map(|(label, reports)| {
            reports
                .iter()
                .map(|r| (*label, r.core, r.executions.to_string()))
        }),
    );
    per_core(
        out,
        ("neuron_dp_core_busy_seconds_total", "counter"),
        "Time workers spent running pieces on the core.",
        reports.iter().flat_map(|(label, reports)| {
            reports
                .iter()
                .map(|r| (*label, r.core, (r.busy_ns as f64 / 1e9).to_string()))
        }),
    );
    per_core(
        out,
        ("neuron_dp_core_failures_total", "counter"),
        "Pieces that failed on the core.",
        reports.iter().flat_map(|(label, reports)| {
            reports
                .iter()
                .map(|r| (*label, r.core, r.failures.to_string()))
        }),
    );
    per_core(
        out,
        ("neuron_dp_core_healthy", "gauge"),
        "1 while the core is in service, 0 while quarantined.",
        health.iter().flat_map(|(label, health)| {
            health.iter().map(|h| {
                let healthy = u8::from(h.state == CoreState::Healthy);
                (*label, h.core, healthy.to_string())
            })
        }),
    );
}

/// One metric family with a sample per model and core: `(model label, core, value)`.
fn per_core<'l>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    samples: impl Iterator<Item = (&'l str, DeviceId, String)>,
) {
    family(out, name, kind, help);
    for (label, core, value) in samples {
        let _ = writeln!(out, "{name}{{model=\"{label}\",core=\"{core}\"}} {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
