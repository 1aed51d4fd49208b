//! Scenario 1: scaling. Compiled batch 1, batch n = 4k on k cores (4 pieces per core), at
//! exec_us 2000 and 200. Efficiency = throughput(k) / (k × throughput(1)).
//!
//! Beside the engine (default 2 workers per core, and 1 worker per core) the table shows a
//! ceiling that involves no engine at all, the harness: k plain threads, one per core, each
//! owning its model and tensor sets and parked between forwards. A forward unparks each
//! thread once; each runs its 4 pieces with direct calls and counts down, and the last one
//! unparks the caller. That is the least any thread-per-core design has to do per forward
//! (one wake-up per core, one for the caller), on this mock and this machine. (An earlier
//! harness released its threads with `std::sync::Barrier`, whose wake-all herd on one mutex
//! made it a much lower, and so less useful, ceiling.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Instant;

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::baselines::{Station, f32_bytes};
use crate::common::{Ctx, Usage, affine_neff, check_affine, engine, ramp, timed};
use crate::mock::FEATURES;
use crate::report::Report;

/// Rows per core per forward.
const ROWS_PER_CORE: usize = 4;

/// Seconds per forward of the engine, and the process's usage over the timed forwards.
fn engine_run(
    ctx: &Ctx,
    neff: &neuron_rt::Neff,
    k: usize,
    workers: usize,
    forwards: usize,
) -> BoxResult<(f64, Usage)> {
    let rows = ROWS_PER_CORE * k;
    let engine = engine(ctx, neff, k, Config::default().workers_per_core(workers))?;
    let x = ramp(rows * FEATURES);
    let mut y = vec![0f32; x.len()];
    let shape = [rows, FEATURES];
    let mut forward = || -> BoxResult {
        engine.forward_into(
            &[Input::f32(&shape, &x)],
            &mut [Output::f32(&shape, &mut y)],
        )?;
        Ok(())
    };
    for _ in 0..forwards.min(10) {
        forward()?;
    }
    let usage = Usage::now();
    let wall = timed(0, forwards, forward)?;
    let used = Usage::now().since(&usage);
    check_affine(&x, &y, "scaling")?;
    Ok((wall.as_secs_f64() / forwards as f64, used))
}

/// Seconds per forward of the engine-free harness (see the module docs).
fn harness_run(ctx: &Ctx, neff: &neuron_rt::Neff, k: usize, forwards: usize) -> BoxResult<f64> {
    let stations = (0..k)
        .map(|core| Station::new(ctx, neff, core))
        .collect::<BoxResult<Vec<_>>>()?;
    let warmup = forwards.min(10);
    let rounds = warmup + forwards;
    // Forwards released so far, and threads still running the current one.
    let released = AtomicUsize::new(0);
    let running = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let caller = std::thread::current();
    let seconds = std::thread::scope(|scope| {
        let threads: Vec<Thread> = stations
            .into_iter()
            .map(|mut station| {
                let (released, running, failed, caller) =
                    (&released, &running, &failed, caller.clone());
                scope
                    .spawn(move || {
                        let x = vec![0u8; f32_bytes(1, FEATURES)];
                        let mut y = vec![0u8; x.len()];
                        for round in 0..rounds {
                            while released.load(Ordering::Acquire) == round {
                                std::thread::park();
                            }
                            for _ in 0..ROWS_PER_CORE {
                                if station.run(&x, &mut y).is_err() {
                                    failed.store(true, Ordering::Relaxed);
                                }
                            }
                            if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                                caller.unpark();
                            }
                        }
                    })
                    .thread()
                    .clone()
            })
            .collect();
        let mut t0 = Instant::now();
        for round in 0..rounds {
            if round == warmup {
                t0 = Instant::now();
            }
            // `running` is set before the release that threads acquire.
            running.store(k, Ordering::Relaxed);
            released.store(round + 1, Ordering::Release);
            for thread in &threads {
                thread.unpark();
            }
            while running.load(Ordering::Acquire) != 0 {
                std::thread::park();
            }
        }
        t0.elapsed().as_secs_f64() / forwards as f64
    });
    if failed.load(Ordering::Relaxed) {
        return Err("scaling harness: a direct execution failed".into());
    }
    Ok(seconds)
}

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    report.section(
        "1. Scaling: compiled batch 1, n = 4k rows (4 pieces per core)",
        &[
            "exec_us",
            "k",
            "forwards",
            "ms/forward",
            "ideal ms",
            "rows/s",
            "efficiency (2 workers/core, default)",
            "efficiency (1 worker/core)",
            "harness (no engine)",
            "CPUs busy",
            "switches/forward",
        ],
    );
    let ks = ctx.cores(ctx.pick(&[1, 2, 4, 8, 16, 24][..], &[1, 8, 24][..], &[1, 2][..]));
    for (exec_us, full, target) in [(2000u64, 80usize, 0.97), (200, 600, 0.90)] {
        let forwards = ctx.pick(full, full / 4, 2);
        let neff = affine_neff(1, FEATURES, exec_us)?;
        let mut base: Option<(f64, f64, f64)> = None;
        let mut last = (0, 0.0, 0.0);
        for &k in &ks {
            let rows = ROWS_PER_CORE * k;
            let (two, used) = engine_run(ctx, &neff, k, 2, forwards)?;
            let (one, _) = engine_run(ctx, &neff, k, 1, forwards)?;
            let harness = harness_run(ctx, &neff, k, forwards)?;
            // Per-forward time at k = 1 over per-forward time at k (same work per core).
            let (b2, b1, bh) = *base.get_or_insert((two, one, harness));
            let (e2, e1, eh) = (b2 / two, b1 / one, bh / harness);
            let cpu = used.cpu.as_secs_f64() / forwards as f64;
            let switches = used.switches as f64 / forwards as f64;
            last = (k, e2, eh);
            report.row(
                vec![
                    exec_us.to_string(),
                    k.to_string(),
                    forwards.to_string(),
                    format!("{:.3}", two * 1e3),
                    format!("{:.3}", (ROWS_PER_CORE as u64 * exec_us) as f64 / 1e3),
                    format!("{:.0}", rows as f64 / two),
                    format!("{e2:.3}"),
                    format!("{e1:.3}"),
                    format!("{eh:.3}"),
                    format!("{:.2}", cpu / two),
                    format!("{switches:.0}"),
                ],
                json!({
                    "scenario": "scaling",
                    "exec_us": exec_us,
                    "k": k,
                    "rows": rows,
                    "forwards": forwards,
                    "seconds_per_forward": {"engine_2_workers": two, "engine_1_worker": one, "harness": harness},
                    "rows_per_s": rows as f64 / two,
                    "efficiency": e2,
                    "efficiency_1_worker": e1,
                    "efficiency_harness": eh,
                    "cpu_seconds_per_forward": cpu,
                    "context_switches_per_forward": switches,
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
            report.ceiling(format!("harness {:.3}", last.2));
        }
    }
    report.note(
        "efficiency = throughput(k) / (k × throughput(1)), each variant against its own k = 1, \
         so the mock's per-execution overshoot (scenario 0) cancels out. ms/forward, rows/s, \
         CPUs busy (process CPU time / wall time, of 2) and switches are the default engine's.",
    );
    Ok(())
}
