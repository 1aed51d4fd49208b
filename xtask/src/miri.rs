//! `cargo xtask miri`: runs the engine's pure chunk math and scatter/gather offset code
//! (`plan` and `layout` unit tests, property tests included) under Miri:
//! `cargo +nightly miri test -p dataparallel --lib -- plan layout`, minus the exhaustive
//! layout test ([`SKIPPED`]).
//!
//! Installs the `miri` and `rust-src` components of the nightly toolchain when they are
//! missing (this needs the network; offline it fails with rustup's reason). Property tests
//! run `PROPTEST_CASES` cases each (default here 16) so the whole run takes minutes instead
//! of hours. Miri runs with `-Zmiri-disable-isolation`: proptest reads the environment and
//! the working directory (for its failure-persistence files), which isolation forbids.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::{self, TaskResult};

/// Left out under Miri: it walks more than 10 000 shapes exhaustively (the proptests check
/// the same property on sampled shapes) and alone runs for well over 5 minutes in Miri.
const SKIPPED: &str = "layout::tests::exhaustive_small_shapes_match_naive_copy";

/// Proptest cases per property under Miri, unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: &str = "16";

/// True when nightly has the miri component.
fn has_miri(root: &Path) -> TaskResult<bool> {
    let mut list = util::nightly("rustup", root);
    list.args(["component", "list", "--installed"]);
    let out = list.stderr(Stdio::null()).output().map_err(|e| {
        format!(
            "cannot run `rustup +nightly component list --installed`: {e} (is rustup installed?)"
        )
    })?;
    if !out.status.success() {
        return Err(
            "the nightly toolchain is missing: install it with `rustup toolchain install nightly \
             --component miri rust-src`"
                .to_owned(),
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|line| line.starts_with("miri")))
}

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    if !has_miri(root)? {
        eprintln!("miri is not installed for nightly; installing it");
        let mut add = Command::new("rustup");
        add.args([
            "component",
            "add",
            "--toolchain",
            "nightly",
            "miri",
            "rust-src",
        ]);
        util::run(&mut add).map_err(|e| {
            format!(
                "cannot install Miri ({e}); without network access install it later with \
                 `rustup component add --toolchain nightly miri rust-src`"
            )
        })?;
    }
    let cases = std::env::var("PROPTEST_CASES").unwrap_or_else(|_| DEFAULT_CASES.to_owned());
    let miriflags = match std::env::var("MIRIFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => {
            format!("{flags} -Zmiri-disable-isolation")
        }
        _ => "-Zmiri-disable-isolation".to_owned(),
    };
    let mut test = util::nightly("cargo", root);
    test.args([
        "miri",
        "test",
        "-p",
        "dataparallel",
        "--lib",
        "--",
        "plan",
        "layout",
        "--skip",
        SKIPPED,
    ])
    .env("PROPTEST_CASES", &cases)
    .env("MIRIFLAGS", &miriflags);
    let started = Instant::now();
    util::run(&mut test)?;
    println!(
        "miri: plan and layout tests passed in {:.0} s ({cases} proptest cases each)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
