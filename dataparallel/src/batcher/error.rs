//! Why a submit was refused. Every error hands the request back (as crossbeam's
//! `TrySendError::Full(T)` does), so the caller can retry, reroute or shed it.

use super::request::Request;

/// A request that does not fit the model or the batcher, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {reason}")]
pub struct InvalidRequest {
    /// The request, unchanged.
    pub request: Request,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Why [`Batcher::try_submit`](super::Batcher::try_submit) refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySubmitError {
    /// The queue is full; the request is handed back. Retry later, or shed load.
    #[error("the batcher's queue is full; retry later or shed the request")]
    Full(Request),
    /// The request does not fit the model (checked before queueing).
    #[error(transparent)]
    Invalid(InvalidRequest),
    /// The batcher's threads have stopped (one panicked: a bug, please report).
    #[error("the batcher has stopped (a bug, please report)")]
    Stopped(Request),
}

/// Why [`Batcher::submit_timeout`](super::Batcher::submit_timeout) refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitTimeoutError {
    /// The queue stayed full for the whole timeout; the request is handed back.
    #[error(
        "the batcher's queue stayed full for the whole timeout; retry later or shed the request"
    )]
    Timeout(Request),
    /// The request does not fit the model (checked before queueing).
    #[error(transparent)]
    Invalid(InvalidRequest),
    /// The batcher's threads have stopped (one panicked: a bug, please report).
    #[error("the batcher has stopped (a bug, please report)")]
    Stopped(Request),
}

/// Why [`Batcher::submit`](super::Batcher::submit) refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The request does not fit the model (checked before queueing).
    #[error(transparent)]
    Invalid(InvalidRequest),
    /// The batcher's threads have stopped (one panicked: a bug, please report).
    #[error("the batcher has stopped (a bug, please report)")]
    Stopped(Request),
}

impl TrySubmitError {
    /// The request, handed back.
    pub fn into_request(self) -> Request {
        match self {
            TrySubmitError::Full(r) | TrySubmitError::Stopped(r) => r,
            TrySubmitError::Invalid(i) => i.request,
        }
    }
}

impl SubmitTimeoutError {
    /// The request, handed back.
    pub fn into_request(self) -> Request {
        match self {
            SubmitTimeoutError::Timeout(r) | SubmitTimeoutError::Stopped(r) => r,
            SubmitTimeoutError::Invalid(i) => i.request,
        }
    }
}

impl SubmitError {
    /// The request, handed back.
    pub fn into_request(self) -> Request {
        match self {
            SubmitError::Stopped(r) => r,
            SubmitError::Invalid(i) => i.request,
        }
    }
}
