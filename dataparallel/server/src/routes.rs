//! The REST endpoints: the router over the server's shared state, and one handler per route.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::model::ServedModel;
use crate::{Shared, infer, metrics};

/// The protocol's routes (and `/metrics`) over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/metrics", get(prometheus))
        .fallback(unknown_endpoint)
        .with_state(shared)
}

/// Any other path: a 404 in the protocol's error form.
async fn unknown_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {}; this server speaks the Open Inference Protocol under /v2 (and \
             /metrics)",
            dataparallel::quote::quote(uri.path())
        ),
    )
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "neuron-dp-server",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

async fn live() -> StatusCode {
    StatusCode::OK
}

/// Ready: the engine is built (it is, or the server would not exist), the server is not
/// shutting down, and at least one core is in service.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    match shared.not_ready() {
        None => StatusCode::OK.into_response(),
        Some(reason) => ApiError::unavailable(reason).into_response(),
    }
}

/// The model called `name`, or a 404.
fn model<'s>(shared: &'s Shared, name: &str) -> Result<&'s ServedModel, ApiError> {
    if shared.model.name == name {
        Ok(&shared.model)
    } else {
        Err(ApiError::unknown_model(name, &shared.model.name))
    }
}

async fn model_metadata(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(model(&shared, &name)?.metadata()).into_response())
}

async fn model_ready(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    model(&shared, &name)?;
    match shared.not_ready() {
        None => Ok(StatusCode::OK),
        Some(reason) => Err(ApiError::unavailable(reason)),
    }
}

async fn infer(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let model = model(&shared, &name)?;
        if let Some(reason) = shared.not_ready() {
            return Err(ApiError::unavailable(reason));
        }
        // Bodies being read and parsed at once are bounded (each by the model's limit), so
        // memory is; the permit is released once the request is queued.
        let submitted = {
            let _permit = shared.reading.try_acquire().map_err(|_| {
                ApiError::unavailable(format!(
                    "the server is already reading {} requests (--max-reading); retry later",
                    shared.max_reading
                ))
            })?;
            let body = infer::read_body(body, model.body_limit).await?;
            infer::submit(model, &headers, &body)?
        };
        infer::complete(model, submitted).await
    }
    .await;
    let counter = match &result {
        Ok(_) => &shared.counters.success,
        Err(e) if e.status.is_client_error() => &shared.counters.rejected,
        Err(_) => &shared.counters.failure,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    let Some(stats) = shared.model.stats() else {
        return ApiError::unavailable("the server is shutting down").into_response();
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&shared, &stats),
    )
        .into_response()
}
