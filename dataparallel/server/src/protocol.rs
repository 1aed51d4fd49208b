//! The JSON bodies of the Open Inference Protocol's REST API that the server reads and
//! writes: inference requests and responses, and model and server metadata.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v2/models/{name}/infer`'s JSON (the whole body, or its first
/// `Inference-Header-Content-Length` bytes with the binary tensor data extension).
#[derive(Debug, Deserialize)]
pub(crate) struct InferRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) parameters: Option<Map<String, Value>>,
    pub(crate) inputs: Vec<RequestInput>,
    /// The outputs wanted (default: all of them).
    #[serde(default)]
    pub(crate) outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor of a request.
#[derive(Debug, Deserialize)]
pub(crate) struct RequestInput {
    pub(crate) name: String,
    /// Dims as the client wrote them (checked against the model before anything is sized by
    /// them).
    pub(crate) shape: Vec<i64>,
    pub(crate) datatype: String,
    #[serde(default)]
    pub(crate) parameters: Option<Map<String, Value>>,
    /// Row-major elements, flat or nested (absent when the tensor is binary data).
    #[serde(default)]
    pub(crate) data: Option<Value>,
}

/// One output a request asks for.
#[derive(Debug, Deserialize)]
pub(crate) struct RequestOutput {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) parameters: Option<Map<String, Value>>,
}

/// The response of an inference.
#[derive(Debug, Serialize)]
pub(crate) struct InferResponse {
    pub(crate) model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    pub(crate) outputs: Vec<ResponseOutput>,
}

/// One output tensor of a response: JSON `data`, or `parameters.binary_data_size` bytes after
/// the JSON.
#[derive(Debug, Serialize)]
pub(crate) struct ResponseOutput {
    pub(crate) name: String,
    pub(crate) datatype: &'static str,
    pub(crate) shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parameters: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<Vec<Value>>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Serialize)]
pub(crate) struct ModelMetadata {
    pub(crate) name: String,
    pub(crate) versions: Vec<String>,
    pub(crate) platform: &'static str,
    pub(crate) inputs: Vec<TensorMetadata>,
    pub(crate) outputs: Vec<TensorMetadata>,
}

/// One tensor of the model metadata; the batch dim is `-1` (any number of rows).
#[derive(Debug, Serialize)]
pub(crate) struct TensorMetadata {
    pub(crate) name: String,
    pub(crate) datatype: &'static str,
    pub(crate) shape: Vec<i64>,
}

/// A boolean request parameter (`binary_data`, `binary_data_output`): absent is `false`.
pub(crate) fn flag(parameters: Option<&Map<String, Value>>, key: &str) -> Result<bool, String> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "parameter {key:?} is {other}; it must be true or false"
        )),
    }
}
