//! The crate's one error type.
//!
//! Every failure names the operation that failed; failures reported by libnrt keep its
//! [`Status`] (and so the raw code) next to our message, and carry a remedy where one is known.

use std::fmt;

use neuron_sys::{LibraryPathError, LoadError, Status};

use crate::device_id::DeviceIdError;
use crate::neff::NeffError;
use crate::visible_cores::VisibleCoresError;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `neuron-rt`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No usable libnrt could be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),

    /// The library asked for with [`RuntimeBuilder::library`](crate::RuntimeBuilder::library)
    /// cannot be used: another is already loaded, or the loader already ran.
    #[error(transparent)]
    LibraryPath(#[from] LibraryPathError),

    /// A libnrt call returned a status other than success.
    #[error("{op} failed: {status}{}{}", fmt_message(.message), fmt_remedy(*.remedy))]
    Nrt {
        /// The libnrt function or our operation that failed, e.g. `nrt_load`.
        op: &'static str,
        /// libnrt's status; [`Status::raw`] gives the code as returned.
        status: Status,
        /// What we were doing, with the values involved.
        message: String,
        /// What the user can do about it, where known.
        remedy: Option<&'static str>,
    },

    /// The loaded library lacks an optional libnrt function this operation needs.
    #[error(
        "{op} needs `{symbol}`, which the loaded libnrt does not export; upgrade aws-neuronx-runtime-lib"
    )]
    Unsupported {
        /// Our operation.
        op: &'static str,
        /// The missing libnrt symbol.
        symbol: &'static str,
    },

    /// A read, write or memset outside a tensor's bytes.
    #[error(
        "{op}: bytes {offset}..{end} are outside the tensor `{tensor}` of {size} bytes",
        end = .offset.saturating_add(*.len)
    )]
    OutOfBounds {
        /// Our operation.
        op: &'static str,
        /// The tensor's name.
        tensor: String,
        /// First byte asked for.
        offset: usize,
        /// Number of bytes asked for.
        len: usize,
        /// The tensor's size in bytes.
        size: usize,
    },

    /// An argument the caller controls is not acceptable.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// Our operation.
        op: &'static str,
        /// What is wrong and what to pass instead.
        message: String,
    },

    /// `NEURON_RT_VISIBLE_CORES` could not be parsed.
    #[error(transparent)]
    VisibleCores(#[from] VisibleCoresError),

    /// A device id or list of them is malformed or out of range.
    #[error(transparent)]
    DeviceId(#[from] DeviceIdError),

    /// A NEFF file is malformed.
    #[error(transparent)]
    Neff(#[from] NeffError),

    /// A core-selection variable (`NEURON_RT_NUM_CORES`, or `NEURON_RT_VISIBLE_CORES` that
    /// is not UTF-8) has a value libnrt would reject; checked before `nrt_init`.
    #[error("{var}={value:?} is invalid: {expected}; fix or unset it")]
    CoreEnv {
        /// The variable.
        var: &'static str,
        /// Its value, lossily decoded and cut to a bounded length.
        value: String,
        /// What it must be.
        expected: String,
    },
}

fn fmt_message(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

fn fmt_remedy(remedy: Option<&'static str>) -> String {
    remedy.map(|r| format!("; {r}")).unwrap_or_default()
}

/// What to tell the user for a status returned by a given operation, where we know.
pub(crate) fn remedy_for(op: &'static str, status: Status) -> Option<&'static str> {
    match (op, status) {
        ("nrt_init", Status::Resource | Status::Failure | Status::Invalid) => Some(
            "the NeuronCores may be held by another process (each core belongs to one process \
             at a time): stop it, or give each process its own cores with \
             NEURON_RT_VISIBLE_CORES (e.g. 0-11 and 12-23)",
        ),
        (_, Status::Uninitialized | Status::Closed) => {
            Some("keep a neuron_rt::Runtime alive for as long as models and tensors are used")
        }
        ("nrt_load", Status::LoadNotEnoughNc) => Some(
            "the core index is past the cores this process owns; device ids are zero-based \
             within NEURON_RT_VISIBLE_CORES",
        ),
        ("nrt_load" | "nrt_tensor_allocate", Status::Resource) => Some(
            "out of device memory on that NeuronCore: free tensors or unload models, or use \
             another core",
        ),
        ("nrt_load", Status::UnsupportedNeffVersion) => {
            Some("recompile the model with a neuronx-cc that matches this runtime")
        }
        ("nrt_execute", Status::Timeout) => Some(
            "the execution exceeded NEURON_RT_EXEC_TIMEOUT; the core may be hung and need a reset",
        ),
        ("nrt_execute", Status::Invalid) => Some(
            "the tensor sets must name exactly the model's inputs and outputs, with the sizes \
             the model reports, on the model's core",
        ),
        ("nrt_execute", Status::ExecNcBusy | Status::QueueFull) => Some(
            "the NeuronCore stayed busy with other executions (another model, thread or process) \
             through every retry: give each process its own cores (NEURON_RT_VISIBLE_CORES), or \
             run fewer models or workers per core",
        ),
        (_, Status::ExecUnitUnrecoverable) => {
            Some("the NeuronCore needs a reset: restart the process or the instance")
        }
        _ => None,
    }
}

/// Turns a raw libnrt status into `Ok(())` or an [`Error::Nrt`] with a remedy.
pub(crate) fn check(
    op: &'static str,
    raw: neuron_sys::NRT_STATUS,
    message: impl FnOnce() -> String,
) -> Result<()> {
    let status = Status::from_raw(raw);
    if status.is_success() {
        Ok(())
    } else {
        Err(Error::Nrt {
            op,
            status,
            message: message(),
            remedy: remedy_for(op, status),
        })
    }
}

impl Error {
    /// The libnrt status, for errors that came from libnrt.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Nrt { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The remedy, where one is known.
    pub fn remedy(&self) -> Option<&'static str> {
        match self {
            Error::Nrt { remedy, .. } => *remedy,
            _ => None,
        }
    }
}

/// Formats an optional physical core for messages.
pub(crate) struct PhysicalCore(pub(crate) Option<u32>);

impl fmt::Display for PhysicalCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(core) => write!(f, "physical core {core}"),
            None => f.write_str("physical core unknown"),
        }
    }
}
