//! Fault suite: the engine under injected libnrt failures (the mock's faults: ARCHITECTURE.md, "The mock libnrt").
//!
//! Each scenario runs in its own child process (`nrt_mock::testing::in_child`), so its
//! environment (`NRT_MOCK_FAULTS`, `NRT_MOCK_CORE_MEMORY`, `NEURON_RT_EXEC_TIMEOUT`, ...) and
//! the mock's process-wide counters are private to it. For every scenario the test checks:
//! the error names the chunk and the logical and physical core (where a chunk is involved),
//! the call returns (the harness kills a child that hangs, failing the test), the mock's
//! counters show no live tensors, tensor sets or models once the engine is dropped or its
//! build failed, and a built engine serves the next call.
//!
//! Run with the mock: `NRT_DYLIB_PATH=.../libnrt_mock.so cargo test -p dataparallel --test
//! faults` (or `cargo xtask mock-test`).

mod common;

use std::time::{Duration, Instant};

use common::{
    affine_model, assert_no_leaks, child_scenario, mock_counters, mock_executions, neff, ref_affine,
};
use dataparallel::{Config, DataParallel, Error, Input, Output};
use neuron_rt::{DeviceId, Neff, Runtime, Status};

/// Features per row of the test model.
const F: usize = 3;
/// Compiled batch of the test model.
const B: usize = 2;
const SCALE: f32 = 1.5;
const BIAS: f32 = -0.25;
/// How long a scenario may run before the harness kills it (no scenario may hang).
const LIMIT: Duration = Duration::from_secs(120);

fn affine_neff() -> Neff {
    neff(affine_model(B as u32, F as u32, SCALE, BIAS))
}

/// The affine engine on `runtime` with `config`, panicking with the error on failure.
fn affine_engine(runtime: &Runtime, config: Config) -> DataParallel {
    DataParallel::new(runtime, &affine_neff(), config).expect("engine")
}

/// Bytes of one tensor of the test model.
const TENSOR_BYTES: u64 = (B * F * 4) as u64;

fn input(rows: usize) -> Vec<f32> {
    (0..rows * F).map(|i| i as f32 * 0.5 - 3.0).collect()
}

fn reference(x: &[f32]) -> Vec<f32> {
    ref_affine(x, SCALE, BIAS)
}

/// Runs `rows` rows into a NaN-filled buffer; returns the result and the buffer.
fn run(dp: &DataParallel, rows: usize) -> (Result<(), Error>, Vec<f32>) {
    let x = input(rows);
    let shape = [rows, F];
    let mut out = vec![f32::NAN; rows * F];
    let result = dp.forward_into(
        &[Input::f32(&shape, &x)],
        &mut [Output::f32(&shape, &mut out)],
    );
    (result, out)
}

/// Asserts the call succeeded with outputs equal to plain Rust.
fn assert_serves(dp: &DataParallel, rows: usize) {
    let (result, out) = run(dp, rows);
    result.expect("the engine serves the next call");
    assert_eq!(out, reference(&input(rows)));
}

/// Asserts rows of chunk `chunk` (each `chunk_rows` long) are right in `out`.
fn assert_chunk_ok(out: &[f32], rows: usize, chunk: usize, chunk_rows: usize) {
    let want = reference(&input(rows));
    let range = chunk * chunk_rows * F..(chunk + 1) * chunk_rows * F;
    assert_eq!(out[range.clone()], want[range], "chunk {chunk} is right");
}

/// Checks the chunk error's location, status and message.
fn assert_chunk_error(err: &Error, chunk: usize, core: u32, phys: u32, status: Status) {
    assert_eq!(
        err.chunk(),
        Some((chunk, DeviceId::new(core), Some(phys))),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(status), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chunk {chunk}"))
            && msg.contains(&format!("nc:{core}"))
            && msg.contains(&format!("physical core {phys}")),
        "the message names chunk, core and physical core: {msg}"
    );
}

