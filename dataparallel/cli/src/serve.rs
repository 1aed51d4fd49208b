//! `neuron-dp bench --serve`: an open-loop load of requests through the request batcher.
//!
//! The submitter (this thread) sleeps until each request's scheduled time (`i / rate` after
//! the start) and `try_submit`s it whatever the completions do; a request the full queue
//! turns away is counted, never retried. A collector thread waits the tickets in order and
//! takes each request's latency from its *scheduled* time, so queueing, and a submitter that
//! falls behind, show up in it. A sampler thread reads the batcher's queue depth every
//! [`SERVE_SAMPLE_MS`] ms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, Ticket};
use dataparallel::{DataParallel, Input};
use neuron_rt::DType;

use neuron_dp_cli::{limits, npy};

use crate::args::BenchArgs;
use crate::bench::{SplitMix64, core_table, fill, input_shape, model_size, padding, progress};
use crate::report::{self, Report as _, SCHEMA, SERVE_SAMPLE_MS};
use dataparallel::quote::one_line;

use crate::{CliResult, Failure, engine_failure};

/// What the collector saw.
struct Collected {
    latencies: Vec<Duration>,
    last: Instant,
    /// The first failed request's error.
    error: Option<String>,
}

/// The subcommand's serving mode.
pub(crate) fn run(args: &BenchArgs) -> CliResult {
    if args.rate.is_none() {
        return Err(Failure::Usage("--serve needs --rate".to_owned()));
    }
    // Counts and durations first, before the runtime starts.
    let options = args.options();
    options.check().map_err(Failure::Usage)?;
    let runtime = crate::runtime()?;
    let neffs = crate::neffs(&args.neffs)?;
    let engine = Arc::new(
        DataParallel::with_buckets(&runtime, &neffs, args.engine.config())
            .map_err(|e| engine_failure(&e))?,
    );
    let spec = engine.spec();
    crate::bench::check_viewable(spec)?;
    // Rows, the batcher's settings and the buffers they imply, before anything is
    // allocated or started.
    let plan = limits::serve_plan(&options, &model_size(&engine), limits::memory_budget())
        .map_err(Failure::Usage)?;
    let rate = plan.rate;
    let request_rows = plan.request_rows;
    let max_delay_us = u64::try_from(plan.max_delay.as_micros()).unwrap_or(u64::MAX);
    let config = BatcherConfig::default()
        .max_delay(plan.max_delay)
        .max_batch_rows(plan.max_batch_rows)
        .batches_in_flight(plan.batches_in_flight)
        .queue_capacity(plan.queue_capacity)
        .pack(!args.unpacked);
    let queue_capacity = config.queue_capacity_value();
    let batches_in_flight = config.batches_in_flight_value();

    // One request's inputs, cloned for every request.
    let mut rng = SplitMix64(args.seed);
    let template: Vec<(DType, Vec<usize>, Vec<u8>, String)> = spec
        .inputs
        .iter()
        .map(|s| {
            let shape = input_shape(s, 0, request_rows);
            let mut bytes = vec![0u8; shape.iter().product::<usize>() * s.elem_size];
            fill(&mut bytes, s.dtype, &mut rng);
            (
                npy::view_dtype(s).unwrap_or(DType::UInt8),
                shape,
                bytes,
                s.name.clone(),
            )
        })
        .collect();
    let request = || {
        Request::new(
            template
                .iter()
                .map(|(dtype, shape, bytes, name)| {
                    OwnedTensor::new(*dtype, shape.clone(), bytes.clone()).named(name.clone())
                })
                .collect(),
        )
    };

    let batcher = Batcher::new(Arc::clone(&engine), config).map_err(|e| engine_failure(&e))?;
    // One warm-up forward of one request's rows on the engine directly (stations, queues,
    // the engine's moving averages); not counted.
    let warmup = 1;
    warm_up(&engine, &template)?;

    let total = plan.requests;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let bar = progress(total as u64, false);
    let before = engine.core_stats();
    let (tx, rx) = mpsc::channel::<(Instant, Ticket)>();
    let sampling = AtomicBool::new(true);
    let start = Instant::now() + Duration::from_millis(1);
    let (collected, rejected, depths) = std::thread::scope(|scope| {
        let collector = scope.spawn(move || collect(rx));
        let sampler = scope.spawn(|| {
            let mut depths = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                depths.push(batcher.stats().queue_depth);
                std::thread::sleep(Duration::from_millis(SERVE_SAMPLE_MS));
            }
            depths
        });
        let mut rejected = 0usize;
        let mut failure = None;
        for i in 0..total {
            let scheduled = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            match batcher.try_submit(request()) {
                Ok(ticket) => {
                    if tx.send((scheduled, ticket)).is_err() {
                        break;
                    }
                }
                Err(dataparallel::batcher::TrySubmitError::Full(_)) => rejected += 1,
                Err(error) => {
                    failure = Some(Failure::Usage(one_line(&error.to_string())));
                    break;
                }
            }
            bar.inc(1);
        }
        drop(tx);
        let collected = collector.join();
        sampling.store(false, Ordering::Relaxed);
        let depths = sampler.join().unwrap_or_default();
        match (failure, collected) {
            (Some(failure), _) => Err(failure),
            (None, Ok(collected)) => Ok((collected, rejected, depths)),
            (None, Err(_)) => Err(Failure::Runtime(
                "the collector thread panicked (a bug, please report)".to_owned(),
            )),
        }
    })?;
    bar.finish_and_clear();
    let max_batch_rows = batcher.max_batch_rows();
    let stats = batcher.shutdown();
    let after = engine.core_stats();
    let health = engine.health();
    if let Some(error) = collected.error {
        return Err(Failure::Runtime(error));
    }

    let elapsed = collected.last.saturating_duration_since(start);
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let completed = collected.latencies.len();
    let (rows_executed, pad_rows, pad_ratio) = padding(&before, &after);
    let cores = core_table(&before, &after, &health, seconds);
    let mut latencies = collected.latencies;
    let serve = report::Serve {
        rate_per_s: rate,
        request_rows,
        max_delay_us,
        max_batch_rows,
        queue_capacity,
        batches_in_flight,
        pack: !args.unpacked,
        requests_scheduled: total,
        requests_completed: completed,
        requests_rejected: rejected,
        throughput_requests_per_s: completed as f64 / seconds,
        batches: stats.batches,
        mean_batch_rows: stats.mean_batch_rows().unwrap_or(0.0),
        batch_rows: stats
            .batch_rows
            .buckets()
            .map(|(min, max, count)| report::BatchRows { min, max, count })
            .collect(),
        queue_depth: report::QueueDepth {
            max: depths.iter().copied().max().unwrap_or(0),
            mean: depths.iter().sum::<usize>() as f64 / depths.len().max(1) as f64,
            samples: depths.len(),
        },
        batcher_latency_ms: match (stats.latency_quantile(0.5), stats.latency_quantile(0.99)) {
            (Some(p50), Some(p99)) => Some(report::BatcherLatency {
                p50: report::ms(p50),
                p99: report::ms(p99),
            }),
            _ => None,
        },
    };
    let report = report::BenchReport {
        schema: SCHEMA,
        command: "bench",
        model: report::Model::new(&args.neffs, &neffs, &engine),
        runtime: report::RuntimeInfo::new(&runtime),
        engine: report::Engine::new(&engine, &args.engine),
        batch: request_rows,
        warmup_iterations: warmup,
        iterations: completed,
        elapsed_s: elapsed.as_secs_f64(),
        throughput_rows_per_s: (completed * request_rows) as f64 / seconds,
        throughput_batches_per_s: completed as f64 / seconds,
        latency_ms: report::Latency::of(&mut latencies),
        rows_executed,
        pad_rows,
        pad_ratio,
        cores,
        serve: Some(serve),
    };
    report.emit(args.json)
}

