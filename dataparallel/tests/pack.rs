//! `Config::pack`: calls run as whole compiled batches (one chunk per piece of the
//! least-padding plan), each on the next core in turn, with the same outputs as the
//! reference's split; refused with `split_size`; ignored with dynamic batching off.
//! The `core_id` model proves which physical core ran each row.

mod common;

use common::{
    affine_model, chunk_sizes, core_id_model, core_per_row, cores, engine, neff,
    planned_core_per_row, ref_affine, row_tagged, runtime,
};
use dataparallel::{Config, DataParallel, Error, Input, Output};
use neuron_rt::DType;

const K: usize = 4;
const SCALE: f32 = 3.0;
const BIAS: f32 = 0.5;

fn packed(k: usize) -> Config {
    cores(k).pack(true)
}

/// Pad rows the engine reports in total.
fn pad_rows(dp: &DataParallel) -> u64 {
    dp.core_stats().iter().map(|c| c.pad_rows).sum()
}

#[test]
fn a_small_call_is_one_compiled_batch_not_a_padded_chunk_per_core() {
    let reference = engine(&neff(affine_model(8, 2, SCALE, BIAS)), cores(K));
    let dp = engine(&neff(affine_model(8, 2, SCALE, BIAS)), packed(K));
    // 6 rows: the reference pads 4 chunks of 1-2 rows to 8 each; packed, one piece of 8.
    let plan = reference.plan(6).expect("plan");
    assert_eq!(chunk_sizes(&plan), vec![2, 2, 1, 1]);
    assert_eq!(plan.iter().map(|c| c.pad_rows).sum::<usize>(), 26);
    let plan = dp.plan(6).expect("plan");
    assert_eq!(chunk_sizes(&plan), vec![6]);
    assert_eq!(plan[0].pad_rows, 2);

    // The same rows come back either way, and the engine counts the padding it saved.
    for n in [1, 6, 8, 9, 17, 40] {
        let x = row_tagged(n, 2);
        let want = ref_affine(&x, SCALE, BIAS);
        for (engine, name) in [(&reference, "reference"), (&dp, "packed")] {
            let out = engine
                .forward(&[Input::f32(&[n, 2], &x)])
                .unwrap_or_else(|e| panic!("{name}, n = {n}: {e}"));
            assert_eq!(common::f32s(&out[0]), want, "{name}, n = {n}");
        }
    }
    // Packed: only the last piece of each call is padded: 7 + 2 + 0 + 7 + 7 + 0.
    assert_eq!(pad_rows(&dp), 23);
}

#[test]
fn chunks_are_whole_compiled_batches_on_the_next_cores_in_turn() {
    let dp = engine(&neff(core_id_model(2)), packed(K));
    let phys = planned_core_per_row(&dp.plan(2 * K).expect("plan"));
    // One row per core of the plan: the physical core of each slot.
    let slot: Vec<i32> = phys.chunks(2).map(|c| c[0]).collect();
    // 5 rows = pieces of 2, 2 and 1 (padded), on slots 0, 1, 2.
    assert_eq!(
        core_per_row(&dp, 5),
        vec![slot[0], slot[0], slot[1], slot[1], slot[2]]
    );
    // The next call starts where that one ended, wrapping round.
    assert_eq!(core_per_row(&dp, 3), vec![slot[3], slot[3], slot[0]]);
    // More pieces than cores: round-robin, still from the next slot.
    let used = core_per_row(&dp, 2 * K + 2);
    let expected: Vec<i32> = (0..K + 1)
        .flat_map(|piece| [slot[(1 + piece) % K]; 2])
        .collect();
    assert_eq!(used, expected);
}

#[test]
fn with_buckets_each_piece_of_the_least_padding_mix_is_a_chunk() {
    let rt = runtime();
    let neffs: Vec<_> = [1, 4]
        .iter()
        .map(|&b| neff(affine_model(b, 2, SCALE, BIAS)))
        .collect();
    let dp = DataParallel::with_buckets(&rt, &neffs, packed(K)).expect("engine");
    // 6 rows over sizes {1, 4}: 4 + 1 + 1 pads nothing (4 + 4 would pad 2).
    let plan = dp.plan(6).expect("plan");
    assert_eq!(chunk_sizes(&plan), vec![4, 1, 1]);
    assert!(
        plan.iter().all(|c| c.pieces == 1 && c.pad_rows == 0),
        "{plan:?}"
    );
    let x = row_tagged(6, 2);
    let out = dp.forward(&[Input::f32(&[6, 2], &x)]).expect("forward");
    assert_eq!(common::f32s(&out[0]), ref_affine(&x, SCALE, BIAS));
    assert_eq!(pad_rows(&dp), 0);
}

#[test]
fn pack_with_split_size_is_refused_at_build() {
    let rt = runtime();
    let error = DataParallel::new(
        &rt,
        &neff(affine_model(4, 2, SCALE, BIAS)),
        packed(2).split_size(3),
    )
    .expect_err("both");
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("unset one of them"), "{error}");
}

#[test]
fn with_dynamic_batching_off_calls_keep_the_exact_batch_rule() {
    let dp = engine(&neff(affine_model(4, 2, SCALE, BIAS)), packed(2));
    dp.disable_dynamic_batching();
    // Exactly cores x compiled batch rows, split one chunk per core.
    assert_eq!(chunk_sizes(&dp.plan(8).expect("plan")), vec![4, 4]);
    dp.plan(4).expect_err("not cores x batch");
    let x = row_tagged(8, 2);
    let mut y = vec![0f32; 16];
    dp.forward_into(
        &[Input::f32(&[8, 2], &x)],
        &mut [Output::from_slice(DType::Float32, &[8, 2], &mut y)],
    )
    .expect("forward");
    assert_eq!(y, ref_affine(&x, SCALE, BIAS));
}
