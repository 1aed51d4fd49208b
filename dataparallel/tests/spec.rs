//! The numbered behaviour spec (ARCHITECTURE.md, "The behaviour spec"), one test per case
//! (named `case_NN_...`), against the mock libnrt. Where the reference code is buggy the test
//! checks the **[want]** behaviour. Every output value is compared, bit for bit, with a plain
//! Rust implementation of the mock op (`common`), and the mock's `core_id` op proves which
//! physical core ran which rows.
//!
//! Mapping of Python-only structures to this engine's API:
//! - tuples / lists / dicts / namedtuples of inputs (43-45) → inputs by position or by name;
//! - non-tensor arguments (46) → an input marked `broadcast()`: the whole value is given to
//!   every piece unchanged;
//! - tuple / dict outputs (50, 51) → several model outputs, by position or by name;
//! - `forward()` with no arguments (48) → `forward(&[])`, an error.
//!
//! Skipped cases (cannot apply to a tensor engine over compiled models):
//! - 36 (`1.5`, `None` as Python objects) and 42 (`True`): Rust's types rule them out; the
//!   string forms `"1.5"` and the integer `-1` are tested.
//! - 52 (`None` output): a model output is always a tensor; a model without outputs is
//!   rejected at build.
//! - 53 (0-dim outputs): model tensors always carry a batch dim (the mock rejects rank 0).
//! - 59 (several caller threads at once): covered in `tests/concurrency.rs`.
//!
//! Run: `NRT_DYLIB_PATH=$PWD/target/debug/libnrt_mock.so cargo test -p dataparallel --test spec`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dataparallel::{Config, DataParallel, Error, Input, Output, PlanError};
use neuron_rt::{DType, DeviceId, DeviceIdError, DeviceIds};
use nrt_mock::testing::in_child;

/// Physical core of every replica, in device order.
fn physical(dp: &DataParallel) -> Vec<i32> {
    dp.physical_cores()
        .map(|p| p.expect("the mock reports physical cores") as i32)
        .collect()
}

/// Rows labelled with the physical core of their chunk: chunk i of `sizes` on replica
/// `i % k`.
fn rows_on(dp: &DataParallel, sizes: &[usize]) -> Vec<i32> {
    let phys = physical(dp);
    sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &s)| std::iter::repeat_n(phys[i % phys.len()], s))
        .collect()
}

/// Runs the affine model over `n` seeded rows and checks every value.
fn check_affine(dp: &DataParallel, n: usize, features: usize, scale: f32, bias: f32) {
    let x = XorShift::new(n as u64 + 7).f32s(n * features);
    let shape = [n, features];
    let out = dp.forward(&[Input::f32(&shape, &x)]).expect("forward");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "y");
    assert_eq!(out[0].shape, vec![n, features]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, scale, bias), "n={n}");
}

/// Cases 1-9: the automatic split of `n` rows over the first `k` cores.
fn split_case(k: usize, n: usize, sizes: &[usize], expect_warning: bool) {
    let ids = engine(&neff(core_id_model(2)), cores(k));
    let plan = ids.plan(n).unwrap();
    assert_eq!(chunk_sizes(&plan), sizes, "k={k} n={n}");
    for (i, chunk) in plan.iter().enumerate() {
        assert_eq!(chunk.chunk, i);
        assert_eq!(
            chunk.core,
            DeviceId::new(i as u32),
            "chunk {i} runs on core i"
        );
    }
    let (rows, logs) = capture_logs(|| core_per_row(&ids, n));
    assert_eq!(
        rows,
        rows_on(&ids, sizes),
        "k={k} n={n}: which core ran each row"
    );
    assert_eq!(rows, planned_core_per_row(&plan));
    assert_eq!(
        !warnings(&logs).is_empty(),
        expect_warning,
        "k={k} n={n}: under-use warning, logs: {logs:?}"
    );
    let affine = engine(&neff(affine_model(2, 3, 2.0, 0.5)), cores(k));
    check_affine(&affine, n, 3, 2.0, 0.5);
}

// ---------------------------------------------------------------------------------------
// Split and order (dim = 0, automatic split)

#[test]
fn case_01_k4_n8_chunks_2222() {
    split_case(4, 8, &[2, 2, 2, 2], false);
}

#[test]
fn case_02_k4_n5_chunks_2111_no_warning() {
    split_case(4, 5, &[2, 1, 1, 1], false);
}

#[test]
fn case_03_k4_n10_chunks_3322() {
    split_case(4, 10, &[3, 3, 2, 2], false);
}

#[test]
fn case_04_k4_n6_chunks_2211() {
    split_case(4, 6, &[2, 2, 1, 1], false);
}

#[test]
fn case_05_k3_n8_chunks_332_and_n5_chunks_221() {
    split_case(3, 8, &[3, 3, 2], false);
    split_case(3, 5, &[2, 2, 1], false);
}

#[test]
fn case_06_k2_n5_chunks_32_specify_ncs() {
    split_case(2, 5, &[3, 2], false);
    // The example itself: ['nc:0', 'nc:1'], batch 5 -> [5, 1000].
    let dp = engine(
        &neff(rowsum_model(1, 2000, 1000)),
        Config::default().device_list("nc:0,nc:1"),
    );
    let x = XorShift::new(6).f32s(5 * 2000);
    let shape = [5, 2000];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![5, 1000]);
    assert_eq!(f32s(&out[0]), ref_rowsum(&x, 5, 1000));
}

#[test]
fn case_07_k4_n3_three_chunks_core3_idle_warning() {
    split_case(4, 3, &[1, 1, 1], true);
    let dp = engine(&neff(core_id_model(1)), cores(4));
    core_per_row(&dp, 3);
    assert_eq!(executions(&dp), [1, 1, 1, 0], "core 3 stays idle");
}

#[test]
fn case_08_k4_n1_one_chunk_warning() {
    split_case(4, 1, &[1], true);
}

#[test]
fn case_09_k1_n7_one_chunk_and_k16_n16_sixteen_chunks() {
    split_case(1, 7, &[7], false);
    split_case(16, 16, &[1; 16], false);
}

#[test]
fn case_10_k4_n0_empty_output_without_device_call() {
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), cores(4));
    assert!(dp.plan(0).unwrap().is_empty());
    let shape = [0, 3];
    let out = dp.forward(&[Input::f32(&shape, &[])]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape, vec![0, 3]);
    assert!(out[0].data.is_empty());
    assert_eq!(
        total_executions(&dp),
        0,
        "no device call for an empty batch"
    );
    check_affine(&dp, 6, 3, 2.0, 0.5);
}

