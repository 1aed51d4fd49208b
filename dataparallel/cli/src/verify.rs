//! `neuron-dp verify`: what a user runs first on a new instance, and attaches to a bug report.
//!
//! Prints the runtime version and topology, loads the model on every core it checks, runs the
//! same batch (random from `--seed`, or `--input` files) on each core alone and then through
//! the engine over all of them, and checks that every result agrees bit for bit: with a
//! reference the `--expected` files when given, else the result most cores agree on (the
//! lowest core on a tie), so one bad core shows as the one that differs. A core that fails to
//! load or run is reported with the libnrt status. Exit status 0 only if everything agrees;
//! 1 when something differs or fails (the runtime or the hardware); 2 for bad input.
//!
//! Only the engine's public API is used: a core alone is an engine over that one core.

use std::fmt::Write as _;

use dataparallel::quote::quote;
use dataparallel::{Config, DataParallel, Input, ModelSpec, Output, Side};
use neuron_dp_cli::limits;
use neuron_dp_cli::npy::{self, Buffer};
use neuron_rt::{DType, DeviceId};
use serde::Serialize;

use crate::args::VerifyArgs;
use crate::bench::{SplitMix64, check_viewable, fill, input_shape};
use crate::report::{self, Report, SCHEMA};
use crate::run::{assign, check_fit, check_representable};
use dataparallel::quote::one_line;

use crate::{CliResult, Failure, engine_failure};

/// The runtime's topology.
#[derive(Debug, Serialize)]
struct Topology {
    lnc: u32,
    total_cores: u32,
    visible_cores: u32,
    total_physical_cores: u32,
}

/// The first element where a result differs from the reference.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
struct Mismatch {
    output: String,
    element: usize,
}

/// How one run (a core alone, or the engine) went.
#[derive(Debug, Serialize)]
struct Outcome {
    /// "agrees", "differs" or "failed".
    result: &'static str,
    error: Option<String>,
    /// The libnrt status name, when libnrt failed.
    status: Option<&'static str>,
    mismatch: Option<Mismatch>,
}

#[derive(Debug, Serialize)]
struct CoreOutcome {
    logical_core: u32,
    device: String,
    physical_core: Option<u32>,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Serialize)]
struct EngineOutcome {
    devices: Vec<String>,
    #[serde(flatten)]
    outcome: Outcome,
}

/// What `verify --json` prints.
#[derive(Debug, Serialize)]
struct VerifyReport {
    schema: &'static str,
    command: &'static str,
    model: report::Model,
    runtime: report::RuntimeInfo,
    topology: Topology,
    /// "random" or "files".
    inputs: &'static str,
    rows: usize,
    seed: Option<u64>,
    /// "expected", the device whose results were the reference, or `None` when no core ran.
    reference: Option<String>,
    cores: Vec<CoreOutcome>,
    engine: EngineOutcome,
    passed: bool,
    summary: String,
}

/// One model input, held for every run.
struct HeldInput {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Buffer,
}

/// The results of one run, one buffer per model output, or what went wrong.
type RunResult = Result<Vec<Buffer>, dataparallel::Error>;

/// Runs the batch on `engine` into fresh buffers.
fn forward(
    engine: &DataParallel,
    spec: &ModelSpec,
    inputs: &[HeldInput],
    shapes: &[Vec<usize>],
) -> CliResult<RunResult> {
    let views: Vec<Input<'_>> = inputs
        .iter()
        .map(|i| Input::new(i.dtype, &i.shape, i.data.bytes()).named(&i.name))
        .collect();
    let mut buffers = npy::output_buffers(spec, shapes).map_err(Failure::Usage)?;
    let result = {
        let mut outputs: Vec<Output<'_>> = npy::output_views(spec, shapes, &mut buffers);
        engine.forward_into(&views, &mut outputs)
    };
    Ok(result.map(|()| buffers))
}

/// The first element (of `spec.outputs[k].elem_size` bytes) where `got` differs from `want`.
fn first_mismatch(spec: &ModelSpec, got: &[Buffer], want: &[&[u8]]) -> Option<Mismatch> {
    spec.outputs
        .iter()
        .zip(got.iter().zip(want))
        .find_map(|(o, (got, want))| {
            let (got, want) = (got.bytes(), *want);
            if got == want {
                return None;
            }
            let size = o.elem_size.max(1);
            let element = got
                .chunks(size)
                .zip(want.chunks(size))
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()) / size);
            Some(Mismatch {
                output: o.name.clone(),
                element,
            })
        })
}

