//! `neuron-dp serve`: runs `neuron-dp-server serve` in its place. With stand-in servers
//! (shell scripts that print their process id and arguments): the arguments arrive
//! untouched, the process is replaced (same id, the server's exit status), the server next
//! to neuron-dp wins over PATH, PATH is searched when there is none, and no server at all is
//! a one-line error saying how to build one. With the real server on the mock: `--help` is
//! the server's, and SIGTERM reaches the server, which drains and exits 0.
//!
//! The real server is `NEURON_DP_SERVER_BIN` when set (as `cargo xtask python-test` sets it),
//! else built by `cargo build -p neuron-dp-server` into this build's target directory.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nrt_mock::neff::{DType, MockModel, Op};

mod common;

use common::{Scratch, stderr, stdout};

const NEURON_DP: &str = env!("CARGO_BIN_EXE_neuron-dp");

/// Puts `source` at `dir/name`: a hard link (same file system), else a copy.
fn place(source: &Path, dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the directory");
    let target = dir.join(name);
    if std::fs::hard_link(source, &target).is_err() {
        std::fs::copy(source, &target).expect("copy the executable");
    }
    target
}

/// A stand-in `neuron-dp-server` in `dir` that prints `tag`, its process id and each
/// argument in `<>` on a line, and exits 7.
fn stand_in(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir).expect("create the directory");
    let path = dir.join("neuron-dp-server");
    let script = format!(
        "#!/bin/sh\necho {tag}\necho \"$$\"\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n\
         exit 7\n"
    );
    std::fs::write(&path, script).expect("write the stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
}

/// Runs `neuron_dp ARGS` with `PATH` set to `path`: its process id and its output.
fn run(neuron_dp: &Path, args: &[&OsStr], path: &Path) -> (u32, Output) {
    let child = Command::new(neuron_dp)
        .args(args)
        .env("PATH", path)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start neuron-dp");
    let pid = child.id();
    (pid, child.wait_with_output().expect("wait for neuron-dp"))
}

#[test]
fn arguments_reach_the_server_beside_it_untouched_in_the_same_process() {
    let s = Scratch::new();
    let bin = s.path("bin");
    let neuron_dp = place(Path::new(NEURON_DP), &bin, "neuron-dp");
    stand_in(&bin, "beside");
    stand_in(&s.path("on-path"), "on-path");
    let args: Vec<&OsStr> = [
        "serve",
        "--",
        "-odd.neff",
        "--help",
        "-h",
        "--model=a=x.neff,y.neff",
        "--port",
        "0",
        "two words",
        "",
        "--",
        "--version",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let (pid, output) = run(&neuron_dp, &args, &s.path("on-path"));
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "beside",
        "the server next to neuron-dp wins: {text}"
    );
    assert_eq!(lines[1], pid.to_string(), "exec'd, not a child: {text}");
    let expected: Vec<String> = std::iter::once("serve")
        .chain(args[1..].iter().map(|a| a.to_str().expect("UTF-8")))
        .map(|a| format!("<{a}>"))
        .collect();
    assert_eq!(lines[2..], expected, "{text}");
    assert_eq!(stderr(&output), "");
}

#[test]
fn the_server_on_path_runs_when_none_is_beside() {
    let s = Scratch::new();
    let neuron_dp = place(Path::new(NEURON_DP), &s.path("bin"), "neuron-dp");
    stand_in(&s.path("second"), "second");
    let path = std::env::join_paths([s.path("empty"), s.path("second")]).expect("a PATH");
    let (pid, output) = run(
        &neuron_dp,
        &[OsStr::new("serve"), OsStr::new("m.neff")],
        Path::new(&path),
    );
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("second\n{pid}\n<serve>\n<m.neff>\n")
    );
}

#[test]
fn without_a_server_the_error_says_how_to_build_one() {
    let s = Scratch::new();
    let neuron_dp = place(Path::new(NEURON_DP), &s.path("bin"), "neuron-dp");
    // A file of that name that cannot be run is not a server.
    std::fs::create_dir_all(s.path("on-path")).expect("create the directory");
    std::fs::write(s.path("on-path/neuron-dp-server"), "not a program").expect("write");
    for args in [&["serve", "m.neff"][..], &["serve", "--help"], &["serve"]] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (_, output) = run(&neuron_dp, &args, &s.path("on-path"));
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(stdout(&output), "");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "one line: {message}");
        assert!(
            message.starts_with("neuron-dp: error: neuron-dp-server is not in ")
                && message.contains("or on PATH")
                && message.contains("`cargo build -p neuron-dp-server`")
                && message.contains("`cargo install --path dataparallel/server`"),
            "{message}"
        );
    }
}

