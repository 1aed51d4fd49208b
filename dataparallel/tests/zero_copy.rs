//! Zero copy, proved with the mock's byte counters: the engine moves exactly the caller's
//! input bytes to the device (plus zeroed pad rows, by memset) and exactly the output bytes
//! back, in as few runs as the layout allows; attach mode moves nothing for unpadded pieces;
//! and dropping the engine leaves no tensor, model or tensor set alive.
//!
//! The counters are process-global, so every measurement runs in its own child process
//! (`nrt_mock::testing::in_child`), where nothing else touches the mock.

mod common;

use common::{
    affine_shape_model, assert_no_leaks, live_handles, mock_counters, neff, ref_affine, runtime,
};
use dataparallel::{Config, DataParallel, Input, Output};
use neuron_rt::Neff;
use nrt_mock::control;
use nrt_mock::counters::Counters;
use nrt_mock::testing::in_child;

const SCALE: f32 = 3.0;
const BIAS: f32 = 0.5;
/// Columns of the `[b, 8]` affine model.
const COLS: usize = 8;
/// Bytes per row of that model.
const ROW_BYTES: u64 = (COLS * size_of::<f32>()) as u64;

fn affine(shape: &[u32]) -> Neff {
    neff(affine_shape_model(shape, SCALE, BIAS).exec_us(10))
}

fn data(len: usize) -> Vec<f32> {
    (0..len).map(|i| i as f32 * 0.25 - 7.0).collect()
}

fn check_affine(x: &[f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    for (i, (a, b)) in ref_affine(x, SCALE, BIAS).iter().zip(y).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "element {i}");
    }
}

/// Counters moved by `f` alone (the byte and call counters start from zero).
fn measure(f: impl FnOnce()) -> Counters {
    control::reset_counters();
    f();
    mock_counters()
}

/// Counters moved by one `forward_into` of seeded data of `shape` on `engine` alone, whose
/// outputs are checked against plain Rust.
fn measured_forward(engine: &DataParallel, shape: &[usize]) -> Counters {
    let x = data(shape.iter().product());
    let mut y = vec![f32::NAN; x.len()];
    let counters = measure(|| {
        engine
            .forward_into(&[Input::f32(shape, &x)], &mut [Output::f32(shape, &mut y)])
            .expect("forward_into");
    });
    check_affine(&x, &y);
    counters
}

/// One `forward_into` of `n` rows of the `[4, 8]` affine model over 3 cores, which runs
/// `pieces` executions on each core.
fn affine_b4_k3(attach: bool, n: usize, pieces: u64) -> Counters {
    let rt = runtime();
    let engine = DataParallel::new(
        &rt,
        &affine(&[4, 8]),
        Config::default()
            .device_list("nc:0,nc:1,nc:2")
            .attach(attach),
    )
    .expect("engine");
    let counters = measured_forward(&engine, &[n, COLS]);
    println!(
        "attach={attach} n={n}: plan {:?}; written {} memset {} read {} (writes {}, reads {})",
        engine.plan(n).expect("plan"),
        counters.bytes_written,
        counters.bytes_memset,
        counters.bytes_read,
        counters.tensor_writes,
        counters.tensor_reads
    );
    assert_eq!(counters.bytes_copied, 0, "no device-to-device copies");
    assert_eq!(
        &counters.executions[..4],
        &[pieces, pieces, pieces, 0],
        "executions per core"
    );
    counters
}

/// b=4, k=3, n=10: chunks 4, 3, 3, pads 0, 1, 1. Input bytes go in once, pad rows are
/// memset, output bytes come out once; one contiguous write and read per piece.
#[test]
fn copies_are_exactly_payload_plus_pads() {
    if !in_child("copies_are_exactly_payload_plus_pads", &[]) {
        return;
    }
    let c = affine_b4_k3(false, 10, 1);
    assert_eq!(c.bytes_written, 10 * ROW_BYTES, "input payload");
    assert_eq!(c.bytes_memset, 2 * ROW_BYTES, "pad rows");
    assert_eq!(c.bytes_read, 10 * ROW_BYTES, "output payload");
    assert_eq!(c.tensor_writes, 3, "one run per piece");
    assert_eq!(c.tensor_reads, 3, "one run per piece");
}

