//! DataParallel with the default cores: every NeuronCore the process sees.
//!
//! Mirrors `torch-neuronx-dataparallel-example-default`: a "ResNet-like" model compiled for one
//! image (`[1, 3, 8, 8]` in, `[1, 10]` out) runs a batch of 5; dynamic batching cuts it into
//! chunks over the cores and gathers a `[5, 10]` output.
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example default
//! ```
//!
//! The mock cannot run a real ResNet, so the model is the mock's `rowsum` op, which like a
//! classifier head maps each image to 10 numbers: `out[r][j]` is the sum of image r's
//! flattened pixels `i` with `i % 10 == j`, accumulated in f32. Exits 1 with the error's
//! message on any failure.

mod common;

use std::error::Error;
use std::process::ExitCode;

use common::{CLASSES, IMAGE, PIXELS};
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
    let engine = DataParallel::new(&runtime, &neff, Config::default())?;
    println!(
        "model `{}` replicated on {} cores ({}), {} workers",
        neff.name(),
        engine.devices().len(),
        engine.devices(),
        engine.num_workers()
    );

    let images: Vec<f32> = (0..BATCH * PIXELS)
        .map(|i| (i % 97) as f32 * 0.125)
        .collect();
    let shape = [BATCH, IMAGE[0], IMAGE[1], IMAGE[2]];
    for chunk in engine.plan(BATCH)? {
        println!(
            "chunk {}: rows {}..{} -> {} (physical {:?}), {} piece(s), {} pad row(s)",
            chunk.chunk,
            chunk.start,
            chunk.start + chunk.rows,
            chunk.core,
            chunk.physical_core,
            chunk.pieces,
            chunk.pad_rows
        );
    }
    let outputs = engine.forward(&[Input::f32(&shape, &images)])?;
    let logits = &outputs[0];
    println!(
        "input {shape:?} -> output `{}` {:?}",
        logits.name, logits.shape
    );
    let got = common::check_logits(&images, logits)?;
    println!("first row: {:?}", &got[..CLASSES]);
    println!("check: all {BATCH} rows equal the model computed on one core");
    Ok(())
}
