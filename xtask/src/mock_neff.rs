//! `cargo xtask mock-neff`: writes a mock NEFF file that the mock libnrt loads, from command
//! line options, through the mock's own builder ([`nrt_mock::neff::MockModel`]), so the file
//! format has one implementation.
//!
//! ```text
//! cargo xtask mock-neff --out target/affine.neff --name affine --op affine --scale 2 --bias 1 \
//!     --input x:float32:4,8 --output y:float32:4,8 --exec-us 500
//! ```
//!
//! The model is validated (names, dtypes and shapes against the op's rules) before anything is
//! written; bad arguments are an error naming the argument and the accepted forms. The
//! absolute path of the written file is the last line of stdout.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use nrt_mock::neff::{DType, MockModel, Op, TensorSpec};

use crate::util::{self, TaskResult};

/// The file name of the demo NEFF (see [`demo_model`]).
pub(crate) const DEMO_FILE: &str = "demo-affine.neff";

/// The ops a mock model can compute (ARCHITECTURE.md, "The mock libnrt").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OpKind {
    /// Every output equals the input of the same index (any dtype).
    Identity,
    /// output = input * scale + bias, float32 (`--scale`, default 1; `--bias`, default 0).
    Affine,
    /// One float32 output = input 0 + input 1.
    Add,
    /// Per row, sums the flattened elements into `--out-features` buckets (float32).
    #[value(name = "rowsum")]
    RowSum,
    /// One int32 output `[b, 1]` holding the physical core that ran the row.
    #[value(name = "core_id", alias = "core-id")]
    CoreId,
}

/// Options of `cargo xtask mock-neff`.
#[derive(Debug, Args)]
pub(crate) struct MockNeffArgs {
    /// The file to write (parent directories are created).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The model's name (stored in the NEFF header and payload).
    #[arg(long)]
    name: String,
    /// What the model computes.
    #[arg(long, value_enum)]
    op: OpKind,
    /// Multiplier of `--op affine` (default 1).
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    scale: Option<f32>,
    /// Addend of `--op affine` (default 0).
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    bias: Option<f32>,
    /// Output row width of `--op rowsum` (required for it).
    #[arg(long, value_name = "N")]
    out_features: Option<u32>,
    /// An input, in order: name, dtype and shape (dim 0 is the compiled batch). Dtypes:
    /// float32 float16 bfloat16 int8 uint8 int16 uint16 int32 uint32 int64 uint64.
    #[arg(
        long = "input",
        value_name = "NAME:DTYPE:D0,D1,...",
        value_parser = parse_tensor_spec,
        required = true
    )]
    inputs: Vec<TensorSpec>,
    /// An output, in order, in the same form as `--input`.
    #[arg(
        long = "output",
        value_name = "NAME:DTYPE:D0,D1,...",
        value_parser = parse_tensor_spec,
        required = true
    )]
    outputs: Vec<TensorSpec>,
    /// Simulated device time per execution, in microseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    exec_us: u64,
    /// Extra simulated device time per compiled row, in microseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    exec_us_per_row: u64,
}

/// clap's parser for `--input` and `--output`.
fn parse_tensor_spec(spec: &str) -> Result<TensorSpec, String> {
    TensorSpec::parse(spec).map_err(|error| error.to_string())
}

impl MockNeffArgs {
    /// The op with its parameters; rejects parameters the op does not take.
    fn op(&self) -> TaskResult<Op> {
        let op_name = self
            .op
            .to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default();
        let reject = |flag: &str| {
            Err(format!(
                "--{flag} does not apply to --op {op_name}: --scale and --bias belong to \
                 --op affine, --out-features to --op rowsum"
            ))
        };
        if self.op != OpKind::Affine {
            if self.scale.is_some() {
                return reject("scale");
            }
            if self.bias.is_some() {
                return reject("bias");
            }
        }
        if self.op != OpKind::RowSum && self.out_features.is_some() {
            return reject("out-features");
        }
        Ok(match self.op {
            OpKind::Identity => Op::Identity,
            OpKind::Affine => {
                let scale = self.scale.unwrap_or(1.0);
                let bias = self.bias.unwrap_or(0.0);
                for (flag, value) in [("scale", scale), ("bias", bias)] {
                    if !value.is_finite() {
                        return Err(format!("--{flag} must be a finite number, not {value}"));
                    }
                }
                Op::Affine { scale, bias }
            }
            OpKind::Add => Op::Add,
            OpKind::RowSum => match self.out_features {
                Some(0) => return Err("--out-features must be at least 1".to_owned()),
                Some(out_features) => Op::RowSum { out_features },
                None => return Err("--op rowsum needs --out-features N".to_owned()),
            },
            OpKind::CoreId => Op::CoreId,
        })
    }

    /// The model these options describe (not yet validated).
    fn model(&self) -> TaskResult<MockModel> {
        let mut model = MockModel::new(self.name.clone(), self.op()?)
            .exec_us(self.exec_us)
            .exec_us_per_row(self.exec_us_per_row);
        model.inputs = self.inputs.clone();
        model.outputs = self.outputs.clone();
        Ok(model)
    }
}