/// Waits every ticket in order, timing each from its scheduled time.
fn collect(rx: mpsc::Receiver<(Instant, Ticket)>) -> Collected {
    let mut collected = Collected {
        latencies: Vec::new(),
        last: Instant::now(),
        error: None,
    };
    for (scheduled, ticket) in rx {
        let result = ticket.wait();
        let now = Instant::now();
        collected.last = now;
        match result {
            Ok(response) => {
                collected
                    .latencies
                    .push(now.saturating_duration_since(scheduled));
                drop(response);
            }
            Err(error) => {
                collected
                    .error
                    .get_or_insert_with(|| one_line(&error.to_string()));
            }
        }
    }
    collected
}

/// One forward of one request's rows straight on the engine.
fn warm_up(engine: &DataParallel, template: &[(DType, Vec<usize>, Vec<u8>, String)]) -> CliResult {
    let inputs: Vec<Input<'_>> = template
        .iter()
        .map(|(dtype, shape, bytes, name)| Input::new(*dtype, shape, bytes).named(name))
        .collect();
    let shapes = engine
        .output_shapes(&inputs)
        .map_err(|e| engine_failure(&e))?;
    let spec = engine.spec();
    let mut buffers = npy::output_buffers(spec, &shapes).map_err(Failure::Usage)?;
    let mut outputs = npy::output_views(spec, &shapes, &mut buffers);
    engine
        .forward_into(&inputs, &mut outputs)
        .map_err(|e| engine_failure(&e))
}
