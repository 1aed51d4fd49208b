//! `cargo xtask mock-test`: the project's test command (README, ARCHITECTURE.md "Testing"). Builds the mock libnrt,
//! then runs every test and every example of the workspace against it, and exits non-zero
//! when anything failed.
//!
//! Steps, all with `NRT_DYLIB_PATH` set to a copy of the freshly built mock and
//! `NRT_MOCK_LOCK_DIR` set to a fresh temporary directory (so a run never contends for cores
//! with another run or with a developer's own processes):
//!
//! 1. `cargo test --workspace --all-targets` (unit, integration tests; builds benches and
//!    examples);
//! 2. `cargo test --workspace --doc` (doctests, including `compile_fail` ones, which
//!    `--all-targets` leaves out);
//! 3. `cargo run --package P --example E` for every example of every workspace package. An
//!    example that needs arguments says so on its first line:
//!    `// xtask-args: --flag {demo-neff}`; the arguments are split on whitespace and
//!    `{demo-neff}` becomes the path of the demo NEFF (`cargo xtask demo`'s model);
//! 4. `cargo xtask header --check` (the committed C header matches the sources and compiles
//!    alone as C99 and C++17, warnings as errors) and `cargo xtask c-tests` (the C and C++
//!    hosts in `dataparallel/capi/tests/cpp/`, built with cc, c++ and CMake against an
//!    installed `libneuron_dp.so`, against the same mock copy and lock directory);
//! 5. `cargo xtask python-test` (the `neuron_dp` Python package built with maturin in a
//!    virtualenv under the target directory, and its pytest suite, on the same mock copy).
//!
//! Steps keep running after a failure; a summary at the end lists each step's outcome.
//! `CARGO_BUILD_JOBS` and the rest of cargo's environment are passed through unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{self, Summary, TaskResult};
use crate::{c_tests, header, mock_build, mock_neff, python_test};

/// The first-line marker an example uses to ask for arguments.
const ARGS_MARKER: &str = "// xtask-args:";
/// The placeholder in example arguments replaced by the demo NEFF's path.
const DEMO_NEFF_PLACEHOLDER: &str = "{demo-neff}";
/// How long one example may run (it is already compiled by the test step).
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One runnable example of a workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Example {
    /// The package it belongs to.
    pub(crate) package: String,
    /// The example's name (`--example NAME`).
    pub(crate) name: String,
    /// Its main source file.
    pub(crate) src_path: PathBuf,
    /// Features it requires (`required-features`).
    pub(crate) required_features: Vec<String>,
}