#[test]
fn case_11_output_row_j_comes_from_input_row_j() {
    let (scale, bias) = (-1.5, 3.0);
    for k in 1..=5usize {
        for split_size in [None, Some(1), Some(2), Some(5)] {
            for attach in [false, true] {
                let mut config = cores(k).attach(attach);
                if let Some(s) = split_size {
                    config = config.split_size(s);
                }
                let dp = engine(&neff(affine_model(3, 4, scale, bias).exec_us(0)), config);
                for n in 0..=13usize {
                    let x = row_tagged(n, 4);
                    let shape = [n, 4];
                    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
                    assert_eq!(
                        f32s(&out[0]),
                        ref_affine(&x, scale, bias),
                        "k={k} split={split_size:?} attach={attach} n={n}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per-core dynamic batching (dim = 0, enabled)

/// (rows, pieces, pad rows) of every chunk.
fn pieces(dp: &DataParallel, n: usize) -> Vec<(usize, usize, usize)> {
    dp.plan(n)
        .unwrap()
        .iter()
        .map(|c| (c.rows, c.pieces, c.pad_rows))
        .collect()
}

#[test]
fn case_12_b1_k4_n10_executions_3322_no_padding() {
    let dp = engine(&neff(affine_model(1, 5, 2.0, 1.0)), cores(4));
    assert_eq!(
        pieces(&dp, 10),
        [(3, 3, 0), (3, 3, 0), (2, 2, 0), (2, 2, 0)]
    );
    check_affine(&dp, 10, 5, 2.0, 1.0);
    assert_eq!(executions(&dp), [3, 3, 2, 2]);
}

#[test]
fn case_13_b4_k2_n10_two_executions_per_core_pads_trimmed() {
    let dp = engine(&neff(affine_model(4, 6, 0.25, -1.0)), cores(2));
    assert_eq!(pieces(&dp, 10), [(5, 2, 3), (5, 2, 3)]);
    check_affine(&dp, 10, 6, 0.25, -1.0);
    assert_eq!(executions(&dp), [2, 2]);
    // rowsum over padded pieces: pad rows must not leak into real rows either.
    let rs = engine(&neff(rowsum_model(4, 12, 5)), cores(2));
    let x = XorShift::new(13).f32s(10 * 12);
    let shape = [10, 12];
    let out = rs.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![10, 5]);
    assert_eq!(f32s(&out[0]), ref_rowsum(&x, 10, 5));
}

#[test]
fn case_14_b4_k4_n5_one_execution_per_core_11_pad_rows() {
    let dp = engine(&neff(affine_model(4, 3, 3.0, 0.0)), cores(4));
    let plan = pieces(&dp, 5);
    assert_eq!(plan, [(2, 1, 2), (1, 1, 3), (1, 1, 3), (1, 1, 3)]);
    assert_eq!(plan.iter().map(|p| p.2).sum::<usize>(), 11);
    check_affine(&dp, 5, 3, 3.0, 0.0);
    assert_eq!(executions(&dp), [1, 1, 1, 1]);
}

#[test]
fn case_15_b5_k16_n80_one_execution_each_no_padding() {
    let dp = engine(&neff(rowsum_model(5, 12, 4)), cores(16));
    assert_eq!(pieces(&dp, 80), vec![(5, 1, 0); 16]);
    let x = XorShift::new(15).f32s(80 * 12);
    let shape = [80, 12];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![80, 4]);
    assert_eq!(f32s(&out[0]), ref_rowsum(&x, 80, 4));
    assert_eq!(executions(&dp), vec![1; 16]);
}

#[test]
fn case_16_b1_k16_per_core_batch_2_to_7() {
    let dp = engine(&neff(affine_model(1, 4, 1.0, 0.125)), cores(16));
    let ids = engine(&neff(core_id_model(1)), cores(16));
    for per_core in 2..=7usize {
        let n = per_core * 16;
        assert_eq!(chunk_sizes(&dp.plan(n).unwrap()), vec![per_core; 16]);
        check_affine(&dp, n, 4, 1.0, 0.125);
        assert_eq!(core_per_row(&ids, n), rows_on(&ids, &[per_core; 16]));
    }
    // 2+3+...+7 = 27 executions of batch 1 per core.
    assert_eq!(executions(&dp), vec![27; 16]);
}

#[test]
fn case_17_b1_default_cores_any_batch_same_engine() {
    let dp = engine(&neff(rowsum_model(1, 3000, 1000)), Config::default());
    assert_eq!(dp.devices().len(), runtime().visible_cores() as usize);
    for n in 2..=6usize {
        let x = XorShift::new(n as u64).f32s(n * 3000);
        let shape = [n, 3000];
        let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
        assert_eq!(out[0].shape, vec![n, 1000]);
        assert_eq!(f32s(&out[0]), ref_rowsum(&x, n, 1000));
    }
}

#[test]
fn case_18_wrong_non_batch_dim_rejected_batch_dim_free() {
    let model = MockModel::new(
        "t",
        Op::Affine {
            scale: 2.0,
            bias: 0.0,
        },
    )
    .input("x", MockDType::Float32, &[2, 3, 5])
    .output("y", MockDType::Float32, &[2, 3, 5])
    .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(2));
    let bad = vec![1.0f32; 2 * 7 * 5];
    let bad_shape = [2, 7, 5];
    let err = dp.forward(&[Input::f32(&bad_shape, &bad)]).unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("[2, 7, 5]") && msg.contains("[2, 3, 5]"),
        "{msg}"
    );
    assert_eq!(total_executions(&dp), 0);

    let x = XorShift::new(18).f32s(3 * 3 * 5);
    let shape = [3, 3, 5];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![3, 3, 5]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, 2.0, 0.0));
}

#[test]
fn case_19_inputs_with_different_batch_rejected() {
    let dp = engine(&neff(add_model(2, 4)), cores(2));
    let a = vec![1.0f32; 3 * 4];
    let b = vec![1.0f32; 2 * 4];
    let err = dp
        .forward(&[Input::f32(&[3, 4], &a), Input::f32(&[2, 4], &b)])
        .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    assert!(err.to_string().contains("disagree"), "{err}");
    assert_eq!(total_executions(&dp), 0);
}

// ---------------------------------------------------------------------------------------
// Dynamic batching disabled

/// Cases 20-23 on an engine whose dynamic batching is off: b=1 over `k` cores; `ok` rows
/// run, `bad` rows are rejected before any device call with a message stating the rule.
fn exact_size_rule(dp: &DataParallel, k: usize, ok: usize, bad: &[usize]) {
    assert!(!dp.dynamic_batching());
    for &n in bad {
        let before = total_executions(dp);
        let x = vec![0.5f32; n * 6];
        let shape = [n, 6];
        let err = dp.forward(&[Input::f32(&shape, &x)]).unwrap_err();
        match &err {
            Error::Plan(PlanError::NotExact {
                n: got,
                k: cores,
                b,
                expected,
            }) => {
                assert_eq!((*got, *cores, *b, *expected), (n, k, 1, Some(k)));
            }
            other => panic!("n={n}: expected a plan error, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{k} cores x 1 = {k} rows, got {n}")),
            "the message states the rule and the numbers: {msg}"
        );
        assert_eq!(total_executions(dp), before, "rejected before dispatch");
        assert!(dp.plan(n).is_err());
    }
    assert_eq!(chunk_sizes(&dp.plan(ok).unwrap()), vec![1; k]);
    check_affine(dp, ok, 6, 2.0, -0.5);
}

#[test]
fn case_20_b1_k2_disabled_n2_chunks_11() {
    let dp = engine(&neff(affine_model(1, 6, 2.0, -0.5)), cores(2));
    assert!(dp.dynamic_batching(), "on by default for dim 0");
    dp.disable_dynamic_batching();
    exact_size_rule(&dp, 2, 2, &[]);
    let plan = dp.plan(2).unwrap();
    assert!(plan.iter().all(|c| c.pieces == 1 && c.pad_rows == 0));
}

