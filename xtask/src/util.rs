//! Shared plumbing for the tasks: finding cargo and the target directory, and running child
//! commands with error messages that show the exact command line that failed.
//!
//! Every task reports failures as a `String` (the message `main` prints after `error:`);
//! nothing here panics on a failing command or odd input.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The result type of every task: the error is the message shown to the user.
pub(crate) type TaskResult<T = ()> = Result<T, String>;

/// The cargo that runs this xtask (`$CARGO`, set by `cargo run`), or `cargo` from `PATH`.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO")
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| OsString::from("cargo"))
}

/// A `cargo` command that runs in the workspace root.
pub(crate) fn cargo_command(root: &Path) -> Command {
    let mut command = Command::new(cargo());
    command.current_dir(root);
    command
}

/// Quotes one word of a command line for display, the way a POSIX shell would need it.
/// `program +nightly ...` in `dir`, through the rustup proxy. The `cargo` running xtask is
/// a toolchain's own binary, which does not understand `+nightly`, and the variables the
/// stable cargo/rustup set would pin the child to stable, so they are removed.
pub(crate) fn nightly(program: &str, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.arg("+nightly").current_dir(dir);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command line as a user could paste it into a shell: the environment variables the
/// command sets, then the program (`cargo` for the running cargo) and its arguments.
pub(crate) fn display(command: &Command) -> String {
    let mut text = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let _ = write!(text, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    let program = command.get_program();
    if program == cargo().as_os_str() {
        text.push_str("cargo");
    } else {
        text.push_str(&quote(program));
    }
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&quote(arg));
    }
    text
}

/// "exit status 101", or "signal 9 (SIGKILL)" for a command killed by a signal.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            let name = match signal {
                libc_signal::SIGABRT => " (SIGABRT)",
                libc_signal::SIGKILL => " (SIGKILL)",
                libc_signal::SIGSEGV => " (SIGSEGV)",
                _ => "",
            };
            return format!("signal {signal}{name}");
        }
    }
    status.to_string()
}

/// The few signal numbers worth naming (identical on every Linux architecture).
#[cfg(unix)]
mod libc_signal {
    pub(super) const SIGABRT: i32 = 6;
    pub(super) const SIGKILL: i32 = 9;
    pub(super) const SIGSEGV: i32 = 11;
}

/// The error for a command that ran and failed.
fn failed(command: &Command, status: ExitStatus) -> String {
    format!(
        "command `{}` failed with {}",
        display(command),
        describe(status)
    )
}

/// The error for a command that could not be started.
fn not_started(command: &Command, error: &std::io::Error) -> String {
    let mut message = format!("cannot run `{}`: {error}", display(command));
    if error.kind() == std::io::ErrorKind::NotFound {
        let _ = write!(
            message,
            " (is `{}` installed and on PATH?)",
            command.get_program().to_string_lossy()
        );
    }
    message
}

/// Runs `command` with inherited stdio, echoing it to stderr first; fails unless it exits 0.
pub(crate) fn run(command: &mut Command) -> TaskResult {
    eprintln!("+ {}", display(command));
    let status = command
        .status()
        .map_err(|error| not_started(command, &error))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(command, status))
    }
}

/// Like [`run`], but kills the command and fails when it outlives `timeout`.
///
/// `cargo run` replaces itself with the program it runs (on Unix), so killing the child
/// kills the program too.
pub(crate) fn run_with_timeout(command: &mut Command, timeout: Duration) -> TaskResult {
    eprintln!("+ {}", display(command));
    let mut child = command
        .spawn()
        .map_err(|error| not_started(command, &error))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(failed(command, status)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "command `{}` did not finish within {} s and was killed",
                    display(command),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(error) => {
                return Err(format!("cannot wait for `{}`: {error}", display(command)));
            }
        }
    }
}

/// Runs `command` and returns its stdout as UTF-8; stderr is passed through.
pub(crate) fn output(command: &mut Command) -> TaskResult<String> {
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| not_started(command, &error))?;
    if !out.status.success() {
        return Err(failed(command, out.status));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| format!("command `{}` printed non-UTF-8 output", display(command)))
}

/// The output of `cargo metadata --format-version 1 --no-deps` for the workspace.
pub(crate) fn metadata(root: &Path) -> TaskResult<serde_json::Value> {
    let mut command = cargo_command(root);
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    let text = output(&mut command)?;
    serde_json::from_str(&text).map_err(|error| {
        format!(
            "cannot parse the output of `{}`: {error}",
            display(&command)
        )
    })
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR` and `build.target-dir`).
pub(crate) fn target_dir(metadata: &serde_json::Value) -> TaskResult<PathBuf> {
    metadata
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` reported no target_directory".to_owned())
}

