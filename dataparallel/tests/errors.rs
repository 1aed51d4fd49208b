//! Errors, each a test: the engine reports what is wrong (with the numbers and the remedy),
//! makes no device call for anything it can check up front, and keeps serving: after every
//! error a valid forward on the same engine returns correct values.
//!
//! Run: `NRT_DYLIB_PATH=$PWD/target/debug/libnrt_mock.so cargo test -p dataparallel --test errors`.

mod common;

use common::*;
use dataparallel::{Config, DataParallel, Error, Input, Output, PlanError};
use neuron_rt::{DType, DeviceIdError};
use nrt_mock::testing::in_child;

const SCALE: f32 = 1.5;
const BIAS: f32 = -0.25;
const F: usize = 3;

/// Affine (b=2, 3 features) on the first `k` cores.
fn affine_engine(k: usize) -> DataParallel {
    engine(&neff(affine_model(2, F as u32, SCALE, BIAS)), cores(k))
}

/// A valid forward (and forward_into) on `dp` with every value checked.
fn still_serves(dp: &DataParallel) {
    for n in [1usize, 7] {
        let x = XorShift::new(n as u64 + 99).f32s(n * F);
        let shape = [n, F];
        let want = ref_affine(&x, SCALE, BIAS);
        let out = dp
            .forward(&[Input::f32(&shape, &x)])
            .expect("valid forward");
        assert_eq!(out[0].shape, vec![n, F]);
        assert_eq!(f32s(&out[0]), want);
        let mut buffer = vec![f32::NAN; n * F];
        dp.forward_into(
            &[Input::f32(&shape, &x)],
            &mut [Output::f32(&shape, &mut buffer)],
        )
        .expect("valid forward_into");
        assert_eq!(buffer, want);
    }
}

/// Runs `call`, expects an error before any device call, and returns it.
fn rejected<T: std::fmt::Debug>(
    dp: &DataParallel,
    call: impl FnOnce() -> Result<T, Error>,
) -> Error {
    let before = total_executions(dp);
    let err = call().expect_err("the call must be rejected");
    assert_eq!(total_executions(dp), before, "no device call for {err:?}");
    err
}