#[test]
fn case_21_b1_k2_disabled_n4_error_before_dispatch() {
    let dp = engine(&neff(affine_model(1, 6, 2.0, -0.5)), cores(2));
    dp.disable_dynamic_batching();
    exact_size_rule(&dp, 2, 2, &[4, 3, 1]);
}

#[test]
fn case_22_b1_k4_disabled_n8_error_n4_works() {
    let dp = engine(&neff(affine_model(1, 6, 2.0, -0.5)), cores(4));
    dp.disable_dynamic_batching();
    exact_size_rule(&dp, 4, 4, &[8, 5, 3]);
}

#[test]
fn case_23_constructor_flag_behaves_like_disable() {
    for (k, ok, bad) in [(2usize, 2usize, &[4usize, 1][..]), (4, 4, &[8, 3][..])] {
        let dp = engine(
            &neff(affine_model(1, 6, 2.0, -0.5)),
            cores(k).dynamic_batching(false),
        );
        exact_size_rule(&dp, k, ok, bad);
    }
}

#[test]
fn case_24_stable_diffusion_unet_shapes() {
    // sample [1,4,64,64] f32, timestep [1] f32, encoder_hidden_states [1,77,1024] bf16.
    let model = MockModel::new("unet", Op::Identity)
        .input("sample", MockDType::Float32, &[1, 4, 64, 64])
        .input("timestep", MockDType::Float32, &[1])
        .input("encoder_hidden_states", MockDType::BFloat16, &[1, 77, 1024])
        .output("sample_out", MockDType::Float32, &[1, 4, 64, 64])
        .output("timestep_out", MockDType::Float32, &[1])
        .output("hidden_out", MockDType::BFloat16, &[1, 77, 1024])
        .exec_us(EXEC_US);
    let dp = engine(
        &neff(model),
        Config::default()
            .device_indices(vec![0, 1])
            .dynamic_batching(false),
    );
    let mut rng = XorShift::new(24);
    let sample = rng.f32s(2 * 4 * 64 * 64);
    let timestep = vec![981.0f32, 981.0];
    let hidden = rng.bytes(2 * 77 * 1024 * 2);
    let (s_shape, t_shape, h_shape) = ([2, 4, 64, 64], [2], [2, 77, 1024]);
    let plan = dp.plan(2).unwrap();
    assert_eq!(chunk_layout(&plan), [(1, 0), (1, 1)]);
    let out = dp
        .forward(&[
            Input::f32(&s_shape, &sample),
            Input::f32(&t_shape, &timestep),
            Input::new(DType::BFloat16, &h_shape, &hidden),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![2, 4, 64, 64]);
    assert_eq!(out[1].shape, vec![2]);
    assert_eq!(out[2].shape, vec![2, 77, 1024]);
    assert_eq!(out[2].dtype, DType::BFloat16);
    assert_eq!(f32s(&out[0]), sample);
    assert_eq!(f32s(&out[1]), timestep);
    assert_eq!(out[2].data, hidden);
    assert_eq!(executions(&dp), [1, 1]);
}

#[test]
fn case_25_ineligible_model_fails_until_disabled() {
    // `w` has no batch dim shared with `x`: compiled [2, 8] against x's [4, 8].
    let model = MockModel::new("ineligible", Op::Identity)
        .input("x", MockDType::Float32, &[4, 8])
        .input("w", MockDType::Float32, &[2, 8])
        .output("x_out", MockDType::Float32, &[4, 8])
        .output("w_out", MockDType::Float32, &[2, 8])
        .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(2));
    let mut rng = XorShift::new(25);
    let x = rng.f32s(8 * 8);
    let w = rng.f32s(2 * 8);
    let (x_shape, w_shape) = ([8, 8], [2, 8]);
    let w8 = rng.f32s(8 * 8);
    for _ in 0..2 {
        // Every forward fails, `w` broadcast or batched like `x`, with the distinct error type.
        for w_input in [
            Input::f32(&w_shape, &w).broadcast(),
            Input::f32(&x_shape, &w8),
        ] {
            let err = dp
                .forward(&[Input::f32(&x_shape, &x), w_input])
                .unwrap_err();
            assert!(
                matches!(err, Error::DynamicBatchingIneligible { .. }),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("disable_dynamic_batching()"),
                "{err}"
            );
        }
    }
    assert_eq!(total_executions(&dp), 0);

    dp.disable_dynamic_batching();
    // Exact-size rule: n == k * b = 8, `w` given whole to every chunk.
    let out = dp
        .forward(&[
            Input::f32(&x_shape, &x),
            Input::f32(&w_shape, &w).broadcast(),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![8, 8]);
    assert_eq!(f32s(&out[0]), x);
    assert_eq!(out[1].shape, vec![4, 8], "one compiled w_out per chunk");
    assert_eq!(f32s(&out[1]), [w.clone(), w.clone()].concat());
    // Still the exact-size rule.
    let x12 = rng.f32s(12 * 8);
    let err = dp
        .forward(&[
            Input::f32(&[12, 8], &x12),
            Input::f32(&w_shape, &w).broadcast(),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::Plan(_)), "{err:?}");
    // Unmarked `w` is an input error that says to mark it broadcast.
    let err = dp
        .forward(&[Input::f32(&x_shape, &x), Input::f32(&x_shape, &w8)])
        .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    assert!(err.to_string().contains("broadcast"), "{err}");
}

#[test]
fn case_25_ineligible_model_error_does_not_depend_on_call_rows() {
    // Same model as above; `w` passed with its own compiled shape [2, 8], not broadcast.
    let model = MockModel::new("ineligible", Op::Identity)
        .input("x", MockDType::Float32, &[4, 8])
        .input("w", MockDType::Float32, &[2, 8])
        .output("x_out", MockDType::Float32, &[4, 8])
        .output("w_out", MockDType::Float32, &[2, 8])
        .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(2));
    let x = vec![1.0f32; 8 * 8];
    let w = vec![1.0f32; 2 * 8];
    let err = dp
        .forward(&[Input::f32(&[8, 8], &x), Input::f32(&[2, 8], &w)])
        .unwrap_err();
    // The model cannot batch dynamically whatever the call passes: say so (and point to
    // disable_dynamic_batching()), rather than "inputs disagree on batch size: 8 vs 2".
    assert!(
        matches!(err, Error::DynamicBatchingIneligible { .. }),
        "{err:?}"
    );
    // Likewise with dynamic batching off: the hint to mark `w` broadcast is lost.
    dp.disable_dynamic_batching();
    let err = dp
        .forward(&[Input::f32(&[8, 8], &x), Input::f32(&[2, 8], &w)])
        .unwrap_err();
    assert!(err.to_string().contains("broadcast"), "{err}");
}

// ---------------------------------------------------------------------------------------
// dim != 0

