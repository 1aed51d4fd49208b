//! What a caller submits: a [`Request`] of [`OwnedTensor`]s, and the check of a request
//! against the model ([`Layout::check`]) that runs at submit, before anything is queued.
//!
//! Requests own their bytes because they cross threads: the caller's thread builds them, the
//! batcher's threads copy their rows into the batch.

use std::time::{Duration, Instant};

use bytemuck::Pod;
use neuron_rt::DType;

use crate::error::{Error, Result, TensorError};
use crate::quote::quote;
use crate::spec::{IoSpec, ModelSpec, Side};

/// One tensor that owns its bytes: an input of a [`Request`] or an output of a
/// [`Response`](super::Response).
///
/// The shape includes the batch dimension: a request of 3 rows for a model input compiled as
/// `[8, 16]` has shape `[3, 16]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedTensor {
    /// The model tensor's name. Inputs: `None` to match by position (then every input of
    /// the request must be unnamed); outputs: always the model's name.
    pub name: Option<String>,
    /// The element type.
    pub dtype: DType,
    /// The shape, batch dimension first.
    pub shape: Vec<usize>,
    /// Row-major bytes.
    pub data: Vec<u8>,
}

impl OwnedTensor {
    /// A tensor of `dtype` and `shape` over `data` (row-major bytes). Sizes are checked at
    /// submit, against the model.
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>, data: Vec<u8>) -> OwnedTensor {
        OwnedTensor {
            name: None,
            dtype,
            shape: shape.into(),
            data,
        }
    }

    /// A tensor holding a copy of a typed slice; `dtype` names the element type the model
    /// expects (e.g. [`DType::Float32`] for `f32`).
    pub fn from_slice<T: Pod>(
        dtype: DType,
        shape: impl Into<Vec<usize>>,
        data: &[T],
    ) -> OwnedTensor {
        OwnedTensor::new(dtype, shape, bytemuck::cast_slice(data).to_vec())
    }

    /// A `float32` tensor holding a copy of `data`.
    pub fn f32(shape: impl Into<Vec<usize>>, data: &[f32]) -> OwnedTensor {
        OwnedTensor::from_slice(DType::Float32, shape, data)
    }

    /// Matches this tensor to the model input called `name`.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> OwnedTensor {
        self.name = Some(name.into());
        self
    }

    /// Rows on the batch dimension (0 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The data copied into typed elements (`None` when the size is not a whole number of
    /// `T`s).
    pub fn to_vec<T: Pod>(&self) -> Option<Vec<T>> {
        if self.data.len() % size_of::<T>().max(1) != 0 {
            return None;
        }
        Some(bytemuck::pod_collect_to_vec(&self.data))
    }
}

/// When a request stops being worth running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// At this instant.
    At(Instant),
    /// This long after it is submitted.
    After(Duration),
}

/// One inference request: a few rows of every model input.
///
/// ```
/// use dataparallel::batcher::{OwnedTensor, Request};
/// use std::time::Duration;
///
/// let request = Request::new(vec![OwnedTensor::f32([2, 4], &[0.5; 8])])
///     .timeout(Duration::from_millis(20));
/// assert_eq!(request.rows(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    inputs: Vec<OwnedTensor>,
    deadline: Option<Deadline>,
}

impl Request {
    /// A request of these inputs, matched to the model's inputs by name when named, else by
    /// position. Every input carries the same number of rows (at least 1) on dim 0.
    pub fn new(inputs: Vec<OwnedTensor>) -> Request {
        Request {
            inputs,
            deadline: None,
        }
    }

    /// The request expires if it has not joined a batch by `deadline`: it then completes with
    /// [`RequestError::DeadlineExceeded`](super::RequestError::DeadlineExceeded) and is never
    /// run. Replaces any earlier deadline or timeout.
    #[must_use]
    pub fn deadline(mut self, deadline: Instant) -> Request {
        self.deadline = Some(Deadline::At(deadline));
        self
    }

    /// As [`deadline`](Self::deadline), `timeout` after the request is submitted.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.deadline = Some(Deadline::After(timeout));
        self
    }

    /// The inputs.
    pub fn inputs(&self) -> &[OwnedTensor] {
        &self.inputs
    }

    /// Takes the inputs back.
    pub fn into_inputs(self) -> Vec<OwnedTensor> {
        self.inputs
    }

    /// Rows of the first input (every input must agree; checked at submit).
    pub fn rows(&self) -> usize {
        self.inputs.first().map_or(0, OwnedTensor::rows)
    }

    /// The absolute deadline for a request submitted at `now`, if any.
    pub(super) fn resolve_deadline(
        &self,
        now: Instant,
        default: Option<Duration>,
    ) -> Option<Instant> {
        match self.deadline {
            Some(Deadline::At(at)) => Some(at),
            Some(Deadline::After(after)) => now.checked_add(after),
            None => default.and_then(|after| now.checked_add(after)),
        }
    }
}

/// One model tensor as the batcher sees it: one row's shape and bytes.
#[derive(Debug, Clone)]
pub(super) struct TensorLayout {
    pub(super) name: String,
    pub(super) dtype: Option<DType>,
    /// The compiled shape without its batch dimension.
    pub(super) row_shape: Vec<usize>,
    /// Bytes per row.
    pub(super) row_bytes: usize,
}

