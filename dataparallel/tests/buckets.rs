//! Batch-size buckets: one engine over several NEFFs of the same model compiled at different
//! batch sizes, each chunk run as the pieces that minimise padding, then executions.

mod common;

use common::{MockDType as DType, MockModel, Op, neff, runtime};
use dataparallel::{Config, DataParallel, Error, Input};
use neuron_rt::Neff;

/// `affine {2, 1}` over `[batch, 8]`, named after its batch, no simulated device time.
fn affine(batch: u32) -> Neff {
    neff(
        MockModel::new(
            format!("affine-b{batch}"),
            Op::Affine {
                scale: 2.0,
                bias: 1.0,
            },
        )
        .input("x", DType::Float32, &[batch, 8])
        .output("y", DType::Float32, &[batch, 8]),
    )
}

#[test]
fn chunks_run_as_the_least_padded_pieces_and_outputs_are_exact() {
    let rt = runtime();
    let neffs = [affine(16), affine(1), affine(4)];
    let engine =
        DataParallel::with_buckets(&rt, &neffs, Config::default().device_list("nc:0,nc:1"))
            .expect("engine");
    assert_eq!(engine.batch_sizes(), &[1, 4, 16]);
    // 42 rows on 2 cores: chunks of 21 = 16 + 4 + 1, no padding, 3 executions each.
    let plan = engine.plan(42).unwrap();
    assert_eq!(plan.len(), 2);
    for chunk in &plan {
        assert_eq!(chunk.batch_sizes, [16, 4, 1]);
        assert_eq!((chunk.pieces, chunk.pad_rows), (3, 0));
    }
    // 6 rows: chunks of 3 = 1 + 1 + 1 (padding to 4 would waste a row).
    assert!(
        engine
            .plan(6)
            .unwrap()
            .iter()
            .all(|c| c.batch_sizes == [1, 1, 1])
    );
    for n in [0usize, 1, 3, 5, 6, 17, 42, 100] {
        let x: Vec<f32> = (0..n * 8).map(|i| i as f32 * 0.5).collect();
        let out = engine.forward(&[Input::f32(&[n, 8], &x)]).expect("forward");
        assert_eq!(out[0].shape, [n, 8]);
        let y: Vec<f32> = out[0].to_vec().unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert_eq!(a * 2.0 + 1.0, *b, "n = {n}");
        }
    }
}

#[test]
fn buckets_must_be_the_same_model_at_different_batches() {
    let rt = runtime();
    let other = neff(
        MockModel::new("identity-b4", Op::Identity)
            .input("x", DType::Float32, &[4, 9])
            .output("y", DType::Float32, &[4, 9]),
    );
    let config = || Config::default().device_list("nc:0");
    let error = DataParallel::with_buckets(&rt, &[affine(1), other], config()).unwrap_err();
    assert!(
        matches!(&error, Error::Config { reason: m } if m.contains("differ in more than the batch")),
        "{error}"
    );
    let error = DataParallel::with_buckets(&rt, &[affine(4), affine(4)], config()).unwrap_err();
    assert!(
        matches!(&error, Error::Config { reason: m } if m.contains("batch 4")),
        "{error}"
    );
    let error = DataParallel::with_buckets(
        &rt,
        &[affine(1), affine(4)],
        config().dynamic_batching(false),
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::Config { reason: m } if m.contains("need dynamic batching")),
        "{error}"
    );
    let error = DataParallel::with_buckets(&rt, &[], config()).unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error}");
}

#[test]
fn metrics_show_the_padding_buckets_save() {
    let rt = runtime();
    let x: Vec<f32> = vec![1.0; 7 * 8];
    let run = |neffs: &[Neff]| {
        let engine = DataParallel::with_buckets(&rt, neffs, Config::default().device_list("nc:0"))
            .expect("engine");
        engine.forward(&[Input::f32(&[7, 8], &x)]).expect("forward");
        engine.metrics()
    };
    // One size, 16: 7 rows pad to 16. Sizes 1, 4 and 16: 4 + 1 + 1 + 1, no padding.
    let single = run(&[affine(16)]);
    assert_eq!((single.rows(), single.pad_rows()), (7, 9));
    assert!((single.pad_ratio() - 9.0 / 16.0).abs() < 1e-12);
    let buckets = run(&[affine(1), affine(4), affine(16)]);
    assert_eq!((buckets.rows(), buckets.pad_rows()), (7, 0));
    assert_eq!(buckets.pad_ratio(), 0.0);
    assert_eq!(
        buckets.piece_latency().count(),
        4,
        "one latency sample per piece"
    );
}