/// Affine (+1) over `x` [1,3,8,8] (split on dim 2) and `y` [1,3,6,6] (broadcast), standing
/// in for Conv2d(3->3, 3x3) + 1 traced on [1,3,8,8]: per chunk, an output of [1,3,6,6].
fn conv_like_model() -> MockModel {
    MockModel::new(
        "conv_like",
        Op::Affine {
            scale: 1.0,
            bias: 1.0,
        },
    )
    .input("x", MockDType::Float32, &[1, 3, 8, 8])
    .input("y", MockDType::Float32, &[1, 3, 6, 6])
    .output("x_out", MockDType::Float32, &[1, 3, 8, 8])
    .output("y_out", MockDType::Float32, &[1, 3, 6, 6])
    .exec_us(EXEC_US)
}

fn dim2_case(k: usize) {
    let (dp, logs) = capture_logs(|| engine(&neff(conv_like_model()), cores(k).dim(2)));
    assert!(
        !dp.dynamic_batching(),
        "dynamic batching forced off for dim != 0"
    );
    assert!(warnings(&logs).is_empty(), "info only: {logs:?}");
    assert!(
        logs.iter()
            .any(|(l, m)| *l == log::Level::Info && m.contains("dim")),
        "{logs:?}"
    );
    let mut rng = XorShift::new(26 + k as u64);
    let x = rng.f32s(3 * 8 * k * 8);
    let y = rng.f32s(3 * 6 * 6);
    let x_shape = [1, 3, 8 * k, 8];
    let y_shape = [1, 3, 6, 6];
    assert_eq!(chunk_sizes(&dp.plan(8 * k).unwrap()), vec![8; k]);
    let out = dp
        .forward(&[
            Input::f32(&x_shape, &x),
            Input::f32(&y_shape, &y).broadcast(),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![1, 3, 8 * k, 8]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, 1.0, 1.0));
    assert_eq!(out[1].shape, vec![1, 3, 6 * k, 6]);
    let y1 = ref_affine(&y, 1.0, 1.0);
    let mut want = Vec::new();
    for c in 0..3 {
        for _chunk in 0..k {
            want.extend_from_slice(&y1[c * 36..(c + 1) * 36]);
        }
    }
    assert_eq!(
        f32s(&out[1]),
        want,
        "per-chunk outputs concatenated on dim 2"
    );
    assert_eq!(executions(&dp), vec![1; k]);
}

#[test]
fn case_26_dim2_k2_input_16_gives_12_on_dim2() {
    dim2_case(2);
}

#[test]
fn case_27_dim2_k4_input_32_gives_24_on_dim2() {
    dim2_case(4);
}

fn dim2_rejects(k: usize, size: usize) {
    let dp = engine(&neff(conv_like_model()), cores(k).dim(2));
    let x = vec![1.0f32; 3 * size * 8];
    let y = vec![1.0f32; 3 * 36];
    let x_shape = [1, 3, size, 8];
    let y_shape = [1, 3, 6, 6];
    let err = dp
        .forward(&[
            Input::f32(&x_shape, &x),
            Input::f32(&y_shape, &y).broadcast(),
        ])
        .unwrap_err();
    match &err {
        Error::Plan(PlanError::NotExact { n, k: cores, b, .. }) => {
            assert_eq!((*n, *cores, *b), (size, k, 8));
        }
        other => panic!("expected a plan error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("{k} cores x 8 = {} rows, got {size}", 8 * k)),
        "{err}"
    );
    assert_eq!(total_executions(&dp), 0, "no row silently dropped or run");
}

#[test]
fn case_28_dim2_k2_size17_error_not_dropped_row() {
    dim2_rejects(2, 17);
}

#[test]
fn case_29_dim2_k4_size3_error_not_empty_chunks() {
    dim2_rejects(4, 3);
}

#[test]
fn case_30_dim1_with_dynamic_batching_requested_is_not_an_error() {
    let model = MockModel::new(
        "d1",
        Op::Affine {
            scale: 4.0,
            bias: -2.0,
        },
    )
    .input("x", MockDType::Float32, &[2, 5])
    .output("y", MockDType::Float32, &[2, 5])
    .exec_us(EXEC_US);
    let dp = DataParallel::new(
        &runtime(),
        &neff(model),
        cores(3).dim(1).dynamic_batching(true),
    )
    .expect("dim 1 with dynamic batching requested builds");
    assert!(!dp.dynamic_batching());
    assert_eq!(dp.dim(), 1);
    let x = row_tagged(2, 15);
    let shape = [2, 15];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![2, 15]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, 4.0, -2.0));
    assert_eq!(executions(&dp), [1, 1, 1]);
}

// ---------------------------------------------------------------------------------------
// User split_size

#[test]
fn case_31_split3_k4_n10_jobs_3331_round_robin() {
    let ids = engine(&neff(core_id_model(2)), cores(4).split_size(3));
    let plan = ids.plan(10).unwrap();
    assert_eq!(chunk_layout(&plan), [(3, 0), (3, 1), (3, 2), (1, 3)]);
    let (rows, logs) = capture_logs(|| core_per_row(&ids, 10));
    assert_eq!(rows, rows_on(&ids, &[3, 3, 3, 1]));
    assert!(warnings(&logs).is_empty(), "4 jobs on 4 cores: {logs:?}");
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), cores(4).split_size(3));
    check_affine(&dp, 10, 3, 2.0, 0.5);
}

#[test]
fn case_32_split1_k4_n10_ten_jobs_cores_3322() {
    let ids = engine(&neff(core_id_model(1)), cores(4).split_size(1));
    let plan = ids.plan(10).unwrap();
    assert_eq!(plan.len(), 10);
    for (i, c) in plan.iter().enumerate() {
        assert_eq!((c.rows, c.core), (1, DeviceId::new((i % 4) as u32)));
    }
    let (rows, logs) = capture_logs(|| core_per_row(&ids, 10));
    assert_eq!(rows, rows_on(&ids, &[1; 10]));
    assert!(!warnings(&logs).is_empty(), "10 jobs on 4 cores warns");
    assert_eq!(executions(&ids), [3, 3, 2, 2]);
    let dp = engine(&neff(affine_model(1, 3, 2.0, 0.5)), cores(4).split_size(1));
    check_affine(&dp, 10, 3, 2.0, 0.5);
}

#[test]
fn case_33_split8_k4_n8_one_job_warning() {
    let ids = engine(&neff(core_id_model(2)), cores(4).split_size(8));
    assert_eq!(chunk_layout(&ids.plan(8).unwrap()), [(8, 0)]);
    let (rows, logs) = capture_logs(|| core_per_row(&ids, 8));
    assert_eq!(rows, rows_on(&ids, &[8]));
    assert!(!warnings(&logs).is_empty());
    assert_eq!(executions(&ids), [4, 0, 0, 0]);
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), cores(4).split_size(8));
    check_affine(&dp, 8, 3, 2.0, 0.5);
}

#[test]
fn case_34_split1_k4_named_inputs_keep_every_row() {
    let model = MockModel::new("foobar", Op::Add)
        .input("foo", MockDType::Float32, &[1, 1])
        .input("bar", MockDType::Float32, &[1, 1])
        .output("sum", MockDType::Float32, &[1, 1])
        .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(4).split_size(1));
    let foo: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let bar: Vec<f32> = (0..8).map(|i| (i * 100) as f32).collect();
    let shape = [8, 1];
    assert_eq!(dp.plan(8).unwrap().len(), 8);
    let out = dp
        .forward(&[
            Input::f32(&shape, &bar).named("bar"),
            Input::f32(&shape, &foo).named("foo"),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![8, 1], "no rows lost (Inf1 issue #620)");
    assert_eq!(f32s(&out[0]), ref_add(&foo, &bar));
    assert_eq!(executions(&dp), [2, 2, 2, 2]);
}

