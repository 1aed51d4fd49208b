//! DataParallel along a dimension other than 0: `dim(2)`.
//!
//! Mirrors `torch-neuronx-dataparallel-example-dim-neq-zero`: a model traced on
//! `[1, 3, 8, 8]` runs an input of `[1, 3, 16, 8]` on two cores; the input is split along
//! dim 2 into two `[1, 3, 8, 8]` chunks, one per core, and the outputs are concatenated along
//! dim 2 again. Dynamic batching needs dim 0, so it is switched off (logged at info level),
//! and the rows on dim 2 must be exactly cores x 8.
//!
//! ```text
//! NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -1) cargo run -p dataparallel --example dim_nonzero
//! ```
//!
//! The original model is `Conv2d(3, 3, 3)` followed by `+ 1`, which shrinks each chunk to
//! `[1, 3, 6, 6]`. The mock cannot run a convolution, so here the model is only the `+ 1`
//! (the mock's `affine` op with scale 1, bias 1), which keeps the shape: the output is
//! `[1, 3, 16, 8]`. Exits 1 with the error's message on any failure.

mod common;

use std::error::Error;
use std::process::ExitCode;

use dataparallel::{Config, DataParallel, Input};
use neuron_rt::Runtime;
use nrt_mock::neff::{DType, MockModel, Op};

fn main() -> ExitCode {
    common::exit_code(run())
}

fn run() -> Result<(), Box<dyn Error>> {
    let model = MockModel::new(
        "plus-one",
        Op::Affine {
            scale: 1.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[1, 3, 8, 8])
    .output("y", DType::Float32, &[1, 3, 8, 8])
    .exec_us(200);
    let neff = common::mock_neff(&model)?;

    let runtime = Runtime::init()?;
    let engine = DataParallel::new(
        &runtime,
        &neff,
        Config::default().device_list("nc:0,nc:1").dim(2),
    )?;
    println!(
        "cores {}, dim {}, dynamic batching {}",
        engine.devices(),
        engine.dim(),
        if engine.dynamic_batching() {
            "on"
        } else {
            "off"
        }
    );

    let shape = [1, 3, 16, 8];
    let x: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| i as f32 * 0.5)
        .collect();
    for chunk in engine.plan(shape[2])? {
        println!(
            "chunk {}: dim-2 rows {}..{} -> {} (physical {:?})",
            chunk.chunk,
            chunk.start,
            chunk.start + chunk.rows,
            chunk.core,
            chunk.physical_core
        );
    }
    let outputs = engine.forward(&[Input::f32(&shape, &x)])?;
    let y = &outputs[0];
    println!("input {shape:?} -> output {:?}", y.shape);
    if y.shape != shape {
        return Err(format!("expected output shape {shape:?}, got {:?}", y.shape).into());
    }
    let got = y.to_vec::<f32>().ok_or("output is not float32")?;
    if let Some(i) = x
        .iter()
        .zip(&got)
        .position(|(a, b)| (a + 1.0).to_bits() != b.to_bits())
    {
        return Err(format!("element {i}: got {}, expected {}", got[i], x[i] + 1.0).into());
    }
    println!("check: every element equals input + 1, in place along dim 2");
    Ok(())
}
