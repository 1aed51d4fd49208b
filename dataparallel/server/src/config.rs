//! How to serve: [`ServerConfig`] (the first model's settings and the server's own) and
//! [`ModelConfig`] (each further model's), and the bounds on both: how many models a server
//! takes and which names may appear in a URL.

use std::time::Duration;

use dataparallel::batcher::BatcherConfig;

use crate::error::ServeError;

/// [`ServerConfig::max_reading`] by default.
pub const DEFAULT_MAX_READING: usize = 64;

/// The most models one server serves (each has its own engine, batcher and threads).
pub const MAX_MODELS: usize = 64;

/// The longest model name, in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 128;

/// How to serve a model: the first (or only) model's name and batcher, and the settings of
/// the server as a whole. Further models are added with [`ModelConfig`]s
/// ([`Server::add_model`](crate::Server::add_model)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The model's name in the URLs (`/v2/models/{name}`); see [`check_model_name`].
    pub model_name: String,
    /// The request batcher's settings (batch size, delay, queue bound).
    pub batcher: BatcherConfig,
    /// Deadline of requests that give no `timeout` parameter (`None`: they wait as long as it
    /// takes). Overrides the batcher configuration's default deadline.
    pub request_timeout: Option<Duration>,
    /// Inference requests whose bodies may be read and parsed at once, over every model
    /// (default [`DEFAULT_MAX_READING`]); one more is answered 503 at once. Each body is
    /// bounded by its model's largest request, so this bounds the memory requests take
    /// before they are queued.
    pub max_reading: usize,
}

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

    /// The first model's part of this configuration.
    pub(crate) fn model(&self) -> ModelConfig {
        ModelConfig {
            name: self.model_name.clone(),
            batcher: self.batcher.clone(),
            request_timeout: self.request_timeout,
        }
    }
}

/// How to serve one more model next to the first: its name, its batcher, its default
/// timeout. The server's own settings ([`ServerConfig::max_reading`]) are shared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelConfig {
    /// The model's name in the URLs (`/v2/models/{name}`); see [`check_model_name`].
    pub name: String,
    /// The model's request batcher's settings.
    pub batcher: BatcherConfig,
    /// Deadline of the model's requests that give no `timeout` parameter (`None`: they wait
    /// as long as it takes). Overrides the batcher configuration's default deadline.
    pub request_timeout: Option<Duration>,
}

impl ModelConfig {
    /// Serves a model as `name` with the batcher's defaults and no timeout.
    pub fn new(name: impl Into<String>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            batcher: BatcherConfig::default(),
            request_timeout: None,
        }
    }

    /// Sets the batcher's settings.
    #[must_use]
    pub fn batcher(mut self, batcher: BatcherConfig) -> ModelConfig {
        self.batcher = batcher;
        self
    }

    /// Sets the default request timeout.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> ModelConfig {
        self.request_timeout = timeout;
        self
    }

    /// The batcher's settings with the request timeout as its default deadline.
    pub(crate) fn batcher_with_deadline(&self) -> BatcherConfig {
        let deadline = self
            .request_timeout
            .or(self.batcher.default_deadline_value());
        self.batcher.clone().default_deadline(deadline)
    }
}

/// Checks that `name` can be a model's URL path segment as it is, with nothing to
/// percent-encode: 1 to [`MAX_MODEL_NAME_BYTES`] ASCII letters, digits, `-`, `_`, `.` and
/// `~` (RFC 3986's unreserved characters), and not `.` or `..`.
///
/// # Errors
///
/// [`ServeError::ModelName`] when it cannot.
pub fn check_model_name(name: &str) -> Result<(), ServeError> {
    let safe = !name.is_empty()
        && name.len() <= MAX_MODEL_NAME_BYTES
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if safe {
        Ok(())
    } else {
        Err(ServeError::ModelName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_unreserved_url_segments() {
        for good in [
            "affine",
            "resnet-50_v1.2",
            "a",
            "~user",
            "A9",
            &"m".repeat(128),
        ] {
            assert!(check_model_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a%2Fb",
            "a?b",
            "a#b",
            "é",
            "a\nb",
            &"m".repeat(129),
        ] {
            let error = check_model_name(bad).expect_err(bad);
            assert!(matches!(error, ServeError::ModelName { .. }), "{bad}");
            let message = error.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(message.contains("letters, digits"), "{message}");
        }
    }
}