// ---------------------------------------------------------------------------------------
// device_ids

/// Plan, placement and results of an engine on `config`, for comparing configurations.
/// (devices, (rows, core) per chunk, physical core per row, affine outputs).
type Placement = (DeviceIds, Vec<(usize, u32)>, Vec<i32>, Vec<f32>);

fn placement(config: Config) -> Placement {
    let ids = engine(&neff(core_id_model(2)), config.clone());
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), config);
    let x = XorShift::new(35).f32s(7 * 3);
    let shape = [7, 3];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    (
        ids.devices().clone(),
        chunk_layout(&ids.plan(7).unwrap()),
        core_per_row(&ids, 7),
        f32s(&out[0]),
    )
}

#[test]
fn case_35_nc_strings_equal_integers() {
    let by_strings = placement(Config::default().device_list("nc:0,nc:1,nc:2"));
    assert_eq!(by_strings.0.to_string(), "nc:0,nc:1,nc:2");
    assert_eq!(by_strings.1, [(3, 0), (2, 1), (2, 2)]);
    assert_eq!(
        by_strings,
        placement(Config::default().device_indices(vec![0, 1, 2]))
    );
    assert_eq!(
        by_strings,
        placement(Config::default().device_list("0,1,2"))
    );
    assert_eq!(
        by_strings,
        placement(Config::default().device_list("nc:0, 1 ,nc:2"))
    );
    let parsed = DeviceIds::from_strs(["nc:0", "nc:1", "nc:2"]).unwrap();
    assert_eq!(by_strings, placement(Config::default().device_ids(parsed)));
    let x = XorShift::new(35).f32s(7 * 3);
    assert_eq!(by_strings.3, ref_affine(&x, 2.0, 0.5));
}

#[test]
fn case_35_nc_strings_are_logical_cores() {
    if !in_child(
        "case_35_nc_strings_are_logical_cores",
        &[("NEURON_RT_VISIBLE_CORES", "8-10")],
    ) {
        return;
    }
    let ids = engine(
        &neff(core_id_model(2)),
        Config::default().device_list("nc:0,nc:1,nc:2"),
    );
    assert_eq!(core_per_row(&ids, 7), [8, 8, 8, 9, 9, 10, 10]);
    let ints = engine(
        &neff(core_id_model(2)),
        Config::default().device_indices(vec![0, 1, 2]),
    );
    assert_eq!(core_per_row(&ints, 7), [8, 8, 8, 9, 9, 10, 10]);
}

/// The build error of `config` (the engine must not build).
fn build_error(config: Config) -> Error {
    DataParallel::new(&runtime(), &neff(affine_model(2, 3, 1.0, 0.0)), config)
        .expect_err("the configuration must be rejected")
}

fn device_id_error(err: &Error) -> &DeviceIdError {
    match err {
        Error::DeviceIds(neuron_rt::Error::DeviceId(e)) => e,
        other => panic!("expected a device id error, got {other:?}"),
    }
}

#[test]
fn case_36_nc13_accepted_malformed_forms_rejected() {
    let ids = engine(
        &neff(core_id_model(1)),
        Config::default().device_list("nc:13"),
    );
    assert_eq!(ids.devices().as_slice(), [DeviceId::new(13)]);
    assert_eq!(core_per_row(&ids, 2), [physical(&ids)[0]; 2]);
    for bad in [
        "NC:1",
        "core1",
        "nc:",
        "nc:1x",
        "1.5",
        "xnc:3y",
        "nc:0,NC:1",
    ] {
        let err = build_error(Config::default().device_list(bad));
        let entry = bad.rsplit(',').next().unwrap();
        assert!(
            matches!(device_id_error(&err), DeviceIdError::Malformed { entry: e } if e == entry),
            "{bad}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{entry:?}")),
            "names the entry: {msg}"
        );
        assert!(
            msg.contains("`nc:N`") && msg.contains("integer"),
            "accepted forms: {msg}"
        );
    }
}

#[test]
fn case_37_ids_3_1_sorted_chunk0_on_core1() {
    for config in [
        Config::default().device_indices(vec![3, 1]),
        Config::default().device_list("nc:3,nc:1"),
    ] {
        let ids = engine(&neff(core_id_model(1)), config);
        assert_eq!(
            ids.devices().as_slice(),
            [DeviceId::new(1), DeviceId::new(3)]
        );
        assert_eq!(chunk_layout(&ids.plan(2).unwrap()), [(1, 1), (1, 3)]);
        assert_eq!(
            core_per_row(&ids, 2),
            [physical(&ids)[0], physical(&ids)[1]]
        );
    }
}

#[test]
fn case_37_ids_3_1_physical_cores_via_core_id() {
    if !in_child(
        "case_37_ids_3_1_physical_cores_via_core_id",
        &[("NEURON_RT_VISIBLE_CORES", "4-7")],
    ) {
        return;
    }
    let ids = engine(
        &neff(core_id_model(1)),
        Config::default().device_indices(vec![3, 1]),
    );
    // Logical nc:1 and nc:3 are physical 5 and 7; chunk 0 runs on nc:1.
    assert_eq!(physical(&ids), [5, 7]);
    assert_eq!(core_per_row(&ids, 2), [5, 7]);
    assert_eq!(core_per_row(&ids, 5), [5, 5, 5, 7, 7]);
}

#[test]
fn case_38_consecutive_ids_fixed_mapping_same_results_as_pinned() {
    let consecutive = engine(&neff(core_id_model(1)), cores(4));
    assert_eq!(consecutive.core_stats().len(), 4, "one replica per core");
    let want = rows_on(&consecutive, &[3, 3, 2, 2]);
    for _ in 0..5 {
        // Not the runtime's round-robin: chunk i is on core i on every call.
        assert_eq!(core_per_row(&consecutive, 10), want);
    }
    let a = placement(cores(4));
    let b = placement(Config::default().device_indices(vec![1, 3, 5, 7]));
    assert_eq!(a.3, b.3, "same results as pinned, non-consecutive replicas");
    assert_eq!(a.1.iter().map(|c| c.0).collect::<Vec<_>>(), [2, 2, 2, 1]);
    assert_eq!(b.1, [(2, 1), (2, 3), (2, 5), (1, 7)]);
}

#[test]
fn case_39_default_is_all_visible_cores() {
    let dp = engine(&neff(core_id_model(1)), Config::default());
    let visible = runtime().visible_cores() as usize;
    assert_eq!(dp.devices().len(), visible);
    assert_eq!(
        dp.devices().as_slice(),
        DeviceIds::all(visible as u32).unwrap().as_slice()
    );
}

#[test]
fn case_39_default_follows_visible_cores() {
    if !in_child(
        "case_39_default_follows_visible_cores",
        &[("NEURON_RT_VISIBLE_CORES", "2-4")],
    ) {
        return;
    }
    let ids = engine(&neff(core_id_model(1)), Config::default());
    assert_eq!(ids.devices().to_string(), "nc:0,nc:1,nc:2");
    assert_eq!(core_per_row(&ids, 3), [2, 3, 4]);
}

