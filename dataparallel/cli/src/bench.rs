//! `neuron-dp bench`: repeated forwards over random inputs with preallocated buffers
//! (`forward_into`), a progress bar on a terminal, and a summary: throughput, latency
//! percentiles, and each core's busy share (its workers' busy time over the wall time).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use dataparallel::{CoreHealth, CoreReport, DataParallel, Input, IoSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use neuron_dp_cli::limits::{self, MAX_ITERATIONS, ModelSize, Stop, TensorSize};
use neuron_dp_cli::npy::{self, Buffer};
use neuron_rt::DType;

use crate::args::BenchArgs;
use crate::report::{self, Report as _, SCHEMA};
use crate::{CliResult, Failure, engine_failure};

/// What the bench limits need to know about the engine's model.
pub(crate) fn model_size(engine: &DataParallel) -> ModelSize {
    let sizes = |specs: &[IoSpec]| {
        specs
            .iter()
            .map(|s| TensorSize {
                shape: s.shape.clone(),
                elem_size: s.elem_size,
            })
            .collect()
    };
    ModelSize {
        inputs: sizes(&engine.spec().inputs),
        outputs: sizes(&engine.spec().outputs),
        dim: engine.dim(),
        cores: engine.devices().len(),
    }
}

/// splitmix64: a small, fast, deterministic generator for the random inputs.
#[derive(Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// Fills `bytes` with random elements of `dtype`: floats in [-1, 1) (never NaN), integers
/// over their whole range.
pub(crate) fn fill(bytes: &mut [u8], dtype: Option<DType>, rng: &mut SplitMix64) {
    match dtype {
        Some(DType::Float32 | DType::Fp32R) => {
            for value in bytes.chunks_exact_mut(4) {
                value.copy_from_slice(&rng.unit().to_ne_bytes());
            }
        }
        Some(DType::Float16) => {
            for value in bytes.chunks_exact_mut(2) {
                value.copy_from_slice(&half::f16::from_f32(rng.unit()).to_ne_bytes());
            }
        }
        Some(DType::BFloat16) => {
            for value in bytes.chunks_exact_mut(2) {
                value.copy_from_slice(&half::bf16::from_f32(rng.unit()).to_ne_bytes());
            }
        }
        Some(DType::Fp8E3 | DType::Fp8E4 | DType::Fp8E5) => {
            // Small positive and negative values in every FP8 format: exponent bits low.
            for value in bytes.iter_mut() {
                *value = (rng.next() as u8) & 0b1001_0111;
            }
        }
        _ => {
            for value in bytes.chunks_mut(8) {
                let random = rng.next().to_ne_bytes();
                value.copy_from_slice(&random[..value.len()]);
            }
        }
    }
}

/// Checks that every model tensor can be viewed: its dtype, or when the runtime reports none
/// the unsigned integer of its element size (random inputs are then random bits).
pub(crate) fn check_viewable(spec: &dataparallel::ModelSpec) -> CliResult {
    match spec
        .inputs
        .iter()
        .chain(&spec.outputs)
        .find(|s| npy::view_dtype(s).is_none())
    {
        Some(s) => Err(Failure::Usage(format!(
            "model tensor {} has {}-byte elements of a dtype the runtime does not report; \
             neuron-dp can only stand in 1-, 2-, 4- or 8-byte integers for it",
            dataparallel::quote::quote(&s.name),
            s.elem_size
        ))),
        None => Ok(()),
    }
}

/// The shape of a random input of `batch` rows on `dim`.
pub(crate) fn input_shape(spec: &IoSpec, dim: usize, batch: usize) -> Vec<usize> {
    let mut shape = spec.shape.clone();
    if let Some(rows) = shape.get_mut(dim) {
        *rows = batch;
    }
    shape
}

