//! Scenario 6: serving. An open-loop load of single-row requests at fixed rates against the
//! mock (k = 8, exec_us 1000, compiled batch 8): requests are issued on a fixed schedule
//! whatever the completions do, and latency is measured from each request's *scheduled* time,
//! so queueing (and a generator that falls behind) shows up in it.
//!
//! Modes:
//! - `batcher, packed`: one submitter thread sleeps until each request's time and
//!   `try_submit`s it to a [`Batcher`] (default config: max 64 rows = 8 cores × batch 8, max
//!   delay 1 ms, queue 1024, 2 batches in flight, batches packed into whole compiled
//!   batches; a full queue turns the request away); a collector thread waits the tickets in
//!   order.
//! - `batcher, split`: the same with `pack(false)`: each batch cut by the engine's own split
//!   into one chunk per core, each padded to the compiled batch (the batcher before packing).
//! - `batcher, packed, max delay 1.25 ms` and `1.5 ms`: packed, waiting longer to fill.
//! - `batcher, packed, 1 batch in flight`: packed with `batches_in_flight(1)`, the batcher
//!   before it pipelined batches.
//! - `forward/request`: a pool of 64 caller threads takes the scheduled requests in order,
//!   each sleeping until its request's time and calling `forward_into` with its one row on an
//!   engine over the 8 cores.
//! - `forward/request, spread`: the same pool on one engine built with
//!   `Config::spread_small_calls(true)`, so each one-row call starts on the next core.
//! - `forward/request, 8 engines`: the same pool, request `i` going to one of 8 one-core
//!   engines (`i mod 8`): what one forward per request gets when requests are spread over
//!   the cores by the caller.
//!
//! A request that was turned away or not started by the end of the run (schedule + 0.5 s) is
//! *unserved* and counts as infinitely late in the percentiles, so a p99 is finite only when
//! at least 99 % were served. Sustained = p99 under 10 ms.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, Ticket};
use dataparallel::{Config, DataParallel, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::common::{Ctx, affine_neff, engine, percentile, ramp};
use crate::mock::FEATURES;
use crate::report::Report;

const K: usize = 8;
const EXEC_US: u64 = 1000;
const BATCH: usize = 8;
/// Caller threads of the one-forward-per-request modes.
const POOL: usize = 64;
/// p99 under this is "sustained".
const P99_LIMIT_MS: f64 = 10.0;
/// How long after the last scheduled request unstarted ones are given up as unserved.
const GRACE: Duration = Duration::from_millis(500);

/// How a mode serves the requests.
enum Serve {
    /// Through a batcher with this configuration over one engine on the k cores.
    Batcher(BatcherConfig),
    /// One forward per request from a pool of callers on one engine, small calls spread or
    /// not.
    Forward { spread: bool },
    /// One forward per request over k one-core engines, round robin.
    Engines,
}

/// One mode at one rate.
struct Outcome {
    scheduled: usize,
    completed: usize,
    /// Turned away (queue full) or never started.
    unserved: usize,
    /// Wall time from the first scheduled request to the last completion.
    elapsed: Duration,
    /// Per completed request, ms from its scheduled time to its completion.
    latencies_ms: Vec<f64>,
    /// Batcher only: mean rows per batch, mean and max sampled queue depth.
    batcher: Option<(f64, f64, usize)>,
    /// Executions per core during the run.
    executions: Vec<u64>,
    /// Share of the rows executed during the run that were padding.
    pad_ratio: f64,
}

impl Outcome {
    /// The `q` quantile with unserved requests counted as infinitely late.
    fn quantile(&self, q: f64) -> f64 {
        let mut all = self.latencies_ms.clone();
        all.extend(std::iter::repeat_n(f64::INFINITY, self.unserved));
        percentile(&mut all, q)
    }

    fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn ms_text(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "inf".to_owned()
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    report.section(
        "6. Serving: open-loop single-row requests, k = 8, exec_us 1000, compiled batch 8; \
         latency from the scheduled time",
        &[
            "mode",
            "rate req/s",
            "seconds",
            "scheduled",
            "completed",
            "unserved",
            "req/s done",
            "p50 ms",
            "p99 ms",
            "mean batch rows",
            "pad ratio",
            "queue depth mean (max)",
            "executions per core",
        ],
    );
    let k = ctx.cores(&[K])[0];
    let rates: Vec<f64> = ctx.pick(
        vec![1e3, 2e3, 4e3, 6e3, 8e3, 16e3, 32e3, 40e3, 48e3, 56e3, 64e3],
        vec![2e3, 8e3, 32e3],
        vec![1e3],
    );
    let seconds = ctx.pick(1.5, 0.5, 0.05);
    let neff = affine_neff(BATCH, FEATURES, EXEC_US)?;
    let modes = [
        ("batcher, packed", Serve::Batcher(BatcherConfig::default())),
        (
            "batcher, split",
            Serve::Batcher(BatcherConfig::default().pack(false)),
        ),
        (
            "batcher, packed, max delay 1.25 ms",
            Serve::Batcher(BatcherConfig::default().max_delay(Duration::from_micros(1250))),
        ),
        (
            "batcher, packed, max delay 1.5 ms",
            Serve::Batcher(BatcherConfig::default().max_delay(Duration::from_micros(1500))),
        ),
        (
            "batcher, packed, 1 batch in flight",
            Serve::Batcher(BatcherConfig::default().batches_in_flight(1)),
        ),
        ("forward/request", Serve::Forward { spread: false }),
        ("forward/request, spread", Serve::Forward { spread: true }),
        ("forward/request, 8 engines", Serve::Engines),
    ];
    let mut best: Vec<(&str, Option<f64>)> = Vec::new();
    for (mode, serve) in &modes {
        let mode = *mode;
        let mut sustained = None;
        for &rate in &rates {
            let total = ((rate * seconds).round() as usize).max(1);
            let outcome = match serve {
                Serve::Batcher(config) => {
                    let dp = Arc::new(engine(ctx, &neff, k, Config::default())?);
                    warm(&dp)?;
                    batcher_run(dp, rate, total, config.clone())?
                }
                Serve::Forward { spread } => {
                    let config = Config::default().spread_small_calls(*spread);
                    let dp = engine(ctx, &neff, k, config)?;
                    warm(&dp)?;
                    pool_run(&[dp], rate, total)?
                }
                Serve::Engines => {
                    let engines = (0..k)
                        .map(|c| -> BoxResult<DataParallel> {
                            let dp = DataParallel::new(
                                &ctx.runtime,
                                &neff,
                                Config::default().device_indices(vec![i64::try_from(c)?]),
                            )?;
                            warm(&dp)?;
                            Ok(dp)
                        })
                        .collect::<BoxResult<Vec<_>>>()?;
                    pool_run(&engines, rate, total)?
                }
            };
            let p50 = outcome.quantile(0.5);
            let p99 = outcome.quantile(0.99);
            if p99 < P99_LIMIT_MS {
                sustained = Some(sustained.map_or(rate, |s: f64| s.max(rate)));
            }
            let (batch_rows, depth_mean, depth_max) = outcome.batcher.unwrap_or((0.0, 0.0, 0));
            report.row(
                vec![
                    mode.to_owned(),
                    format!("{rate:.0}"),
                    format!("{:.2}", outcome.elapsed.as_secs_f64()),
                    outcome.scheduled.to_string(),
                    outcome.completed.to_string(),
                    outcome.unserved.to_string(),
                    format!("{:.0}", outcome.throughput()),
                    ms_text(p50),
                    ms_text(p99),
                    if outcome.batcher.is_some() {
                        format!("{batch_rows:.1}")
                    } else {
                        "1 (of 8)".to_owned()
                    },
                    format!("{:.2}", outcome.pad_ratio),
                    if outcome.batcher.is_some() {
                        format!("{depth_mean:.1} ({depth_max})")
                    } else {
                        "-".to_owned()
                    },
                    outcome
                        .executions
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join("/"),
                ],
                json!({
                    "scenario": "serving",
                    "mode": mode,
                    "k": k,
                    "exec_us": EXEC_US,
                    "compiled_batch": BATCH,
                    "rate_per_s": rate,
                    "elapsed_s": outcome.elapsed.as_secs_f64(),
                    "scheduled": outcome.scheduled,
                    "completed": outcome.completed,
                    "unserved": outcome.unserved,
                    "throughput_per_s": outcome.throughput(),
                    "p50_ms": finite(p50),
                    "p99_ms": finite(p99),
                    "mean_batch_rows": outcome.batcher.map(|b| b.0),
                    "pad_ratio": outcome.pad_ratio,
                    "queue_depth_mean": outcome.batcher.map(|b| b.1),
                    "queue_depth_max": outcome.batcher.map(|b| b.2),
                    "executions_per_core": outcome.executions,
                }),
            );
        }
        best.push((mode, sustained));
    }
    report.note(
        "Unserved = turned away by the full queue or not started within 0.5 s after the \
         schedule ended; they count as infinitely late, so p99 is \"inf\" when over 1 % were \
         unserved. req/s done = completed / (first scheduled time to last completion). \
         Theoretical: 8 cores × 8 rows / 1 ms = 64k rows/s with full batches (the mock's own \
         overshoot makes an execution longer than 1 ms: scenario 0); one forward per request \
         pads 7 of 8 rows, so 8k/s at best, and only if the requests are spread over the cores.",
    );
    let tried = rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    report.section(
        "6b. Serving: the highest rate each mode sustains with p99 < 10 ms",
        &[
            "mode",
            "highest rate req/s (p99 < 10 ms)",
            "rates tried req/s",
        ],
    );
    for (mode, rate) in best {
        report.row(
            vec![
                mode.to_owned(),
                rate.map_or_else(|| "none".to_owned(), |r| format!("{r:.0}")),
                tried.clone(),
            ],
            json!({
                "scenario": "serving_sustained",
                "mode": mode,
                "p99_limit_ms": P99_LIMIT_MS,
                "schedule_s": seconds,
                "rates_tried": rates,
                "highest_sustained_rate_per_s": rate,
            }),
        );
    }
    Ok(())
}

/// A few forwards so that stations, queues and the engine's moving averages are warm.
fn warm(dp: &DataParallel) -> BoxResult {
    let x = ramp(FEATURES);
    let mut y = vec![0f32; FEATURES];
    let shape = [1, FEATURES];
    for _ in 0..3 {
        dp.forward_into(
            &[Input::f32(&shape, &x)],
            &mut [Output::f32(&shape, &mut y)],
        )?;
    }
    Ok(())
}

/// Per engine, per core: (executions, rows, pad rows) so far.
type Counts = Vec<Vec<(u64, u64, u64)>>;

fn counts_now(engines: &[&DataParallel]) -> Counts {
    engines
        .iter()
        .map(|dp| {
            dp.core_stats()
                .iter()
                .map(|c| (c.executions, c.rows, c.pad_rows))
                .collect()
        })
        .collect()
}

/// Executions per core since `before`, and the share of rows executed that were padding.
fn executions_and_padding(engines: &[&DataParallel], before: &Counts) -> (Vec<u64>, f64) {
    let (mut executions, mut rows, mut pad) = (Vec::new(), 0, 0);
    for (now, before) in counts_now(engines).iter().zip(before) {
        for (core, b) in now.iter().zip(before) {
            executions.push(core.0 - b.0);
            rows += core.1 - b.1;
            pad += core.2 - b.2;
        }
    }
    (executions, pad as f64 / (rows + pad).max(1) as f64)
}

/// Sleeps until `at` (no-op when it has passed).
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// The batcher mode: a submitter (this thread) and a collector.
fn batcher_run(
    dp: Arc<DataParallel>,
    rate: f64,
    total: usize,
    config: BatcherConfig,
) -> BoxResult<Outcome> {
    let before = counts_now(&[&dp]);
    let batcher = Batcher::new(Arc::clone(&dp), config)?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let row = ramp(FEATURES);
    let (tx, rx) = mpsc::channel::<(Instant, Ticket)>();
    let start = Instant::now() + Duration::from_millis(5);
    let collector = std::thread::spawn(move || -> Result<(Vec<f64>, Instant), String> {
        let mut latencies = Vec::new();
        let mut last = Instant::now();
        for (scheduled, ticket) in rx {
            let response = ticket.wait().map_err(|e| e.to_string())?;
            last = Instant::now();
            latencies.push((last - scheduled).as_secs_f64() * 1e3);
            drop(response);
        }
        Ok((latencies, last))
    });
    let mut rejected = 0;
    let mut depth_sum = 0usize;
    let mut depth_samples = 0usize;
    let mut depth_max = 0usize;
    let mut next_sample = start;
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        sleep_until(scheduled);
        let request = Request::new(vec![OwnedTensor::f32([1, FEATURES], &row)]);
        match batcher.try_submit(request) {
            Ok(ticket) => tx.send((scheduled, ticket)).map_err(|e| e.to_string())?,
            Err(_) => rejected += 1,
        }
        let now = Instant::now();
        if now >= next_sample {
            let depth = batcher.stats().queue_depth;
            depth_sum += depth;
            depth_samples += 1;
            depth_max = depth_max.max(depth);
            next_sample = now + Duration::from_millis(10);
        }
    }
    drop(tx);
    let (latencies_ms, last) = collector.join().map_err(|_| "the collector panicked")??;
    let stats = batcher.shutdown();
    let (executions, pad_ratio) = executions_and_padding(&[&dp], &before);
    Ok(Outcome {
        scheduled: total,
        completed: latencies_ms.len(),
        unserved: rejected,
        elapsed: last.saturating_duration_since(start),
        latencies_ms,
        batcher: Some((
            stats.mean_batch_rows().unwrap_or(0.0),
            depth_sum as f64 / depth_samples.max(1) as f64,
            depth_max,
        )),
        executions,
        pad_ratio,
    })
}

/// The one-forward-per-request modes: `POOL` callers, request `i` on `engines[i % len]`.
fn pool_run(engines: &[DataParallel], rate: f64, total: usize) -> BoxResult<Outcome> {
    let refs: Vec<&DataParallel> = engines.iter().collect();
    let before = counts_now(&refs);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(5);
    let give_up = start + interval.mul_f64(total as f64) + GRACE;
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let last = Mutex::new(start);
    let mut latencies_ms = Vec::with_capacity(total);
    std::thread::scope(|scope| -> BoxResult {
        let handles: Vec<_> = (0..POOL)
            .map(|_| {
                let (next, stopped, last) = (&next, &stopped, &last);
                scope.spawn(move || -> Result<Vec<f64>, String> {
                    let x = ramp(FEATURES);
                    let mut y = vec![0f32; FEATURES];
                    let shape = [1, FEATURES];
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total || stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        let scheduled = start + interval.mul_f64(i as f64);
                        sleep_until(scheduled);
                        if Instant::now() > give_up {
                            stopped.store(true, Ordering::Relaxed);
                            break;
                        }
                        engines[i % engines.len()]
                            .forward_into(
                                &[Input::f32(&shape, &x)],
                                &mut [Output::f32(&shape, &mut y)],
                            )
                            .map_err(|e| e.to_string())?;
                        let done = Instant::now();
                        mine.push((done - scheduled).as_secs_f64() * 1e3);
                        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                        *last = (*last).max(done);
                    }
                    Ok(mine)
                })
            })
            .collect();
        for handle in handles {
            latencies_ms.extend(handle.join().map_err(|_| "a caller thread panicked")??);
        }
        Ok(())
    })?;
    let last = *last.lock().unwrap_or_else(PoisonError::into_inner);
    let (executions, pad_ratio) = executions_and_padding(&refs, &before);
    Ok(Outcome {
        scheduled: total,
        completed: latencies_ms.len(),
        unserved: total - latencies_ms.len(),
        elapsed: last.saturating_duration_since(start),
        latencies_ms,
        batcher: None,
        executions,
        pad_ratio,
    })
}