fn assert_input_error(err: &Error, needles: &[&str]) {
    assert!(matches!(err, Error::Input(_)), "{err:?}");
    let msg = err.to_string();
    for needle in needles {
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
}

fn assert_output_error(err: &Error, needles: &[&str]) {
    assert!(matches!(err, Error::Output(_)), "{err:?}");
    let msg = err.to_string();
    for needle in needles {
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
}

#[test]
fn wrong_number_of_inputs() {
    let dp = engine(
        &neff(add_model(2, 4)),
        Config::default().device_indices(vec![0, 1]),
    );
    let a = vec![1.0f32; 6 * 4];
    let shape = [6, 4];
    let err = rejected(&dp, || dp.forward(&[Input::f32(&shape, &a)]));
    assert_input_error(&err, &["2 inputs", "\"a\"", "\"b\"", "1 were given"]);
    let err = rejected(&dp, || {
        dp.forward(&[
            Input::f32(&shape, &a),
            Input::f32(&shape, &a),
            Input::f32(&shape, &a),
        ])
    });
    assert_input_error(&err, &["2 inputs", "3 were given"]);
    let err = rejected(&dp, || dp.forward(&[]));
    assert_input_error(&err, &["no inputs"]);
    // Still serves.
    let b: Vec<f32> = (0..24).map(|i| i as f32).collect();
    let out = dp
        .forward(&[Input::f32(&shape, &a), Input::f32(&shape, &b)])
        .unwrap();
    assert_eq!(f32s(&out[0]), ref_add(&a, &b));
}

#[test]
fn wrong_input_names() {
    let dp = engine(
        &neff(add_model(2, 4)),
        Config::default().device_indices(vec![0, 1]),
    );
    let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
    let b = vec![0.5f32; 20];
    let shape = [5, 4];
    let err = rejected(&dp, || {
        dp.forward(&[
            Input::f32(&shape, &a).named("a"),
            Input::f32(&shape, &b).named("z"),
        ])
    });
    assert_input_error(&err, &["no input \"z\"", "\"a\", \"b\""]);
    let err = rejected(&dp, || {
        dp.forward(&[
            Input::f32(&shape, &a).named("a"),
            Input::f32(&shape, &b).named("a"),
        ])
    });
    assert_input_error(&err, &["\"a\" is given twice"]);
    let err = rejected(&dp, || {
        dp.forward(&[Input::f32(&shape, &a).named("a"), Input::f32(&shape, &b)])
    });
    assert_input_error(&err, &["name every input or none"]);
    let err = rejected(&dp, || dp.forward(&[Input::f32(&shape, &a).named("b")]));
    assert_input_error(&err, &["\"a\" is missing"]);
    let out = dp
        .forward(&[
            Input::f32(&shape, &b).named("b"),
            Input::f32(&shape, &a).named("a"),
        ])
        .unwrap();
    assert_eq!(f32s(&out[0]), ref_add(&a, &b));
}

#[test]
fn dtype_mismatch() {
    let dp = affine_engine(2);
    let shape = [4, F];
    let ints = vec![1i32; 4 * F];
    let err = rejected(&dp, || {
        dp.forward(&[Input::from_slice(DType::Int32, &shape, &ints)])
    });
    assert_input_error(&err, &["\"x\"", "int32", "float32"]);
    let halves = vec![0u8; 4 * F * 2];
    let err = rejected(&dp, || {
        dp.forward(&[Input::new(DType::BFloat16, &shape, &halves)])
    });
    assert_input_error(&err, &["bfloat16", "float32"]);
    still_serves(&dp);
}

#[test]
fn shape_mismatch_off_the_split_dim() {
    let dp = affine_engine(3);
    let x = vec![1.0f32; 5 * 4];
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[5, 4], &x)]));
    assert_input_error(&err, &["[5, 4]", "[2, 3]", "only dim 0"]);
    let x = vec![1.0f32; 5 * F];
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[5, F, 1], &x)]));
    assert_input_error(&err, &["[5, 3, 1]", "[2, 3]"]);
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[5 * F], &x)]));
    assert_input_error(&err, &["[15]"]);
    // The buffer does not hold the shape it claims.
    let short = vec![1.0f32; 5 * F - 1];
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[5, F], &short)]));
    assert_input_error(&err, &["60 bytes", "56"]);
    still_serves(&dp);
}

#[test]
fn inputs_disagree_on_n() {
    let dp = engine(
        &neff(add_model(1, 2)),
        Config::default().device_indices(vec![0, 1, 2, 3]),
    );
    let a = vec![1.0f32; 6 * 2];
    let b = vec![2.0f32; 5 * 2];
    let err = rejected(&dp, || {
        dp.forward(&[Input::f32(&[6, 2], &a), Input::f32(&[5, 2], &b)])
    });
    assert_input_error(&err, &["disagree", "\"a\" has 6", "\"b\" has 5"]);
    let out = dp
        .forward(&[Input::f32(&[6, 2], &a), Input::f32(&[6, 2], &a)])
        .unwrap();
    assert_eq!(f32s(&out[0]), vec![2.0; 12]);
}

#[test]
fn broadcast_misuse() {
    let dp = engine(
        &neff(add_model(2, 4)),
        Config::default().device_indices(vec![0, 1]),
    );
    let x = vec![1.0f32; 6 * 4];
    let w = vec![1.0f32; 6 * 4];
    // A broadcast value must have the model's whole shape.
    let err = rejected(&dp, || {
        dp.forward(&[Input::f32(&[6, 4], &x), Input::f32(&[6, 4], &w).broadcast()])
    });
    assert_input_error(&err, &["broadcast", "[2, 4]", "[6, 4]"]);
    // Nothing left to scatter.
    let w2 = vec![1.0f32; 2 * 4];
    let err = rejected(&dp, || {
        dp.forward(&[
            Input::f32(&[2, 4], &w2).broadcast(),
            Input::f32(&[2, 4], &w2).broadcast(),
        ])
    });
    assert_input_error(&err, &["nothing to scatter"]);
    let out = dp
        .forward(&[
            Input::f32(&[6, 4], &x),
            Input::f32(&[2, 4], &w2).broadcast(),
        ])
        .unwrap();
    assert_eq!(f32s(&out[0]), vec![2.0; 24]);
}