fn outcome(spec: &ModelSpec, result: &RunResult, reference: Option<&[&[u8]]>) -> Outcome {
    match (result, reference) {
        (Err(error), _) => Outcome {
            result: "failed",
            error: Some(one_line(&error.to_string())),
            status: error.status().map(|s| s.name()),
            mismatch: None,
        },
        (Ok(got), Some(want)) => {
            let mismatch = first_mismatch(spec, got, want);
            Outcome {
                result: if mismatch.is_some() {
                    "differs"
                } else {
                    "agrees"
                },
                error: None,
                status: None,
                mismatch,
            }
        }
        (Ok(_), None) => Outcome {
            result: "differs",
            error: Some("no reference to compare with".to_owned()),
            status: None,
            mismatch: None,
        },
    }
}

/// The index of the successful result most others equal bit for bit (the lowest on a tie).
fn majority(results: &[RunResult]) -> Option<usize> {
    let same = |a: &[Buffer], b: &[Buffer]| a.iter().zip(b).all(|(x, y)| x.bytes() == y.bytes());
    let mut best: Option<(usize, usize)> = None;
    for (i, result) in results.iter().enumerate() {
        let Ok(mine) = result else { continue };
        let votes = results
            .iter()
            .filter(|other| other.as_ref().is_ok_and(|theirs| same(mine, theirs)))
            .count();
        if best.is_none_or(|(_, most)| votes > most) {
            best = Some((i, votes));
        }
    }
    best.map(|(i, _)| i)
}

/// The inputs: read from the `--input` files, or `rows` random rows.
fn inputs(args: &VerifyArgs, engine: &DataParallel) -> CliResult<(Vec<HeldInput>, usize)> {
    let spec = engine.spec();
    if !args.inputs.is_empty() {
        let assigned = assign(&args.inputs, spec, Side::Input)?;
        let mut held = Vec::with_capacity(assigned.len());
        for (model_input, arg) in spec.inputs.iter().zip(&assigned) {
            check_representable(model_input)?;
            let array = npy::read(&arg.path).map_err(Failure::Usage)?;
            check_fit(model_input, &arg.path, &array, engine.dim())?;
            held.push(HeldInput {
                name: model_input.name.clone(),
                dtype: array.dtype,
                shape: array.shape,
                data: array.data,
            });
        }
        let rows = held
            .first()
            .map_or(0, |i| i.shape.first().copied().unwrap_or(0));
        return Ok((held, rows));
    }
    let compiled = engine.batch_sizes().last().copied().unwrap_or(1);
    let rows = match args.batch {
        Some(rows) => rows.get(),
        None => engine.devices().len().saturating_mul(compiled),
    };
    let shapes: Vec<Vec<usize>> = spec
        .inputs
        .iter()
        .map(|s| input_shape(s, 0, rows))
        .collect();
    limits::check_buffers(
        "the random batch",
        spec.inputs
            .iter()
            .zip(&shapes)
            .map(|(s, shape)| (shape.as_slice(), s.elem_size)),
        limits::memory_budget(),
    )
    .map_err(Failure::Usage)?;
    let mut rng = SplitMix64(args.seed);
    let held = spec
        .inputs
        .iter()
        .zip(shapes)
        .map(|(s, shape)| {
            let mut data = Buffer::try_zeroed(shape.iter().product::<usize>() * s.elem_size)
                .map_err(Failure::Runtime)?;
            fill(data.bytes_mut(), s.dtype, &mut rng);
            Ok(HeldInput {
                name: s.name.clone(),
                // check_viewable ran first.
                dtype: npy::view_dtype(s).unwrap_or(DType::UInt8),
                shape,
                data,
            })
        })
        .collect::<CliResult<Vec<_>>>()?;
    Ok((held, rows))
}

