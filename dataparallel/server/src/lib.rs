//! `neuron-dp-server`: an Open Inference Protocol (KServe v2) HTTP server over the
//! data-parallel engine, so existing clients, load generators and orchestrators can use it
//! unchanged.
//!
//! A server serves one or more models (at most [`MAX_MODELS`]), each with its own engine and
//! its own request batcher. Every inference request goes through its model's batcher
//! ([`dataparallel::batcher`]): concurrent small requests become full batches. The queue is
//! bounded and a request that finds it full is answered 503 at once; a request's `timeout`
//! parameter (microseconds) or the model's default becomes its batcher deadline.
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`ServerConfig`], [`ModelConfig`], the model count and name bounds |
//! | `routes` | the REST endpoints and the router |
//! | `infer` | one inference: body → checked tensors → batcher → response |
//! | `model` | a served model: batcher, counters, tensors' datatypes and shapes, body-size limit |
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
//! use neuron_dp_server::{ModelConfig, Server, ServerConfig};
//! use neuron_rt::{Neff, Runtime};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::init()?;
//! let neff = Neff::from_path("model.neff".as_ref())?;
//! let engine = Arc::new(DataParallel::new(&runtime, &neff, Config::default())?);
//! let mut server = Server::new(engine, ServerConfig::new("model"))?;
//! // A second model, on the same cores, with its own engine and batcher.
//! let other = Neff::from_path("other.neff".as_ref())?;
//! let other = Arc::new(DataParallel::new(&runtime, &other, Config::default())?);
//! server.add_model(other, ModelConfig::new("other"))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! neuron_dp_server::serve(server, listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dataparallel::DataParallel;
use dataparallel::batcher::BatcherStats;

mod config;
mod datatype;
mod error;
mod infer;
mod metrics;
mod model;
mod protocol;
mod routes;

pub use config::{
    DEFAULT_MAX_READING, MAX_MODEL_NAME_BYTES, MAX_MODELS, ModelConfig, ServerConfig,
    check_model_name,
};
pub use error::ServeError;
use model::ServedModel;

/// What the handlers share: the models, whether shutdown has begun, and the bound on bodies
/// being read.
#[derive(Debug)]
struct Shared {
    /// In the order they were added; names differ.
    models: Vec<ServedModel>,
    closing: AtomicBool,
    /// One permit per request body being read and parsed, over every model.
    reading: tokio::sync::Semaphore,
    max_reading: usize,
}

impl Shared {
    /// The model called `name`.
    fn model(&self, name: &str) -> Option<&ServedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Why `model` cannot take requests now, or `None` when it can.
    fn model_not_ready(&self, model: &ServedModel) -> Option<String> {
        if self.closing.load(Ordering::Acquire) {
            Some("the server is shutting down".to_owned())
        } else if !model.ready() {
            Some(format!(
                "no core is in service for model {} (every core is quarantined)",
                dataparallel::quote::quote(&model.name)
            ))
        } else {
            None
        }
    }

    /// Why the server is not ready (shutting down, or a model with no core in service), or
    /// `None` when every model can take requests.
    fn not_ready(&self) -> Option<String> {
        self.models.iter().find_map(|m| self.model_not_ready(m))
    }
}

/// The models ready to serve: their engines, the request batchers over them, and the routes.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Starts the request batcher over `engine` and prepares the routes for that one model;
    /// [`Server::add_model`] adds more.
    ///
    /// # Errors
    ///
    /// [`ServeError::ModelName`] when the model name cannot be a URL path segment;
    /// [`ServeError::Model`] when `max_reading` is 0, or a model tensor has no protocol
    /// datatype (the hardware-only 8-bit floats) or no batch dimension;
    /// [`ServeError::Batcher`] when the engine cannot batch requests (see
    /// [`dataparallel::batcher::Batcher::new`]).
    pub fn new(engine: Arc<DataParallel>, config: ServerConfig) -> Result<Server, ServeError> {
        if config.max_reading == 0 || config.max_reading > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ServeError::Model(format!(
                "max_reading is {}; give at least 1 (default {DEFAULT_MAX_READING})",
                config.max_reading
            )));
        }
        let model = served(engine, &config.model())?;
        Ok(Server {
            shared: Arc::new(Shared {
                models: vec![model],
                closing: AtomicBool::new(false),
                reading: tokio::sync::Semaphore::new(config.max_reading),
                max_reading: config.max_reading,
            }),
        })
    }

    /// Adds another model, with its own request batcher over `engine` (which may share its
    /// cores with the other models' engines), served under `/v2/models/{name}`. Add every
    /// model before taking the [`router`](Server::router).
    ///
    /// # Errors
    ///
    /// [`ServeError::TooManyModels`] beyond [`MAX_MODELS`]; [`ServeError::DuplicateModel`]
    /// when a model of that name is served already; [`ServeError::ModelName`],
    /// [`ServeError::Model`] and [`ServeError::Batcher`] as for [`Server::new`];
    /// [`ServeError::Model`] when a router was already taken.
    pub fn add_model(
        &mut self,
        engine: Arc<DataParallel>,
        config: ModelConfig,
    ) -> Result<(), ServeError> {
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return Err(ServeError::Model(
                "a router of this server is in use; add every model before calling \
                 Server::router"
                    .to_owned(),
            ));
        };
        if shared.models.len() >= MAX_MODELS {
            return Err(ServeError::TooManyModels { max: MAX_MODELS });
        }
        if shared.model(&config.name).is_some() {
            return Err(ServeError::DuplicateModel { name: config.name });
        }
        let model = served(engine, &config)?;
        shared.models.push(model);
        Ok(())
    }

    /// The models' names, in the order they were added.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.shared.models.iter().map(|m| m.name.as_str())
    }

    /// The largest request body accepted, in bytes, over every model (each model's limit
    /// comes from its largest request).
    pub fn body_limit(&self) -> usize {
        self.shared
            .models
            .iter()
            .map(|m| m.body_limit)
            .max()
            .unwrap_or(0)
    }

    /// The router, for embedding the endpoints in another axum application.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.shared))
    }
}

/// A model's batcher over `engine`, as `config` says, after checking its name.
fn served(engine: Arc<DataParallel>, config: &ModelConfig) -> Result<ServedModel, ServeError> {
    check_model_name(&config.name)?;
    ServedModel::new(config.name.clone(), engine, config.batcher_with_deadline())
}

/// A model's request batcher's final stats, from [`serve`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelStats {
    /// The model's name.
    pub name: String,
    /// Its batcher's stats once drained.
    pub stats: BatcherStats,
}

/// Serves `server` on `listener` until `shutdown` completes, then stops accepting
/// connections, finishes the requests in flight, drains every model's batcher and returns
/// their final stats, in the models' order (empty only if they were already drained).
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
) -> std::io::Result<Vec<ModelStats>> {
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
    // shared state for a moment, so the batchers are taken out of it rather than waiting for
    // the last reference. Draining blocks: off the async threads.
    let drained = tokio::task::spawn_blocking(move || {
        shared
            .models
            .iter()
            .filter_map(|m| {
                m.shutdown().map(|stats| ModelStats {
                    name: m.name.clone(),
                    stats,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| std::io::Error::other(format!("draining the batchers failed: {e}")))?;
    Ok(drained)
}