#[test]
fn n_zero_gives_empty_outputs_without_device_call() {
    if !in_child(
        "n_zero_gives_empty_outputs_without_device_call",
        &[("NRT_MOCK_TOTAL_CORES", "4")],
    ) {
        return;
    }
    let dp = affine_engine(4);
    let before = nrt_mock::control::counters().unwrap();
    let shape = [0, F];
    let out = dp.forward(&[Input::f32(&shape, &[])]).unwrap();
    assert_eq!(out[0].shape, vec![0, F]);
    assert!(out[0].data.is_empty());
    let mut empty: Vec<f32> = Vec::new();
    dp.forward_into(
        &[Input::f32(&shape, &[])],
        &mut [Output::f32(&shape, &mut empty)],
    )
    .unwrap();
    assert_eq!(
        dp.output_shapes(&[Input::f32(&shape, &[])]).unwrap(),
        [vec![0, F]]
    );
    let after = nrt_mock::control::counters().unwrap();
    assert_eq!(after.total_executions(), before.total_executions());
    assert_eq!(after.bytes_written, before.bytes_written);
    assert_eq!(after.bytes_read, before.bytes_read);
    assert_eq!(total_executions(&dp), 0);
    still_serves(&dp);
    assert!(nrt_mock::control::counters().unwrap().total_executions() > after.total_executions());
}

#[test]
fn dim_out_of_range_is_a_config_error_at_build() {
    let working = affine_engine(2);
    let err = DataParallel::new(
        &runtime(),
        &neff(affine_model(2, F as u32, SCALE, BIAS)),
        Config::default().device_indices(vec![0, 1]).dim(2),
    )
    .expect_err("dim 2 of a rank-2 model");
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("dim 2") && err.to_string().contains("rank 2"),
        "{err}"
    );
    still_serves(&working);
    still_serves(&affine_engine(2));
}

#[test]
fn split_size_zero_and_no_workers_are_config_errors() {
    let working = affine_engine(2);
    for config in [
        Config::default().split_size(0),
        Config::default().num_workers(0),
        Config::default().workers_per_core(0),
    ] {
        let err = DataParallel::new(
            &runtime(),
            &neff(affine_model(2, F as u32, SCALE, BIAS)),
            config.device_indices(vec![0, 1]),
        )
        .expect_err("rejected configuration");
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("at least 1"), "{err}");
        still_serves(&working);
    }
}

#[test]
fn worker_counts_above_the_per_core_limit_are_config_errors() {
    use dataparallel::MAX_WORKERS_PER_CORE;
    let working = affine_engine(2);
    for config in [
        Config::default().num_workers(usize::MAX),
        Config::default().num_workers(2 * MAX_WORKERS_PER_CORE + 1),
        Config::default().workers_per_core(usize::MAX),
        Config::default().workers_per_core(MAX_WORKERS_PER_CORE + 1),
    ] {
        let err = DataParallel::new(
            &runtime(),
            &neff(affine_model(2, F as u32, SCALE, BIAS)),
            config.device_indices(vec![0, 1]),
        )
        .expect_err("too many workers");
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err.to_string().contains("per core"), "{err}");
        still_serves(&working);
    }
    // The limit itself is accepted.
    let engine = DataParallel::new(
        &runtime(),
        &neff(affine_model(2, F as u32, SCALE, BIAS)),
        Config::default()
            .device_indices(vec![0, 1])
            .num_workers(2 * MAX_WORKERS_PER_CORE),
    )
    .expect("the limit itself");
    assert_eq!(engine.num_workers(), 2 * MAX_WORKERS_PER_CORE);
}

