//! Errors as Python exceptions: the one place that maps the engine's [`dataparallel::Error`]
//! (and the batcher's request errors) to the exception classes of `neuron_dp._errors`.
//!
//! The exception classes are defined in Python (`python/neuron_dp/_errors.py`) so they can
//! inherit from both `neuron_dp.Error` and the matching built-in (`ValueError`,
//! `RuntimeError`, ...); this module builds instances of them with their attributes.

use dataparallel::batcher::{RequestError, SubmitError, TrySubmitError};
use dataparallel::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The Python module holding the exception classes.
const ERRORS_MODULE: &str = "neuron_dp._errors";

/// Builds `neuron_dp.<class>(message, **attributes)` as a [`PyErr`]. Never fails: if the
/// class cannot be built (the package is broken), the failure itself is returned.
pub(crate) fn raise(
    py: Python<'_>,
    class: &str,
    message: &str,
    attributes: &[(&str, Option<Py<PyAny>>)],
) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let kwargs = PyDict::new(py);
        for (key, value) in attributes {
            kwargs.set_item(*key, value)?;
        }
        let class = py.import(ERRORS_MODULE)?.getattr(class)?;
        Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
    })();
    built.unwrap_or_else(|error| error)
}

fn int(py: Python<'_>, value: Option<u64>) -> Option<Py<PyAny>> {
    value.and_then(|v| v.into_pyobject(py).ok().map(|v| v.into_any().unbind()))
}

/// The exception for an engine error, chosen from [`Error::kind`] (the classification the
/// CLI's exit codes and the C ABI's statuses come from too):
///
/// | kind | exception |
/// |---|---|
/// | `Input`, `Output`, `Batch` | `InputError` (`ValueError`) |
/// | `Config`, `DeviceIds`, `Neff`, `Io`, `InvalidArgument` | `ConfigError` (`ValueError`) |
/// | `LibraryNotFound` | `LibraryNotFoundError` (`OSError`) with `.paths` |
/// | `Runtime`, `Chunk`, `AllCoresQuarantined`, `Stopped`, `Internal` | `DeviceError` (`RuntimeError`) with `.chunk`, `.core`, `.physical_core`, `.status` |
/// | `System`, anything newer | `Error` |
pub(crate) fn engine_error(py: Python<'_>, error: &Error) -> PyErr {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Input | ErrorKind::Output | ErrorKind::Batch => {
            raise(py, "InputError", &message, &[])
        }
        ErrorKind::Config
        | ErrorKind::DeviceIds
        | ErrorKind::Neff
        | ErrorKind::Io
        | ErrorKind::InvalidArgument => raise(py, "ConfigError", &message, &[]),
        ErrorKind::LibraryNotFound => {
            let paths = match error {
                Error::Runtime(neuron_rt::Error::Load(load)) => load
                    .attempts()
                    .iter()
                    .map(|a| a.path.display().to_string())
                    .collect(),
                _ => Vec::new(),
            };
            let paths = paths.into_pyobject(py).ok().map(|p| p.into_any().unbind());
            raise(py, "LibraryNotFoundError", &message, &[("paths", paths)])
        }
        ErrorKind::Runtime
        | ErrorKind::Chunk
        | ErrorKind::AllCoresQuarantined
        | ErrorKind::Stopped
        | ErrorKind::Internal => {
            let (chunk, core, physical) = match (error.chunk(), error) {
                (Some((chunk, core, physical)), _) => (Some(chunk), Some(core.index()), physical),
                (None, Error::WorkersGone { core }) => (None, Some(core.index()), None),
                (None, _) => (None, None, None),
            };
            raise(
                py,
                "DeviceError",
                &message,
                &[
                    ("chunk", int(py, chunk.map(|c| c as u64))),
                    ("core", int(py, core.map(u64::from))),
                    ("physical_core", int(py, physical.map(u64::from))),
                    (
                        "status",
                        int(py, error.status().map(|s| u64::from(s.raw()))),
                    ),
                ],
            )
        }
        _ => raise(py, "Error", &message, &[]),
    }
}

/// The exception for a batcher request that produced no outputs.
pub(crate) fn request_error(py: Python<'_>, error: &RequestError) -> PyErr {
    match error {
        RequestError::Engine { source, .. } => engine_error(py, source),
        RequestError::DeadlineExceeded { .. } => {
            raise(py, "DeadlineExceededError", &error.to_string(), &[])
        }
        _ => raise(py, "Error", &error.to_string(), &[]),
    }
}

/// The exception for a refused blocking submit.
pub(crate) fn submit_error(py: Python<'_>, error: &SubmitError) -> PyErr {
    match error {
        SubmitError::Invalid(_) => raise(py, "InputError", &error.to_string(), &[]),
        _ => raise(py, "Error", &error.to_string(), &[]),
    }
}

/// The exception for a refused non-blocking submit.
pub(crate) fn try_submit_error(py: Python<'_>, error: &TrySubmitError) -> PyErr {
    match error {
        TrySubmitError::Full(_) => raise(py, "QueueFullError", &error.to_string(), &[]),
        TrySubmitError::Invalid(_) => raise(py, "InputError", &error.to_string(), &[]),
        _ => raise(py, "Error", &error.to_string(), &[]),
    }
}

/// A submit to a batcher that `close` has stopped.
pub(crate) fn closed_error(py: Python<'_>) -> PyErr {
    raise(
        py,
        "BatcherClosedError",
        "the batcher is closed (close() was called or its with-block ended); create a new \
         neuron_dp.Batcher to submit more requests",
        &[],
    )
}

/// An input the front-end itself refuses (before the engine sees it).
pub(crate) fn input_error(py: Python<'_>, message: impl AsRef<str>) -> PyErr {
    raise(py, "InputError", message.as_ref(), &[])
}

/// A panic caught at the boundary (a bug): a `neuron_dp.Error`, never an abort.
pub(crate) fn panic_error(py: Python<'_>, payload: &(dyn std::any::Any + Send)) -> PyErr {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    raise(
        py,
        "Error",
        &format!("internal error in neuron_dp (a bug, please report): {text}"),
        &[],
    )
}
