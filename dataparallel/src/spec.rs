//! What the engine knows about the model's inputs and outputs, taken once from the first
//! replica's tensor infos (every replica loads the same NEFF).

use neuron_rt::{DType, TensorInfo};

use crate::error::{Error, Result};

/// One model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    /// The model's name for it.
    pub name: String,
    /// The element type the runtime reports (advisory: `None` when unknown).
    pub dtype: Option<DType>,
    /// Bytes per element, from `size / elements` when the dtype is unknown.
    pub elem_size: usize,
    /// The compiled shape.
    pub shape: Vec<usize>,
    /// The compiled size in bytes.
    pub size: usize,
}

impl IoSpec {
    pub(crate) fn from_info(info: &TensorInfo) -> Result<IoSpec> {
        let elements = info.elements();
        let elem_size = match info.dtype {
            Some(dtype) => dtype.size_bytes(),
            None if elements > 0 && info.size % elements == 0 => info.size / elements,
            None => {
                return Err(Error::Config(format!(
                    "model tensor `{}` has an unknown dtype (code {}) and a size ({} bytes) that \
                     is not a whole number of its {} elements",
                    info.name, info.raw_dtype, info.size, elements
                )));
            }
        };
        if elements.checked_mul(elem_size) != Some(info.size) {
            return Err(Error::Config(format!(
                "model tensor `{}` reports {} bytes but its shape {:?} of {}-byte elements needs \
                 {}",
                info.name,
                info.size,
                info.shape,
                elem_size,
                elements.saturating_mul(elem_size)
            )));
        }
        Ok(IoSpec {
            name: info.name.clone(),
            dtype: info.dtype,
            elem_size,
            shape: info.shape.clone(),
            size: info.size,
        })
    }

    /// True when `shape` is this tensor's compiled shape on every dim but `dim` (the batch
    /// dim, whose size is free).
    pub fn accepts_shape(&self, shape: &[usize], dim: usize) -> bool {
        shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .enumerate()
                .all(|(d, (got, want))| d == dim || got == want)
    }

    /// The dtype's name for messages.
    pub(crate) fn dtype_name(&self) -> String {
        self.dtype.map_or_else(
            || format!("{}-byte elements", self.elem_size),
            |d| d.name().to_owned(),
        )
    }
}

/// The model's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Inputs, in the runtime's order.
    pub inputs: Vec<IoSpec>,
    /// Outputs, in the runtime's order.
    pub outputs: Vec<IoSpec>,
}
