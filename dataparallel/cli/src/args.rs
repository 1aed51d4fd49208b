//! The command line: subcommands and options (clap derive). Parsing only; no I/O here.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dataparallel::Config;
use neuron_dp_cli::limits::{self, BenchOptions, MAX_RATE, MAX_SECONDS, ServeOptions};
use neuron_rt::DeviceIds;

/// The JSON report schemas, shown by `--help` (the README has the same text).
pub(crate) const JSON_HELP: &str = "\
JSON output (--json): one object on stdout; every object has \"schema\": \"neuron-dp/1\" and
\"command\". Durations are milliseconds (f64), rates per second (f64).

  info:  {schema, command:\"info\", library, runtime_version, mock, lnc, total_cores,
          total_physical_cores, visible_cores, visible_physical_cores,
          core_map:[{logical, physical, physical_cores:[N]}] | null, env:{NAME: value | null}}
  run:   {schema, command:\"run\", model, runtime, engine, rows,
          chunks:[{chunk, logical_core, device, physical_core, start, rows, pieces,
                   pad_rows, time_ms}],
          totals:{chunks, rows, pieces, pad_rows, wall_ms}, throughput_rows_per_s,
          outputs:[{name, dtype, shape, path}]}
  bench: {schema, command:\"bench\", model, runtime, engine, batch, warmup_iterations,
          iterations, elapsed_s, throughput_rows_per_s, throughput_batches_per_s,
          latency_ms:{min, mean, p50, p90, p99, max}, rows_executed, pad_rows, pad_ratio,
          cores:[{logical_core, device, physical_core, executions, busy_ms, busy_share,
                  failures, busy_retries, piece_p50_us, piece_p99_us, state:\"healthy\"|\"quarantined\", consecutive_failures,
                  last_status: str|null}]}
          With --serve, the same object plus \"serve\"; batch is the rows per request,
          iterations the requests completed, latency_ms counts from each request's scheduled
          time, throughput_batches_per_s is requests per second:
          serve:{rate_per_s, request_rows, max_delay_us, max_batch_rows, queue_capacity,
                 batches_in_flight, pack,
                 requests_scheduled, requests_completed, requests_rejected,
                 throughput_requests_per_s, batches, mean_batch_rows,
                 batch_rows:[{min, max, count}], queue_depth:{max, mean, samples},
                 batcher_latency_ms:{p50, p99} | null}
  verify: {schema, command:\"verify\", model, runtime, topology:{lnc, total_cores,
           visible_cores, total_physical_cores}, inputs:\"random\"|\"files\", rows,
           seed | null, reference:\"expected\"|\"nc:N\"|null,
           cores:[{logical_core, device, physical_core, result, error | null,
                   status | null, mismatch:{output, element} | null}],
           engine:{devices:[\"nc:N\"], result, error | null, status | null,
                   mismatch | null}, passed, summary}
          result: \"agrees\" | \"differs\" | \"failed\" (error and status say why).
  model:   {path, name, inputs:[{name, dtype, shape}], outputs:[{name, dtype, shape}]}
  runtime: {library, version, mock}
  busy_share = busy_ms / elapsed: above 1 when several workers per core overlap.
  busy_retries = executions the runtime refused (NRT_EXEC_NC_BUSY, NRT_QUEUE_FULL) and the
  engine retried after a short back-off; they never count toward quarantine.
  engine:  {devices:[\"nc:N\"], physical_cores:[N | null], dim, dynamic_batching,
            split_size | null, num_workers}

Exit status: 0 success; 2 bad input or usage (files, names, dtypes, shapes, device ids,
numbers); 1 runtime failure (no libnrt, a core failed; the message names the core).";

/// Data-parallel inference over AWS NeuronCores: run a compiled model (NEFF) on every core
/// this process owns.
#[derive(Debug, Parser)]
#[command(
    name = "neuron-dp",
    version,
    after_long_help = JSON_HELP,
    after_help = "Without hardware: `cargo xtask demo` runs everything on the mock libnrt \
                  (NRT_DYLIB_PATH points at it). See --help for the JSON schemas and exit codes."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the runtime library, its version, the cores (logical -> physical) and the Neuron
    /// environment settings in effect.
    Info(InfoArgs),
    /// Load a model on the cores, run a batch of inputs (.npy files) and write one .npy per
    /// model output, with a per-chunk report and the throughput.
    Run(RunArgs),
    /// Run repeated forwards over random inputs and report throughput, latency percentiles
    /// and how busy each core was.
    Bench(BenchArgs),
    /// Check an installation: load the model on every core, run the same batch on each core
    /// alone and then through the engine, and check that all agree bit for bit (and with the
    /// known outputs given). Exit status 0 only if all agree.
    Verify(VerifyArgs),
    /// Serve models over HTTP (the Open Inference Protocol, KServe v2): runs
    /// `neuron-dp-server serve` with these arguments, found next to neuron-dp or on PATH.
    /// `neuron-dp serve --help` shows the server's options.
    #[command(disable_help_flag = true)]
    Serve(ServeArgs),
}

