//! `neuron-dp serve ARGS...`: runs `neuron-dp-server serve ARGS...`, the HTTP server, in
//! this process's place.
//!
//! The server lives in its own package (`dataparallel/server`, on tokio and axum), so this
//! binary, and the fuzz targets built from its library, stay free of an async runtime. The
//! server is looked for next to this executable first (where `cargo build` and
//! `cargo install` put both), then on `PATH`, and is `exec`ed: it keeps this process's id,
//! so SIGTERM and Ctrl-C reach it directly and its exit status is this command's. The
//! arguments go through untouched (`neuron-dp serve --help` is the server's help).

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::args::ServeArgs;
use crate::{CliResult, Failure};

/// The server's executable name.
const SERVER: &str = "neuron-dp-server";

/// Replaces this process with `neuron-dp-server serve ARGS...`; returns only on failure.
pub(crate) fn run(args: &ServeArgs) -> CliResult {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let Some(server) = locate(beside.as_deref(), std::env::var_os("PATH")) else {
        let place = beside.map_or_else(
            || "next to neuron-dp".to_owned(),
            |dir| format!("in {}", dir.display()),
        );
        return Err(Failure::Runtime(format!(
            "{SERVER} is not {place} or on PATH; build it with `cargo build -p {SERVER}` \
             (it lands next to neuron-dp) or install it with \
             `cargo install --path dataparallel/server`"
        )));
    };
    let error = Command::new(&server)
        .arg("serve")
        .args(untouched(&args.args))
        .exec();
    Err(Failure::Runtime(format!(
        "cannot run {}: {error}",
        server.display()
    )))
}

/// The arguments after `serve` exactly as given: clap drops a leading `--`, which the server
/// must see (`neuron-dp serve -- -odd.neff`). neuron-dp has no options before its
/// subcommand, so they are the process's arguments after the second.
fn untouched(parsed: &[OsString]) -> Vec<OsString> {
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "serve") {
        argv.collect()
    } else {
        parsed.to_vec()
    }
}

/// The server executable: in `beside` if there, else in the first directory of `path` that
/// has it (empty entries, which would mean the working directory, are skipped).
fn locate(beside: Option<&Path>, path: Option<OsString>) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = path
        .as_deref()
        .map(|p| {
            std::env::split_paths(p)
                .filter(|d| !d.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .map(Path::to_path_buf)
        .chain(on_path)
        .map(|dir| dir.join(SERVER))
        .find(|candidate| executable(candidate))
}

/// A regular file (after links) that someone may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(dir: &Path, mode: u32) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(SERVER);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn beside_wins_then_path_in_order_skipping_what_cannot_run() {
        let root = tempfile::tempdir().unwrap();
        let (beside, a, b, c) = (
            root.path().join("beside"),
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("c"),
        );
        let path = std::env::join_paths([&a, &b, &c]).unwrap();
        assert_eq!(locate(Some(&beside), Some(path.clone())), None, "none yet");
        // Not executable, or a directory: skipped.
        stub(&a, 0o644);
        std::fs::create_dir_all(b.join(SERVER)).unwrap();
        assert_eq!(locate(Some(&beside), Some(path.clone())), None);
        let in_c = stub(&c, 0o755);
        assert_eq!(locate(Some(&beside), Some(path.clone())), Some(in_c));
        let in_beside = stub(&beside, 0o700);
        assert_eq!(locate(Some(&beside), Some(path.clone())), Some(in_beside));
        // No current directory: PATH alone; no PATH: nothing.
        assert_eq!(locate(None, Some(path)), Some(c.join(SERVER)));
        assert_eq!(locate(None, None), None);
    }
}
