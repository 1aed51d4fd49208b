//! `cargo xtask bench --only http`: an open-loop HTTP load on `neuron-dp-server` over the
//! mock libnrt, beside the same load on the request batcher in this process.
//!
//! The model is the engine suite's serving scenario's (`dataparallel/benches/suite/
//! serving.rs`): `affine {2, 1}` over float32 rows of 16 values, compiled batch 8, 1 ms per
//! execution, on 8 cores. For each [`Setting`] (server flags and the same options for the
//! in-process batcher) the bench starts the release server binary on 127.0.0.1 and a free
//! port, builds an engine on 8 cores of its own, and then, at each rate in increasing order,
//! runs the same open-loop schedule three ways ([`Transport`]): on the batcher in process,
//! and over HTTP with JSON and with binary tensor bodies. A transport stops after two rates
//! in a row that it did not sustain. Latency runs from each request's scheduled time; unserved
//! and failed requests count as infinitely late (`schedule`); the server's batching comes
//! from its `GET /metrics` before and after each run.
//!
//! | module | owns |
//! |---|---|
//! | `schedule` | the open-loop plan, a run's outcome, percentiles, "sustained" |
//! | `body` | request bodies (JSON, binary) and the check of the answers |
//! | `client` | the HTTP generator: dispatcher thread, connection pool, answers |
//! | `server` | the server child process: start, address, readiness, metrics, stop |
//! | `metrics` | batches, rows and pad rows from `GET /metrics`; mean batch rows, pad ratio |
//! | `cpu` | a process's CPU time, for the CPU each side spent per request |
//! | `machine` | the machine record of the results (`dataparallel/benches/suite/machine.rs`, shared with the engine suite) |
//! | `tables` | the tables and their JSON records (`dataparallel/benches/suite/tables.rs`, shared with the engine suite) |
//! | `in_process` | the same load on the batcher in this process |
//! | `report` | the run's Markdown page (machine line and tables) and its JSON file |
//!
//! Arguments (after `--`): `--quick` (3 rates of 0.5 s), `--json PATH` (default
//! `target/bench/http.json`), `--rates 1000,2000` (requests/s), `--seconds S` (per run),
//! `--connections N` (the HTTP pool). `cargo bench` adds `--bench`; without it (`cargo
//! test --all-targets`) the bench measures nothing and exits: a load test is never a test.
//!
//! Environment: `NRT_DYLIB_PATH` (the release mock); `cargo xtask bench` also sets a private
//! `NRT_MOCK_LOCK_DIR`, `NRT_MOCK_TOTAL_CORES=24` and clears the fault variables, which the
//! server inherits. The bench takes mock cores 0-7 and gives the server 8-15.

#[path = "http_load/body.rs"]
mod body;
#[path = "http_load/client.rs"]
mod client;
#[path = "http_load/cpu.rs"]
mod cpu;
#[path = "http_load/in_process.rs"]
mod in_process;
/// The machine record, shared with the engine suite.
#[path = "../../benches/suite/machine.rs"]
mod machine;
#[path = "http_load/metrics.rs"]
mod metrics;
#[path = "http_load/report.rs"]
mod report;
#[path = "http_load/schedule.rs"]
mod schedule;
#[path = "http_load/server.rs"]
mod server;
/// The result tables, shared with the engine suite.
#[path = "../../benches/suite/tables.rs"]
mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataparallel::batcher::BatcherConfig;
use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};
use serde_json::json;

use body::{Bodies, Encoding, FEATURES};
use metrics::Batching;
use report::Report;
use schedule::{Outcome, P99_LIMIT_MS, Plan};
use server::ServerProcess;

/// A server and batcher setting to measure: a row of each table per transport. Both sides
/// start from the same base (`BASE_SERVER_FLAGS`, [`base_engine`], [`base_batcher`]);
/// a setting adds its server flags and the same options in process. Adding a row to the
/// comparison is adding one line to [`SETTINGS`], e.g.
/// `setting("split", &["--unpacked"], |c| c, |b| b.pack(false))`.
struct Setting {
    name: &'static str,
    /// Added to `neuron-dp-server serve`'s flags.
    server_flags: &'static [&'static str],
    /// The same options on the in-process engine's configuration...
    engine: fn(Config) -> Config,
    /// ...and on its batcher's.
    batcher: fn(BatcherConfig) -> BatcherConfig,
}

