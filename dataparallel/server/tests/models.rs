//! Several models in one server, against the mock over HTTP on loopback: two models on the
//! same cores each answering with their own values and metadata, unknown models (404 naming
//! the served ones), refused names (duplicate, not a URL segment, one model too many),
//! readiness that needs every model, and `/metrics` with a `model` label on every sample.
//!
//! Timing: nothing asserts how long anything takes. Each test uses its own cores.

mod common;

use std::sync::Arc;

use common::{Running, affine_model, engine, error_message, identity_model, metric, runtime};
use dataparallel::{Config, DataParallel};
use neuron_dp_server::{MAX_MODELS, ModelConfig, ServeError, Server, ServerConfig};
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

/// `affine` and `id` (identity of an int64 and a float16 input), both on `cores`.
fn two_models(cores: &str) -> Server {
    let mut server = Server::new(
        engine(affine_model(4, 3, SCALE, BIAS, 50), cores),
        ServerConfig::new("affine"),
    )
    .expect("serve the affine model");
    server
        .add_model(engine(identity_model(2), cores), ModelConfig::new("id"))
        .expect("add the identity model");
    server
}

fn affine_request(tag: usize) -> (Value, Vec<f32>) {
    let x: Vec<f32> = (0..2 * 3).map(|i| (tag * 8 + i) as f32).collect();
    let expected = x.iter().map(|v| v * SCALE + BIAS).collect();
    (
        json!({"id": format!("a{tag}"),
               "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": x}]}),
        expected,
    )
}

