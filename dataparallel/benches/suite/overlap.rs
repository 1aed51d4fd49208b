//! Scenario 5: transfer overlap. An identity model with 4 MiB rows (compiled batch 1) and an
//! exec_us set to the measured time of one piece's transfers (write 4 MiB into the input
//! tensor, read 4 MiB from the output tensor), so transfers and device time weigh the same. 8 pieces per
//! core per forward, with 1 and with 2 workers per core: with 2, one worker's copies run
//! while the other's piece executes.

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::baselines::Station;
use crate::common::{Ctx, F32, engine, identity_neff, median, timed, us};
use crate::report::Report;

/// f32 per row: 4 MiB.
const ROW_FLOATS: usize = 1 << 20;
const ROWS_PER_CORE: usize = 8;

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    // The engine's copies of one piece: write 4 MiB into the input tensor, read 4 MiB out.
    let copy_us = {
        let neff = identity_neff(1, ROW_FLOATS, 0)?;
        let mut station = Station::new(ctx, &neff, 0)?;
        let x = vec![1u8; ROW_FLOATS * F32];
        let mut y = vec![0u8; x.len()];
        let mut samples = Vec::new();
        for i in 0..ctx.pick(40, 15, 2) {
            let t = std::time::Instant::now();
            station.copy(&x, &mut y)?;
            if i >= 3 || ctx.pick(false, false, true) {
                samples.push(us(t.elapsed()));
            }
        }
        median(&mut samples)
    };
    let exec_us = ((copy_us / 100.0).round() as u64).max(1) * 100;
    report.section(
        &format!(
            "5. Transfer overlap: identity, 4 MiB rows, batch 1, 8 pieces per core, exec_us \
             {exec_us} (= one piece's transfers: write + read 4 MiB, {copy_us:.0} µs)"
        ),
        &[
            "k",
            "workers/core",
            "forwards",
            "ms/forward",
            "ms/piece",
            "GiB/s in+out",
            "gain vs 1 worker",
        ],
    );
    let neff = identity_neff(1, ROW_FLOATS, exec_us)?;
    let forwards = ctx.pick(12, 4, 1);
    let mut gain_k1 = None;
    for k in ctx.cores(&[1, 2]) {
        let rows = ROWS_PER_CORE * k;
        let x: Vec<f32> = (0..rows * ROW_FLOATS).map(|i| (i % 4096) as f32).collect();
        let mut y = vec![0f32; x.len()];
        let shape = [rows, ROW_FLOATS];
        let mut one = None;
        for workers in [1usize, 2] {
            let engine = engine(ctx, &neff, k, Config::default().workers_per_core(workers))?;
            let wall = timed(1, forwards, || {
                engine.forward_into(
                    &[Input::f32(&shape, &x)],
                    &mut [Output::f32(&shape, &mut y)],
                )?;
                Ok(())
            })?;
            drop(engine);
            if x != y {
                return Err("overlap: identity output differs from its input".into());
            }
            y.fill(0.0);
            let per_forward = wall.as_secs_f64() / forwards as f64;
            let base = *one.get_or_insert(per_forward);
            let gain = base / per_forward;
            if k == 1 && workers == 2 {
                gain_k1 = Some(gain);
            }
            let bytes = 2.0 * (rows * ROW_FLOATS * F32) as f64;
            report.row(
                vec![
                    k.to_string(),
                    workers.to_string(),
                    forwards.to_string(),
                    format!("{:.2}", per_forward * 1e3),
                    format!("{:.3}", per_forward * 1e3 / ROWS_PER_CORE as f64),
                    format!("{:.2}", bytes / per_forward / f64::from(1u32 << 30)),
                    format!("{gain:.2}"),
                ],
                json!({
                    "scenario": "overlap",
                    "k": k,
                    "workers_per_core": workers,
                    "exec_us": exec_us,
                    "piece_transfer_us": copy_us,
                    "row_bytes": ROW_FLOATS * F32,
                    "rows": rows,
                    "forwards": forwards,
                    "seconds_per_forward": per_forward,
                    "gain_vs_1_worker": gain,
                }),
            );
        }
    }
    if let Some(gain) = gain_k1 {
        report.target(
            "transfer overlap: 2 vs 1 workers per core, k = 1",
            format!("{gain:.2}x"),
            "> 1.2x (ideal (c+e)/max(c,e) = 2x)",
            gain > 1.2,
        );
    }
    report.note(
        "With 1 worker a piece costs copies + execution; with 2 the copies of one piece overlap \
         the execution of the other, so the ideal is max(copies, execution) per piece.",
    );
    Ok(())
}
