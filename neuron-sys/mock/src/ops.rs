//! The arithmetic of each mock op (see [`crate::neff::Op`] for the rules).
//!
//! This module owns only the math: it maps the models's input bytes (little-endian, already
//! validated to have the model's sizes) to its output bytes. Every op is independent per row
//! of dim 0.

use crate::neff::{MockModel, Op};

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn bytes(v: impl Iterator<Item = f32>) -> Vec<u8> {
    v.flat_map(f32::to_le_bytes).collect()
}

/// Computes the outputs of `spec` from `inputs`, as run on physical core `phys`.
pub(crate) fn run(spec: &MockModel, inputs: &[Vec<u8>], phys: u32) -> Vec<Vec<u8>> {
    match spec.op {
        Op::Identity => inputs.to_vec(),
        Op::Affine { scale, bias } => inputs
            .iter()
            .map(|x| bytes(f32s(x).map(|v| v * scale + bias)))
            .collect(),
        Op::Add => vec![bytes(
            f32s(&inputs[0]).zip(f32s(&inputs[1])).map(|(a, b)| a + b),
        )],
        Op::RowSum { out_features } => {
            let f = out_features as usize;
            let rows = spec.inputs[0].shape[0] as usize;
            let x: Vec<f32> = f32s(&inputs[0]).collect();
            let row_len = x.len() / rows.max(1);
            let mut out = vec![0.0f32; rows * f];
            for r in 0..rows {
                let acc = &mut out[r * f..(r + 1) * f];
                for (i, v) in x[r * row_len..(r + 1) * row_len].iter().enumerate() {
                    acc[i % f] += *v;
                }
            }
            vec![bytes(out.into_iter())]
        }
        Op::CoreId => {
            let rows = spec.outputs[0].shape[0] as usize;
            vec![
                (0..rows)
                    .flat_map(|_| (phys as i32).to_le_bytes())
                    .collect(),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neff::DType;

    #[test]
    fn rowsum_folds_columns() {
        let m = MockModel::new("r", Op::RowSum { out_features: 2 })
            .input("x", DType::Float32, &[2, 3])
            .output("y", DType::Float32, &[2, 2]);
        let x = bytes([1.0, 2.0, 3.0, 10.0, 20.0, 30.0].into_iter());
        let y: Vec<f32> = f32s(&run(&m, &[x], 0)[0]).collect();
        assert_eq!(y, vec![4.0, 2.0, 40.0, 20.0]);
    }

    #[test]
    fn core_id_reports_phys() {
        let m = MockModel::new("c", Op::CoreId)
            .input("x", DType::Int8, &[3, 2])
            .output("y", DType::Int32, &[3, 1]);
        let y = run(&m, &[vec![0; 6]], 17);
        assert_eq!(
            y[0],
            [17i32, 17, 17]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>()
        );
    }
}
