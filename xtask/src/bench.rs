//! `cargo xtask bench [--quick] [--json PATH] [--only LIST]`: the engine's benchmark suite
//! against the mock.
//!
//! Builds the mock libnrt in release, then runs `cargo bench -p dataparallel --bench suite`
//! (a release build of the engine) with `NRT_DYLIB_PATH` set to the release mock,
//! `NRT_MOCK_TOTAL_CORES=24` (inf2.48xlarge; the mock reads it at `nrt_init`), a private
//! `NRT_MOCK_LOCK_DIR` (so the run never contends for cores with tests or other processes)
//! and none of the variables that would narrow the cores or inject faults. The suite prints
//! its tables and writes JSON results, by default to `<target>/bench/results.json`; the path
//! is the last line of stdout. `--quick` runs a reduced set in under a minute; `--only scaling,overhead`
//! runs those scenarios (and the mock's own ceiling, which they compare against).
//!
//! Without `--only`, or with `python` in the list, it first runs the Python front-end's
//! benchmarks ([`python_bench`], the same as `cargo xtask python-bench [--quick]`: a
//! virtualenv with the pinned requirements, then the package against the same engine calls
//! from Rust).
//!
//! Numbers are only meaningful on a quiet machine: the suite prints the load average it
//! started under (see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{self, TaskResult};
use crate::{mock_build, python_bench};

/// The `--only` name of the Python front-end's benchmarks (`cargo xtask python-bench`).
const PYTHON: &str = "python";

/// Upper bound on the whole task, compilation included.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The task.
pub(crate) fn run(
    root: &Path,
    quick: bool,
    json: Option<PathBuf>,
    only: Option<&str>,
) -> TaskResult {
    // `python` in `--only` (or no `--only`) is the Python front-end's benchmarks, run first
    // so that the engine suite's JSON path stays the last line of stdout.
    let (python, only) = match only {
        None => (true, None),
        Some(list) => {
            let rest: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| *s != PYTHON)
                .collect();
            (rest.len() < list.split(',').count(), Some(rest.join(",")))
        }
    };
    if python {
        python_bench::run(root, quick, None)?;
    }
    if only.as_deref() == Some("") {
        return Ok(());
    }
    let only = only.as_deref();
    let library = mock_build::build(root, true)?;
    let metadata = util::metadata(root)?;
    let json = match json {
        Some(path) => path,
        None => util::target_dir(&metadata)?
            .join("bench")
            .join("results.json"),
    };
    let json = std::path::absolute(&json)
        .map_err(|error| format!("cannot make {} absolute: {error}", json.display()))?;
    if let Some(dir) = json.parent() {
        util::create_dir_all(dir)?;
    }
    let locks = tempfile::Builder::new()
        .prefix("neuron-dp-bench-locks-")
        .tempdir()
        .map_err(|error| format!("cannot create a lock directory for the mock: {error}"))?;

    let mut command = util::cargo_command(root);
    command
        .args([
            "bench",
            "--package",
            "dataparallel",
            "--bench",
            "suite",
            "--",
        ])
        .arg("--json")
        .arg(&json);
    if quick {
        command.arg("--quick");
    }
    if let Some(only) = only {
        command.args(["--only", only]);
    }
    // The variables that would narrow the cores or inject faults; the three set below are
    // in the list too and set after it.
    for name in nrt_mock::testing::CLEARED {
        command.env_remove(name);
    }
    command
        .env("NRT_DYLIB_PATH", &library)
        .env("NRT_MOCK_LOCK_DIR", locks.path())
        .env("NRT_MOCK_TOTAL_CORES", "24");
    util::run_with_timeout(&mut command, TIMEOUT)?;
    if !json.is_file() {
        return Err(format!(
            "the suite finished but wrote no results to {}",
            json.display()
        ));
    }
    eprintln!("benchmark results written; the table is above");
    println!("{}", json.display());
    Ok(())
}