#[test]
fn case_39_runtime_without_a_core_count_is_an_error() {
    if !in_child(
        "case_39_runtime_without_a_core_count_is_an_error",
        &[
            ("NRT_MOCK_TOTAL_CORES", "4"),
            ("NEURON_RT_VISIBLE_CORES", "6-9"),
        ],
    ) {
        return;
    }
    // The process cannot own the cores it names: the runtime fails to start, with an error
    // (not a panic), before any engine exists.
    let err = neuron_rt::Runtime::init().expect_err("cores 6-9 of 4");
    assert!(!err.to_string().is_empty());
}

#[test]
fn case_40_empty_device_list_is_a_clear_error() {
    for config in [
        Config::default().device_list(""),
        Config::default().device_list("  "),
        Config::default().device_indices(Vec::<i64>::new()),
    ] {
        let err = build_error(config);
        assert!(
            matches!(device_id_error(&err), DeviceIdError::EmptyList),
            "{err:?}"
        );
        assert!(err.to_string().contains("no device ids"), "{err}");
    }
}

#[test]
fn case_41_ids_past_visible_count_error_at_construction() {
    if !in_child(
        "case_41_ids_past_visible_count_error_at_construction",
        &[("NRT_MOCK_TOTAL_CORES", "2")],
    ) {
        return;
    }
    assert_eq!(runtime().visible_cores(), 2);
    let err = build_error(Config::default().device_indices((0..8).collect::<Vec<i64>>()));
    assert!(
        !matches!(err, Error::DynamicBatchingIneligible { .. }),
        "a bad core count is not a dynamic batching failure: {err:?}"
    );
    assert!(
        matches!(
            device_id_error(&err),
            DeviceIdError::OutOfRange { id: 7, visible: 2 }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("nc:7") && msg.contains("2 NeuronCores"),
        "{msg}"
    );
    let err = build_error(Config::default().device_list("nc:2"));
    assert!(matches!(
        device_id_error(&err),
        DeviceIdError::OutOfRange { id: 2, visible: 2 }
    ));
    // The two visible cores themselves work.
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), Config::default());
    check_affine(&dp, 5, 3, 2.0, 0.5);
}

#[test]
fn case_42_negative_ids_rejected() {
    for config in [
        Config::default().device_indices(vec![-1]),
        Config::default().device_indices(vec![0, -1]),
        Config::default().device_list("-1"),
        Config::default().device_list("nc:-1"),
    ] {
        let err = build_error(config);
        assert!(
            matches!(device_id_error(&err), DeviceIdError::Negative { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("negative"), "{err}");
    }
    // Duplicates are rejected too (the reference keeps them).
    for config in [
        Config::default().device_indices(vec![2, 2]),
        Config::default().device_list("nc:1,1"),
    ] {
        let err = build_error(config);
        assert!(
            matches!(device_id_error(&err), DeviceIdError::Duplicate { .. }),
            "{err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Input structures

#[test]
fn case_43_two_positional_inputs_split_alike() {
    let dp = engine(&neff(add_model(2, 4)), cores(4));
    let mut rng = XorShift::new(43);
    let a = rng.f32s(10 * 4);
    let b = rng.f32s(10 * 4);
    let shape = [10, 4];
    assert_eq!(chunk_sizes(&dp.plan(10).unwrap()), [3, 3, 2, 2]);
    let out = dp
        .forward(&[Input::f32(&shape, &a), Input::f32(&shape, &b)])
        .unwrap();
    assert_eq!(out[0].shape, vec![10, 4]);
    assert_eq!(f32s(&out[0]), ref_add(&a, &b));
}

/// Identity with two float32 inputs `x`, `y` and outputs `x_out`, `y_out`.
fn two_in_two_out(b: u32) -> MockModel {
    MockModel::new("pair", Op::Identity)
        .input("x", MockDType::Float32, &[b, 3])
        .input("y", MockDType::Float32, &[b, 3])
        .output("x_out", MockDType::Float32, &[b, 3])
        .output("y_out", MockDType::Float32, &[b, 3])
        .exec_us(EXEC_US)
}

#[test]
fn case_44_named_inputs_mapped_by_name_any_order() {
    let dp = engine(&neff(two_in_two_out(2)), cores(2));
    assert_eq!(chunk_sizes(&dp.plan(5).unwrap()), [3, 2]);
    let x = row_tagged(5, 3);
    let y: Vec<f32> = x.iter().map(|v| -v - 0.5).collect();
    let shape = [5, 3];
    let out = dp
        .forward(&[
            Input::f32(&shape, &y).named("y"),
            Input::f32(&shape, &x).named("x"),
        ])
        .unwrap();
    assert_eq!(
        (out[0].name.as_str(), out[1].name.as_str()),
        ("x_out", "y_out")
    );
    assert_eq!(f32s(&out[0]), x);
    assert_eq!(f32s(&out[1]), y);
}

#[test]
fn case_45_positional_and_named_give_identical_results() {
    let dp = engine(&neff(two_in_two_out(3)), cores(3));
    let mut rng = XorShift::new(45);
    let x = rng.f32s(8 * 3);
    let y = rng.f32s(8 * 3);
    let shape = [8, 3];
    let positional = dp
        .forward(&[Input::f32(&shape, &x), Input::f32(&shape, &y)])
        .unwrap();
    let named = dp
        .forward(&[
            Input::f32(&shape, &x).named("x"),
            Input::f32(&shape, &y).named("y"),
        ])
        .unwrap();
    let reversed = dp
        .forward(&[
            Input::f32(&shape, &y).named("y"),
            Input::f32(&shape, &x).named("x"),
        ])
        .unwrap();
    assert_eq!(positional, named);
    assert_eq!(positional, reversed);
    assert_eq!(f32s(&positional[0]), x);
    assert_eq!(f32s(&positional[1]), y);
}

#[test]
fn case_46_broadcast_input_given_to_every_piece_unchanged() {
    // A bias row, as `forward(x, bias)` with a non-batched bias: b = 1.
    let dp = engine(&neff(add_model(1, 8)), cores(3));
    let mut rng = XorShift::new(46);
    let x = rng.f32s(7 * 8);
    let bias = rng.f32s(8);
    let (x_shape, bias_shape) = ([7, 8], [1, 8]);
    let out = dp
        .forward(&[
            Input::f32(&x_shape, &x),
            Input::f32(&bias_shape, &bias).broadcast(),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![7, 8]);
    let want: Vec<f32> = x.chunks(8).flat_map(|row| ref_add(row, &bias)).collect();
    assert_eq!(f32s(&out[0]), want);

    // b = 4: each piece (4 rows from its chunk's start) gets the whole [4, 8] value, so
    // row r of a piece is added to row r of the broadcast value.
    let dp = engine(&neff(add_model(4, 8)), cores(2));
    let x = rng.f32s(10 * 8);
    let w = rng.f32s(4 * 8);
    let (x_shape, w_shape) = ([10, 8], [4, 8]);
    let plan = dp.plan(10).unwrap();
    let out = dp
        .forward(&[
            Input::f32(&x_shape, &x),
            Input::f32(&w_shape, &w).broadcast(),
        ])
        .unwrap();
    let mut want = Vec::new();
    for chunk in &plan {
        for j in chunk.start..chunk.start + chunk.rows {
            let r = (j - chunk.start) % 4;
            want.extend(ref_add(&x[j * 8..(j + 1) * 8], &w[r * 8..(r + 1) * 8]));
        }
    }
    assert_eq!(f32s(&out[0]), want);
}

#[test]
fn case_47_inputs_disagreeing_on_batch_size_error() {
    let dp = engine(&neff(add_model(1, 2)), cores(4));
    let a = vec![1.0f32; 6 * 2];
    let b = vec![1.0f32; 3 * 2];
    let err = dp
        .forward(&[Input::f32(&[6, 2], &a), Input::f32(&[3, 2], &b)])
        .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("disagree") && msg.contains('6') && msg.contains('3'),
        "{msg}"
    );
    assert_eq!(
        total_executions(&dp),
        0,
        "no row runs (the reference ran 3 jobs)"
    );
}

#[test]
fn case_48_forward_with_no_inputs_error() {
    let dp = engine(&neff(affine_model(2, 3, 2.0, 0.5)), cores(2));
    let err = dp.forward(&[]).unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    assert!(
        err.to_string().contains("\"x\""),
        "names what the model takes: {err}"
    );
    assert_eq!(total_executions(&dp), 0);
    check_affine(&dp, 3, 3, 2.0, 0.5);
}

// ---------------------------------------------------------------------------------------
// Outputs and gather

#[test]
fn case_49_output_rows_gathered_in_chunk_order() {
    let dp = engine(&neff(rowsum_model(2, 40, 10)), cores(4));
    let x = XorShift::new(49).f32s(9 * 40);
    let shape = [9, 40];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "y");
    assert_eq!(out[0].dtype, DType::Float32);
    assert_eq!(out[0].shape, vec![9, 10]);
    assert_eq!(f32s(&out[0]), ref_rowsum(&x, 9, 10));
}

#[test]
fn case_50_two_outputs_each_gathered() {
    let model = MockModel::new("tuple_out", Op::Identity)
        .input("x", MockDType::Float32, &[2, 4])
        .input("t", MockDType::Int32, &[2, 2])
        .output("x_out", MockDType::Float32, &[2, 4])
        .output("t_out", MockDType::Int32, &[2, 2])
        .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(3));
    let x = XorShift::new(50).f32s(7 * 4);
    let t: Vec<i32> = (0..14).map(|i| i * 7 - 20).collect();
    let (x_shape, t_shape) = ([7, 4], [7, 2]);
    let inputs = [
        Input::f32(&x_shape, &x),
        Input::from_slice(DType::Int32, &t_shape, &t),
    ];
    assert_eq!(dp.output_shapes(&inputs).unwrap(), [vec![7, 4], vec![7, 2]]);
    let out = dp.forward(&inputs).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].name.as_str(), out[0].shape.as_slice()),
        ("x_out", &[7, 4][..])
    );
    assert_eq!(
        (out[1].name.as_str(), out[1].shape.as_slice()),
        ("t_out", &[7, 2][..])
    );
    assert_eq!(f32s(&out[0]), x);
    assert_eq!(i32s(&out[1]), t);
}

