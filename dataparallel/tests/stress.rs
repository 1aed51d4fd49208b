//! Stress: many caller threads, random batch sizes and random engine configurations for a
//! bounded time, every output checked against plain Rust, and no leaks at the end.
//!
//! Engines are built one after another on a simulated 8-core instance, each with a random
//! model (`affine`, `add` or `rowsum`, random compiled batch and widths), a random subset of
//! the cores, a random `split_size`, a random worker count (per core or in total), dynamic
//! batching on or off (off: only batch sizes the rule allows), attach mode on or off. Eight
//! caller threads hammer each engine with random batch sizes (and the odd invalid input,
//! which must be rejected) for a random slice of the time budget. After each engine is
//! dropped the mock must hold no live tensors, tensor sets or models.
//!
//! Time budget: `DP_STRESS_SECONDS` (default 30; CI and `cargo xtask mock-test` use the
//! default). Seed: `DP_STRESS_SEED` (default: from the clock; printed, and shown when the
//! test fails, so a failure can be replayed).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    MockModel, XorShift, add_model, affine_model, assert_no_leaks, child_scenario, neff, ref_add,
    ref_affine, ref_rowsum, rowsum_model,
};
use dataparallel::{Config, DataParallel, Error, Input, Output};

/// Physical cores of the simulated instance.
const CORES: usize = 8;
/// Caller threads per engine.
const CALLERS: usize = 8;

/// Small floats with few mantissa bits (no NaN, no overflow).
fn small_f32s(rng: &mut XorShift, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| ((rng.next_u64() >> 44) as i32 - (1 << 19)) as f32 / 4096.0)
        .collect()
}

/// The model an engine runs, with its plain-Rust reference.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Affine {
        scale: f32,
        bias: f32,
        features: usize,
    },
    Add {
        features: usize,
    },
    RowSum {
        features: usize,
        out: usize,
    },
}

impl Kind {
    fn random(rng: &mut XorShift) -> Kind {
        match rng.range(0, 2) {
            0 => Kind::Affine {
                scale: rng.range(1, 8) as f32 * 0.5 - 2.0,
                bias: rng.range(0, 8) as f32 * 0.25,
                features: rng.range(1, 5),
            },
            1 => Kind::Add {
                features: rng.range(1, 5),
            },
            _ => Kind::RowSum {
                features: rng.range(1, 6),
                out: rng.range(1, 3),
            },
        }
    }

    fn model(self, b: usize) -> MockModel {
        let b = b as u32;
        let model = match self {
            Kind::Affine {
                scale,
                bias,
                features,
            } => affine_model(b, features as u32, scale, bias),
            Kind::Add { features } => add_model(b, features as u32),
            Kind::RowSum { features, out } => rowsum_model(b, features as u32, out as u32),
        };
        model.exec_us(20)
    }

    fn inputs(self) -> usize {
        match self {
            Kind::Add { .. } => 2,
            _ => 1,
        }
    }

    fn in_features(self) -> usize {
        match self {
            Kind::Affine { features, .. }
            | Kind::Add { features }
            | Kind::RowSum { features, .. } => features,
        }
    }

    fn out_features(self) -> usize {
        match self {
            Kind::RowSum { out, .. } => out,
            other => other.in_features(),
        }
    }

    fn reference(self, rows: usize, inputs: &[Vec<f32>]) -> Vec<f32> {
        match self {
            Kind::Affine { scale, bias, .. } => ref_affine(&inputs[0], scale, bias),
            Kind::Add { .. } => ref_add(&inputs[0], &inputs[1]),
            Kind::RowSum { out, .. } => ref_rowsum(&inputs[0], rows, out),
        }
    }
}

/// One randomly configured engine.
#[derive(Debug, Clone)]
struct Setup {
    kind: Kind,
    batch: usize,
    devices: Vec<i64>,
    split_size: Option<usize>,
    workers: Result<usize, usize>,
    dynamic: bool,
    attach: bool,
}

