//! The engine's error type. Every variant says what was wrong and what to do.

use neuron_rt::{DeviceId, Status};

use crate::plan::PlanError;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong building or running a [`DataParallel`](crate::DataParallel).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime failed while building the engine (loading models, allocating tensors), or
    /// the device ids are invalid.
    #[error(transparent)]
    Runtime(#[from] neuron_rt::Error),

    /// The configuration cannot work with this model or these cores.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The inputs do not fit the model: names, count, dtype, shape or batch size.
    #[error("invalid input: {0}")]
    Input(String),

    /// The output buffers do not fit what the forward produces.
    #[error("invalid output: {0}")]
    Output(String),

    /// Dynamic batching is on but the model or the call cannot use it.
    #[error(
        "dynamic batching is not possible here: {reason}; call disable_dynamic_batching() (or \
         build with dynamic_batching(false)) and pass exactly cores x compiled batch rows"
    )]
    DynamicBatchingIneligible {
        /// Why.
        reason: String,
    },

    /// The batch does not split into chunks the model can run (dynamic batching off).
    #[error(transparent)]
    Plan(#[from] PlanError),

    /// A chunk failed on a core. Every other chunk of the call still ran; this is the failing
    /// chunk with the lowest index.
    #[error(
        "chunk {chunk} failed on {core} (physical core {}): {source}",
        .physical_core.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    Chunk {
        /// Index of the chunk in the call (chunks are numbered in row order).
        chunk: usize,
        /// The logical core it ran on.
        core: DeviceId,
        /// The physical core, when known.
        physical_core: Option<u32>,
        /// What libnrt (or the copy) reported.
        #[source]
        source: neuron_rt::Error,
    },

    /// A worker thread panicked while running a chunk (a bug in the engine: please report).
    #[error("chunk {chunk} on {core}: worker panicked: {message}")]
    WorkerPanicked {
        /// Index of the chunk.
        chunk: usize,
        /// The logical core.
        core: DeviceId,
        /// The panic message.
        message: String,
    },

    /// Every core is quarantined after repeated hardware failures.
    #[error(
        "all {cores} cores are quarantined after repeated hardware failures; see health() and \
         readmit() a core once it is fixed"
    )]
    AllCoresQuarantined {
        /// The engine's core count.
        cores: usize,
    },

    /// Every worker serving a core has stopped (a worker thread died outside a job: a bug
    /// in the engine; please report). Build a new engine.
    #[error("the workers serving {core} have stopped; build a new engine")]
    WorkersGone {
        /// The core whose workers are gone.
        core: DeviceId,
    },
}

impl Error {
    /// The libnrt status behind the error, if it came from libnrt.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Runtime(e) | Error::Chunk { source: e, .. } => e.status(),
            _ => None,
        }
    }

    /// For chunk failures: (chunk index, logical core, physical core).
    pub fn chunk(&self) -> Option<(usize, DeviceId, Option<u32>)> {
        match self {
            Error::Chunk {
                chunk,
                core,
                physical_core,
                ..
            } => Some((*chunk, *core, *physical_core)),
            Error::WorkerPanicked { chunk, core, .. } => Some((*chunk, *core, None)),
            _ => None,
        }
    }
}
