//! `cargo xtask mock-build [--release]`: builds the mock libnrt (crate `nrt-mock`) and prints
//! the absolute path of `libnrt_mock.so` as the last line of stdout.
//!
//! That line is a contract (ARCHITECTURE.md, "The mock libnrt"): scripts do
//! `export NRT_DYLIB_PATH=$(cargo xtask mock-build | tail -n1)`. Everything else (cargo's
//! progress, ours) goes to stderr. The target directory comes from `cargo metadata`, so
//! `CARGO_TARGET_DIR` and `build.target-dir` are honoured.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::{self, TaskResult};

/// The mock's package name.
pub(crate) const PACKAGE: &str = "nrt-mock";
/// The file name of the mock's shared library.
pub(crate) const LIBRARY_FILE: &str = "libnrt_mock.so";

/// Builds the mock and returns the absolute path of its shared library (without printing it).
pub(crate) fn build(root: &Path, release: bool) -> TaskResult<PathBuf> {
    let metadata = util::metadata(root)?;
    let target_dir = util::target_dir(&metadata)?;
    let mut command = util::cargo_command(root);
    command.args(["build", "--package", PACKAGE]);
    if release {
        command.arg("--release");
    }
    // Keep our stdout for the path alone: whatever cargo or a build script prints goes to
    // stderr.
    command.stdout(Stdio::from(std::io::stderr()));
    util::run(&mut command)?;

    let profile_dir = if release { "release" } else { "debug" };
    let library = target_dir.join(profile_dir).join(LIBRARY_FILE);
    if !library.is_file() {
        return Err(format!(
            "`cargo build --package {PACKAGE}` succeeded but {} does not exist: \
             {PACKAGE} must be a `cdylib` whose library is named `nrt_mock` (and a \
             `--target` triple in the cargo configuration moves the output elsewhere)",
            library.display()
        ));
    }
    std::path::absolute(&library)
        .map_err(|error| format!("cannot make {} absolute: {error}", library.display()))
}

/// The task: build, then print the path as the last line of stdout.
pub(crate) fn run(root: &Path, release: bool) -> TaskResult {
    let library = build(root, release)?;
    eprintln!(
        "built the mock libnrt; use it with NRT_DYLIB_PATH={}",
        library.display()
    );
    println!("{}", library.display());
    Ok(())
}

/// A private copy of the mock at `built`, in a new temporary directory named `prefix...`
/// (removed when the returned guard drops). Tasks that run tests against the mock use one:
/// building the tests may rebuild the mock in place, with workspace-unified features, while
/// they run.
pub(crate) fn private_copy(built: &Path, prefix: &str) -> TaskResult<(tempfile::TempDir, PathBuf)> {
    let scratch = util::temp_dir(prefix)?;
    let library = scratch.path().join(LIBRARY_FILE);
    std::fs::copy(built, &library).map_err(|error| {
        format!(
            "cannot copy {} to {}: {error}",
            built.display(),
            library.display()
        )
    })?;
    Ok((scratch, library))
}
