//! `cargo xtask python-test`: builds the Python package (`dataparallel/python`, module
//! `neuron_dp`) and runs its pytest suite against the mock libnrt.
//!
//! Steps:
//!
//! 1. a virtualenv at `<target>/python-venv` (made with `$PYTHON`, default `python3`; reused
//!    when present);
//! 2. the pinned test requirements, `dataparallel/python/requirements-test.txt` (maturin,
//!    numpy, pytest, pyyaml, `ray[serve]`, `tritonclient[http]`) from PyPI, installed again only when that file changed
//!    (a copy in the virtualenv records what was installed);
//! 3. the package, exactly as the README says to install it:
//!    `pip install ./dataparallel/python` (here with `--no-build-isolation`, so maturin comes
//!    from the virtualenv rather than being downloaded for every build);
//! 4. `pytest dataparallel/python/tests` with `NRT_DYLIB_PATH`, a private
//!    `NRT_MOCK_LOCK_DIR`, and `NEURON_DP_SERVER_BIN` naming a debug build of the HTTP
//!    server, which `tests/test_server_tritonclient.py` drives with Triton's own client.
//!
//! `cargo xtask mock-test` runs this as one of its steps, on the same mock copy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mock_build;
use crate::util::{self, TaskResult};

/// The package's directory, relative to the workspace root.
const PACKAGE: &str = "dataparallel/python";
/// The pinned test requirements, relative to the workspace root.
const REQUIREMENTS: &str = "dataparallel/python/requirements-test.txt";
/// How long installing may take (a cold Ray download and a release build of the crate).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long the test suite may take.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(900);

/// The task: builds the mock, then [`run_with`] on a private copy and lock directory.
pub(crate) fn run(root: &Path) -> TaskResult {
    let built = mock_build::build(root, false)?;
    let lock_dir = util::temp_dir("nrt-mock-locks-")?;
    let (_scratch, library) = mock_build::private_copy(&built, "xtask-python-test-")?;
    run_with(root, &library, lock_dir.path())
}

/// The virtualenv's interpreter, creating the virtualenv first when missing.
fn virtualenv(root: &Path) -> TaskResult<PathBuf> {
    let target = util::target_dir(&util::metadata(root)?)?;
    let venv = target.join("python-venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        let base = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        util::run(Command::new(&base).arg("-m").arg("venv").arg(&venv)).map_err(|error| {
            format!(
                "{error}\n(a Python 3.9 or later with the venv module is needed: \
                 `apt-get install python3-venv`, or set PYTHON to an interpreter)"
            )
        })?;
    }
    Ok(python)
}

/// Installs the pinned requirements unless the virtualenv already has exactly these.
fn requirements(root: &Path, python: &Path) -> TaskResult {
    let wanted = root.join(REQUIREMENTS);
    let text = std::fs::read_to_string(&wanted)
        .map_err(|error| format!("cannot read {}: {error}", wanted.display()))?;
    let venv = python
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not inside a virtualenv", python.display()))?;
    let stamp = venv.join("requirements-test.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(text.as_str()) {
        eprintln!(
            "python-test: requirements already installed ({})",
            stamp.display()
        );
        return Ok(());
    }
    let mut pip = Command::new(python);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
        .arg(&wanted);
    util::run_with_timeout(&mut pip, INSTALL_TIMEOUT)?;
    std::fs::write(&stamp, text)
        .map_err(|error| format!("cannot write {}: {error}", stamp.display()))
}

/// Builds the HTTP server (`neuron-dp-server`, debug) for the tritonclient tests; returns
/// the binary's path.
fn server_binary(root: &Path) -> TaskResult<PathBuf> {
    let mut build = util::cargo_command(root);
    build.args([
        "build",
        "--package",
        "neuron-dp-server",
        "--bin",
        "neuron-dp-server",
    ]);
    util::run(&mut build)?;
    let binary = util::target_dir(&util::metadata(root)?)?
        .join("debug")
        .join("neuron-dp-server");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("cargo built no {}", binary.display()))
    }
}

/// Builds and installs the package, then runs pytest with `library` as libnrt.
pub(crate) fn run_with(root: &Path, library: &Path, lock_dir: &Path) -> TaskResult {
    let server = server_binary(root)?;
    let python = prepare(root)?;
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root.join(PACKAGE))
        .args(["-m", "pytest", "-q", "tests"]);
    // The same clean environment the Rust tests get (no injected faults or core choices
    // from the developer's shell).
    for var in nrt_mock::testing::CLEARED {
        pytest.env_remove(var);
    }
    pytest
        .env("NRT_DYLIB_PATH", library)
        .env("NRT_MOCK_LOCK_DIR", lock_dir)
        .env("NEURON_DP_SERVER_BIN", &server);
    util::run_with_timeout(&mut pytest, PYTEST_TIMEOUT)
}

/// The virtualenv with the pinned requirements and the package freshly installed
/// (`pip install ./dataparallel/python`, a release build); returns its interpreter.
pub(crate) fn prepare(root: &Path) -> TaskResult<PathBuf> {
    let python = virtualenv(root)?;
    requirements(root, &python)?;
    let mut install = Command::new(&python);
    install
        .current_dir(root)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-build-isolation",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(format!("./{PACKAGE}"));
    // The build backend runs `maturin` by name: the virtualenv's, as if it were activated.
    let bin = python
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", python.display()))?;
    let mut path = std::ffi::OsString::from(bin);
    if let Some(inherited) = std::env::var_os("PATH") {
        path.push(":");
        path.push(inherited);
    }
    install.env("PATH", path);
    util::run_with_timeout(&mut install, INSTALL_TIMEOUT)?;
    Ok(python)
}