/// A fresh temporary directory with a recognisable name, removed when dropped.
pub(crate) fn temp_dir(prefix: &str) -> TaskResult<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|error| format!("cannot create a temporary directory: {error}"))
}

/// Installs the nightly toolchain's `components` (e.g. `miri`, `rust-src`) that are missing.
/// Installing needs the network; offline it fails with rustup's reason.
pub(crate) fn ensure_nightly_components(root: &Path, components: &[&str]) -> TaskResult {
    let mut list = nightly("rustup", root);
    list.args(["component", "list", "--installed"]);
    let out = list.stderr(Stdio::null()).output().map_err(|e| {
        format!(
            "cannot run `rustup +nightly component list --installed`: {e} (is rustup installed?)"
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "the nightly toolchain is missing: install it with `rustup toolchain install nightly \
             --component {}`",
            components.join(" --component ")
        ));
    }
    let installed = String::from_utf8_lossy(&out.stdout);
    // Components are listed as `rust-src` or with the host triple: `miri-x86_64-...`.
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|name| {
            !installed
                .lines()
                .any(|line| line == *name || line.starts_with(&format!("{name}-")))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing nightly components: {}", missing.join(" "));
    let mut add = Command::new("rustup");
    add.args(["component", "add", "--toolchain", "nightly"])
        .args(&missing);
    run(&mut add).map_err(|e| {
        format!(
            "cannot install {} ({e}); without network access install later with \
             `rustup component add --toolchain nightly {}`",
            missing.join(" and "),
            missing.join(" ")
        )
    })
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir_all(dir: &Path) -> TaskResult {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))
}

/// The outcome of each step of a multi-step task, printed as a summary at the end.
///
/// Steps keep running after one fails, so one summary shows every failure.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    steps: Vec<(String, Duration, TaskResult)>,
}

impl Summary {
    /// Runs `step`, timing it and recording its outcome under `name`.
    pub(crate) fn step(&mut self, name: impl Into<String>, step: impl FnOnce() -> TaskResult) {
        let name = name.into();
        eprintln!("==> {name}");
        let start = Instant::now();
        let result = step();
        if let Err(message) = &result {
            eprintln!("error: {message}");
        }
        self.steps.push((name, start.elapsed(), result));
    }

    /// Records a step that was not run, with the reason.
    pub(crate) fn skip(&mut self, name: impl Into<String>, reason: &str) {
        let name = name.into();
        eprintln!("==> {name}: skipped ({reason})");
        self.steps.push((
            format!("{name} (skipped: {reason})"),
            Duration::ZERO,
            Ok(()),
        ));
    }

    /// Prints the summary to stdout; fails when any step failed.
    pub(crate) fn finish(self, title: &str) -> TaskResult {
        println!("\n{title} summary:");
        let mut failures = 0;
        for (name, elapsed, result) in &self.steps {
            let seconds = elapsed.as_secs_f64();
            match result {
                Ok(()) => println!("  ok     {seconds:7.1}s  {name}"),
                Err(message) => {
                    failures += 1;
                    println!("  FAILED {seconds:7.1}s  {name}\n         {message}");
                }
            }
        }
        if failures == 0 {
            println!("{title}: all {} steps passed", self.steps.len());
            Ok(())
        } else {
            Err(format!(
                "{title}: {failures} of {} steps failed (see the summary above)",
                self.steps.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut command = Command::new("cc");
        command
            .args(["-o", "a b", "it's", ""])
            .env("NRT_DYLIB_PATH", "/tmp/x.so");
        assert_eq!(
            display(&command),
            r"NRT_DYLIB_PATH=/tmp/x.so cc -o 'a b' 'it'\''s' ''"
        );
    }

    #[test]
    fn a_failing_command_names_itself_and_the_status() {
        let error = run(Command::new("false").arg("--flag")).unwrap_err();
        assert!(
            error.starts_with("command `false --flag` failed with exit status 1"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let error = run(&mut Command::new("/nonexistent/xtask-test-program")).unwrap_err();
        assert!(
            error.contains("cannot run `/nonexistent/xtask-test-program`"),
            "{error}"
        );
    }

    #[test]
    fn a_hung_command_is_killed() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let error = run_with_timeout(&mut command, Duration::from_millis(200)).unwrap_err();
        assert!(error.contains("did not finish"), "{error}");
    }
}
