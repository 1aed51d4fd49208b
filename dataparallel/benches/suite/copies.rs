//! Scenario 3: copies and allocations. Bytes the mock counted as written, read, zeroed and
//! copied per forward against the payload (the caller's input and output bytes), and heap
//! allocations per `forward_into` (the counting global allocator of this binary: engine and
//! neuron-rt code on every thread; the mock's own allocations are not ours and not counted).

use dataparallel::{Config, Input, Output};
use nrt_mock::control;
use serde_json::json;

use crate::BoxResult;
use crate::alloc::allocations;
use crate::common::{Ctx, F32, affine_neff, check_affine, engine, ramp};
use crate::mock::FEATURES;
use crate::report::Report;

struct Case {
    name: &'static str,
    k: usize,
    batch: usize,
    rows: usize,
    attach: bool,
}

pub(crate) fn run(ctx: &mut Ctx, report: &mut Report) -> BoxResult {
    report.section(
        "3. Copies and allocations per forward_into (affine, 64 B rows, exec_us 0)",
        &[
            "case",
            "payload in B",
            "written B",
            "payload out B",
            "read B",
            "memset B",
            "copied B",
            "allocations",
        ],
    );
    let visible = ctx.runtime.visible_cores() as usize;
    let cases = [
        Case {
            name: "k=8, batch 4, n=32 (even)",
            k: 8,
            batch: 4,
            rows: 32,
            attach: false,
        },
        Case {
            name: "k=8, batch 4, n=30 (2 pad rows)",
            k: 8,
            batch: 4,
            rows: 30,
            attach: false,
        },
        Case {
            name: "k=24, batch 1, n=96 (scaling shape)",
            k: 24,
            batch: 1,
            rows: 96,
            attach: false,
        },
        Case {
            name: "k=8, batch 4, n=32, attach mode",
            k: 8,
            batch: 4,
            rows: 32,
            attach: true,
        },
    ];
    let forwards = ctx.pick(200, 50, 3);
    let mut exact = true;
    let mut zero_allocs = true;
    // Open the mock's control exports before measuring (opening allocates).
    control::reset_counters();
    control::counters()?;
    for case in cases.iter().filter(|c| c.k <= visible) {
        let neff = affine_neff(case.batch, FEATURES, 0)?;
        let engine = engine(ctx, &neff, case.k, Config::default().attach(case.attach))?;
        let x = ramp(case.rows * FEATURES);
        let shape = [case.rows, FEATURES];
        let mut y = vec![0f32; x.len()];
        let inputs = [Input::f32(&shape, &x)];
        for _ in 0..10 {
            engine.forward_into(&inputs, &mut [Output::f32(&shape, &mut y)])?;
        }
        control::reset_counters();
        let before = allocations();
        for _ in 0..forwards {
            engine.forward_into(&inputs, &mut [Output::f32(&shape, &mut y)])?;
        }
        let allocs = allocations() - before;
        let counters = control::counters()?;
        check_affine(&x, &y, case.name)?;
        drop(engine);
        let n = forwards as u64;
        let payload = (case.rows * FEATURES * F32) as u64;
        let per = |total: u64| total as f64 / n as f64;
        let allocs_per = per(allocs);
        if !case.attach {
            exact &= counters.bytes_written == payload * n && counters.bytes_read == payload * n;
            zero_allocs &= allocs == 0;
        }
        report.row(
            vec![
                case.name.to_owned(),
                payload.to_string(),
                format!("{}", per(counters.bytes_written)),
                payload.to_string(),
                format!("{}", per(counters.bytes_read)),
                format!("{}", per(counters.bytes_memset)),
                format!("{}", per(counters.bytes_copied)),
                format!("{allocs_per}"),
            ],
            json!({
                "scenario": "copies",
                "case": case.name,
                "k": case.k,
                "batch": case.batch,
                "rows": case.rows,
                "attach": case.attach,
                "forwards": forwards,
                "payload_in_bytes": payload,
                "payload_out_bytes": payload,
                "written_bytes_per_forward": per(counters.bytes_written),
                "read_bytes_per_forward": per(counters.bytes_read),
                "memset_bytes_per_forward": per(counters.bytes_memset),
                "copied_bytes_per_forward": per(counters.bytes_copied),
                "allocations_per_forward": allocs_per,
            }),
        );
    }
    report.target(
        "bytes written and read per forward = payload (copy mode)",
        if exact { "exact" } else { "differs" }.to_owned(),
        "exact",
        exact,
    );
    report.target(
        "heap allocations per forward_into (copy mode)",
        if zero_allocs { "0" } else { "> 0" }.to_owned(),
        "0",
        zero_allocs,
    );
    report.note(
        "Pad rows are zeroed on the device tensor (memset), never copied from the host. Attach \
         mode moves no bytes but creates tensor handles per piece (documented to allocate).",
    );
    Ok(())
}
