//! `cargo xtask bench --only http` (and part of `cargo xtask bench`): the HTTP server's
//! open-loop load test beside the in-process batcher.
//!
//! Runs `cargo bench -p neuron-dp-server --bench http_load` (a release build of the server
//! binary and the load generator, `dataparallel/server/benches/http_load.rs`) on the
//! release mock with the suite's environment ([`bench::mock_env`]: 24 cores, a private
//! `NRT_MOCK_LOCK_DIR`, no fault or core-narrowing variables), which the server it starts
//! inherits. The bench prints its tables and writes JSON to `json`, whose path is its last
//! line of stdout. `--quick` runs three rates of 0.5 s.

use std::path::Path;
use std::time::Duration;

use crate::bench;
use crate::util::{self, TaskResult};

/// Upper bound on the load test, its release build included.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The task, on the release mock `library`, writing its JSON results to `json`.
pub(crate) fn run(root: &Path, quick: bool, library: &Path, json: &Path) -> TaskResult {
    let locks = util::temp_dir("neuron-dp-http-bench-locks-")?;
    let mut command = util::cargo_command(root);
    command
        .args([
            "bench",
            "--package",
            "neuron-dp-server",
            "--bench",
            "http_load",
            "--",
        ])
        .arg("--json")
        .arg(json);
    if quick {
        command.arg("--quick");
    }
    bench::mock_env(&mut command, library, locks.path());
    util::run_with_timeout(&mut command, TIMEOUT)?;
    if !json.is_file() {
        return Err(format!(
            "the HTTP load test finished but wrote no results to {}",
            json.display()
        ));
    }
    Ok(())
}
