//! `Config::spread_small_calls`: calls with fewer chunks than cores start on a rotating core
//! instead of always on the first, so many callers of single requests share out the cores.
//! The `core_id` model proves which physical core ran each row; outputs and their order are
//! checked with the affine model.

mod common;

use std::thread;

use common::{
    capture_logs, core_id_model, core_per_row, cores, engine, executions, neff,
    planned_core_per_row, ref_affine, warnings,
};
use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::DType;

const K: usize = 4;

/// The physical core of each of the engine's devices, in device order.
fn physical_cores(dp: &DataParallel) -> Vec<i32> {
    let plan = dp.plan(K).expect("plan of K rows");
    planned_core_per_row(&plan)
}

fn spread(k: usize) -> Config {
    cores(k).spread_small_calls(true)
}

#[test]
fn by_default_every_small_call_runs_on_the_first_core() {
    let dp = engine(&neff(core_id_model(1)), cores(K));
    let phys = physical_cores(&dp);
    for _ in 0..K {
        assert_eq!(core_per_row(&dp, 1), vec![phys[0]], "the reference mapping");
    }
}

#[test]
fn small_calls_take_turns_over_the_cores() {
    let dp = engine(&neff(core_id_model(1)), spread(K));
    let phys = physical_cores(&dp);
    let used: Vec<i32> = (0..2 * K).map(|_| core_per_row(&dp, 1)[0]).collect();
    let expected: Vec<i32> = (0..2 * K).map(|i| phys[i % K]).collect();
    assert_eq!(used, expected);
    // A call of 3 chunks takes the next 3 cores, wrapping round; rows stay in order.
    let before = executions(&dp);
    assert_eq!(core_per_row(&dp, 3), vec![phys[0], phys[1], phys[2]]);
    assert_eq!(core_per_row(&dp, 3), vec![phys[3], phys[0], phys[1]]);
    let after = executions(&dp);
    let ran: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(ran, vec![2, 2, 1, 1]);
}

#[test]
fn calls_with_a_chunk_per_core_keep_the_reference_mapping() {
    let dp = engine(&neff(core_id_model(1)), spread(K));
    let phys = physical_cores(&dp);
    core_per_row(&dp, 1); // moves the start for small calls only
    for n in [K, 2 * K + 1] {
        let plan = dp.plan(n).expect("plan");
        assert_eq!(core_per_row(&dp, n), planned_core_per_row(&plan), "n = {n}");
    }
    assert_eq!(core_per_row(&dp, 1), vec![phys[1]]);
}

#[test]
fn the_report_names_the_cores_a_call_used() {
    let dp = engine(&neff(core_id_model(1)), spread(K));
    let x = [0.0f32; 2];
    for _ in 0..K + 1 {
        let mut core = [0i32; 1];
        let report = dp
            .forward_into_report(
                &[Input::f32(&[1, 2], &x)],
                &mut [Output::from_slice(DType::Int32, &[1, 1], &mut core)],
            )
            .expect("forward");
        assert_eq!(report.chunks.len(), 1);
        let reported = report.chunks[0].0.physical_core.expect("mock knows") as i32;
        assert_eq!(
            reported, core[0],
            "the report names the core that ran the row"
        );
    }
}

#[test]
fn spread_small_calls_do_not_warn_about_idle_cores() {
    let dp = engine(&neff(core_id_model(1)), spread(K));
    let (_, logs) = capture_logs(|| core_per_row(&dp, 1));
    assert!(warnings(&logs).is_empty(), "{logs:?}");
    let plain = engine(&neff(core_id_model(1)), cores(K));
    let (_, logs) = capture_logs(|| core_per_row(&plain, 1));
    assert!(!warnings(&logs).is_empty(), "the reference warns: {logs:?}");
}

#[test]
fn concurrent_single_row_callers_share_the_cores_evenly() {
    const THREADS: usize = 4;
    const CALLS: usize = 25;
    let (scale, bias) = (2.0, 0.5);
    let dp = engine(&neff(common::affine_model(1, 3, scale, bias)), spread(K));
    thread::scope(|scope| {
        for t in 0..THREADS {
            let dp = &dp;
            scope.spawn(move || {
                for c in 0..CALLS {
                    let x = [t as f32, c as f32, 1.0];
                    let out = dp.forward(&[Input::f32(&[1, 3], &x)]).expect("forward");
                    assert_eq!(common::f32s(&out[0]), ref_affine(&x, scale, bias));
                }
            });
        }
    });
    // Every call moves the start by one, whatever the interleaving: 100 calls, 25 per core.
    assert_eq!(executions(&dp), vec![(THREADS * CALLS / K) as u64; K]);
}
