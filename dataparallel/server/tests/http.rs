//! The server against the mock, over HTTP on loopback: health and readiness, metadata, JSON
//! inference checked against a direct engine forward, requested outputs and ids, binary
//! tensor data, bad requests (400, one line), unknown models (404), a full queue (503),
//! concurrent requests, metrics and graceful shutdown.
//!
//! Timing: nothing asserts how long anything takes. Each test uses its own cores, so the
//! tests of this binary can run in parallel.

mod common;

use std::time::Duration;

use common::{Running, affine_model, engine, error_message, identity_model, metric};
use dataparallel::Input;
use dataparallel::batcher::BatcherConfig;
use neuron_dp_server::ServerConfig;
use serde_json::{Value, json};

const SCALE: f32 = 1.5;
const BIAS: f32 = -0.25;

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metadata() {
    let server = Running::start(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:0,nc:1"),
        ServerConfig::new("affine"),
    )
    .await;
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    assert_eq!(server.get("/v2/models/affine/ready").await.0, 200);

    let (status, meta) = server.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "neuron-dp-server");
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["extensions"], json!(["binary_tensor_data"]));

    let (status, model) = server.get("/v2/models/affine").await;
    assert_eq!(status, 200);
    assert_eq!(model["name"], "affine");
    assert_eq!(
        model["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    );
    assert_eq!(
        model["outputs"],
        json!([{"name": "y", "datatype": "FP32", "shape": [-1, 3]}])
    );

    for (path, get) in [
        ("/v2/models/nope", true),
        ("/v2/models/nope/ready", true),
        ("/v2/models/nope/infer", false),
    ] {
        let (status, body) = if get {
            server.get(path).await
        } else {
            server.post(path, &json!({"inputs": []})).await
        };
        assert_eq!(status, 404, "{path}: {body}");
        let message = error_message(&body);
        assert!(
            message.contains("\"nope\"") && message.contains("\"affine\""),
            "{message}"
        );
    }
    let (status, body) = server.get("/v2/nothing/here").await;
    assert_eq!(status, 404, "{body}");
    assert!(error_message(&body).contains("/v2/nothing/here"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_inference_matches_a_direct_forward() {
    let engine = engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:2,nc:3");
    let x: Vec<f32> = (0..5 * 3).map(|i| i as f32 * 0.37 - 2.0).collect();
    let direct = engine
        .forward(&[Input::f32(&[5, 3], &x)])
        .expect("a direct forward");
    let expected: Vec<f32> = direct[0].to_vec::<f32>().expect("float32 outputs");
    let server = Running::start(engine, ServerConfig::new("affine")).await;

    // Nested data, with an id.
    let nested: Vec<Vec<f32>> = x.chunks(3).map(<[f32]>::to_vec).collect();
    let (status, body) = server
        .post(
            "/v2/models/affine/infer",
            &json!({
                "id": "req-42",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [5, 3], "data": nested}],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], "affine");
    assert_eq!(body["id"], "req-42");
    let outputs = body["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "y");
    assert_eq!(outputs[0]["datatype"], "FP32");
    assert_eq!(outputs[0]["shape"], json!([5, 3]));
    let got = floats(&outputs[0]["data"]);
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    // Flat data, no id: none in the response.
    let (status, body) = server
        .post(
            "/v2/models/affine/infer",
            &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [5, 3], "data": x}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("id").is_none(), "{body}");
    assert_eq!(floats(&body["outputs"][0]["data"]), expected);

    let metrics = server.metrics().await;
    // The text format: every sample line is `name{labels} value`, every family typed.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().expect("a name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| metrics.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{line}");
    }
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_requests_total{model=\"affine\",outcome=\"success\"}"
        ),
        2.0
    );
    assert!(
        metric(
            &metrics,
            "neuron_dp_core_executions_total{model=\"affine\",core=\"nc:2\"}"
        ) >= 1.0
    );
    assert!(metrics.contains("neuron_dp_request_latency_seconds_count{model=\"affine\"} 2"));
    let stats = server.stop().await;
    assert_eq!(stats.completed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_inputs_requested_outputs_and_datatypes() {
    let server = Running::start(engine(identity_model(2), "nc:6"), ServerConfig::new("id")).await;
    let (_, model) = server.get("/v2/models/id").await;
    assert_eq!(
        model["inputs"],
        json!([
            {"name": "ids", "datatype": "INT64", "shape": [-1, 3]},
            {"name": "half", "datatype": "FP16", "shape": [-1, 2]},
        ])
    );
    let ids = json!([[i64::MIN, -1, 7], [i64::MAX, 0, 123_456_789_012_i64]]);
    let half = json!([0.5, -2.0, 1024.0, 0.125]);
    // Inputs in another order than the model's; only the second output asked for.
    let request = json!({
        "inputs": [
            {"name": "half", "datatype": "FP16", "shape": [2, 2], "data": half},
            {"name": "ids", "datatype": "INT64", "shape": [2, 3], "data": ids},
        ],
        "outputs": [{"name": "ids_out"}],
    });
    let (status, body) = server.post("/v2/models/id/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{body}");
    assert_eq!(outputs[0]["name"], "ids_out");
    assert_eq!(outputs[0]["datatype"], "INT64");
    assert_eq!(outputs[0]["shape"], json!([2, 3]));
    assert_eq!(
        outputs[0]["data"],
        json!([i64::MIN, -1, 7, i64::MAX, 0, 123_456_789_012_i64])
    );

    // Both outputs, in the order asked.
    let mut request = request;
    request["outputs"] = json!([{"name": "half_out"}, {"name": "ids_out"}]);
    let (status, body) = server.post("/v2/models/id/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "half_out");
    assert_eq!(body["outputs"][0]["datatype"], "FP16");
    assert_eq!(body["outputs"][0]["data"], half);
    assert_eq!(body["outputs"][1]["name"], "ids_out");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensor_data_in_and_out() {
    let server = Running::start(
        engine(identity_model(2), "nc:7,nc:12"),
        ServerConfig::new("id"),
    )
    .await;
    let ids: Vec<i64> = vec![1, -2, 3, i64::MAX, 5, -6, 7, 8, 9];
    let half: Vec<u16> = [1.0f32, 2.5, -3.0, 0.0, 65504.0, -0.5]
        .iter()
        .map(|&v| half_bits(v))
        .collect();
    let ids_bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    let half_bytes: Vec<u8> = half.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = json!({
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [3, 3],
             "parameters": {"binary_data_size": ids_bytes.len()}},
            {"name": "half", "datatype": "FP16", "shape": [3, 2],
             "parameters": {"binary_data_size": half_bytes.len()}},
        ],
        "outputs": [
            {"name": "ids_out", "parameters": {"binary_data": true}},
            {"name": "half_out"},
        ],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&ids_bytes);
    body.extend_from_slice(&half_bytes);
    let response = server
        .client
        .post(server.url("/v2/models/id/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let json_length: usize = response
        .headers()
        .get("inference-header-content-length")
        .expect("the header length in the response")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    let bytes = response.bytes().await.expect("the body");
    let (json_part, binary) = bytes.split_at(json_length);
    let reply: Value = serde_json::from_slice(json_part).expect("the JSON header");
    assert_eq!(reply["outputs"][0]["name"], "ids_out");
    assert_eq!(
        reply["outputs"][0]["parameters"]["binary_data_size"],
        ids_bytes.len()
    );
    assert!(reply["outputs"][0].get("data").is_none());
    assert_eq!(binary, ids_bytes.as_slice(), "the ids, bit for bit");
    // The JSON output: the float16 values as numbers.
    assert_eq!(
        floats(&reply["outputs"][1]["data"]),
        [1.0, 2.5, -3.0, 0.0, 65504.0, -0.5]
    );

    // binary_data_output for every output.
    let mut body = json!({
        "parameters": {"binary_data_output": true},
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [3, 3], "data": ids},
            {"name": "half", "datatype": "FP16", "shape": [3, 2],
             "parameters": {"binary_data_size": half_bytes.len()}},
        ],
    })
    .to_string()
    .into_bytes();
    let length = body.len();
    body.extend_from_slice(&half_bytes);
    let response = server
        .client
        .post(server.url("/v2/models/id/infer"))
        .header("Inference-Header-Content-Length", length)
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.expect("the body");
    let mut expected = ids_bytes.clone();
    expected.extend_from_slice(&half_bytes);
    assert!(
        bytes.ends_with(&expected),
        "both outputs, in order, as binary"
    );
    server.stop().await;
}

/// The IEEE binary16 bits of `v` (exactly representable values only).
fn half_bits(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_with_one_line() {
    let server = Running::start(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:8"),
        ServerConfig::new("affine").batcher(BatcherConfig::default().max_batch_rows(8)),
    )
    .await;
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]});
    let ok = vec![1.0f32; 6];
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "wrong shape",
            input(json!([2, 4]), "FP32", json!(ok)),
            "shape",
        ),
        ("rank", input(json!([6]), "FP32", json!(ok)), "shape"),
        (
            "negative dim",
            input(json!([-2, 3]), "FP32", json!(ok)),
            "shape",
        ),
        (
            "zero rows",
            input(json!([0, 3]), "FP32", json!([])),
            "shape",
        ),
        (
            "too many rows",
            input(json!([9, 3]), "FP32", json!(vec![0.0; 27])),
            "1 to 8 rows",
        ),
        (
            "dtype",
            input(json!([2, 3]), "INT32", json!([1, 2, 3, 4, 5, 6])),
            "datatype",
        ),
        (
            "unknown dtype",
            input(json!([2, 3]), "FP128", json!(ok)),
            "datatype",
        ),
        (
            "too few",
            input(json!([2, 3]), "FP32", json!([1.0, 2.0])),
            "elements",
        ),
        (
            "too many",
            input(json!([2, 3]), "FP32", json!(vec![1.0; 7])),
            "elements",
        ),
        (
            "not a number",
            input(json!([2, 3]), "FP32", json!(["a", 1, 2, 3, 4, 5])),
            "not a number",
        ),
        (
            "no data",
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3]}]}),
            "no \"data\"",
        ),
        (
            "unknown input",
            json!({"inputs": [{"name": "z", "datatype": "FP32", "shape": [2, 3], "data": ok}]}),
            "unknown input",
        ),
        ("no inputs", json!({"inputs": []}), "inputs"),
        (
            "unknown output",
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": ok}], "outputs": [{"name": "q"}]}),
            "unknown output",
        ),
        (
            "missing field",
            json!({"inputs": [{"name": "x", "shape": [2, 3], "data": ok}]}),
            "datatype",
        ),
        (
            "bad timeout",
            json!({"parameters": {"timeout": "soon"}, "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": ok}]}),
            "timeout",
        ),
        (
            "a 10 000-character name, quoted and cut",
            json!({"inputs": [{"name": "n".repeat(10_000), "datatype": "FP32", "shape": [2, 3], "data": ok}]}),
            "(10000 bytes)",
        ),
        (
            "a shape of 20 000 dims, message cut",
            json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": vec![1; 20_000], "data": ok}]}),
            "message cut",
        ),
    ];
    for (what, body, needle) in cases {
        let (status, reply) = server.post("/v2/models/affine/infer", &body).await;
        assert_eq!(status, 400, "{what}: {reply}");
        let message = error_message(&reply);
        assert!(message.contains(needle), "{what}: {message}");
        assert!(message.len() < 1200, "{what}: a bounded message");
    }
    let (status, reply) = server
        .post_raw("/v2/models/affine/infer", b"{\"inputs\": [".to_vec())
        .await;
    assert_eq!(status, 400, "{reply}");
    error_message(&reply);

    // Over the body limit: 413, in the protocol's error form.
    let huge = vec![b' '; 8 * 3 * 32 + 64 * 1024 + 1];
    let (status, reply) = server.post_raw("/v2/models/affine/infer", huge).await;
    assert_eq!(status, 413, "{reply}");
    assert!(error_message(&reply).contains("limit"));

    // The server still serves.
    let (status, reply) = server
        .post(
            "/v2/models/affine/infer",
            &input(json!([2, 3]), "FP32", json!(ok)),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_requests_total{model=\"affine\",outcome=\"rejected\"}"
        ),
        20.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_get_their_rows() {
    let server = std::sync::Arc::new(
        Running::start(
            engine(affine_model(4, 3, SCALE, BIAS, 200), "nc:9,nc:10"),
            ServerConfig::new("affine"),
        )
        .await,
    );
    let mut tasks = Vec::new();
    for tag in 0..48usize {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let rows = 1 + tag % 3;
            let x: Vec<f32> = (0..rows * 3).map(|i| (tag * 16 + i) as f32).collect();
            let (status, body) = server
                .post(
                    "/v2/models/affine/infer",
                    &json!({
                        "id": tag.to_string(),
                        "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 3], "data": x}],
                    }),
                )
                .await;
            assert_eq!(status, 200, "{tag}: {body}");
            assert_eq!(body["id"], tag.to_string());
            let expected: Vec<f32> = x.iter().map(|v| v * SCALE + BIAS).collect();
            assert_eq!(floats(&body["outputs"][0]["data"]), expected, "{tag}");
        }));
    }
    for task in tasks {
        task.await.expect("a request task");
    }
    let server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    let stats = server.stop().await;
    assert_eq!(stats.completed, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_at_once() {
    // One slow core, one batch at a time, room for one queued request.
    let server = std::sync::Arc::new(
        Running::start(
            engine(affine_model(4, 3, SCALE, BIAS, 1_000_000), "nc:11"),
            ServerConfig::new("affine").batcher(
                BatcherConfig::default()
                    .max_batch_rows(4)
                    .max_delay(Duration::ZERO)
                    .queue_capacity(1)
                    .batches_in_flight(1),
            ),
        )
        .await,
    );
    let request = |rows: usize| {
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 3],
                           "data": vec![1.0f32; rows * 3]}]})
    };
    let send = |rows: usize| {
        let server = std::sync::Arc::clone(&server);
        let body = request(rows);
        tokio::spawn(async move { server.post("/v2/models/affine/infer", &body).await })
    };
    // The blocker fills a batch by itself and holds the one batcher thread.
    let blocker = send(4);
    wait_for(&server, |m| {
        metric(m, "neuron_dp_accepted_total") == 1.0 && metric(m, "neuron_dp_queue_depth") == 0.0
    })
    .await;
    let queued = send(1);
    wait_for(&server, |m| metric(m, "neuron_dp_queue_depth") == 1.0).await;
    let (status, reply) = server.post("/v2/models/affine/infer", &request(1)).await;
    assert_eq!(status, 503, "{reply}");
    assert!(error_message(&reply).contains("queue is full"));
    assert_eq!(blocker.await.expect("blocker").0, 200);
    assert_eq!(queued.await.expect("queued").0, 200);
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "neuron_dp_queue_full_total"), 1.0);
    let server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    server.stop().await;
}

