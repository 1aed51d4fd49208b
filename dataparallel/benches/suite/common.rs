//! What every scenario shares: the run's mode and runtime, mock models, engines on the first
//! k cores, and small statistics.

use std::time::Duration;

use dataparallel::{Config, DataParallel};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};

use crate::BoxResult;

/// How much to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every scenario, full counts (`cargo xtask bench`).
    Full,
    /// A reduced set, under a minute (`cargo xtask bench --quick`).
    Quick,
    /// Tiny counts, only to prove the scenarios still run (`cargo test --all-targets`).
    Smoke,
}

/// The run: mode and runtime.
pub(crate) struct Ctx {
    pub(crate) runtime: Runtime,
    pub(crate) mode: Mode,
}

impl Ctx {
    pub(crate) fn new(runtime: Runtime, mode: Mode) -> Ctx {
        Ctx { runtime, mode }
    }

    /// `full`, `quick` or `smoke`, by mode.
    pub(crate) fn pick<T>(&self, full: T, quick: T, smoke: T) -> T {
        match self.mode {
            Mode::Full => full,
            Mode::Quick => quick,
            Mode::Smoke => smoke,
        }
    }

    /// The core counts to use out of `wanted`, capped by the cores the process has.
    pub(crate) fn cores(&self, wanted: &[usize]) -> Vec<usize> {
        let visible = self.runtime.visible_cores() as usize;
        let mut ks: Vec<usize> = wanted.iter().copied().filter(|&k| k <= visible).collect();
        if ks.is_empty() {
            ks.push(visible.max(1));
        }
        ks
    }
}

/// Bytes per f32.
pub(crate) const F32: usize = 4;

/// `affine {2, 1}` over float32 `x [batch, features]` -> `y [batch, features]`.
pub(crate) fn affine_neff(batch: usize, features: usize, exec_us: u64) -> BoxResult<Neff> {
    let shape = [u32::try_from(batch)?, u32::try_from(features)?];
    let model = MockModel::new(
        "bench_affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &shape)
    .output("y", DType::Float32, &shape)
    .exec_us(exec_us);
    to_neff(&model)
}

/// `identity` over float32 `x [batch, features]` -> `y [batch, features]`.
pub(crate) fn identity_neff(batch: usize, features: usize, exec_us: u64) -> BoxResult<Neff> {
    let shape = [u32::try_from(batch)?, u32::try_from(features)?];
    let model = MockModel::new("bench_identity", Op::Identity)
        .input("x", DType::Float32, &shape)
        .output("y", DType::Float32, &shape)
        .exec_us(exec_us);
    to_neff(&model)
}

fn to_neff(model: &MockModel) -> BoxResult<Neff> {
    model.validate()?;
    Ok(Neff::from_bytes(model.to_neff_bytes())?)
}

/// The first `k` logical cores, as engine device indices.
pub(crate) fn first_cores(k: usize) -> Vec<i64> {
    (0..k)
        .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
        .collect()
}

/// An engine on cores `0..k` with `config` (whose device ids are replaced).
pub(crate) fn engine(ctx: &Ctx, neff: &Neff, k: usize, config: Config) -> BoxResult<DataParallel> {
    Ok(DataParallel::new(
        &ctx.runtime,
        neff,
        config.device_indices(first_cores(k)),
    )?)
}

/// `count` f32 values `0, 1, 2, ...` modulo 1000 (exact in f32; affine of them is exact too).
pub(crate) fn ramp(count: usize) -> Vec<f32> {
    (0..count).map(|i| (i % 1000) as f32).collect()
}

/// Checks an affine {2, 1} output against its input.
pub(crate) fn check_affine(x: &[f32], y: &[f32], what: &str) -> BoxResult {
    if x.len() != y.len() || x.iter().zip(y).any(|(a, b)| a * 2.0 + 1.0 != *b) {
        return Err(format!("{what}: wrong affine output").into());
    }
    Ok(())
}

/// The median of `samples` (sorts them).
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    percentile(samples, 0.5)
}

/// The `q` quantile (0..=1) of `samples`, nearest rank (sorts them).
pub(crate) fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Microseconds in a duration.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// CPU time (user + system) and context switches (voluntary + involuntary) of the whole
/// process so far, every thread included (the mock's work runs on our threads too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) cpu: Duration,
    pub(crate) switches: u64,
}

impl Usage {
    pub(crate) fn now() -> Usage {
        // SAFETY: `rusage` is plain data for which all-zero bytes are valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF needs nothing else.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc != 0 {
            return Usage {
                cpu: Duration::ZERO,
                switches: 0,
            };
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            switches: u64::try_from(usage.ru_nvcsw + usage.ru_nivcsw).unwrap_or(0),
        }
    }

    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}