#[test]
fn case_51_named_output_buffers_filled_per_name() {
    let dp = engine(&neff(two_in_two_out(2)), cores(2));
    let x = row_tagged(5, 3);
    let y: Vec<f32> = x.iter().map(|v| v + 0.25).collect();
    let shape = [5, 3];
    let inputs = [Input::f32(&shape, &x), Input::f32(&shape, &y)];
    let mut x_out = vec![f32::NAN; 15];
    let mut y_out = vec![f32::NAN; 15];
    {
        let mut outputs = [
            Output::f32(&shape, &mut y_out).named("y_out"),
            Output::f32(&shape, &mut x_out).named("x_out"),
        ];
        dp.forward_into(&inputs, &mut outputs).unwrap();
    }
    assert_eq!(x_out, x);
    assert_eq!(y_out, y);
    // A "dict" missing a key is an error, and the engine still serves.
    let mut only = vec![0.0f32; 15];
    let err = dp
        .forward_into(
            &inputs,
            &mut [Output::f32(&shape, &mut only).named("x_out")],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Output(_)), "{err:?}");
    assert!(err.to_string().contains("y_out"), "{err}");
    let out = dp.forward(&inputs).unwrap();
    assert_eq!(f32s(&out[0]), x);
}

#[test]
fn case_54_dim1_outputs_concatenated_along_dim() {
    let model = MockModel::new(
        "d1",
        Op::Affine {
            scale: 0.5,
            bias: 7.0,
        },
    )
    .input("x", MockDType::Float32, &[2, 3, 4])
    .output("y", MockDType::Float32, &[2, 3, 4])
    .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(3).dim(1));
    // Element (a, r, c) = a*10000 + r*100 + c, so any misplaced run shows.
    let x: Vec<f32> = (0..2)
        .flat_map(|a| {
            (0..9).flat_map(move |r| (0..4).map(move |c| (a * 10000 + r * 100 + c) as f32))
        })
        .collect();
    let shape = [2, 9, 4];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![2, 9, 4]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, 0.5, 7.0));
}

// ---------------------------------------------------------------------------------------
// Dispatch, errors, warnings

#[test]
fn case_55_failing_chunk_reported_after_every_chunk_ran() {
    // Logical nc:0-3 are physical 4-7; every execution on physical 6 (nc:2) fails.
    if !in_child(
        "case_55_failing_chunk_reported_after_every_chunk_ran",
        &[
            ("NEURON_RT_VISIBLE_CORES", "4-7"),
            ("NRT_MOCK_FAULTS", "6:*:1004"),
        ],
    ) {
        return;
    }
    let (scale, bias) = (2.0, 0.5);
    let dp = engine(&neff(affine_model(2, 3, scale, bias)), Config::default());
    assert_eq!(physical(&dp), [4, 5, 6, 7]);
    // 16 rows: chunks of 4 rows, 2 pieces each.
    let x = XorShift::new(55).f32s(16 * 3);
    let want = ref_affine(&x, scale, bias);
    let shape = [16, 3];
    let run = |out: &mut Vec<f32>| -> Result<(), Error> {
        out.fill(f32::NAN);
        dp.forward_into(&[Input::f32(&shape, &x)], &mut [Output::f32(&shape, out)])
    };
    let mut out = vec![0.0f32; 16 * 3];
    let err = run(&mut out).unwrap_err();
    assert_eq!(err.chunk(), Some((2, DeviceId::new(2), Some(6))), "{err:?}");
    assert!(matches!(err, Error::Chunk { chunk: 2, .. }));
    assert_eq!(err.status().map(|s| s.raw()), Some(1004));
    let msg = err.to_string();
    assert!(
        msg.contains("chunk 2") && msg.contains("nc:2") && msg.contains("physical core 6"),
        "{msg}"
    );
    // Every chunk ran to completion: the others' rows are right.
    for chunk in [0usize, 1, 3] {
        let rows = chunk * 4 * 3..(chunk + 1) * 4 * 3;
        assert_eq!(out[rows.clone()], want[rows], "chunk {chunk}");
    }
    assert_eq!(executions(&dp), [2, 2, 2, 2]);
    let failures: Vec<u64> = dp.core_stats().iter().map(|c| c.failures).collect();
    assert_eq!(failures, [0, 0, 2, 0]);

    // Chunks 1 and 3 fail: chunk 1 is reported.
    nrt_mock::control::set_faults("7:*:1004;5:*:1004").unwrap();
    let err = run(&mut out).unwrap_err();
    assert_eq!(err.chunk(), Some((1, DeviceId::new(1), Some(5))), "{err:?}");
    assert_eq!(err.status().map(|s| s.raw()), Some(1004));
    for chunk in [0usize, 2] {
        let rows = chunk * 4 * 3..(chunk + 1) * 4 * 3;
        assert_eq!(out[rows.clone()], want[rows], "chunk {chunk}");
    }

    // Faults cleared: the same engine serves the next call in full.
    nrt_mock::control::set_faults("").unwrap();
    run(&mut out).unwrap();
    assert_eq!(out, want);
}

