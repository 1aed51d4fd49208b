//! Shared support for the engine's integration tests against the mock libnrt: one runtime per
//! process, mock NEFFs, plain-Rust reference implementations of the mock ops, seeded data,
//! child-process scenarios (through the workspace's one harness, `nrt_mock::testing`), leak
//! checks against the mock's counters, and a logger that captures the calling thread's log
//! records (for the engine's warnings).
//!
//! Run with the mock: `cargo xtask mock-test`, or `cargo build -p nrt-mock` and then
//! `cargo test -p dataparallel` (the tests find the mock next to their binary).
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use dataparallel::{ChunkPlan, Config, DataParallel, Input, OutputTensor};
use neuron_rt::{Neff, Runtime};
use nrt_mock::counters::Counters;
pub use nrt_mock::neff::{DType as MockDType, MockModel, Op};
use nrt_mock::testing::ChildTest;

/// Simulated device time per execution used by most tests (small: the suite must be fast).
pub const EXEC_US: u64 = 50;

/// The process's runtime (initialised once, kept alive for the whole test binary so engines
/// built by different tests share it, as libnrt allows one runtime per process), on the mock
/// (`nrt_mock::testing::library_path`: `NRT_DYLIB_PATH`, else the mock built next to the test
/// binary), chosen in code.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            private_lock_dir();
            Runtime::builder()
                .library(nrt_mock::testing::library_path())
                .init()
                .unwrap_or_else(|e| panic!("init the mock runtime: {e}"))
        })
        .clone()
}

/// Gives this test binary's in-process runtime, which takes every core, a lock directory of
/// its own unless one is set (`cargo xtask mock-test` and the child harness set one): with the
/// mock's default directory, shared by every process on the machine, two test runs at once
/// (another checkout's, say) would find each other's cores taken.
fn private_lock_dir() {
    if std::env::var_os("NRT_MOCK_LOCK_DIR").is_some_and(|v| !v.is_empty()) {
        return;
    }
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".to_owned());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dataparallel-locks")
        .join(binary);
    std::fs::create_dir_all(&dir).expect("create the lock directory");
    // SAFETY: called once, inside the `OnceLock` that creates the first runtime of this
    // process, before the mock is loaded (no libnrt thread or C code can be reading the
    // environment); the other test threads read it only through std, whose accesses are
    // serialised with this one, or wait on that `OnceLock`.
    unsafe { std::env::set_var("NRT_MOCK_LOCK_DIR", &dir) };
}

/// NEFF of a mock model.
pub fn neff(model: MockModel) -> Neff {
    model.validate().expect("a valid mock model");
    Neff::from_bytes(model.to_neff_bytes()).expect("mock NEFF bytes parse")
}

/// Builds an engine, panicking with the error on failure.
pub fn engine(neff: &Neff, config: Config) -> DataParallel {
    DataParallel::new(&runtime(), neff, config).expect("build the engine")
}

/// The first `k` cores, as integers.
pub fn cores(k: usize) -> Config {
    Config::default().device_indices((0..k as i64).collect::<Vec<_>>())
}

/// `affine {scale, bias}` with one float32 input `x` and output `y`, both `[b, features]`.
pub fn affine_model(b: u32, features: u32, scale: f32, bias: f32) -> MockModel {
    affine_shape_model(&[b, features], scale, bias)
}

/// `affine {scale, bias}` with one float32 input `x` and output `y`, both of `shape` (the
/// compiled batch first).
pub fn affine_shape_model(shape: &[u32], scale: f32, bias: f32) -> MockModel {
    MockModel::new("affine", Op::Affine { scale, bias })
        .input("x", MockDType::Float32, shape)
        .output("y", MockDType::Float32, shape)
        .exec_us(EXEC_US)
}

/// `core_id`: float32 input `x` `[b, 2]`, int32 output `core` `[b, 1]`.
pub fn core_id_model(b: u32) -> MockModel {
    MockModel::new("core_id", Op::CoreId)
        .input("x", MockDType::Float32, &[b, 2])
        .output("core", MockDType::Int32, &[b, 1])
        .exec_us(EXEC_US)
}

