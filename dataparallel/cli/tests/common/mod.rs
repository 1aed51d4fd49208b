//! What the `neuron-dp` integration tests share: a scratch directory with its own mock
//! environment, `.npy` files, and the checks on the binary's error line.
//!
//! Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use npyz::WriterBuilder as _;
use nrt_mock::neff::{DType, MockModel, Op};

const BIN: &str = env!("CARGO_BIN_EXE_neuron-dp");

/// A scratch directory and the environment for one test.
pub(crate) struct Scratch {
    pub(crate) dir: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a scratch directory"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `neuron-dp ARGS` with the mock, 4 simulated cores, a private lock directory and
    /// logging off (so stderr holds only the error line).
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args);
        for var in nrt_mock::testing::CLEARED {
            command.env_remove(var);
        }
        command
            .env("NRT_DYLIB_PATH", nrt_mock::testing::library_path())
            .env("NRT_MOCK_LOCK_DIR", self.path("locks"))
            .env("NRT_MOCK_TOTAL_CORES", "4")
            .env("RUST_LOG", "off");
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("start neuron-dp")
    }

    pub(crate) fn neff(&self, name: &str, model: &MockModel) -> String {
        let path = self.path(name);
        model.write_neff(&path).expect("write the mock NEFF");
        path.display().to_string()
    }

    pub(crate) fn npy_f32(&self, name: &str, shape: &[u64], values: &[f32]) -> String {
        let path = self.path(name);
        write_npy(&path, shape, values, npyz::Order::C);
        path.display().to_string()
    }
}

pub(crate) fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    values: &[T],
    order: npyz::Order,
) {
    let mut file = std::fs::File::create(path).unwrap();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .order(order)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    writer.extend(values.iter().copied()).unwrap();
    writer.finish().unwrap();
}

pub(crate) fn read_npy_f32(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let file = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = file.shape().to_vec();
    (shape, file.into_vec::<f32>().unwrap())
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code and a single `neuron-dp: error:` line containing every `needle`.
#[track_caller]
pub(crate) fn assert_error(output: &Output, code: i32, needles: &[&str]) {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(output)
    );
    // The mock logs its own failures on stderr as libnrt does ("nrt-mock: ..."); ours is
    // exactly one line.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("nrt-mock: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("neuron-dp: error: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

/// `y = 2x + 1` on float32 `[2, 8]`, 100 µs per execution.
pub(crate) fn affine() -> MockModel {
    MockModel::new(
        "affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[2, 8])
    .output("y", DType::Float32, &[2, 8])
    .exec_us(100)
}