/// A setting: its name, the server flags it adds, and the same options on the in-process
/// engine's and batcher's configurations.
const fn setting(
    name: &'static str,
    server_flags: &'static [&'static str],
    engine: fn(Config) -> Config,
    batcher: fn(BatcherConfig) -> BatcherConfig,
) -> Setting {
    Setting {
        name,
        server_flags,
        engine,
        batcher,
    }
}

/// The settings measured, one line each.
const SETTINGS: &[Setting] = &[
    setting("packed (default)", &[], |c| c, |b| b),
    setting("split", &["--unpacked"], |c| c, |b| b.pack(false)),
];

/// The server's batcher flags every setting starts from (its defaults, spelled out so that
/// the in-process side below can be seen to match them).
const BASE_SERVER_FLAGS: &[&str] = &["--max-delay-us", "1000", "--queue-capacity", "1024"];

/// The in-process engine configuration every setting starts from: what `neuron-dp-server
/// serve` builds (spreading small calls over the cores; default workers).
fn base_engine() -> Config {
    Config::default().spread_small_calls(true)
}

/// The in-process batcher configuration every setting starts from: as `BASE_SERVER_FLAGS`
/// (max delay 1 ms, queue 1024; max batch rows cores × compiled batch and two batches in
/// flight, the defaults of both).
fn base_batcher() -> BatcherConfig {
    BatcherConfig::default()
        .max_delay(Duration::from_micros(1000))
        .queue_capacity(1024)
}

/// How a run's requests reach the batcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    InProcess,
    Http(Encoding),
}

impl Transport {
    fn name(self) -> String {
        match self {
            Transport::InProcess => "in process".to_owned(),
            Transport::Http(encoding) => format!("HTTP, {}", encoding.name()),
        }
    }
}

const TRANSPORTS: [Transport; 3] = [
    Transport::InProcess,
    Transport::Http(Encoding::Json),
    Transport::Http(Encoding::Binary),
];

/// The model, as the engine suite's serving scenario.
const CORES: usize = 8;
const COMPILED_BATCH: u32 = 8;
const EXEC_US: u64 = 1000;
const MODEL: &str = "bench_affine";
/// The mock cores this process and the server own (disjoint: a mock core has one owner).
const OWN_CORES: &str = "0-7";
const SERVER_CORES: &str = "8-15";

/// Rates and seconds per run, full and `--quick`.
const FULL_RATES: &[f64] = &[
    1e3, 2e3, 4e3, 8e3, 12e3, 16e3, 24e3, 32e3, 40e3, 48e3, 56e3, 64e3,
];
const QUICK_RATES: &[f64] = &[2e3, 8e3, 32e3];
const FULL_SECONDS: f64 = 1.5;
const QUICK_SECONDS: f64 = 0.5;
/// Most rates one run may sweep.
const MAX_RATES: usize = 64;
/// HTTP connections by default: R × latency in flight, 256 covers 64 000 req/s at 4 ms.
const DEFAULT_CONNECTIONS: usize = 256;
/// A transport stops after this many rates in a row it did not sustain.
const FAILURES_TO_STOP: usize = 2;
/// The warm-up run before each HTTP transport (not reported): 100 requests at 1000/s.
const WARM_RATE: f64 = 1000.0;
const WARM_SECONDS: f64 = 0.1;

type BoxResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Debug)]
struct Args {
    bench: bool,
    quick: bool,
    json: PathBuf,
    rates: Vec<f64>,
    seconds: f64,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut bench = false;
    let mut quick = false;
    let mut json = None;
    let mut rates = None;
    let mut seconds = None;
    let mut connections = DEFAULT_CONNECTIONS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(value("a path")?)),
            "--rates" => {
                let list = value("a list of requests/s, e.g. 1000,2000")?;
                let parsed: Vec<f64> = list
                    .split(',')
                    .map(|r| {
                        r.trim()
                            .parse::<f64>()
                            .map_err(|_| format!("--rates: {r:?} is not a number of requests/s"))
                    })
                    .collect::<Result<_, _>>()?;
                if parsed.is_empty() || parsed.len() > MAX_RATES {
                    return Err(format!("--rates: give 1 to {MAX_RATES} rates"));
                }
                rates = Some(parsed);
            }
            "--seconds" => {
                let text = value("a duration in seconds")?;
                seconds = Some(
                    text.parse::<f64>()
                        .map_err(|_| format!("--seconds: {text:?} is not a number"))?,
                );
            }
            "--connections" => {
                let text = value("a count")?;
                connections = text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=client::MAX_CONNECTIONS).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "--connections: {text:?}; give 1 to {}",
                            client::MAX_CONNECTIONS
                        )
                    })?;
            }
            // libtest-style flags cargo may pass (e.g. a filter from `cargo test NAME`).
            _ => {}
        }
    }
    let rates = rates.unwrap_or_else(|| if quick { QUICK_RATES } else { FULL_RATES }.to_vec());
    let seconds = seconds.unwrap_or(if quick { QUICK_SECONDS } else { FULL_SECONDS });
    // Every run's size is bounded before anything is allocated.
    for &rate in &rates {
        Plan::new(rate, seconds)?;
    }
    let json = json.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/http.json")
    });
    Ok(Args {
        bench,
        quick,
        json,
        rates,
        seconds,
        connections,
    })
}

