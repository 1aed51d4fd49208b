//! Scenario 0: the mock's own cost per execution, measured directly (one core, the calling
//! thread, write + execute + read of a 64-byte row, no engine). This is the ceiling every
//! other scenario lives under: the mock sleeps until `start + exec_us`, and the OS wakes a
//! sleeping thread late (timer slack, scheduling), so one execution takes longer than
//! `exec_us` even with no engine at all.

use serde_json::json;

use crate::BoxResult;
use crate::baselines::{Station, f32_bytes};
use crate::common::{Ctx, Usage, affine_neff, median, percentile, us};
use crate::report::Report;

/// Features per row in the small-tensor scenarios.
pub(crate) const FEATURES: usize = 16;

/// Measured time of one direct execution, per nominal `exec_us`.
pub(crate) struct Ceiling {
    per_exec_us: Vec<(u64, f64)>,
}

impl Ceiling {
    /// The measured µs of one direct execution at `exec_us` (the nominal value if unmeasured).
    pub(crate) fn measured(&self, exec_us: u64) -> f64 {
        self.per_exec_us
            .iter()
            .find(|(e, _)| *e == exec_us)
            .map_or(exec_us as f64, |(_, m)| *m)
    }
}

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult<Ceiling> {
    report.section(
        "0. The mock's own time per execution (direct calls, one core, batch 1, 64 B rows)",
        &[
            "exec_us",
            "executions",
            "median µs/exec",
            "mean µs/exec",
            "overshoot µs (mean)",
            "p99 µs/exec",
            "CPU µs/exec",
        ],
    );
    let mut per_exec_us = Vec::new();
    for (exec_us, full) in [(0u64, 5000usize), (200, 1000), (500, 400), (2000, 250)] {
        let iterations = ctx.pick(full, full / 5, 3);
        let neff = affine_neff(1, FEATURES, exec_us)?;
        let mut station = Station::new(ctx, &neff, 0)?;
        let x = vec![0u8; f32_bytes(1, FEATURES)];
        let mut y = vec![0u8; x.len()];
        for _ in 0..iterations.min(20) {
            station.run(&x, &mut y)?;
        }
        let mut samples = Vec::with_capacity(iterations);
        let usage = Usage::now();
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            let t = std::time::Instant::now();
            station.run(&x, &mut y)?;
            samples.push(us(t.elapsed()));
        }
        let mean = us(start.elapsed()) / iterations as f64;
        let cpu = us(Usage::now().since(&usage).cpu) / iterations as f64;
        let med = median(&mut samples);
        let p99 = percentile(&mut samples, 0.99);
        per_exec_us.push((exec_us, mean));
        report.row(
            vec![
                exec_us.to_string(),
                iterations.to_string(),
                format!("{med:.1}"),
                format!("{mean:.1}"),
                format!("{:.1}", mean - exec_us as f64),
                format!("{p99:.1}"),
                format!("{cpu:.1}"),
            ],
            json!({
                "scenario": "mock_ceiling",
                "exec_us": exec_us,
                "executions": iterations,
                "median_us_per_exec": med,
                "mean_us_per_exec": mean,
                "p99_us_per_exec": p99,
                "cpu_us_per_exec": cpu,
            }),
        );
    }
    report.note(
        "The engine cannot run a core faster than this: one core's best throughput is \
         1 / (mean µs/exec). The overshoot is the OS waking the mock's sleeping thread late; \
         CPU µs/exec is what one sleeping execution costs this VM in CPU (timer, wake-up, \
         context switch), with no engine.",
    );
    Ok(Ceiling { per_exec_us })
}
