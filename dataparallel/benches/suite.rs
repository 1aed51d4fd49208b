//! The engine's benchmark suite against the mock libnrt (`cargo xtask bench`).
//!
//! One process, one runtime (libnrt allows one per process); each scenario builds its engines
//! and baselines, measures, and drops them before the next. The mock sleeps for its simulated
//! device time, so on a small machine the CPU that is left is the engine's.
//!
//! | scenario | module |
//! |---|---|
//! | 0. the mock's own cost per execution (the ceiling) | `mock` |
//! | 1. scaling over cores | `scaling` |
//! | 2. overhead vs direct libnrt calls and a rayon alternative | `overhead` |
//! | 3. bytes moved and heap allocations per forward | `copies` |
//! | 4. concurrent callers | `concurrent` |
//! | 5. transfer overlap, 1 vs 2 workers per core | `overlap` |
//! | 6. serving: open-loop single-row requests, the batcher packed and split vs one forward per request | `serving` |
//!
//! Arguments (after `--`): `--quick` (a reduced set), `--only overhead,copies` (the mock ceiling and these scenarios, for
//! profiling), `--json PATH` (where to write the
//! results; default `target/bench/results.json`). `cargo bench` adds `--bench`; without it
//! (`cargo test --all-targets`) the suite runs a smoke pass that only checks that every
//! scenario still works, and skips itself when `NRT_DYLIB_PATH` is unset.
//!
//! Environment: `NRT_DYLIB_PATH` (the mock, built in release for real numbers),
//! `NRT_MOCK_TOTAL_CORES=24`, a private `NRT_MOCK_LOCK_DIR`; `cargo xtask bench` sets all three.

// The modules live in benches/suite/ (a crate root looks beside itself by default).
#[path = "suite/alloc.rs"]
mod alloc;
#[path = "suite/baselines.rs"]
mod baselines;
#[path = "suite/common.rs"]
mod common;
#[path = "suite/concurrent.rs"]
mod concurrent;
#[path = "suite/copies.rs"]
mod copies;
#[path = "suite/machine.rs"]
mod machine;
#[path = "suite/mock.rs"]
mod mock;
#[path = "suite/overhead.rs"]
mod overhead;
#[path = "suite/overlap.rs"]
mod overlap;
#[path = "suite/report.rs"]
mod report;
#[path = "suite/scaling.rs"]
mod scaling;
#[path = "suite/serving.rs"]
mod serving;
#[path = "suite/tables.rs"]
mod tables;

use std::path::PathBuf;
use std::time::Instant;

use common::{Ctx, Mode};
use report::Report;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

type BoxResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    mode: Mode,
    json: PathBuf,
    /// Scenario names to run (all when empty), for profiling one at a time.
    only: Vec<String>,
}

/// The scenarios `--only` can pick (the mock's own ceiling always runs).
const SCENARIOS: &[&str] = &[
    "mock",
    "scaling",
    "overhead",
    "copies",
    "concurrent",
    "overlap",
    "serving",
];

fn parse_args() -> BoxResult<Args> {
    let mut bench = false;
    let mut quick = false;
    let mut json = None;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--json" => {
                json = Some(PathBuf::from(
                    args.next().ok_or("--json needs a path argument")?,
                ));
            }
            "--only" => {
                let names = args
                    .next()
                    .ok_or("--only needs a list, e.g. scaling,overhead")?;
                for name in names.split(',') {
                    if !SCENARIOS.contains(&name) {
                        return Err(format!(
                            "--only: no scenario `{name}`; the scenarios are {}",
                            SCENARIOS.join(", ")
                        )
                        .into());
                    }
                    only.push(name.to_owned());
                }
            }
            // libtest-style flags cargo may pass (e.g. a filter from `cargo test NAME`).
            _ => {}
        }
    }
    let mode = match (bench, quick) {
        (false, _) => Mode::Smoke,
        (true, true) => Mode::Quick,
        (true, false) => Mode::Full,
    };
    let json = json.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/results.json")
    });
    Ok(Args { mode, json, only })
}

fn main() -> BoxResult {
    let args = parse_args()?;
    if args.mode == Mode::Smoke && std::env::var_os("NRT_DYLIB_PATH").is_none() {
        println!("suite: NRT_DYLIB_PATH is unset; skipped (run `cargo xtask bench`)");
        return Ok(());
    }
    let started = Instant::now();
    let runtime = neuron_rt::Runtime::init()?;
    let mut ctx = Ctx::new(runtime, args.mode);
    let mut report = Report::new(&ctx);
    eprintln!(
        "suite: {:?} mode, {} visible cores, mock at {}",
        ctx.mode,
        ctx.runtime.visible_cores(),
        ctx.runtime.library_path().display()
    );

    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let ceiling = mock::run(&mut ctx, &mut report)?;
    if wanted("scaling") {
        scaling::run(&mut ctx, &mut report)?;
    }
    if wanted("overhead") {
        overhead::run(&mut ctx, &mut report)?;
    }
    if wanted("copies") {
        copies::run(&mut ctx, &mut report)?;
    }
    if wanted("concurrent") {
        concurrent::run(&mut ctx, &mut report, &ceiling)?;
    }
    if wanted("overlap") {
        overlap::run(&mut ctx, &mut report)?;
    }
    if wanted("serving") {
        serving::run(&mut ctx, &mut report)?;
    }

    report.set_elapsed(started.elapsed());
    print!("{}", report.table());
    if ctx.mode == Mode::Smoke {
        println!("suite: smoke pass ok (numbers are not meaningful in this mode)");
        return Ok(());
    }
    report.write_json(&args.json)?;
    let shown = std::path::absolute(&args.json).unwrap_or(args.json);
    println!("results: {}", shown.display());
    Ok(())
}
