//! A served model: its name, its engine and the request batcher over it (until shutdown
//! takes and drains it), its request counters, and what the protocol needs to know about
//! each input and output (datatype, per-row shape and size), from which the metadata, the
//! request checks and the body-size limit are derived.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use dataparallel::batcher::{
    Batcher, BatcherConfig, BatcherStats, Request, Ticket, TrySubmitError,
};
use dataparallel::{CoreState, DataParallel, IoSpec};
use neuron_rt::DType;

use crate::datatype::Datatype;
use crate::error::{ApiError, ServeError};
use crate::protocol::{ModelMetadata, TensorMetadata};

/// Room in a JSON body for everything but the tensors' elements (names, shapes, parameters).
const JSON_OVERHEAD: usize = 64 * 1024;
/// Bytes of JSON text one element may take: `-1.2345678901234567e-308` and a separator, with
/// room for whitespace and nesting brackets.
const JSON_BYTES_PER_ELEMENT: usize = 32;

/// One model input or output as the protocol sees it.
#[derive(Debug, Clone)]
pub(crate) struct TensorMeta {
    pub(crate) name: String,
    pub(crate) datatype: Datatype,
    /// The engine dtype requests are labelled with (the model's, or for an input of unknown
    /// dtype the unsigned integer of its element size).
    pub(crate) dtype: DType,
    /// The compiled shape without the batch dim.
    pub(crate) row_shape: Vec<usize>,
    /// Elements per row.
    pub(crate) row_elements: usize,
}

impl TensorMeta {
    fn new(kind: &str, spec: &IoSpec) -> Result<TensorMeta, ServeError> {
        let dtype = spec.dtype_or_raw().ok_or_else(|| {
            ServeError::Model(format!(
                "model {kind} {:?} has an unknown dtype of {}-byte elements, which the Open \
                 Inference Protocol cannot carry; recompile the model",
                spec.name, spec.elem_size
            ))
        })?;
        let datatype = Datatype::of(dtype).ok_or_else(|| {
            ServeError::Model(format!(
                "model {kind} {:?} is {}, which the Open Inference Protocol has no datatype \
                 for; recompile the model with a standard dtype",
                spec.name,
                dtype.name()
            ))
        })?;
        let Some((_, row_shape)) = spec.shape.split_first() else {
            return Err(ServeError::Model(format!(
                "model {kind} {:?} is a scalar; the server batches requests along dim 0, so \
                 every input and output needs a batch dimension",
                spec.name
            )));
        };
        // The model's own size bounds this product (IoSpec checked shape × element size).
        let row_elements = row_shape.iter().product();
        Ok(TensorMeta {
            name: spec.name.clone(),
            datatype,
            dtype,
            row_shape: row_shape.to_vec(),
            row_elements,
        })
    }

    /// Bytes per row.
    pub(crate) fn row_bytes(&self) -> usize {
        self.row_elements.saturating_mul(self.datatype.size())
    }

    fn metadata(&self) -> TensorMetadata {
        TensorMetadata {
            name: self.name.clone(),
            datatype: self.datatype.name(),
            shape: std::iter::once(-1)
                .chain(
                    self.row_shape
                        .iter()
                        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX)),
                )
                .collect(),
        }
    }
}

/// A model's inference requests answered, by outcome.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) success: AtomicU64,
    /// Answered 4xx.
    pub(crate) rejected: AtomicU64,
    /// Answered 5xx.
    pub(crate) failure: AtomicU64,
    /// Request bodies being read and parsed now.
    pub(crate) reading: AtomicUsize,
}

/// Counts one request body of a model as being read until dropped.
#[derive(Debug)]
pub(crate) struct Reading<'m>(&'m Counters);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.reading.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A model served over the protocol: the batcher over its engine and its tensors.
#[derive(Debug)]
pub(crate) struct ServedModel {
    pub(crate) name: String,
    pub(crate) counters: Counters,
    engine: Arc<DataParallel>,
    /// `None` once shutdown has taken it to drain it. Held only for a non-blocking
    /// `try_submit` or `stats`, never across an await.
    batcher: RwLock<Option<Batcher>>,
    pub(crate) inputs: Vec<TensorMeta>,
    pub(crate) outputs: Vec<TensorMeta>,
    /// Most rows one request may carry (the batcher's `max_batch_rows`).
    pub(crate) max_rows: usize,
    /// The largest request body accepted.
    pub(crate) body_limit: usize,
}