impl TensorLayout {
    fn new(kind: &str, spec: &IoSpec) -> Result<TensorLayout> {
        let Some((_, row_shape)) = spec.shape.split_first() else {
            return Err(Error::config(format!(
                "model {kind} {} is a scalar; the batcher needs a batch dimension (dim 0) on \
                 every input and output: call the engine directly",
                quote(&spec.name)
            )));
        };
        let row_bytes = row_shape
            .iter()
            .try_fold(spec.elem_size, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                Error::config(format!(
                    "model {kind} {} is too large to batch: call the engine directly",
                    quote(&spec.name)
                ))
            })?;
        Ok(TensorLayout {
            name: spec.name.clone(),
            dtype: spec.dtype,
            row_shape: row_shape.to_vec(),
            row_bytes,
        })
    }
}

/// The model's inputs and outputs, per row: what requests are checked against and what the
/// batcher's staging buffers are sized by.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The model's tensors, which requests are matched and dtype-checked against.
    spec: ModelSpec,
    pub(super) inputs: Vec<TensorLayout>,
    pub(super) outputs: Vec<TensorLayout>,
}

impl Layout {
    pub(super) fn new(spec: &ModelSpec) -> Result<Layout> {
        let inputs = spec
            .inputs
            .iter()
            .map(|s| TensorLayout::new("input", s))
            .collect::<Result<Vec<_>>>()?;
        // Results of an output whose dtype the runtime does not report are labelled with the
        // unsigned integer of its element size (its raw bits).
        let outputs = spec
            .outputs
            .iter()
            .map(|s| {
                let mut layout = TensorLayout::new("output", s)?;
                layout.dtype = s.dtype_or_raw();
                Ok(layout)
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(unknown) = outputs.iter().find(|o| o.dtype.is_none()) {
            return Err(Error::config(format!(
                "model output {} has an unknown dtype whose elements are not 1, 2, 4 or 8 bytes; \
                 the batcher cannot label its results: call the engine directly",
                quote(&unknown.name)
            )));
        }
        if inputs.is_empty() {
            return Err(Error::config(
                "the model has no inputs, so there is nothing to batch",
            ));
        }
        Ok(Layout {
            spec: spec.clone(),
            inputs,
            outputs,
        })
    }

    /// Checks `request` against the model and `max_rows`. Returns its rows and, per model
    /// input (in the model's order), the index of the request's tensor that feeds it.
    pub(super) fn check(
        &self,
        request: &Request,
        max_rows: usize,
    ) -> Result<(usize, Vec<usize>), String> {
        let tensors = &request.inputs;
        let order = self
            .spec
            .assign(Side::Input, tensors, |t| t.name.as_deref())
            .map_err(|e| TensorError::from(e).to_string())?;

        let mut rows: Option<usize> = None;
        for ((model, spec), &index) in self.inputs.iter().zip(&self.spec.inputs).zip(&order) {
            let tensor = &tensors[index];
            if !spec.accepts_dtype(tensor.dtype) {
                return Err(TensorError::Dtype {
                    side: Side::Input,
                    name: spec.name.clone(),
                    got: tensor.dtype,
                    expected: spec.dtype_name(),
                }
                .to_string());
            }
            let Some((&n, row_shape)) = tensor.shape.split_first() else {
                return Err(format!(
                    "input {} is a scalar; give it shape {}",
                    quote(&model.name),
                    shape_text(&model.row_shape)
                ));
            };
            if row_shape != model.row_shape.as_slice() {
                return Err(format!(
                    "input {} has shape {:?}; the model expects {}",
                    quote(&model.name),
                    tensor.shape,
                    shape_text(&model.row_shape)
                ));
            }
            let expected = n.checked_mul(model.row_bytes);
            if expected != Some(tensor.data.len()) {
                return Err(format!(
                    "input {}: shape {:?} of {} needs {} bytes but the data has {}",
                    quote(&model.name),
                    tensor.shape,
                    tensor.dtype.name(),
                    expected.map_or_else(|| "more than usize::MAX".to_owned(), |b| b.to_string()),
                    tensor.data.len()
                ));
            }
            match rows {
                None => rows = Some(n),
                Some(r) if r != n => {
                    return Err(format!(
                        "input {} has {n} rows but {} has {r}; every input of a request \
                         needs the same rows",
                        quote(&model.name),
                        quote(&self.inputs[0].name)
                    ));
                }
                Some(_) => {}
            }
        }
        let rows = rows.unwrap_or(0);
        if rows == 0 {
            return Err("the request has no rows; send at least one".to_owned());
        }
        if rows > max_rows {
            return Err(format!(
                "the request has {rows} rows, more than max_batch_rows ({max_rows}); split it \
                 into smaller requests, raise max_batch_rows, or call the engine directly"
            ));
        }
        Ok((rows, order))
    }
}

/// `[rows, 2, 3]` for a row shape `[2, 3]`.
fn shape_text(row_shape: &[usize]) -> String {
    let dims = std::iter::once("rows".to_owned())
        .chain(row_shape.iter().map(usize::to_string))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[{dims}]")
}