#[test]
fn dead_core_fails_its_chunk_every_call_and_leaks_nothing() {
    // Logical nc:0-3 are physical 4-7; every execution on physical 6 (nc:2) fails with
    // NRT_EXEC_UNIT_UNRECOVERABLE (101). Quarantine is off so the dead core keeps its chunks.
    const NAME: &str = "dead_core_fails_its_chunk_every_call_and_leaks_nothing";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NEURON_RT_VISIBLE_CORES", "4-7"),
            ("NRT_MOCK_FAULTS", "6:*:101"),
        ],
        LIMIT,
    ) else {
        return;
    };
    assert_no_leaks("before the engine");
    {
        let dp = affine_engine(&runtime, Config::default().quarantine_after(0));
        let rows = 4 * B;
        for _ in 0..5 {
            let (result, out) = run(&dp, rows);
            let err = result.expect_err("the dead core fails its chunk");
            assert_chunk_error(&err, 2, 2, 6, Status::ExecUnitUnrecoverable);
            for chunk in [0, 1, 3] {
                assert_chunk_ok(&out, rows, chunk, B);
            }
        }
        assert_eq!(
            mock_executions(6),
            5,
            "every call ran chunk 2 on the dead core"
        );
        // The core recovers (faults cleared): the same engine serves.
        nrt_mock::control::set_faults("").expect("clear faults");
        assert_serves(&dp, rows);
        assert_serves(&dp, 7);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn intermittent_failure_fails_one_call_only() {
    // The 2nd execution on physical core 1 returns NRT_EXEC_COMPLETED_WITH_ERR (1004).
    const NAME: &str = "intermittent_failure_fails_one_call_only";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "4"),
            ("NRT_MOCK_FAULTS", "1:2:1004"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        let rows = 4 * B; // one piece per chunk: one execution per core per call
        assert_serves(&dp, rows);
        let (result, out) = run(&dp, rows);
        let err = result.expect_err("the 2nd execution on physical 1 fails");
        assert_chunk_error(&err, 1, 1, 1, Status::ExecCompletedWithErr);
        for chunk in [0, 2, 3] {
            assert_chunk_ok(&out, rows, chunk, B);
        }
        for _ in 0..3 {
            assert_serves(&dp, rows);
        }
        let health = dp.health();
        assert_eq!(health[1].consecutive_failures, 0, "reset by the successes");
        assert_eq!(health[1].last_status, Some(Status::ExecCompletedWithErr));
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn hung_execution_times_out_and_the_engine_serves_on() {
    // The first execution on physical core 1 hangs; NEURON_RT_EXEC_TIMEOUT=1 bounds it.
    const NAME: &str = "hung_execution_times_out_and_the_engine_serves_on";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "1:1:hang"),
            ("NEURON_RT_EXEC_TIMEOUT", "1"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        let rows = 2 * B;
        let started = Instant::now();
        let (result, out) = run(&dp, rows);
        let err = result.expect_err("the hung chunk times out");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the call waited for the timeout: {:?}",
            started.elapsed()
        );
        assert_chunk_error(&err, 1, 1, 1, Status::Timeout);
        assert!(err.to_string().contains("NRT_TIMEOUT"), "{err}");
        assert_chunk_ok(&out, rows, 0, B);
        assert_serves(&dp, rows);
        assert_serves(&dp, 5);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn failing_load_fails_the_build_and_leaks_nothing() {
    // The mock's nrt_load never returns NRT_RESOURCE (models are not charged to the memory
    // budget); what makes it fail is a bad NEURON_RT_EXEC_TIMEOUT (read at nrt_load:
    // NRT_INVALID) or an unsupported NEFF. The build must fail with the status and leave
    // nothing loaded.
    const NAME: &str = "failing_load_fails_the_build_and_leaks_nothing";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "3"),
            ("NEURON_RT_EXEC_TIMEOUT", "soon"),
        ],
        LIMIT,
    ) else {
        return;
    };
    let err =
        DataParallel::new(&runtime, &affine_neff(), Config::default()).expect_err("nrt_load fails");
    // What nrt_load refuses as invalid is classified as the NEFF the user gave (bad input).
    assert!(matches!(err, Error::Neff(_)), "{err:?}");
    assert_eq!(err.kind(), dataparallel::ErrorKind::Neff);
    assert_eq!(err.status(), Some(Status::Invalid), "{err:?}");
    let msg = err.to_string();
    // libnrt reports a status, not a reason (the mock logs its reason to stderr): the error
    // names the call, the status and the core.
    assert!(
        msg.contains("nrt_load") && msg.contains("NRT_INVALID") && msg.contains("nc:0"),
        "{msg}"
    );
    assert_no_leaks("after the failed build");
}

#[test]
fn build_failing_after_the_loads_unloads_every_replica() {
    // A configuration error found only once the model is loaded (dim out of range for the
    // model) must unload whatever was loaded.
    const NAME: &str = "build_failing_after_the_loads_unloads_every_replica";
    let Some(runtime) = child_scenario(NAME, &[("NRT_MOCK_TOTAL_CORES", "4")], LIMIT) else {
        return;
    };
    let err = DataParallel::new(&runtime, &affine_neff(), Config::default().dim(5))
        .expect_err("dim 5 is out of range");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let loads = mock_counters().loads;
    assert!(loads >= 1, "the model was loaded before the check");
    assert_no_leaks("after the failed build");
    // The runtime is still usable: a valid engine builds and serves.
    let dp = affine_engine(&runtime, Config::default());
    assert_serves(&dp, 9);
    drop(dp);
    assert_no_leaks("after the engine dropped");
}

