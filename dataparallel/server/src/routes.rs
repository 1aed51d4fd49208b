//! The REST endpoints: the router over the server's shared state, and one handler per route.

use std::sync::Arc;

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

/// Ready: the engines are built (they are, or the server would not exist), the server is
/// not shutting down, and every model has at least one core in service.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    match shared.not_ready() {
        None => StatusCode::OK.into_response(),
        Some(reason) => ApiError::unavailable(reason).into_response(),
    }
}

/// The model called `name`, or a 404 listing the models served.
fn model<'s>(shared: &'s Shared, name: &str) -> Result<&'s ServedModel, ApiError> {
    shared
        .model(name)
        .ok_or_else(|| ApiError::unknown_model(name, shared.models.iter().map(|m| &*m.name)))
}

async fn model_metadata(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(model(&shared, &name)?.metadata()).into_response())
}

/// Model ready: the server is not shutting down and this model has a core in service.
async fn model_ready(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let model = model(&shared, &name)?;
    match shared.model_not_ready(model) {
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
    // An unknown model is answered without counting: the counters are per model.
    let model = match model(&shared, &name) {
        Ok(model) => model,
        Err(e) => return e.into_response(),
    };
    let result = async {
        if let Some(reason) = shared.model_not_ready(model) {
            return Err(ApiError::unavailable(reason));
        }
        // Bodies being read and parsed at once are bounded (each by its model's limit), so
        // memory is; the permit is released once the request is queued.
        let submitted = {
            let _permit = shared.reading.try_acquire().map_err(|_| {
                ApiError::unavailable(format!(
                    "the server is already reading {} requests (--max-reading); retry later",
                    shared.max_reading
                ))
            })?;
            let _reading = model.reading();
            let body = infer::read_body(body, model.body_limit).await?;
            infer::submit(model, &headers, &body)?
        };
        infer::complete(model, submitted).await
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    model.count(response.status());
    response
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    let Some(stats) = shared
        .models
        .iter()
        .map(ServedModel::stats)
        .collect::<Option<Vec<_>>>()
    else {
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