/// The real server: `NEURON_DP_SERVER_BIN`, else built (once per test process) into this
/// build's target directory, next to neuron-dp.
fn real_server() -> PathBuf {
    static SERVER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SERVER.get_or_init(find_or_build_server).clone()
}

fn find_or_build_server() -> PathBuf {
    if let Some(binary) = std::env::var_os("NEURON_DP_SERVER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(binary);
    }
    let beside = Path::new(NEURON_DP)
        .parent()
        .expect("neuron-dp's directory");
    let profile = beside
        .file_name()
        .and_then(OsStr::to_str)
        .expect("a profile directory");
    let target_dir = beside.parent().expect("the target directory");
    let mut build = Command::new(env!("CARGO"));
    build
        .args([
            "build",
            "--package",
            "neuron-dp-server",
            "--bin",
            "neuron-dp-server",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p neuron-dp-server failed");
    let binary = beside.join("neuron-dp-server");
    assert!(binary.is_file(), "cargo built no {}", binary.display());
    binary
}

/// neuron-dp next to the real server, in the scratch directory.
fn with_real_server(s: &Scratch) -> PathBuf {
    let bin = s.path("bin");
    place(&real_server(), &bin, "neuron-dp-server");
    place(Path::new(NEURON_DP), &bin, "neuron-dp")
}

#[test]
fn help_is_the_servers() {
    let s = Scratch::new();
    let neuron_dp = with_real_server(&s);
    let output = Command::new(&neuron_dp)
        .args(["serve", "--help"])
        .output()
        .expect("run neuron-dp serve --help");
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    assert!(
        help.contains("Usage: neuron-dp-server serve [OPTIONS] [MODEL.neff]...")
            && help.contains("--model <NAME=PATH[,PATH...]>")
            && help.contains("--max-reading <N>"),
        "{help}"
    );
    // The same text as the server's own.
    let own = Command::new(s.path("bin/neuron-dp-server"))
        .args(["serve", "--help"])
        .output()
        .expect("run neuron-dp-server serve --help");
    assert_eq!(stdout(&own), help);
    // A usage error is the server's too (clap's exit status 2).
    let output = Command::new(&neuron_dp)
        .args(["serve", "--no-such-option"])
        .output()
        .expect("run neuron-dp serve");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("Usage: neuron-dp-server serve"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sigterm_reaches_the_server_which_drains_and_exits_zero() {
    let s = Scratch::new();
    let neuron_dp = with_real_server(&s);
    let neff = s.neff(
        "affine.neff",
        &MockModel::new(
            "affine",
            Op::Affine {
                scale: 2.0,
                bias: 1.0,
            },
        )
        .input("x", DType::Float32, &[2, 2])
        .output("y", DType::Float32, &[2, 2])
        .exec_us(50),
    );
    let mut command = Command::new(&neuron_dp);
    command.args(["serve", &neff, "--port", "0", "--device-ids", "nc:0,nc:1"]);
    for var in nrt_mock::testing::CLEARED {
        command.env_remove(var);
    }
    let mut child = command
        .env("NRT_DYLIB_PATH", nrt_mock::testing::library_path())
        .env("NRT_MOCK_LOCK_DIR", s.path("locks"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start neuron-dp serve");
    let mut log = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let address = loop {
        let mut line = String::new();
        if log.read_line(&mut line).expect("read the log") == 0 {
            let _ = child.kill();
            panic!("the server exited before serving:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.split('/').next().expect("host:port").to_owned();
        }
    };
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    stream
        .write_all(b"GET /v2/health/ready HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for the server");
    let mut rest = String::new();
    log.read_to_string(&mut rest)
        .expect("read the rest of the log");
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(
        rest.contains("model \"affine\" stopped: 0 requests completed"),
        "{seen}{rest}"
    );
}
