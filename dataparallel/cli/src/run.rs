//! `neuron-dp run`: `.npy` inputs → the model on every core → one `.npy` per model output,
//! and a report of what ran where.
//!
//! Order of work: runtime, NEFF, engine (so a missing library or a bad device id is reported
//! first), then the inputs are matched to the model by name, read and checked (dtype and
//! shape, with expected vs got), the batch runs into buffers in memory, and only then are the
//! output files written: to temporary files in the output directory, renamed into place once
//! all of them are complete.

use std::path::{Path, PathBuf};

use dataparallel::quote::quote;
use dataparallel::{DataParallel, Input, IoSpec, MatchError, ModelSpec, Output, Side};
use neuron_rt::DType;

use crate::args::{InputArg, RunArgs};
use crate::npy::{self, Array, Buffer};
use crate::report::{self, Report as _, SCHEMA};
use crate::{CliResult, Failure, engine_failure};

fn names(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| quote(&s.name).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches each `--input` to a model input with the engine's matching rules; returns, per
/// model input, its argument. An unnamed `--input` is only accepted for a one-input model.
fn assign<'a>(args: &'a [InputArg], spec: &ModelSpec) -> CliResult<Vec<&'a InputArg>> {
    if spec.inputs.len() > 1 && args.iter().all(|a| a.name.is_none()) {
        return Err(Failure::Usage(format!(
            "name each input as --input NAME=FILE.npy; the model's inputs are {}",
            names(&spec.inputs)
        )));
    }
    let order = spec
        .assign(Side::Input, args, |a| a.name.as_deref())
        .map_err(|error| {
            let hint = match &error {
                MatchError::Missing { name, .. } => {
                    format!("; pass --input {}=FILE.npy", name.escape_debug())
                }
                MatchError::Mixed { .. } | MatchError::Count { .. } => {
                    "; name each input as --input NAME=FILE.npy".to_owned()
                }
                _ => String::new(),
            };
            Failure::Usage(format!("{error}{hint}"))
        })?;
    Ok(order.into_iter().map(|i| &args[i]).collect())
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The shape a model input accepts, for messages: `[N, 3, 224, 224]`.
fn expected_shape(spec: &IoSpec, dim: usize) -> String {
    let dims: Vec<String> = spec
        .shape
        .iter()
        .enumerate()
        .map(|(d, n)| {
            if d == dim {
                "N".to_owned()
            } else {
                n.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Checks that the model input can come from a `.npy` file at all.
fn check_representable(spec: &IoSpec) -> CliResult {
    if let Some(why) = spec.dtype.and_then(npy::unrepresentable) {
        return Err(Failure::Usage(format!(
            "model input {} cannot be read from .npy: {why}",
            quote(&spec.name)
        )));
    }
    Ok(())
}

/// Checks one array against its model input: dtype and every dim but the split dim.
fn check_fit(spec: &IoSpec, path: &Path, array: &Array, dim: usize) -> CliResult {
    if !spec.accepts_dtype(array.dtype) {
        return Err(Failure::Usage(format!(
            "input {} ({}): dtype does not fit the model: expected {}, got {}",
            quote(&spec.name),
            quote(&path.display().to_string()),
            report::dtype_name(spec),
            array.dtype.name()
        )));
    }
    if !spec.accepts_shape(&array.shape, dim) {
        return Err(Failure::Usage(format!(
            "input {} ({}): shape does not fit the model: expected {} (any N on dim {dim}), \
             got {}",
            quote(&spec.name),
            quote(&path.display().to_string()),
            expected_shape(spec, dim),
            shape_text(&array.shape)
        )));
    }
    Ok(())
}

/// A file name for a model output: its name with anything but `[A-Za-z0-9._-]` replaced.
fn file_stem(name: &str, index: usize, taken: &[String]) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        stem = format!("output{index}{stem}");
    }
    if taken.contains(&stem) {
        stem = format!("{stem}_{index}");
    }
    stem
}

/// One gathered output, in memory.
struct Gathered {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Buffer,
}

/// Writes every output to a temporary file in `dir`, then renames them all into place; on
/// any failure removes what it wrote. Returns the final paths.
fn write_outputs(dir: &Path, outputs: &[Gathered]) -> CliResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::Usage(format!(
            "cannot create the output directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut stems: Vec<String> = Vec::with_capacity(outputs.len());
    for (i, output) in outputs.iter().enumerate() {
        let stem = file_stem(&output.name, i, &stems);
        stems.push(stem);
    }
    let finals: Vec<PathBuf> = stems.iter().map(|s| dir.join(format!("{s}.npy"))).collect();
    let temps: Vec<PathBuf> = stems
        .iter()
        .map(|s| dir.join(format!(".{s}.npy.tmp-{}", std::process::id())))
        .collect();
    let cleanup = |temps: &[PathBuf]| {
        for temp in temps {
            let _ = std::fs::remove_file(temp);
        }
    };
    for (i, output) in outputs.iter().enumerate() {
        if let Err(e) = npy::write(&temps[i], output.dtype, &output.shape, output.data.bytes()) {
            cleanup(&temps[..=i]);
            return Err(Failure::Runtime(format!(
                "cannot write {}: {e}; no output files were written",
                finals[i].display()
            )));
        }
    }
    for (i, (temp, done)) in temps.iter().zip(&finals).enumerate() {
        if let Err(e) = std::fs::rename(temp, done) {
            cleanup(&temps[i..]);
            return Err(Failure::Runtime(format!(
                "cannot move {} into place: {e}",
                done.display()
            )));
        }
    }
    Ok(finals)
}

/// The subcommand.
pub(crate) fn run(args: &RunArgs) -> CliResult {
    if args.out_dir.exists() && !args.out_dir.is_dir() {
        return Err(Failure::Usage(format!(
            "--out-dir {} exists and is not a directory",
            args.out_dir.display()
        )));
    }
    let runtime = crate::runtime()?;
    let neffs = crate::neffs(&args.neffs)?;
    let engine = DataParallel::with_buckets(&runtime, &neffs, args.engine.config())
        .map_err(|e| engine_failure(&e))?;
    let spec = engine.spec();
    for output in &spec.outputs {
        match output.dtype {
            Some(dtype) => {
                if let Some(why) = npy::unrepresentable(dtype) {
                    return Err(Failure::Usage(format!(
                        "model output `{}` cannot be written as .npy: {why}",
                        output.name
                    )));
                }
            }
            None => {
                return Err(Failure::Usage(format!(
                    "model output `{}` has a dtype the runtime does not report; neuron-dp cannot \
                     write it as .npy",
                    output.name
                )));
            }
        }
    }

    let assigned = assign(&args.inputs, spec)?;
    let mut arrays = Vec::with_capacity(assigned.len());
    for (model_input, arg) in spec.inputs.iter().zip(&assigned) {
        check_representable(model_input)?;
        let array = npy::read(&arg.path).map_err(Failure::Usage)?;
        check_fit(model_input, &arg.path, &array, engine.dim())?;
        arrays.push(array);
    }
    let inputs: Vec<Input<'_>> = spec
        .inputs
        .iter()
        .zip(&arrays)
        .map(|(s, a)| Input::new(a.dtype, &a.shape, a.data.bytes()).named(&s.name))
        .collect();

    let shapes = engine
        .output_shapes(&inputs)
        .map_err(|e| engine_failure(&e))?;
    let mut gathered: Vec<Gathered> = spec
        .outputs
        .iter()
        .zip(shapes)
        .map(|(o, shape)| Gathered {
            name: o.name.clone(),
            dtype: o.dtype.unwrap_or(DType::UInt8),
            data: Buffer::zeroed(shape.iter().product::<usize>() * o.elem_size),
            shape,
        })
        .collect();
    let forward = {
        let mut views: Vec<Output<'_>> = gathered
            .iter_mut()
            .map(|g| Output::new(g.dtype, &g.shape, g.data.bytes_mut()).named(&g.name))
            .collect();
        engine
            .forward_into_report(&inputs, &mut views)
            .map_err(|e| engine_failure(&e))?
    };
    let paths = write_outputs(&args.out_dir, &gathered)?;

    let chunks: Vec<report::Chunk> = forward
        .chunks
        .iter()
        .map(|(plan, time)| report::Chunk {
            chunk: plan.chunk,
            logical_core: plan.core.index(),
            device: plan.core.to_string(),
            physical_core: plan.physical_core,
            start: plan.start,
            rows: plan.rows,
            pieces: plan.pieces,
            pad_rows: plan.pad_rows,
            batch_sizes: plan.batch_sizes.clone(),
            time_ms: report::ms(*time),
        })
        .collect();
    let wall = forward.wall.as_secs_f64();
    let report = report::RunReport {
        schema: SCHEMA,
        command: "run",
        model: report::Model::new(&args.neffs, &neffs, &engine),
        runtime: report::RuntimeInfo::new(&runtime),
        engine: report::Engine::new(&engine, &args.engine),
        rows: forward.rows,
        totals: report::Totals {
            chunks: chunks.len(),
            rows: forward.rows,
            pieces: chunks.iter().map(|c| c.pieces).sum(),
            pad_rows: chunks.iter().map(|c| c.pad_rows).sum(),
            wall_ms: report::ms(forward.wall),
        },
        chunks,
        throughput_rows_per_s: if wall > 0.0 {
            forward.rows as f64 / wall
        } else {
            0.0
        },
        outputs: gathered
            .iter()
            .zip(&paths)
            .map(|(g, path)| report::OutputFile {
                name: g.name.clone(),
                dtype: g.dtype.name().to_owned(),
                shape: g.shape.clone(),
                path: path.display().to_string(),
            })
            .collect(),
    };
    report.emit(args.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_file_names_are_safe_and_distinct() {
        assert_eq!(file_stem("logits", 0, &[]), "logits");
        assert_eq!(file_stem("a/b c", 1, &[]), "a_b_c");
        assert_eq!(file_stem("..", 2, &[]), "output2..");
        assert_eq!(file_stem("y", 3, &["y".to_owned()]), "y_3");
    }
}