/// `add`: float32 inputs `a` and `b` and output `sum`, all `[batch, features]`.
pub fn add_model(batch: u32, features: u32) -> MockModel {
    MockModel::new("add", Op::Add)
        .input("a", MockDType::Float32, &[batch, features])
        .input("b", MockDType::Float32, &[batch, features])
        .output("sum", MockDType::Float32, &[batch, features])
        .exec_us(EXEC_US)
}

/// `rowsum {out_features}`: float32 input `x` `[b, in_features]`, output `y` `[b, out]`.
pub fn rowsum_model(b: u32, in_features: u32, out_features: u32) -> MockModel {
    MockModel::new("rowsum", Op::RowSum { out_features })
        .input("x", MockDType::Float32, &[b, in_features])
        .output("y", MockDType::Float32, &[b, out_features])
        .exec_us(EXEC_US)
}

/// Reference `affine`: `x * scale + bias` in f32, elementwise (what the mock computes).
pub fn ref_affine(x: &[f32], scale: f32, bias: f32) -> Vec<f32> {
    x.iter().map(|v| v * scale + bias).collect()
}

/// Reference `add`.
pub fn ref_add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Reference `rowsum`: per row, `out[j]` = sum of the row's elements `i` with
/// `i % out_features == j`, accumulated in order of `i`, in f32.
pub fn ref_rowsum(x: &[f32], rows: usize, out_features: usize) -> Vec<f32> {
    let row_len = x.len().checked_div(rows).unwrap_or(0);
    let mut out = vec![0.0f32; rows * out_features];
    for r in 0..rows {
        for (i, v) in x[r * row_len..(r + 1) * row_len].iter().enumerate() {
            out[r * out_features + i % out_features] += *v;
        }
    }
    out
}

/// The bit patterns of `values` (for comparisons that tell -0.0 from 0.0 and show every bit).
pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A seeded xorshift64* generator for test data.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; seed 0 is replaced by a fixed non-zero value.
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next_u64() % n).expect("fits usize")
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A float in [-8, 8) with few mantissa bits, so sums stay exact-ish and NaN never
    /// appears. (Comparisons are bit-exact against the reference anyway.)
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as i32 - (1 << 23)) as f32 / (1 << 20) as f32
    }

    /// `len` floats.
    pub fn f32s(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.f32()).collect()
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

/// `rows * features` floats where row `r` holds `r * 1000 + column` (row identity visible in
/// every value).
pub fn row_tagged(rows: usize, features: usize) -> Vec<f32> {
    (0..rows * features)
        .map(|i| ((i / features) * 1000 + i % features) as f32)
        .collect()
}

/// The f32 contents of an output, checking its dtype.
pub fn f32s(out: &OutputTensor) -> Vec<f32> {
    assert_eq!(out.dtype, neuron_rt::DType::Float32, "output {}", out.name);
    out.to_vec::<f32>().expect("float32 output bytes")
}

/// The i32 contents of an output, checking its dtype.
pub fn i32s(out: &OutputTensor) -> Vec<i32> {
    assert_eq!(out.dtype, neuron_rt::DType::Int32, "output {}", out.name);
    out.to_vec::<i32>().expect("int32 output bytes")
}

/// Runs the `core_id` model over `n` rows and returns the physical core that produced each
/// output row.
pub fn core_per_row(dp: &DataParallel, n: usize) -> Vec<i32> {
    let x = vec![0.0f32; n * 2];
    let shape = [n, 2];
    let out = dp
        .forward(&[Input::f32(&shape, &x)])
        .expect("core_id forward");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape, vec![n, 1]);
    i32s(&out[0])
}

