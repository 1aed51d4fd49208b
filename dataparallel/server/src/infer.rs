//! `POST /v2/models/{name}/infer`: a request body (JSON, or JSON followed by binary tensor
//! data), read up to the model's limit → checked input tensors → the batcher → the response
//! body.
//!
//! Every input is checked against the model (name, datatype, shape, rows ≤ the batcher's
//! `max_batch_rows`) before its bytes are allocated, so a request's size is bounded by the
//! model's, never by what the client claims.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use dataparallel::batcher::{OwnedTensor, Request, RequestError, Response, Ticket};
use http_body_util::LengthLimitError;
use serde_json::{Map, Value};

use dataparallel::quote::quote;

use crate::error::ApiError;
use crate::model::{ServedModel, TensorMeta};
use crate::protocol::{InferRequest, InferResponse, RequestInput, ResponseOutput, flag};

/// The header that splits a body into its JSON and its binary tensor data.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// A request queued on the batcher, with what its response needs.
#[derive(Debug)]
pub(crate) struct Submitted {
    ticket: Ticket,
    id: Option<String>,
    wanted: Vec<Wanted>,
}

/// Reads `body` (at most `limit` bytes).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e).is_some_and(|s| s.is::<LengthLimitError>());
        if over {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the limit for this model ({limit} bytes); send \
                     fewer rows per request"
                ),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// Parses and checks the inference request in `body` and queues it on `model`'s batcher
/// (never blocks). Everything parsed is dropped before this returns but the tensors, which
/// the batcher now owns.
pub(crate) fn submit(
    model: &ServedModel,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Submitted, ApiError> {
    let (json, binary) = split_body(headers, body)?;
    let request: InferRequest = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))?;
    let wanted = wanted_outputs(model, &request)?;
    let inputs = inputs(model, request.inputs, binary)?;
    let mut submit = Request::new(inputs);
    if let Some(timeout) = timeout(request.parameters.as_ref())? {
        submit = submit.timeout(timeout);
    }
    let ticket = model.submit(submit)?;
    Ok(Submitted {
        ticket,
        id: request.id,
        wanted,
    })
}

/// Waits for a submitted request and builds its response.
pub(crate) async fn complete(
    model: &ServedModel,
    submitted: Submitted,
) -> Result<HttpResponse, ApiError> {
    let response = submitted.ticket.await.map_err(|e| match e {
        RequestError::DeadlineExceeded { .. } => ApiError::unavailable(e.to_string()),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    })?;
    Ok(respond(model, submitted.id, &submitted.wanted, response))
}

/// The body's JSON and binary parts (`Inference-Header-Content-Length` bytes of JSON, the
/// rest binary; without the header, all JSON).
fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "Inference-Header-Content-Length is not a byte count; give the JSON header's \
                 length in bytes",
            )
        })?;
    if length > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length is {length} but the body has {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// The per-request timeout parameter, in microseconds (as Triton's `timeout`).
fn timeout(parameters: Option<&Map<String, Value>>) -> Result<Option<Duration>, ApiError> {
    match parameters.and_then(|p| p.get("timeout")) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&us| us > 0)
            .map(|us| Some(Duration::from_micros(us)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parameter \"timeout\" is {v}; give a positive number of microseconds"
                ))
            }),
    }
}

/// One output to send back: the model output's index and whether it goes as binary data.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    index: usize,
    binary: bool,
}

