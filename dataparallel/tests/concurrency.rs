//! Many callers, one engine: 8 caller threads share each engine and run forwards of random
//! batch sizes (seeded, so a failure replays), under many configurations. Every output is
//! checked bit for bit against the op computed in plain Rust (as ARCHITECTURE.md, "The mock libnrt", defines it) and
//! against a single-core engine (`nc:0`) run of the same input.
//!
//! The core_id model proves which core ran which rows: with dynamic batching over k cores,
//! every output row of chunk i holds the physical core of device i (in the order the devices
//! were given), under a visible-core remapping so physical and logical indices differ.

mod common;

use std::thread;

use common::{XorShift, bits, ref_affine, ref_rowsum, runtime};
use dataparallel::{Config, DataParallel, Error, Input, Output, OutputTensor};
use neuron_rt::{DType as RtDType, Neff};
use nrt_mock::neff::{DType, MockModel, Op};

/// Caller threads per engine.
const THREADS: u64 = 8;
/// Forwards per caller thread.
const FORWARDS: usize = 20;
/// Batch sizes are drawn from `0..MAX_ROWS`.
const MAX_ROWS: u64 = 64;

/// The xorshift64* generator seeded `seed` (small and seeded, so a failure replays).
fn seeded(seed: u64) -> XorShift {
    XorShift::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
}

/// `n` finite f32s with a random sign and mantissa and an exponent in 2^-12..2^12, so that
/// sums depend on the order they are taken in.
fn wide_f32s(rng: &mut XorShift, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            let sign = u32::from(r & 1 == 1) << 31;
            let exponent = u32::try_from(127 - 12 + (r >> 1) % 25).expect("small") << 23;
            let mantissa = u32::try_from((r >> 8) & 0x7F_FFFF).expect("23 bits");
            f32::from_bits(sign | exponent | mantissa)
        })
        .collect()
}

/// The models under test.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Two inputs `x [b, 8]` and `z [b, 2, 3]`, two outputs `y = x*s + c`, `w = z*s + c`.
    Affine2,
    /// `x [b, 3, 5]` -> `y [b, 4]`, `y[r][j] = sum of x[r][i] with i % 4 == j`.
    RowSum,
}

const SCALE: f32 = 1.375;
const BIAS: f32 = -0.3;
const AFFINE_X: usize = 8;
const AFFINE_Z: [usize; 2] = [2, 3];
const ROWSUM_IN: [usize; 2] = [3, 5];
const ROWSUM_OUT: usize = 4;

fn u32s(dims: &[usize]) -> Vec<u32> {
    dims.iter()
        .map(|&d| u32::try_from(d).expect("small dims"))
        .collect()
}

fn neff(kind: Kind, b: usize, exec_us: u64) -> Neff {
    let b32 = u32::try_from(b).expect("small batch");
    let model = match kind {
        Kind::Affine2 => {
            let z = [&[b32][..], &u32s(&AFFINE_Z)].concat();
            MockModel::new(
                "affine2",
                Op::Affine {
                    scale: SCALE,
                    bias: BIAS,
                },
            )
            .input("x", DType::Float32, &[b32, 8])
            .input("z", DType::Float32, &z)
            .output("y", DType::Float32, &[b32, 8])
            .output("w", DType::Float32, &z)
        }
        Kind::RowSum => {
            let x = [&[b32][..], &u32s(&ROWSUM_IN)].concat();
            MockModel::new(
                "rowsum",
                Op::RowSum {
                    out_features: u32::try_from(ROWSUM_OUT).expect("small"),
                },
            )
            .input("x", DType::Float32, &x)
            .output(
                "y",
                DType::Float32,
                &[b32, u32::try_from(ROWSUM_OUT).expect("small")],
            )
        }
    };
    common::neff(model.exec_us(exec_us))
}

/// Outputs of one forward: `(shape, data)` per model output.
type Tensors = Vec<(Vec<usize>, Vec<f32>)>;

/// The inputs of one forward: shapes and data per model input.
struct Batch {
    shapes: Vec<Vec<usize>>,
    data: Vec<Vec<f32>>,
}

impl Batch {
    fn random(kind: Kind, n: usize, rng: &mut XorShift) -> Batch {
        let row_shapes: Vec<Vec<usize>> = match kind {
            Kind::Affine2 => vec![vec![AFFINE_X], AFFINE_Z.to_vec()],
            Kind::RowSum => vec![ROWSUM_IN.to_vec()],
        };
        let shapes: Vec<Vec<usize>> = row_shapes
            .iter()
            .map(|row| [&[n][..], row].concat())
            .collect();
        let data = shapes
            .iter()
            .map(|s| wide_f32s(rng, s.iter().product()))
            .collect();
        Batch { shapes, data }
    }

