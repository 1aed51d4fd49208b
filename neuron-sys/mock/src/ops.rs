//! The arithmetic of each mock op (see [`crate::neff::Op`] for the rules).
//!
//! This module owns only the math: it maps the model's input bytes (little-endian, already
//! validated to have the model's sizes) to its output bytes, writing straight into the output
//! buffers it is given (no allocation, no staging). Every op is independent per row of dim 0.

use crate::neff::{MockModel, Op};

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Writes `values` as little-endian f32s over `out` (as many as both hold).
fn put_f32s(out: &mut [u8], values: impl Iterator<Item = f32>) {
    for (dst, v) in out.chunks_exact_mut(4).zip(values) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Computes the outputs of `spec` from `inputs` into `outputs` (one buffer per model output,
/// each of the output's size), as run on physical core `phys`. The buffers must not overlap.
pub(crate) fn run_into(spec: &MockModel, inputs: &[&[u8]], outputs: &mut [&mut [u8]], phys: u32) {
    match spec.op {
        Op::Identity => {
            for (out, x) in outputs.iter_mut().zip(inputs) {
                let n = out.len().min(x.len());
                out[..n].copy_from_slice(&x[..n]);
            }
        }
        Op::Affine { scale, bias } => {
            for (out, x) in outputs.iter_mut().zip(inputs) {
                put_f32s(out, f32s(x).map(|v| v * scale + bias));
            }
        }
        Op::Add => {
            if let ([a, b, ..], [out, ..]) = (inputs, &mut *outputs) {
                put_f32s(out, f32s(a).zip(f32s(b)).map(|(a, b)| a + b));
            }
        }
        Op::RowSum { out_features } => {
            let f = out_features as usize;
            let rows = spec.inputs[0].shape[0] as usize;
            let (Some(x), Some(out)) = (inputs.first(), outputs.first_mut()) else {
                return;
            };
            let row_len = (x.len() / 4) / rows.max(1);
            out.fill(0);
            for r in 0..rows {
                let row = &x[r * row_len * 4..(r + 1) * row_len * 4];
                let acc = &mut out[r * f * 4..(r + 1) * f * 4];
                for (i, v) in f32s(row).enumerate() {
                    let slot = &mut acc[(i % f) * 4..(i % f) * 4 + 4];
                    let sum = f32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]) + v;
                    slot.copy_from_slice(&sum.to_le_bytes());
                }
            }
        }
        Op::CoreId => {
            if let Some(out) = outputs.first_mut() {
                for dst in out.chunks_exact_mut(4) {
                    dst.copy_from_slice(&(phys as i32).to_le_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neff::DType;

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn rowsum_folds_columns() {
        let m = MockModel::new("r", Op::RowSum { out_features: 2 })
            .input("x", DType::Float32, &[2, 3])
            .output("y", DType::Float32, &[2, 2]);
        let x = bytes(&[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        // Stale bytes in the output must not leak into the sums.
        let mut y = vec![0xFFu8; 16];
        run_into(&m, &[&x], &mut [&mut y], 0);
        assert_eq!(f32s(&y).collect::<Vec<_>>(), vec![4.0, 2.0, 40.0, 20.0]);
    }

    #[test]
    fn affine_add_identity_write_every_byte() {
        let a = MockModel::new(
            "a",
            Op::Affine {
                scale: 2.0,
                bias: 1.0,
            },
        )
        .input("x", DType::Float32, &[1, 3])
        .output("y", DType::Float32, &[1, 3]);
        let x = bytes(&[1.0, -2.0, 0.5]);
        let mut y = vec![0xFFu8; 12];
        run_into(&a, &[&x], &mut [&mut y], 0);
        assert_eq!(y, bytes(&[3.0, -3.0, 2.0]));

        let s = MockModel::new("s", Op::Add)
            .input("a", DType::Float32, &[1, 3])
            .input("b", DType::Float32, &[1, 3])
            .output("y", DType::Float32, &[1, 3]);
        let b = bytes(&[1.0, 1.0, 1.0]);
        run_into(&s, &[&x, &b], &mut [&mut y], 0);
        assert_eq!(y, bytes(&[2.0, -1.0, 1.5]));

        let i = MockModel::new("i", Op::Identity)
            .input("x", DType::Float32, &[1, 3])
            .output("y", DType::Float32, &[1, 3]);
        run_into(&i, &[&b], &mut [&mut y], 0);
        assert_eq!(y, b);
    }

    #[test]
    fn core_id_reports_phys() {
        let m = MockModel::new("c", Op::CoreId)
            .input("x", DType::Int8, &[3, 2])
            .output("y", DType::Int32, &[3, 1]);
        let mut y = vec![0u8; 12];
        run_into(&m, &[&[0; 6]], &mut [&mut y], 17);
        assert_eq!(
            y,
            [17i32, 17, 17]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }
}
