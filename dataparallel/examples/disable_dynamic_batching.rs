//! Dynamic batching off: every batch must be exactly cores x compiled batch.
//!
//! Mirrors `torch-neuronx-dataparallel-example-disable-dynamic-batching`: a model compiled
//! for one image on two cores, with `disable_dynamic_batching()`. A batch of 2 runs (one image
//! per core); a batch of 4 is refused before anything reaches a core, with an error that
//! states the rule. The example prints that error and carries on.
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example disable_dynamic_batching
//! ```
//!
//! The model is the mock's `rowsum` op standing in for a classifier (`[1, 3, 8, 8]` ->
//! `[1, 10]`). Exits 1 with the error's message on any unexpected failure.

mod common;

use std::error::Error;
use std::process::ExitCode;

use common::PIXELS;
use dataparallel::{Config, DataParallel, Input};
use neuron_rt::Runtime;

fn main() -> ExitCode {
    common::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    // Compiled for one image: `[1, 3, 8, 8]` -> `[1, 10]`.
    let neff = common::resnet_like()?;

    let runtime = Runtime::init()?;
    let engine = DataParallel::new(&runtime, &neff, Config::default().device_list("nc:0,nc:1"))?;
    engine.disable_dynamic_batching();
    println!(
        "cores {}, dynamic batching {}",
        engine.devices(),
        if engine.dynamic_batching() {
            "on"
        } else {
            "off"
        }
    );

    // 2 = 2 cores x compiled batch 1: one image per core.
    let images: Vec<f32> = (0..2 * PIXELS).map(|i| (i % 5) as f32).collect();
    let shape = [2, 3, 8, 8];
    for chunk in engine.plan(2)? {
        println!(
            "batch 2: chunk {} ({} row) -> {}",
            chunk.chunk, chunk.rows, chunk.core
        );
    }
    let outputs = engine.forward(&[Input::f32(&shape, &images)])?;
    println!("batch 2: output {:?}", outputs[0].shape);
    common::check_logits(&images, &outputs[0]).map_err(|e| format!("batch 2: {e}"))?;

    // 4 rows on 2 cores of a batch-1 model: refused, with the rule in the message.
    let images = vec![0.5f32; 4 * PIXELS];
    let shape = [4, 3, 8, 8];
    match engine.forward(&[Input::f32(&shape, &images)]) {
        Ok(outputs) => {
            return Err(format!(
                "batch 4 should fail with dynamic batching off, got output {:?}",
                outputs[0].shape
            )
            .into());
        }
        Err(dataparallel::Error::Plan(error)) => println!("batch 4: refused: {error}"),
        Err(other) => return Err(format!("batch 4: unexpected error: {other}").into()),
    }
    println!("check: batch 2 ran, batch 4 was refused before any device call");
    Ok(())
}