/// The outputs the request asks for (all, in the model's order, when it names none).
fn wanted_outputs(model: &ServedModel, request: &InferRequest) -> Result<Vec<Wanted>, ApiError> {
    let all_binary =
        flag(request.parameters.as_ref(), "binary_data_output").map_err(ApiError::bad_request)?;
    let Some(outputs) = &request.outputs else {
        return Ok((0..model.outputs.len())
            .map(|index| Wanted {
                index,
                binary: all_binary,
            })
            .collect());
    };
    let mut wanted: Vec<Wanted> = Vec::with_capacity(outputs.len().min(model.outputs.len()));
    for output in outputs {
        let index = model
            .outputs
            .iter()
            .position(|o| o.name == output.name)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown output {}; the model's outputs are {}",
                    quote(&output.name),
                    names(&model.outputs)
                ))
            })?;
        if wanted.iter().any(|w| w.index == index) {
            return Err(ApiError::bad_request(format!(
                "output {} is requested twice; name each output once",
                quote(&output.name)
            )));
        }
        let binary = match output
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data"))
        {
            None => all_binary,
            Some(_) => {
                flag(output.parameters.as_ref(), "binary_data").map_err(ApiError::bad_request)?
            }
        };
        wanted.push(Wanted { index, binary });
    }
    Ok(wanted)
}

fn names(tensors: &[TensorMeta]) -> String {
    let names: Vec<String> = tensors.iter().map(|t| quote(&t.name).to_string()).collect();
    names.join(", ")
}

/// The request's inputs as the batcher's tensors, in the request's order, each checked
/// against its model input before its bytes are allocated.
fn inputs(
    model: &ServedModel,
    given: Vec<RequestInput>,
    mut binary: &[u8],
) -> Result<Vec<OwnedTensor>, ApiError> {
    if given.len() != model.inputs.len() {
        return Err(ApiError::bad_request(format!(
            "the request has {} inputs; the model takes {}: {}",
            given.len(),
            model.inputs.len(),
            names(&model.inputs)
        )));
    }
    let mut seen: Vec<usize> = Vec::with_capacity(given.len());
    let mut tensors = Vec::with_capacity(given.len());
    for input in given {
        let index = model
            .inputs
            .iter()
            .position(|m| m.name == input.name)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown input {}; the model's inputs are {}",
                    quote(&input.name),
                    names(&model.inputs)
                ))
            })?;
        if seen.contains(&index) {
            return Err(ApiError::bad_request(format!(
                "input {} is given twice; give each input once",
                quote(&input.name)
            )));
        }
        seen.push(index);
        let meta = &model.inputs[index];
        let (shape, bytes) = checked_size(meta, &input, model.max_rows)?;
        let data = match binary_size(&input)? {
            Some(size) => {
                if input.data.is_some() {
                    return Err(ApiError::bad_request(format!(
                        "input {} has both \"data\" and binary_data_size; send one",
                        quote(&input.name)
                    )));
                }
                if size != bytes {
                    return Err(ApiError::bad_request(format!(
                        "input {}: shape {shape:?} of {} needs {bytes} bytes but \
                         binary_data_size is {size}",
                        quote(&input.name),
                        meta.datatype.name()
                    )));
                }
                if size > binary.len() {
                    return Err(ApiError::bad_request(format!(
                        "input {} has binary_data_size {size} but only {} bytes of binary \
                         data are left in the body",
                        quote(&input.name),
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                mine.to_vec()
            }
            None => json_data(meta, &input, bytes)?,
        };
        tensors.push(OwnedTensor::new(meta.dtype, shape, data).named(meta.name.clone()));
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the body has {} bytes of binary data that no input's binary_data_size claims",
            binary.len()
        )));
    }
    Ok(tensors)
}

/// Checks an input's datatype and shape against the model; returns the shape and its size
/// in bytes (bounded by `max_rows` rows of the model's).
fn checked_size(
    meta: &TensorMeta,
    input: &RequestInput,
    max_rows: usize,
) -> Result<(Vec<usize>, usize), ApiError> {
    if input.datatype != meta.datatype.name() {
        return Err(ApiError::bad_request(format!(
            "input {} has datatype {}; the model expects {}",
            quote(&input.name),
            quote(&input.datatype),
            meta.datatype.name()
        )));
    }
    let expected = || {
        let dims: Vec<String> = std::iter::once("rows".to_owned())
            .chain(meta.row_shape.iter().map(usize::to_string))
            .collect();
        format!("[{}] with 1 to {max_rows} rows", dims.join(", "))
    };
    let fits = input.shape.len() == meta.row_shape.len() + 1
        && input.shape[1..]
            .iter()
            .zip(&meta.row_shape)
            .all(|(&got, &want)| usize::try_from(got) == Ok(want))
        && usize::try_from(input.shape[0]).is_ok_and(|rows| (1..=max_rows).contains(&rows));
    if !fits {
        return Err(ApiError::bad_request(format!(
            "input {} has shape {:?}; the model expects {}",
            quote(&input.name),
            input.shape,
            expected()
        )));
    }
    // Every dim was converted above; rows ≤ max_rows, so the size is a slice of the batch.
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .collect();
    let bytes = shape[0].saturating_mul(meta.row_bytes());
    Ok((shape, bytes))
}