/// `neuron-dp serve`'s arguments: the server's, passed on untouched.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// `neuron-dp-server serve`'s arguments (models, --port, --help...).
    #[arg(
        value_name = "ARGS",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub(crate) args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// Print one JSON object on stdout instead of text (schema in --help).
    #[arg(long)]
    pub(crate) json: bool,
}

/// The engine's knobs, shared by `run` and `bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EngineArgs {
    /// The cores to replicate the model on: `nc:0,nc:1` or `0,1` (zero-based within
    /// NEURON_RT_VISIBLE_CORES). Default: every core this process owns.
    #[arg(long, value_name = "LIST", value_parser = parse_device_ids)]
    pub(crate) device_ids: Option<DeviceIds>,
    /// The dimension to split inputs and concatenate outputs along.
    #[arg(long, value_name = "D", default_value_t = 0)]
    pub(crate) dim: usize,
    /// Require exactly cores x compiled batch rows instead of running any batch size as
    /// zero-padded pieces of the compiled batch.
    #[arg(long)]
    pub(crate) no_dynamic_batching: bool,
    /// Rows per chunk (chunks go to cores round-robin). Default: split evenly over the cores.
    #[arg(long, value_name = "S")]
    pub(crate) split_size: Option<NonZeroUsize>,
    /// Worker threads in total, at most 64 per core. Default: 2 per core.
    #[arg(long, value_name = "W")]
    pub(crate) num_workers: Option<NonZeroUsize>,
    /// Run each batch as whole compiled batches (ceil(rows / compiled batch) executions,
    /// only the last one padded, each on the next core in turn) instead of one padded chunk
    /// per core. Not with --split-size.
    #[arg(long, conflicts_with = "split_size")]
    pub(crate) pack: bool,
}

impl EngineArgs {
    /// The engine configuration these options describe.
    pub(crate) fn config(&self) -> Config {
        let mut config = Config::default()
            .dim(self.dim)
            .dynamic_batching(!self.no_dynamic_batching);
        if let Some(ids) = &self.device_ids {
            config = config.device_ids(ids.clone());
        }
        if let Some(split) = self.split_size {
            config = config.split_size(split.get());
        }
        if let Some(workers) = self.num_workers {
            config = config.num_workers(workers.get());
        }
        config.pack(self.pack)
    }
}

fn parse_device_ids(text: &str) -> Result<DeviceIds, String> {
    DeviceIds::parse_list(text).map_err(|e| e.to_string())
}

/// One `--input NAME=FILE.npy` (or `--input FILE.npy` for a one-input model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputArg {
    /// The model input's name, when given.
    pub(crate) name: Option<String>,
    /// The .npy file.
    pub(crate) path: PathBuf,
}

