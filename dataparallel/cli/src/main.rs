//! `neuron-dp`: data-parallel inference over AWS NeuronCores from the command line.
//!
//! | Subcommand | Module | |
//! |---|---|---|
//! | `info` | [`info`] | library, version, cores (logical → physical), Neuron environment |
//! | `run` | [`run`] | `.npy` inputs → model on every core → `.npy` outputs and a report |
//! | `bench` | [`bench`](mod@bench) | repeated forwards: throughput, latency percentiles, core busy share |
//! | `bench --serve` | [`serve`] | open-loop requests through the batcher: latency from the schedule, queue depth, batch sizes |
//! | `verify` | [`verify`] | every core alone and the engine agree bit for bit |
//! | `serve` | [`server`] | runs `neuron-dp-server serve` (the HTTP server) in this process's place |
//!
//! Exit status: 0 success; 2 bad input or usage; 1 runtime failure. Engine and runtime
//! errors get theirs from [`dataparallel::ErrorKind`] in [`exit_code`], the one place (the
//! table is in the README). Errors are one line on stderr, `neuron-dp: error: ...`. Logging goes to stderr through `env_logger` (`RUST_LOG`,
//! default `warn`).

mod args;
mod bench;
mod info;
mod report;
mod run;
mod serve;
mod server;
mod verify;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use dataparallel::quote::one_line;
use neuron_rt::{Neff, Runtime};

use crate::args::{Cli, Command};

/// Why a subcommand failed, and so the exit status.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input or usage: exit status 2.
    Usage(String),
    /// The runtime or a core failed: exit status 1.
    Runtime(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

/// The result of a subcommand.
pub(crate) type CliResult<T = ()> = Result<T, Failure>;

/// The exit status for each kind of engine error: 2 for bad input (what the user supplied
/// and the engine or the runtime rejected as invalid), 1 for the runtime, the hardware or
/// the system failing.
pub(crate) fn exit_code(kind: dataparallel::ErrorKind) -> u8 {
    if kind.is_bad_input() { 2 } else { 1 }
}

impl Failure {
    /// The failure for an engine error: its kind decides the exit status.
    fn from_engine(error: &dataparallel::Error) -> Failure {
        let message = one_line(&error.to_string());
        match exit_code(error.kind()) {
            2 => Failure::Usage(message),
            _ => Failure::Runtime(message),
        }
    }
}

/// Initialises the runtime; a missing library is one line pointing at the fix.
pub(crate) fn runtime() -> CliResult<Runtime> {
    Runtime::init().map_err(|error| match error {
        neuron_rt::Error::Load(ref load) => {
            let tried: Vec<String> = load
                .attempts()
                .iter()
                .map(|a| a.path.display().to_string())
                .collect();
            let message = if load.from_env() {
                let reason = load
                    .attempts()
                    .first()
                    .map(|a| one_line(&a.reason))
                    .unwrap_or_default();
                format!(
                    "cannot load the Neuron runtime from NRT_DYLIB_PATH={} ({reason}); point \
                     NRT_DYLIB_PATH at libnrt.so.1 or the mock (`cargo xtask mock-build` prints \
                     its path), or try `cargo xtask demo`",
                    tried.join(", ")
                )
            } else if load.is_missing_symbols() {
                format!(
                    "the Neuron runtime library found ({}) lacks required functions; install a \
                     current aws-neuronx-runtime-lib or set NRT_DYLIB_PATH",
                    tried.join(", ")
                )
            } else {
                format!(
                    "no Neuron runtime library (libnrt) found (tried {}); install \
                     aws-neuronx-runtime-lib, or set NRT_DYLIB_PATH to the mock library \
                     (`cargo xtask demo` builds it and runs neuron-dp on it)",
                    tried.join(", ")
                )
            };
            Failure::Runtime(message)
        }
        neuron_rt::Error::VisibleCores(_)
        | neuron_rt::Error::DeviceId(_)
        | neuron_rt::Error::CoreEnv { .. } => Failure::Usage(one_line(&error.to_string())),
        _ => Failure::Runtime(one_line(&error.to_string())),
    })
}

/// Reads and checks the NEFF files (several: batch-size buckets).
pub(crate) fn neffs(paths: &[std::path::PathBuf]) -> CliResult<Vec<Neff>> {
    paths
        .iter()
        .map(|path| {
            Neff::from_path(path).map_err(|e| Failure::from_engine(&dataparallel::Error::from(e)))
        })
        .collect()
}

/// Sorts an engine error into bad input (2) or a runtime failure (1), by its kind.
pub(crate) fn engine_failure(error: &dataparallel::Error) -> Failure {
    Failure::from_engine(error)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0, usage errors exit 2 (clap's convention).
        Err(error) => error.exit(),
    };
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Serve(args) => server::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Not `eprintln!`, which panics when stderr cannot be written (closed or full):
            // the exit code still says what happened.
            let _ = writeln!(std::io::stderr(), "neuron-dp: error: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use dataparallel::ErrorKind;

    /// The shared table of kind → exit code → C status (the C column is checked by the C
    /// ABI's tests).
    const TABLE: [(ErrorKind, u8, &str); 15] = include!("../../capi/tests/error_kinds.in");

    #[test]
    fn exit_codes_follow_the_kind_table() {
        for kind in ErrorKind::ALL {
            let row = TABLE
                .iter()
                .find(|(k, _, _)| *k == kind)
                .unwrap_or_else(|| panic!("{kind:?} is missing from the table"));
            assert_eq!(super::exit_code(kind), row.1, "{kind:?}");
        }
    }
}
