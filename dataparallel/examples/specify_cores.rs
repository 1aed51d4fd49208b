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

use std::error::Error;
use std::process::ExitCode;

use dataparallel::{Config, DataParallel, Input};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};

const PIXELS: usize = 3 * 8 * 8;
const CLASSES: usize = 10;
const BATCH: usize = 5;

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
    if logits.shape != [BATCH, CLASSES] {
        return Err(format!(
            "expected output shape [{BATCH}, {CLASSES}], got {:?}",
            logits.shape
        )
        .into());
    }
    let got = logits.to_vec::<f32>().ok_or("output is not float32")?;
    for (r, image) in images.chunks_exact(PIXELS).enumerate() {
        let mut want = [0.0f32; CLASSES];
        for (i, &v) in image.iter().enumerate() {
            want[i % CLASSES] += v;
        }
        let row = &got[r * CLASSES..(r + 1) * CLASSES];
        if row
            .iter()
            .zip(&want)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!("image {r}: got {row:?}, expected {want:?}").into());
        }
    }
    for report in engine.core_stats() {
        println!("{}: {} execution(s)", report.core, report.executions);
    }
    println!("check: chunks [3, 2], every row correct");
    Ok(())
}
