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

    /// 404: no such model; the message lists the `served` ones.
    pub(crate) fn unknown_model<'n>(
        name: &str,
        served: impl IntoIterator<Item = &'n str>,
    ) -> ApiError {
        let served: Vec<String> = served.into_iter().map(|s| quote(s).to_string()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model {}; this server serves {}",
                quote(name),
                served.join(", ")
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

/// Why a server could not be built over an engine, or a model not added to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The engine refused the request batcher (see [`dataparallel::batcher::Batcher::new`]).
    #[error("cannot start the request batcher: {0}")]
    Batcher(#[from] dataparallel::Error),
    /// A model tensor has no Open Inference Protocol datatype, or the configuration is invalid.
    #[error("{0}")]
    Model(String),
    /// A model name that cannot be a URL path segment as it is (see
    /// [`check_model_name`](crate::check_model_name)).
    #[error(
        "model name {} cannot be a URL path segment; name it with 1 to {max} ASCII letters, \
         digits, '-', '_', '.' or '~' (not \".\" or \"..\")",
        quote(.name),
        max = crate::MAX_MODEL_NAME_BYTES
    )]
    ModelName {
        /// The name refused.
        name: String,
    },
    /// A second model with a name already served.
    #[error("two models are named {}; give each model its own name", quote(.name))]
    DuplicateModel {
        /// The name given twice.
        name: String,
    },
    /// One model more than [`MAX_MODELS`](crate::MAX_MODELS).
    #[error("a server serves at most {max} models; serve the others from another server")]
    TooManyModels {
        /// The bound.
        max: usize,
    },
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
        let e = ApiError::unknown_model(&"m".repeat(10_000), ["served"]);
        assert!(e.message.contains("(10000 bytes)"), "{}", e.message);
        let e = ApiError::unknown_model("x", ["a", "b"]);
        assert_eq!(
            e.message,
            "unknown model \"x\"; this server serves \"a\", \"b\""
        );
    }
}