fn parse_input(text: &str) -> Result<InputArg, String> {
    match text.split_once('=') {
        Some((name, path)) => {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!(
                    "{text:?} has an empty input name; use NAME=FILE.npy"
                ));
            }
            if path.is_empty() {
                return Err(format!(
                    "{text:?} has an empty file name; use NAME=FILE.npy"
                ));
            }
            Ok(InputArg {
                name: Some(name.to_owned()),
                path: PathBuf::from(path),
            })
        }
        None if text.is_empty() => Err("empty --input; use NAME=FILE.npy".to_owned()),
        None => Ok(InputArg {
            name: None,
            path: PathBuf::from(text),
        }),
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The compiled model (.neff). Several NEFFs of the same model compiled at different
    /// batch sizes are batch-size buckets: each chunk runs as the least padded pieces.
    #[arg(value_name = "NEFF", required = true, num_args = 1..)]
    pub(crate) neffs: Vec<PathBuf>,
    /// A model input and the .npy file holding it (C order; any batch size on --dim).
    /// Repeat for each input; a one-input model also takes a bare FILE.npy.
    #[arg(
        long = "input",
        short = 'i',
        value_name = "NAME=FILE.npy",
        required = true,
        value_parser = parse_input
    )]
    pub(crate) inputs: Vec<InputArg>,
    /// Where to write `<output name>.npy` for each model output (created if missing). Files
    /// appear only when the whole run succeeded.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub(crate) out_dir: PathBuf,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Print one JSON object on stdout instead of the text report (schema in --help).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The compiled model (.neff).
    #[arg(value_name = "NEFF")]
    pub(crate) neff: PathBuf,
    /// Run these inputs (.npy, as for `run`) instead of a random batch. Repeat for each input.
    #[arg(long = "input", short = 'i', value_name = "NAME=FILE.npy", value_parser = parse_input)]
    pub(crate) inputs: Vec<InputArg>,
    /// The outputs the inputs must give (.npy; every model output, bit for bit), e.g. files
    /// `neuron-dp run` wrote on a host known to be good. Needs --input.
    #[arg(
        long = "expected",
        value_name = "NAME=FILE.npy",
        value_parser = parse_input,
        requires = "inputs"
    )]
    pub(crate) expected: Vec<InputArg>,
    /// Rows of the random batch. Default: cores x the model's compiled batch.
    #[arg(long, value_name = "N", conflicts_with = "inputs")]
    pub(crate) batch: Option<NonZeroUsize>,
    /// Seed of the random batch.
    #[arg(long, default_value_t = 0, conflicts_with = "inputs")]
    pub(crate) seed: u64,
    /// The cores to check: `nc:0,nc:1` or `0,1`. Default: every core this process owns.
    #[arg(long, value_name = "LIST", value_parser = parse_device_ids)]
    pub(crate) device_ids: Option<DeviceIds>,
    /// Print one JSON object on stdout instead of the text report (schema in --help).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The compiled model (.neff); several are batch-size buckets, as for `run`.
    #[arg(value_name = "NEFF", required = true, num_args = 1..)]
    pub(crate) neffs: Vec<PathBuf>,
    /// Rows per forward on --dim. Default: cores x the model's compiled batch.
    #[arg(long, value_name = "N", conflicts_with = "serve")]
    pub(crate) batch: Option<NonZeroUsize>,
    /// Run for this long (default 5 s when --iterations is not given). With --serve: the
    /// length of the request schedule (rate x seconds requests).
    #[arg(long, value_name = "S", value_parser = parse_seconds, conflicts_with = "iterations")]
    pub(crate) seconds: Option<Duration>,
    /// Run exactly this many forwards (after one warm-up forward; at most 10^7). With
    /// --serve: this many requests.
    #[arg(long, value_name = "I")]
    pub(crate) iterations: Option<NonZeroUsize>,
    /// Serving mode: an open-loop load of requests at --rate through the request batcher
    /// (requests are issued on a fixed schedule whatever the completions do; latency counts
    /// from each request's scheduled time). Reports throughput, latency percentiles, the
    /// batcher's queue depth and batch sizes, padding and the per-core table.
    #[arg(long, requires = "rate")]
    pub(crate) serve: bool,
    /// With --serve: requests per second.
    #[arg(long, value_name = "R", requires = "serve", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// With --serve: rows per request, at most --max-batch-rows [default: 1].
    #[arg(long, value_name = "N", requires = "serve")]
    pub(crate) request_rows: Option<NonZeroUsize>,
    /// With --serve: the longest a batch waits to fill, in microseconds, at most 10^7 (10 s)
    /// [default: 1000].
    #[arg(long, value_name = "D", requires = "serve")]
    pub(crate) max_delay_us: Option<u64>,
    /// With --serve: most rows per batch [default: cores x the model's compiled batch].
    #[arg(long, value_name = "M", requires = "serve")]
    pub(crate) max_batch_rows: Option<NonZeroUsize>,
    /// With --serve: batches that may run at once (at most 64); the next forms while one
    /// runs [default: 2].
    #[arg(long, value_name = "B", requires = "serve")]
    pub(crate) batches_in_flight: Option<NonZeroUsize>,
    /// With --serve: run the batcher's batches with the engine's split (one padded chunk
    /// per core, or as --split-size/--pack say) instead of packing them into whole compiled
    /// batches.
    #[arg(long, requires = "serve")]
    pub(crate) unpacked: bool,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Print one JSON object on stdout instead of the text summary (schema in --help).
    #[arg(long)]
    pub(crate) json: bool,
}

impl BenchArgs {
    /// The sizes and counts given, for [`limits::bench_plan`] and [`limits::serve_plan`].
    pub(crate) fn options(&self) -> BenchOptions {
        let count = |n: Option<NonZeroUsize>| n.map(|n| n.get() as u64);
        BenchOptions {
            batch: count(self.batch),
            iterations: count(self.iterations),
            seconds: self.seconds,
            serve: self.serve.then(|| ServeOptions {
                // clap requires --rate with --serve; NaN is refused by the check if not.
                rate: self.rate.unwrap_or(f64::NAN),
                request_rows: count(self.request_rows),
                max_delay_us: self.max_delay_us,
                max_batch_rows: count(self.max_batch_rows),
                batches_in_flight: count(self.batches_in_flight),
            }),
        }
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of requests per second"))?;
    if limits::check_rate(rate).is_err() {
        return Err(format!(
            "{text:?} is out of range: give requests per second above 0 and at most {MAX_RATE:e}"
        ));
    }
    Ok(rate)
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if limits::check_seconds(seconds).is_err() {
        return Err(format!(
            "{text:?} is out of range: give seconds above 0 and at most {MAX_SECONDS}"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn inputs_parse_with_and_without_names() {
        assert_eq!(
            parse_input("x=a=b.npy").unwrap(),
            InputArg {
                name: Some("x".to_owned()),
                path: PathBuf::from("a=b.npy")
            }
        );
        assert_eq!(parse_input("a.npy").unwrap().name, None);
        assert!(parse_input("=a.npy").is_err());
        assert!(parse_input("x=").is_err());
    }

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        for bad in ["0", "-1", "nan", "inf", "x"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
