//! Scenario 2: overhead at zero device time. Compiled batch 1, n = k rows of 16 f32 (one
//! piece per core), exec_us 0. Median latency of one forward for the engine (`forward_into`
//! into a caller buffer, and the allocating `forward`), the direct sequential libnrt calls,
//! and the rayon alternative. The variants take turns call by call, so load drift hits all
//! alike.

use std::time::Instant;

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::baselines::{Direct, RayonAlt};
use crate::common::{Ctx, Usage, affine_neff, check_affine, engine, median, percentile, ramp, us};
use crate::mock::FEATURES;
use crate::report::Report;

/// Engine forward_into, engine forward, engine with one worker per CPU, direct, rayon.
const VARIANTS: usize = 5;
/// Calls per block.
const BLOCK: usize = 100;
/// Pause between blocks: long enough for rayon's idle threads to fall asleep.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(3);

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    report.section(
        "2. Overhead: exec_us 0, compiled batch 1, n = k rows of 64 B; median (p90) µs per forward",
        &[
            "k",
            "calls",
            "engine forward_into",
            "engine forward",
            "engine, num_workers = CPUs",
            "direct (sequential)",
            "rayon alternative",
            "engine / rayon",
            "CPU µs/call engine / rayon",
            "switches/call engine / rayon",
        ],
    );
    let ks = ctx.cores(ctx.pick(&[1, 8, 24][..], &[1, 8, 24][..], &[1, 2][..]));
    let iterations = ctx.pick(2000, 400, 5);
    let neff = affine_neff(1, FEATURES, 0)?;
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let mut all_beat = true;
    for &k in &ks {
        let engine = engine(ctx, &neff, k, Config::default())?;
        let few = crate::common::engine(ctx, &neff, k, Config::default().num_workers(cpus))?;
        let mut direct = Direct::new(ctx, &neff, k)?;
        let mut rayon = RayonAlt::new(ctx, &neff, k)?;
        let x = ramp(k * FEATURES);
        let shape = [k, FEATURES];
        let mut y = vec![0f32; x.len()];
        let mut usage = [Usage {
            cpu: std::time::Duration::ZERO,
            switches: 0,
        }; VARIANTS];
        let mut samples: [Vec<f64>; VARIANTS] =
            std::array::from_fn(|_| Vec::with_capacity(iterations));
        // Each variant runs in blocks of back-to-back calls (its steady state: rayon's threads
        // spin between calls, the engine's workers park), the variants taking turns block by
        // block with a pause between blocks, so one variant's spinning threads never steal
        // the CPUs of another's measurement and load drift hits all alike.
        let block = iterations.min(BLOCK);
        let rounds = iterations.div_ceil(block);
        for round in 0..=rounds {
            let timed = round > 0; // round 0 warms up
            for (variant, samples) in samples.iter_mut().enumerate() {
                std::thread::sleep(PAUSE);
                let before = Usage::now();
                for _ in 0..block {
                    let t = Instant::now();
                    match variant {
                        0 => engine.forward_into(
                            &[Input::f32(&shape, &x)],
                            &mut [Output::f32(&shape, &mut y)],
                        )?,
                        1 => drop(engine.forward(&[Input::f32(&shape, &x)])?),
                        2 => few.forward_into(
                            &[Input::f32(&shape, &x)],
                            &mut [Output::f32(&shape, &mut y)],
                        )?,
                        3 => direct.forward_into(
                            bytemuck::cast_slice(&x),
                            bytemuck::cast_slice_mut(&mut y),
                        )?,
                        _ => {
                            let out = rayon.forward(&x)?;
                            if !timed {
                                check_affine(&x, &out, "rayon alternative")?;
                            }
                        }
                    }
                    let elapsed = us(t.elapsed());
                    if timed && samples.len() < iterations {
                        samples.push(elapsed);
                    }
                }
                if timed {
                    let used = Usage::now().since(&before);
                    usage[variant].cpu += used.cpu;
                    usage[variant].switches += used.switches;
                }
            }
        }
        check_affine(&x, &y, "overhead")?;
        let stats: Vec<(f64, f64)> = samples
            .iter_mut()
            .map(|s| {
                let m = median(s);
                (m, percentile(s, 0.9))
            })
            .collect();
        let (me, mr) = (stats[0].0, stats[4].0);
        all_beat &= me < mr;
        let mut cells = vec![k.to_string(), iterations.to_string()];
        cells.extend(stats.iter().map(|(m, p)| format!("{m:.1} ({p:.1})")));
        cells.push(format!("{:.2}", me / mr));
        let calls = (rounds * block) as f64;
        let per_call = |u: &Usage| (us(u.cpu) / calls, u.switches as f64 / calls);
        cells.push(format!(
            "{:.1} / {:.1}",
            per_call(&usage[0]).0,
            per_call(&usage[4]).0
        ));
        cells.push(format!(
            "{:.1} / {:.1}",
            per_call(&usage[0]).1,
            per_call(&usage[4]).1
        ));
        let names = [
            "engine_forward_into",
            "engine_forward",
            "engine_num_workers_cpus",
            "direct",
            "rayon",
        ];
        let medians: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&stats)
            .map(|(n, (m, _))| ((*n).to_owned(), json!(m)))
            .collect();
        let p90s: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(&stats)
            .map(|(n, (_, p))| ((*n).to_owned(), json!(p)))
            .collect();
        report.row(
            cells,
            json!({
                "scenario": "overhead",
                "k": k,
                "calls": iterations,
                "engine_num_workers_cpus": cpus,
                "median_us": medians,
                "p90_us": p90s,
                "cpu_us_per_call": names.iter().zip(&usage).map(|(n, u)| ((*n).to_owned(), json!(per_call(u).0))).collect::<serde_json::Map<_, _>>(),
                "context_switches_per_call": names.iter().zip(&usage).map(|(n, u)| ((*n).to_owned(), json!(per_call(u).1))).collect::<serde_json::Map<_, _>>(),
            }),
        );
    }
    report.target(
        "engine beats the rayon alternative at every k (exec_us 0, median)",
        if all_beat { "yes" } else { "no" }.to_owned(),
        "yes",
        all_beat,
    );
    report.note(
        "rayon runs on its global pool (one thread per CPU, i.e. 2 here); the engine on its \
         default 2 workers per core.",
    );
    Ok(())
}