/// Validates `model` and writes it to `path`, creating parent directories.
fn write(model: &MockModel, path: &Path) -> TaskResult {
    // The error says "invalid mock model: ..." itself.
    model.validate().map_err(|error| error.to_string())?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        util::create_dir_all(parent)?;
    }
    model
        .write_neff(path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// The demo model of `cargo xtask demo` and the `{demo-neff}` example argument:
/// `demo-affine`, y = 2x + 1 on float32 `[4, 8]`, 500 µs per execution.
pub(crate) fn demo_model() -> MockModel {
    MockModel::new(
        "demo-affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[4, 8])
    .output("y", DType::Float32, &[4, 8])
    .exec_us(500)
}

/// Writes the demo model to `path`.
pub(crate) fn write_demo(path: &Path) -> TaskResult {
    write(&demo_model(), path)
}

/// The task.
pub(crate) fn run(args: &MockNeffArgs) -> TaskResult {
    let model = args.model()?;
    write(&model, &args.out)?;
    let path = std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone());
    eprintln!(
        "wrote mock NEFF `{}` (op {}, {} input(s), {} output(s))",
        model.name,
        model.op.kind(),
        model.inputs.len(),
        model.outputs.len()
    );
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockNeffArgs,
    }

    fn parse(args: &[&str]) -> Result<MockNeffArgs, String> {
        Cli::try_parse_from(std::iter::once("mock-neff").chain(args.iter().copied()))
            .map(|cli| cli.args)
            .map_err(|error| error.to_string())
    }

    const AFFINE: &[&str] = &[
        "--out",
        "x.neff",
        "--name",
        "m",
        "--op",
        "affine",
        "--scale",
        "-2",
        "--bias",
        "0.5",
        "--input",
        "x:float32:4,8",
        "--output",
        "y:float32:4,8",
        "--exec-us",
        "7",
        "--exec-us-per-row",
        "3",
    ];

    #[test]
    fn options_become_the_model() {
        let model = parse(AFFINE).unwrap().model().unwrap();
        assert_eq!(
            model,
            MockModel::new(
                "m",
                Op::Affine {
                    scale: -2.0,
                    bias: 0.5
                }
            )
            .input("x", DType::Float32, &[4, 8])
            .output("y", DType::Float32, &[4, 8])
            .exec_us(7)
            .exec_us_per_row(3)
        );
        model.validate().unwrap();
    }

    #[test]
    fn every_op_name_parses() {
        for (name, kind) in [
            ("identity", OpKind::Identity),
            ("affine", OpKind::Affine),
            ("add", OpKind::Add),
            ("rowsum", OpKind::RowSum),
            ("core_id", OpKind::CoreId),
            ("core-id", OpKind::CoreId),
        ] {
            assert_eq!(OpKind::from_str(name, false), Ok(kind), "{name}");
        }
    }

    #[test]
    fn bad_arguments_are_clear_errors() {
        let bad_dtype = parse(&[
            "--out",
            "f",
            "--name",
            "m",
            "--op",
            "identity",
            "--input",
            "x:float:1",
            "--output",
            "y:float32:1",
        ])
        .unwrap_err();
        assert!(bad_dtype.contains("unknown dtype"), "{bad_dtype}");

        let no_output = parse(&[
            "--out", "f", "--name", "m", "--op", "add", "--input", "x:int8:1",
        ])
        .unwrap_err();
        assert!(no_output.contains("--output"), "{no_output}");

        let bad_op = parse(&[
            "--out", "f", "--name", "m", "--op", "mul", "--input", "x:int8:1", "--output",
            "y:int8:1",
        ])
        .unwrap_err();
        assert!(bad_op.contains("rowsum"), "lists the ops: {bad_op}");

        let rowsum = parse(&[
            "--out",
            "f",
            "--name",
            "m",
            "--op",
            "rowsum",
            "--input",
            "x:float32:2,8",
            "--output",
            "y:float32:2,4",
        ])
        .unwrap();
        assert_eq!(
            rowsum.model().unwrap_err(),
            "--op rowsum needs --out-features N"
        );

        let stray = parse(&[
            "--out",
            "f",
            "--name",
            "m",
            "--op",
            "add",
            "--scale",
            "2",
            "--input",
            "x:float32:1",
            "--output",
            "y:float32:1",
        ])
        .unwrap();
        assert!(
            stray
                .model()
                .unwrap_err()
                .contains("--scale does not apply")
        );
    }

    #[test]
    fn an_invalid_model_is_rejected_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.neff");
        let model = MockModel::new("bad", Op::Add)
            .input("a", DType::Float32, &[2])
            .output("c", DType::Float32, &[2]);
        let error = write(&model, &path).unwrap_err();
        assert!(error.starts_with("invalid mock model: "), "{error}");
        assert!(!error.contains("model: invalid"), "said once: {error}");
        assert!(!path.exists());
    }

    #[test]
    fn the_demo_model_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir").join(DEMO_FILE);
        write_demo(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(MockModel::from_neff_bytes(&bytes).unwrap(), demo_model());
    }
}
