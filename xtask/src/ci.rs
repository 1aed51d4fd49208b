//! `cargo xtask ci`: what `.ci/run` does, as one command a developer can run locally.
//!
//! Steps (keep them in step with `.ci/run`): `cargo fmt --all --check`;
//! `cargo clippy --workspace --all-targets -- -D warnings`;
//! `RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps`; `cargo xtask bindgen --check`
//! (skipped when libclang is absent); `cargo xtask mock-test`. Unlike `.ci/run`, which stops
//! at the first failure, every step runs and a summary lists each outcome.

use std::path::Path;

use crate::util::{self, Summary, TaskResult};
use crate::{bindgen, mock_test};

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    let mut summary = Summary::default();
    summary.step("cargo fmt --all --check", || {
        util::run(util::cargo_command(root).args(["fmt", "--all", "--check"]))
    });
    summary.step(
        "cargo clippy --workspace --all-targets -- -D warnings",
        || {
            util::run(util::cargo_command(root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    );
    summary.step(
        "RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps",
        || {
            util::run(
                util::cargo_command(root)
                    .args(["doc", "--workspace", "--no-deps"])
                    .env("RUSTDOCFLAGS", "-Dwarnings"),
            )
        },
    );
    summary.step("cargo xtask bindgen --check", || bindgen::run(root, true));
    summary.step("cargo xtask mock-test", || mock_test::run(root));
    summary.finish("ci")
}
