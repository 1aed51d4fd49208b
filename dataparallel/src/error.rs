//! The engine's error type and its classification.
//!
//! [`Error`] carries typed payloads (which tensor, which chunk and core, which libnrt
//! status); its message is one line that says what was wrong and what to do. [`Error::kind`]
//! sorts every error into an [`ErrorKind`], the one classification the front-ends map from:
//! the CLI derives its exit code from it and the C ABI its `ndp_status_t`, each in one place.
//! The rule the kinds follow: what the caller supplied (configuration, inputs, device ids, a
//! NEFF) and the engine or the runtime rejected as invalid is bad input; the runtime, the
//! hardware or the operating system failing is not.

use neuron_rt::{DType, DeviceId, NeffError, Status};

use crate::plan::PlanError;
use crate::quote::quote;
use crate::spec::{MatchError, Side};

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong building or running a [`DataParallel`](crate::DataParallel).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work with this model or these cores.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong and what to change.
        reason: String,
    },

    /// The device ids are malformed, out of range or repeated, or `NEURON_RT_VISIBLE_CORES`
    /// / `NEURON_RT_NUM_CORES` is malformed.
    #[error(transparent)]
    DeviceIds(neuron_rt::Error),

    /// The NEFF cannot be read, is malformed, or libnrt refused to load it as invalid or
    /// unsupported.
    #[error(transparent)]
    Neff(neuron_rt::Error),

    /// The runtime failed while building the engine or re-admitting a core (loading models,
    /// allocating tensors), or no libnrt could be loaded.
    #[error(transparent)]
    Runtime(neuron_rt::Error),

    /// The inputs do not fit the model: names, count, dtype, shape or batch size.
    #[error("invalid input: {0}")]
    Input(TensorError),

    /// The output buffers do not fit what the forward produces.
    #[error("invalid output: {0}")]
    Output(TensorError),

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

    /// `core` is not one of the engine's cores.
    #[error("{core} is not one of this engine's cores ({cores}); pass one of those")]
    UnknownCore {
        /// The core asked for.
        core: DeviceId,
        /// The engine's cores, as a list.
        cores: String,
    },

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

    /// Every core is quarantined after repeated hardware failures.
    #[error(
        "all {cores} cores are quarantined after repeated hardware failures; see health() and \
         readmit() a core once it is fixed"
    )]
    AllCoresQuarantined {
        /// The engine's core count.
        cores: usize,
    },

    /// The operating system would not start a thread the engine needs.
    #[error(
        "cannot start {thread}: {source}; free system resources (threads, memory) or use fewer workers"
    )]
    Spawn {
        /// Which thread, e.g. `worker thread 3`.
        thread: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Every worker serving a core has stopped (a worker thread died outside a job: a bug
    /// in the engine; please report). Build a new engine.
    #[error("the workers serving {core} have stopped; build a new engine")]
    WorkersGone {
        /// The core whose workers are gone.
        core: DeviceId,
    },

    /// A worker thread panicked while running a chunk (a bug in the engine: please report).
    #[error("chunk {chunk} on {core}: worker panicked (a bug, please report it): {message}")]
    WorkerPanicked {
        /// Index of the chunk.
        chunk: usize,
        /// The logical core.
        core: DeviceId,
        /// The panic message.
        message: String,
    },

    /// The engine broke one of its own invariants (a bug: please report the message).
    #[error("chunk {chunk} on {core}: internal error (a bug, please report it): {message}")]
    Internal {
        /// Index of the chunk.
        chunk: usize,
        /// The logical core.
        core: DeviceId,
        /// What went wrong.
        message: String,
    },
}

/// What was wrong with one tensor (or the set of them) a caller gave: the payload of
/// [`Error::Input`] and [`Error::Output`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The tensors do not match the model's by name or position.
    #[error(transparent)]
    Match(#[from] MatchError),

    /// A tensor's dtype is not the model's.
    #[error(
        "{side} {} is {} but the model {} {expected}",
        quote(.name),
        .got.name(),
        if *.side == Side::Input { "expects" } else { "produces" }
    )]
    Dtype {
        /// Inputs or outputs.
        side: Side,
        /// The model's name for the tensor.
        name: String,
        /// The dtype given.
        got: DType,
        /// The model's dtype, as [`IoSpec::dtype_name`](crate::IoSpec::dtype_name) says it.
        expected: String,
    },

    /// A shape, a byte length or a batch size does not fit; the message has the values.
    #[error("{0}")]
    Shape(String),
}

