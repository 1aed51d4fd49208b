//! Scenario 1: scaling. Compiled batch 1, batch n = 4k on k cores (4 pieces per core), at
//! exec_us 2000 and 200. Efficiency = throughput(k) / (k × throughput(1)).

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::common::{Ctx, affine_neff, check_affine, engine, ramp, timed};
use crate::mock::FEATURES;
use crate::report::Report;

/// Rows per core per forward.
const ROWS_PER_CORE: usize = 4;

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    report.section(
        "1. Scaling: compiled batch 1, n = 4k rows, default config (2 workers per core)",
        &[
            "exec_us",
            "k",
            "forwards",
            "ms/forward",
            "ideal ms",
            "rows/s",
            "efficiency",
        ],
    );
    let ks = ctx.cores(ctx.pick(&[1, 2, 4, 8, 16, 24][..], &[1, 8, 24][..], &[1, 2][..]));
    for (exec_us, full, target) in [(2000u64, 80usize, 0.97), (200, 600, 0.90)] {
        let forwards = ctx.pick(full, full / 4, 2);
        let neff = affine_neff(1, FEATURES, exec_us)?;
        let mut base = None;
        let mut last = (0, 0.0);
        for &k in &ks {
            let rows = ROWS_PER_CORE * k;
            let engine = engine(ctx, &neff, k, Config::default())?;
            let x = ramp(rows * FEATURES);
            let mut y = vec![0f32; x.len()];
            let shape = [rows, FEATURES];
            let wall = timed(forwards.min(10), forwards, || {
                engine.forward_into(
                    &[Input::f32(&shape, &x)],
                    &mut [Output::f32(&shape, &mut y)],
                )?;
                Ok(())
            })?;
            check_affine(&x, &y, "scaling")?;
            drop(engine);
            let per_forward = wall.as_secs_f64() / forwards as f64;
            let throughput = rows as f64 / per_forward;
            let base_throughput = *base.get_or_insert(throughput / k as f64);
            let efficiency = throughput / (k as f64 * base_throughput);
            last = (k, efficiency);
            report.row(
                vec![
                    exec_us.to_string(),
                    k.to_string(),
                    forwards.to_string(),
                    format!("{:.3}", per_forward * 1e3),
                    format!("{:.3}", (ROWS_PER_CORE as u64 * exec_us) as f64 / 1e3),
                    format!("{throughput:.0}"),
                    format!("{efficiency:.3}"),
                ],
                json!({
                    "scenario": "scaling",
                    "exec_us": exec_us,
                    "k": k,
                    "rows": rows,
                    "forwards": forwards,
                    "seconds_per_forward": per_forward,
                    "rows_per_s": throughput,
                    "efficiency": efficiency,
                }),
            );
        }
        if last.0 == 24 {
            report.target(
                &format!("scaling efficiency, k = 24, exec_us {exec_us}"),
                format!("{:.3}", last.1),
                &format!(">= {target:.2}"),
                last.1 >= target,
            );
        }
    }
    report.note(
        "efficiency = throughput(k) / (k × throughput(1)); throughput(1) is the engine's own \
         on one core, so the mock's per-execution overshoot (scenario 0) cancels out.",
    );
    Ok(())
}