impl Setup {
    fn random(rng: &mut XorShift) -> Setup {
        let kind = Kind::random(rng);
        let batch = rng.range(1, 4);
        let mut devices: Vec<i64> = (0..CORES as i64).filter(|_| rng.chance(50)).collect();
        if devices.is_empty() {
            devices.push(rng.range(0, CORES - 1) as i64);
        }
        let dynamic = rng.chance(70);
        let split_size = if rng.chance(50) {
            None
        } else if dynamic {
            Some(rng.range(1, 6))
        } else {
            // Dynamic batching off allows only split_size == compiled batch.
            Some(batch)
        };
        let workers = if rng.chance(50) {
            Ok(rng.range(1, 3))
        } else {
            Err(rng.range(1, devices.len() + 1))
        };
        Setup {
            kind,
            batch,
            devices,
            split_size,
            workers,
            dynamic,
            attach: rng.chance(30),
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::default()
            .device_indices(self.devices.clone())
            .dynamic_batching(self.dynamic)
            .attach(self.attach);
        if let Some(s) = self.split_size {
            config = config.split_size(s);
        }
        match self.workers {
            Ok(per_core) => config.workers_per_core(per_core),
            Err(total) => config.num_workers(total),
        }
    }

    /// A batch size the engine must accept.
    fn rows(&self, rng: &mut XorShift) -> usize {
        if self.dynamic {
            rng.range(0, 40)
        } else if self.split_size.is_some() {
            self.batch * rng.range(1, 10)
        } else {
            self.batch * self.devices.len()
        }
    }
}

/// One caller: random valid calls (checked bit for bit) and the odd invalid one (rejected).
fn caller(dp: &DataParallel, setup: &Setup, mut rng: XorShift, until: Instant, calls: &AtomicU64) {
    let kind = setup.kind;
    let (fin, fout) = (kind.in_features(), kind.out_features());
    let names = ["a", "b"];
    // Every caller makes at least one call, then runs until `until`.
    let mut first = true;
    while std::mem::take(&mut first) || Instant::now() < until {
        let rows = setup.rows(&mut rng);
        let in_shape = [rows, fin];
        let out_shape = [rows, fout];
        let data: Vec<Vec<f32>> = (0..kind.inputs())
            .map(|_| small_f32s(&mut rng, rows * fin))
            .collect();
        if rng.chance(5) {
            // Invalid: one feature too many. Rejected before any device call.
            let bad_shape = [rows, fin + 1];
            let bad = vec![0.0f32; rows * (fin + 1)];
            let inputs: Vec<Input<'_>> = (0..kind.inputs())
                .map(|_| Input::f32(&bad_shape, &bad))
                .collect();
            let err = dp.forward(&inputs).expect_err("wrong feature count");
            assert!(matches!(err, Error::Input(_)), "{err:?}");
            continue;
        }
        // Two-input models: half the calls name every input and pass them in reverse order.
        let named = kind.inputs() == 2 && rng.chance(50);
        let mut inputs: Vec<Input<'_>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let input = Input::f32(&in_shape, d);
                if named { input.named(names[i]) } else { input }
            })
            .collect();
        if named {
            inputs.reverse();
        }
        let want = kind.reference(rows, &data);
        let got = match rng.range(0, 2) {
            0 => {
                let out = dp.forward(&inputs).unwrap_or_else(|e| {
                    panic!("forward of {rows} rows on {setup:?}: {e}");
                });
                assert_eq!(out.len(), 1);
                assert_eq!(out[0].shape, out_shape);
                out[0].to_vec::<f32>().expect("f32 output")
            }
            1 => {
                let mut out = vec![f32::NAN; rows * fout];
                dp.forward_into(&inputs, &mut [Output::f32(&out_shape, &mut out)])
                    .unwrap_or_else(|e| panic!("forward_into of {rows} rows on {setup:?}: {e}"));
                out
            }
            _ => {
                let mut out = vec![f32::NAN; rows * fout];
                let report = dp
                    .forward_into_report(&inputs, &mut [Output::f32(&out_shape, &mut out)])
                    .unwrap_or_else(|e| panic!("report of {rows} rows on {setup:?}: {e}"));
                assert_eq!(report.rows, rows);
                assert_eq!(
                    report.chunks.iter().map(|(c, _)| c.rows).sum::<usize>(),
                    rows
                );
                out
            }
        };
        assert!(
            got.iter()
                .map(|v| v.to_bits())
                .eq(want.iter().map(|v| v.to_bits())),
            "{rows} rows on {setup:?}: outputs differ from plain Rust"
        );
        calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn stress_random_engines_callers_and_batches() {
    const NAME: &str = "stress_random_engines_callers_and_batches";
    let seconds: u64 = match std::env::var("DP_STRESS_SECONDS") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("DP_STRESS_SECONDS={v:?} is not a number of seconds")),
        Err(_) => 30,
    };
    let cores = CORES.to_string();
    // The child inherits DP_STRESS_SECONDS and DP_STRESS_SEED.
    let Some(runtime) = child_scenario(
        NAME,
        &[("NRT_MOCK_TOTAL_CORES", cores.as_str())],
        Duration::from_secs(seconds * 4 + 300),
    ) else {
        return;
    };
    let seed: u64 = std::env::var("DP_STRESS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("stress: {seconds} s, DP_STRESS_SEED={seed}");
    // `max(1)`: seed 0 replays as it always did (xorshift needs a non-zero state).
    let mut rng = XorShift::new(seed.max(1));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let calls = AtomicU64::new(0);
    let mut engines = 0;
    // At least one engine, even with DP_STRESS_SECONDS=0.
    while engines == 0 || Instant::now() < deadline {
        let setup = Setup::random(&mut rng);
        let neff = neff(setup.kind.model(setup.batch));
        let slice = Duration::from_millis(rng.range(500, 4000) as u64);
        let until = (Instant::now() + slice).min(deadline.max(Instant::now()));
        {
            let dp = DataParallel::new(&runtime, &neff, setup.config())
                .unwrap_or_else(|e| panic!("build {setup:?}: {e}"));
            std::thread::scope(|s| {
                for _ in 0..CALLERS {
                    let thread_rng = XorShift::new(rng.next_u64());
                    let (dp, setup, calls) = (&dp, &setup, &calls);
                    s.spawn(move || caller(dp, setup, thread_rng, until, calls));
                }
            });
        }
        assert_no_leaks(&format!("after engine {engines} ({setup:?})"));
        engines += 1;
    }
    println!(
        "stress: {engines} engines, {} checked calls in {:?}",
        calls.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(calls.load(Ordering::Relaxed) > 0 || seconds == 0);
}
