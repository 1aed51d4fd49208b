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
//! from Rust). Then, without `--only` or with `http` in the list, the HTTP server's
//! open-loop load test beside the in-process batcher ([`http_bench`]); its JSON goes beside
//! the suite's, `results.json` becoming `results-http.json`.
//!
//! Numbers are only meaningful on a quiet machine: the suite prints the load average it
//! started under (see BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{self, TaskResult};
use crate::{http_bench, mock_build, python_bench};

/// The `--only` name of the Python front-end's benchmarks (`cargo xtask python-bench`).
const PYTHON: &str = "python";
/// The `--only` name of the HTTP server's load test ([`http_bench`]).
const HTTP: &str = "http";

/// Upper bound on the whole task, compilation included.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The task.
pub(crate) fn run(
    root: &Path,
    quick: bool,
    json: Option<PathBuf>,
    only: Option<&str>,
) -> TaskResult {
    // `python` and `http` in `--only` (or no `--only`) are run here, before the engine suite,
    // so that the suite's JSON path stays the last line of stdout.
    let (python, http, only) = select(only);
    if python {
        python_bench::run(root, quick, None)?;
    }
    let suite = only.as_deref() != Some("");
    if !suite && !http {
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
    if http {
        http_bench::run(root, quick, &library, &http_json(&json))?;
    }
    if !suite {
        return Ok(());
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
    mock_env(&mut command, &library, locks.path());
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

/// What `--only` asks for: the Python benchmarks, the HTTP load test, and the engine
/// suite's scenarios (`None`: all of them; empty: none).
fn select(only: Option<&str>) -> (bool, bool, Option<String>) {
    let Some(list) = only else {
        return (true, true, None);
    };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    let rest: Vec<&str> = names
        .iter()
        .copied()
        .filter(|s| *s != PYTHON && *s != HTTP)
        .collect();
    (
        names.contains(&PYTHON),
        names.contains(&HTTP),
        Some(rest.join(",")),
    )
}

/// Runs `command` on the release mock `library` as every benchmark does: 24 cores, a
/// private lock directory `locks` (so a run never contends for cores with tests or other
/// processes), and none of the variables that would narrow the cores or inject faults.
pub(crate) fn mock_env(command: &mut Command, library: &Path, locks: &Path) {
    // The three set below are in the list too and set after it.
    for name in nrt_mock::testing::CLEARED {
        command.env_remove(name);
    }
    command
        .env("NRT_DYLIB_PATH", library)
        .env("NRT_MOCK_LOCK_DIR", locks)
        .env("NRT_MOCK_TOTAL_CORES", "24");
}

/// The HTTP load test's JSON path beside the suite's `json`: `results.json` becomes
/// `results-http.json`.
fn http_json(json: &Path) -> PathBuf {
    let stem = json
        .file_stem()
        .map_or_else(|| "results".into(), |s| s.to_string_lossy().into_owned());
    json.with_file_name(format!("{stem}-http.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_splits_the_python_and_http_benchmarks_from_the_suite_scenarios() {
        assert_eq!(select(None), (true, true, None));
        assert_eq!(select(Some("http")), (false, true, Some(String::new())));
        assert_eq!(
            select(Some("serving, http,python")),
            (true, true, Some("serving".to_owned()))
        );
        assert_eq!(
            select(Some("scaling,overhead")),
            (false, false, Some("scaling,overhead".to_owned()))
        );
    }

    #[test]
    fn the_http_results_go_beside_the_suite_results() {
        assert_eq!(
            http_json(Path::new("/t/bench/results.json")),
            Path::new("/t/bench/results-http.json")
        );
        assert_eq!(http_json(Path::new("out.json")), Path::new("out-http.json"));
    }
}