/// b=4, k=3, n=22: chunks 8, 7, 7 run as two pieces each, the last pieces of chunks 1 and 2
/// with one pad row.
#[test]
fn copies_are_exactly_payload_plus_pads_several_pieces() {
    if !in_child("copies_are_exactly_payload_plus_pads_several_pieces", &[]) {
        return;
    }
    let c = affine_b4_k3(false, 22, 2);
    assert_eq!(c.bytes_written, 22 * ROW_BYTES, "input payload");
    assert_eq!(c.bytes_memset, 2 * ROW_BYTES, "pad rows");
    assert_eq!(c.bytes_read, 22 * ROW_BYTES, "output payload");
    assert_eq!(
        (c.tensor_writes, c.tensor_reads),
        (6, 6),
        "one run per piece"
    );
}

/// Attach mode, n=12: every piece is a full unpadded batch, run on the caller's memory.
#[test]
fn attach_mode_moves_no_bytes_for_unpadded_pieces() {
    if !in_child("attach_mode_moves_no_bytes_for_unpadded_pieces", &[]) {
        return;
    }
    let c = affine_b4_k3(true, 12, 1);
    assert_eq!(c.bytes_written, 0);
    assert_eq!(c.bytes_memset, 0);
    assert_eq!(c.bytes_read, 0);
    assert_eq!((c.tensor_writes, c.tensor_reads), (0, 0));
}

/// Attach mode, n=10: chunk 0 (4 rows) runs attached; chunks 1 and 2 (3 rows + 1 pad) copy.
#[test]
fn attach_mode_copies_only_padded_pieces() {
    if !in_child("attach_mode_copies_only_padded_pieces", &[]) {
        return;
    }
    let c = affine_b4_k3(true, 10, 1);
    assert_eq!(c.bytes_written, 6 * ROW_BYTES, "rows 4..10 only");
    assert_eq!(c.bytes_memset, 2 * ROW_BYTES, "pad rows");
    assert_eq!(c.bytes_read, 6 * ROW_BYTES, "rows 4..10 only");
    assert_eq!((c.tensor_writes, c.tensor_reads), (2, 2));
}

/// Attach mode with dynamic batching off: n = k × b, so every chunk is one whole, unpadded
/// compiled batch on dim 0, which attach mode (ARCHITECTURE.md, "The path of one batch") runs on the caller's memory.
///
/// Runs in this process: every other test here runs its body in a child, so nothing else
/// moves this process's counters.
#[test]
fn attach_mode_without_dynamic_batching_moves_no_bytes() {
    let rt = runtime();
    let engine = DataParallel::new(
        &rt,
        &affine(&[4, 8]),
        Config::default()
            .device_list("nc:0,nc:1")
            .dynamic_batching(false)
            .attach(true),
    )
    .expect("engine");
    let c = measured_forward(&engine, &[8, COLS]);
    println!(
        "attach, dynamic off, n=8: written {} memset {} read {}",
        c.bytes_written, c.bytes_memset, c.bytes_read
    );
    assert_eq!(&c.executions[..3], &[1, 1, 0]);
    assert_eq!(
        (c.bytes_written, c.bytes_memset, c.bytes_read),
        (0, 0, 0),
        "unpadded whole-batch chunks should run attached"
    );
}