/// The `--expected` files, checked against the outputs' dtypes and `shapes`.
fn expected(args: &VerifyArgs, spec: &ModelSpec, shapes: &[Vec<usize>]) -> CliResult<Vec<Buffer>> {
    let assigned = assign(&args.expected, spec, Side::Output)?;
    let mut files = Vec::with_capacity(assigned.len());
    for ((output, shape), arg) in spec.outputs.iter().zip(shapes).zip(&assigned) {
        let array = npy::read(&arg.path).map_err(Failure::Usage)?;
        let path = quote(&arg.path.display().to_string()).to_string();
        let want = npy::view_dtype(output);
        if Some(array.dtype) != want {
            return Err(Failure::Usage(format!(
                "expected output {} ({path}): dtype {} does not fit the model's {}",
                quote(&output.name),
                array.dtype.name(),
                want.map_or_else(|| report::dtype_name(output), |d| d.name().to_owned())
            )));
        }
        if &array.shape != shape {
            return Err(Failure::Usage(format!(
                "expected output {} ({path}): shape {:?} is not the shape these inputs give, {:?}",
                quote(&output.name),
                array.shape,
                shape
            )));
        }
        files.push(array.data);
    }
    Ok(files)
}

/// The subcommand.
pub(crate) fn run(args: &VerifyArgs) -> CliResult {
    let runtime = crate::runtime()?;
    let paths = [args.neff.clone()];
    let neffs = crate::neffs(&paths)?;
    let mut config = Config::default();
    if let Some(ids) = &args.device_ids {
        config = config.device_ids(ids.clone());
    }
    // The engine over every core checked: validates the device ids and describes the model.
    let engine = DataParallel::new(&runtime, &neffs[0], config).map_err(|e| engine_failure(&e))?;
    let spec = engine.spec().clone();
    check_viewable(&spec)?;
    let (held, rows) = inputs(args, &engine)?;
    let views: Vec<Input<'_>> = held
        .iter()
        .map(|i| Input::new(i.dtype, &i.shape, i.data.bytes()).named(&i.name))
        .collect();
    let shapes = engine
        .output_shapes(&views)
        .map_err(|e| engine_failure(&e))?;
    drop(views);
    let devices: Vec<DeviceId> = engine.devices().iter().copied().collect();
    let physical: Vec<Option<u32>> = engine.physical_cores().collect();
    // Every core's results and the engine's are held at once, plus the expected files.
    limits::check_buffers(
        "the results of every core, the engine and the expected outputs",
        (0..devices.len() + 2).flat_map(|_| {
            spec.outputs
                .iter()
                .zip(&shapes)
                .map(|(o, shape)| (shape.as_slice(), o.elem_size))
        }),
        limits::memory_budget(),
    )
    .map_err(Failure::Usage)?;
    let expected = if args.expected.is_empty() {
        None
    } else {
        Some(expected(args, &spec, &shapes)?)
    };

    // Each core alone: an engine over that core only, built, run and dropped in turn.
    let mut per_core: Vec<RunResult> = Vec::with_capacity(devices.len());
    for device in &devices {
        let config = Config::default().device_list(device.to_string());
        let result = match DataParallel::new(&runtime, &neffs[0], config) {
            Ok(alone) => forward(&alone, &spec, &held, &shapes)?,
            Err(error) => Err(error),
        };
        per_core.push(result);
    }
    let through_engine = forward(&engine, &spec, &held, &shapes)?;

    let (reference_name, reference): (Option<String>, Option<Vec<&[u8]>>) = match &expected {
        Some(files) => (
            Some("expected".to_owned()),
            Some(files.iter().map(Buffer::bytes).collect()),
        ),
        None => match majority(&per_core) {
            Some(i) => (
                Some(devices[i].to_string()),
                per_core[i]
                    .as_ref()
                    .ok()
                    .map(|b| b.iter().map(Buffer::bytes).collect()),
            ),
            None => (None, None),
        },
    };
    let cores: Vec<CoreOutcome> = devices
        .iter()
        .zip(&physical)
        .zip(&per_core)
        .map(|((device, physical_core), result)| CoreOutcome {
            logical_core: device.index(),
            device: device.to_string(),
            physical_core: *physical_core,
            outcome: outcome(&spec, result, reference.as_deref()),
        })
        .collect();
    let engine_outcome = EngineOutcome {
        devices: devices.iter().map(ToString::to_string).collect(),
        outcome: outcome(&spec, &through_engine, reference.as_deref()),
    };
    let passed = cores.iter().all(|c| c.outcome.result == "agrees")
        && engine_outcome.outcome.result == "agrees";
    let summary = summary(
        passed,
        &cores,
        &engine_outcome,
        reference_name.as_deref(),
        rows,
    );
    let report = VerifyReport {
        schema: SCHEMA,
        command: "verify",
        model: report::Model::new(&paths, &neffs, &engine),
        runtime: report::RuntimeInfo::new(&runtime),
        topology: Topology {
            lnc: runtime.lnc(),
            total_cores: runtime.total_cores(),
            visible_cores: runtime.visible_cores(),
            total_physical_cores: runtime.total_physical_cores(),
        },
        inputs: if args.inputs.is_empty() {
            "random"
        } else {
            "files"
        },
        rows,
        seed: args.inputs.is_empty().then_some(args.seed),
        reference: reference_name,
        cores,
        engine: engine_outcome,
        passed,
        summary,
    };
    report.emit(args.json)?;
    if report.passed {
        Ok(())
    } else {
        Err(Failure::Runtime(report.summary))
    }
}

