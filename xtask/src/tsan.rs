//! `cargo xtask tsan`: ThreadSanitizer over the engine's concurrency: the `queue` and `call`
//! unit tests of `dataparallel` (job queues and the caller-worker hand-off on plain threads)
//! and its `concurrency`, `stress` and `health` integration tests (whole engines on the
//! mock libnrt), exiting non-zero at the first data race reported.
//!
//! How (nightly only, as the sanitizers are):
//!
//! - everything, the standard library included (`-Zbuild-std`), is built with
//!   `-Zsanitizer=thread` for an explicit `--target` (the host's), so build scripts and
//!   proc macros stay uninstrumented; in `<target>/tsan`, a target directory of its own, so
//!   the normal builds are left alone;
//! - the mock libnrt is built the same way: an uninstrumented mock shows its own internal
//!   locking as false races, reported from inside its hash tables;
//! - the test binaries are linked with `--export-dynamic`: rustc links the sanitizer runtime
//!   into executables only, and the mock, loaded at run time, finds it there;
//! - the tests load a private copy of that mock (`NRT_DYLIB_PATH`) and lock cores in a fresh
//!   `NRT_MOCK_LOCK_DIR`, as in `cargo xtask mock-test`; child processes of the tests inherit
//!   both and the sanitizer, so a race in a child fails its test too;
//! - `TSAN_OPTIONS=halt_on_error=1` (after any options already set) stops at the first
//!   report, which is printed with both stacks.
//!
//! Installs the nightly `rust-src` component when it is missing (`-Zbuild-std` needs it).
//! `DP_STRESS_SECONDS` (the stress test's time budget) passes through.

use std::path::Path;
use std::time::Instant;

use crate::mock_build;
use crate::util::{self, Summary, TaskResult};

/// The unit tests to run: module paths in `dataparallel`'s library.
const UNIT_FILTERS: [&str; 2] = ["queue::tests::", "call::tests::"];
/// The integration tests to run (files in `dataparallel/tests/`).
const INTEGRATION_TESTS: [&str; 3] = ["concurrency", "stress", "health"];
/// Instrument everything; export the executables' symbols (the sanitizer runtime among
/// them) to the libraries they load.
const RUSTFLAGS: &str = "-Zsanitizer=thread -Clink-arg=-Wl,--export-dynamic";
/// Stop at the first report.
const TSAN_OPTIONS: &str = "halt_on_error=1";

/// The nightly compiler's host triple (`rustc +nightly -vV`).
fn host_triple(root: &Path) -> TaskResult<String> {
    let mut rustc = util::nightly("rustc", root);
    rustc.arg("-vV");
    let info = util::output(&mut rustc)?;
    info.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .ok_or_else(|| "`rustc +nightly -vV` printed no `host:` line".to_owned())
}

/// A nightly `cargo SUBCOMMAND` building for `target` with the sanitizer, in `target_dir`.
fn instrumented(
    root: &Path,
    subcommand: &str,
    target: &str,
    target_dir: &Path,
) -> std::process::Command {
    let mut command = util::nightly("cargo", root);
    command
        .args([subcommand, "-Zbuild-std", "--target", target])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        // It would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    util::ensure_nightly_components(root, &["rust-src"])?;
    let target = host_triple(root)?;
    let metadata = util::metadata(root)?;
    let target_dir = util::target_dir(&metadata)?.join("tsan");
    let started = Instant::now();

    let mut build = instrumented(root, "build", &target, &target_dir);
    build.args(["--package", mock_build::PACKAGE]);
    util::run(&mut build)?;
    let built = target_dir
        .join(&target)
        .join("debug")
        .join(mock_build::LIBRARY_FILE);
    if !built.is_file() {
        return Err(format!(
            "the instrumented mock built but {} does not exist",
            built.display()
        ));
    }
    let lock_dir = util::temp_dir("nrt-mock-locks-")?;
    let (_scratch, library) = mock_build::private_copy(&built, "xtask-tsan-")?;
    let tsan_options = match std::env::var("TSAN_OPTIONS") {
        Ok(options) if !options.trim().is_empty() => format!("{options} {TSAN_OPTIONS}"),
        _ => TSAN_OPTIONS.to_owned(),
    };
    let test = |args: &[&str]| {
        let mut command = instrumented(root, "test", &target, &target_dir);
        command
            .args(["--package", "dataparallel"])
            .args(args)
            .env("NRT_DYLIB_PATH", &library)
            .env("NRT_MOCK_LOCK_DIR", lock_dir.path())
            .env("TSAN_OPTIONS", &tsan_options);
        util::run(&mut command)
    };

    let mut summary = Summary::default();
    summary.step("queue and call unit tests", || {
        let mut args = vec!["--lib", "--"];
        args.extend(UNIT_FILTERS);
        test(&args)
    });
    summary.step("concurrency, stress and health integration tests", || {
        let mut args = Vec::new();
        for name in INTEGRATION_TESTS {
            args.extend(["--test", name]);
        }
        test(&args)
    });
    summary.finish("tsan")?;
    println!(
        "tsan: no data race reported, in {:.0} s (builds included)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
