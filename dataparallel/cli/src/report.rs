//! Reports: the JSON objects `--json` prints (schema `neuron-dp/1`, documented in `--help`
//! and the README) and their text renderings.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use dataparallel::{DataParallel, IoSpec};
use neuron_rt::{Neff, Runtime};
use serde::Serialize;

use crate::args::EngineArgs;

/// The schema tag every JSON report carries.
pub(crate) const SCHEMA: &str = "neuron-dp/1";

/// Milliseconds as a float.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// One model input or output.
#[derive(Debug, Serialize)]
pub(crate) struct Tensor {
    pub(crate) name: String,
    pub(crate) dtype: String,
    pub(crate) shape: Vec<usize>,
}

impl Tensor {
    fn from_spec(spec: &IoSpec) -> Tensor {
        Tensor {
            name: spec.name.clone(),
            dtype: dtype_name(spec),
            shape: spec.shape.clone(),
        }
    }
}

/// The dtype's name, or the element size when the runtime does not say.
pub(crate) fn dtype_name(spec: &IoSpec) -> String {
    spec.dtype.map_or_else(
        || format!("unknown ({}-byte elements)", spec.elem_size),
        |d| d.name().to_owned(),
    )
}

/// The model.
#[derive(Debug, Serialize)]
pub(crate) struct Model {
    /// The first NEFF's path (the only one without buckets).
    pub(crate) path: String,
    /// Every NEFF's path, one per batch-size bucket.
    pub(crate) paths: Vec<String>,
    pub(crate) name: String,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) outputs: Vec<Tensor>,
}

impl Model {
    pub(crate) fn new(paths: &[PathBuf], neffs: &[Neff], engine: &DataParallel) -> Model {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Model {
            path: paths.first().cloned().unwrap_or_default(),
            paths,
            name: neffs
                .first()
                .map(|n| n.name().to_owned())
                .unwrap_or_default(),
            inputs: engine.spec().inputs.iter().map(Tensor::from_spec).collect(),
            outputs: engine
                .spec()
                .outputs
                .iter()
                .map(Tensor::from_spec)
                .collect(),
        }
    }
}

/// The runtime library.
#[derive(Debug, Serialize)]
pub(crate) struct RuntimeInfo {
    pub(crate) library: String,
    pub(crate) version: String,
    pub(crate) mock: bool,
}

impl RuntimeInfo {
    pub(crate) fn new(runtime: &Runtime) -> RuntimeInfo {
        RuntimeInfo {
            library: runtime.library_path().display().to_string(),
            version: runtime.version().to_string(),
            mock: runtime.version().is_mock(),
        }
    }
}

/// The engine as built.
#[derive(Debug, Serialize)]
pub(crate) struct Engine {
    /// The compiled batch sizes, ascending (one per NEFF).
    pub(crate) batch_sizes: Vec<usize>,
    pub(crate) devices: Vec<String>,
    pub(crate) physical_cores: Vec<Option<u32>>,
    pub(crate) dim: usize,
    pub(crate) dynamic_batching: bool,
    pub(crate) split_size: Option<usize>,
    pub(crate) num_workers: usize,
}

impl Engine {
    pub(crate) fn new(engine: &DataParallel, args: &EngineArgs) -> Engine {
        Engine {
            batch_sizes: engine.batch_sizes().to_vec(),
            devices: engine.devices().iter().map(ToString::to_string).collect(),
            physical_cores: engine.physical_cores().collect(),
            dim: engine.dim(),
            dynamic_batching: engine.dynamic_batching(),
            split_size: args.split_size.map(|s| s.get()),
            num_workers: engine.num_workers(),
        }
    }
}

/// One chunk of a run.
#[derive(Debug, Serialize)]
pub(crate) struct Chunk {
    pub(crate) chunk: usize,
    pub(crate) logical_core: u32,
    pub(crate) device: String,
    pub(crate) physical_core: Option<u32>,
    pub(crate) start: usize,
    pub(crate) rows: usize,
    pub(crate) pieces: usize,
    pub(crate) pad_rows: usize,
    /// The compiled batch size of each piece, in order.
    pub(crate) batch_sizes: Vec<usize>,
    pub(crate) time_ms: f64,
}

/// A run's totals.
#[derive(Debug, Serialize)]
pub(crate) struct Totals {
    pub(crate) chunks: usize,
    pub(crate) rows: usize,
    pub(crate) pieces: usize,
    pub(crate) pad_rows: usize,
    pub(crate) wall_ms: f64,
}

