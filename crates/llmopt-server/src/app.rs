//! The router and what every request goes through: a request id (the client's `x-request-id`,
//! else a new one) in the response and in every log line, API-key checks on `/v1`, a counter by
//! endpoint and status, a body-size limit, and OpenAI error bodies for every failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use llmopt_api::openai::{ApiError, ModelList};
use llmopt_api::Generate;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::metrics::ServerMetrics;
use crate::text::ModelText;
use crate::{chat, completions, ServerConfig};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub engine: Arc<dyn Generate>,
    pub text: ModelText,
    pub cfg: ServerConfig,
    pub metrics: ServerMetrics,
    /// Set once shutdown began: `/health` answers 503 so balancers stop sending requests.
    pub draining: AtomicBool,
    /// Unix seconds at start (the model's `created`).
    pub created: u64,
}

/// An [`ApiError`] as an HTTP response.
#[derive(Debug)]
pub(crate) struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = (status, Json(self.0.body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a completion handler starts from: its request id, arrival time and body.
#[derive(Debug)]
pub(crate) struct Call {
    pub request_id: String,
    pub started: Instant,
}

impl Call {
    /// The body, or 413 past the size limit (400 for a body that could not be read).
    pub(crate) fn body(
        app: &AppState,
        rid: Option<Extension<RequestId>>,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<(Self, Bytes), ApiError> {
        let started = Instant::now();
        let request_id = rid
            .and_then(|Extension(r)| r.header_value().to_str().ok().map(str::to_string))
            .unwrap_or_default();
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(app.cfg.max_body_bytes)
            } else {
                ApiError::invalid(None, format!("Cannot read the request body: {e}."))
            }
        })?;
        Ok((Self { request_id, started }, body))
    }
}

impl AppState {
    /// The model a request names must be the one served.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if model == self.cfg.model_name {
            Ok(())
        } else {
            Err(ApiError::model_not_found(model, &self.cfg.model_name))
        }
    }

    /// A seed for a request that gives none.
    pub(crate) fn fresh_seed() -> u64 {
        rand::random()
    }
}

/// Request ids: 128 random bits in hex.
#[derive(Clone, Copy, Debug)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        HeaderValue::try_from(format!("{id:032x}")).ok().map(RequestId::new)
    }
}

/// The whole service.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut v1 = Router::new()
        .route("/v1/chat/completions", post(chat::handler))
        .route("/v1/completions", post(completions::handler))
        .route("/v1/models", get(models));
    if !state.cfg.api_keys.is_empty() {
        v1 = v1.route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    }
    let trace = TraceLayer::new_for_http()
        .make_span_with(|r: &axum::http::Request<Body>| {
            let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %r.method(), path = %r.uri().path())
        })
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .with_state(state)
}

/// `Authorization: Bearer KEY` with one of the server's keys.
async fn authorize(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let key = given.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    match key {
        Some(k) if app.cfg.api_keys.iter().any(|a| a == k) => next.run(req).await,
        _ => HttpError(ApiError::unauthorized(given.is_some())).into_response(),
    }
}

/// The endpoint label of a path (unknown paths share one, so labels stay few).
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/models" => "models",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Counts requests by endpoint and status.
async fn count(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let endpoint = endpoint(req.uri().path());
    let response = next.run(req).await;
    app.metrics.request(endpoint, response.status().as_u16());
    response
}

async fn models(State(app): State<Arc<AppState>>) -> Json<ModelList> {
    let context = app.engine.limits().context;
    Json(ModelList::one(&app.cfg.model_name, app.created, context))
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    if app.draining.load(Ordering::Acquire) {
        let body = serde_json::json!({"status": "draining"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let text = app.metrics.render(&app.engine.metrics());
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn no_route(method: Method, uri: Uri) -> HttpError {
    HttpError(ApiError::no_route(method.as_str(), uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> HttpError {
    HttpError(ApiError::wrong_method(method.as_str(), uri.path()))
}
