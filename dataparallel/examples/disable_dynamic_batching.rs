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

use std::error::Error;
use std::process::ExitCode;

use dataparallel::{Config, DataParallel, Input};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};

const PIXELS: usize = 3 * 8 * 8;
const CLASSES: usize = 10;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let model = MockModel::new("resnet-like", Op::RowSum { out_features: 10 })
        .input("image", DType::Float32, &[1, 3, 8, 8])
        .output("logits", DType::Float32, &[1, 10])
        .exec_us(200);
    let neff = Neff::from_bytes(model.to_neff_bytes())?;

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
    if outputs[0].shape != [2, CLASSES] {
        return Err(format!("expected [2, {CLASSES}], got {:?}", outputs[0].shape).into());
    }
    let got = outputs[0].to_vec::<f32>().ok_or("output is not float32")?;
    for (r, image) in images.chunks_exact(PIXELS).enumerate() {
        let mut want = [0.0f32; CLASSES];
        for (i, &v) in image.iter().enumerate() {
            want[i % CLASSES] += v;
        }
        if got[r * CLASSES..(r + 1) * CLASSES] != want {
            return Err(format!("batch 2, image {r}: wrong output").into());
        }
    }

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
