//! Shared helpers of neuron-rt's integration tests, which run against the mock libnrt.
//!
//! - [`mock_path`]: the mock library, from `NRT_DYLIB_PATH` (set by `cargo xtask mock-test`)
//!   or derived from the test executable (`target/<profile>/deps/<test-bin>` →
//!   `target/<profile>/libnrt_mock.so`); a missing mock fails the test with what to run.
//! - [`runtime`]: the one in-process [`Runtime`] the in-process tests share.
//! - [`ChildTest`] / [`in_child`]: libnrt allows one runtime per process and reads its
//!   environment at `nrt_init`, so a test that needs its own environment re-runs itself in a
//!   child process (the current test binary, `<name> --exact`) with a marker variable, its
//!   variables and its own `NRT_MOCK_LOCK_DIR`, and the parent asserts on the child's outcome.
//! - [`mock_model`] and friends: mock NEFFs built in memory with `nrt_mock::neff`.

// Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use neuron_rt::{DeviceId, Model, Runtime};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};

/// The variable marking a child process; its value is the test the child runs.
pub(crate) const CHILD_ENV: &str = "NEURON_RT_TEST_CHILD";

/// Variables a child must not inherit from the parent (they change what `nrt_init` does).
const RUNTIME_ENV: &[&str] = &[
    "NEURON_RT_VISIBLE_CORES",
    "NEURON_RT_NUM_CORES",
    "NEURON_RT_EXEC_TIMEOUT",
    "NRT_MOCK_TOTAL_CORES",
    "NRT_MOCK_FAULTS",
    "NRT_MOCK_CORE_MEMORY",
    "NRT_MOCK_LOCK_DIR",
];

/// How long a child test may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The mock libnrt this test run uses.
///
/// # Panics
///
/// When `NRT_DYLIB_PATH` is unset and the derived path holds no mock: the message says to run
/// `cargo xtask mock-test` (the tests never skip silently).
pub(crate) fn mock_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os("NRT_DYLIB_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => derived_mock_path(),
    })
    .clone()
}

fn derived_mock_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test-bin> -> target/<profile>/libnrt_mock.so
    let profile_dir = exe.parent().and_then(Path::parent);
    let candidate = profile_dir.map(|dir| dir.join("libnrt_mock.so"));
    match candidate {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "NRT_DYLIB_PATH is not set and the mock libnrt is not at {} (derived from the test \
             executable {}): run `cargo xtask mock-test`, or `cargo xtask mock-build` and set \
             NRT_DYLIB_PATH to the path it prints",
            candidate.as_deref().unwrap_or(Path::new("?")).display(),
            exe.display()
        ),
    }
}

/// Points this process's loader at the mock and gives its runtime a private lock directory,
/// once, before the first runtime of the process starts.
pub(crate) fn setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        let path = mock_path();
        if std::env::var_os("NRT_DYLIB_PATH").is_none_or(|v| v.is_empty()) {
            // SAFETY: set once, before any runtime of this process exists, by the first test
            // to need one; the other test threads read the environment only through std
            // (whose accesses are serialised with this one) or wait on this `Once`.
            unsafe { std::env::set_var("NRT_DYLIB_PATH", &path) };
        }
        if std::env::var_os("NRT_MOCK_LOCK_DIR").is_none_or(|v| v.is_empty()) {
            // A directory of this test binary's own, so the in-process runtime (which takes
            // every core) never contends with other processes on the machine.
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("neuron-rt-locks")
                .join(binary_name());
            std::fs::create_dir_all(&dir).expect("create the lock directory");
            // SAFETY: as above.
            unsafe { std::env::set_var("NRT_MOCK_LOCK_DIR", &dir) };
        }
    });
}

fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".to_owned())
}

/// The process's shared runtime (kept alive for the whole test run).
pub(crate) fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            setup();
            Runtime::init().unwrap_or_else(|e| panic!("Runtime::init failed: {e}"))
        })
        .clone()
}

/// True when this process is the child running test `name`.
pub(crate) fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Runs `body` in a child process with `env` (see [`ChildTest`]); in the child, runs it.
///
/// `name` must be the test's name as the harness knows it (the function name for a test at
/// the top of a test file).
pub(crate) fn in_child(name: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    if is_child(name) {
        setup();
        body();
    } else {
        let mut child = ChildTest::new(name);
        for (key, value) in env {
            child = child.env(key, value);
        }
        child.run().assert_passed();
    }
}

/// A test run again in a child process.
pub(crate) struct ChildTest {
    name: String,
    env: Vec<(String, String)>,
    lock_dir: PathBuf,
    _own_lock_dir: Option<tempfile::TempDir>,
}

