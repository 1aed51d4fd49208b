//! Core health: quarantine after repeated hardware-class failures, re-admission, and the
//! all-cores-quarantined error.
//!
//! Each test runs in its own child process (`nrt_mock::testing::in_child`) with its own
//! `NRT_MOCK_FAULTS` and counters. Calls use one piece per chunk (rows = cores x compiled
//! batch), so one failing call is one failure on the dead core.

mod common;

use std::time::Duration;

use common::{
    affine_model, assert_no_leaks, child_scenario, core_id_model, mock_counters, mock_executions,
    neff, planned_core_per_row, ref_affine,
};
use dataparallel::{Config, CoreState, DataParallel, Error, Input, Output};
use neuron_rt::{DeviceId, Neff, Runtime, Status};

/// Compiled batch of the test models.
const B: usize = 2;
/// Features per row of the affine model.
const F: usize = 4;
const SCALE: f32 = -2.0;
const BIAS: f32 = 0.75;
/// How long a test may run before the harness kills it (no call may hang).
const LIMIT: Duration = Duration::from_secs(120);

/// `core_id`: float32 `x` `[B, 2]` → int32 `core` `[B, 1]`, the physical core that ran it.
fn core_id_neff() -> Neff {
    neff(core_id_model(B as u32))
}

fn affine_neff() -> Neff {
    neff(affine_model(B as u32, F as u32, SCALE, BIAS))
}

/// The affine engine on `runtime` with `config`, panicking with the error on failure.
fn affine_engine(runtime: &Runtime, config: Config) -> DataParallel {
    DataParallel::new(runtime, &affine_neff(), config).expect("engine")
}

/// Runs `rows` rows through the `core_id` engine: the physical core of each row.
fn cores_per_row(dp: &DataParallel, rows: usize) -> Result<Vec<i32>, Error> {
    let x = vec![0.0f32; rows * 2];
    let mut out = vec![-1i32; rows];
    dp.forward_into(
        &[Input::f32(&[rows, 2], &x)],
        &mut [Output::new(
            neuron_rt::DType::Int32,
            &[rows, 1],
            bytemuck::cast_slice_mut(&mut out),
        )],
    )?;
    Ok(out)
}

/// The physical core of each row according to `dp.plan(rows)`.
fn planned_cores_per_row(dp: &DataParallel, rows: usize) -> Vec<i32> {
    planned_core_per_row(&dp.plan(rows).expect("plan"))
}

fn affine(dp: &DataParallel, rows: usize) -> Result<Vec<f32>, Error> {
    let x: Vec<f32> = (0..rows * F)
        .map(|i| (i % 97) as f32 * 0.25 - 5.0)
        .collect();
    let mut out = vec![f32::NAN; rows * F];
    dp.forward_into(
        &[Input::f32(&[rows, F], &x)],
        &mut [Output::f32(&[rows, F], &mut out)],
    )?;
    assert_eq!(
        out,
        ref_affine(&x, SCALE, BIAS),
        "{rows} rows equal plain Rust"
    );
    Ok(out)
}