fn main() -> BoxResult {
    let args = parse_args()?;
    if !args.bench {
        println!(
            "http_load: a benchmark, not a test; nothing measured (run `cargo xtask bench --only http`)"
        );
        return Ok(());
    }
    if std::env::var_os("NRT_DYLIB_PATH").is_none() {
        return Err(
            "NRT_DYLIB_PATH is unset; run `cargo xtask bench --only http`, which \
                    builds the release mock and sets it"
                .into(),
        );
    }
    // SAFETY: the first thing the bench does, before any thread is started or the mock is
    // loaded, so nothing can be reading the environment concurrently.
    unsafe { std::env::set_var("NEURON_RT_VISIBLE_CORES", OWN_CORES) };
    let started = Instant::now();
    let runtime = Runtime::init()?;
    if runtime.visible_cores() as usize != CORES {
        return Err(format!(
            "the mock gave this process {} cores, not {CORES} ({OWN_CORES}); set \
             NRT_MOCK_TOTAL_CORES to at least 16",
            runtime.visible_cores()
        )
        .into());
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let model = MockModel::new(
        MODEL,
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[COMPILED_BATCH, FEATURES as u32])
    .output("y", DType::Float32, &[COMPILED_BATCH, FEATURES as u32])
    .exec_us(EXEC_US);
    model.validate()?;
    let dir = tempfile::Builder::new()
        .prefix("neuron-dp-http-load-")
        .tempdir()?;
    let neff_path = dir.path().join(format!("{MODEL}.neff"));
    model.write_neff(&neff_path)?;
    let neff = Neff::from_bytes(model.to_neff_bytes())?;
    let exe = Path::new(env!("CARGO_BIN_EXE_neuron-dp-server"));

    let mut report = Report::new(json!({
        "mode": if args.quick { "quick" } else { "full" },
        "server": exe.display().to_string(),
        "mock": runtime.library_path().display().to_string(),
        "cores": CORES,
        "compiled_batch": COMPILED_BATCH,
        "exec_us": EXEC_US,
        "connections": args.connections,
        "schedule_s": args.seconds,
        "rates_per_s": args.rates,
    }));
    report.section(
        "HTTP 1. Open-loop single-row requests, k = 8, exec_us 1000, compiled batch 8: \
         neuron-dp-server over HTTP and the batcher in process; latency from the scheduled time",
        &[
            "setting",
            "transport",
            "rate req/s",
            "seconds",
            "scheduled",
            "completed",
            "unserved (turned away)",
            "errors",
            "req/s done",
            "p50 ms",
            "p99 ms",
            "max ms",
            "send lag p99 ms",
            "mean batch rows",
            "pad ratio",
            "server CPU µs/req",
            "client CPU µs/req",
        ],
    );
    let mut best: Vec<(String, String, Option<f64>, Vec<f64>)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for setting in SETTINGS {
        let flags: Vec<&str> = BASE_SERVER_FLAGS
            .iter()
            .chain(setting.server_flags)
            .copied()
            .collect();
        let server = ServerProcess::start(
            &tokio,
            exe,
            &neff_path,
            MODEL,
            &flags,
            &[("NEURON_RT_VISIBLE_CORES", SERVER_CORES)],
        )?;
        eprintln!(
            "http_load: setting {:?}: server on {} with {}",
            setting.name,
            server.target().addr(),
            flags.join(" ")
        );
        let engine = Arc::new(DataParallel::new(
            &runtime,
            &neff,
            (setting.engine)(base_engine()).device_indices((0..CORES as i64).collect::<Vec<i64>>()),
        )?);
        warm(&engine)?;
        let batcher = (setting.batcher)(base_batcher());
        let bodies: Vec<(Transport, Arc<Bodies>)> = TRANSPORTS
            .iter()
            .map(|&t| {
                let encoding = match t {
                    Transport::InProcess => Encoding::Binary,
                    Transport::Http(encoding) => encoding,
                };
                (t, Arc::new(Bodies::new(encoding, "x", "y")))
            })
            .collect();
        for (transport, bodies) in &bodies {
            if matches!(transport, Transport::Http(_)) {
                let plan = Plan::new(WARM_RATE, WARM_SECONDS)?;
                let warm = client::run(&tokio, server.target(), bodies, plan, 8)?;
                if warm.completed() != warm.scheduled {
                    return Err(format!(
                        "the warm-up over {} answered {} of {} requests correctly: {}",
                        transport.name(),
                        warm.completed(),
                        warm.scheduled,
                        warm.first_error.as_deref().unwrap_or("turned away")
                    )
                    .into());
                }
            }
        }
        let mut sustained: Vec<Option<f64>> = vec![None; TRANSPORTS.len()];
        let mut tried: Vec<Vec<f64>> = vec![Vec::new(); TRANSPORTS.len()];
        let mut failures_in_a_row = vec![0usize; TRANSPORTS.len()];
        for &rate in &args.rates {
            let plan = Plan::new(rate, args.seconds)?;
            for (t, (transport, bodies)) in bodies.iter().enumerate() {
                if failures_in_a_row[t] >= FAILURES_TO_STOP {
                    continue;
                }
                let own_before = cpu::cpu_time(None);
                let server_before = cpu::cpu_time(Some(server.pid()));
                let (outcome, batching) = match transport {
                    Transport::InProcess => {
                        in_process::run(&engine, batcher.clone(), bodies, plan)?
                    }
                    Transport::Http(_) => {
                        let before = Batching::from_metrics(&server.metrics(&tokio)?)?;
                        let outcome =
                            client::run(&tokio, server.target(), bodies, plan, args.connections)?;
                        let after = Batching::from_metrics(&server.metrics(&tokio)?)?;
                        (outcome, after.since(&before))
                    }
                };
                let own = spent(own_before, cpu::cpu_time(None), &outcome);
                let server_cpu = spent(server_before, cpu::cpu_time(Some(server.pid())), &outcome);
                // In process, this process is the server side (batcher, engine, mock) and its
                // own client; over HTTP, the server process and this one (the generator).
                let cpu = match transport {
                    Transport::InProcess => Cpu {
                        server_us: own,
                        client_us: None,
                    },
                    Transport::Http(_) => Cpu {
                        server_us: server_cpu,
                        client_us: own,
                    },
                };
                tried[t].push(rate);
                if outcome.sustained() {
                    failures_in_a_row[t] = 0;
                    sustained[t] = Some(sustained[t].map_or(rate, |s: f64| s.max(rate)));
                } else {
                    failures_in_a_row[t] += 1;
                }
                if let Some(first) = &outcome.first_error {
                    errors.push(format!(
                        "{}, {}, {rate:.0} req/s: {} errors, the first: {first}",
                        setting.name,
                        transport.name(),
                        outcome.errors
                    ));
                }
                row(
                    &mut report,
                    setting.name,
                    *transport,
                    plan,
                    &outcome,
                    &batching,
                    cpu,
                );
            }
        }
        let last = server.stop()?;
        eprintln!("http_load: server stopped: {last}");
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            best.push((
                setting.name.to_owned(),
                transport.name(),
                sustained[t],
                tried[t].clone(),
            ));
        }
    }
    report.note(format!(
        "Unserved = turned away (queue full: 503 over HTTP, a refused try_submit in process) \
         or not sent within 0.5 s after the schedule ended; errors = a wrong status, body or \
         value, or no answer within {:?}. Both count as infinitely late, so p99 is \"inf\" \
         when over 1 % were unserved or failed. req/s done = completed / (first scheduled \
         time to last completion). Send lag = due time to the request's submission (in process) \
         or to its sending on a free connection (HTTP): the generator's own share of the \
         latency. HTTP: {} keep-alive connections, one request at a time \
         each; mean batch rows and pad ratio (pad rows / executed rows) from the server's \
         GET /metrics before and after the run. CPU µs/req = CPU time (user + system, all \
         threads) over the run per completed request: server = the server process over HTTP, \
         this whole process in process (batcher, engine, mock, submitter and collector); \
         client = this process, the generator, over HTTP (its own engine is idle then). \
         Generator and server share this machine's CPUs.",
        client::RESPONSE_TIMEOUT,
        args.connections
    ));
    for error in errors {
        report.note(error);
    }
    report.section(
        "HTTP 2. The highest rate each transport sustains with p99 < 10 ms",
        &[
            "setting",
            "transport",
            "highest rate req/s (p99 < 10 ms)",
            "rates tried req/s",
        ],
    );
    for (setting, transport, rate, tried) in best {
        report.row(
            vec![
                setting.clone(),
                transport.clone(),
                rate.map_or_else(|| "none".to_owned(), |r| format!("{r:.0}")),
                tried
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
            json!({
                "scenario": "http_sustained",
                "setting": setting,
                "transport": transport,
                "p99_limit_ms": P99_LIMIT_MS,
                "schedule_s": args.seconds,
                "rates_tried": tried,
                "highest_sustained_rate_per_s": rate,
            }),
        );
    }
    report.note(format!(
        "A transport stops after {FAILURES_TO_STOP} rates in a row it did not sustain."
    ));
    let elapsed = started.elapsed();
    println!("{}", report.table(elapsed));
    report.write_json(&args.json, elapsed)?;
    println!("{}", args.json.display());
    Ok(())
}

/// A few forwards so that stations, queues and the engine's moving averages are warm.
fn warm(engine: &DataParallel) -> BoxResult {
    let x = body::row(0);
    let mut y = vec![0f32; FEATURES];
    let shape = [1, FEATURES];
    for _ in 0..3 {
        engine.forward_into(
            &[Input::f32(&shape, &x)],
            &mut [Output::f32(&shape, &mut y)],
        )?;
    }
    Ok(())
}

/// CPU µs per completed request, server side and client side, of one run.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    server_us: Option<f64>,
    client_us: Option<f64>,
}

