//! `cargo xtask c-tests`: the C and C++ host programs against the mock.
//!
//! Builds the C library (package `neuron-dp-capi`) and the mock libnrt, then does what the
//! README tells a C or C++ user to do:
//!
//! 1. installs the library into a scratch prefix the way the README's install steps do
//!    (`lib/libneuron_dp.so.<major>`, the `lib/libneuron_dp.so` link, `include/neuron_dp.h`),
//!    after checking that the library's SONAME is `libneuron_dp.so.<major>`;
//! 2. compiles `dataparallel/capi/tests/cpp/host.c` (C99) and `host.cpp` (C++17) against the
//!    prefix with `-Wall -Wextra -Werror -pedantic`, as the README's Makefile does;
//! 3. configures and builds `host.cpp` again with CMake from
//!    `dataparallel/capi/tests/cpp/CMakeLists.txt`, which must be the README's CMake snippet
//!    word for word (checked), so the snippet users copy is the one that was built;
//! 4. runs each host with the affine mock NEFF they expect (`y = 2x + 1`, float32 `[4, 8]`)
//!    as `argv[1]`, `NRT_DYLIB_PATH` set to the mock and a private `NRT_MOCK_LOCK_DIR`.
//!
//! Fails when anything does not compile, the SONAME is wrong, the README's snippet drifted
//! from the file, or a host exits non-zero. Needs `cc`, `c++`, `readelf` and `cmake` (Debian:
//! `apt-get install build-essential cmake`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nrt_mock::neff::{DType, MockModel, Op};

use crate::mock_build;
use crate::util::{self, TaskResult};

/// The host programs' directory, relative to the workspace root.
const HOSTS_DIR: &str = "dataparallel/capi/tests/cpp";
/// The header's directory, relative to the workspace root.
const INCLUDE_DIR: &str = "dataparallel/capi/include";
/// The C library's package.
const PACKAGE: &str = "neuron-dp-capi";
/// The shared library the package builds.
const LIBRARY: &str = "libneuron_dp.so";
/// Its SONAME: the name hosts record and the dynamic loader looks for.
const SONAME: &str = concat!("libneuron_dp.so.", env!("CARGO_PKG_VERSION_MAJOR"));
/// The README, whose CMake snippet must be `CMakeLists.txt` word for word.
const README: &str = "README.md";
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

/// Builds the library and returns the directory holding `libneuron_dp.so`.
fn build_library(root: &Path) -> TaskResult<PathBuf> {
    let mut command = util::cargo_command(root);
    command.args(["build", "--package", PACKAGE, "--lib"]);
    util::run(&mut command)?;
    let target_dir = util::target_dir(&util::metadata(root)?)?;
    let lib_dir = std::path::absolute(target_dir.join("debug"))
        .map_err(|error| format!("cannot make the target directory absolute: {error}"))?;
    if !lib_dir.join(LIBRARY).is_file() {
        return Err(format!(
            "`cargo build --package {PACKAGE} --lib` succeeded but {} has no {LIBRARY}: the \
             package's [lib] must list \"cdylib\" in crate-type",
            lib_dir.display()
        ));
    }
    Ok(lib_dir)
}

/// Checks that the built library's SONAME is [`SONAME`], as `readelf -d` reports it.
fn check_soname(library: &Path) -> TaskResult {
    let output = Command::new("readelf")
        .arg("-d")
        .arg(library)
        .output()
        .map_err(|error| format!("cannot run `readelf -d` (install binutils): {error}"))?;
    let dynamic = String::from_utf8_lossy(&output.stdout);
    let expected = format!("Library soname: [{SONAME}]");
    if !output.status.success() || !dynamic.contains(&expected) {
        return Err(format!(
            "{} has no SONAME {SONAME} (`readelf -d` shows no `{expected}`): check \
             dataparallel/capi/build.rs",
            library.display()
        ));
    }
    Ok(())
}

/// Installs the library and header under `prefix` as the README's install steps do.
fn install(root: &Path, lib_dir: &Path, prefix: &Path) -> TaskResult {
    check_soname(&lib_dir.join(LIBRARY))?;
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    util::create_dir_all(&lib)?;
    util::create_dir_all(&include)?;
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to).map(drop).map_err(|error| {
            format!(
                "cannot copy {} to {}: {error}",
                from.display(),
                to.display()
            )
        })
    };
    copy(&lib_dir.join(LIBRARY), &lib.join(SONAME))?;
    std::os::unix::fs::symlink(SONAME, lib.join(LIBRARY))
        .map_err(|error| format!("cannot link {LIBRARY} to {SONAME}: {error}"))?;
    copy(
        &root.join(INCLUDE_DIR).join("neuron_dp.h"),
        &include.join("neuron_dp.h"),
    )
}

