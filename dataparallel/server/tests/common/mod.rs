//! Shared support for the server's tests against the mock libnrt: one runtime per process,
//! mock NEFFs and engines, a server on a loopback port, and an HTTP client.
//!
//! Run with the mock: `cargo xtask mock-test`, or `cargo build -p nrt-mock` and then
//! `cargo test -p neuron-dp-server` (the tests find the mock next to their binary).
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, OnceLock};

use dataparallel::batcher::BatcherStats;
use dataparallel::{Config, DataParallel};
use neuron_dp_server::{ModelStats, Server, ServerConfig};
use neuron_rt::{Neff, Runtime};
pub use nrt_mock::neff::{DType as MockDType, MockModel, Op};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The process's runtime, on the mock, with a lock directory of this test binary's own
/// (unless one is set), so other test runs on the machine do not take its cores.
pub fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            if std::env::var_os("NRT_MOCK_LOCK_DIR").is_none_or(|v| v.is_empty()) {
                let dir = lock_dir();
                std::fs::create_dir_all(&dir).expect("create the lock directory");
                // SAFETY: called once, inside the `OnceLock` that creates the first runtime
                // of this process, before the mock is loaded (no libnrt thread or C code can
                // be reading the environment); other test threads read the environment only
                // through std, whose accesses are serialised with this one.
                unsafe { std::env::set_var("NRT_MOCK_LOCK_DIR", &dir) };
            }
            Runtime::builder()
                .library(nrt_mock::testing::library_path())
                .init()
                .unwrap_or_else(|e| panic!("init the mock runtime: {e}"))
        })
        .clone()
}

/// This test binary's lock directory for the mock's cores.
pub fn lock_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("server-locks")
        .join(env!("CARGO_CRATE_NAME"))
}

/// `affine {scale, bias}`: float32 `x` `[b, features]` → float32 `y` `[b, features]`.
pub fn affine_model(b: u32, features: u32, scale: f32, bias: f32, exec_us: u64) -> MockModel {
    MockModel::new("affine", Op::Affine { scale, bias })
        .input("x", MockDType::Float32, &[b, features])
        .output("y", MockDType::Float32, &[b, features])
        .exec_us(exec_us)
}

/// `identity` of two inputs: int64 `ids` `[b, 3]` and float16 `half` `[b, 2]`, copied to
/// outputs `ids_out` and `half_out`.
pub fn identity_model(b: u32) -> MockModel {
    MockModel::new("identity", Op::Identity)
        .input("ids", MockDType::Int64, &[b, 3])
        .input("half", MockDType::Float16, &[b, 2])
        .output("ids_out", MockDType::Int64, &[b, 3])
        .output("half_out", MockDType::Float16, &[b, 2])
        .exec_us(50)
}

/// A NEFF of a mock model.
pub fn neff(model: MockModel) -> Neff {
    model.validate().expect("a valid mock model");
    Neff::from_bytes(model.to_neff_bytes()).expect("mock NEFF bytes parse")
}

/// An engine of `model` on `cores` (`nc:4,nc:5`).
pub fn engine(model: MockModel, cores: &str) -> Arc<DataParallel> {
    Arc::new(
        DataParallel::new(
            &runtime(),
            &neff(model),
            Config::default().device_list(cores),
        )
        .expect("build the engine"),
    )
}

/// A server running on a loopback port.
pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    shutdown: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    task: JoinHandle<std::io::Result<Vec<ModelStats>>>,
}

impl Running {
    /// Serves `engine` as `config` says on 127.0.0.1, any free port.
    pub async fn start(engine: Arc<DataParallel>, config: ServerConfig) -> Running {
        Running::serve(Server::new(engine, config).expect("build the server")).await
    }

    /// Serves `server` (one model or several) on 127.0.0.1, any free port.
    pub async fn serve(server: Server) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let address = listener.local_addr().expect("the bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(neuron_dp_server::serve(server, listener, async move {
            let _ = rx.await;
        }));
        Running {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            shutdown: std::sync::Mutex::new(Some(tx)),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path`: the status and the body as JSON (`Null` when empty).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        split(response).await
    }

    /// POST `body` (JSON) to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }

    /// POST raw bytes to `path`.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        split(response).await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Starts the graceful shutdown (once).
    pub fn signal_shutdown(&self) {
        let sender = self
            .shutdown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }

    /// Stops the server of one model (graceful shutdown) and returns its batcher's final
    /// stats.
    pub async fn stop(self) -> BatcherStats {
        let mut drained = self.stop_all().await;
        assert_eq!(
            drained.len(),
            1,
            "one model served, its batcher drained once"
        );
        drained.remove(0).stats
    }

    /// Stops the server (graceful shutdown) and returns every model's final batcher stats.
    pub async fn stop_all(self) -> Vec<ModelStats> {
        self.signal_shutdown();
        self.task
            .await
            .expect("the server task")
            .expect("the server ran")
    }
}

async fn split(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("the body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "a JSON body ({e}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )
        })
    };
    (status, value)
}

/// The one-line message of an error body, checking its form.
pub fn error_message(body: &Value) -> String {
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an {{\"error\": ...}} body, got {body}"));
    assert!(!message.contains('\n'), "one line: {message:?}");
    assert!(!message.is_empty());
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    message.to_owned()
}

/// A metric's value in Prometheus text (the first line starting with `prefix`).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
}
