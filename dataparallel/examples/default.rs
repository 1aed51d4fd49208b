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

use std::error::Error;
use std::process::ExitCode;

use dataparallel::{Config, DataParallel, Input};
use neuron_rt::{Neff, Runtime};
use nrt_mock::neff::{DType, MockModel, Op};

const IMAGE: [usize; 3] = [3, 8, 8];
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
    let engine = DataParallel::new(&runtime, &neff, Config::default())?;
    println!(
        "model `{}` replicated on {} cores ({}), {} workers",
        neff.name(),
        engine.devices().len(),
        engine.devices(),
        engine.num_workers()
    );

    let pixels: usize = IMAGE.iter().product();
    let images: Vec<f32> = (0..BATCH * pixels)
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
    if logits.shape != [BATCH, CLASSES] {
        return Err(format!(
            "expected output shape [{BATCH}, {CLASSES}], got {:?}",
            logits.shape
        )
        .into());
    }

    let got = logits.to_vec::<f32>().ok_or("output is not float32")?;
    for (r, image) in images.chunks_exact(pixels).enumerate() {
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
    println!("first row: {:?}", &got[..CLASSES]);
    println!("check: all {BATCH} rows equal the model computed on one core");
    Ok(())
}