/// An input's `binary_data_size` parameter, if any.
fn binary_size(input: &RequestInput) -> Result<Option<usize>, ApiError> {
    match input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
    {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "input {} has binary_data_size {v}; give a byte count",
                    quote(&input.name)
                ))
            }),
    }
}

/// An input's JSON `data` (flat or nested, row-major) as `bytes` bytes of its datatype.
fn json_data(meta: &TensorMeta, input: &RequestInput, bytes: usize) -> Result<Vec<u8>, ApiError> {
    let Some(data) = &input.data else {
        return Err(ApiError::bad_request(format!(
            "input {} has no \"data\" (and no binary_data_size parameter)",
            quote(&input.name)
        )));
    };
    let elements = bytes / meta.datatype.size();
    let mut out = Vec::with_capacity(bytes);
    let mut count = 0usize;
    flatten(data, &mut |value| {
        count += 1;
        if count > elements {
            return Err(format!(
                "has more than the {elements} elements its shape {:?} needs",
                input.shape
            ));
        }
        meta.datatype
            .push(value, &mut out)
            .map_err(|e| format!("element {}: {e}", count - 1))
    })
    .map_err(|e| ApiError::bad_request(format!("input {}: {e}", quote(&input.name))))?;
    if count != elements {
        return Err(ApiError::bad_request(format!(
            "input {} has {count} elements; its shape {:?} needs {elements}",
            quote(&input.name),
            input.shape
        )));
    }
    Ok(out)
}

/// Calls `each` on every leaf of `value`, row-major (arrays nest at most as deep as the JSON
/// parser allows, 128 levels).
fn flatten(
    value: &Value,
    each: &mut impl FnMut(&Value) -> Result<(), String>,
) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, each)),
        leaf => each(leaf),
    }
}

/// The response to `response`: the wanted outputs, JSON or binary.
fn respond(
    model: &ServedModel,
    id: Option<String>,
    wanted: &[Wanted],
    mut response: Response,
) -> HttpResponse {
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut binary: Vec<Vec<u8>> = Vec::new();
    for w in wanted {
        let meta = &model.outputs[w.index];
        let tensor = std::mem::replace(
            &mut response.outputs[w.index],
            OwnedTensor::new(meta.dtype, Vec::new(), Vec::new()),
        );
        let mut output = ResponseOutput {
            name: meta.name.clone(),
            datatype: meta.datatype.name(),
            shape: tensor.shape,
            parameters: None,
            data: None,
        };
        if w.binary {
            let mut parameters = Map::new();
            parameters.insert("binary_data_size".to_owned(), tensor.data.len().into());
            output.parameters = Some(parameters);
            binary.push(tensor.data);
        } else {
            output.data = Some(meta.datatype.to_json(&tensor.data));
        }
        outputs.push(output);
    }
    let body = InferResponse {
        model_name: model.name.clone(),
        id,
        outputs,
    };
    let json = match serde_json::to_vec(&body) {
        Ok(json) => json,
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the response (a bug, please report): {e}"),
            )
            .into_response();
        }
    };
    if binary.is_empty() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response();
    }
    let json_length = json.len();
    let mut bytes = json;
    for data in binary {
        bytes.extend_from_slice(&data);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_length),
            ),
        ],
        bytes,
    )
        .into_response()
}
