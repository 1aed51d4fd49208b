//! The `neuron-dp-server` binary as an operator runs it: `serve MODEL.neff --port 0` over the
//! mock, answering on the port it prints, and SIGTERM stopping it with exit status 0.
//!
//! This test binary starts no runtime of its own, so the child can take its cores.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nrt_mock::neff::{DType, MockModel, Op};

#[test]
fn serve_answers_then_sigterm_exits_zero() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-binary");
    std::fs::create_dir_all(dir.join("locks")).expect("create the test directory");
    let neff = dir.join("demo.neff");
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
    std::fs::write(&neff, model.to_neff_bytes()).expect("write the NEFF");

    let mut child = Command::new(env!("CARGO_BIN_EXE_neuron-dp-server"))
        .args(["serve", "--port", "0", "--device-ids", "nc:0,nc:1"])
        .arg(&neff)
        .env("NRT_DYLIB_PATH", nrt_mock::testing::library_path())
        .env("NRT_MOCK_LOCK_DIR", dir.join("locks"))
        .env("RUST_LOG", "info")
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let reply: serde_json::Value = runtime.block_on(async {
        let client = reqwest::Client::new();
        let ready = client
            .get(format!("http://{address}/v2/health/ready"))
            .send()
            .await
            .expect("GET ready");
        assert_eq!(ready.status().as_u16(), 200);
        client
            .post(format!("http://{address}/v2/models/demo/infer"))
            .json(&serde_json::json!({"inputs": [
                {"name": "x", "datatype": "FP32", "shape": [3, 2], "data": [1, 2, 3, 4, 5, 6]}
            ]}))
            .send()
            .await
            .expect("POST infer")
            .json()
            .await
            .expect("a JSON reply")
    });
    assert_eq!(
        reply["outputs"][0]["data"],
        serde_json::json!([3.0, 5.0, 7.0, 9.0, 11.0, 13.0]),
        "{reply}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for the server");
    let rest = drain.join().expect("the log");
    assert_eq!(status.code(), Some(0), "{log}{rest}");
    assert!(
        rest.contains("stopped: 1 requests completed"),
        "{log}{rest}"
    );
}
