//! `neuron-dp run`: `.npy` inputs → the model on every core → one `.npy` per model output,
//! and a report of what ran where.
//!
//! Order of work: runtime, NEFF, engine (so a missing library or a bad device id is reported
//! first), then the inputs are matched to the model by name, read and checked (dtype and
//! shape, with expected vs got), the batch runs into buffers in memory, and only then are the
//! output files written: to temporary files in the output directory, renamed into place once
//! all of them are complete (see [`write_outputs`]: all or none, never through a planted
//! link, names cut to fit the file system).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use dataparallel::quote::quote;
use dataparallel::{DataParallel, Input, IoSpec, MatchError, ModelSpec, Output, Side};
use neuron_dp_cli::limits;
use neuron_dp_cli::npy::{self, Array, Buffer};
use neuron_rt::DType;

use crate::args::{InputArg, RunArgs};
use crate::report::{self, Report as _, SCHEMA};
use crate::{CliResult, Failure, engine_failure};

fn names(specs: &[IoSpec]) -> String {
    specs
        .iter()
        .map(|s| quote(&s.name).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches each `--input` (or, for `Side::Output`, each `--expected` of `verify`) to a model
/// tensor with the engine's matching rules; returns, per model tensor, its argument. An
/// unnamed argument is only accepted for a model with one tensor on that side.
pub(crate) fn assign<'a>(
    args: &'a [InputArg],
    spec: &ModelSpec,
    side: Side,
) -> CliResult<Vec<&'a InputArg>> {
    let (flag, tensors) = match side {
        Side::Input => ("--input", &spec.inputs),
        Side::Output => ("--expected", &spec.outputs),
    };
    if tensors.len() > 1 && args.iter().all(|a| a.name.is_none()) {
        return Err(Failure::Usage(format!(
            "name each {side} as {flag} NAME=FILE.npy; the model's {side}s are {}",
            names(tensors)
        )));
    }
    let order = spec
        .assign(side, args, |a| a.name.as_deref())
        .map_err(|error| {
            let hint = match &error {
                MatchError::Missing { name, .. } => {
                    format!("; pass {flag} {}=FILE.npy", name.escape_debug())
                }
                MatchError::Mixed { .. } | MatchError::Count { .. } => {
                    format!("; name each {side} as {flag} NAME=FILE.npy")
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
pub(crate) fn check_representable(spec: &IoSpec) -> CliResult {
    if let Some(why) = spec.dtype.and_then(npy::unrepresentable) {
        return Err(Failure::Usage(format!(
            "model input {} cannot be read from .npy: {why}",
            quote(&spec.name)
        )));
    }
    Ok(())
}

/// Checks one array against its model input: dtype and every dim but the split dim.
pub(crate) fn check_fit(spec: &IoSpec, path: &Path, array: &Array, dim: usize) -> CliResult {
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

/// One gathered output, in memory.
struct Gathered {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Buffer,
}

/// The longest file name (one path component) Linux file systems take, in bytes.
const MAX_FILE_NAME_BYTES: usize = 255;
/// The output files' extension.
const EXTENSION: &str = ".npy";

/// FNV-1a, 64 bits: a stable tag for a long output name that had to be cut.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A file name (without `.npy`) for a model output: its name with anything but
/// `[A-Za-z0-9._-]` replaced by `_`; cut to fit [`MAX_FILE_NAME_BYTES`] with `.npy`, keeping
/// a prefix and a hash of the whole name (`<prefix>~<16 hex digits>`); `_<index>` appended
/// (within the same bound) when an earlier output took the same name.
fn file_stem(name: &str, index: usize, taken: &[String]) -> String {
    let max = MAX_FILE_NAME_BYTES - EXTENSION.len();
    // Only ASCII from here on, so any byte length is a char boundary.
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
    if stem.len() > max {
        let tag = format!("~{:016x}", name_hash(name));
        stem.truncate(max - tag.len());
        stem.push_str(&tag);
    }
    let mut unique = stem.clone();
    let mut attempt = 0usize;
    while taken.contains(&unique) {
        let suffix = if attempt == 0 {
            format!("_{index}")
        } else {
            format!("_{index}_{attempt}")
        };
        let mut base = stem.clone();
        base.truncate(max - suffix.len());
        unique = base + &suffix;
        attempt += 1;
    }
    unique
}

/// The final path of every output in `dir`, in output order.
fn output_paths<'a>(dir: &Path, names: impl IntoIterator<Item = &'a str>) -> Vec<PathBuf> {
    let mut stems: Vec<String> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let stem = file_stem(name, i, &stems);
        stems.push(stem);
    }
    stems
        .iter()
        .map(|s| dir.join(format!("{s}{EXTENSION}")))
        .collect()
}

/// `path` quoted for messages.
fn shown(path: &Path) -> String {
    quote(&path.display().to_string()).to_string()
}

/// Refuses destinations a rename cannot replace (directories), before anything is run or
/// written. Files and symbolic links there are replaced (the link itself, never its target).
fn check_destinations(paths: &[PathBuf]) -> CliResult {
    for path in paths {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(Failure::Usage(format!(
                "the output file {} exists and is a directory; move it away or choose another \
                 --out-dir",
                shown(path)
            )));
        }
    }
    Ok(())
}

/// Creates `dir` and any missing parents; returns the directories it created, deepest
/// first, so a failed run can remove them again.
fn create_out_dir(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let created: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| {
        Failure::Usage(format!(
            "cannot create the output directory {}: {e}",
            shown(dir)
        ))
    })?;
    Ok(created)
}

/// Removes directories [`create_out_dir`] created (only if still empty).
fn remove_created(created: &[PathBuf]) {
    for dir in created {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Moves already-renamed outputs out of the way and puts the files they replaced back.
fn roll_back(placed: &[PathBuf], backups: Vec<(PathBuf, tempfile::TempPath)>) {
    for path in placed {
        let _ = std::fs::remove_file(path);
    }
    for (path, backup) in backups {
        if std::fs::rename(&backup, &path).is_ok() {
            // It is back in place: the temporary name must not be cleaned up any more.
            let _ = backup.keep();
        }
    }
}

/// Writes every output into `dir`, all or none:
///
/// 1. each output goes to a new temporary file in `dir` with an unpredictable name, created
///    exclusively (`O_EXCL`: a symbolic link planted there is never followed);
/// 2. destinations are checked (no directories) before the first rename;
/// 3. files already at a destination are moved aside to temporary names;
/// 4. each temporary file is renamed into place (`rename` replaces a link at the
///    destination, never its target).
///
/// If any step fails, the temporary files are removed, renames already done are undone, the
/// files moved aside are put back, and directories this call created are removed. Returns
/// the final paths.
fn write_outputs(dir: &Path, outputs: &[Gathered]) -> CliResult<Vec<PathBuf>> {
    let created = create_out_dir(dir)?;
    let result = write_all_or_none(dir, outputs);
    if result.is_err() {
        remove_created(&created);
    }
    result
}

fn write_all_or_none(dir: &Path, outputs: &[Gathered]) -> CliResult<Vec<PathBuf>> {
    let finals = output_paths(dir, outputs.iter().map(|o| o.name.as_str()));
    let mut temps = Vec::with_capacity(outputs.len());
    for (output, path) in outputs.iter().zip(&finals) {
        let written = tempfile::Builder::new()
            .prefix(".neuron-dp-")
            .suffix(".npy.tmp")
            // As File::create: readable per the umask, not only by the owner.
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .and_then(|temp| {
                npy::write(
                    temp.as_file(),
                    output.dtype,
                    &output.shape,
                    output.data.bytes(),
                )?;
                Ok(temp)
            });
        match written {
            Ok(temp) => temps.push(temp),
            // `temps` drops here: every temporary file is removed.
            Err(e) => {
                return Err(Failure::Runtime(format!(
                    "cannot write {}: {e}; no output files were written",
                    shown(path)
                )));
            }
        }
    }
    check_destinations(&finals)?;

    let mut backups: Vec<(PathBuf, tempfile::TempPath)> = Vec::new();
    for path in &finals {
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        let moved = tempfile::Builder::new()
            .prefix(".neuron-dp-old-")
            .tempfile_in(dir)
            .map(tempfile::NamedTempFile::into_temp_path)
            .and_then(|backup| std::fs::rename(path, &backup).map(|()| backup));
        match moved {
            Ok(backup) => backups.push((path.clone(), backup)),
            Err(e) => {
                roll_back(&[], backups);
                return Err(Failure::Runtime(format!(
                    "cannot replace {}: {e}; no output files were written",
                    shown(path)
                )));
            }
        }
    }

    let mut placed: Vec<PathBuf> = Vec::with_capacity(finals.len());
    for (temp, path) in temps.into_iter().zip(&finals) {
        if let Err(e) = temp.persist(path) {
            roll_back(&placed, backups);
            return Err(Failure::Runtime(format!(
                "cannot move {} into place: {}; no output files were written (any already \
                 moved were removed and the files they replaced restored)",
                shown(path),
                e.error
            )));
        }
        placed.push(path.clone());
    }
    // Dropping the backups removes the replaced files.
    drop(backups);
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
            // A model the runtime loaded is never refused over its dtype codes: the raw bits
            // are written as the unsigned integer of the element size.
            None => match output.dtype_or_raw() {
                Some(raw) => log::warn!(
                    "the runtime does not report the dtype of model output {}; writing its raw \
                     bits as {} ({}-byte elements)",
                    quote(&output.name),
                    raw.name(),
                    output.elem_size
                ),
                None => {
                    return Err(Failure::Usage(format!(
                        "model output {} has {}-byte elements of a dtype the runtime does not \
                         report; .npy has no integer of that size to hold its raw bits",
                        quote(&output.name),
                        output.elem_size
                    )));
                }
            },
        }
    }

    // Output files that could never be renamed into place fail now, not after the run.
    check_destinations(&output_paths(
        &args.out_dir,
        spec.outputs.iter().map(|o| o.name.as_str()),
    ))?;

    let assigned = assign(&args.inputs, spec, Side::Input)?;
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
    limits::check_buffers(
        "the outputs of this batch",
        spec.outputs
            .iter()
            .zip(&shapes)
            .map(|(o, shape)| (shape.as_slice(), o.elem_size)),
        limits::memory_budget(),
    )
    .map_err(Failure::Usage)?;
    let mut gathered: Vec<Gathered> = Vec::with_capacity(shapes.len());
    for (o, shape) in spec.outputs.iter().zip(shapes) {
        gathered.push(Gathered {
            name: o.name.clone(),
            // Checked above: the runtime's dtype, or raw bits of the element size.
            dtype: npy::view_dtype(o).unwrap_or(DType::UInt8),
            data: Buffer::try_zeroed(shape.iter().product::<usize>() * o.elem_size)
                .map_err(Failure::Runtime)?,
            shape,
        });
    }
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
        assert_eq!(
            file_stem("y", 3, &["y".to_owned(), "y_3".to_owned()]),
            "y_3_1"
        );
    }

    #[test]
    fn a_roll_back_removes_placed_outputs_and_restores_replaced_files() {
        let dir = tempfile::tempdir().unwrap();
        let placed = dir.path().join("new.npy");
        std::fs::write(&placed, b"new").unwrap();
        let replaced = dir.path().join("old.npy");
        let backup = tempfile::Builder::new()
            .tempfile_in(dir.path())
            .unwrap()
            .into_temp_path();
        std::fs::write(&backup, b"old contents").unwrap();
        roll_back(
            std::slice::from_ref(&placed),
            vec![(replaced.clone(), backup)],
        );
        assert!(!placed.exists());
        assert_eq!(std::fs::read(&replaced).unwrap(), b"old contents");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn writing_outputs_into_a_new_directory_removes_it_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a").join("b");
        let gathered = |name: &str| Gathered {
            name: name.to_owned(),
            dtype: DType::Float32,
            shape: vec![1],
            data: Buffer::zeroed(4),
        };
        // bfloat16 has no .npy form: the second write fails after the first succeeded.
        let bad = Gathered {
            dtype: DType::BFloat16,
            ..gathered("z")
        };
        let e = write_outputs(&out, &[gathered("y"), bad]).unwrap_err();
        assert!(
            e.message().contains("no output files were written"),
            "{e:?}"
        );
        assert!(!dir.path().join("a").exists());
        let paths = write_outputs(&out, &[gathered("y"), gathered("y")]).unwrap();
        assert_eq!(paths, vec![out.join("y.npy"), out.join("y_1.npy")]);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);
    }

    #[test]
    fn long_output_names_are_cut_to_fit_and_stay_distinct() {
        let a = format!("{}a", "x".repeat(300));
        let b = format!("{}b", "x".repeat(300));
        let stem_a = file_stem(&a, 0, &[]);
        let stem_b = file_stem(&b, 1, std::slice::from_ref(&stem_a));
        assert_eq!(stem_a.len() + EXTENSION.len(), MAX_FILE_NAME_BYTES);
        assert_eq!(stem_b.len() + EXTENSION.len(), MAX_FILE_NAME_BYTES);
        assert_ne!(stem_a, stem_b);
        assert!(
            stem_a.starts_with("xxxx") && stem_a.contains('~'),
            "{stem_a}"
        );
        // Exactly at the limit: kept whole.
        let fits = "y".repeat(251);
        assert_eq!(file_stem(&fits, 0, &[]), fits);
        // The same long name twice: the second gets a suffix and still fits.
        let again = file_stem(&a, 2, std::slice::from_ref(&stem_a));
        assert_eq!(again.len() + EXTENSION.len(), MAX_FILE_NAME_BYTES);
        assert!(again.ends_with("_2"), "{again}");
        // Multi-byte names are measured in bytes of the sanitized (ASCII) name.
        let wide = "é".repeat(200);
        assert_eq!(file_stem(&wide, 0, &[]).len(), 200);
    }
}