/// The one-line verdict.
fn summary(
    passed: bool,
    cores: &[CoreOutcome],
    engine: &EngineOutcome,
    reference: Option<&str>,
    rows: usize,
) -> String {
    let against = match reference {
        Some("expected") => "the expected outputs".to_owned(),
        Some(device) => format!("{device}'s results"),
        None => "no reference (no core ran)".to_owned(),
    };
    if passed {
        return format!(
            "verify passed: {} core{} alone and the engine over all of them agree bit for bit \
             with {against} on {rows} rows",
            cores.len(),
            if cores.len() == 1 { "" } else { "s" }
        );
    }
    let mut problems: Vec<String> = Vec::new();
    let physical = |p: Option<u32>| p.map_or_else(|| "?".to_owned(), |p| p.to_string());
    for core in cores {
        match core.outcome.result {
            "failed" => problems.push(format!(
                "{} (physical {}) failed{}",
                core.device,
                physical(core.physical_core),
                core.outcome
                    .status
                    .map_or_else(String::new, |s| format!(" with {s}"))
            )),
            "differs" => problems.push(format!(
                "{} (physical {}) differs{}",
                core.device,
                physical(core.physical_core),
                mismatch_text(core.outcome.mismatch.as_ref())
            )),
            _ => {}
        }
    }
    match engine.outcome.result {
        "failed" => problems.push(format!(
            "the engine failed{}",
            engine
                .outcome
                .status
                .map_or_else(String::new, |s| format!(" with {s}"))
        )),
        "differs" => problems.push(format!(
            "the engine differs{}",
            mismatch_text(engine.outcome.mismatch.as_ref())
        )),
        _ => {}
    }
    format!(
        "verify failed against {against} on {rows} rows: {}; the report lists every core \
         (attach `neuron-dp verify --json` to a bug report)",
        problems.join(", ")
    )
}

fn mismatch_text(mismatch: Option<&Mismatch>) -> String {
    mismatch.map_or_else(String::new, |m| {
        format!(" (output {} from element {})", quote(&m.output), m.element)
    })
}

impl Report for VerifyReport {
    fn text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "runtime    libnrt {}{} ({})",
            self.runtime.version,
            if self.runtime.mock { " [mock]" } else { "" },
            self.runtime.library
        );
        let t = &self.topology;
        let _ = writeln!(
            text,
            "topology   {} visible of {} logical cores, LNC {} ({} physical cores)",
            t.visible_cores, t.total_cores, t.lnc, t.total_physical_cores
        );
        let _ = writeln!(text, "model      {} ({})", self.model.name, self.model.path);
        let _ = writeln!(
            text,
            "batch      {} rows, {}; reference: {}",
            self.rows,
            match self.seed {
                Some(seed) => format!("random (seed {seed})"),
                None => "from the --input files".to_owned(),
            },
            self.reference.as_deref().unwrap_or("none")
        );
        let line = |text: &mut String, who: String, o: &Outcome| {
            let detail = match o.result {
                "failed" => format!(": {}", o.error.as_deref().unwrap_or("")),
                "differs" => mismatch_text(o.mismatch.as_ref()),
                _ => String::new(),
            };
            let _ = writeln!(text, "{who:<28} {}{detail}", o.result);
        };
        for core in &self.cores {
            let who = format!(
                "{} alone (physical {})",
                core.device,
                core.physical_core
                    .map_or_else(|| "?".to_owned(), |p| p.to_string())
            );
            line(&mut text, who, &core.outcome);
        }
        line(
            &mut text,
            format!("engine over {} cores", self.engine.devices.len()),
            &self.engine.outcome,
        );
        if self.passed {
            let _ = writeln!(text, "{}", self.summary);
        }
        text
    }
}
