//! Shared helpers of neuron-rt's integration tests, which run against the mock libnrt.
//!
//! - [`mock_path`]: the mock library (`nrt_mock::testing::library_path`: `NRT_DYLIB_PATH`, set
//!   by `cargo xtask mock-test`, or `target/<profile>/libnrt_mock.so` next to the test
//!   executable); a missing mock fails the test with what to run.
//! - [`runtime`]: the one in-process [`Runtime`] the in-process tests share.
//! - Tests that need their own environment run in a child process through the workspace's
//!   one harness, `nrt_mock::testing` (`in_child`, `ChildTest`).
//! - [`mock_model`] and friends: mock NEFFs built in memory with `nrt_mock::neff`.

// Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use neuron_rt::{DeviceId, Model, Runtime};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};

/// The mock libnrt this test run uses.
///
/// # Panics
///
/// When `NRT_DYLIB_PATH` is unset and no mock was built: the message says to run
/// `cargo xtask mock-test` (the tests never skip silently).
pub(crate) fn mock_path() -> PathBuf {
    nrt_mock::testing::library_path()
}

/// Points this process's loader at the mock and gives its runtime a private lock directory,
/// once, before the first runtime of the process starts.
pub(crate) fn setup() {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        // The mock is chosen in code; NRT_DYLIB_PATH, when set, names the same file.
        neuron_sys::set_library_path(mock_path())
            .unwrap_or_else(|e| panic!("choosing the mock library: {e}"));
        if std::env::var_os("NRT_MOCK_LOCK_DIR").is_none_or(|v| v.is_empty()) {
            // A directory of this test binary's own, so the in-process runtime (which takes
            // every core) never contends with other processes on the machine.
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("neuron-rt-locks")
                .join(binary_name());
            std::fs::create_dir_all(&dir).expect("create the lock directory");
            // SAFETY: set once, before any runtime of this process exists, by the first test
            // to need one; the other test threads read the environment only through std
            // (whose accesses are serialised with this one) or wait on this `Once`.
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
