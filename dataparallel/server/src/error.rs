//! The protocol's error answer: an HTTP status and `{"error": "one line"}`, and the server's
//! own start-up error ([`ServeError`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dataparallel::quote::{one_line, quote};

/// A request the server answers with an error: the status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    /// 400: the request is malformed or does not fit the model.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such model.
    pub(crate) fn unknown_model(name: &str, served: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model {}; this server serves {}",
                quote(name),
                quote(served)
            ),
        )
    }

    /// 503: not ready, shutting down, or the queue is full.
    pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: bounded(one_line(&message.into())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The most characters of an error message: client text in it (names are quoted and cut
/// already, but a shape or a parser's message may echo more) cannot make it longer.
const MESSAGE_MAX_CHARS: usize = 1024;

/// `text` cut after [`MESSAGE_MAX_CHARS`] characters, with a note when it was.
fn bounded(text: String) -> String {
    match text.char_indices().nth(MESSAGE_MAX_CHARS) {
        None => text,
        Some((cut, _)) => format!(
            "{}… (message cut at {MESSAGE_MAX_CHARS} characters)",
            &text[..cut]
        ),
    }
}

/// Why a server could not be built over an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The engine refused the request batcher (see [`dataparallel::batcher::Batcher::new`]).
    #[error("cannot start the request batcher: {0}")]
    Batcher(#[from] dataparallel::Error),
    /// A model tensor has no Open Inference Protocol datatype, or the configuration is invalid.
    #[error("{0}")]
    Model(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_bounded_line() {
        let e = ApiError::bad_request("first\n  second  \n\nthird");
        assert_eq!(e.message, "first; second; third");
        let e = ApiError::bad_request(format!("shape {:?}", vec![7i64; 100_000]));
        assert!(
            e.message.chars().count() < MESSAGE_MAX_CHARS + 64,
            "{}",
            e.message.len()
        );
        assert!(e.message.ends_with("(message cut at 1024 characters)"));
        let e = ApiError::unknown_model(&"m".repeat(10_000), "served");
        assert!(e.message.contains("(10000 bytes)"), "{}", e.message);
    }
}