    /// Views by position, or by name in reverse order.
    fn inputs(&self, named: bool) -> Vec<Input<'_>> {
        let names = ["x", "z"];
        let mut views: Vec<Input<'_>> = self
            .shapes
            .iter()
            .zip(&self.data)
            .enumerate()
            .map(|(i, (shape, data))| {
                let view = Input::f32(shape, data);
                if named { view.named(names[i]) } else { view }
            })
            .collect();
        if named {
            views.reverse();
        }
        views
    }
}

/// The op computed in plain Rust: one `(shape, data)` per model output.
fn reference(kind: Kind, batch: &Batch) -> Tensors {
    match kind {
        // Two roundings, as the mock computes it (Rust never fuses these).
        Kind::Affine2 => batch
            .shapes
            .iter()
            .zip(&batch.data)
            .map(|(shape, data)| (shape.clone(), ref_affine(data, SCALE, BIAS)))
            .collect(),
        Kind::RowSum => {
            let n = batch.shapes[0][0];
            vec![(
                vec![n, ROWSUM_OUT],
                ref_rowsum(&batch.data[0], n, ROWSUM_OUT),
            )]
        }
    }
}

fn check_outputs(
    what: &str,
    got: &[(Vec<usize>, Vec<f32>)],
    want: &[(Vec<usize>, Vec<f32>)],
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} outputs, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, ((gs, gd), (ws, wd))) in got.iter().zip(want).enumerate() {
        if gs != ws {
            return Err(format!(
                "{what}: output {i} has shape {gs:?}, expected {ws:?}"
            ));
        }
        if bits(gd) != bits(wd) {
            let first = gd
                .iter()
                .zip(wd)
                .position(|(a, b)| a.to_bits() != b.to_bits())
                .unwrap_or(0);
            return Err(format!(
                "{what}: output {i} differs first at element {first}: got {:?}, expected {:?}",
                gd.get(first),
                wd.get(first)
            ));
        }
    }
    Ok(())
}

fn tensors(outputs: Vec<OutputTensor>) -> Tensors {
    outputs
        .into_iter()
        .map(|o| {
            let data = o.to_vec::<f32>().expect("float32 output");
            (o.shape, data)
        })
        .collect()
}

/// Runs one forward, with `forward` or with `forward_into` on buffers of our own.
fn run(engine: &DataParallel, batch: &Batch, named: bool, into: bool) -> Result<Tensors, Error> {
    let inputs = batch.inputs(named);
    if !into {
        return engine.forward(&inputs).map(tensors);
    }
    let shapes = engine.output_shapes(&inputs)?;
    let mut buffers: Vec<Vec<f32>> = shapes
        .iter()
        // Poison the buffers: every element must be overwritten.
        .map(|s| vec![f32::NAN; s.iter().product()])
        .collect();
    {
        let mut views: Vec<Output<'_>> = shapes
            .iter()
            .zip(buffers.iter_mut())
            .map(|(shape, buffer)| Output::f32(shape, buffer))
            .collect();
        engine.forward_into(&inputs, &mut views)?;
    }
    Ok(shapes.into_iter().zip(buffers).collect())
}

/// One engine configuration under test.
struct Case {
    kind: Kind,
    batch: usize,
    exec_us: u64,
    config: Config,
    /// Dynamic batching off: only some batch sizes are valid.
    exact: bool,
}

/// 8 threads × 20 forwards of random sizes on `case`'s engine; each result compared with the
/// plain-Rust op and with a single-core engine.
fn hammer(seed: u64, case: &Case) {
    let rt = runtime();
    let neff = neff(case.kind, case.batch, case.exec_us);
    let engine = DataParallel::new(&rt, &neff, case.config.clone()).expect("engine under test");
    let mut single_config = Config::default().device_list("nc:0");
    if case.exact {
        single_config = single_config.dynamic_batching(false).split_size(case.batch);
    }
    let single = DataParallel::new(&rt, &neff, single_config).expect("single-core engine");
    let cores = engine.devices().len();

    thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (engine, single) = (&engine, &single);
                scope.spawn(move || {
                    let mut rng = seeded(seed * 1000 + t);
                    for i in 0..FORWARDS {
                        let n = rng.below(MAX_ROWS);
                        let (named, into) = (rng.next_u64() & 1 == 1, rng.next_u64() & 2 == 2);
                        let batch = Batch::random(case.kind, n, &mut rng);
                        let what = format!(
                            "seed {seed} thread {t} forward {i}: n={n} named={named} \
                             into={into} b={} cores={cores}",
                            case.batch
                        );
                        let got = run(engine, &batch, named, into);
                        if case.exact {
                            // Split size b, dynamic batching off: n must be a multiple of b.
                            // (n == 0 has no chunks: an empty output, no device call.)
                            if n % case.batch != 0 {
                                match got {
                                    Err(Error::Plan(_)) => continue,
                                    other => panic!(
                                        "{what}: expected a plan error, got {:?}",
                                        other.map(|o| o.len())
                                    ),
                                }
                            }
                        }
                        let got = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                        let want = reference(case.kind, &batch);
                        check_outputs(&format!("{what} (vs plain Rust)"), &got, &want)
                            .unwrap_or_else(|e| panic!("{e}"));
                        let one = run(single, &batch, !named, !into)
                            .unwrap_or_else(|e| panic!("{what}: single core: {e}"));
                        check_outputs(&format!("{what} (vs single core)"), &got, &one)
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                })
            })
            .collect();
        for handle in handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });

    // Every execution is accounted to a core of the engine, none failed.
    let stats = engine.core_stats();
    assert_eq!(stats.len(), cores);
    assert!(stats.iter().all(|s| s.failures == 0), "{stats:?}");
}

