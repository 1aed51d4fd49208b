//! `neuron-dp-server serve MODEL.neff [--model NAME=PATH[,PATH...]]...`: serves compiled
//! models over the Open Inference Protocol until SIGTERM or Ctrl-C, then drains the requests
//! in flight and exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dataparallel::batcher::BatcherConfig;
use dataparallel::quote::quote;
use dataparallel::{Config, DataParallel};
use neuron_dp_server::{MAX_MODELS, ModelConfig, Server, ServerConfig, check_model_name};
use neuron_rt::{DeviceIds, Neff, Runtime};

#[derive(Debug, Parser)]
#[command(
    name = "neuron-dp-server",
    version,
    about = "Serve compiled models (NEFFs) over the Open Inference Protocol (KServe v2)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MODEL.neff (several NEFFs of one model: batch-size buckets) and each --model
    /// over HTTP.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// A compiled model; several are batch-size buckets of that one model.
    #[arg(value_name = "MODEL.neff", required_unless_present = "models")]
    neffs: Vec<PathBuf>,
    /// The name in URLs of the model given as MODEL.neff. Default: the first NEFF's file
    /// stem.
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,
    /// One more model: its name in URLs and its NEFF, or several comma-separated NEFFs
    /// (batch-size buckets of that model). Repeat for each model; every model gets its own
    /// engine and batcher on the same cores. Names: letters, digits, '-', '_', '.', '~'.
    #[arg(
        long = "model",
        value_name = "NAME=PATH[,PATH...]",
        value_parser = parse_model
    )]
    models: Vec<ModelArg>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The cores to replicate every model on: `nc:0,nc:1` or `0,1`. Default: every core this
    /// process owns.
    #[arg(long, value_name = "LIST", value_parser = parse_device_ids)]
    device_ids: Option<DeviceIds>,
    /// Worker threads per model, over its cores. Default: 2 per core.
    #[arg(long, value_name = "W")]
    num_workers: Option<NonZeroUsize>,
    /// Most rows per batch (and per request), for every model. Default: cores x compiled
    /// batch of each model.
    #[arg(long, value_name = "ROWS")]
    max_batch_rows: Option<NonZeroUsize>,
    /// Longest a batch waits to fill, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 1000)]
    max_delay_us: u64,
    /// Requests each model's queue holds; more are answered 503 at once.
    #[arg(long, value_name = "N", default_value = "1024")]
    queue_capacity: NonZeroUsize,
    /// Run each batch with the engine's split (one chunk per core, each padded to the
    /// compiled batch) instead of packing it into whole compiled batches.
    #[arg(long)]
    unpacked: bool,
    /// Inference requests whose bodies may be read and parsed at once, over every model; one
    /// more is answered 503 at once (bounds the memory of requests not yet queued).
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

/// A `--model NAME=PATH[,PATH...]`.
#[derive(Debug, Clone)]
struct ModelArg {
    name: String,
    neffs: Vec<PathBuf>,
}

