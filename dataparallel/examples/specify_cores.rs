//! DataParallel on chosen cores: `device_list("nc:0,nc:1")`.
//!
//! Mirrors `torch-neuronx-dataparallel-example-specify-ncs`: a model compiled for one image
//! runs a batch of 5 on two cores, which splits it into chunks of 3 and 2 rows (divmod, the
//! remainder going to the first chunks).
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example specify_cores
//! ```
//!
//! The model is the mock's `rowsum` op standing in for a classifier (`[1, 3, 8, 8]` ->
//! `[1, 10]`). Exits 1 with the error's message on any failure.

mod common;

use std::error::Error;
use std::process::ExitCode;

use common::PIXELS;
use dataparallel::{Config, DataParallel, Input};
use neuron_rt::Runtime;

const BATCH: usize = 5;

fn main() -> ExitCode {
    common::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    // Compiled for one image: `[1, 3, 8, 8]` -> `[1, 10]`.
    let neff = common::resnet_like()?;

    let runtime = Runtime::init()?;
    // The same as `.device_indices([0, 1])`.
    let engine = DataParallel::new(&runtime, &neff, Config::default().device_list("nc:0,nc:1"))?;
    println!("cores: {}", engine.devices());

    let plan = engine.plan(BATCH)?;
    for chunk in &plan {
        println!(
            "chunk {}: {} rows (from row {}) -> {} (physical {:?})",
            chunk.chunk, chunk.rows, chunk.start, chunk.core, chunk.physical_core
        );
    }
    let sizes: Vec<usize> = plan.iter().map(|c| c.rows).collect();
    if sizes != [3, 2] {
        return Err(format!("expected chunks [3, 2], got {sizes:?}").into());
    }

    let images: Vec<f32> = (0..BATCH * PIXELS).map(|i| (i % 13) as f32 - 6.0).collect();
    let shape = [BATCH, 3, 8, 8];
    let outputs = engine.forward(&[Input::f32(&shape, &images)])?;
    let logits = &outputs[0];
    println!("input {shape:?} -> output {:?}", logits.shape);
    common::check_logits(&images, logits)?;
    for report in engine.core_stats() {
        println!("{}: {} execution(s)", report.core, report.executions);
    }
    println!("check: chunks [3, 2], every row correct");
    Ok(())
}