impl ServedModel {
    pub(crate) fn new(
        name: String,
        engine: Arc<DataParallel>,
        config: BatcherConfig,
    ) -> Result<ServedModel, ServeError> {
        let spec = engine.spec();
        let inputs = spec
            .inputs
            .iter()
            .map(|s| TensorMeta::new("input", s))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = spec
            .outputs
            .iter()
            .map(|s| TensorMeta::new("output", s))
            .collect::<Result<Vec<_>, _>>()?;
        let batcher = Batcher::new(Arc::clone(&engine), config)?;
        let max_rows = batcher.max_batch_rows();
        let elements_per_row = inputs
            .iter()
            .fold(0usize, |acc, t| acc.saturating_add(t.row_elements));
        let body_limit = max_rows
            .saturating_mul(elements_per_row)
            .saturating_mul(JSON_BYTES_PER_ELEMENT)
            .saturating_add(JSON_OVERHEAD);
        Ok(ServedModel {
            name,
            counters: Counters::default(),
            engine,
            batcher: RwLock::new(Some(batcher)),
            inputs,
            outputs,
            max_rows,
            body_limit,
        })
    }

    /// Counts a request body as being read until the guard is dropped.
    pub(crate) fn reading(&self) -> Reading<'_> {
        self.counters.reading.fetch_add(1, Ordering::Relaxed);
        Reading(&self.counters)
    }

    /// Counts a request answered with `status`.
    pub(crate) fn count(&self, status: axum::http::StatusCode) {
        let counter = if status.is_success() {
            &self.counters.success
        } else if status.is_client_error() {
            &self.counters.rejected
        } else {
            &self.counters.failure
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The engine under the batcher.
    pub(crate) fn engine(&self) -> &Arc<DataParallel> {
        &self.engine
    }

    /// Queues `request` if there is room (never blocks): 503 when the queue is full or the
    /// server is shutting down, 400 when the request does not fit the model.
    pub(crate) fn submit(&self, request: Request) -> Result<Ticket, ApiError> {
        let batcher = self.batcher.read().unwrap_or_else(PoisonError::into_inner);
        let Some(batcher) = batcher.as_ref() else {
            return Err(ApiError::unavailable("the server is shutting down"));
        };
        batcher.try_submit(request).map_err(|e| match e {
            TrySubmitError::Full(_) => ApiError::unavailable(
                "the server's request queue is full; retry later or send fewer requests at once",
            ),
            TrySubmitError::Invalid(invalid) => ApiError::bad_request(invalid.reason),
            other => ApiError::unavailable(other.to_string()),
        })
    }

    /// The batcher's stats (`None` once shut down).
    pub(crate) fn stats(&self) -> Option<BatcherStats> {
        self.batcher
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Batcher::stats)
    }

    /// Takes the batcher out of service, runs every request already queued, joins its
    /// threads and returns its final stats (`None` when already shut down). Blocks.
    pub(crate) fn shutdown(&self) -> Option<BatcherStats> {
        let batcher = self
            .batcher
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        batcher.map(Batcher::shutdown)
    }

    /// Whether at least one core is in service.
    pub(crate) fn ready(&self) -> bool {
        self.engine()
            .health()
            .iter()
            .any(|h| h.state == CoreState::Healthy)
    }

    pub(crate) fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            name: self.name.clone(),
            versions: Vec::new(),
            platform: "neuron-dp",
            inputs: self.inputs.iter().map(TensorMeta::metadata).collect(),
            outputs: self.outputs.iter().map(TensorMeta::metadata).collect(),
        }
    }
}