#[test]
fn affine_b1_default_config_all_cores() {
    hammer(
        1,
        &Case {
            kind: Kind::Affine2,
            batch: 1,
            exec_us: 0,
            config: Config::default(),
            exact: false,
        },
    );
}

#[test]
fn rowsum_b1_default_config_all_cores() {
    hammer(
        2,
        &Case {
            kind: Kind::RowSum,
            batch: 1,
            exec_us: 20,
            config: Config::default(),
            exact: false,
        },
    );
}

#[test]
fn affine_b4_split_size_3() {
    // Chunks of 3 rows on a batch-4 model: every piece is padded.
    hammer(
        3,
        &Case {
            kind: Kind::Affine2,
            batch: 4,
            exec_us: 50,
            config: Config::default()
                .device_list("nc:0,nc:1,nc:2")
                .split_size(3),
            exact: false,
        },
    );
}

#[test]
fn rowsum_b4_split_size_3() {
    hammer(
        4,
        &Case {
            kind: Kind::RowSum,
            batch: 4,
            exec_us: 10,
            config: Config::default().split_size(3).device_list("nc:2,nc:0"),
            exact: false,
        },
    );
}

#[test]
fn rowsum_b5_one_worker_for_four_cores() {
    hammer(
        5,
        &Case {
            kind: Kind::RowSum,
            batch: 5,
            exec_us: 30,
            config: Config::default()
                .device_list("nc:0,nc:1,nc:2,nc:3")
                .num_workers(1),
            exact: false,
        },
    );
}

#[test]
fn affine_b5_three_workers_two_cores_split_size_7() {
    hammer(
        6,
        &Case {
            kind: Kind::Affine2,
            batch: 5,
            exec_us: 40,
            config: Config::default()
                .device_list("nc:1,nc:3")
                .num_workers(3)
                .split_size(7),
            exact: false,
        },
    );
}

#[test]
fn rowsum_b4_three_workers_per_core_unsorted_subset() {
    hammer(
        7,
        &Case {
            kind: Kind::RowSum,
            batch: 4,
            exec_us: 100,
            config: Config::default()
                .device_list("nc:9,nc:4,nc:17")
                .workers_per_core(3),
            exact: false,
        },
    );
}

#[test]
fn affine_b4_attach_mode() {
    hammer(
        8,
        &Case {
            kind: Kind::Affine2,
            batch: 4,
            exec_us: 20,
            config: Config::default().device_list("nc:5,nc:6,nc:7").attach(true),
            exact: false,
        },
    );
}

#[test]
fn rowsum_b4_attach_mode_one_worker() {
    hammer(
        9,
        &Case {
            kind: Kind::RowSum,
            batch: 4,
            exec_us: 0,
            config: Config::default()
                .device_list("nc:10,nc:11")
                .attach(true)
                .num_workers(1),
            exact: false,
        },
    );
}

#[test]
fn affine_b4_dynamic_batching_off_split_size_b() {
    // Every chunk is exactly b rows, dealt round-robin; other sizes are plan errors.
    hammer(
        10,
        &Case {
            kind: Kind::Affine2,
            batch: 4,
            exec_us: 10,
            config: Config::default()
                .device_list("nc:12,nc:13,nc:14")
                .dynamic_batching(false)
                .split_size(4),
            exact: true,
        },
    );
}

// ---- which core ran which rows ----

const CORE_ID_TEST: &str = "core_id_rows_follow_device_order";

