//! Serving: many client threads send small requests; a [`Batcher`] coalesces them into
//! batches on one engine.
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example serving
//! ```
//!
//! 8 client threads each send 400 requests of 1 to 4 rows (keeping 4 in flight) to a
//! batcher over the mock's `affine` model (compiled batch 8) on 4 cores, then the example
//! prints throughput, latency percentiles and the batch-size histogram, and checks every
//! result. Exits 1 with the error's message on any failure.

mod common;

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dataparallel::batcher::{Batcher, BatcherConfig, OwnedTensor, Request, Ticket};
use dataparallel::{Config, DataParallel};
use neuron_rt::Runtime;
use nrt_mock::neff::{DType, MockModel, Op};

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 400;
const IN_FLIGHT: usize = 4;
const FEATURES: usize = 16;
const SCALE: f32 = 2.0;
const BIAS: f32 = 1.0;

fn main() -> ExitCode {
    common::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error + Send + Sync>> {
    let model = MockModel::new(
        "affine",
        Op::Affine {
            scale: SCALE,
            bias: BIAS,
        },
    )
    .input("x", DType::Float32, &[8, FEATURES as u32])
    .output("y", DType::Float32, &[8, FEATURES as u32])
    .exec_us(300);
    let neff = common::mock_neff(&model)?;
    let runtime = Runtime::init()?;
    let engine = Arc::new(DataParallel::new(
        &runtime,
        &neff,
        Config::default().device_list("nc:0,nc:1,nc:2,nc:3"),
    )?);
    // Default max_batch_rows: 4 cores x compiled batch 8 = 32, one full piece per core.
    let batcher = Batcher::new(
        engine,
        BatcherConfig::default()
            .max_delay(Duration::from_millis(1))
            .queue_capacity(256)
            .default_deadline(Some(Duration::from_secs(5))),
    )?;
    println!(
        "{CLIENTS} clients x {REQUESTS_PER_CLIENT} requests of 1-4 rows, {IN_FLIGHT} in flight \
         each; max_batch_rows {}, max_delay 1 ms, 4 cores",
        batcher.max_batch_rows()
    );

    let started = Instant::now();
    let rows: usize = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let batcher = &batcher;
                scope.spawn(move || client_loop(batcher, client))
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().map_err(|_| "a client panicked")?)
            .sum::<Result<usize, Box<dyn Error + Send + Sync>>>()
    })?;
    let wall = started.elapsed();
    let stats = batcher.shutdown();

    let requests = CLIENTS * REQUESTS_PER_CLIENT;
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    println!(
        "{requests} requests ({rows} rows) in {:.0} ms: {:.0} requests/s, {:.0} rows/s",
        wall.as_secs_f64() * 1e3,
        requests as f64 / wall.as_secs_f64(),
        rows as f64 / wall.as_secs_f64()
    );
    println!(
        "latency p50 {:.2} ms, p99 {:.2} ms; mean queue wait {:.2} ms",
        ms(stats.latency_p50()),
        ms(stats.latency_p99()),
        ms(stats.mean_queue_wait())
    );
    println!(
        "{} batches, {:.1} rows and {:.1} requests per batch on average; expired {}, failed {}",
        stats.batches,
        stats.mean_batch_rows().unwrap_or(0.0),
        stats.batch_requests.mean().unwrap_or(0.0),
        stats.expired,
        stats.failed
    );
    println!("rows per batch:");
    let most = stats.batch_rows.buckets().map(|b| b.2).max().unwrap_or(1);
    for (lower, upper, count) in stats.batch_rows.buckets() {
        let label = if lower == upper {
            lower.to_string()
        } else {
            format!("{lower}-{upper}")
        };
        let bar = "#".repeat(((count * 50).div_ceil(most)) as usize);
        println!("  {label:>5} {count:>5} {bar}");
    }
    if stats.completed != requests as u64 {
        return Err(format!("{} of {requests} requests completed", stats.completed).into());
    }
    Ok(())
}

/// One client: sends its requests keeping `IN_FLIGHT` outstanding, checks every result, and
/// returns the rows it sent.
fn client_loop(batcher: &Batcher, client: usize) -> Result<usize, Box<dyn Error + Send + Sync>> {
    let mut pending: Vec<(Ticket, Vec<f32>)> = Vec::with_capacity(IN_FLIGHT);
    let mut rows_sent = 0;
    for i in 0..REQUESTS_PER_CLIENT {
        let rows = 1 + (client * 7 + i) % 4;
        let x: Vec<f32> = (0..rows * FEATURES)
            .map(|j| ((client * REQUESTS_PER_CLIENT + i) * 64 + j) as f32)
            .collect();
        let request = Request::new(vec![OwnedTensor::f32([rows, FEATURES], &x)]);
        let ticket = batcher
            .submit_timeout(request, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        rows_sent += rows;
        pending.push((ticket, x));
        if pending.len() == IN_FLIGHT {
            let (ticket, x) = pending.remove(0);
            check(ticket, &x)?;
        }
    }
    for (ticket, x) in pending {
        check(ticket, &x)?;
    }
    Ok(rows_sent)
}

fn check(ticket: Ticket, x: &[f32]) -> Result<(), Box<dyn Error + Send + Sync>> {
    let response = ticket.wait()?;
    let y = response.outputs[0]
        .to_vec::<f32>()
        .ok_or("float32 output")?;
    let want: Vec<f32> = x.iter().map(|v| v * SCALE + BIAS).collect();
    if y != want {
        return Err("a request got rows that are not its own".into());
    }
    Ok(())
}