/// CPU µs per completed request between two readings of a process's CPU time.
fn spent(before: Option<Duration>, after: Option<Duration>, outcome: &Outcome) -> Option<f64> {
    let spent = after?.checked_sub(before?)?;
    Some(spent.as_secs_f64() * 1e6 / outcome.completed().max(1) as f64)
}

/// One run's row and JSON record.
fn row(
    report: &mut Report,
    setting: &str,
    transport: Transport,
    plan: Plan,
    outcome: &Outcome,
    batching: &Batching,
    cpu: Cpu,
) {
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let p50 = outcome.quantile(0.5);
    let p99 = outcome.quantile(0.99);
    let max = outcome.quantile(1.0);
    let finite = |v: f64| v.is_finite().then_some(v);
    let ms = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else if v.is_nan() {
            "-".to_owned()
        } else {
            "inf".to_owned()
        }
    };
    report.row(
        vec![
            setting.to_owned(),
            transport.name(),
            format!("{:.0}", plan.rate()),
            format!("{:.2}", outcome.elapsed.as_secs_f64()),
            outcome.scheduled.to_string(),
            outcome.completed().to_string(),
            format!("{} ({})", outcome.unserved, outcome.turned_away),
            outcome.errors.to_string(),
            format!("{:.0}", outcome.throughput()),
            ms(p50),
            ms(p99),
            ms(max),
            ms(outcome.send_lag(0.99)),
            batching
                .mean_batch_rows()
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}")),
            batching
                .pad_ratio()
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
            us(cpu.server_us),
            us(cpu.client_us),
        ],
        json!({
            "scenario": "http_serving",
            "setting": setting,
            "transport": transport.name(),
            "k": CORES,
            "exec_us": EXEC_US,
            "compiled_batch": COMPILED_BATCH,
            "rate_per_s": plan.rate(),
            "elapsed_s": outcome.elapsed.as_secs_f64(),
            "scheduled": outcome.scheduled,
            "completed": outcome.completed(),
            "unserved": outcome.unserved,
            "turned_away": outcome.turned_away,
            "errors": outcome.errors,
            "first_error": outcome.first_error,
            "throughput_per_s": outcome.throughput(),
            "p50_ms": finite(p50),
            "p99_ms": finite(p99),
            "max_ms": finite(max),
            "send_lag_p50_ms": finite(outcome.send_lag(0.5)),
            "send_lag_p99_ms": finite(outcome.send_lag(0.99)),
            "batches": batching.batches,
            "rows": batching.rows,
            "pad_rows": batching.pad_rows,
            "mean_batch_rows": batching.mean_batch_rows(),
            "pad_ratio": batching.pad_ratio(),
            "server_cpu_us_per_request": cpu.server_us,
            "client_cpu_us_per_request": cpu.client_us,
        }),
    );
}
