//! The `neuron-dp-server` binary as an operator runs it: `serve MODEL.neff --port 0` (and
//! `--model NAME=PATH` for more models) over the mock, answering on the port it prints, and
//! SIGTERM stopping it with exit status 0 after draining every model's batcher; bad model
//! lists refused in one line before anything is loaded.
//!
//! This test binary starts no runtime of its own, so the child can take its cores.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nrt_mock::neff::{DType, MockModel, Op};

/// `affine {2, 1}` over float32 `x` `[2, 2]`, written to `dir/NAME.neff`.
fn affine_neff(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.neff"));
    let model = MockModel::new(
        "affine",
        Op::Affine {
            scale: 2.0,
            bias: 1.0,
        },
    )
    .input("x", DType::Float32, &[2, 2])
    .output("y", DType::Float32, &[2, 2])
    .exec_us(50);
    std::fs::write(&path, model.to_neff_bytes()).expect("write the NEFF");
    path
}

/// `identity` over int32 `ids` `[1, 3]`, written to `dir/NAME.neff`.
fn identity_neff(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.neff"));
    let model = MockModel::new("identity", Op::Identity)
        .input("ids", DType::Int32, &[1, 3])
        .output("ids_out", DType::Int32, &[1, 3])
        .exec_us(50);
    std::fs::write(&path, model.to_neff_bytes()).expect("write the NEFF");
    path
}

/// A test's own directory, with a lock directory for the mock's cores.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("server-binary")
        .join(name);
    std::fs::create_dir_all(dir.join("locks")).expect("create the test directory");
    dir
}

/// `neuron-dp-server serve ARGS --port 0` on the mock, with its lock directory in `dir`.
fn server(dir: &Path, args: &[&OsStr]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_neuron-dp-server"));
    command
        .args(["serve", "--port", "0", "--device-ids", "nc:0,nc:1"])
        .args(args)
        .env("NRT_DYLIB_PATH", nrt_mock::testing::library_path())
        .env("NRT_MOCK_LOCK_DIR", dir.join("locks"))
        .env("RUST_LOG", "info");
    command
}

/// A server binary running until SIGTERM, with its log so far.
struct Child {
    child: std::process::Child,
    address: String,
    log: String,
    drain: std::thread::JoinHandle<String>,
}

impl Child {
    /// Starts `command` and reads its log until it says where it listens.
    fn start(mut command: Command) -> Child {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start neuron-dp-server");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut log = String::new();
        let address = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read the log") == 0 {
                let _ = child.kill();
                panic!("the server exited before serving:\n{log}");
            }
            log.push_str(&line);
            if let Some(rest) = line.split("on http://").nth(1) {
                break rest.split('/').next().expect("host:port").to_owned();
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        let drain = std::thread::spawn(move || {
            let mut rest = String::new();
            for line in stderr.lines().map_while(Result::ok) {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        Child {
            child,
            address,
            log,
            drain,
        }
    }

    /// POSTs `body` to `/v2/models/{model}/infer`: the status and the reply.
    fn infer(&self, model: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let ready = client
                .get(format!("http://{}/v2/health/ready", self.address))
                .send()
                .await
                .expect("GET ready");
            assert_eq!(ready.status().as_u16(), 200);
            let reply = client
                .post(format!("http://{}/v2/models/{model}/infer", self.address))
                .json(body)
                .send()
                .await
                .expect("POST infer");
            let status = reply.status().as_u16();
            (status, reply.json().await.expect("a JSON reply"))
        })
    }

    /// Sends SIGTERM, waits, and returns the exit code and the whole log.
    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait for the server");
        let rest = self.drain.join().expect("the log");
        (status.code(), format!("{}{rest}", self.log))
    }
}

#[test]
fn serve_answers_then_sigterm_exits_zero() {
    let dir = test_dir("one");
    let neff = affine_neff(&dir, "demo");
    let server = Child::start(server(&dir, &[neff.as_os_str()]));
    let (status, reply) = server.infer(
        "demo",
        &serde_json::json!({"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]}
        ]}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["outputs"][0]["data"],
        serde_json::json!([3.0, 5.0, 7.0, 9.0, 11.0, 13.0]),
        "{reply}"
    );
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("model \"demo\" stopped: 1 requests completed"),
        "{log}"
    );
}

#[test]
fn two_models_answer_then_sigterm_drains_both() {
    let dir = test_dir("two");
    let affine = affine_neff(&dir, "affine");
    let ids = identity_neff(&dir, "ids");
    let mut spec = std::ffi::OsString::from("pair=");
    spec.push(&ids);
    // The positional model, named by --model-name, and one --model.
    let server = Child::start(server(
        &dir,
        &[
            affine.as_os_str(),
            OsStr::new("--model-name"),
            OsStr::new("demo"),
            OsStr::new("--model"),
            &spec,
        ],
    ));
    assert!(
        server.log.contains("serving model \"demo\""),
        "{}",
        server.log
    );
    let (status, reply) = server.infer(
        "demo",
        &serde_json::json!({"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}
        ]}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([3.0, 5.0]));
    for _ in 0..2 {
        let (status, reply) = server.infer(
            "pair",
            &serde_json::json!({"inputs": [
                {"name": "ids", "datatype": "INT32", "shape": [1, 3], "data": [7, -8, 9]}
            ]}),
        );
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["model_name"], "pair");
        assert_eq!(reply["outputs"][0]["data"], serde_json::json!([7, -8, 9]));
    }
    let (code, log) = server.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("serving model \"pair\""), "{log}");
    assert!(
        log.contains("model \"demo\" stopped: 1 requests completed"),
        "{log}"
    );
    assert!(
        log.contains("model \"pair\" stopped: 2 requests completed"),
        "{log}"
    );
}

#[test]
fn bad_model_lists_are_one_line_errors_before_anything_loads() {
    let dir = test_dir("refused");
    let neff = affine_neff(&dir, "demo");
    let spec = |name: &str| {
        let mut spec = std::ffi::OsString::from(format!("{name}="));
        spec.push(&neff);
        spec
    };
    let many: Vec<std::ffi::OsString> = (0..=neuron_dp_server::MAX_MODELS)
        .flat_map(|i| ["--model".into(), spec(&format!("m{i}"))])
        .collect();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![neff.clone().into(), "--model".into(), spec("demo")],
            "two models are named \"demo\"; give each --model (and --model-name) its own name",
        ),
        (
            vec!["--model".into(), spec("a"), "--model".into(), spec("a")],
            "two models are named \"a\"",
        ),
        (
            vec!["--model".into(), spec("a b")],
            "model name \"a b\" cannot be a URL path segment",
        ),
        (
            vec![
                "--model-name".into(),
                "x".into(),
                "--model".into(),
                spec("a"),
            ],
            "--model-name names the model given as MODEL.neff",
        ),
        (many, "a server serves at most 64"),
    ];
    for (args, needle) in cases {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        // No runtime library: a check that came after loading would fail differently.
        let output = server(&dir, &args)
            .env("NRT_DYLIB_PATH", dir.join("no-such-libnrt.so"))
            .output()
            .expect("run neuron-dp-server");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{needle}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("neuron-dp-server: error: ") && stderr.contains(needle),
            "{needle}: {stderr}"
        );
    }
}
