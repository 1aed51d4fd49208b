//! A core failing under load (the mock's fault injection): the server degrades to the
//! remaining cores, only the requests with rows in a chunk that ran on the failing core get
//! an error, every other answer is exact, and the server stays ready.
//!
//! Its own test binary, because the mock's fault rules are process-wide.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, affine_model, engine, error_message};
use dataparallel::CoreState;
use dataparallel::batcher::BatcherConfig;
use neuron_dp_server::ServerConfig;
use serde_json::json;
use tokio::task::JoinSet;

const SCALE: f32 = 2.0;
const BIAS: f32 = 0.5;
/// The compiled batch: a packed chunk holds at most this many single-row requests.
const BATCH: u32 = 4;
const CLIENTS: usize = 16;
const REQUESTS_PER_CLIENT: usize = 25;

/// What one single-row request of value `v` got: `Ok` with exact outputs, or `Err` with a
/// one-line 500.
async fn infer(server: &Running, v: f32) -> Result<(), String> {
    let request = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                      "data": [v, v + 1.0, v + 2.0]}]});
    let (code, reply) = server.post("/v2/models/affine/infer", &request).await;
    match code {
        200 => {
            let got: Vec<f64> = reply["outputs"][0]["data"]
                .as_array()
                .expect("output data")
                .iter()
                .map(|x| x.as_f64().expect("a number"))
                .collect();
            let want: Vec<f64> = [v, v + 1.0, v + 2.0]
                .iter()
                .map(|x| f64::from(x * SCALE + BIAS))
                .collect();
            assert_eq!(got, want, "request {v}: {reply}");
            Ok(())
        }
        500 => Err(error_message(&reply)),
        other => panic!("request {v}: unexpected status {other}: {reply}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_failing_under_load_fails_only_the_requests_of_its_chunks() {
    let engine = engine(
        affine_model(BATCH, 3, SCALE, BIAS, 300),
        "nc:19,nc:20,nc:21,nc:22",
    );
    let failing = engine
        .physical_cores()
        .nth(1)
        .flatten()
        .expect("the mock reports physical cores");
    let server = Arc::new(
        Running::start(
            Arc::clone(&engine),
            ServerConfig::new("affine")
                .batcher(BatcherConfig::default().max_delay(Duration::from_millis(2))),
        )
        .await,
    );
    // Every execution on nc:20 fails with a hardware-class status from now on.
    let status = neuron_rt::Status::ExecUnitUnrecoverable.raw();
    nrt_mock::control::set_faults(&format!("{failing}:*:{status}")).expect("set faults");

    let mut clients = JoinSet::new();
    for client in 0..CLIENTS {
        let server = Arc::clone(&server);
        clients.spawn(async move {
            let mut errors = Vec::new();
            for i in 0..REQUESTS_PER_CLIENT {
                let v = (client * 1000 + i) as f32;
                if let Err(message) = infer(&server, v).await {
                    errors.push(message);
                }
            }
            errors
        });
    }
    let mut errors = Vec::new();
    while let Some(client) = clients.join_next().await {
        errors.extend(client.expect("a client task"));
    }
    nrt_mock::control::set_faults("").expect("clear faults");

    // The failing core was quarantined after its failures; each failed execution was one
    // packed chunk of at most BATCH rows, so at most that many requests each.
    let core = &engine.core_stats()[1];
    let health = &engine.health()[1];
    assert_eq!(health.state, CoreState::Quarantined, "{health:?}");
    assert!(core.failures >= u64::from(dataparallel::DEFAULT_QUARANTINE_AFTER));
    assert!(!errors.is_empty(), "requests on the failing core failed");
    assert!(
        errors.len() as u64 <= core.failures * u64::from(BATCH),
        "{} requests failed for {} failed executions of at most {BATCH} rows",
        errors.len(),
        core.failures
    );
    for message in &errors {
        assert!(
            message.contains("nc:20"),
            "the error names the core: {message}"
        );
    }
    // The other cores never failed, and the requests that did not fail were all answered
    // exactly (checked in `infer`).
    for (index, other) in engine.core_stats().iter().enumerate() {
        if index != 1 {
            assert_eq!(other.failures, 0, "core {index}");
        }
    }

    // Degraded, not down: ready on the remaining cores, and every request now succeeds.
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
    for i in 0..20 {
        infer(&server, 50_000.0 + i as f32)
            .await
            .expect("served by the remaining cores");
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("neuron_dp_core_healthy{model=\"affine\",core=\"nc:20\"} 0"),
        "{metrics}"
    );
    let stats = Arc::into_inner(server)
        .expect("the clients are done")
        .stop()
        .await;
    assert_eq!(stats.failed, errors.len() as u64, "{stats:#?}");
}