#[test]
fn out_of_device_memory_for_the_workers_fails_the_build_and_leaks_nothing() {
    // Per core: room for 3 tensors. Each worker allocates an input and an output tensor, so
    // with 2 workers per core the first worker fits and the second runs out of memory
    // half-way through its sets. Loading is not charged, so every load succeeds.
    const NAME: &str = "out_of_device_memory_for_the_workers_fails_the_build_and_leaks_nothing";
    let budget = (3 * TENSOR_BYTES).to_string();
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "3"),
            ("NRT_MOCK_CORE_MEMORY", budget.as_str()),
        ],
        LIMIT,
    ) else {
        return;
    };
    let neff = affine_neff();
    for attempt in 0..3 {
        let err = DataParallel::new(&runtime, &neff, Config::default())
            .expect_err("two workers per core do not fit");
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert_eq!(err.status(), Some(Status::Resource), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("NRT_RESOURCE"),
            "the error names NRT_RESOURCE: {msg}"
        );
        assert_no_leaks(&format!("after failed build {attempt}"));
    }
    // One worker per core fits in the same budget: it builds and serves.
    {
        let dp = DataParallel::new(&runtime, &neff, Config::default().workers_per_core(1))
            .expect("one worker per core fits");
        assert_serves(&dp, 3 * B);
        assert_serves(&dp, 11);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn out_of_device_memory_for_the_first_tensor_fails_the_build() {
    // A budget smaller than one tensor: the very first allocation fails.
    const NAME: &str = "out_of_device_memory_for_the_first_tensor_fails_the_build";
    let budget = (TENSOR_BYTES - 1).to_string();
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_CORE_MEMORY", budget.as_str()),
        ],
        LIMIT,
    ) else {
        return;
    };
    let err = DataParallel::new(&runtime, &affine_neff(), Config::default().num_workers(1))
        .expect_err("no tensor fits");
    assert_eq!(err.status(), Some(Status::Resource), "{err:?}");
    assert!(err.to_string().contains("NRT_RESOURCE"), "{err}");
    assert_no_leaks("after the failed build");
}

#[test]
fn faults_on_every_core_at_once_report_the_lowest_chunk() {
    // Every core fails differently in the same call: the lowest chunk is reported, every
    // chunk ran, and the engine serves once the faults clear.
    const NAME: &str = "faults_on_every_core_at_once_report_the_lowest_chunk";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "3"),
            ("NRT_MOCK_FAULTS", "2:*:1004;1:*:6;0:*:1202"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default().quarantine_after(0));
        let (result, _) = run(&dp, 3 * B);
        let err = result.expect_err("every chunk fails");
        assert_chunk_error(&err, 0, 0, 0, Status::ExecHwErrNcUe);
        let failures: Vec<u64> = dp.core_stats().iter().map(|c| c.failures).collect();
        assert_eq!(failures, [1, 1, 1], "every chunk ran");
        nrt_mock::control::set_faults("").expect("clear faults");
        assert_serves(&dp, 3 * B);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn concurrent_callers_under_faults_all_return_and_leak_nothing() {
    // Four caller threads while one core fails intermittently (every 3rd execution) and
    // another hangs once: every call returns, successes are exact, failures name a chunk.
    const NAME: &str = "concurrent_callers_under_faults_all_return_and_leak_nothing";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "3"),
            ("NRT_MOCK_FAULTS", "0:3:1004;0:6:1004;0:9:1004;2:4:hang"),
            ("NEURON_RT_EXEC_TIMEOUT", "1"),
        ],
        Duration::from_secs(300),
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default().quarantine_after(0));
        let failures = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (dp, failures) = (&dp, &failures);
                s.spawn(move || {
                    for i in 0..8 {
                        let rows = 1 + (t * 7 + i * 3) % 13;
                        let (result, out) = run(dp, rows);
                        match result {
                            Ok(()) => assert_eq!(out, reference(&input(rows))),
                            Err(err) => {
                                assert!(err.chunk().is_some(), "{err:?}");
                                assert!(
                                    matches!(
                                        err.status(),
                                        Some(Status::ExecCompletedWithErr | Status::Timeout)
                                    ),
                                    "{err:?}"
                                );
                                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        assert!(failures.into_inner() >= 1, "the injected faults were hit");
        nrt_mock::control::set_faults("").expect("clear faults");
        assert_serves(&dp, 6);
    }
    assert_no_leaks("after the engine dropped");
}