#[test]
fn case_56_underuse_warning_exactly_when_chunks_mod_k_nonzero() {
    let table: &[(Option<usize>, usize, bool)] = &[
        (None, 1, true),
        (None, 3, true),
        (None, 4, false),
        (None, 5, false),
        (None, 10, false),
        (Some(3), 10, false), // 4 jobs
        (Some(1), 10, true),  // 10 jobs
        (Some(2), 16, false), // 8 jobs
        (Some(8), 8, true),   // 1 job
        (Some(5), 30, true),  // 6 jobs
    ];
    for &(split, n, warn) in table {
        let mut config = cores(4);
        if let Some(s) = split {
            config = config.split_size(s);
        }
        let dp = engine(&neff(affine_model(2, 3, 1.0, 1.0).exec_us(0)), config);
        let x = vec![1.0f32; n * 3];
        let shape = [n, 3];
        let (result, logs) = capture_logs(|| dp.forward(&[Input::f32(&shape, &x)]));
        result.unwrap();
        let warned = warnings(&logs);
        assert_eq!(!warned.is_empty(), warn, "split={split:?} n={n}: {logs:?}");
        if warn {
            assert!(warned[0].contains("idle"), "{warned:?}");
        }
    }
}

#[test]
fn case_57_num_workers_default_2k_and_settable() {
    let model = || neff(affine_model(2, 3, -2.0, 0.75));
    let default = engine(&model(), cores(4));
    assert_eq!(
        default.num_workers(),
        8,
        "2 per core, consecutive ids or not"
    );
    let pinned = engine(&model(), Config::default().device_indices(vec![0, 2, 5]));
    assert_eq!(pinned.num_workers(), 6);
    let one = engine(&model(), cores(4).num_workers(1));
    assert_eq!(one.num_workers(), 1);
    let three_per_core = engine(&model(), cores(4).workers_per_core(3));
    assert_eq!(three_per_core.num_workers(), 12);
    let odd = engine(&model(), cores(4).num_workers(3));
    for dp in [&default, &pinned, &one, &three_per_core, &odd] {
        for n in [1usize, 4, 9] {
            check_affine(dp, n, 3, -2.0, 0.75);
        }
    }
    // disable_dynamic_batching() does not touch the worker setting (the reference resets it).
    let dp = engine(&model(), cores(2).num_workers(1));
    dp.disable_dynamic_batching();
    assert_eq!(dp.num_workers(), 1);
    check_affine(&dp, 4, 3, -2.0, 0.75);
}

#[test]
fn case_58_one_worker_runs_chunks_one_after_another_same_results() {
    let exec = Duration::from_millis(20);
    let model = || neff(affine_model(1, 3, 3.0, -1.0).exec_us(exec.as_micros() as u64));
    let parallel = engine(&model(), cores(4));
    let serial = engine(&model(), cores(4).num_workers(1));
    let x = XorShift::new(58).f32s(4 * 3);
    let shape = [4, 3];
    let a = parallel.forward(&[Input::f32(&shape, &x)]).unwrap();
    let started = Instant::now();
    let b = serial.forward(&[Input::f32(&shape, &x)]).unwrap();
    let took = started.elapsed();
    assert_eq!(a, b);
    assert_eq!(f32s(&b[0]), ref_affine(&x, 3.0, -1.0));
    // One worker runs the four executions one after another (a lower bound only).
    assert!(took >= exec * 4, "took {took:?}");
    for n in [0usize, 3, 7, 13] {
        let x = XorShift::new(n as u64).f32s(n * 3);
        let shape = [n, 3];
        assert_eq!(
            parallel.forward(&[Input::f32(&shape, &x)]).unwrap(),
            serial.forward(&[Input::f32(&shape, &x)]).unwrap()
        );
    }
}

#[test]
fn case_31_split_size_on_dim1_without_dynamic_batching_round_robin() {
    // dim 1, b = 2 on dim 1, split_size = b: 3 chunks of 2 over 2 cores (chunk 2 on core 0).
    let model = MockModel::new(
        "d1",
        Op::Affine {
            scale: -1.0,
            bias: 0.5,
        },
    )
    .input("x", MockDType::Float32, &[3, 2, 4])
    .output("y", MockDType::Float32, &[3, 2, 4])
    .exec_us(EXEC_US);
    let dp = engine(&neff(model), cores(2).dim(1).split_size(2));
    assert_eq!(chunk_layout(&dp.plan(6).unwrap()), [(2, 0), (2, 1), (2, 0)]);
    let x: Vec<f32> = (0..3 * 6 * 4).map(|i| i as f32).collect();
    let shape = [3, 6, 4];
    let out = dp.forward(&[Input::f32(&shape, &x)]).unwrap();
    assert_eq!(out[0].shape, vec![3, 6, 4]);
    assert_eq!(f32s(&out[0]), ref_affine(&x, -1.0, 0.5));
    assert_eq!(executions(&dp), [2, 1]);
}

#[test]
fn case_46_broadcast_and_named_inputs_in_attach_mode() {
    for attach in [false, true] {
        for workers in [1usize, 2, 8] {
            let dp = engine(
                &neff(add_model(2, 4)),
                cores(3).attach(attach).num_workers(workers),
            );
            let mut rng = XorShift::new(460 + workers as u64);
            let x = rng.f32s(11 * 4);
            let w = rng.f32s(2 * 4);
            let (x_shape, w_shape) = ([11, 4], [2, 4]);
            let plan = dp.plan(11).unwrap();
            let out = dp
                .forward(&[
                    Input::f32(&w_shape, &w).named("b").broadcast(),
                    Input::f32(&x_shape, &x).named("a"),
                ])
                .unwrap();
            let mut want = Vec::new();
            for chunk in &plan {
                for j in chunk.start..chunk.start + chunk.rows {
                    let r = (j - chunk.start) % 2;
                    want.extend(ref_add(&x[j * 4..(j + 1) * 4], &w[r * 4..(r + 1) * 4]));
                }
            }
            assert_eq!(f32s(&out[0]), want, "attach={attach} workers={workers}");
        }
    }
}
