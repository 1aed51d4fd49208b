//! Dynamic batching: one engine, any batch size, no recompilation.
//!
//! Mirrors `torch-neuronx-dataparallel-example-dynamic-batching`: a model compiled for one
//! image runs batches of 2, 3, 4, 5 and 6 with the same engine. Each chunk runs as pieces of
//! the compiled batch; the last piece of a chunk is zero-padded and its outputs trimmed.
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example dynamic_batching
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

fn main() -> ExitCode {
    common::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    // Compiled for one image: `[1, 3, 8, 8]` -> `[1, 10]`.
    let neff = common::resnet_like()?;

    let runtime = Runtime::init()?;
    let engine = DataParallel::new(&runtime, &neff, Config::default())?;
    println!("{} cores, dynamic batching on", engine.devices().len());

    for batch in 2..=6usize {
        let images: Vec<f32> = (0..batch * PIXELS)
            .map(|i| ((i * 7 + batch) % 23) as f32 * 0.25)
            .collect();
        let shape = [batch, 3, 8, 8];
        let plan = engine.plan(batch)?;
        let outputs = engine.forward(&[Input::f32(&shape, &images)])?;
        let logits = &outputs[0];
        let chunks: Vec<String> = plan
            .iter()
            .map(|c| format!("{}x{}", c.rows, c.core))
            .collect();
        println!(
            "batch {batch}: chunks [{}] -> output {:?}",
            chunks.join(", "),
            logits.shape
        );
        common::check_logits(&images, logits).map_err(|e| format!("batch {batch}: {e}"))?;
    }
    println!("check: every batch size ran on the same engine with correct rows");
    Ok(())
}
