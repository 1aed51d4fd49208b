//! `cargo xtask python-bench [--quick] [--baseline-package DIR]`: the Python front-end's benchmarks
//! (`dataparallel/python/bench/bench.py`) against the same engine calls from Rust
//! (`dataparallel/python/benches/reference.rs`), on the release mock with 24 cores.
//!
//! Builds the release mock and the Rust baseline, installs the package into the test
//! virtualenv (as `cargo xtask python-test` does), then runs the script, which prints the
//! tables `BENCHMARKS.md` shows and a JSON line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{self, TaskResult};
use crate::{mock_build, python_test};

/// How long the benchmark script may run.
const BENCH_TIMEOUT: Duration = Duration::from_secs(600);

/// The Rust baseline's executable, built in release (the `bench` profile).
fn reference(root: &Path) -> TaskResult<PathBuf> {
    let mut command = util::cargo_command(root);
    command.args([
        "bench",
        "-p",
        "neuron-dp-python",
        "--bench",
        "reference",
        "--no-run",
        "--message-format=json",
    ]);
    let out = util::output(&mut command)?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message
                .pointer("/target/name")
                .and_then(serde_json::Value::as_str)
                == Some("reference")
        })
        .find_map(|message| {
            message
                .get("executable")
                .and_then(serde_json::Value::as_str)
                .map(PathBuf::from)
        })
        .ok_or_else(|| "cargo bench --no-run did not report the reference executable".to_owned())
}

/// The task.
pub(crate) fn run(root: &Path, quick: bool, baseline_package: Option<&Path>) -> TaskResult {
    let library = mock_build::build(root, true)?;
    let baseline = reference(root)?;
    let python = python_test::prepare(root)?;
    let lock_dir = util::temp_dir("nrt-mock-locks-")?;
    let mut command = Command::new(python);
    command
        .current_dir(root.join("dataparallel/python"))
        .arg("bench/bench.py")
        .arg("--reference")
        .arg(baseline);
    if quick {
        command.arg("--quick");
    }
    if let Some(dir) = baseline_package {
        let dir = std::path::absolute(dir)
            .map_err(|e| format!("bad --baseline-package {}: {e}", dir.display()))?;
        if !dir.join("neuron_dp").is_dir() {
            return Err(format!(
                "--baseline-package {}: no neuron_dp package in it; make one with `pip install \
                 --no-deps --target DIR ./dataparallel/python` at the commit to compare",
                dir.display()
            ));
        }
        command.arg("--baseline-package").arg(dir);
    }
    for var in nrt_mock::testing::CLEARED {
        command.env_remove(var);
    }
    command
        .env("NRT_DYLIB_PATH", &library)
        .env("NRT_MOCK_TOTAL_CORES", "24")
        .env("NRT_MOCK_LOCK_DIR", lock_dir.path());
    util::run_with_timeout(&mut command, BENCH_TIMEOUT)
}
