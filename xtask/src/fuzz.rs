//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs every cargo-fuzz target in `fuzz/` for a
//! bounded time (default 30 s each) against the mock libnrt, and summarises executions and
//! crashes.
//!
//! Targets: `visible_cores`, `device_id`, `neff_header` (neuron-rt's parsers),
//! `mock_payload` (the mock's NEFF parser), `capi_tensors` (`ndp_engine_forward` with
//! fuzzed `ndp_tensor_t` descriptors on a real engine over the mock), `npy_reader` and
//! `bench_plan` (the CLI's `.npy` reader and argument-to-plan limits, from its
//! `neuron_dp_cli` lib) and `batcher_requests` (`Batcher::try_submit` with fuzzed requests on
//! a real engine over the mock). Needs the nightly
//! toolchain and cargo-fuzz; when either is missing the task says how to install it. Not
//! part of CI (the proptest twins of these targets are).
//!
//! Seeds are committed under `fuzz/corpus/<target>/seed-*`; the corpus libFuzzer grows is
//! written to `fuzz/target/corpus/<target>/` (ignored by git) and reused by the next run.
//! Crashes land in `fuzz/artifacts/<target>/` and fail the task; replay one with
//! `cargo +nightly fuzz run <target> <file>` in `fuzz/`. libFuzzer's output for each target
//! is kept in `fuzz/target/logs/<target>.log`.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::mock_build;
use crate::util::{self, Summary, TaskResult};

/// Every fuzz target, in the order they run.
pub(crate) const TARGETS: &[&str] = &[
    "visible_cores",
    "device_id",
    "neff_header",
    "mock_payload",
    "capi_tensors",
    "npy_reader",
    "bench_plan",
    "batcher_requests",
];

/// Fails with the install commands when nightly or cargo-fuzz is missing.
fn check_tools(root: &Path) -> TaskResult {
    let quiet = |mut command: Command| {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut version = util::nightly("cargo", root);
    version.arg("--version");
    if !quiet(version) {
        return Err(
            "the nightly toolchain is missing: install it with `rustup toolchain install \
             nightly` (cargo-fuzz needs nightly for libFuzzer and the sanitizers)"
                .to_owned(),
        );
    }
    let mut fuzz = util::nightly("cargo", root);
    fuzz.args(["fuzz", "--version"]);
    if !quiet(fuzz) {
        return Err("cargo-fuzz is missing: install it with `cargo install cargo-fuzz`".to_owned());
    }
    Ok(())
}

/// libFuzzer's `stat::number_of_executed_units` from a run's log, if it printed one.
fn executions(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The task.
pub(crate) fn run(root: &Path, seconds: u64, only: &[String]) -> TaskResult {
    for name in only {
        if !TARGETS.contains(&name.as_str()) {
            return Err(format!(
                "no fuzz target `{name}`; the targets are {}",
                TARGETS.join(", ")
            ));
        }
    }
    check_tools(root)?;
    let fuzz_dir = root.join("fuzz");
    let library = mock_build::build(root, false)?;
    let lock_dir =
        std::env::temp_dir().join(format!("neuron-dp-fuzz-locks-{}", std::process::id()));
    util::create_dir_all(&lock_dir)?;
    let logs = fuzz_dir.join("target").join("logs");
    util::create_dir_all(&logs)?;

    let mut build = util::nightly("cargo", &fuzz_dir);
    build.args(["fuzz", "build"]);
    util::run(&mut build)?;

    let mut summary = Summary::default();
    let targets = TARGETS
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == *t));
    for target in targets {
        let seeds = fuzz_dir.join("corpus").join(target);
        let grown = fuzz_dir.join("target").join("corpus").join(target);
        let log_path = logs.join(format!("{target}.log"));
        let mut executed = None;
        summary.step(format!("fuzz {target} for {seconds} s"), || {
            util::create_dir_all(&seeds)?;
            util::create_dir_all(&grown)?;
            let log = File::create(&log_path)
                .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
            let mut command = util::nightly("cargo", &fuzz_dir);
            command
                .args(["fuzz", "run", target])
                .arg(&grown)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-print_final_stats=1")
                .env("NRT_DYLIB_PATH", &library)
                .env("NRT_MOCK_LOCK_DIR", &lock_dir)
                .env("NRT_MOCK_TOTAL_CORES", "2")
                .stderr(Stdio::from(log));
            let result = util::run_with_timeout(
                &mut command,
                Duration::from_secs(seconds.saturating_add(900)),
            );
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            executed = executions(&text);
            if result.is_err() {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                for line in tail.iter().rev() {
                    eprintln!("  {line}");
                }
            }
            result.map_err(|e| {
                format!(
                    "{e}\n         libFuzzer log: {}; crash inputs: {}",
                    log_path.display(),
                    fuzz_dir.join("artifacts").join(target).display()
                )
            })
        });
        match executed {
            Some(n) => eprintln!("    {target}: {n} executions"),
            None => eprintln!(
                "    {target}: no execution count (see {})",
                log_path.display()
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&lock_dir);
    summary.finish("fuzz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_execution_count() {
        let log = "#1024 pulse\nDone 5 runs\nstat::number_of_executed_units: 123456\nstat::x: 1\n";
        assert_eq!(executions(log), Some(123_456));
        assert_eq!(executions("no stats"), None);
    }
}
