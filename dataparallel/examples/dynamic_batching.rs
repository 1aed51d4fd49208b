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
        if logits.shape != [batch, CLASSES] {
            return Err(format!(
                "batch {batch}: expected [{batch}, {CLASSES}], got {:?}",
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
                return Err(
                    format!("batch {batch}, image {r}: got {row:?}, expected {want:?}").into(),
                );
            }
        }
    }
    println!("check: every batch size ran on the same engine with correct rows");
    Ok(())
}
