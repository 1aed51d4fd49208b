//! Test support shared by every crate's tests against the mock: find the built library, and
//! run a test body in a child process with its own environment.
//!
//! libnrt allows one runtime per process and reads its environment at `nrt_init`, so a test
//! that needs particular cores, faults or limits runs its body in a child: [`in_child`]
//! re-executes the current test binary as `<exe> <name> --exact --nocapture
//! --test-threads=1` with [`CHILD`]`=<name>`, a clean mock environment, a private
//! `NRT_MOCK_LOCK_DIR` and the given variables. In the parent it waits, asserts the child ran
//! and passed, and returns `false`; in the child it returns `true` so the body runs:
//!
//! ```no_run
//! # fn body() {}
//! #[test]
//! fn runs_on_cores_12_to_23() {
//!     if !nrt_mock::testing::in_child("runs_on_cores_12_to_23", &[("NEURON_RT_VISIBLE_CORES", "12-23")]) {
//!         return;
//!     }
//!     body();
//! }
//! ```

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// Marker telling a re-executed test binary which test body to run.
pub const CHILD: &str = "NRT_MOCK_TEST_CHILD";

/// Variables a child starts without (then gets what the test sets).
pub const CLEARED: &[&str] = &[
    "NEURON_RT_VISIBLE_CORES",
    "NEURON_RT_NUM_CORES",
    "NEURON_RT_EXEC_TIMEOUT",
    "NRT_MOCK_TOTAL_CORES",
    "NRT_MOCK_CORE_MEMORY",
    "NRT_MOCK_FAULTS",
    "NRT_MOCK_LOCK_DIR",
];

/// The mock library: `$NRT_DYLIB_PATH`, else `libnrt_mock.so` in `target/<profile>/`,
/// derived from the running test executable (`target/<profile>/deps/<test>-<hash>`).
///
/// # Panics
///
/// When neither exists, with a message saying to run `cargo xtask mock-test` (tests only).
pub fn library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NRT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable has a parent directory");
    for dir in [deps.parent().unwrap_or(deps), deps] {
        let path = dir.join("libnrt_mock.so");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "libnrt_mock.so not found next to {}: run the tests with `cargo xtask mock-test`, or \
         build the mock (`cargo xtask mock-build`) and set NRT_DYLIB_PATH",
        exe.display()
    );
}

/// Output of a child running test `name` with `env` (not checked).
///
/// # Panics
///
/// When the child cannot be started (tests only).
pub fn child_output(name: &str, env: &[(&str, &str)]) -> Output {
    // Unique per child, not per test name: two tests of one binary may run the same child
    // body at once (`execute_validation_log_names_the_tensor` re-runs
    // `execute_validates_names_sizes_and_cores` to read its log), and a shared lock directory
    // makes one of them find its cores taken.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let lock_dir = std::env::temp_dir().join(format!(
        "nrt-mock-test-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let mut cmd = Command::new(std::env::current_exe().expect("the test executable's path"));
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd.env("NRT_DYLIB_PATH", library_path())
        .env("NRT_MOCK_LOCK_DIR", &lock_dir)
        .env(CHILD, name);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("start the child test process");
    let _ = std::fs::remove_dir_all(&lock_dir);
    output
}

/// True in the child that must run `name`'s body; in the parent, runs that child, asserts it
/// passed (and actually ran the test), and returns false.
///
/// # Panics
///
/// In the parent, when the child failed (that is the test failing).
pub fn in_child(name: &str, env: &[(&str, &str)]) -> bool {
    if is_child(name) {
        return true;
    }
    let output = child_output(name, env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    false
}

/// True when this process is the child for `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}