/// The physical core each row should run on, according to the engine's plan.
pub fn planned_core_per_row(plan: &[ChunkPlan]) -> Vec<i32> {
    let mut rows = Vec::new();
    for chunk in plan {
        assert_eq!(
            chunk.start,
            rows.len(),
            "chunks are contiguous and in row order"
        );
        let phys = chunk
            .physical_core
            .expect("the mock reports physical cores") as i32;
        rows.extend(std::iter::repeat_n(phys, chunk.rows));
    }
    rows
}

/// `(rows, logical core index)` of every chunk of a plan.
pub fn chunk_layout(plan: &[ChunkPlan]) -> Vec<(usize, u32)> {
    plan.iter().map(|c| (c.rows, c.core.index())).collect()
}

/// Rows per chunk of a plan.
pub fn chunk_sizes(plan: &[ChunkPlan]) -> Vec<usize> {
    plan.iter().map(|c| c.rows).collect()
}

/// Executions per core of an engine so far, in device order.
pub fn executions(dp: &DataParallel) -> Vec<u64> {
    dp.core_stats().iter().map(|c| c.executions).collect()
}

/// Total executions of an engine so far.
pub fn total_executions(dp: &DataParallel) -> u64 {
    executions(dp).iter().sum()
}

// ---------------------------------------------------------------------------------------
// Child-process scenarios and the mock's counters: a scenario that sets its own environment
// (`NRT_MOCK_FAULTS`, `NRT_MOCK_TOTAL_CORES`, ...) or reads the process-wide counters runs in
// a child process of its own (`nrt_mock::testing::in_child`).

/// Runs test `name` in a child process with `env` added to its environment. In the parent:
/// runs the child, killing it if it runs longer than `limit` (no scenario may hang), asserts
/// it passed and returns `None` (the test returns). In the child: returns the runtime.
pub fn child_scenario(name: &str, env: &[(&str, &str)], limit: Duration) -> Option<Runtime> {
    match ChildTest::new(name)
        .envs(env.iter().copied())
        .timeout(limit)
        .run_in_parent()
    {
        Some(outcome) => {
            outcome.assert_passed();
            None
        }
        None => Some(runtime()),
    }
}

/// The mock's process-wide counters.
pub fn mock_counters() -> Counters {
    nrt_mock::control::counters().expect("mock counters")
}

/// Executions so far on physical core `phys`, by the mock's counters.
pub fn mock_executions(phys: usize) -> u64 {
    mock_counters().executions[phys]
}

/// `(live tensors, live tensor sets, live models)` of the mock's counters.
pub fn live_handles(c: &Counters) -> (u64, u64, u64) {
    (c.live_tensors, c.live_tensor_sets, c.live_models)
}

/// Asserts the mock holds no live tensors, tensor sets or models.
pub fn assert_no_leaks(when: &str) {
    assert_eq!(
        live_handles(&mock_counters()),
        (0, 0, 0),
        "{when}: live tensors, tensor sets, models"
    );
}

// ---------------------------------------------------------------------------------------
// Log capture: the engine logs its warnings on the calling thread (validate/plan run there),
// so a thread-local buffer keeps parallel tests apart.

thread_local! {
    static CAPTURED: RefCell<Option<Vec<(log::Level, String)>>> = const { RefCell::new(None) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        CAPTURED.with(|c| {
            if let Some(buffer) = c.borrow_mut().as_mut() {
                buffer.push((record.level(), record.args().to_string()));
            }
        });
    }

    fn flush(&self) {}
}

/// Runs `f` and returns its result with the log records emitted on this thread meanwhile.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<(log::Level, String)>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        static LOGGER: Capture = Capture;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let result = f();
    let records = CAPTURED.with(|c| c.borrow_mut().take().unwrap_or_default());
    (result, records)
}

/// The warnings among captured records.
pub fn warnings(records: &[(log::Level, String)]) -> Vec<&str> {
    records
        .iter()
        .filter(|(level, _)| *level == log::Level::Warn)
        .map(|(_, m)| m.as_str())
        .collect()
}
