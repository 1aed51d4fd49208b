//! The Rust baseline the Python benchmarks (`bench/bench.py`) are measured against: the same
//! engine calls from Rust threads, on a mock NEFF the script writes.
//!
//! `reference NEFF MODE CORES ROWS THREADS SECONDS` where MODE is `overhead` (median and p90
//! µs per `forward_into`, one thread), `throughput` (rows/s from THREADS threads sharing
//! one engine) or `batcher` (THREADS client threads each submitting ROWS-row requests to one
//! `Batcher` with `max_delay` 1 ms, one at a time: requests/s and latency) or `open` (an open
//! loop: ROWS-row requests submitted to one `Batcher` at THREADS requests per second for
//! SECONDS, each timed from its scheduled submit time; a request the full queue refused counts
//! as never served). Prints one JSON object. Run without arguments (as `cargo test --all-targets`
//! does), it only checks that it was built.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, Ticket};
use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::{Neff, Runtime};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}: {:?}", args[i]))
}

fn run(args: &[String]) -> Result<String, Box<dyn std::error::Error>> {
    let neff: String = arg(args, 0, "NEFF")?;
    let mode: String = arg(args, 1, "MODE")?;
    let cores: i64 = arg(args, 2, "CORES")?;
    let rows: usize = arg(args, 3, "ROWS")?;
    let threads: usize = arg(args, 4, "THREADS")?;
    let seconds: f64 = arg(args, 5, "SECONDS")?;
    let runtime = Runtime::init()?;
    let neff = Neff::from_path(neff.as_ref())?;
    let config = Config::default().device_indices((0..cores).collect::<Vec<_>>());
    let engine = Arc::new(DataParallel::new(&runtime, &neff, config)?);
    let features = engine.spec().inputs[0].shape[1..].iter().product::<usize>();
    let shape = [rows, features];
    let duration = Duration::from_secs_f64(seconds);
    if mode == "overhead" {
        let x = vec![0.5f32; rows * features];
        let mut y = vec![0f32; rows * features];
        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed() < duration || samples.len() < 100 {
            let t = Instant::now();
            engine.forward_into(
                &[Input::f32(&shape, &x)],
                &mut [Output::f32(&shape, &mut y)],
            )?;
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        return Ok(format!(
            "{{\"calls\": {}, \"median_us\": {:.3}, \"p90_us\": {:.3}}}",
            samples.len(),
            at(0.5),
            at(0.9)
        ));
    }
    if mode == "batcher" {
        return batcher(engine, rows, features, threads, duration);
    }
    if mode == "open" {
        return open_loop(engine, rows, features, threads as f64, duration);
    }
    let start = Instant::now();
    let calls: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let engine = &engine;
                scope.spawn(move || {
                    let x = vec![0.5f32; rows * features];
                    let mut y = vec![0f32; rows * features];
                    let mut calls = 0;
                    while start.elapsed() < duration {
                        let inputs = [Input::f32(&shape, &x)];
                        let mut outputs = [Output::f32(&shape, &mut y)];
                        if engine.forward_into(&inputs, &mut outputs).is_ok() {
                            calls += 1;
                        }
                    }
                    calls
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let total: usize = calls.iter().sum();
    Ok(format!(
        "{{\"calls\": {total}, \"rows_per_s\": {:.1}}}",
        (total * rows) as f64 / elapsed
    ))
}

/// The Rust side of the Python batcher benchmark: `threads` closed-loop clients.
fn batcher(
    engine: Arc<DataParallel>,
    rows: usize,
    features: usize,
    threads: usize,
    duration: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let batcher = Batcher::new(
        engine,
        BatcherConfig::default().max_delay(Duration::from_millis(1)),
    )?;
    let start = Instant::now();
    let latencies: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let batcher = &batcher;
                scope.spawn(move || {
                    let x = vec![0.5f32; rows * features];
                    let mut latencies = Vec::new();
                    while start.elapsed() < duration {
                        let t = Instant::now();
                        let request = Request::new(vec![OwnedTensor::f32([rows, features], &x)]);
                        let done = batcher.submit(request).map(|ticket| ticket.wait());
                        if matches!(done, Ok(Ok(_))) {
                            latencies.push(t.elapsed().as_nanos() as f64 / 1000.0);
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
    if all.is_empty() {
        return Err("no request completed".into());
    }
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    let stats = batcher.shutdown();
    Ok(format!(
        "{{\"requests\": {}, \"requests_per_s\": {:.1}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \
         \"mean_batch_rows\": {:.2}}}",
        all.len(),
        all.len() as f64 / elapsed,
        at(0.5),
        at(0.99),
        stats.mean_batch_rows().unwrap_or(0.0)
    ))
}

/// Records when a request completed: the batcher's thread wakes it as it fills the ticket.
struct Completion {
    at: OnceLock<Instant>,
}

impl Wake for Completion {
    fn wake(self: Arc<Self>) {
        let _ = self.at.set(Instant::now());
    }
}

/// Latency from the scheduled time, by the waker's clock (no collector thread in the way).
fn open_loop(
    engine: Arc<DataParallel>,
    rows: usize,
    features: usize,
    rate: f64,
    duration: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    let batcher = Batcher::new(
        engine,
        BatcherConfig::default().max_delay(Duration::from_millis(1)),
    )?;
    let total = (rate * duration.as_secs_f64()) as usize;
    let x = vec![0.5f32; rows * features];
    // (scheduled, the ticket unless it completed at once, its completion time, whether it
    // completed at once without an error)
    let mut submitted: Vec<(Instant, Option<Ticket>, Arc<Completion>, bool)> =
        Vec::with_capacity(total);
    let mut refused = 0usize;
    let start = Instant::now() + Duration::from_millis(10);
    let mut next = 0;
    while next < total {
        let now = Instant::now();
        let due = if now < start {
            0
        } else {
            ((now.duration_since(start).as_secs_f64() * rate) as usize + 1).min(total)
        };
        while next < due {
            let scheduled = start + Duration::from_secs_f64(next as f64 / rate);
            let request = Request::new(vec![OwnedTensor::f32([rows, features], &x)]);
            let Ok(mut ticket) = batcher.try_submit(request) else {
                refused += 1;
                next += 1;
                continue;
            };
            let completion = Arc::new(Completion {
                at: OnceLock::new(),
            });
            let waker = Waker::from(Arc::clone(&completion));
            match Pin::new(&mut ticket).poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(outcome) => {
                    let _ = completion.at.set(Instant::now());
                    submitted.push((scheduled, None, completion, outcome.is_ok()));
                }
                Poll::Pending => submitted.push((scheduled, Some(ticket), completion, false)),
            }
            next += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut latencies = Vec::with_capacity(submitted.len());
    let mut failed = 0usize;
    for (scheduled, ticket, completion, done_ok) in submitted {
        let ok = match ticket {
            Some(ticket) => ticket.wait().is_ok(),
            None => done_ok,
        };
        match completion.at.get() {
            Some(at) if ok => {
                latencies.push(at.duration_since(scheduled).as_nanos() as f64 / 1000.0)
            }
            _ => failed += 1,
        }
    }
    let unserved = refused + failed;
    latencies.sort_by(f64::total_cmp);
    // Unserved requests are infinitely late.
    let at = |q: f64| {
        let i = ((total.max(1) - 1) as f64 * q) as usize;
        latencies.get(i).copied().unwrap_or(f64::INFINITY)
    };
    let p99 = at(0.99);
    Ok(format!(
        "{{\"rate\": {rate}, \"requests\": {total}, \"unserved\": {unserved}, \"p50_us\": {:.1}, \
         \"p99_us\": {}}}",
        at(0.5),
        if p99.is_finite() {
            format!("{p99:.1}")
        } else {
            "null".to_owned()
        }
    ))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        println!("reference: built (run by dataparallel/python/bench/bench.py)");
        return std::process::ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