impl ChildTest {
    /// A child running test `name` with its own fresh lock directory.
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("neuron-rt-child-locks")
            .tempdir()
            .expect("create a lock directory");
        ChildTest {
            name: name.to_owned(),
            env: Vec::new(),
            lock_dir: dir.path().to_owned(),
            _own_lock_dir: Some(dir),
        }
    }

    /// A child running test `name` that shares `lock_dir` with other children (to test core
    /// ownership across processes). The caller keeps the directory alive.
    pub(crate) fn sharing_locks(name: &str, lock_dir: &Path) -> Self {
        ChildTest {
            name: name.to_owned(),
            env: Vec::new(),
            lock_dir: lock_dir.to_owned(),
            _own_lock_dir: None,
        }
    }

    /// Adds a variable to the child's environment.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self) -> Command {
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut command = Command::new(exe);
        command.args([&self.name, "--exact", "--nocapture", "--test-threads=1"]);
        for key in RUNTIME_ENV {
            command.env_remove(key);
        }
        command
            .env(CHILD_ENV, &self.name)
            .env("NRT_DYLIB_PATH", mock_path())
            .env("NRT_MOCK_LOCK_DIR", &self.lock_dir)
            .env("RUST_BACKTRACE", "1");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Starts the child with piped stdin and stdout (stderr inherited), for children that
    /// must stay alive while the parent does something else.
    pub(crate) fn spawn(&self) -> Child {
        self.command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child test")
    }

    /// Runs the child to completion (killing it after a minute).
    pub(crate) fn run(self) -> ChildOutput {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child test");
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let started = Instant::now();
        let status = loop {
            match child.try_wait().expect("wait for the child test") {
                Some(status) => break status,
                None if started.elapsed() > CHILD_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "child test `{}` did not finish within {CHILD_TIMEOUT:?}\n--- stdout\n{}\
                         \n--- stderr\n{}",
                        self.name,
                        stdout.join().unwrap_or_default(),
                        stderr.join().unwrap_or_default()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        ChildOutput {
            name: self.name,
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// What a child test did.
pub(crate) struct ChildOutput {
    /// The test it ran.
    pub(crate) name: String,
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Its stdout (the harness's report and the test's prints).
    pub(crate) stdout: String,
    /// Its stderr (panic messages, the mock's log).
    pub(crate) stderr: String,
}

impl ChildOutput {
    /// Asserts the child ran exactly its one test and the test passed.
    pub(crate) fn assert_passed(&self) {
        assert!(
            self.status.success() && self.stdout.contains("test result: ok. 1 passed"),
            "child test `{}` failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// The mock's dtype for float32.
pub(crate) const F32: MockDType = MockDType::Float32;

/// A mock model `name` computing `op` with float32 inputs and outputs named `x{k}` / `y{k}`,
/// all of `shape`.
pub(crate) fn mock_model(
    name: &str,
    op: Op,
    inputs: usize,
    outputs: usize,
    shape: &[u32],
) -> MockModel {
    let mut model = MockModel::new(name, op);
    for k in 0..inputs {
        model = model.input(format!("x{k}"), F32, shape);
    }
    for k in 0..outputs {
        model = model.output(format!("y{k}"), F32, shape);
    }
    model
}

/// The mock affine model the tests and the example use: `y0 = x0 * 2 + 1`, shape `[4, 8]`.
pub(crate) fn affine() -> MockModel {
    mock_model(
        "affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
        1,
        1,
        &[4, 8],
    )
}

/// Loads `model` on logical core `core` of `runtime`.
pub(crate) fn load(runtime: &Runtime, model: &MockModel, core: u32) -> Model {
    Model::load_bytes(runtime, model.to_neff_bytes(), DeviceId::new(core))
        .unwrap_or_else(|e| panic!("loading mock model `{}`: {e}", model.name))
}

/// `n` distinct, non-trivial f32 values starting from `seed`.
pub(crate) fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| seed + i as f32 * 0.25 - 3.0).collect()
}

/// The mock-only exports of the library this process's runtime uses.
pub(crate) fn mock() -> nrt_mock::control::Mock {
    static MOCK: OnceLock<nrt_mock::control::Mock> = OnceLock::new();
    *MOCK.get_or_init(|| {
        nrt_mock::control::Mock::open(mock_path())
            .unwrap_or_else(|e| panic!("opening the mock's control API: {e}"))
    })
}

/// A snapshot of the mock's counters (process-wide: only meaningful in a child process,
/// where no other test runs concurrently).
pub(crate) fn counters() -> nrt_mock::counters::Counters {
    mock()
        .counters()
        .unwrap_or_else(|e| panic!("reading the mock's counters: {e}"))
}

/// The status of a raw `nrt_allocate_tensor_set` (the set is freed again on success): shows
/// whether libnrt is initialised, bypassing the safe layer.
pub(crate) fn raw_allocate_set_status() -> neuron_rt::Status {
    let library = neuron_sys::library().unwrap_or_else(|e| panic!("{e}"));
    let api = library.api();
    let mut set = std::ptr::null_mut();
    // SAFETY: `set` is a valid out-pointer for the call.
    let raw = unsafe { (api.nrt_allocate_tensor_set)(&mut set) };
    if !set.is_null() {
        // SAFETY: the set was just allocated by libnrt and nothing else refers to it.
        unsafe { (api.nrt_destroy_tensor_set)(&mut set) };
    }
    neuron_rt::Status::from_raw(raw)
}
