//! Setup the examples share: `main`'s error reporting, the mock NEFFs they run and the check
//! of the classifier's output against plain Rust. (A folder with a `mod.rs` is not an example
//! of its own; each example includes it with `mod common;`.)
#![allow(dead_code, unreachable_pub)]

use std::fmt::Display;
use std::process::ExitCode;

use dataparallel::OutputTensor;
use neuron_rt::{Neff, NeffError};
use nrt_mock::neff::{DType, MockModel, Op};

/// One image of the classifier: channels, height, width.
pub const IMAGE: [usize; 3] = [3, 8, 8];
/// Values per image.
pub const PIXELS: usize = 3 * 8 * 8;
/// Logits per image.
pub const CLASSES: usize = 10;

/// `main`'s exit: success, or the error's message on stderr and exit code 1.
pub fn exit_code<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The NEFF of a mock model (where a real application loads what `neuronx-cc` compiled).
pub fn mock_neff(model: &MockModel) -> Result<Neff, NeffError> {
    Neff::from_bytes(model.to_neff_bytes())
}

/// The "ResNet-like" classifier compiled for one image: `image` `[1, 3, 8, 8]` in, `logits`
/// `[1, 10]` out, 200 µs per execution. The mock cannot run a real ResNet, so it is the
/// mock's `rowsum` op, which like a classifier head maps each image to 10 numbers:
/// `out[r][j]` is the sum of image r's flattened pixels `i` with `i % 10 == j`, in f32.
pub fn resnet_like() -> Result<Neff, NeffError> {
    mock_neff(
        &MockModel::new(
            "resnet-like",
            Op::RowSum {
                out_features: CLASSES as u32,
            },
        )
        .input("image", DType::Float32, &[1, 3, 8, 8])
        .output("logits", DType::Float32, &[1, CLASSES as u32])
        .exec_us(200),
    )
}

/// Checks the classifier's output for `images` (`PIXELS` values each): shape
/// `[images, CLASSES]`, and every row bit for bit what the model computes on one image.
/// Returns the logits.
pub fn check_logits(images: &[f32], logits: &OutputTensor) -> Result<Vec<f32>, String> {
    let rows = images.len() / PIXELS;
    if logits.shape != [rows, CLASSES] {
        return Err(format!(
            "expected output shape [{rows}, {CLASSES}], got {:?}",
            logits.shape
        ));
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
            return Err(format!("image {r}: got {row:?}, expected {want:?}"));
        }
    }
    Ok(got)
}