#[test]
fn dead_core_is_quarantined_after_three_calls_and_readmitted_once_fixed() {
    // Logical nc:0-3 are physical 4-7; physical 6 (nc:2) fails every execution with 101.
    const NAME: &str = "dead_core_is_quarantined_after_three_calls_and_readmitted_once_fixed";
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
    {
        let dp = DataParallel::new(&runtime, &core_id_neff(), Config::default()).expect("engine");
        assert_eq!(dataparallel::DEFAULT_QUARANTINE_AFTER, 3);
        let rows = 4 * B;
        for call in 1..=3 {
            let err = cores_per_row(&dp, rows).expect_err("the dead core fails its chunk");
            assert_eq!(err.chunk(), Some((2, DeviceId::new(2), Some(6))), "{err:?}");
            assert_eq!(err.status(), Some(Status::ExecUnitUnrecoverable));
            let health = dp.health();
            assert_eq!(health.len(), 4);
            let dead = health[2];
            assert_eq!(dead.core, DeviceId::new(2));
            assert_eq!(dead.physical_core, Some(6));
            assert_eq!(dead.consecutive_failures, call);
            assert_eq!(dead.last_status, Some(Status::ExecUnitUnrecoverable));
            let want = if call < 3 {
                CoreState::Healthy
            } else {
                CoreState::Quarantined
            };
            assert_eq!(dead.state, want, "after call {call}");
            for (i, h) in health.iter().enumerate().filter(|(i, _)| *i != 2) {
                assert_eq!(h.state, CoreState::Healthy, "core {i}");
                assert_eq!((h.consecutive_failures, h.last_status), (0, None));
            }
        }
        let dead_executions = mock_executions(6);
        assert_eq!(dead_executions, 3);

        // Quarantined: its chunks go to physical 4, 5 and 7, and every call succeeds.
        for rows in [4 * B, 3 * B, 7, 1, 12] {
            let got = cores_per_row(&dp, rows).expect("the healthy cores serve");
            assert_eq!(got, planned_cores_per_row(&dp, rows), "{rows} rows");
            assert!(!got.contains(&6), "{rows} rows: {got:?}");
        }
        assert_eq!(
            cores_per_row(&dp, 3 * B).expect("serves"),
            [4, 4, 5, 5, 7, 7],
            "one chunk per healthy core"
        );
        assert_eq!(
            mock_executions(6),
            dead_executions,
            "nothing ran on the dead core"
        );
        assert_eq!(dp.health()[2].state, CoreState::Quarantined);

        // Fixed and re-admitted: it takes chunks again.
        nrt_mock::control::set_faults("").expect("clear faults");
        dp.readmit(DeviceId::new(2)).expect("readmit");
        let health = dp.health()[2];
        assert_eq!(health.state, CoreState::Healthy);
        assert_eq!(health.consecutive_failures, 0);
        let got = cores_per_row(&dp, 4 * B).expect("all four cores serve");
        assert_eq!(got, [4, 4, 5, 5, 6, 6, 7, 7]);
        assert_eq!(mock_executions(6), dead_executions + 1);

        // Re-admitting a core the engine does not have is an invalid argument.
        let err = dp
            .readmit(DeviceId::new(9))
            .expect_err("nc:9 is not in the engine");
        assert!(matches!(err, Error::UnknownCore { .. }), "{err:?}");
        assert_eq!(err.kind(), dataparallel::ErrorKind::InvalidArgument);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn quarantined_core_outputs_stay_exact_on_the_other_cores() {
    // Physical 1 of 3 is dead (HW error 6); after quarantine, batches of every size equal
    // plain Rust.
    const NAME: &str = "quarantined_core_outputs_stay_exact_on_the_other_cores";
    let Some(runtime) = child_scenario(
        NAME,
        &[("NRT_MOCK_TOTAL_CORES", "3"), ("NRT_MOCK_FAULTS", "1:*:6")],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        for _ in 0..3 {
            let err = affine(&dp, 3 * B).expect_err("physical 1 fails");
            assert_eq!(err.status(), Some(Status::HwError));
            assert_eq!(err.chunk(), Some((1, DeviceId::new(1), Some(1))));
        }
        assert_eq!(dp.health()[1].state, CoreState::Quarantined);
        let before = mock_executions(1);
        for rows in 0..=17 {
            affine(&dp, rows).expect("serves on the healthy cores");
        }
        assert_eq!(mock_executions(1), before);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn all_cores_quarantined_fails_fast_without_device_calls() {
    const NAME: &str = "all_cores_quarantined_fails_fast_without_device_calls";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "0:*:101;1:*:1203"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        for _ in 0..3 {
            let err = affine(&dp, 2 * B).expect_err("both cores fail");
            assert_eq!(err.chunk().map(|c| c.0), Some(0), "{err:?}");
        }
        assert!(
            dp.health()
                .iter()
                .all(|h| h.state == CoreState::Quarantined),
            "{:?}",
            dp.health()
        );
        let before = mock_counters();
        for rows in [1, 2 * B, 9] {
            let err = affine(&dp, rows).expect_err("no core in service");
            assert!(
                matches!(err, Error::AllCoresQuarantined { cores: 2 }),
                "{err:?}"
            );
            assert!(err.to_string().contains("readmit"), "{err}");
        }
        assert!(matches!(
            dp.plan(4),
            Err(Error::AllCoresQuarantined { cores: 2 })
        ));
        let after = mock_counters();
        assert_eq!(after.total_executions(), before.total_executions());
        assert_eq!(after.bytes_written, before.bytes_written);

        // One core fixed and re-admitted: everything runs there.
        nrt_mock::control::set_faults("").expect("clear faults");
        dp.readmit(DeviceId::new(1)).expect("readmit nc:1");
        affine(&dp, 5).expect("nc:1 serves alone");
        let plan = dp.plan(5).expect("plan");
        assert!(plan.iter().all(|c| c.core == DeviceId::new(1)), "{plan:?}");
        dp.readmit(DeviceId::new(0)).expect("readmit nc:0");
        affine(&dp, 2 * B).expect("both serve");
        assert_eq!(dp.plan(2 * B).expect("plan").len(), 2);
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn request_class_errors_never_quarantine() {
    // Statuses that blame the request or are not hardware-class: NRT_FAILURE (1),
    // NRT_INVALID (2), NRT_EXEC_BAD_INPUT (1002), NRT_EXEC_COMPLETED_WITH_NUM_ERR (1003),
    // NRT_EXEC_OOB (1006). Ten failing calls each leave the core in service.
    const NAME: &str = "request_class_errors_never_quarantine";
    let Some(runtime) = child_scenario(NAME, &[("NRT_MOCK_TOTAL_CORES", "2")], LIMIT) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        for status in [1u32, 2, 1002, 1003, 1006] {
            nrt_mock::control::set_faults(&format!("1:*:{status}")).expect("set faults");
            for _ in 0..10 {
                let err = affine(&dp, 2 * B).expect_err("physical 1 fails");
                assert_eq!(err.status().map(Status::raw), Some(status), "{err:?}");
                assert_eq!(err.chunk(), Some((1, DeviceId::new(1), Some(1))));
            }
            let health = dp.health()[1];
            assert_eq!(health.state, CoreState::Healthy, "status {status}");
            assert_eq!(health.consecutive_failures, 0, "status {status}");
            assert_eq!(health.last_status.map(Status::raw), Some(status));
        }
        nrt_mock::control::set_faults("").expect("clear faults");
        affine(&dp, 2 * B).expect("serves");
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn only_consecutive_hardware_failures_count() {
    // Physical 0 fails executions 1, 2, 4, 5, 7, 8 (101): a success between every two
    // failures resets the count, so the core is never quarantined; then 3 in a row are.
    const NAME: &str = "only_consecutive_hardware_failures_count";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            (
                "NRT_MOCK_FAULTS",
                "0:1:101;0:2:101;0:4:101;0:5:101;0:7:101;0:8:101;0:10:101;0:11:101;0:12:101",
            ),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        for execution in 1..=9 {
            let failed = affine(&dp, 2 * B).is_err();
            assert_eq!(failed, execution % 3 != 0, "execution {execution}");
            assert_eq!(dp.health()[0].state, CoreState::Healthy, "{execution}");
        }
        for _ in 10..=12 {
            affine(&dp, 2 * B).expect_err("fails");
        }
        assert_eq!(dp.health()[0].state, CoreState::Quarantined);
        assert_eq!(dp.health()[0].consecutive_failures, 3);
        affine(&dp, 2 * B).expect("served by physical 1");
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn timeouts_count_as_hardware_failures_and_the_threshold_is_configurable() {
    // quarantine_after(1): a single hung execution (NRT_TIMEOUT) quarantines the core.
    const NAME: &str = "timeouts_count_as_hardware_failures_and_the_threshold_is_configurable";
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
        let dp = affine_engine(&runtime, Config::default().quarantine_after(1));
        let err = affine(&dp, 2 * B).expect_err("hangs, then times out");
        assert_eq!(err.status(), Some(Status::Timeout));
        let health = dp.health()[1];
        assert_eq!(health.state, CoreState::Quarantined);
        assert_eq!(health.last_status, Some(Status::Timeout));
        affine(&dp, 2 * B).expect("served by physical 0");
        dp.readmit(DeviceId::new(1)).expect("readmit");
        affine(&dp, 2 * B).expect("both serve (the hang fault fired once)");
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn readmitting_a_still_dead_core_quarantines_it_again() {
    const NAME: &str = "readmitting_a_still_dead_core_quarantines_it_again";
    let Some(runtime) = child_scenario(
        NAME,
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "0:*:1201"),
        ],
        LIMIT,
    ) else {
        return;
    };
    {
        let dp = affine_engine(&runtime, Config::default());
        for round in 0..3 {
            for _ in 0..3 {
                affine(&dp, 2 * B).expect_err("physical 0 fails");
            }
            assert_eq!(
                dp.health()[0].state,
                CoreState::Quarantined,
                "round {round}"
            );
            affine(&dp, 2 * B).expect("physical 1 serves");
            dp.readmit(DeviceId::new(0))
                .expect("readmit (reload succeeds)");
            assert_eq!(dp.health()[0].state, CoreState::Healthy);
        }
        let loads = mock_counters().loads;
        assert_eq!(loads, 2 + 3, "each readmit reloads the model once");
    }
    assert_no_leaks("after the engine dropped");
}

#[test]
fn spread_small_calls_take_turns_over_the_cores_in_service_only() {
    // Physical 1 of 3 is dead; once it is quarantined, one-row calls spread over the other
    // two and never touch it.
    const NAME: &str = "spread_small_calls_take_turns_over_the_cores_in_service_only";
    let Some(runtime) = child_scenario(
        NAME,
        &[("NRT_MOCK_TOTAL_CORES", "3"), ("NRT_MOCK_FAULTS", "1:*:6")],
        LIMIT,
    ) else {
        return;
    };
    {
        let config = Config::default().spread_small_calls(true);
        let dp = DataParallel::new(&runtime, &core_id_neff(), config).expect("engine");
        for _ in 0..3 {
            let err = cores_per_row(&dp, 3 * B).expect_err("physical 1 fails");
            assert_eq!(err.status(), Some(Status::HwError));
        }
        assert_eq!(dp.health()[1].state, CoreState::Quarantined);
        let used: Vec<i32> = (0..4)
            .map(|_| cores_per_row(&dp, 1).expect("a healthy core")[0])
            .collect();
        let mut seen = used.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 2], "both healthy cores, never 1: {used:?}");
        assert_ne!(used[0], used[1], "consecutive calls take turns: {used:?}");
    }
    assert_no_leaks("after the engine dropped");
}