/// Every runnable (binary) example of every workspace package, sorted by package and name.
pub(crate) fn examples(metadata: &serde_json::Value) -> Vec<Example> {
    let strings = |value: Option<&serde_json::Value>| -> Vec<String> {
        value
            .and_then(serde_json::Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    let packages = metadata
        .get("packages")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for package in packages {
        let Some(package_name) = package.get("name").and_then(serde_json::Value::as_str) else {
            continue;
        };
        let targets = package
            .get("targets")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for target in targets {
            let kinds = strings(target.get("kind"));
            let crate_types = strings(target.get("crate_types"));
            if !kinds.iter().any(|k| k == "example") || !crate_types.iter().any(|t| t == "bin") {
                continue;
            }
            let (Some(name), Some(src_path)) = (
                target.get("name").and_then(serde_json::Value::as_str),
                target.get("src_path").and_then(serde_json::Value::as_str),
            ) else {
                continue;
            };
            found.push(Example {
                package: package_name.to_owned(),
                name: name.to_owned(),
                src_path: PathBuf::from(src_path),
                required_features: strings(target.get("required-features")),
            });
        }
    }
    found.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    found
}

/// The arguments an example asks for on its first line (`// xtask-args: ...`), if any.
pub(crate) fn example_args(source: &str) -> Vec<String> {
    source
        .lines()
        .next()
        .and_then(|line| line.trim().strip_prefix(ARGS_MARKER))
        .map(|args| args.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Runs one example with `cargo run`, replacing `{demo-neff}` in its arguments.
fn run_example(
    root: &Path,
    env: &[(&str, &Path)],
    example: &Example,
    demo_neff: &dyn Fn() -> TaskResult<PathBuf>,
) -> TaskResult {
    let source = std::fs::read_to_string(&example.src_path)
        .map_err(|error| format!("cannot read {}: {error}", example.src_path.display()))?;
    let mut args = Vec::new();
    for arg in example_args(&source) {
        if arg.contains(DEMO_NEFF_PLACEHOLDER) {
            let path = demo_neff()?;
            args.push(arg.replace(DEMO_NEFF_PLACEHOLDER, &path.to_string_lossy()));
        } else {
            args.push(arg);
        }
    }
    let mut command = util::cargo_command(root);
    command.args([
        "run",
        "--package",
        &example.package,
        "--example",
        &example.name,
    ]);
    if !example.required_features.is_empty() {
        command.args(["--features", &example.required_features.join(",")]);
    }
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    command.envs(env.iter().copied());
    util::run_with_timeout(&mut command, EXAMPLE_TIMEOUT)
}

/// The task.
pub(crate) fn run(root: &Path) -> TaskResult {
    let built = mock_build::build(root, false)?;
    let metadata = util::metadata(root)?;
    let lock_dir = util::temp_dir("nrt-mock-locks-")?;
    let (scratch, library) = mock_build::private_copy(&built, "xtask-mock-test-")?;
    let env: [(&str, &Path); 2] = [
        ("NRT_DYLIB_PATH", &library),
        ("NRT_MOCK_LOCK_DIR", lock_dir.path()),
    ];
    eprintln!(
        "mock-test: NRT_DYLIB_PATH={} NRT_MOCK_LOCK_DIR={}",
        library.display(),
        lock_dir.path().display()
    );

    let mut summary = Summary::default();
    summary.step("cargo test --workspace --all-targets", || {
        let mut command = util::cargo_command(root);
        command.args(["test", "--workspace", "--all-targets"]);
        command.envs(env);
        util::run(&mut command)
    });
    summary.step("cargo test --workspace --doc", || {
        let mut command = util::cargo_command(root);
        command.args(["test", "--workspace", "--doc"]);
        command.envs(env);
        util::run(&mut command)
    });

    let demo_path = scratch.path().join(mock_neff::DEMO_FILE);
    let demo_neff = || -> TaskResult<PathBuf> {
        if !demo_path.is_file() {
            mock_neff::write_demo(&demo_path)?;
        }
        Ok(demo_path.clone())
    };
    let examples = examples(&metadata);
    if examples.is_empty() {
        summary.skip("examples", "the workspace has none yet");
    }
    for example in &examples {
        summary.step(
            format!("example {}/{}", example.package, example.name),
            || run_example(root, &env, example, &demo_neff),
        );
    }

    summary.step("cargo xtask header --check", || header::run(root, true));
    summary.step("cargo xtask c-tests", || {
        c_tests::run_with(root, &library, lock_dir.path())
    });
    summary.step("cargo xtask python-test", || {
        python_test::run_with(root, &library, lock_dir.path())
    });

    summary.finish("mock-test")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_arguments_come_from_the_first_line_only() {
        assert_eq!(
            example_args("// xtask-args: --cores 2 {demo-neff}\nfn main() {}"),
            ["--cores", "2", "{demo-neff}"]
        );
        assert!(example_args("//! Docs.\n// xtask-args: -x\n").is_empty());
        assert!(example_args("").is_empty());
        assert!(example_args("// xtask-args:").is_empty());
    }

    #[test]
    fn examples_are_found_in_metadata_and_sorted() {
        let metadata = serde_json::json!({
            "packages": [
                {"name": "zeta", "targets": [
                    {"name": "b", "kind": ["example"], "crate_types": ["bin"],
                     "src_path": "/z/examples/b.rs", "required-features": ["x"]},
                    {"name": "zeta", "kind": ["lib"], "crate_types": ["lib"],
                     "src_path": "/z/src/lib.rs"},
                ]},
                {"name": "alpha", "targets": [
                    {"name": "lib-example", "kind": ["example"], "crate_types": ["lib"],
                     "src_path": "/a/examples/l.rs"},
                    {"name": "a", "kind": ["example"], "crate_types": ["bin"],
                     "src_path": "/a/examples/a.rs"},
                ]},
                {"targets": "malformed"},
            ]
        });
        let found = examples(&metadata);
        let names: Vec<_> = found
            .iter()
            .map(|e| format!("{}/{}", e.package, e.name))
            .collect();
        assert_eq!(names, ["alpha/a", "zeta/b"]);
        assert_eq!(found[1].required_features, ["x"]);
        assert!(examples(&serde_json::json!({})).is_empty());
    }
}
