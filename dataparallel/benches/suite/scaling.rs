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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use dataparallel::{Config, DataParallel, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::baselines::{Station, f32_bytes};
use crate::common::{Ctx, Usage, affine_neff, check_affine, engine, ramp};
use crate::mock::FEATURES;
use crate::report::Report;

/// Rows per core per forward.
const ROWS_PER_CORE: usize = 4;

/// The timed forwards of each variant are split into this many blocks, and the variants take
/// turns block by block, so a slow phase of this shared VM hits all of them alike.
const BLOCKS: usize = 8;

/// One engine on k cores with its input and output buffers.
struct EngineRun {
    engine: DataParallel,
    x: Vec<f32>,
    y: Vec<f32>,
}

impl EngineRun {
    fn new(ctx: &Ctx, neff: &neuron_rt::Neff, k: usize, workers: usize) -> BoxResult<EngineRun> {
        let engine = engine(ctx, neff, k, Config::default().workers_per_core(workers))?;
        let x = ramp(ROWS_PER_CORE * k * FEATURES);
        let y = vec![0f32; x.len()];
        Ok(EngineRun { engine, x, y })
    }

    fn forward(&mut self) -> BoxResult {
        let shape = [self.x.len() / FEATURES, FEATURES];
        self.engine.forward_into(
            &[Input::f32(&shape, &self.x)],
            &mut [Output::f32(&shape, &mut self.y)],
        )?;
        Ok(())
    }

    fn check(&self) -> BoxResult {
        check_affine(&self.x, &self.y, "scaling")
    }
}

/// What the harness's threads and the thread driving them share.
struct Shared {
    /// Forwards released so far.
    released: AtomicUsize,
    /// Threads still running the current forward.
    running: AtomicUsize,
    stop: AtomicBool,
    failed: AtomicBool,
    /// The thread that drives the forwards (the one that built the harness).
    caller: Thread,
}

/// The engine-free harness (see the module docs): one parked thread per core.
struct Harness {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    k: usize,
}

impl Harness {
    fn new(ctx: &Ctx, neff: &neuron_rt::Neff, k: usize) -> BoxResult<Harness> {
        let stations = (0..k)
            .map(|core| Station::new(ctx, neff, core))
            .collect::<BoxResult<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            released: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            caller: std::thread::current(),
        });
        let threads = stations
            .into_iter()
            .map(|station| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || harness_thread(station, &shared))
            })
            .collect();
        Ok(Harness { shared, threads, k })
    }

    /// One forward: release every thread, wait for the last one. Only from the thread that
    /// built the harness (the one the last thread unparks).
    fn forward(&mut self) -> BoxResult {
        let shared = &self.shared;
        // `running` is set before the release that the threads acquire.
        shared.running.store(self.k, Ordering::Relaxed);
        shared.released.fetch_add(1, Ordering::Release);
        for thread in &self.threads {
            thread.thread().unpark();
        }
        while shared.running.load(Ordering::Acquire) != 0 {
            std::thread::park();
        }
        if shared.failed.load(Ordering::Relaxed) {
            return Err("scaling harness: a direct execution failed".into());
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn harness_thread(mut station: Station, shared: &Shared) {
    let x = vec![0u8; f32_bytes(1, FEATURES)];
    let mut y = vec![0u8; x.len()];
    let mut done = 0;
    loop {
        let released = loop {
            let released = shared.released.load(Ordering::Acquire);
            if released != done || shared.stop.load(Ordering::Acquire) {
                break released;
            }
            std::thread::park();
        };
        if released == done {
            return; // stopped
        }
        done = released;
        for _ in 0..ROWS_PER_CORE {
            if station.run(&x, &mut y).is_err() {
                shared.failed.store(true, Ordering::Relaxed);
            }
        }
        if shared.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.caller.unpark();
        }
    }
}

/// One k's measurements, per forward.
struct Measured {
    /// Seconds: the default engine (2 workers per core), 1 worker per core, the harness.
    seconds: [f64; 3],
    /// The default engine's process CPU seconds and context switches.
    cpu: f64,
    switches: f64,
    /// Timed forwards of each variant.
    forwards: usize,
}

/// Runs the default engine, the 1-worker engine and the harness on k cores, taking turns in
/// blocks.
fn measure(ctx: &Ctx, neff: &neuron_rt::Neff, k: usize, forwards: usize) -> BoxResult<Measured> {
    let mut two = EngineRun::new(ctx, neff, k, 2)?;
    let mut one = EngineRun::new(ctx, neff, k, 1)?;
    let mut harness = Harness::new(ctx, neff, k)?;
    let blocks = BLOCKS.min(forwards);
    let per_block = forwards.div_ceil(blocks);
    let mut wall = [Duration::ZERO; 3];
    let mut usage = Usage {
        cpu: Duration::ZERO,
        switches: 0,
    };
    let mut counted = 0;
    for block in 0..=blocks {
        let timed = block > 0; // block 0 warms every variant up
        let n = if timed { per_block } else { per_block.min(10) };
        for (variant, wall) in wall.iter_mut().enumerate() {
            let before = Usage::now();
            let start = Instant::now();
            for _ in 0..n {
                match variant {
                    0 => two.forward()?,
                    1 => one.forward()?,
                    _ => harness.forward()?,
                }
            }
            if timed {
                *wall += start.elapsed();
                if variant == 0 {
                    let used = Usage::now().since(&before);
                    usage.cpu += used.cpu;
                    usage.switches += used.switches;
                }
            }
        }
        if timed {
            counted += n;
        }
    }
    two.check()?;
    one.check()?;
    let n = counted as f64;
    Ok(Measured {
        seconds: wall.map(|w| w.as_secs_f64() / n),
        cpu: usage.cpu.as_secs_f64() / n,
        switches: usage.switches as f64 / n,
        forwards: counted,
    })
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
        let wanted = ctx.pick(full, full / 4, 2);
        let neff = affine_neff(1, FEATURES, exec_us)?;
        let mut base: Option<(f64, f64, f64)> = None;
        let mut last = (0, 0.0, 0.0);
        for &k in &ks {
            let rows = ROWS_PER_CORE * k;
            let Measured {
                seconds: [two, one, harness],
                cpu,
                switches,
                forwards,
            } = measure(ctx, &neff, k, wanted)?;
            // Per-forward time at k = 1 over per-forward time at k (same work per core).
            let (b2, b1, bh) = *base.get_or_insert((two, one, harness));
            let (e2, e1, eh) = (b2 / two, b1 / one, bh / harness);
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
         CPUs busy (process CPU time / wall time, of 2) and switches are the default engine's. \
         The three variants take turns in blocks of forwards, so load drift hits all alike.",
    );
    Ok(())
}
