//! Scenario 4: concurrent callers. 8 threads share one engine on k = 8 cores (exec_us 500,
//! compiled batch 1), each calling `forward_into` with n = 8 rows in a loop for a fixed time.
//! Throughput against the ideal k / exec_us, and against the mock's own ceiling
//! k / (measured direct time per execution, scenario 0).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use dataparallel::{Config, Input, Output};
use serde_json::json;

use crate::BoxResult;
use crate::common::{Ctx, affine_neff, check_affine, engine, ramp};
use crate::mock::{Ceiling, FEATURES};
use crate::report::Report;

const THREADS: usize = 8;
const EXEC_US: u64 = 500;

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report, ceiling: &Ceiling) -> BoxResult {
    report.section(
        "4. Concurrent callers: 8 threads, k = 8, exec_us 500, compiled batch 1, n = 8 per call",
        &[
            "k",
            "threads",
            "seconds",
            "rows/s",
            "ideal k/exec_us",
            "vs ideal",
            "mock ceiling",
            "vs ceiling",
        ],
    );
    let k = ctx.cores(&[8])[0];
    let seconds = ctx.pick(3.0, 1.0, 0.1);
    let neff = affine_neff(1, FEATURES, EXEC_US)?;
    let engine = engine(ctx, &neff, k, Config::default())?;
    let barrier = Barrier::new(THREADS + 1);
    let stop = Duration::from_secs_f64(seconds);
    let (rows, elapsed) = std::thread::scope(|scope| -> BoxResult<(usize, Duration)> {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let engine = &engine;
                let barrier = &barrier;
                scope.spawn(move || -> Result<usize, String> {
                    let x = ramp(k * FEATURES);
                    let shape = [k, FEATURES];
                    let mut y = vec![0f32; x.len()];
                    barrier.wait();
                    let start = Instant::now();
                    let mut rows = 0;
                    while start.elapsed() < stop {
                        engine
                            .forward_into(
                                &[Input::f32(&shape, &x)],
                                &mut [Output::f32(&shape, &mut y)],
                            )
                            .map_err(|e| e.to_string())?;
                        rows += k;
                    }
                    check_affine(&x, &y, "concurrent").map_err(|e| e.to_string())?;
                    Ok(rows)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut rows = 0;
        for handle in handles {
            rows += handle.join().map_err(|_| "a caller thread panicked")??;
        }
        Ok((rows, start.elapsed()))
    })?;
    drop(engine);
    let throughput = rows as f64 / elapsed.as_secs_f64();
    let ideal = k as f64 * 1e6 / EXEC_US as f64;
    let mock_ceiling = k as f64 * 1e6 / ceiling.measured(EXEC_US);
    let ratio = throughput / ideal;
    report.row(
        vec![
            k.to_string(),
            THREADS.to_string(),
            format!("{:.2}", elapsed.as_secs_f64()),
            format!("{throughput:.0}"),
            format!("{ideal:.0}"),
            format!("{ratio:.3}"),
            format!("{mock_ceiling:.0}"),
            format!("{:.3}", throughput / mock_ceiling),
        ],
        json!({
            "scenario": "concurrent",
            "k": k,
            "threads": THREADS,
            "exec_us": EXEC_US,
            "seconds": elapsed.as_secs_f64(),
            "rows": rows,
            "rows_per_s": throughput,
            "ideal_rows_per_s": ideal,
            "ratio_to_ideal": ratio,
            "mock_ceiling_rows_per_s": mock_ceiling,
            "ratio_to_mock_ceiling": throughput / mock_ceiling,
        }),
    );
    report.target(
        "concurrent callers, throughput / (k / exec_us)",
        format!("{ratio:.3}"),
        ">= 0.90",
        ratio >= 0.9,
    );
    report.ceiling(format!("mock {:.3}", mock_ceiling / ideal));
    report.note(
        "mock ceiling = k / (the mock's measured time per direct execution at exec_us 500, \
         scenario 0): what k cores of this mock deliver with no engine at all.",
    );
    Ok(())
}
