//! `cargo xtask demo`: the project's main job on a machine without Neuron hardware. Builds the
//! mock libnrt, writes a small demo NEFF and runs the `neuron-rt` quickstart example on it.
//!
//! The demo model (see [`mock_neff::demo_model`]) is `demo-affine`: `y = 2 * x + 1` on a
//! float32 `[4, 8]` input, 500 µs of simulated device time. It is written to
//! `<target dir>/demo/demo-affine.neff`; the example runs as
//! `NRT_DYLIB_PATH=<mock> cargo run --package neuron-rt --example quickstart -- <neff>`.

use std::path::Path;

use crate::util::{self, TaskResult};
use crate::{mock_build, mock_neff, mock_test};

/// The package and example the demo runs.
const PACKAGE: &str = "neuron-rt";
const EXAMPLE: &str = "quickstart";

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    let library = mock_build::build(root, false)?;
    let metadata = util::metadata(root)?;
    let demo_dir = util::target_dir(&metadata)?.join("demo");
    util::create_dir_all(&demo_dir)?;
    let neff = demo_dir.join(mock_neff::DEMO_FILE);
    mock_neff::write_demo(&neff)?;
    eprintln!("wrote the demo NEFF {}", neff.display());

    let has_example = mock_test::examples(&metadata)
        .iter()
        .any(|example| example.package == PACKAGE && example.name == EXAMPLE);
    if !has_example {
        return Err(format!(
            "package `{PACKAGE}` has no example `{EXAMPLE}` yet (expected at \
             {PACKAGE}/examples/{EXAMPLE}.rs); the mock is at {} and the demo NEFF at {}",
            library.display(),
            neff.display()
        ));
    }
    let mut command = util::cargo_command(root);
    command
        .args(["run", "--package", PACKAGE, "--example", EXAMPLE, "--"])
        .arg(&neff)
        .env("NRT_DYLIB_PATH", &library);
    util::run(&mut command)
}
