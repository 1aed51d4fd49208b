//! `neuron-dp-server`: an Open Inference Protocol (KServe v2) HTTP server over the
//! data-parallel engine, so existing clients, load generators and orchestrators can use it
//! unchanged.
//!
//! Every inference request goes through the engine's request batcher
//! ([`dataparallel::batcher`]): concurrent small requests become full batches. The queue is
//! bounded and a request that finds it full is answered 503 at once; a request's `timeout`
//! parameter (microseconds) or the server's default becomes its batcher deadline.
//!
//! | module | owns |
//! |---|---|
//! | `routes` | the REST endpoints and the router |
//! | `infer` | one inference: body → checked tensors → batcher → response |
//! | `model` | the served model: batcher, tensors' datatypes and shapes, body-size limit |
//! | `protocol` | the protocol's JSON bodies |
//! | `datatype` | protocol datatypes ↔ engine dtypes ↔ JSON numbers |
//! | `metrics` | `GET /metrics` in the Prometheus text format |
//! | `error` | the `{"error": "..."}` answer and [`ServeError`] |
//!
//! Endpoints: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`,
//! `GET /v2/models/{name}`, `GET /v2/models/{name}/ready`, `POST /v2/models/{name}/infer`
//! (JSON tensors, and the binary tensor data extension), `GET /metrics`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use dataparallel::{Config, DataParallel};
//! use neuron_dp_server::{Server, ServerConfig};
//! use neuron_rt::{Neff, Runtime};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::init()?;
//! let neff = Neff::from_path("model.neff".as_ref())?;
//! let engine = Arc::new(DataParallel::new(&runtime, &neff, Config::default())?);
//! let server = Server::new(engine, ServerConfig::new("model"))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! neuron_dp_server::serve(server, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dataparallel::DataParallel;
use dataparallel::batcher::{BatcherConfig, BatcherStats};

mod datatype;
mod error;
mod infer;
mod metrics;
mod model;
mod protocol;
mod routes;

pub use error::ServeError;
use model::ServedModel;

/// How to serve a model.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The model's name in the URLs (`/v2/models/{name}`).
    pub model_name: String,
    /// The request batcher's settings (batch size, delay, queue bound).
    pub batcher: BatcherConfig,
    /// Deadline of requests that give no `timeout` parameter (`None`: they wait as long as it
    /// takes). Overrides the batcher configuration's default deadline.
    pub request_timeout: Option<Duration>,
    /// Inference requests whose bodies may be read and parsed at once (default
    /// [`DEFAULT_MAX_READING`]); one more is answered 503 at once. Each body is bounded by the
    /// model's largest request, so this bounds the memory requests take before they are
    /// queued.
    pub max_reading: usize,
}

/// [`ServerConfig::max_reading`] by default.
pub const DEFAULT_MAX_READING: usize = 64;

impl ServerConfig {
    /// Serves the model as `model_name` with the batcher's defaults and no timeout.
    pub fn new(model_name: impl Into<String>) -> ServerConfig {
        ServerConfig {
            model_name: model_name.into(),
            batcher: BatcherConfig::default(),
            request_timeout: None,
            max_reading: DEFAULT_MAX_READING,
        }
    }

    /// Sets how many request bodies may be read at once (at least 1).
    #[must_use]
    pub fn max_reading(mut self, requests: usize) -> ServerConfig {
        self.max_reading = requests;
        self
    }

    /// Sets the batcher's settings.
    #[must_use]
    pub fn batcher(mut self, batcher: BatcherConfig) -> ServerConfig {
        self.batcher = batcher;
        self
    }

    /// Sets the default request timeout.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> ServerConfig {
        self.request_timeout = timeout;
        self
    }
}

/// What the handlers share: the model, whether shutdown has begun, and the request counters.
#[derive(Debug)]
struct Shared {
    model: ServedModel,
    closing: AtomicBool,
    counters: Counters,
    /// One permit per request body being read and parsed.
    reading: tokio::sync::Semaphore,
    max_reading: usize,
}

/// Inference requests answered, by outcome.
#[derive(Debug, Default)]
struct Counters {
    success: AtomicU64,
    /// Answered 4xx.
    rejected: AtomicU64,
    /// Answered 5xx.
    failure: AtomicU64,
}

impl Shared {
    /// Why the server is not ready, or `None` when it is.
    fn not_ready(&self) -> Option<&'static str> {
        if self.closing.load(Ordering::Acquire) {
            Some("the server is shutting down")
        } else if !self.model.ready() {
            Some("no core is in service (every core is quarantined)")
        } else {
            None
        }
    }
}

/// A model ready to serve: its engine, the request batcher over it, and the routes.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Starts the request batcher over `engine` and prepares the routes.
    ///
    /// # Errors
    ///
    /// [`ServeError::Model`] when the model name is empty, `max_reading` is 0, or a model tensor has no protocol
    /// datatype (the hardware-only 8-bit floats) or no batch dimension;
    /// [`ServeError::Batcher`] when the engine cannot batch requests (see
    /// [`dataparallel::batcher::Batcher::new`]).
    pub fn new(engine: Arc<DataParallel>, config: ServerConfig) -> Result<Server, ServeError> {
        if config.model_name.is_empty() || config.model_name.contains('/') {
            return Err(ServeError::Model(format!(
                "model name {:?} cannot appear in a URL path; give a non-empty name without '/'",
                config.model_name
            )));
        }
        if config.max_reading == 0 || config.max_reading > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ServeError::Model(format!(
                "max_reading is {}; give at least 1 (default {DEFAULT_MAX_READING})",
                config.max_reading
            )));
        }
        let deadline = config
            .request_timeout
            .or(config.batcher.default_deadline_value());
        let batcher = config.batcher.default_deadline(deadline);
        let model = ServedModel::new(config.model_name, engine, batcher)?;
        Ok(Server {
            shared: Arc::new(Shared {
                model,
                closing: AtomicBool::new(false),
                counters: Counters::default(),
                reading: tokio::sync::Semaphore::new(config.max_reading),
                max_reading: config.max_reading,
            }),
        })
    }

    /// The largest request body accepted, in bytes (from the model's largest request).
    pub fn body_limit(&self) -> usize {
        self.shared.model.body_limit
    }

    /// The router, for embedding the endpoints in another axum application.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.shared))
    }
}

/// Serves `server` on `listener` until `shutdown` completes, then stops accepting
/// connections, finishes the requests in flight, drains the batcher and returns its final
/// stats (`None` only if it was already drained).
///
/// From the moment `shutdown` completes the ready endpoints answer 503 and new inference
/// requests on open connections are refused with 503.
///
/// # Errors
///
/// The listener's I/O error, or the draining thread's failure (a panic: a bug).
pub async fn serve(
    server: Server,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Option<BatcherStats>> {
    let router = server.router();
    let shared = server.shared;
    let closing = Arc::clone(&shared);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.closing.store(true, Ordering::Release);
            log::info!("shutting down: finishing the requests in flight");
        })
        .await?;
    // Every connection is closed; a connection task may still hold the routes' copy of the
    // shared state for a moment, so the batcher is taken out of it rather than waiting for
    // the last reference. Draining blocks: off the async threads.
    let drained = tokio::task::spawn_blocking(move || shared.model.shutdown())
        .await
        .map_err(|e| std::io::Error::other(format!("draining the batcher failed: {e}")))?;
    Ok(drained)
}