fn identity_request(tag: usize) -> (Value, Value) {
    let ids = json!([tag as i64, -1, i64::MAX]);
    (
        json!({"id": format!("i{tag}"), "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [1, 3], "data": ids},
            {"name": "half", "datatype": "FP16", "shape": [1, 2], "data": [0.5, -2.0]},
        ], "outputs": [{"name": "ids_out"}]}),
        ids,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_on_the_same_cores_each_answer_their_own() {
    let server = two_models("nc:2,nc:3");
    assert_eq!(server.model_names().collect::<Vec<_>>(), ["affine", "id"]);
    let server = Arc::new(Running::serve(server).await);
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    for name in ["affine", "id"] {
        let (status, body) = server.get(&format!("/v2/models/{name}/ready")).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (status, affine) = server.get("/v2/models/affine").await;
    assert_eq!(status, 200, "{affine}");
    assert_eq!(affine["name"], "affine");
    assert_eq!(
        affine["inputs"],
        json!([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}])
    );
    let (status, id) = server.get("/v2/models/id").await;
    assert_eq!(status, 200, "{id}");
    assert_eq!(id["name"], "id");
    assert_eq!(
        id["outputs"],
        json!([
            {"name": "ids_out", "datatype": "INT64", "shape": [-1, 3]},
            {"name": "half_out", "datatype": "FP16", "shape": [-1, 2]},
        ])
    );

    // Requests to both at once: each gets its own model's values and name.
    let mut tasks = Vec::new();
    for tag in 0..12usize {
        let server = Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            if tag % 2 == 0 {
                let (request, expected) = affine_request(tag);
                let (status, body) = server.post("/v2/models/affine/infer", &request).await;
                assert_eq!(status, 200, "{tag}: {body}");
                assert_eq!(body["model_name"], "affine");
                assert_eq!(body["id"], format!("a{tag}"));
                assert_eq!(floats(&body["outputs"][0]["data"]), expected, "{tag}");
            } else {
                let (request, ids) = identity_request(tag);
                let (status, body) = server.post("/v2/models/id/infer", &request).await;
                assert_eq!(status, 200, "{tag}: {body}");
                assert_eq!(body["model_name"], "id");
                assert_eq!(body["id"], format!("i{tag}"));
                assert_eq!(body["outputs"][0]["name"], "ids_out");
                assert_eq!(body["outputs"][0]["data"], ids, "{tag}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a request task");
    }
    // A request shaped for one model, sent to the other, is that model's 400.
    let (status, body) = server
        .post("/v2/models/id/infer", &affine_request(0).0)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("the model takes 2"), "{body}");

    let server = Arc::into_inner(server).expect("the tasks are done");
    let drained = server.stop_all().await;
    let names: Vec<&str> = drained.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["affine", "id"], "every model's batcher drained");
    assert_eq!(drained[0].stats.completed, 6);
    // The one request refused before it was queued never reached the batcher.
    assert_eq!(drained[1].stats.completed, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_are_404_naming_the_served_ones() {
    let server = Running::serve(two_models("nc:4")).await;
    for (path, get) in [
        ("/v2/models/nope", true),
        ("/v2/models/nope/ready", true),
        ("/v2/models/nope/infer", false),
        ("/v2/models/Affine/infer", false),
    ] {
        let (status, body) = if get {
            server.get(path).await
        } else {
            server.post(path, &affine_request(0).0).await
        };
        assert_eq!(status, 404, "{path}: {body}");
        let message = error_message(&body);
        assert!(
            message.ends_with("this server serves \"affine\", \"id\""),
            "{path}: {message}"
        );
    }
    // Not counted against any model: the counters are per model.
    let metrics = server.metrics().await;
    for model in ["affine", "id"] {
        for outcome in ["success", "rejected", "failure"] {
            let series =
                format!("neuron_dp_requests_total{{model=\"{model}\",outcome=\"{outcome}\"}}");
            assert_eq!(metric(&metrics, &series), 0.0, "{series}");
        }
    }
    server.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_unsafe_names_and_one_model_too_many_are_refused() {
    let mut server = Server::new(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:5"),
        ServerConfig::new("affine"),
    )
    .expect("serve the affine model");
    let error = server
        .add_model(
            engine(identity_model(2), "nc:5"),
            ModelConfig::new("affine"),
        )
        .expect_err("a second model named affine");
    assert!(
        matches!(&error, ServeError::DuplicateModel { name } if name == "affine"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "two models are named \"affine\"; give each model its own name"
    );
    for bad in ["", "a/b", "a b", "..", "caf\u{e9}", "x?y"] {
        let error = server
            .add_model(engine(identity_model(2), "nc:5"), ModelConfig::new(bad))
            .expect_err(bad);
        assert!(matches!(error, ServeError::ModelName { .. }), "{bad}");
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("name it with"), "{message}");
        let error =
            Server::new(engine(identity_model(2), "nc:5"), ServerConfig::new(bad)).expect_err(bad);
        assert!(matches!(error, ServeError::ModelName { .. }), "{bad}");
    }
    assert_eq!(
        server.model_names().collect::<Vec<_>>(),
        ["affine"],
        "nothing refused was added"
    );

    // Up to MAX_MODELS on one core (one worker each), then a typed refusal.
    let one_worker = || {
        Arc::new(
            DataParallel::new(
                &runtime(),
                &common::neff(affine_model(1, 2, 1.0, 0.0, 10)),
                Config::default().device_list("nc:6").num_workers(1),
            )
            .expect("build an engine"),
        )
    };
    for i in 1..MAX_MODELS {
        server
            .add_model(one_worker(), ModelConfig::new(format!("m{i}")))
            .unwrap_or_else(|e| panic!("model {i}: {e}"));
    }
    assert_eq!(server.model_names().count(), MAX_MODELS);
    let error = server
        .add_model(one_worker(), ModelConfig::new("one-more"))
        .expect_err("one model too many");
    assert!(
        matches!(error, ServeError::TooManyModels { max } if max == MAX_MODELS),
        "{error:?}"
    );
    assert!(error.to_string().contains("at most 64 models"), "{error}");

    // Models are added before the router is taken.
    let mut server = Server::new(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:7"),
        ServerConfig::new("affine"),
    )
    .expect("serve the affine model");
    let router = server.router();
    let error = server
        .add_model(engine(identity_model(2), "nc:7"), ModelConfig::new("id"))
        .expect_err("a router is in use");
    assert!(error.to_string().contains("before calling"), "{error}");
    drop(router);
    server
        .add_model(engine(identity_model(2), "nc:7"), ModelConfig::new("id"))
        .expect("no router in use any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_ready_only_while_every_model_is() {
    let mut server = Server::new(
        engine(affine_model(4, 3, SCALE, BIAS, 50), "nc:8"),
        ServerConfig::new("affine"),
    )
    .expect("serve the affine model");
    let failing = engine(affine_model(4, 3, 1.0, 0.0, 50), "nc:9");
    let physical = failing
        .physical_cores()
        .next()
        .flatten()
        .expect("the mock reports physical cores");
    server
        .add_model(Arc::clone(&failing), ModelConfig::new("other"))
        .expect("add the second model");
    let server = Running::serve(server).await;
    let request = affine_request(1).0;
    assert_eq!(server.get("/v2/health/ready").await.0, 200);

    // The second model's only core fails until it is quarantined.
    let status = neuron_rt::Status::ExecUnitUnrecoverable.raw();
    nrt_mock::control::set_faults(&format!("{physical}:*:{status}")).expect("set faults");
    for _ in 0..dataparallel::DEFAULT_QUARANTINE_AFTER {
        let (code, reply) = server.post("/v2/models/other/infer", &request).await;
        assert_eq!(code, 500, "{reply}");
    }
    nrt_mock::control::set_faults("").expect("clear faults");

    let (code, reply) = server.get("/v2/health/ready").await;
    assert_eq!(code, 503, "{reply}");
    let message = error_message(&reply);
    assert!(
        message.contains("no core is in service for model \"other\""),
        "{message}"
    );
    let (code, reply) = server.get("/v2/models/other/ready").await;
    assert_eq!(code, 503, "{reply}");
    assert_eq!(server.get("/v2/models/affine/ready").await.0, 200);
    // The healthy model still serves; the other refuses at once.
    let (code, reply) = server.post("/v2/models/affine/infer", &request).await;
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = server.post("/v2/models/other/infer", &request).await;
    assert_eq!(code, 503, "{reply}");
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_core_healthy{model=\"other\",core=\"nc:9\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_core_healthy{model=\"affine\",core=\"nc:8\"}"
        ),
        1.0
    );

    failing
        .readmit(neuron_rt::DeviceId::new(9))
        .expect("re-admit");
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    assert_eq!(server.get("/v2/models/other/ready").await.0, 200);
    server.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_carries_its_model_and_every_family_is_written_once() {
    let server = Running::serve(two_models("nc:10,nc:11")).await;
    for tag in 0..3 {
        let (status, body) = server
            .post("/v2/models/affine/infer", &affine_request(tag).0)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server
        .post("/v2/models/id/infer", &identity_request(0).0)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post("/v2/models/id/infer", &json!({"inputs": []}))
        .await;
    assert_eq!(status, 400, "{body}");

    let metrics = server.metrics().await;
    let mut families = Vec::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("a family name");
            assert!(!families.contains(&name), "{name} typed twice:\n{metrics}");
            families.push(name);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, _) = line.rsplit_once(' ').expect("a sample line");
        assert!(
            series.contains("{model=\"affine\"") || series.contains("{model=\"id\""),
            "a sample without its model: {line}"
        );
        // A family's samples follow its TYPE line, before the next family's.
        let name = series.split('{').next().expect("a name");
        let family = families.last().expect("a family before its samples");
        assert!(name.starts_with(family), "{line} under {family}");
    }
    // The names of the one-model server, each with a sample per model.
    for family in [
        "neuron_dp_requests_total",
        "neuron_dp_requests_reading",
        "neuron_dp_accepted_total",
        "neuron_dp_queue_depth",
        "neuron_dp_queue_full_total",
        "neuron_dp_expired_total",
        "neuron_dp_batch_failed_requests_total",
        "neuron_dp_batches_total",
        "neuron_dp_batch_rows_total",
        "neuron_dp_pad_rows_total",
        "neuron_dp_request_latency_seconds",
        "neuron_dp_queue_wait_seconds",
        "neuron_dp_batch_rows",
        "neuron_dp_core_executions_total",
        "neuron_dp_core_busy_seconds_total",
        "neuron_dp_core_failures_total",
        "neuron_dp_core_healthy",
    ] {
        assert!(families.contains(&family), "{family} missing");
        for model in ["affine", "id"] {
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with(family) && l.contains(&format!("{{model=\"{model}\""))),
                "{family} has no sample for {model}"
            );
        }
    }
    assert_eq!(families.len(), 17, "{families:?}");
    let count = |model: &str, outcome: &str| {
        metric(
            &metrics,
            &format!("neuron_dp_requests_total{{model=\"{model}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("affine", "success"), 3.0);
    assert_eq!(count("affine", "rejected"), 0.0);
    assert_eq!(count("id", "success"), 1.0);
    assert_eq!(count("id", "rejected"), 1.0);
    assert_eq!(
        metric(&metrics, "neuron_dp_accepted_total{model=\"affine\"}"),
        3.0
    );
    assert_eq!(
        metric(&metrics, "neuron_dp_accepted_total{model=\"id\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "neuron_dp_request_latency_seconds_count{model=\"affine\"}"
        ),
        3.0
    );
    for (model, core) in [("affine", 10), ("affine", 11), ("id", 10), ("id", 11)] {
        let series = format!("neuron_dp_core_healthy{{model=\"{model}\",core=\"nc:{core}\"}}");
        assert_eq!(metric(&metrics, &series), 1.0, "{series}");
    }
    let executions = |model: &str| {
        (10..=11)
            .map(|core| {
                metric(
                    &metrics,
                    &format!(
                        "neuron_dp_core_executions_total{{model=\"{model}\",core=\"nc:{core}\"}}"
                    ),
                )
            })
            .sum::<f64>()
    };
    assert!(executions("affine") >= 3.0, "{metrics}");
    assert!(executions("id") >= 1.0, "{metrics}");
    server.stop_all().await;
}
