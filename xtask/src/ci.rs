//! `cargo xtask ci`: runs `.ci/run`, the CI entry point, so there is one list of CI steps and
//! a developer runs exactly what CI runs. `.ci/run` installs what is missing and can be
//! installed (cmake, optionally libclang) when apt-get is usable, and stops at the first
//! failing step.

use std::path::Path;
use std::process::Command;

use crate::util::{self, TaskResult};

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    util::run(
        Command::new("bash")
            .arg(root.join(".ci/run"))
            .current_dir(root),
    )
}