/// Under `NEURON_RT_VISIBLE_CORES=8-15` (logical 0..7 = physical 8..15), devices given as
/// `nc:3,nc:0,nc:5` are sorted (as `torch_neuronx` sorts `device_ids`) to `nc:0,nc:3,nc:5`,
/// physical 8, 11, 13: chunk i of every forward must come back filled with the physical core
/// of device `i % 3`.
#[test]
fn core_id_rows_follow_device_order() {
    if !nrt_mock::testing::in_child(CORE_ID_TEST, &[("NEURON_RT_VISIBLE_CORES", "8-15")]) {
        return;
    }
    let rt = runtime();
    let b = 2u32;
    let model = MockModel::new("core", Op::CoreId)
        .input("x", DType::Float32, &[b, 3])
        .output("core", DType::Int32, &[b, 1])
        .exec_us(30);
    let neff = common::neff(model);
    let physical = [8i32, 11, 13];
    for (seed, config) in [
        (20u64, Config::default()),
        (21, Config::default().split_size(3)),
        (22, Config::default().num_workers(1)),
    ] {
        let engine = DataParallel::new(&rt, &neff, config.device_list("nc:3,nc:0,nc:5"))
            .expect("core_id engine");
        let cores: Vec<Option<u32>> = engine.physical_cores().collect();
        assert_eq!(cores, vec![Some(8), Some(11), Some(13)]);
        thread::scope(|scope| {
            for t in 0..THREADS {
                let engine = &engine;
                scope.spawn(move || {
                    let mut rng = seeded(seed * 1000 + t);
                    for _ in 0..FORWARDS {
                        let n = rng.below(MAX_ROWS);
                        let x = wide_f32s(&mut rng, n * 3);
                        let shape = [n, 3];
                        let plan = engine.plan(n).expect("plan");
                        let out = if rng.next_u64() & 1 == 1 {
                            let out = engine.forward(&[Input::f32(&shape, &x)]).expect("forward");
                            assert_eq!(out[0].shape, vec![n, 1]);
                            out[0].to_vec::<i32>().expect("int32")
                        } else {
                            let mut out = vec![-1i32; n];
                            let out_shape = [n, 1];
                            engine
                                .forward_into(
                                    &[Input::f32(&shape, &x)],
                                    &mut [Output::from_slice(RtDType::Int32, &out_shape, &mut out)],
                                )
                                .expect("forward_into");
                            out
                        };
                        let mut covered = 0;
                        for chunk in &plan {
                            let expected = physical[chunk.chunk % physical.len()];
                            assert_eq!(
                                chunk.physical_core.map(i64::from),
                                Some(i64::from(expected)),
                                "plan of n={n}: {plan:?}"
                            );
                            assert_eq!(chunk.start, covered, "plan of n={n}: {plan:?}");
                            covered += chunk.rows;
                            let rows = &out[chunk.start..chunk.start + chunk.rows];
                            assert!(
                                rows.iter().all(|&c| c == expected),
                                "n={n}: chunk {} expected physical core {expected}, got {rows:?} \
                                 (plan {plan:?})",
                                chunk.chunk
                            );
                        }
                        assert_eq!(covered, n, "plan of n={n}: {plan:?}");
                    }
                });
            }
        });
    }
}

/// `disable_dynamic_batching()` while 8 threads are calling: every call either returns the
/// right rows or is refused with a plan error (never wrong data, never a hang); afterwards
/// exactly cores × b rows still work.
#[test]
fn disabling_dynamic_batching_mid_flight() {
    let rt = runtime();
    let b = 2;
    let neff = neff(Kind::Affine2, b, 20);
    let engine = DataParallel::new(
        &rt,
        &neff,
        Config::default().device_list("nc:20,nc:21,nc:22"),
    )
    .expect("engine");
    let exact = engine.devices().len() * b;
    thread::scope(|scope| {
        for t in 0..THREADS {
            let engine = &engine;
            scope.spawn(move || {
                let mut rng = seeded(30_000 + t);
                for i in 0..FORWARDS {
                    if t == 0 && i == FORWARDS / 2 {
                        engine.disable_dynamic_batching();
                    }
                    // Half the calls use the one size that is valid either way.
                    let n = if rng.next_u64() & 1 == 1 {
                        exact
                    } else {
                        rng.below(MAX_ROWS)
                    };
                    let batch = Batch::random(Kind::Affine2, n, &mut rng);
                    let into = rng.next_u64() & 1 == 1;
                    match run(engine, &batch, false, into) {
                        Ok(got) => check_outputs(
                            &format!("thread {t} forward {i} n={n}"),
                            &got,
                            &reference(Kind::Affine2, &batch),
                        )
                        .unwrap_or_else(|e| panic!("{e}")),
                        Err(Error::Plan(_)) if n != exact => {}
                        Err(e) => panic!("thread {t} forward {i} n={n} into={into}: {e}"),
                    }
                }
            });
        }
    });
    assert!(!engine.dynamic_batching());
    let batch = Batch::random(Kind::Affine2, exact, &mut seeded(31_000));
    let got = run(&engine, &batch, true, true).expect("cores x b rows");
    check_outputs("after disabling", &got, &reference(Kind::Affine2, &batch))
        .unwrap_or_else(|e| panic!("{e}"));
}
