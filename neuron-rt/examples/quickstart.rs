//! Quickstart: initialise libnrt, load a NEFF on nc:0, run it once and print the outputs.
//!
//! ```text
//! cargo run -p neuron-rt --example quickstart [-- MODEL.neff]
//! ```
//!
//! Without an argument it builds a small mock NEFF in memory (`y = x * 2 + 1` on float32
//! `[4, 8]`) and checks the outputs; against the mock set `NRT_DYLIB_PATH` to the path
//! `cargo xtask mock-build` prints (`cargo xtask mock-test` and `cargo xtask demo` do).
//! Exits 1 with the error's message on any failure.

use std::error::Error;
use std::process::ExitCode;

use neuron_rt::{CoreMap, DType, DeviceId, Model, Neff, Runtime, TensorInfo};
use nrt_mock::neff::{DType as MockDType, MockModel, Op};

type BoxError = Box<dyn Error>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    let neff = match std::env::args_os().nth(1) {
        Some(path) => Neff::from_path(path.as_ref())?,
        None => Neff::from_bytes(demo_model().to_neff_bytes())?,
    };

    let runtime = Runtime::init()?;
    println!("library:  {}", runtime.library_path().display());
    println!("version:  {}", runtime.version());
    println!(
        "cores:    {} visible of {} total",
        runtime.visible_cores(),
        runtime.total_cores()
    );
    match runtime.core_map() {
        CoreMap::Known(cores) => println!(
            "core map: nc:0-nc:{} -> physical {cores}",
            runtime.visible_cores().saturating_sub(1)
        ),
        CoreMap::ChosenByRuntime => {
            println!("core map: chosen by the runtime (NEURON_RT_NUM_CORES)")
        }
    }

    let core = DeviceId::new(0);
    let model = Model::load(&runtime, &neff, core)?;
    let physical = runtime
        .physical_core(core)
        .map_or_else(|| "?".to_owned(), |p| p.to_string());
    println!(
        "model:    `{}` on {core} (physical {physical})",
        model.name()
    );
    for info in model.inputs().iter().chain(model.outputs()) {
        println!("  {:?} {}", info.usage, describe(info));
    }

    let mut inputs = model.allocate_inputs()?;
    let mut input_values = Vec::new();
    for (k, info) in model.inputs().iter().enumerate() {
        let tensor = inputs
            .tensor_mut(k)
            .ok_or_else(|| format!("input {k} missing"))?;
        let bytes = input_bytes(info);
        tensor.write(0, &bytes)?;
        input_values.push(bytes);
    }
    let mut outputs = model.allocate_outputs()?;
    model.execute(&inputs, &mut outputs)?;

    let mut output_values = Vec::new();
    for (k, info) in model.outputs().iter().enumerate() {
        let tensor = outputs
            .tensor(k)
            .ok_or_else(|| format!("output {k} missing"))?;
        let mut bytes = vec![0u8; tensor.size()];
        tensor.read(0, &mut bytes)?;
        println!("output {}: {}", info.name, preview(info, &bytes));
        output_values.push(bytes);
    }

    if let Some((scale, bias)) = mock_affine(&neff) {
        check_affine(scale, bias, &input_values, &output_values)?;
        println!("check:    every output equals input * {scale} + {bias}");
    }
    Ok(())
}

/// The model used when no NEFF is given: the mock's affine op.
fn demo_model() -> MockModel {
    MockModel::new(
        "quickstart-affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", MockDType::Float32, &[4, 8])
    .output("y", MockDType::Float32, &[4, 8])
}

/// `(scale, bias)` when `neff` is a mock affine model.
fn mock_affine(neff: &Neff) -> Option<(f32, f32)> {
    if !neff.is_mock() {
        return None;
    }
    match MockModel::from_neff_bytes(neff.as_bytes()).ok()?.op {
        Op::Affine { scale, bias } => Some((scale, bias)),
        _ => None,
    }
}

fn describe(info: &TensorInfo) -> String {
    let dtype = info.dtype.map_or_else(
        || format!("dtype#{}", info.raw_dtype),
        |d| d.name().to_owned(),
    );
    format!(
        "{} {dtype} {:?} ({} bytes)",
        info.name, info.shape, info.size
    )
}

/// Deterministic input bytes: 0.0, 0.5, 1.0, ... for float32, a byte ramp otherwise.
fn input_bytes(info: &TensorInfo) -> Vec<u8> {
    if info.dtype == Some(DType::Float32) && info.size % 4 == 0 {
        let values: Vec<f32> = (0..info.size / 4).map(|i| i as f32 * 0.5).collect();
        bytemuck::cast_slice(&values).to_vec()
    } else {
        (0..info.size).map(|i| i as u8).collect()
    }
}

/// The first few elements of an output.
fn preview(info: &TensorInfo, bytes: &[u8]) -> String {
    const SHOWN: usize = 8;
    let items: Vec<String> = match info.dtype {
        Some(DType::Float32) => bytes
            .chunks_exact(4)
            .take(SHOWN)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
            .collect(),
        Some(DType::Int32) => bytes
            .chunks_exact(4)
            .take(SHOWN)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
            .collect(),
        _ => bytes
            .iter()
            .take(SHOWN)
            .map(|b| format!("{b:#04x}"))
            .collect(),
    };
    let elements = match info.dtype {
        Some(d) => bytes.len() / d.size_bytes().max(1),
        None => bytes.len(),
    };
    let more = if elements > items.len() { ", ..." } else { "" };
    format!("[{}{more}] ({elements} elements)", items.join(", "))
}

fn check_affine(
    scale: f32,
    bias: f32,
    inputs: &[Vec<u8>],
    outputs: &[Vec<u8>],
) -> Result<(), BoxError> {
    if inputs.len() != outputs.len() {
        return Err(format!(
            "affine model has {} inputs but {} outputs",
            inputs.len(),
            outputs.len()
        )
        .into());
    }
    for (k, (x, y)) in inputs.iter().zip(outputs).enumerate() {
        let x: Vec<f32> = x
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let y: Vec<f32> = y
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if x.len() != y.len() {
            return Err(format!("output {k}: {} elements, input has {}", y.len(), x.len()).into());
        }
        for (i, (a, b)) in x.iter().zip(&y).enumerate() {
            let want = a * scale + bias;
            if want.to_bits() != b.to_bits() {
                return Err(format!(
                    "output {k}[{i}] is {b}, expected {a} * {scale} + {bias} = {want}"
                )
                .into());
            }
        }
    }
    Ok(())
}
