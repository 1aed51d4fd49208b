//! `cargo xtask header [--check]`: generates the C header of the C ABI,
//! `dataparallel/capi/include/neuron_dp.h`, from the `neuron-dp-capi` crate
//! (`dataparallel/capi/src/`) with cbindgen (pinned in this crate's Cargo.toml; configured by
//! `dataparallel/capi/cbindgen.toml`).
//!
//! The header is committed. `--check` regenerates it in memory and fails (exit 1, with a
//! message saying to run `cargo xtask header`) when the committed file differs, then checks
//! that the header compiles on its own as C99 and as C++17 with `-Wall -Wextra -Werror
//! -pedantic`.

use std::path::Path;
use std::process::Command;

use crate::util::{self, TaskResult};

/// The crate the header is generated from, relative to the workspace root.
const CRATE_DIR: &str = "dataparallel/capi";
/// The cbindgen configuration, relative to the crate.
const CONFIG: &str = "cbindgen.toml";
/// The generated header, relative to the workspace root.
pub(crate) const HEADER: &str = "dataparallel/capi/include/neuron_dp.h";

/// The header text cbindgen generates from the crate's current sources.
fn generate(root: &Path) -> TaskResult<Vec<u8>> {
    let crate_dir = root.join(CRATE_DIR);
    let config_path = crate_dir.join(CONFIG);
    let config = cbindgen::Config::from_file(&config_path)
        .map_err(|error| format!("cannot read {}: {error}", config_path.display()))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|error| format!("cbindgen failed on {}: {error}", crate_dir.display()))?;
    let mut text = Vec::new();
    bindings.write(&mut text);
    Ok(text)
}

/// Checks that `header` compiles on its own as C99 and as C++17, warnings as errors.
pub(crate) fn compile_alone(header: &Path) -> TaskResult {
    let flags = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"];
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    util::run(
        Command::new(&cc)
            .args(["-x", "c", "-std=c99"])
            .args(flags)
            .arg(header),
    )?;
    let cxx = std::env::var_os("CXX").unwrap_or_else(|| "c++".into());
    util::run(
        Command::new(&cxx)
            .args(["-x", "c++", "-std=c++17"])
            .args(flags)
            .arg(header),
    )
}

/// The task.
pub(crate) fn run(root: &Path, check: bool) -> TaskResult {
    let generated = generate(root)?;
    let header = root.join(HEADER);
    if check {
        let committed = std::fs::read(&header).map_err(|error| {
            format!(
                "cannot read {}: {error}; run `cargo xtask header` and commit it",
                header.display()
            )
        })?;
        if committed != generated {
            return Err(format!(
                "{HEADER} is out of date with dataparallel/capi/src/: run `cargo xtask header` \
                 and commit the result"
            ));
        }
        eprintln!("{HEADER} is up to date");
        return compile_alone(&header);
    }
    if let Some(dir) = header.parent() {
        util::create_dir_all(dir)?;
    }
    if std::fs::read(&header).ok().as_deref() == Some(generated.as_slice()) {
        eprintln!("{HEADER} is already up to date");
        return Ok(());
    }
    std::fs::write(&header, &generated)
        .map_err(|error| format!("cannot write {}: {error}", header.display()))?;
    eprintln!("wrote {HEADER}");
    Ok(())
}
