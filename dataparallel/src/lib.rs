//! Data-parallel inference over AWS NeuronCores: `torch_neuronx.DataParallel`, done right.
//!
//! A [`DataParallel`] engine loads one compiled model (a NEFF) on several NeuronCores, cuts
//! each input batch into chunks along `dim`, runs the chunks concurrently on persistent
//! per-core worker threads, and gathers the outputs, in row order, straight into the caller's
//! buffers. With dynamic batching (the default for `dim == 0`) any batch size runs as pieces
//! of the compiled batch, the last one zero-padded and its outputs trimmed.
//!
//! The path of one batch, a module per step:
//!
//! | step | module | |
//! |---|---|---|
//! | validate | `validate` | inputs against the model's tensors; errors before any device call |
//! | plan | `plan`, `buckets` | pure chunk math: chunks → cores; pieces of the compiled batch size(s), pad rows |
//! | dispatch | `engine::dispatch`, `queue` | one job per piece onto its core's queue (the caller serves the last chunk) |
//! | worker | `worker` | caller rows → device tensors, execute, device → caller rows |
//! | complete | `call` | wait for every job; report the lowest failing chunk |
//!
//! Building an engine (`engine::build`) loads a replica per core and lays out its queues,
//! stations and workers as `topology` computes them; `engine` itself holds the result.
//!
//! Nothing is staged in intermediate host buffers: rows move between the caller's memory and
//! device tensors in as few contiguous runs as the layout allows (`layout`).
//!
//! Beyond the reference: several NEFFs of one model as batch-size buckets
//! ([`DataParallel::with_buckets`]), core health with quarantine and re-admission
//! ([`DataParallel::health`], [`DataParallel::readmit`]), [`Metrics`] and a request
//! [`batcher`] for serving. Front-ends live in crates of their own, over this crate's public
//! API: the C ABI (`neuron-dp-capi`, `libneuron_dp.so`) and the command line (`neuron-dp`).
//!
//! # Example
//!
//! ```no_run
//! use dataparallel::{Config, DataParallel, Input};
//! use neuron_rt::{Neff, Runtime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::init()?;
//! let neff = Neff::from_path("model.neff".as_ref())?;
//! let engine = DataParallel::new(&runtime, &neff, Config::default())?;
//! let x = vec![0.5f32; 10 * 8];
//! let outputs = engine.forward(&[Input::f32(&[10, 8], &x)])?;
//! println!("{:?}", outputs[0].shape);
//! # Ok(()) }
//! ```
//!
//! `DataParallel` is `Send + Sync`; every method takes `&self`.
//!
//! ```
//! fn assert_send_sync<T: Send + Sync>() {}
//! assert_send_sync::<dataparallel::DataParallel>();
//! ```

#![warn(missing_docs)]

pub mod batcher;
mod buckets;
mod busy;
mod call;
mod config;
mod engine;
mod error;
mod health;
mod layout;
mod metrics;
mod plan;
mod queue;
pub mod quote;
mod spec;
mod topology;
mod validate;
mod view;
mod worker;

pub use busy::BUSY_RETRIES;
pub use config::{Config, DeviceSpec, MAX_WORKERS_PER_CORE};
pub use engine::{ChunkPlan, DataParallel, ForwardReport};
pub use error::{Error, ErrorKind, Result, TensorError};
pub use health::{CoreHealth, CoreState, DEFAULT_QUARANTINE_AFTER};
pub use metrics::{CoreReport, HISTOGRAM_BUCKETS, Histogram, Metrics};
pub use plan::PlanError;
pub use spec::{IoSpec, MatchError, Matching, ModelSpec, Side};
pub use view::{Input, Output, OutputTensor};
