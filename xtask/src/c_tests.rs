//! `cargo xtask c-tests`: the C and C++ host programs against the mock.
//!
//! Builds `dataparallel`'s library (`libdataparallel.so`) and the mock libnrt, writes the
//! affine mock NEFF the hosts expect (`y = 2x + 1`, float32 `[4, 8]`), compiles
//! `tests/cpp/host.c` (C99) and `tests/cpp/host.cpp` (C++17) against
//! `dataparallel/include/neuron_dp.h` with `-Wall -Wextra -Werror`, links them to
//! `target/debug/libdataparallel.so` (with an rpath), and runs each with the NEFF path as
//! `argv[1]`, `NRT_DYLIB_PATH` set to the mock and a private `NRT_MOCK_LOCK_DIR`. Fails when
//! anything does not compile or a host exits non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nrt_mock::neff::{DType, MockModel, Op};

use crate::mock_build;
use crate::util::{self, TaskResult};

/// The host programs' directory, relative to the workspace root.
const HOSTS_DIR: &str = "tests/cpp";
/// The header's directory, relative to the workspace root.
const INCLUDE_DIR: &str = "dataparallel/include";
/// How long one host program may run.
const HOST_TIMEOUT: Duration = Duration::from_secs(120);

/// The model the hosts check against: `y = 2x + 1`, compiled batch 4, 8 features.
fn host_model() -> MockModel {
    MockModel::new(
        "c-host-affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[4, 8])
    .output("y", DType::Float32, &[4, 8])
    .exec_us(50)
}

/// A fresh temporary directory with a recognisable name.
fn temp_dir(prefix: &str) -> TaskResult<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|error| format!("cannot create a temporary directory: {error}"))
}

/// Builds the library and returns the directory holding `libdataparallel.so`.
fn build_library(root: &Path) -> TaskResult<PathBuf> {
    let mut command = util::cargo_command(root);
    command.args(["build", "--package", "dataparallel", "--lib"]);
    util::run(&mut command)?;
    let target_dir = util::target_dir(&util::metadata(root)?)?;
    let lib_dir = std::path::absolute(target_dir.join("debug"))
        .map_err(|error| format!("cannot make the target directory absolute: {error}"))?;
    if !lib_dir.join("libdataparallel.so").is_file() {
        return Err(format!(
            "`cargo build --package dataparallel --lib` succeeded but {} has no \
             libdataparallel.so: dataparallel's [lib] must list \"cdylib\" in crate-type",
            lib_dir.display()
        ));
    }
    Ok(lib_dir)
}

/// Compiles one host program.
fn compile(
    root: &Path,
    compiler: &str,
    std: &str,
    source: &str,
    lib_dir: &Path,
    out: &Path,
) -> TaskResult {
    let env_name = if compiler == "cc" { "CC" } else { "CXX" };
    let program = std::env::var_os(env_name).unwrap_or_else(|| compiler.into());
    let mut command = Command::new(program);
    command
        .current_dir(root)
        .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread"])
        .arg("-I")
        .arg(root.join(INCLUDE_DIR))
        .arg(root.join(HOSTS_DIR).join(source))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib_dir)
        .arg("-ldataparallel")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    util::run(&mut command)
}

/// Builds, compiles and runs the hosts with `library` as libnrt and `lock_dir` for core locks.
pub(crate) fn run_with(root: &Path, library: &Path, lock_dir: &Path) -> TaskResult {
    let lib_dir = build_library(root)?;
    let scratch = temp_dir("xtask-c-tests-")?;
    let neff = scratch.path().join("c-host-affine.neff");
    host_model()
        .write_neff(&neff)
        .map_err(|error| format!("cannot write {}: {error}", neff.display()))?;

    let hosts = [
        ("cc", "-std=c99", "host.c", "host_c"),
        ("c++", "-std=c++17", "host.cpp", "host_cpp"),
    ];
    for (compiler, std, source, exe) in hosts {
        let exe = scratch.path().join(exe);
        compile(root, compiler, std, source, &lib_dir, &exe)?;
        let mut command = Command::new(&exe);
        command.arg(&neff);
        for var in nrt_mock::testing::CLEARED {
            command.env_remove(var);
        }
        command
            .env("NRT_DYLIB_PATH", library)
            .env("NRT_MOCK_LOCK_DIR", lock_dir);
        util::run_with_timeout(&mut command, HOST_TIMEOUT)?;
    }
    Ok(())
}

/// The task: build the mock too, and use a private lock directory.
pub(crate) fn run(root: &Path) -> TaskResult {
    let library = mock_build::build(root, false)?;
    let lock_dir = temp_dir("nrt-mock-locks-")?;
    run_with(root, &library, lock_dir.path())?;
    eprintln!("c-tests: the C and C++ hosts passed");
    Ok(())
}