#[test]
fn every_invalid_device_ids_form() {
    let working = affine_engine(2);
    let visible = runtime().visible_cores();
    let cases: Vec<(Config, &str)> = vec![
        (Config::default().device_list("NC:1"), "malformed"),
        (Config::default().device_list("core1"), "malformed"),
        (Config::default().device_list("nc:"), "malformed"),
        (Config::default().device_list("nc:1x"), "malformed"),
        (Config::default().device_list("1.5"), "malformed"),
        (Config::default().device_list("nc:0,,nc:1"), "empty entry"),
        (Config::default().device_list(""), "no device ids"),
        (
            Config::default().device_indices(Vec::<i64>::new()),
            "no device ids",
        ),
        (Config::default().device_indices(vec![-1]), "negative"),
        (Config::default().device_list("nc:-1"), "negative"),
        (Config::default().device_list("nc:99999999999"), "too large"),
        (
            Config::default().device_list(format!("nc:{visible}")),
            "out of range",
        ),
        (
            Config::default().device_indices(vec![0, i64::from(visible) + 5]),
            "out of range",
        ),
        (Config::default().device_list("nc:1,1"), "listed twice"),
        (Config::default().device_indices(vec![3, 3]), "listed twice"),
    ];
    for (config, needle) in cases {
        let what = format!("{config:?}");
        let err = DataParallel::new(
            &runtime(),
            &neff(affine_model(2, F as u32, SCALE, BIAS)),
            config,
        )
        .expect_err(&what);
        assert!(
            matches!(err, Error::DeviceIds(neuron_rt::Error::DeviceId(_))),
            "{what}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(needle), "{what}: {needle:?} not in {msg:?}");
        if !matches!(
            err,
            Error::DeviceIds(neuron_rt::Error::DeviceId(DeviceIdError::OutOfRange { .. }))
        ) {
            assert!(msg.contains("`nc:N`"), "{what}: accepted forms in {msg:?}");
        } else {
            assert!(msg.contains(&format!("{visible} NeuronCores")), "{msg}");
        }
        still_serves(&working);
    }
}

#[test]
fn dynamic_batching_off_with_n_not_k_times_b() {
    let dp = engine(
        &neff(affine_model(2, F as u32, SCALE, BIAS)),
        Config::default()
            .device_indices(vec![0, 1, 2])
            .dynamic_batching(false),
    );
    let x = vec![1.0f32; 7 * F];
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[7, F], &x)]));
    assert!(
        matches!(
            err,
            Error::Plan(PlanError::NotExact {
                n: 7,
                k: 3,
                b: 2,
                expected: Some(6)
            })
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("exactly cores x compiled batch")
            && msg.contains("3 cores x 2 = 6 rows, got 7"),
        "{msg}"
    );
    let err = rejected(&dp, || dp.forward(&[Input::f32(&[0, F], &[])]));
    assert!(matches!(err, Error::Plan(_)), "{err:?}");
    // 6 rows work.
    let x = XorShift::new(6).f32s(6 * F);
    let out = dp.forward(&[Input::f32(&[6, F], &x)]).unwrap();
    assert_eq!(f32s(&out[0]), ref_affine(&x, SCALE, BIAS));

    // With a split_size, chunks must be the compiled batch.
    let split3 = engine(
        &neff(affine_model(2, F as u32, SCALE, BIAS)),
        Config::default()
            .device_indices(vec![0, 1])
            .dynamic_batching(false)
            .split_size(3),
    );
    let x = vec![1.0f32; 6 * F];
    let err = rejected(&split3, || split3.forward(&[Input::f32(&[6, F], &x)]));
    assert!(
        err.to_string().contains("split_size 3 != compiled batch 2"),
        "{err}"
    );
    let split2 = engine(
        &neff(affine_model(2, F as u32, SCALE, BIAS)),
        Config::default()
            .device_indices(vec![0, 1])
            .dynamic_batching(false)
            .split_size(2),
    );
    let x = vec![1.0f32; 5 * F];
    let err = rejected(&split2, || split2.forward(&[Input::f32(&[5, F], &x)]));
    assert!(
        matches!(
            err,
            Error::Plan(PlanError::NotMultipleOfBatch { n: 5, b: 2 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("(e.g. 4 or 6)"), "{err}");
    let x = XorShift::new(8).f32s(8 * F);
    let out = split2.forward(&[Input::f32(&[8, F], &x)]).unwrap();
    assert_eq!(f32s(&out[0]), ref_affine(&x, SCALE, BIAS));
}

#[test]
fn failing_core_reports_chunk_then_serves() {
    // The first execution on physical core 1 fails with NRT_EXEC_COMPLETED_WITH_ERR (1004).
    if !in_child(
        "failing_core_reports_chunk_then_serves",
        &[
            ("NRT_MOCK_TOTAL_CORES", "4"),
            ("NRT_MOCK_FAULTS", "1:1:1004"),
        ],
    ) {
        return;
    }
    let dp = affine_engine(4);
    let x = XorShift::new(55).f32s(8 * F);
    let err = dp.forward(&[Input::f32(&[8, F], &x)]).unwrap_err();
    assert!(matches!(err, Error::Chunk { chunk: 1, .. }), "{err:?}");
    assert_eq!(
        err.chunk().map(|c| (c.0, c.1.index(), c.2)),
        Some((1, 1, Some(1)))
    );
    assert_eq!(err.status().map(|s| s.raw()), Some(1004));
    assert_eq!(executions(&dp), [1, 1, 1, 1], "every chunk ran");
    still_serves(&dp);
}

#[test]
fn hung_core_times_out_then_serves() {
    if !in_child(
        "hung_core_times_out_then_serves",
        &[
            ("NRT_MOCK_TOTAL_CORES", "2"),
            ("NRT_MOCK_FAULTS", "0:1:hang"),
            ("NEURON_RT_EXEC_TIMEOUT", "1"),
        ],
    ) {
        return;
    }
    let dp = affine_engine(2);
    let x = XorShift::new(56).f32s(4 * F);
    let mut out = vec![f32::NAN; 4 * F];
    let err = dp
        .forward_into(
            &[Input::f32(&[4, F], &x)],
            &mut [Output::f32(&[4, F], &mut out)],
        )
        .unwrap_err();
    assert_eq!(
        err.chunk().map(|c| (c.0, c.1.index(), c.2)),
        Some((0, 0, Some(0)))
    );
    assert_eq!(
        err.status().map(|s| s.name()),
        Some("NRT_TIMEOUT"),
        "{err:?}"
    );
    // Chunk 1 (core 1) still ran.
    assert_eq!(out[2 * F..], ref_affine(&x, SCALE, BIAS)[2 * F..]);
    still_serves(&dp);
}

#[test]
fn wrong_output_buffers_for_forward_into() {
    let dp = affine_engine(3);
    let n = 5;
    let x = XorShift::new(5).f32s(n * F);
    let shape = [n, F];
    let inputs = [Input::f32(&shape, &x)];
    let mut buffer = vec![0.0f32; (n + 1) * F * 2];

    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n + 1, F], &mut buffer[..(n + 1) * F])],
        )
    });
    assert_output_error(&err, &["\"y\"", "[5, 3]", "[6, 3]"]);
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n, F + 1], &mut buffer[..n * (F + 1)])],
        )
    });
    assert_output_error(&err, &["[5, 3]", "[5, 4]"]);
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n, F, 1], &mut buffer[..n * F])],
        )
    });
    assert_output_error(&err, &["[5, 3]", "[5, 3, 1]"]);
    let mut ints = vec![0i32; n * F];
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::from_slice(DType::Int32, &[n, F], &mut ints)],
        )
    });
    assert_output_error(&err, &["int32", "float32"]);
    // Right shape, wrong buffer size (short and long).
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n, F], &mut buffer[..n * F - 1])],
        )
    });
    assert_output_error(&err, &["60 bytes", "56"]);
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n, F], &mut buffer[..n * F + 1])],
        )
    });
    assert_output_error(&err, &["60 bytes", "64"]);
    // Wrong count and names.
    let err = rejected(&dp, || dp.forward_into(&inputs, &mut []));
    assert_output_error(&err, &["1 outputs", "0 were given"]);
    let (first, second) = buffer.split_at_mut(n * F);
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [
                Output::f32(&[n, F], first),
                Output::f32(&[n, F], &mut second[..n * F]),
            ],
        )
    });
    assert_output_error(&err, &["2 were given"]);
    let err = rejected(&dp, || {
        dp.forward_into(
            &inputs,
            &mut [Output::f32(&[n, F], &mut buffer[..n * F]).named("z")],
        )
    });
    assert_output_error(&err, &["no output \"z\"", "\"y\""]);
    // Still serves, by position and by name.
    let want = ref_affine(&x, SCALE, BIAS);
    dp.forward_into(&inputs, &mut [Output::f32(&[n, F], &mut buffer[..n * F])])
        .unwrap();
    assert_eq!(buffer[..n * F], want);
    buffer.fill(0.0);
    dp.forward_into(
        &inputs,
        &mut [Output::f32(&[n, F], &mut buffer[..n * F]).named("y")],
    )
    .unwrap();
    assert_eq!(buffer[..n * F], want);
    still_serves(&dp);
}
