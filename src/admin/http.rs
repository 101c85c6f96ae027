//! The admin routes, the bearer-token check and the request timeout.
//!
//! Every route but `/health/live` requires the token when one is configured: liveness must
//! answer even to a probe that holds no secret, and says nothing but "ok".

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};

use super::auth::{bearer, Token};
use super::{AdminSource, Readiness};

/// Largest request body accepted (413 beyond it).
pub(super) const BODY_LIMIT: usize = 16 * 1024;

/// The Prometheus text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
pub(super) struct Ctx {
    pub(super) source: Arc<dyn AdminSource>,
    pub(super) token: Option<Token>,
    pub(super) metrics: PrometheusHandle,
    pub(super) started: Instant,
    /// Reloads run one at a time, even when a timed-out request's reload is still running.
    pub(super) reload_lock: Arc<Mutex<()>>,
}

/// The admin router.
pub(super) fn router(ctx: Arc<Ctx>, request_timeout: Duration) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/ready", get(ready))
        .route("/status", get(status))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_token));
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .merge(guarded)
        .layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(ctx)
}

async fn require_token(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    if let Some(token) = &ctx.token {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        if !presented.is_some_and(|p| token.matches(p)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(WWW_AUTHENTICATE, "Bearer")],
                "unauthorized\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    ctx.source.collect();
    ctx.metrics.run_upkeep();
    ([(CONTENT_TYPE, METRICS_TYPE)], ctx.metrics.render()).into_response()
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.source.ready() {
        Readiness::Ready => Json(json!({ "ready": true, "reasons": [] })).into_response(),
        Readiness::NotReady(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reasons": reasons })),
        )
            .into_response(),
    }
}

async fn status(State(ctx): State<Arc<Ctx>>) -> Json<Value> {
    let version = Value::from(env!("CARGO_PKG_VERSION"));
    let uptime = Value::from(ctx.started.elapsed().as_secs());
    let body = match ctx.source.status() {
        Value::Object(mut m) => {
            m.insert("version".into(), version);
            m.insert("uptime_seconds".into(), uptime);
            Value::Object(m)
        }
        other => json!({ "version": version, "uptime_seconds": uptime, "status": other }),
    };
    Json(body)
}

/// The body is read only so that [`BODY_LIMIT`] applies (413 beyond it); it is ignored.
async fn reload(State(ctx): State<Arc<Ctx>>, _body: Bytes) -> Response {
    let source = ctx.source.clone();
    let lock = ctx.reload_lock.clone();
    // Reloading reads files and builds a whole configuration: off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
        source.reload()
    })
    .await;
    match result {
        Ok(Ok(msg)) => {
            tracing::info!(message = %msg, "reload requested over admin HTTP: done");
            (StatusCode::OK, with_newline(msg)).into_response()
        }
        Ok(Err(msg)) => {
            tracing::warn!(message = %msg, "reload requested over admin HTTP: failed");
            (StatusCode::INTERNAL_SERVER_ERROR, with_newline(msg)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "reload panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "reload failed: panicked\n",
            )
                .into_response()
        }
    }
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
