//! `GET /metrics`: the server's counters, the batcher's stats and the engine's per-core
//! metrics and health in the Prometheus text exposition format.
//!
//! Latency histograms come from the batcher's log-linear histogram (microseconds), cumulated
//! at fixed bounds: a count at a bound is exact to within one of its buckets (about 6 %).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use dataparallel::CoreState;
use dataparallel::batcher::{BatcherStats, Histogram};
use neuron_rt::DeviceId;

use crate::Shared;

/// Latency bounds, in seconds.
const LATENCY_BOUNDS_S: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The metrics text, with the batcher's `stats`.
pub(crate) fn render(shared: &Shared, stats: &BatcherStats) -> String {
    let model = &shared.model;
    let label = escape(&model.name);
    let mut out = String::new();
    let c = &shared.counters;
    family(
        &mut out,
        "neuron_dp_requests_total",
        "counter",
        "Inference requests answered, by outcome (success, rejected: 4xx, failure: 5xx).",
    );
    for (outcome, counter) in [
        ("success", &c.success),
        ("rejected", &c.rejected),
        ("failure", &c.failure),
    ] {
        let _ = writeln!(
            out,
            "neuron_dp_requests_total{{model=\"{label}\",outcome=\"{outcome}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let reading = shared
        .max_reading
        .saturating_sub(shared.reading.available_permits());
    let gauges: [(&str, &str, &str, u64); 9] = [
        (
            "neuron_dp_requests_reading",
            "gauge",
            "Inference requests whose bodies are being read and parsed.",
            reading as u64,
        ),
        (
            "neuron_dp_accepted_total",
            "counter",
            "Requests accepted into the batcher's queue.",
            stats.submitted,
        ),
        (
            "neuron_dp_queue_depth",
            "gauge",
            "Requests waiting in the batcher's queue.",
            stats.queue_depth as u64,
        ),
        (
            "neuron_dp_queue_full_total",
            "counter",
            "Requests turned away because the queue was full.",
            stats.rejected_full,
        ),
        (
            "neuron_dp_expired_total",
            "counter",
            "Requests whose timeout passed while queued (never run).",
            stats.expired,
        ),
        (
            "neuron_dp_batch_failed_requests_total",
            "counter",
            "Requests that ran in a batch the engine failed.",
            stats.failed,
        ),
        (
            "neuron_dp_batches_total",
            "counter",
            "Batches run.",
            stats.batches,
        ),
        (
            "neuron_dp_batch_rows_total",
            "counter",
            "Rows run, over all batches.",
            stats.rows,
        ),
        (
            "neuron_dp_pad_rows_total",
            "counter",
            "Zero rows executed to fill compiled batches.",
            model.engine().metrics().pad_rows(),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{{model=\"{label}\"}} {value}");
    }
    histogram(
        &mut out,
        "neuron_dp_request_latency_seconds",
        "Submit to completion, per request that ran.",
        &label,
        &stats.latency_us,
    );
    histogram(
        &mut out,
        "neuron_dp_queue_wait_seconds",
        "Submit to batch start, per request that ran.",
        &label,
        &stats.queue_wait_us,
    );
    batch_rows(&mut out, &label, &stats.batch_rows, model.max_rows);
    cores(&mut out, shared, &label);
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A histogram of microsecond values, in seconds.
fn histogram(out: &mut String, name: &str, help: &str, label: &str, h: &Histogram) {
    family(out, name, "histogram", help);
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

/// Rows per batch, at powers of two up to `max_rows`.
fn batch_rows(out: &mut String, label: &str, h: &Histogram, max_rows: usize) {
    let name = "neuron_dp_batch_rows";
    family(out, name, "histogram", "Rows per batch.");
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

/// Per core: executions, busy time, failures, health.
fn cores(out: &mut String, shared: &Shared, label: &str) {
    let engine = shared.model.engine();
    let reports = engine.core_stats();
    let health = engine.health();
    per_core(
        out,
        label,
        ("neuron_dp_core_executions_total", "counter"),
        "Executions started on the core.",
        reports.iter().map(|r| (r.core, r.executions.to_string())),
    );
    per_core(
        out,
        label,
        ("neuron_dp_core_busy_seconds_total", "counter"),
        "Time workers spent running pieces on the core.",
        reports
            .iter()
            .map(|r| (r.core, (r.busy_ns as f64 / 1e9).to_string())),
    );
    per_core(
        out,
        label,
        ("neuron_dp_core_failures_total", "counter"),
        "Pieces that failed on the core.",
        reports.iter().map(|r| (r.core, r.failures.to_string())),
    );
    per_core(
        out,
        label,
        ("neuron_dp_core_healthy", "gauge"),
        "1 while the core is in service, 0 while quarantined.",
        health
            .iter()
            .map(|h| (h.core, u8::from(h.state == CoreState::Healthy).to_string())),
    );
}

/// One metric family with a sample per core: `(core, value)` pairs.
fn per_core(
    out: &mut String,
    label: &str,
    (name, kind): (&str, &str),
    help: &str,
    samples: impl Iterator<Item = (DeviceId, String)>,
) {
    family(out, name, kind, help);
    for (core, value) in samples {
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