/// Compiles one host program against the installed `prefix`.
fn compile(
    root: &Path,
    compiler: &str,
    std: &str,
    source: &str,
    prefix: &Path,
    out: &Path,
) -> TaskResult {
    let env_name = if compiler == "cc" { "CC" } else { "CXX" };
    let program = std::env::var_os(env_name).unwrap_or_else(|| compiler.into());
    let lib_dir = prefix.join("lib");
    let mut command = Command::new(program);
    command
        .current_dir(root)
        .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-pthread"])
        .arg("-I")
        .arg(prefix.join("include"))
        .arg(root.join(HOSTS_DIR).join(source))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lneuron_dp")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    util::run(&mut command)
}

/// The README's CMake snippet: the first fenced `cmake` block.
fn readme_cmake_snippet(root: &Path) -> TaskResult<String> {
    let readme = std::fs::read_to_string(root.join(README))
        .map_err(|error| format!("cannot read {README}: {error}"))?;
    let start = readme
        .find("```cmake\n")
        .ok_or_else(|| format!("{README} has no ```cmake block"))?
        + "```cmake\n".len();
    let len = readme[start..]
        .find("```")
        .ok_or_else(|| format!("{README}'s ```cmake block is not closed"))?;
    Ok(readme[start..start + len].to_owned())
}

/// Builds `host.cpp` with CMake from `CMakeLists.txt` against `prefix`; returns the binary.
fn cmake_build(root: &Path, prefix: &Path, build_dir: &Path) -> TaskResult<PathBuf> {
    let lists = root.join(HOSTS_DIR).join("CMakeLists.txt");
    let committed = std::fs::read_to_string(&lists)
        .map_err(|error| format!("cannot read {}: {error}", lists.display()))?;
    if readme_cmake_snippet(root)? != committed {
        return Err(format!(
            "the CMake snippet in {README} differs from {HOSTS_DIR}/CMakeLists.txt: copy the \
             file into the README's ```cmake block (the file is what c-tests builds)"
        ));
    }
    let mut configure = Command::new("cmake");
    configure
        .arg("-S")
        .arg(root.join(HOSTS_DIR))
        .arg("-B")
        .arg(build_dir)
        .arg(format!("-DNEURON_DP_PREFIX={}", prefix.display()));
    util::run(&mut configure).map_err(|error| {
        format!("{error} (is cmake installed? Debian: `apt-get install cmake`)")
    })?;
    util::run(Command::new("cmake").arg("--build").arg(build_dir))?;
    Ok(build_dir.join("host"))
}

/// Runs one host program on the mock.
fn run_host(exe: &Path, neff: &Path, library: &Path, lock_dir: &Path) -> TaskResult {
    let mut command = Command::new(exe);
    command.arg(neff);
    for var in nrt_mock::testing::CLEARED {
        command.env_remove(var);
    }
    command
        .env("NRT_DYLIB_PATH", library)
        .env("NRT_MOCK_LOCK_DIR", lock_dir);
    util::run_with_timeout(&mut command, HOST_TIMEOUT)
}

/// Builds, compiles and runs the hosts with `library` as libnrt and `lock_dir` for core locks.
pub(crate) fn run_with(root: &Path, library: &Path, lock_dir: &Path) -> TaskResult {
    let lib_dir = build_library(root)?;
    let scratch = temp_dir("xtask-c-tests-")?;
    let prefix = scratch.path().join("prefix");
    install(root, &lib_dir, &prefix)?;
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
        compile(root, compiler, std, source, &prefix, &exe)?;
        run_host(&exe, &neff, library, lock_dir)?;
    }
    let cmake_host = cmake_build(root, &prefix, &scratch.path().join("cmake-build"))?;
    run_host(&cmake_host, &neff, library, lock_dir)
}

/// The task: build the mock too, and use a private lock directory.
pub(crate) fn run(root: &Path) -> TaskResult {
    let library = mock_build::build(root, false)?;
    let lock_dir = temp_dir("nrt-mock-locks-")?;
    run_with(root, &library, lock_dir.path())?;
    eprintln!("c-tests: the C and C++ hosts passed (cc, c++ and CMake builds)");
    Ok(())
}
