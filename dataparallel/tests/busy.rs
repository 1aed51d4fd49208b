//! Busy cores: `NRT_EXEC_NC_BUSY` (1005) and `NRT_QUEUE_FULL` (7) are retried with a bounded
//! back-off, counted per core in the metrics, and never count toward quarantine
//! (`dataparallel/src/busy.rs`). The engine and its buckets run exactly under both of the
//! mock's execution policies (`NRT_MOCK_EXEC_POLICY=serialize|busy`).
//!
//! Each scenario runs in its own child process (its environment and the mock's counters are
//! its own). Run with the mock: `cargo build -p nrt-mock && cargo test -p dataparallel --test
//! busy`, or `cargo xtask mock-test`.

mod common;

use std::time::Duration;

use common::{
    MockDType as DType, MockModel, Op, XorShift, affine_model, assert_no_leaks, child_scenario,
    mock_counters, mock_executions, neff, ref_affine,
};
use dataparallel::{BUSY_RETRIES, Config, CoreState, DataParallel, Input, Output};
use neuron_rt::{DeviceId, Neff, Runtime, Status};

/// Features per row.
const F: usize = 4;
/// Compiled batch of the single-model engine.
const B: usize = 2;
const SCALE: f32 = 2.0;
const BIAS: f32 = 1.0;
/// How long a scenario may run before the harness kills it.
const LIMIT: Duration = Duration::from_secs(180);

fn input(rows: usize) -> Vec<f32> {
    (0..rows * F).map(|i| i as f32 * 0.25 - 5.0).collect()
}

/// One forward of `rows` rows into a NaN-filled buffer.
fn run(dp: &DataParallel, rows: usize) -> (dataparallel::Result<()>, Vec<f32>) {
    let x = input(rows);
    let mut y = vec![f32::NAN; rows * F];
    let result = dp.forward_into(
        &[Input::f32(&[rows, F], &x)],
        &mut [Output::f32(&[rows, F], &mut y)],
    );
    (result, y)
}

fn affine_engine(runtime: &Runtime, config: Config) -> DataParallel {
    let neff = neff(affine_model(B as u32, F as u32, SCALE, BIAS));
    DataParallel::new(runtime, &neff, config).expect("engine")
}

#[test]
fn busy_and_queue_full_are_retried_and_never_quarantine() {
    // Physical core 0 is busy for its first two executions, core 1's queue full for its first.
    const NAME: &str = "busy_and_queue_full_are_retried_and_never_quarantine";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "0:1:1005;0:2:1005;1:1:7"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        // One hardware-class failure would quarantine: busy statuses must not count.
        let dp = affine_engine(&runtime, Config::default().quarantine_after(1));
        let rows = 2 * B;
        let (result, y) = run(&dp, rows);
        result.expect("busy statuses are retried, not reported");
        assert_eq!(y, ref_affine(&input(rows), SCALE, BIAS));
        let metrics = dp.metrics();
        let retries: Vec<u64> = metrics.cores.iter().map(|c| c.busy_retries).collect();
        assert_eq!(retries, [2, 1], "retries counted per core");
        let executions: Vec<u64> = metrics.cores.iter().map(|c| c.executions).collect();
        assert_eq!(executions, [1, 1], "a retried piece is one execution");
        assert_eq!(metrics.cores.iter().map(|c| c.failures).sum::<u64>(), 0);
        assert_eq!(
            (mock_executions(0), mock_executions(1)),
            (3, 2),
            "the runtime saw every attempt"
        );
        for health in dp.health() {
            assert_eq!(health.state, CoreState::Healthy, "{health:?}");
            assert_eq!(health.consecutive_failures, 0, "{health:?}");
        }
        // The next calls need no retries.
        let (result, y) = run(&dp, 5);
        result.expect("forward");
        assert_eq!(y, ref_affine(&input(5), SCALE, BIAS));
        assert_eq!(dp.metrics().cores[0].busy_retries, 2);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn a_core_that_stays_busy_fails_its_chunk_after_bounded_retries_and_stays_in_service() {
    // Every execution on physical core 1 is refused as busy.
    const NAME: &str =
        "a_core_that_stays_busy_fails_its_chunk_after_bounded_retries_and_stays_in_service";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "1:*:1005"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default().quarantine_after(1));
        let rows = 2 * B;
        let calls = 3;
        for _ in 0..calls {
            let (result, y) = run(&dp, rows);
            let error = result.expect_err("a core that stays busy fails its chunk");
            assert_eq!(
                error.chunk(),
                Some((1, DeviceId::new(1), Some(1))),
                "{error}"
            );
            assert_eq!(error.status(), Some(Status::ExecNcBusy), "{error}");
            let message = error.to_string();
            assert!(
                message.contains("NRT_EXEC_NC_BUSY") && message.contains("NEURON_RT_VISIBLE_CORES"),
                "the message names the status and what to do: {message}"
            );
            let want = ref_affine(&input(rows), SCALE, BIAS);
            assert_eq!(y[..B * F], want[..B * F], "chunk 0 ran on the other core");
        }
        let retries = u64::from(BUSY_RETRIES);
        assert_eq!(dp.metrics().cores[1].busy_retries, calls * retries);
        assert_eq!(
            mock_executions(1),
            calls * (retries + 1),
            "each piece is tried once and retried BUSY_RETRIES times, no more"
        );
        let health = dp.health()[1];
        assert_eq!(
            health.state,
            CoreState::Healthy,
            "never quarantined: {health:?}"
        );
        assert_eq!(health.consecutive_failures, 0);
        assert_eq!(health.last_status, Some(Status::ExecNcBusy));
        // The core frees up: the same engine serves on both cores.
        nrt_mock::control::set_faults("").expect("clear faults");
        let (result, y) = run(&dp, rows);
        result.expect("forward");
        assert_eq!(y, ref_affine(&input(rows), SCALE, BIAS));
    }
    assert_no_leaks("after the engine dropped");
}

