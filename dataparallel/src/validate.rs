//! The first step of a forward: check the caller's views against the model, before any
//! device call. Nothing here allocates unless it is building an error message.

use std::num::NonZeroUsize;

use crate::error::{Error, Result, TensorError};
use crate::quote::quote;
use crate::spec::{IoSpec, Matching, ModelSpec, NameList, Side};
use crate::view::{Input, Output};

fn names(specs: &[IoSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

/// What the inputs of one call say about the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputPlan {
    /// How input views are matched.
    pub(crate) matching: Matching,
    /// Rows on the split dim shared by every batched input.
    pub(crate) rows: usize,
    /// The compiled rows on the split dim (the model's batch, b).
    pub(crate) batch: NonZeroUsize,
}

fn checked_bytes(shape: &[usize], elem: usize) -> Option<usize> {
    shape.iter().try_fold(elem, |acc, &d| acc.checked_mul(d))
}

/// Checks the inputs of one call.
pub(crate) fn inputs(
    spec: &ModelSpec,
    views: &[Input<'_>],
    dim: usize,
    dynamic: bool,
) -> Result<InputPlan> {
    if views.is_empty() {
        return Err(Error::input(format!(
            "no inputs given; the model takes {}",
            NameList(&names(&spec.inputs))
        )));
    }
    let matching = spec
        .match_tensors(Side::Input, views, |v| v.name)
        .map_err(|e| Error::Input(e.into()))?;
    let mut batch: Option<(usize, usize, &str)> = None; // (rows, compiled rows, name)
    for (index, model) in spec.inputs.iter().enumerate() {
        let Some((_, view)) = matching.find(views, index, &model.name, |v| v.name) else {
            return Err(missing(Side::Input, spec, model));
        };
        if !model.accepts_dtype(view.dtype) {
            return Err(Error::Input(TensorError::Dtype {
                side: Side::Input,
                name: model.name.clone(),
                got: view.dtype,
                expected: model.dtype_name(),
            }));
        }
        let expected_len = checked_bytes(view.shape, model.elem_size);
        if expected_len != Some(view.data.len()) {
            return Err(Error::input(format!(
                "input {}: shape {:?} of {} needs {} bytes but the buffer has {}",
                quote(&model.name),
                view.shape,
                view.dtype.name(),
                expected_len.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                view.data.len()
            )));
        }
        if view.broadcast {
            if view.shape != model.shape.as_slice() {
                return Err(Error::input(format!(
                    "broadcast input {} must have the model's whole shape {:?}, got {:?}",
                    quote(&model.name),
                    model.shape,
                    view.shape
                )));
            }
            continue;
        }
        if model.shape.len() <= dim {
            return Err(Error::input(format!(
                "input {} has rank {} in the model, so it has no dim {dim} to split; mark it \
                 broadcast if it carries no batch dimension",
                quote(&model.name),
                model.shape.len()
            )));
        }
        if !model.accepts_shape(view.shape, dim) {
            return Err(Error::input(format!(
                "input {} has shape {:?} but the model was compiled for {:?}; only dim {dim} \
                 (the batch) may differ",
                quote(&model.name),
                view.shape,
                model.shape
            )));
        }
        let rows = view.shape[dim];
        let compiled = model.shape[dim];
        match batch {
            None => batch = Some((rows, compiled, &model.name)),
            Some((first_rows, first_compiled, first_name)) => {
                // The model's own shapes decide eligibility, whatever rows this call has.
                if compiled != first_compiled {
                    let reason = format!(
                        "the model's inputs have different sizes on dim {dim} ({} \
                         {first_compiled}, {} {compiled})",
                        quote(first_name),
                        quote(&model.name)
                    );
                    return Err(if dynamic {
                        Error::DynamicBatchingIneligible { reason }
                    } else {
                        Error::input(format!("{reason}; mark the unbatched one broadcast"))
                    });
                }
                if rows != first_rows {
                    return Err(Error::input(format!(
                        "inputs disagree on batch size: {} has {first_rows} rows on \
                         dim {dim}, {} has {rows}; give every batched input the same rows",
                        quote(first_name),
                        quote(&model.name)
                    )));
                }
            }
        }
    }
    let Some((rows, compiled, _)) = batch else {
        return Err(Error::input(
            "every input is marked broadcast, so there is nothing to scatter; give at least one \
             input with the batch",
        ));
    };
    let Some(batch) = NonZeroUsize::new(compiled) else {
        return Err(Error::config(format!(
            "the model was compiled with 0 rows on dim {dim}; there is no batch to split"
        )));
    };
    if dynamic {
        for output in &spec.outputs {
            if output.shape.first() != Some(&batch.get()) {
                return Err(Error::DynamicBatchingIneligible {
                    reason: format!(
                        "output {} has shape {:?}, not the compiled batch {batch} on dim 0",
                        quote(&output.name),
                        output.shape
                    ),
                });
            }
        }
    } else if let Some(output) = spec.outputs.iter().find(|o| o.shape.len() <= dim) {
        return Err(Error::config(format!(
            "output {} has rank {}, so outputs cannot be gathered along dim {dim}",
            quote(&output.name),
            output.shape.len()
        )));
    }
    Ok(InputPlan {
        matching,
        rows,
        batch,
    })
}

/// Rows on the split dim of gathered output `spec`: `n` with dynamic batching, else one
/// compiled output per chunk.
pub(crate) fn output_rows(
    spec: &IoSpec,
    dim: usize,
    dynamic: bool,
    rows: usize,
    chunks: usize,
) -> usize {
    if dynamic {
        rows
    } else {
        spec.shape
            .get(dim)
            .copied()
            .unwrap_or(0)
            .saturating_mul(chunks)
    }
}

/// Checks the caller's output buffers against what the call will produce.
pub(crate) fn outputs(
    spec: &ModelSpec,
    views: &[Output<'_>],
    dim: usize,
    rows_of: impl Fn(&IoSpec) -> usize,
) -> Result<Matching> {
    let matching = spec
        .match_tensors(Side::Output, views, |v| v.name)
        .map_err(|e| Error::Output(e.into()))?;
    for (index, model) in spec.outputs.iter().enumerate() {
        let Some((_, view)) = matching.find(views, index, &model.name, |v| v.name) else {
            return Err(missing(Side::Output, spec, model));
        };
        if !model.accepts_dtype(view.dtype) {
            return Err(Error::Output(TensorError::Dtype {
                side: Side::Output,
                name: model.name.clone(),
                got: view.dtype,
                expected: model.dtype_name(),
            }));
        }
        let rows = rows_of(model);
        let shape_ok = view.shape.len() == model.shape.len()
            && view
                .shape
                .iter()
                .zip(&model.shape)
                .enumerate()
                .all(|(d, (&got, &want))| if d == dim { got == rows } else { got == want });
        if !shape_ok {
            let mut expected = model.shape.clone();
            if let Some(d) = expected.get_mut(dim) {
                *d = rows;
            }
            return Err(Error::output(format!(
                "output {} must have shape {expected:?}, got {:?}",
                quote(&model.name),
                view.shape
            )));
        }
        let expected_len = checked_bytes(view.shape, model.elem_size);
        if expected_len != Some(view.len) {
            return Err(Error::output(format!(
                "output {}: shape {:?} needs {} bytes but the buffer has {}",
                quote(&model.name),
                view.shape,
                expected_len.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                view.len
            )));
        }
    }
    Ok(matching)
}

/// A model tensor that matching accepted but lookup did not find (matching guarantees every
/// model tensor is fed, so this is reported as the missing tensor it would be).
fn missing(side: Side, spec: &ModelSpec, model: &IoSpec) -> Error {
    let error = crate::spec::MatchError::Missing {
        side,
        name: model.name.clone(),
        model: names(spec.tensors(side)),
    };
    match side {
        Side::Input => Error::Input(error.into()),
        Side::Output => Error::Output(error.into()),
    }
}
