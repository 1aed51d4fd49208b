//! `neuron-dp-server serve MODEL.neff`: serves a compiled model over the Open Inference
//! Protocol until SIGTERM or Ctrl-C, then drains the requests in flight and exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dataparallel::batcher::BatcherConfig;
use dataparallel::{Config, DataParallel};
use neuron_dp_server::{Server, ServerConfig};
use neuron_rt::{DeviceIds, Neff, Runtime};

#[derive(Debug, Parser)]
#[command(
    name = "neuron-dp-server",
    version,
    about = "Serve a compiled model (NEFF) over the Open Inference Protocol (KServe v2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MODEL.neff (several NEFFs of one model: batch-size buckets) over HTTP.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The compiled model(s).
    #[arg(required = true, value_name = "MODEL.neff")]
    neffs: Vec<PathBuf>,
    /// The model's name in URLs. Default: the first NEFF's file stem.
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The cores to replicate the model on: `nc:0,nc:1` or `0,1`. Default: every core this
    /// process owns.
    #[arg(long, value_name = "LIST", value_parser = parse_device_ids)]
    device_ids: Option<DeviceIds>,
    /// Worker threads in total. Default: 2 per core.
    #[arg(long, value_name = "W")]
    num_workers: Option<NonZeroUsize>,
    /// Most rows per batch (and per request). Default: cores x compiled batch.
    #[arg(long, value_name = "ROWS")]
    max_batch_rows: Option<NonZeroUsize>,
    /// Longest a batch waits to fill, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 1000)]
    max_delay_us: u64,
    /// Requests the queue holds; more are answered 503 at once.
    #[arg(long, value_name = "N", default_value = "1024")]
    queue_capacity: NonZeroUsize,
    /// Inference requests whose bodies may be read and parsed at once; one more is answered
    /// 503 at once (bounds the memory of requests not yet queued).
    #[arg(long, value_name = "N", default_value_t = neuron_dp_server::DEFAULT_MAX_READING)]
    max_reading: usize,
    /// Default request timeout in milliseconds (a request's own `timeout` parameter, in
    /// microseconds, wins). Default: none.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

fn parse_device_ids(text: &str) -> Result<DeviceIds, String> {
    DeviceIds::parse_list(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Not `eprintln!`, which panics when stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "neuron-dp-server: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let runtime = Runtime::init().map_err(|e| {
        format!(
            "cannot start the Neuron runtime: {e} (set NRT_DYLIB_PATH to libnrt.so.1 or the mock)"
        )
    })?;
    let neffs = args
        .neffs
        .iter()
        .map(|p| Neff::from_path(p).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    // The batcher's batches are often smaller than cores x compiled batch, and two may run
    // at once: spreading small calls puts them on different cores (and does not warn about
    // idle cores on every partial batch, which is normal when serving).
    let mut config = Config::default().spread_small_calls(true);
    if let Some(ids) = &args.device_ids {
        config = config.device_ids(ids.clone());
    }
    if let Some(workers) = args.num_workers {
        config = config.num_workers(workers.get());
    }
    let engine =
        Arc::new(DataParallel::with_buckets(&runtime, &neffs, config).map_err(|e| e.to_string())?);
    let name = args.model_name.clone().unwrap_or_else(|| {
        args.neffs[0]
            .file_stem()
            .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
    });
    let mut batcher = BatcherConfig::default()
        .max_delay(Duration::from_micros(args.max_delay_us))
        .queue_capacity(args.queue_capacity.get());
    if let Some(rows) = args.max_batch_rows {
        batcher = batcher.max_batch_rows(rows.get());
    }
    let server = Server::new(
        engine,
        ServerConfig::new(name.clone())
            .batcher(batcher)
            .request_timeout(args.timeout_ms.map(Duration::from_millis))
            .max_reading(args.max_reading),
    )
    .map_err(|e| e.to_string())?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let address: Option<SocketAddr> = listener.local_addr().ok();
        if let Some(address) = address {
            log::info!("serving model {name:?} on http://{address}/v2/models/{name}");
        }
        let stats = neuron_dp_server::serve(server, listener, shutdown_signal())
            .await
            .map_err(|e| format!("the server failed: {e}"))?;
        if let Some(stats) = stats {
            log::info!(
                "stopped: {} requests completed in {} batches, {} turned away (queue full)",
                stats.completed,
                stats.batches,
                stats.rejected_full
            );
        }
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                log::warn!("cannot watch for SIGTERM ({e}); stop the server with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