/// `affine {2, 1}` over `[batch, F]`, named after its batch, with some device time so that
/// pieces of different buckets overlap on a core.
fn bucket(batch: u32) -> Neff {
    neff(
        MockModel::new(
            format!("affine-b{batch}"),
            Op::Affine {
                scale: SCALE,
                bias: BIAS,
            },
        )
        .input("x", DType::Float32, &[batch, F as u32])
        .output("y", DType::Float32, &[batch, F as u32])
        .exec_us(200),
    )
}

/// Under `policy`: a single-model engine and a bucket engine, each called by 4 threads with
/// random batch sizes; every output exact, every refusal the mock made retried once.
fn engines_are_exact_under_the_policy(policy: &str) {
    let runtime = common::runtime();
    let before = mock_counters().busy_returns;
    let single = affine_engine(&runtime, Config::default());
    let buckets = DataParallel::with_buckets(
        &runtime,
        &[bucket(1), bucket(4), bucket(16)],
        Config::default(),
    )
    .expect("bucket engine");
    for (name, dp) in [("single model", &single), ("buckets", &buckets)] {
        std::thread::scope(|s| {
            for thread in 0..4u64 {
                s.spawn(move || {
                    let mut rng = XorShift::new(0x5eed + thread);
                    for _ in 0..25 {
                        let rows = rng.range(0, 60);
                        let (result, y) = run(dp, rows);
                        result.unwrap_or_else(|e| panic!("{name}, {rows} rows: {e}"));
                        assert_eq!(
                            y,
                            ref_affine(&input(rows), SCALE, BIAS),
                            "{name}, {rows} rows"
                        );
                    }
                });
            }
        });
        let retries: u64 = dp.metrics().cores.iter().map(|c| c.busy_retries).sum();
        let refused = mock_counters().busy_returns - before;
        eprintln!("{policy}: {name}: {refused} busy refusals so far, {retries} retries");
        if name == "single model" {
            // One model per core: its executions queue behind each other, never refused.
            assert_eq!((refused, retries), (0, 0), "{name}");
        }
    }
    let retries: u64 = [&single, &buckets]
        .iter()
        .flat_map(|dp| dp.metrics().cores)
        .map(|c| c.busy_retries)
        .sum();
    let refused = mock_counters().busy_returns - before;
    assert_eq!(retries, refused, "every refusal was retried once");
    if policy == "serialize" {
        assert_eq!(refused, 0, "a serializing runtime never refuses");
    }
    for health in single.health().into_iter().chain(buckets.health()) {
        assert_eq!(health.state, CoreState::Healthy, "{health:?}");
    }
}

#[test]
fn engine_and_buckets_are_exact_when_the_runtime_serializes() {
    const NAME: &str = "engine_and_buckets_are_exact_when_the_runtime_serializes";
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "3"),
        ("NRT_MOCK_EXEC_POLICY", "serialize"),
    ];
    if child_scenario(NAME, &env, LIMIT).is_none() {
        return;
    }
    engines_are_exact_under_the_policy("serialize");
}

#[test]
fn engine_and_buckets_are_exact_when_the_runtime_reports_busy_cores() {
    const NAME: &str = "engine_and_buckets_are_exact_when_the_runtime_reports_busy_cores";
    let env = [
        ("NRT_MOCK_TOTAL_CORES", "3"),
        ("NRT_MOCK_EXEC_POLICY", "busy"),
    ];
    if child_scenario(NAME, &env, LIMIT).is_none() {
        return;
    }
    engines_are_exact_under_the_policy("busy");
}
