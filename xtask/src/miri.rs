//! `cargo xtask miri`: runs the engine's pure chunk math and scatter/gather offset code
//! (`plan` and `layout` unit tests, property tests included) and its concurrency core (the
//! `queue`, `call` and `topology` unit tests: job queues, the caller-worker hand-off and
//! completion, and which threads serve which cores, on plain threads) under Miri:
//! `cargo +nightly miri test -p dataparallel --lib -- plan layout queue::tests::
//! call::tests:: topology::tests::`, minus the exhaustive layout test ([`SKIPPED`]). Then
//! the C ABI's view construction, where every pointer a C caller hands over becomes a
//! slice: `cargo +nightly miri test -p neuron-dp-capi --lib views::`.
//!
//! Under Miri the threaded tests check more than their assertions: every memory access is
//! checked for data races and for use after free (a caller's frame freed while a worker
//! still writes to it), and the pointer aliasing rules are checked on the hand-off's raw
//! pointers. Those tests run fewer iterations under `cfg(miri)`.
//!
//! Installs the `miri` and `rust-src` components of the nightly toolchain when they are
//! missing (this needs the network; offline it fails with rustup's reason). Property tests
//! run `PROPTEST_CASES` cases each (default here 16) so the whole run takes minutes instead
//! of hours. Miri runs with `-Zmiri-disable-isolation`: proptest reads the environment and
//! the working directory (for its failure-persistence files), which isolation forbids.

use std::path::Path;
use std::time::Instant;

use crate::util::{self, TaskResult};

/// Left out under Miri: it walks more than 10 000 shapes exhaustively (the proptests check
/// the same property on sampled shapes) and alone runs for well over 5 minutes in Miri.
const SKIPPED: &str = "layout::tests::exhaustive_small_shapes_match_naive_copy";

/// Proptest cases per property under Miri, unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: &str = "16";

/// The test filters: module paths of the unit tests to run.
const FILTERS: [&str; 5] = [
    "plan",
    "layout",
    "queue::tests::",
    "call::tests::",
    "topology::tests::",
];

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    util::ensure_nightly_components(root, &["miri", "rust-src"])?;
    let cases = std::env::var("PROPTEST_CASES").unwrap_or_else(|_| DEFAULT_CASES.to_owned());
    let miriflags = match std::env::var("MIRIFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => {
            format!("{flags} -Zmiri-disable-isolation")
        }
        _ => "-Zmiri-disable-isolation".to_owned(),
    };
    let mut test = util::nightly("cargo", root);
    test.args(["miri", "test", "-p", "dataparallel", "--lib", "--"])
        .args(FILTERS)
        .args(["--skip", SKIPPED])
        .env("PROPTEST_CASES", &cases)
        .env("MIRIFLAGS", &miriflags);
    let started = Instant::now();
    util::run(&mut test)?;
    let mut views = util::nightly("cargo", root);
    views
        .args(["miri", "test", "-p", "neuron-dp-capi", "--lib", "views::"])
        .env("MIRIFLAGS", &miriflags);
    util::run(&mut views)?;
    println!(
        "miri: plan, layout, queue, call and topology tests ({cases} proptest cases each) and \
         the C ABI's view construction passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
