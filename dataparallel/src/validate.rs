//! The first step of a forward: check the caller's views against the model, before any
//! device call. Nothing here allocates unless it is building an error message.

use std::num::NonZeroUsize;

use crate::error::{Error, Result};
use crate::spec::{IoSpec, ModelSpec};
use crate::view::{Input, Output};

/// How views are matched to model tensors in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matching {
    /// View i is model tensor i.
    Position,
    /// Views carry the model's names.
    Name,
}

/// Finds the view for model tensor `index` named `name`.
pub(crate) fn find<'v, V>(
    views: &'v [V],
    matching: Matching,
    index: usize,
    name: &str,
    view_name: impl Fn(&V) -> Option<&str>,
) -> Option<&'v V> {
    match matching {
        Matching::Position => views.get(index),
        Matching::Name => views.iter().find(|v| view_name(v) == Some(name)),
    }
}

fn names(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides name or position matching and checks the views name each model tensor once.
fn matching<V>(
    what: &str,
    specs: &[IoSpec],
    views: &[V],
    view_name: impl Fn(&V) -> Option<&str>,
    error: impl Fn(String) -> Error,
) -> Result<Matching> {
    let named = views.iter().filter(|v| view_name(v).is_some()).count();
    if named == 0 {
        if views.len() != specs.len() {
            return Err(error(format!(
                "the model has {} {what}s ({}) but {} were given",
                specs.len(),
                names(specs),
                views.len()
            )));
        }
        return Ok(Matching::Position);
    }
    if named != views.len() {
        return Err(error(format!(
            "name every {what} or none: {named} of {} {what}s are named",
            views.len()
        )));
    }
    for (i, view) in views.iter().enumerate() {
        let name = view_name(view).unwrap_or_default();
        if !specs.iter().any(|s| s.name == name) {
            return Err(error(format!(
                "the model has no {what} `{name}`; its {what}s are {}",
                names(specs)
            )));
        }
        if views[..i].iter().any(|v| view_name(v) == Some(name)) {
            return Err(error(format!("{what} `{name}` is given twice")));
        }
    }
    if let Some(missing) = specs
        .iter()
        .find(|s| !views.iter().any(|v| view_name(v) == Some(s.name.as_str())))
    {
        return Err(error(format!(
            "{what} `{}` is missing; the model's {what}s are {}",
            missing.name,
            names(specs)
        )));
    }
    Ok(Matching::Name)
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

fn dtype_ok(spec: &IoSpec, dtype: neuron_rt::DType) -> bool {
    match spec.dtype {
        Some(expected) => expected == dtype,
        None => dtype.size_bytes() == spec.elem_size,
    }
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
        return Err(Error::Input(format!(
            "no inputs given; the model takes {}",
            names(&spec.inputs)
        )));
    }
    let matching = matching("input", &spec.inputs, views, |v| v.name, Error::Input)?;
    let mut batch: Option<(usize, usize, &str)> = None; // (rows, compiled rows, name)
    for (index, model) in spec.inputs.iter().enumerate() {
        let Some(view) = find(views, matching, index, &model.name, |v| v.name) else {
            return Err(Error::Input(format!("input `{}` is missing", model.name)));
        };
        if !dtype_ok(model, view.dtype) {
            return Err(Error::Input(format!(
                "input `{}` is {} but the model expects {}",
                model.name,
                view.dtype.name(),
                model.dtype_name()
            )));
        }
        let expected_len = checked_bytes(view.shape, model.elem_size);
        if expected_len != Some(view.data.len()) {
            return Err(Error::Input(format!(
                "input `{}`: shape {:?} of {} needs {} bytes but the buffer has {}",
                model.name,
                view.shape,
                view.dtype.name(),
                expected_len.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                view.data.len()
            )));
        }
        if view.broadcast {
            if view.shape != model.shape.as_slice() {
                return Err(Error::Input(format!(
                    "broadcast input `{}` must have the model's whole shape {:?}, got {:?}",
                    model.name, model.shape, view.shape
                )));
            }
            continue;
        }
        if model.shape.len() <= dim {
            return Err(Error::Input(format!(
                "input `{}` has rank {} in the model, so it has no dim {dim} to split; mark it \
                 broadcast if it carries no batch dimension",
                model.name,
                model.shape.len()
            )));
        }
        if !model.accepts_shape(view.shape, dim) {
            return Err(Error::Input(format!(
                "input `{}` has shape {:?} but the model was compiled for {:?}; only dim {dim} \
                 (the batch) may differ",
                model.name, view.shape, model.shape
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
                        "the model's inputs have different sizes on dim {dim} (`{first_name}` \
                         {first_compiled}, `{}` {compiled})",
                        model.name
                    );
                    return Err(if dynamic {
                        Error::DynamicBatchingIneligible { reason }
                    } else {
                        Error::Input(format!("{reason}; mark the unbatched one broadcast"))
                    });
                }
                if rows != first_rows {
                    return Err(Error::Input(format!(
                        "inputs disagree on batch size: `{first_name}` has {first_rows} rows on \
                         dim {dim}, `{}` has {rows}",
                        model.name
                    )));
                }
            }
        }
    }
    let Some((rows, compiled, _)) = batch else {
        return Err(Error::Input(
            "every input is marked broadcast, so there is nothing to scatter".to_owned(),
        ));
    };
    let Some(batch) = NonZeroUsize::new(compiled) else {
        return Err(Error::Config(format!(
            "the model was compiled with 0 rows on dim {dim}; there is no batch to split"
        )));
    };
    if dynamic {
        for output in &spec.outputs {
            if output.shape.first() != Some(&batch.get()) {
                return Err(Error::DynamicBatchingIneligible {
                    reason: format!(
                        "output `{}` has shape {:?}, not the compiled batch {batch} on dim 0",
                        output.name, output.shape
                    ),
                });
            }
        }
    } else if let Some(output) = spec.outputs.iter().find(|o| o.shape.len() <= dim) {
        return Err(Error::Config(format!(
            "output `{}` has rank {}, so outputs cannot be gathered along dim {dim}",
            output.name,
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
    let matching = matching("output", &spec.outputs, views, |v| v.name, Error::Output)?;
    for (index, model) in spec.outputs.iter().enumerate() {
        let Some(view) = find(views, matching, index, &model.name, |v| v.name) else {
            return Err(Error::Output(format!("output `{}` is missing", model.name)));
        };
        if !dtype_ok(model, view.dtype) {
            return Err(Error::Output(format!(
                "output `{}` is {} but the model produces {}",
                model.name,
                view.dtype.name(),
                model.dtype_name()
            )));
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
            return Err(Error::Output(format!(
                "output `{}` must have shape {expected:?}, got {:?}",
                model.name, view.shape
            )));
        }
        let expected_len = checked_bytes(view.shape, model.elem_size);
        if expected_len != Some(view.len) {
            return Err(Error::Output(format!(
                "output `{}`: shape {:?} needs {} bytes but the buffer has {}",
                model.name,
                view.shape,
                expected_len.map_or_else(|| "more than usize::MAX".to_owned(), |n| n.to_string()),
                view.len
            )));
        }
    }
    Ok(matching)
}
