//! Scenario 5: transfer overlap. An identity model with 4 MiB rows (compiled batch 1) and an
//! exec_us set to the measured time of one piece's transfers (write 4 MiB into the input
//! tensor, read 4 MiB from the output tensor), so transfers and device time weigh the same. 8 pieces per
//! core per forward, with 1 and with 2 workers per core: with 2, one worker's copies run
//! while the other's piece executes.

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::baselines::Station;
use crate::common::{Ctx, F32, Mode, engine, identity_neff, median, us};
use crate::report::Report;

/// f32 per row: 4 MiB.
const ROW_FLOATS: usize = 1 << 20;
const ROWS_PER_CORE: usize = 8;

fn calibrate(ctx: &Ctx) -> BoxResult<(f64, f64)> {
    let neff = identity_neff(1, ROW_FLOATS, 0)?;
    let mut station = Station::new(ctx, &neff, 0)?;
    let x = vec![1u8; ROW_FLOATS * F32];
    let mut y = vec![0u8; x.len()];
    let (mut copies, mut pieces) = (Vec::new(), Vec::new());
    let n = ctx.pick(40, 15, 2);
    for i in 0..n {
        let t = std::time::Instant::now();
        station.copy(&x, &mut y)?;
        if i >= 3 || ctx.mode == Mode::Smoke {
            copies.push(us(t.elapsed()));
        }
    }
    for i in 0..n {
        let t = std::time::Instant::now();
        station.run(&x, &mut y)?;
        if i >= 3 || ctx.mode == Mode::Smoke {
            pieces.push(us(t.elapsed()));
        }
    }
    Ok((median(&mut copies), median(&mut pieces)))
}

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    // The engine's copies of one piece (write 4 MiB into the input tensor, read 4 MiB out),
    // and a whole piece at exec_us 0 (the difference is the mock's own work per execution).
    // Measured on a spawned thread, like the engine's workers: the mock allocates per
    // execution, and glibc trims the main thread's heap after large frees, which would make
    // the main thread pay page faults that workers do not.
    let shared: &Ctx = ctx;
    let (copy_us, piece0_us) = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(f64, f64), String> {
                calibrate(shared).map_err(|e| e.to_string())
            })
            .join()
            .map_err(|_| "overlap: the calibration thread panicked".to_owned())?
    })?;
    // Device time comparable to the host time of a piece: at exec_us 0 a piece costs the
    // engine's copies plus the mock's own work, which the mock does while holding the core
    // (it counts against exec_us), so exec_us = that time leaves about `copy_us` of it idle
    // for the other worker's copies.
    let exec_us = ((piece0_us / 100.0).round() as u64).max(1) * 100;
    let ideal = (copy_us + exec_us as f64) / copy_us.max(exec_us as f64);
    report.section(
        &format!(
            "5. Transfer overlap: identity, 4 MiB rows, batch 1, 8 pieces per core, exec_us \
             {exec_us} (a whole piece at exec_us 0: {piece0_us:.0} µs, of which the engine's \
             transfers, write + read 4 MiB, are {copy_us:.0} µs and the rest the mock's own work)"
        ),
        &[
            "k",
            "workers/core",
            "forwards",
            "median ms/forward",
            "ms/piece",
            "GiB/s in+out",
            "gain vs 1 worker",
        ],
    );
    let neff = identity_neff(1, ROW_FLOATS, exec_us)?;
    let forwards = ctx.pick(15, 6, 1);
    let mut gain_k1 = None;
    for k in ctx.cores(&[1, 2]) {
        let rows = ROWS_PER_CORE * k;
        let x: Vec<f32> = (0..rows * ROW_FLOATS).map(|i| (i % 4096) as f32).collect();
        let mut y = vec![0f32; x.len()];
        let shape = [rows, ROW_FLOATS];
        let mut one = None;
        for workers in [1usize, 2] {
            let engine = engine(ctx, &neff, k, Config::default().workers_per_core(workers))?;
            let mut times = Vec::with_capacity(forwards);
            for i in 0..=forwards {
                let t = std::time::Instant::now();
                engine.forward_into(
                    &[Input::f32(&shape, &x)],
                    &mut [Output::f32(&shape, &mut y)],
                )?;
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            drop(engine);
            if x != y {
                return Err("overlap: identity output differs from its input".into());
            }
            y.fill(0.0);
            let per_forward = median(&mut times);
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
                    "piece_us_at_exec_0": piece0_us,
                    "row_bytes": ROW_FLOATS * F32,
                    "rows": rows,
                    "forwards": forwards,
                    "median_seconds_per_forward": per_forward,
                    "gain_vs_1_worker": gain,
                    "ideal_gain": ideal,
                }),
            );
        }
    }
    let (one, two) = (memcpy_gbps(1), memcpy_gbps(2));
    report.row(
        vec![
            "memcpy".to_owned(),
            "1 / 2 threads".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            format!("{:.2} / {:.2}", one / 1.073_741_824, two / 1.073_741_824),
            format!("{:.2}", two / one),
        ],
        json!({
            "scenario": "overlap_memcpy",
            "gb_per_s_1_thread": one,
            "gb_per_s_2_threads": two,
        }),
    );
    if let Some(gain) = gain_k1 {
        report.target(
            "transfer overlap: 2 vs 1 workers per core, k = 1",
            format!("{gain:.2}x (ideal {ideal:.2}x)"),
            ">= 1.10x",
            gain >= 1.1,
        );
    }
    report.note(
        "With 1 worker a piece costs copies + execution; with 2 the copies of one piece overlap \
         the execution of the other, so the ideal gain is (copies + exec_us) / max(copies, \
         exec_us). Memory bandwidth caps it too: see the memcpy row (aggregate GB/s of 1 and 2 \
         threads copying 4 MiB buffers on this machine).",
    );
    Ok(())
}

/// Aggregate GB/s of `threads` threads each copying a 4 MiB buffer into another, repeatedly.
fn memcpy_gbps(threads: usize) -> f64 {
    const ROUNDS: usize = 100;
    let bytes = ROW_FLOATS * F32;
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(move || {
                let a = vec![1u8; bytes];
                let mut b = vec![0u8; bytes];
                for _ in 0..ROUNDS {
                    b.copy_from_slice(&a);
                    std::hint::black_box(&mut b);
                }
            });
        }
    });
    (threads * ROUNDS * bytes) as f64 / start.elapsed().as_secs_f64() / 1e9
}