/// The classification of an [`Error`]: what the CLI's exit code and the C ABI's
/// `ndp_status_t` are derived from. [`ErrorKind::is_bad_input`] states the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration cannot work with this model or these cores.
    Config,
    /// The inputs do not fit the model.
    Input,
    /// The output buffers do not fit what the forward produces.
    Output,
    /// The batch cannot be split, or dynamic batching cannot be used here.
    Batch,
    /// Malformed, out-of-range or repeated device ids, or a malformed core variable.
    DeviceIds,
    /// A malformed NEFF, or one libnrt refused to load as invalid or unsupported.
    Neff,
    /// A file (the NEFF) could not be read.
    Io,
    /// An argument names something the engine does not have (a core).
    InvalidArgument,
    /// No usable libnrt could be loaded.
    LibraryNotFound,
    /// libnrt failed (initialising, loading, allocating).
    Runtime,
    /// A chunk failed on a core during a forward.
    Chunk,
    /// Every core is quarantined.
    AllCoresQuarantined,
    /// The operating system would not start a thread.
    System,
    /// The workers serving a core have stopped; the engine cannot run.
    Stopped,
    /// A bug in the engine (a worker panicked, an invariant broke).
    Internal,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Config,
        ErrorKind::Input,
        ErrorKind::Output,
        ErrorKind::Batch,
        ErrorKind::DeviceIds,
        ErrorKind::Neff,
        ErrorKind::Io,
        ErrorKind::InvalidArgument,
        ErrorKind::LibraryNotFound,
        ErrorKind::Runtime,
        ErrorKind::Chunk,
        ErrorKind::AllCoresQuarantined,
        ErrorKind::System,
        ErrorKind::Stopped,
        ErrorKind::Internal,
    ];

    /// True when the caller supplied something invalid (fix the input and retry); false when
    /// the runtime, the hardware, the operating system or the engine itself failed.
    pub fn is_bad_input(self) -> bool {
        match self {
            ErrorKind::Config
            | ErrorKind::Input
            | ErrorKind::Output
            | ErrorKind::Batch
            | ErrorKind::DeviceIds
            | ErrorKind::Neff
            | ErrorKind::Io
            | ErrorKind::InvalidArgument => true,
            ErrorKind::LibraryNotFound
            | ErrorKind::Runtime
            | ErrorKind::Chunk
            | ErrorKind::AllCoresQuarantined
            | ErrorKind::System
            | ErrorKind::Stopped
            | ErrorKind::Internal => false,
        }
    }
}

impl From<neuron_rt::Error> for Error {
    /// Sorts a `neuron-rt` error by cause: device ids and core variables, NEFFs (including
    /// one `nrt_load` refuses as invalid or unsupported), and everything else.
    fn from(error: neuron_rt::Error) -> Error {
        match &error {
            neuron_rt::Error::DeviceId(_)
            | neuron_rt::Error::VisibleCores(_)
            | neuron_rt::Error::CoreEnv { .. } => Error::DeviceIds(error),
            neuron_rt::Error::Neff(_) => Error::Neff(error),
            neuron_rt::Error::Nrt {
                op: "nrt_load",
                status: Status::Invalid | Status::UnsupportedNeffVersion,
                ..
            } => Error::Neff(error),
            _ => Error::Runtime(error),
        }
    }
}

impl From<NeffError> for Error {
    fn from(error: NeffError) -> Error {
        Error::Neff(neuron_rt::Error::Neff(error))
    }
}

impl Error {
    /// An [`Error::Config`] with this reason.
    pub(crate) fn config(reason: impl Into<String>) -> Error {
        Error::Config {
            reason: reason.into(),
        }
    }

    /// An [`Error::Input`] about shapes, sizes or rows.
    pub(crate) fn input(message: impl Into<String>) -> Error {
        Error::Input(TensorError::Shape(message.into()))
    }

    /// An [`Error::Output`] about shapes or sizes.
    pub(crate) fn output(message: impl Into<String>) -> Error {
        Error::Output(TensorError::Shape(message.into()))
    }

    /// The error's classification (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::DeviceIds(_) => ErrorKind::DeviceIds,
            Error::Neff(neuron_rt::Error::Neff(NeffError::Io { .. })) => ErrorKind::Io,
            Error::Neff(_) => ErrorKind::Neff,
            Error::Runtime(neuron_rt::Error::Load(_)) => ErrorKind::LibraryNotFound,
            Error::Runtime(neuron_rt::Error::InvalidArgument { .. }) => ErrorKind::InvalidArgument,
            Error::Runtime(_) => ErrorKind::Runtime,
            Error::Input(_) => ErrorKind::Input,
            Error::Output(_) => ErrorKind::Output,
            Error::DynamicBatchingIneligible { .. } | Error::Plan(_) => ErrorKind::Batch,
            Error::UnknownCore { .. } => ErrorKind::InvalidArgument,
            Error::Chunk { .. } => ErrorKind::Chunk,
            Error::AllCoresQuarantined { .. } => ErrorKind::AllCoresQuarantined,
            Error::Spawn { .. } => ErrorKind::System,
            Error::WorkersGone { .. } => ErrorKind::Stopped,
            Error::WorkerPanicked { .. } | Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// The libnrt status behind the error, if it came from libnrt.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Runtime(e)
            | Error::Neff(e)
            | Error::DeviceIds(e)
            | Error::Chunk { source: e, .. } => e.status(),
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
            Error::WorkerPanicked { chunk, core, .. } | Error::Internal { chunk, core, .. } => {
                Some((*chunk, *core, None))
            }
            _ => None,
        }
    }
}
