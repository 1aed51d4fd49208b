//! `cargo xtask`: the project's development tasks (see `cargo xtask --help`).
//!
//! A plain binary crate run through the alias in `.cargo/config.toml`
//! (`xtask = "run --package xtask --"`). One module per task:
//!
//! | Command | Module | What it does |
//! |---|---|---|
//! | `mock-build [--release]` | [`mock_build`] | builds the mock libnrt; prints its path last |
//! | `mock-neff --out F ...` | [`mock_neff`] | writes a mock NEFF |
//! | `mock-test` | [`mock_test`] | every test and example against the mock (the test command) |
//! | `demo` | [`demo`] | the main job: `neuron-dp run` and `bench` on a demo NEFF over 24 mock cores |
//! | `bindgen [--check]` | [`bindgen`] | regenerates or checks `neuron-sys/src/bindings.rs` |
//! | `header [--check]` | [`header`] | regenerates or checks `dataparallel/capi/include/neuron_dp.h` |
//! | `c-tests` | [`c_tests`] | the C and C++ host programs against the mock |
//! | `python-bench [--quick]` | [`python_bench`] | the Python front-end's benchmarks against the same calls from Rust |
//! | `python-test` | [`python_test`] | builds the `neuron_dp` Python package in a virtualenv and runs its pytest suite on the mock |
//! | `ci` | [`ci`] | runs `.ci/run`, what CI runs |
//! | `fuzz [--seconds N] [TARGET...]` | [`fuzz`] | every fuzz target for a bounded time (nightly, cargo-fuzz) |
//! | `miri` | [`miri`] | the `plan`, `layout`, `queue`, `call` and `topology` tests and the C ABI's view construction under Miri (nightly) |
//! | `tsan` | [`tsan`] | the engine's queue and call tests and its concurrency, stress and health tests under ThreadSanitizer (nightly) |
//! | `bench [--quick] [--json PATH]` | [`bench`](mod@bench) | the engine's benchmark suite against the release mock |
//! | `bench --only http` | [`http_bench`] | the HTTP server's open-loop load test beside the in-process batcher |
//!
//! Errors are messages printed after `error:` with exit status 1; clap's usage errors exit 2.

mod bench;
mod bindgen;
mod c_tests;
mod ci;
mod demo;
mod fuzz;
mod header;
mod http_bench;
mod miri;
mod mock_build;
mod mock_neff;
mod mock_test;
mod python_bench;
mod python_test;
mod tsan;
mod util;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Development tasks for the neuron-dp workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the mock libnrt (crate nrt-mock) and print the absolute path of libnrt_mock.so
    /// as the last line of stdout.
    MockBuild {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Write a mock NEFF file that the mock libnrt can load.
    MockNeff(mock_neff::MockNeffArgs),
    /// Build the mock, then run every test, doctest and example of the workspace against it
    /// (and check the C header and run the C/C++ hosts). This is the project's test command.
    MockTest,
    /// The main job: build the mock and neuron-dp, write a ResNet-shaped demo NEFF and a
    /// batch of 64 to target/demo/, then `neuron-dp run` and `bench` over 24 mock cores.
    Demo,
    /// Regenerate neuron-sys/src/bindings.rs from neuron-sys/include/nrt_abi.h.
    Bindgen {
        /// Fail if the committed bindings differ from what the header generates (skipped,
        /// with a message, when libclang is not installed).
        #[arg(long)]
        check: bool,
    },
    /// Regenerate dataparallel/capi/include/neuron_dp.h (the C header) with cbindgen.
    Header {
        /// Fail if the committed header differs from what the sources generate, then check
        /// that it compiles alone as C99 and as C++17.
        #[arg(long)]
        check: bool,
    },
    /// Build libneuron_dp.so and the mock, then compile (cc, c++ and CMake) and run the C and
    /// C++ host programs in dataparallel/capi/tests/cpp/ against them.
    CTests,
    /// Create (or reuse) a virtualenv under target/, install the pinned test requirements
    /// and the neuron_dp Python package (pip install ./dataparallel/python), and run its
    /// pytest suite against the mock.
    PythonTest,
    /// Benchmark the neuron_dp Python package against the same engine calls from Rust
    /// (release mock, 24 cores): per-call overhead, threaded throughput, the batcher (closed
    /// loop and open-loop sweep).
    PythonBench {
        /// Shorter runs (about 40 s in all instead of 2 minutes).
        #[arg(long)]
        quick: bool,
        /// Also measure the per-call overhead and the batcher of the neuron_dp installed in
        /// DIR (`pip install --target DIR ./dataparallel/python` at another commit), in the
        /// same interleaved rounds: before/after comparisons from one run.
        #[arg(long, value_name = "DIR")]
        baseline_package: Option<PathBuf>,
    },
    /// Run what CI runs: fmt, clippy, doc, bindgen --check and mock-test.
    Ci,
    /// Run each fuzz target in fuzz/ for a bounded time against the mock (needs nightly and
    /// cargo-fuzz).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
    /// Run the plan, layout, queue, call and topology unit tests and the C ABI's view
    /// construction tests under Miri (needs nightly; installs miri).
    Miri,
    /// Run the engine's queue and call unit tests and its concurrency, stress and health
    /// integration tests under ThreadSanitizer, against a mock built the same way (needs
    /// nightly; installs rust-src).
    Tsan,
    /// Build the mock and the engine in release and run the benchmark suite against the mock
    /// (24 simulated cores); print the table and write JSON results (path: last stdout line).
    Bench {
        /// A reduced set that runs in under a minute.
        #[arg(long)]
        quick: bool,
        /// Where to write the JSON results (default: `<target>/bench/results.json`).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Only these scenarios (comma-separated: mock, scaling, overhead, copies,
        /// concurrent, overlap, serving; python for the Python front-end's benchmarks; http
        /// for the HTTP server's load test), for profiling one at a time.
        #[arg(long, value_name = "LIST")]
        only: Option<String>,
    },
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let result = match cli.command {
        Command::MockBuild { release } => mock_build::run(&root, release),
        Command::MockNeff(args) => mock_neff::run(&args),
        Command::MockTest => mock_test::run(&root),
        Command::Demo => demo::run(&root),
        Command::Bindgen { check } => bindgen::run(&root, check),
        Command::Header { check } => header::run(&root, check),
        Command::CTests => c_tests::run(&root),
        Command::PythonTest => python_test::run(&root),
        Command::PythonBench {
            quick,
            baseline_package,
        } => python_bench::run(&root, quick, baseline_package.as_deref()),
        Command::Ci => ci::run(&root),
        Command::Fuzz { seconds, targets } => fuzz::run(&root, seconds, &targets),
        Command::Miri => miri::run(&root),
        Command::Tsan => tsan::run(&root),
        Command::Bench { quick, json, only } => bench::run(&root, quick, json, only.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