/// One output file of a run.
#[derive(Debug, Serialize)]
pub(crate) struct OutputFile {
    pub(crate) name: String,
    pub(crate) dtype: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) path: String,
}

/// What `run --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) schema: &'static str,
    pub(crate) command: &'static str,
    pub(crate) model: Model,
    pub(crate) runtime: RuntimeInfo,
    pub(crate) engine: Engine,
    pub(crate) rows: usize,
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) totals: Totals,
    pub(crate) throughput_rows_per_s: f64,
    pub(crate) outputs: Vec<OutputFile>,
}

fn physical(core: Option<u32>) -> String {
    core.map_or_else(|| "?".to_owned(), |c| c.to_string())
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn tensors_text(tensors: &[Tensor]) -> String {
    tensors
        .iter()
        .map(|t| format!("{} {} {}", t.name, t.dtype, shape_text(&t.shape)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lines every text report starts with: model, runtime, engine.
fn header(text: &mut String, model: &Model, runtime: &RuntimeInfo, engine: &Engine) {
    let _ = writeln!(text, "model    {} ({})", model.name, model.path);
    let _ = writeln!(
        text,
        "         inputs: {}; outputs: {}",
        tensors_text(&model.inputs),
        tensors_text(&model.outputs)
    );
    let _ = writeln!(
        text,
        "runtime  libnrt {} from {}",
        runtime.version, runtime.library
    );
    let _ = writeln!(
        text,
        "engine   {} cores, {} workers, dim {}, dynamic batching {}{}",
        engine.devices.len(),
        engine.num_workers,
        engine.dim,
        if engine.dynamic_batching { "on" } else { "off" },
        engine
            .split_size
            .map_or_else(String::new, |s| format!(", split size {s}"))
    );
}

impl Report for RunReport {
    /// The text report.
    fn text(&self) -> String {
        let mut text = String::new();
        header(&mut text, &self.model, &self.runtime, &self.engine);
        let _ = writeln!(
            text,
            "\n{:>5}  {:>7}  {:>8}  {:>7}  {:>6}  {:>6}  {:>4}  {:>9}",
            "chunk", "core", "physical", "start", "rows", "pieces", "pad", "time ms"
        );
        for c in &self.chunks {
            let _ = writeln!(
                text,
                "{:>5}  {:>7}  {:>8}  {:>7}  {:>6}  {:>6}  {:>4}  {:>9.3}",
                c.chunk,
                c.device,
                physical(c.physical_core),
                c.start,
                c.rows,
                c.pieces,
                c.pad_rows,
                c.time_ms
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            text,
            "\ntotal    {} chunks, {} rows, {} pieces, {} pad rows in {:.3} ms",
            t.chunks, t.rows, t.pieces, t.pad_rows, t.wall_ms
        );
        let _ = writeln!(text, "throughput  {:.1} rows/s", self.throughput_rows_per_s);
        for o in &self.outputs {
            let _ = writeln!(
                text,
                "wrote    {} ({} {})",
                o.path,
                o.dtype,
                shape_text(&o.shape)
            );
        }
        text
    }
}

/// Latency statistics of a bench, in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) min: f64,
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// Statistics of `samples` (any order; at least one).
    pub(crate) fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let n = samples.len().max(1);
        // Nearest rank: the smallest sample with at least p% of the samples at or below it.
        let rank = |p: f64| {
            let index = ((p / 100.0) * n as f64).ceil() as usize;
            samples.get(index.clamp(1, n) - 1).copied().map_or(0.0, ms)
        };
        let total: Duration = samples.iter().sum();
        Latency {
            min: samples.first().copied().map_or(0.0, ms),
            mean: ms(total) / n as f64,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples.last().copied().map_or(0.0, ms),
        }
    }
}

/// One core's share of a bench.
#[derive(Debug, Serialize)]
pub(crate) struct CoreBusy {
    pub(crate) logical_core: u32,
    pub(crate) device: String,
    pub(crate) physical_core: Option<u32>,
    pub(crate) executions: u64,
    pub(crate) busy_ms: f64,
    pub(crate) busy_share: f64,
    pub(crate) failures: u64,
    /// Executions retried because the runtime said the core was busy or its queue full.
    pub(crate) busy_retries: u64,
    /// Upper bounds (log2 buckets) on the median and 99th-percentile time per piece.
    pub(crate) piece_p50_us: Option<u64>,
    pub(crate) piece_p99_us: Option<u64>,
    /// "healthy" or "quarantined" (after repeated hardware-class failures).
    pub(crate) state: &'static str,
    pub(crate) consecutive_failures: u32,
    /// The libnrt status name of the core's most recent failure.
    pub(crate) last_status: Option<&'static str>,
}

/// What `bench --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct BenchReport {
    pub(crate) schema: &'static str,
    pub(crate) command: &'static str,
    pub(crate) model: Model,
    pub(crate) runtime: RuntimeInfo,
    pub(crate) engine: Engine,
    pub(crate) batch: usize,
    pub(crate) warmup_iterations: usize,
    pub(crate) iterations: usize,
    pub(crate) elapsed_s: f64,
    pub(crate) throughput_rows_per_s: f64,
    pub(crate) throughput_batches_per_s: f64,
    pub(crate) latency_ms: Latency,
    /// Real rows and pad rows executed during the bench, and pad / (rows + pad).
    pub(crate) rows_executed: u64,
    pub(crate) pad_rows: u64,
    pub(crate) pad_ratio: f64,
    pub(crate) cores: Vec<CoreBusy>,
    /// `bench --serve` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) serve: Option<Serve>,
}

/// Rows per batch: one histogram bucket.
#[derive(Debug, Serialize)]
pub(crate) struct BatchRows {
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) count: u64,
}

/// The batcher's queue depth, sampled periodically during the run.
#[derive(Debug, Serialize)]
pub(crate) struct QueueDepth {
    pub(crate) max: usize,
    pub(crate) mean: f64,
    pub(crate) samples: usize,
}

/// The batcher's own submit-to-completion latency, in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct BatcherLatency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
}