pub(crate) fn progress(len: u64, seconds: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = if seconds {
        "{spinner} bench [{bar:40}] {elapsed_precise} {msg}"
    } else {
        "{spinner} bench [{bar:40}] {pos}/{len} forwards, eta {eta} {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style)
}

/// The subcommand (`--serve` is [`crate::serve`]).
pub(crate) fn run(args: &BenchArgs) -> CliResult {
    if args.serve {
        return crate::serve::run(args);
    }
    // Counts and durations first, before the runtime starts.
    let options = args.options();
    options.check().map_err(Failure::Usage)?;
    let runtime = crate::runtime()?;
    let neffs = crate::neffs(&args.neffs)?;
    let engine = DataParallel::with_buckets(&runtime, &neffs, args.engine.config())
        .map_err(|e| engine_failure(&e))?;
    let spec = engine.spec();
    let dim = engine.dim();
    // Rows and the buffers they imply, before anything is allocated.
    let plan = limits::bench_plan(&options, &model_size(&engine), limits::memory_budget())
        .map_err(Failure::Usage)?;
    let batch = plan.batch;

    let mut rng = SplitMix64(args.seed);
    let shapes: Vec<Vec<usize>> = spec
        .inputs
        .iter()
        .map(|s| input_shape(s, dim, batch))
        .collect();
    let buffers: Vec<Buffer> = spec
        .inputs
        .iter()
        .zip(&shapes)
        .map(|(s, shape)| {
            let mut buffer = Buffer::zeroed(shape.iter().product::<usize>() * s.elem_size);
            fill(buffer.bytes_mut(), s.dtype, &mut rng);
            buffer
        })
        .collect();
    check_viewable(spec)?;
    let inputs: Vec<Input<'_>> = spec
        .inputs
        .iter()
        .zip(&shapes)
        .zip(&buffers)
        .map(|((s, shape), buffer)| {
            let dtype = npy::view_dtype(s).unwrap_or(DType::UInt8);
            Input::new(dtype, shape, buffer.bytes()).named(&s.name)
        })
        .collect();
    let out_shapes = engine
        .output_shapes(&inputs)
        .map_err(|e| engine_failure(&e))?;
    let mut out_buffers = npy::output_buffers(spec, &out_shapes).map_err(Failure::Usage)?;
    let mut outputs = npy::output_views(spec, &out_shapes, &mut out_buffers);

    // One warm-up forward (first-touch of device tensors, thread wake-ups) is not counted.
    let warmup = 1;
    for _ in 0..warmup {
        engine
            .forward_into(&inputs, &mut outputs)
            .map_err(|e| engine_failure(&e))?;
    }

    let (limit_iterations, limit_time) = match plan.stop {
        Stop::Iterations(n) => (Some(n), None),
        Stop::Time(t) => (None, Some(t)),
    };
    let bar = match (limit_iterations, limit_time) {
        (Some(n), _) => progress(n as u64, false),
        (None, Some(t)) => progress(t.as_millis().max(1) as u64, true),
        (None, None) => ProgressBar::hidden(),
    };

    let before = engine.core_stats();
    let mut latencies: Vec<Duration> =
        Vec::with_capacity(limit_iterations.unwrap_or(1024).min(1 << 16));
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        let result = engine.forward_into(&inputs, &mut outputs);
        latencies.push(t0.elapsed());
        if let Err(error) = result {
            bar.abandon();
            return Err(engine_failure(&error));
        }
        let elapsed = started.elapsed();
        match (limit_iterations, limit_time) {
            (Some(n), _) => {
                bar.inc(1);
                if latencies.len() >= n {
                    break;
                }
            }
            (None, Some(t)) => {
                bar.set_position(elapsed.as_millis().min(t.as_millis()) as u64);
                bar.set_message(format!("{} forwards", latencies.len()));
                if elapsed >= t || latencies.len() as u64 >= MAX_ITERATIONS {
                    break;
                }
            }
            (None, None) => break,
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let after = engine.core_stats();
    let health = engine.health();
    drop(outputs);

    let (rows_executed, pad_rows, pad_ratio) = padding(&before, &after);
    let iterations = latencies.len();
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let cores = core_table(&before, &after, &health, seconds);
    let report = report::BenchReport {
        schema: SCHEMA,
        command: "bench",
        model: report::Model::new(&args.neffs, &neffs, &engine),
        runtime: report::RuntimeInfo::new(&runtime),
        engine: report::Engine::new(&engine, &args.engine),
        batch,
        warmup_iterations: warmup,
        iterations,
        elapsed_s: elapsed.as_secs_f64(),
        throughput_rows_per_s: (iterations * batch) as f64 / seconds,
        throughput_batches_per_s: iterations as f64 / seconds,
        latency_ms: report::Latency::of(&mut latencies),
        rows_executed,
        pad_rows,
        pad_ratio,
        cores,
        serve: None,
    };
    report.emit(args.json)
}

/// Real rows and pad rows executed between two snapshots, and pad / (rows + pad).
pub(crate) fn padding(before: &[CoreReport], after: &[CoreReport]) -> (u64, u64, f64) {
    let rows: u64 =
        after.iter().map(|a| a.rows).sum::<u64>() - before.iter().map(|b| b.rows).sum::<u64>();
    let pad: u64 = after.iter().map(|a| a.pad_rows).sum::<u64>()
        - before.iter().map(|b| b.pad_rows).sum::<u64>();
    let ratio = if rows + pad == 0 {
        0.0
    } else {
        pad as f64 / (rows + pad) as f64
    };
    (rows, pad, ratio)
}

/// Each core's executions, busy time and piece latency between two snapshots taken
/// `seconds` apart, with its health now.
pub(crate) fn core_table(
    before: &[CoreReport],
    after: &[CoreReport],
    health: &[CoreHealth],
    seconds: f64,
) -> Vec<report::CoreBusy> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.core == a.core);
            let h = health.iter().find(|h| h.core == a.core);
            let busy_ns = a.busy_ns - b.map_or(0, |b| b.busy_ns);
            let latency = a
                .piece_latency
                .since(&b.map(|b| b.piece_latency).unwrap_or_default());
            report::CoreBusy {
                logical_core: a.core.index(),
                device: a.core.to_string(),
                physical_core: a.physical_core,
                executions: a.executions - b.map_or(0, |b| b.executions),
                busy_ms: busy_ns as f64 / 1e6,
                busy_share: busy_ns as f64 / 1e9 / seconds,
                failures: a.failures - b.map_or(0, |b| b.failures),
                busy_retries: a.busy_retries - b.map_or(0, |b| b.busy_retries),
                piece_p50_us: latency.quantile_us(0.5),
                piece_p99_us: latency.quantile_us(0.99),
                state: match h.map(|h| h.state) {
                    Some(dataparallel::CoreState::Quarantined) => "quarantined",
                    _ => "healthy",
                },
                consecutive_failures: h.map_or(0, |h| h.consecutive_failures),
                last_status: h.and_then(|h| h.last_status).map(|s| s.name()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_floats_are_finite_and_in_range() {
        let mut rng = SplitMix64(7);
        let mut bytes = vec![0u8; 4 * 1000];
        fill(&mut bytes, Some(DType::Float32), &mut rng);
        for value in bytes.chunks_exact(4) {
            let x = f32::from_ne_bytes(value.try_into().unwrap());
            assert!((-1.0..1.0).contains(&x), "{x}");
        }
        let mut again = vec![0u8; 4 * 1000];
        fill(&mut again, Some(DType::Float32), &mut SplitMix64(7));
        assert_eq!(bytes, again);
    }
}