/// dim=1: input `[2, 8, 3]` on a model compiled `[2, 4, 3]` over 2 cores (dynamic batching
/// off). Each piece takes rows 0..4 or 4..8 of dim 1 from both outer slices: two runs of
/// 4×3 floats per piece, straight from the caller's buffer, and the same back.
#[test]
fn dim_nonzero_writes_input_bytes_exactly() {
    if !in_child("dim_nonzero_writes_input_bytes_exactly", &[]) {
        return;
    }
    let rt = runtime();
    let engine = DataParallel::new(
        &rt,
        &affine(&[2, 4, 3]),
        Config::default()
            .device_list("nc:0,nc:1")
            .dim(1)
            .dynamic_batching(false),
    )
    .expect("engine");
    let c = measured_forward(&engine, &[2, 8, 3]);
    let bytes = (2 * 8 * 3 * size_of::<f32>()) as u64;
    println!(
        "dim=1: written {} memset {} read {} (writes {}, reads {})",
        c.bytes_written, c.bytes_memset, c.bytes_read, c.tensor_writes, c.tensor_reads
    );
    assert_eq!(c.bytes_written, bytes, "input bytes exactly");
    assert_eq!(c.bytes_read, bytes, "output bytes exactly");
    assert_eq!(c.bytes_memset, 0);
    assert_eq!(c.bytes_copied, 0);
    assert_eq!(
        (c.tensor_writes, c.tensor_reads),
        (4, 4),
        "two runs per piece"
    );
    assert_eq!(&c.executions[..3], &[1, 1, 0]);
}

/// Engines of several configurations (attach mode, dim 1, one worker for several cores) run
/// good and bad calls, including a failing execution in attach mode; each call leaves the
/// live handles as they were, and dropping the engines leaves none.
#[test]
fn dropping_the_engine_leaks_nothing() {
    // The first execution on physical core 3 (only the attach engine uses it) fails: an
    // attached, unpadded piece.
    if !in_child(
        "dropping_the_engine_leaks_nothing",
        &[("NRT_MOCK_FAULTS", "3:1:1")],
    ) {
        return;
    }
    assert_no_leaks("at the start");
    let rt = runtime();
    {
        let b4 = affine(&[4, 8]);
        let engines = [
            DataParallel::new(&rt, &b4, Config::default().device_list("nc:0,nc:1,nc:2"))
                .expect("default engine"),
            DataParallel::new(
                &rt,
                &b4,
                Config::default().device_list("nc:1,nc:3").attach(true),
            )
            .expect("attach engine"),
            DataParallel::new(
                &rt,
                &b4,
                Config::default()
                    .device_list("nc:4,nc:5,nc:6")
                    .num_workers(1),
            )
            .expect("one-worker engine"),
            DataParallel::new(
                &rt,
                &affine(&[2, 4, 3]),
                Config::default().device_list("nc:0,nc:1").dim(1),
            )
            .expect("dim-1 engine"),
        ];
        let built = mock_counters();
        assert_eq!(built.live_models, 3 + 2 + 3 + 2);
        let mut failures = 0;
        for engine in &engines {
            let shapes: &[&[usize]] = if engine.dim() == 1 {
                &[&[2, 8, 3], &[2, 8, 4]]
            } else {
                &[&[12, 8], &[10, 8], &[1, 8], &[0, 8], &[12, 7]]
            };
            for shape in shapes {
                let x = data(shape.iter().product());
                let mut y = vec![0.0f32; x.len()];
                let result = engine
                    .forward_into(&[Input::f32(shape, &x)], &mut [Output::f32(shape, &mut y)]);
                if let Err(error) = &result {
                    failures += 1;
                    if error.chunk().is_some() {
                        let (chunk, core, physical) = error.chunk().expect("a chunk error");
                        assert_eq!((chunk, core.index(), physical), (1, 3, Some(3)), "{error}");
                    }
                }
                let _ = engine.forward(&[Input::f32(shape, &x)]);
                let now = mock_counters();
                assert_eq!(
                    live_handles(&now),
                    live_handles(&built),
                    "live handles after {shape:?}: {result:?}"
                );
            }
        }
        // The bad shapes ([12, 7] three times, [2, 8, 4] once) and the injected fault.
        assert_eq!(failures, 5);
    }
    assert_no_leaks("after drop");
    drop(rt);
}