/// What `bench --serve` adds: the load and the batcher's view of it.
#[derive(Debug, Serialize)]
pub(crate) struct Serve {
    pub(crate) rate_per_s: f64,
    pub(crate) request_rows: usize,
    pub(crate) max_delay_us: u64,
    pub(crate) max_batch_rows: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) batches_in_flight: usize,
    /// Whether the batcher packed its batches into whole compiled batches.
    pub(crate) pack: bool,
    pub(crate) requests_scheduled: usize,
    pub(crate) requests_completed: usize,
    /// Turned away because the queue was full (open loop: never retried).
    pub(crate) requests_rejected: usize,
    pub(crate) throughput_requests_per_s: f64,
    pub(crate) batches: u64,
    pub(crate) mean_batch_rows: f64,
    pub(crate) batch_rows: Vec<BatchRows>,
    pub(crate) queue_depth: QueueDepth,
    pub(crate) batcher_latency_ms: Option<BatcherLatency>,
}

impl Serve {
    /// The batch-size histogram on one line: `rows:count`, or `lo-hi:count` for a range.
    fn batch_rows_text(&self) -> String {
        self.batch_rows
            .iter()
            .map(|b| {
                if b.min == b.max {
                    format!("{}:{}", b.min, b.count)
                } else {
                    format!("{}-{}:{}", b.min, b.max, b.count)
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    }
}

impl Report for BenchReport {
    /// The text summary.
    fn text(&self) -> String {
        let mut text = String::new();
        header(&mut text, &self.model, &self.runtime, &self.engine);
        if let Some(serve) = &self.serve {
            self.serve_text(&mut text, serve);
        } else {
            let _ = writeln!(
                text,
                "\nbench    batch {} rows, {} forwards in {:.2} s (after {} warm-up)",
                self.batch, self.iterations, self.elapsed_s, self.warmup_iterations
            );
            let _ = writeln!(
                text,
                "throughput  {:.1} rows/s ({:.1} batches/s)",
                self.throughput_rows_per_s, self.throughput_batches_per_s
            );
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            text,
            "latency     p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  (min {:.3}, mean {:.3}, max {:.3}){}",
            l.p50,
            l.p90,
            l.p99,
            l.min,
            l.mean,
            l.max,
            if self.serve.is_some() {
                " from the scheduled time"
            } else {
                ""
            }
        );
        if let Some(serve) = &self.serve {
            if let Some(b) = &serve.batcher_latency_ms {
                let _ = writeln!(
                    text,
                    "            batcher's own submit to completion: p50 {:.3} ms  p99 {:.3} ms",
                    b.p50, b.p99
                );
            }
            let q = &serve.queue_depth;
            let _ = writeln!(
                text,
                "queue       depth max {}, mean {:.1} ({} samples every {} ms; capacity {})",
                q.max, q.mean, q.samples, SERVE_SAMPLE_MS, serve.queue_capacity
            );
            let _ = writeln!(
                text,
                "batches     {} (mean {:.1} rows); rows:count  {}",
                serve.batches,
                serve.mean_batch_rows,
                serve.batch_rows_text()
            );
        }
        let _ = writeln!(
            text,
            "padding     {} pad rows for {} real rows ({:.1}% of executed rows)",
            self.pad_rows,
            self.rows_executed,
            self.pad_ratio * 100.0
        );
        let _ = writeln!(
            text,
            "\n{:>7}  {:>8}  {:>10}  {:>10}  {:>9}  {:>8}  {:>12}  {:>17}  {:<11}  last failure",
            "core",
            "physical",
            "executions",
            "busy ms",
            "busy/wall",
            "failures",
            "busy retries",
            "piece p50/p99",
            "state"
        );
        for c in &self.cores {
            let _ = writeln!(
                text,
                "{:>7}  {:>8}  {:>10}  {:>10.1}  {:>9.2}  {:>8}  {:>12}  {:>17}  {:<11}  {}",
                c.device,
                physical(c.physical_core),
                c.executions,
                c.busy_ms,
                c.busy_share,
                c.failures,
                c.busy_retries,
                format!(
                    "<{}/<{} µs",
                    c.piece_p50_us.map_or("-".to_owned(), |v| v.to_string()),
                    c.piece_p99_us.map_or("-".to_owned(), |v| v.to_string())
                ),
                c.state,
                c.last_status.unwrap_or("-")
            );
        }
        let _ = writeln!(
            text,
            "(busy/wall: time this core's workers spent on pieces over the wall time; above 1 \
             when several workers per core overlap transfers with execution; busy retries: \
             executions the runtime refused as busy or queue-full and the engine retried)"
        );
        text
    }
}

/// How often `bench --serve` samples the batcher's queue depth, in milliseconds.
pub(crate) const SERVE_SAMPLE_MS: u64 = 5;

impl BenchReport {
    /// The first lines of a `bench --serve` summary: the load and what was served.
    fn serve_text(&self, text: &mut String, serve: &Serve) {
        let _ = writeln!(
            text,
            "\nserve    open loop at {} requests/s, {} rows per request; batcher max delay {} µs, \
             max batch {} rows, queue {}, {} batches in flight, {}",
            serve.rate_per_s,
            serve.request_rows,
            serve.max_delay_us,
            serve.max_batch_rows,
            serve.queue_capacity,
            serve.batches_in_flight,
            if serve.pack {
                "packed into whole compiled batches"
            } else {
                "the engine's split"
            }
        );
        let _ = writeln!(
            text,
            "requests    {} scheduled, {} completed, {} turned away (queue full) in {:.2} s \
             (after {} warm-up forward)",
            serve.requests_scheduled,
            serve.requests_completed,
            serve.requests_rejected,
            self.elapsed_s,
            self.warmup_iterations
        );
        let _ = writeln!(
            text,
            "throughput  {:.1} requests/s, {:.1} rows/s",
            serve.throughput_requests_per_s, self.throughput_rows_per_s
        );
    }
}

/// A report printed as text, or with `--json` as one JSON object.
pub(crate) trait Report: Serialize + Sized {
    /// The text form.
    fn text(&self) -> String;

    /// Prints the report on stdout in the form the user asked for.
    fn emit(&self, json: bool) -> crate::CliResult {
        if json {
            print_json(self)
        } else {
            print_text(&self.text())
        }
    }
}

/// Prints `value` as one line of JSON on stdout.
pub(crate) fn print_json(value: &impl Serialize) -> crate::CliResult {
    let mut text = serde_json::to_string(value)
        .map_err(|e| crate::Failure::Runtime(format!("cannot encode the JSON report: {e}")))?;
    text.push('\n');
    print_text(&text)
}

/// Writes `text` to stdout through a locked handle and flushes it. A write error (a closed
/// pipe, a full disk) is a runtime failure (exit status 1) with one line on stderr, never a
/// panic as `print!` would be.
pub(crate) fn print_text(text: &str) -> crate::CliResult {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            crate::Failure::Runtime(if e.kind() == std::io::ErrorKind::BrokenPipe {
                "stdout was closed before the report was written (broken pipe)".to_owned()
            } else {
                format!("cannot write the report to stdout: {e}")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        let l = Latency::of(&mut samples);
        assert_eq!(
            (l.min, l.p50, l.p90, l.p99, l.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((l.mean - 50.5).abs() < 1e-9);
        let l = Latency::of(&mut [Duration::from_millis(7)]);
        assert_eq!((l.p50, l.p99), (7.0, 7.0));
    }
}