fn parse_model(text: &str) -> Result<ModelArg, String> {
    let Some((name, paths)) = text.split_once('=') else {
        return Err("give a model as NAME=PATH (or NAME=PATH,PATH for buckets)".to_owned());
    };
    if paths.split(',').any(str::is_empty) {
        return Err(format!(
            "model {} has an empty path; give NAME=PATH[,PATH...] with no empty entry",
            quote(name)
        ));
    }
    Ok(ModelArg {
        name: name.to_owned(),
        neffs: paths.split(',').map(PathBuf::from).collect(),
    })
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

/// The models to serve, checked: the positional NEFFs (if any) first, named by
/// `--model-name` or the first file's stem, then each `--model`; names valid and distinct,
/// at most [`MAX_MODELS`].
fn models(args: &ServeArgs) -> Result<Vec<ModelArg>, String> {
    let mut models = Vec::with_capacity(args.models.len().saturating_add(1).min(MAX_MODELS));
    if let Some(first) = args.neffs.first() {
        let (name, from_stem) = match &args.model_name {
            Some(name) => (name.clone(), false),
            None => (
                first
                    .file_stem()
                    .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned()),
                true,
            ),
        };
        if let Err(e) = check_model_name(&name) {
            return Err(if from_stem {
                format!("{e} (the name comes from the file name; give --model-name NAME)")
            } else {
                e.to_string()
            });
        }
        models.push(ModelArg {
            name,
            neffs: args.neffs.clone(),
        });
    } else if args.model_name.is_some() {
        return Err(
            "--model-name names the model given as MODEL.neff and none is given; \
                    with --model, write the name as NAME=PATH"
                .to_owned(),
        );
    }
    for model in &args.models {
        if models.len() >= MAX_MODELS {
            return Err(format!(
                "{} models given; a server serves at most {MAX_MODELS}, serve the others from \
                 another server",
                args.models.len() + usize::from(!args.neffs.is_empty())
            ));
        }
        check_model_name(&model.name).map_err(|e| e.to_string())?;
        if models.iter().any(|m| m.name == model.name) {
            return Err(format!(
                "two models are named {}; give each --model (and --model-name) its own name",
                quote(&model.name)
            ));
        }
        models.push(model.clone());
    }
    Ok(models)
}

fn serve(args: ServeArgs) -> Result<(), String> {
    // Names and counts first, before any file is read or the runtime starts.
    let models = models(&args)?;
    let runtime = Runtime::init().map_err(|e| {
        format!(
            "cannot start the Neuron runtime: {e} (set NRT_DYLIB_PATH to libnrt.so.1 or the mock)"
        )
    })?;
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
    let mut batcher = BatcherConfig::default()
        .max_delay(Duration::from_micros(args.max_delay_us))
        .queue_capacity(args.queue_capacity.get())
        .pack(!args.unpacked);
    if let Some(rows) = args.max_batch_rows {
        batcher = batcher.max_batch_rows(rows.get());
    }
    let timeout = args.timeout_ms.map(Duration::from_millis);
    // With one model its errors need no name; with several, each says which.
    let several = models.len() > 1;
    let named = |name: &str, e: String| {
        if several {
            format!("model {}: {e}", quote(name))
        } else {
            e
        }
    };
    let mut server: Option<Server> = None;
    for model in &models {
        let neffs = model
            .neffs
            .iter()
            .map(|p| Neff::from_path(p).map_err(|e| named(&model.name, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = Arc::new(
            DataParallel::with_buckets(&runtime, &neffs, config.clone())
                .map_err(|e| named(&model.name, e.to_string()))?,
        );
        match &mut server {
            None => {
                server = Some(
                    Server::new(
                        engine,
                        ServerConfig::new(model.name.clone())
                            .batcher(batcher.clone())
                            .request_timeout(timeout)
                            .max_reading(args.max_reading),
                    )
                    .map_err(|e| named(&model.name, e.to_string()))?,
                );
            }
            Some(server) => server
                .add_model(
                    engine,
                    ModelConfig::new(model.name.clone())
                        .batcher(batcher.clone())
                        .request_timeout(timeout),
                )
                .map_err(|e| named(&model.name, e.to_string()))?,
        }
    }
    let server = server.ok_or("no model to serve; give MODEL.neff or --model NAME=PATH")?;
    let names: Vec<String> = server.model_names().map(str::to_owned).collect();

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
            for name in &names {
                log::info!("serving model {name:?} on http://{address}/v2/models/{name}");
            }
        }
        let drained = neuron_dp_server::serve(server, listener, shutdown_signal())
            .await
            .map_err(|e| format!("the server failed: {e}"))?;
        for model in drained {
            log::info!(
                "model {:?} stopped: {} requests completed in {} batches, {} turned away \
                 (queue full)",
                model.name,
                model.stats.completed,
                model.stats.batches,
                model.stats.rejected_full
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