/// Polls `/metrics` until `done` holds (bounded by a generous limit).
async fn wait_for(server: &Running, done: impl Fn(&str) -> bool) {
    for _ in 0..30_000 {
        if done(&server.metrics().await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the server never reached the state waited for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_core_health() {
    let engine = engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:14");
    let physical = engine
        .physical_cores()
        .next()
        .flatten()
        .expect("the mock reports physical cores");
    let server = Running::start(std::sync::Arc::clone(&engine), ServerConfig::new("affine")).await;
    let request = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                      "data": [1.0, 2.0, 3.0]}]});
    // Every execution on the one core fails with a hardware-class status: after
    // DEFAULT_QUARANTINE_AFTER failures in a row the core is quarantined.
    let status = neuron_rt::Status::ExecUnitUnrecoverable.raw();
    nrt_mock::control::set_faults(&format!("{physical}:*:{status}")).expect("set faults");
    for _ in 0..dataparallel::DEFAULT_QUARANTINE_AFTER {
        let (code, reply) = server.post("/v2/models/affine/infer", &request).await;
        assert_eq!(code, 500, "{reply}");
        error_message(&reply);
    }
    nrt_mock::control::set_faults("").expect("clear faults");
    for path in ["/v2/health/ready", "/v2/models/affine/ready"] {
        let (code, reply) = server.get(path).await;
        assert_eq!(code, 503, "{path}: {reply}");
        assert!(error_message(&reply).contains("no core is in service"));
    }
    assert_eq!(server.get("/v2/health/live").await.0, 200, "still alive");
    let (code, _) = server.post("/v2/models/affine/infer", &request).await;
    assert_eq!(code, 503, "not ready: inference refused");
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_core_healthy{model=\"affine\",core=\"nc:14\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_core_failures_total{model=\"affine\",core=\"nc:14\"}"
        ),
        3.0
    );

    engine
        .readmit(neuron_rt::DeviceId::new(14))
        .expect("re-admit");
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    let (code, reply) = server.post("/v2/models/affine/infer", &request).await;
    assert_eq!(code, 200, "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let server = std::sync::Arc::new(
        Running::start(
            engine(affine_model(4, 3, SCALE, BIAS, 200_000), "nc:15"),
            ServerConfig::new("affine").batcher(
                BatcherConfig::default()
                    .max_batch_rows(4)
                    .max_delay(Duration::ZERO)
                    .batches_in_flight(1),
            ),
        )
        .await,
    );
    let base = server.base.clone();
    let mut tasks = Vec::new();
    for tag in 0..4usize {
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let x = vec![tag as f32; 3];
            let (status, body) = server
                .post(
                    "/v2/models/affine/infer",
                    &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                        "data": x}]}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                floats(&body["outputs"][0]["data"]),
                vec![tag as f32 * SCALE + BIAS; 3]
            );
        }));
    }
    // Every request accepted, then shut down while they run or wait.
    wait_for(&server, |m| metric(m, "neuron_dp_accepted_total") == 4.0).await;
    server.signal_shutdown();
    for task in tasks {
        task.await.expect("a request in flight completes");
    }
    let server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    let stats = server.stop().await;
    assert_eq!(stats.completed, 4);
    // The listener is closed.
    let refused = reqwest::Client::new()
        .get(format!("{base}/v2/health/live"))
        .send()
        .await;
    assert!(refused.is_err(), "connections refused after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_times_out_in_the_queue_gets_503() {
    // One slow core, one batch at a time: a request queued behind the blocker waits at least
    // one execution (a second), far past its 1 ms timeout.
    let server = std::sync::Arc::new(
        Running::start(
            engine(affine_model(4, 3, SCALE, BIAS, 1_000_000), "nc:16"),
            ServerConfig::new("affine").batcher(
                BatcherConfig::default()
                    .max_batch_rows(4)
                    .max_delay(Duration::ZERO)
                    .batches_in_flight(1),
            ),
        )
        .await,
    );
    let blocker = {
        let server = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            server
                .post(
                    "/v2/models/affine/infer",
                    &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4, 3],
                                        "data": vec![0.0f32; 12]}]}),
                )
                .await
        })
    };
    wait_for(&server, |m| {
        metric(m, "neuron_dp_accepted_total") == 1.0 && metric(m, "neuron_dp_queue_depth") == 0.0
    })
    .await;
    let (status, reply) = server
        .post(
            "/v2/models/affine/infer",
            &json!({"parameters": {"timeout": 1000},
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                "data": [1.0, 2.0, 3.0]}]}),
        )
        .await;
    assert_eq!(status, 503, "{reply}");
    assert!(error_message(&reply).contains("deadline exceeded"));
    assert_eq!(blocker.await.expect("blocker").0, 200);
    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "neuron_dp_expired_total"), 1.0);
    let server = std::sync::Arc::into_inner(server).expect("the tasks are done");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_read_at_once_are_bounded() {
    use std::io::Write as _;

    let server = Running::start(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:17"),
        ServerConfig::new("affine").max_reading(1),
    )
    .await;
    let request = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                      "data": [1.0, 2.0, 3.0]}]});
    // A client that sends its headers and then stalls holds the one reading permit.
    let address = server.base.trim_start_matches("http://").to_owned();
    // (A few bytes on a fresh connection: the blocking write cannot block.)
    let mut stalled = std::net::TcpStream::connect(&address).expect("connect");
    stalled
        .write_all(
            b"POST /v2/models/affine/infer HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\"",
        )
        .expect("send the start of a request");
    wait_for(&server, |m| metric(m, "neuron_dp_requests_reading") == 1.0).await;
    let (status, reply) = server.post("/v2/models/affine/infer", &request).await;
    assert_eq!(status, 503, "{reply}");
    assert!(error_message(&reply).contains("already reading 1 requests"));

    // The stalled client goes away: its permit comes back and requests are served again.
    drop(stalled);
    wait_for(&server, |m| metric(m, "neuron_dp_requests_reading") == 0.0).await;
    let (status, reply) = server.post("/v2/models/affine/infer", &request).await;
    assert_eq!(status, 200, "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_curl_gets_the_readme_answer() {
    // The README's curl example, verbatim in its request and its answer.
    let server = Running::start(
        engine(affine_model(8, 4, 2.0, 1.0, 50), "nc:18"),
        ServerConfig::new("affine"),
    )
    .await;
    let url = server.url("/v2/models/affine/infer");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", &url, "-H", "content-type: application/json", "-d"])
            .arg(
                r#"{"id":"1","inputs":[{"name":"x","datatype":"FP32","shape":[2,4],"data":[[1,2,3,4],[5,6,7,8]]}]}"#,
            )
            .output()
    })
    .await
    .expect("the curl task")
    .expect("run curl (install it: the issue asks for a plain-curl check)");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        r#"{"model_name":"affine","id":"1","outputs":[{"name":"y","datatype":"FP32","shape":[2,4],"data":[3.0,5.0,7.0,9.0,11.0,13.0,15.0,17.0]}]}"#
    );
    server.stop().await;
}
