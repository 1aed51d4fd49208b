//! The requests' bodies and the check of their answers.
//!
//! The model is `affine {2, 1}` over float32 rows of [`FEATURES`] values: `y = 2x + 1`.
//! Request `i` sends row variant `i mod VARIANTS` (each variant a different row of small
//! integers, exact in f32 and so is `2x + 1`), so a response that carries another request's
//! row is caught, as well as a wrong status or a malformed body. The bodies are encoded
//! once; sending one is a reference-count increment.

use bytes::Bytes;
use serde::Deserialize;

/// Values per row.
pub(crate) const FEATURES: usize = 16;
/// Distinct rows the requests cycle through (one full batch of 8 cores × 8 rows).
pub(crate) const VARIANTS: usize = 64;
/// The header that splits a body into its JSON and its binary tensor data.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// How a request carries its tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `"data": [...]` in the JSON body, and JSON numbers back.
    Json,
    /// The binary tensor data extension both ways: raw little-endian bytes after the JSON.
    Binary,
}

impl Encoding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Json => "JSON",
            Encoding::Binary => "binary",
        }
    }
}

/// Row variant `v`'s input.
pub(crate) fn row(v: usize) -> Vec<f32> {
    (0..FEATURES)
        .map(|j| ((v * FEATURES + j) % 1000) as f32)
        .collect()
}

/// Row variant `v`'s expected output.
pub(crate) fn expected(v: usize) -> Vec<f32> {
    row(v).iter().map(|x| x * 2.0 + 1.0).collect()
}

/// One request body.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) bytes: Bytes,
    /// The JSON part's length, for `Inference-Header-Content-Length` (binary bodies only).
    pub(crate) json_length: Option<usize>,
}

/// Every variant's body in one encoding, and the answers expected.
#[derive(Debug)]
pub(crate) struct Bodies {
    encoding: Encoding,
    bodies: Vec<Body>,
    expected: Vec<Vec<f32>>,
    /// The expected outputs as little-endian bytes (binary answers).
    expected_bytes: Vec<Vec<u8>>,
}

/// The part of an inference response the check reads.
#[derive(Debug, Deserialize)]
struct Response {
    outputs: Vec<Output>,
}

#[derive(Debug, Deserialize)]
struct Output {
    name: String,
    #[serde(default)]
    data: Option<Vec<f32>>,
}

impl Bodies {
    /// The bodies of the model's input `input` and output `output`.
    pub(crate) fn new(encoding: Encoding, input: &str, output: &str) -> Bodies {
        let bodies = (0..VARIANTS)
            .map(|v| {
                let x = row(v);
                match encoding {
                    Encoding::Json => {
                        let json = serde_json::json!({
                            "inputs": [{
                                "name": input,
                                "shape": [1, FEATURES],
                                "datatype": "FP32",
                                "data": x,
                            }],
                            "outputs": [{"name": output}],
                        });
                        Body {
                            bytes: Bytes::from(json.to_string()),
                            json_length: None,
                        }
                    }
                    Encoding::Binary => {
                        let json = serde_json::json!({
                            "inputs": [{
                                "name": input,
                                "shape": [1, FEATURES],
                                "datatype": "FP32",
                                "parameters": {"binary_data_size": FEATURES * 4},
                            }],
                            "outputs": [{"name": output, "parameters": {"binary_data": true}}],
                        })
                        .to_string();
                        let json_length = json.len();
                        let mut bytes = json.into_bytes();
                        bytes.extend(x.iter().flat_map(|v| v.to_le_bytes()));
                        Body {
                            bytes: Bytes::from(bytes),
                            json_length: Some(json_length),
                        }
                    }
                }
            })
            .collect();
        let expected: Vec<Vec<f32>> = (0..VARIANTS).map(expected).collect();
        let expected_bytes = expected
            .iter()
            .map(|y| y.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        Bodies {
            encoding,
            bodies,
            expected,
            expected_bytes,
        }
    }

    /// Request `i`'s body.
    pub(crate) fn body(&self, i: usize) -> &Body {
        &self.bodies[i % VARIANTS]
    }

    /// Checks request `i`'s answer: `json_length` is its `Inference-Header-Content-Length`
    /// header, if any, and `body` its whole body (the status is the caller's).
    pub(crate) fn check(
        &self,
        i: usize,
        json_length: Option<usize>,
        body: &[u8],
    ) -> Result<(), String> {
        let v = i % VARIANTS;
        match self.encoding {
            Encoding::Json => {
                let response: Response = serde_json::from_slice(body)
                    .map_err(|e| format!("the response is not an inference response: {e}"))?;
                let [output] = response.outputs.as_slice() else {
                    return Err(format!(
                        "the response has {} outputs; asked for 1",
                        response.outputs.len()
                    ));
                };
                match &output.data {
                    Some(data) if *data == self.expected[v] => Ok(()),
                    Some(data) => Err(format!(
                        "output {:?} is {data:?}; expected {:?}",
                        output.name, self.expected[v]
                    )),
                    None => Err(format!("output {:?} has no data", output.name)),
                }
            }
            Encoding::Binary => {
                let want = &self.expected_bytes[v];
                let Some(length) = json_length else {
                    return Err(format!("the response has no {HEADER_LENGTH} header"));
                };
                if length.checked_add(want.len()) != Some(body.len()) {
                    return Err(format!(
                        "the response has {} bytes after {length} of JSON; expected {}",
                        body.len().saturating_sub(length),
                        want.len()
                    ));
                }
                if body[length..] != want[..] {
                    return Err(format!(
                        "the binary output of request {i} differs from 2x + 1 of its input"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Checks an in-process response's output (native-endian f32 bytes) for request `i`.
    pub(crate) fn check_native(&self, i: usize, bytes: &[u8]) -> Result<(), String> {
        let want = &self.expected[i % VARIANTS];
        let same = bytes.len() == want.len() * 4
            && bytes
                .chunks_exact(4)
                .zip(want)
                .all(|(b, y)| b.try_into().is_ok_and(|b| f32::from_ne_bytes(b) == *y));
        if same {
            Ok(())
        } else {
            Err(format!(
                "the output of request {i} differs from 2x + 1 of its input"
            ))
        }
    }
}
