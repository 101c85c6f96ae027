//! The admin HTTP server and the Prometheus metrics layer.
//!
//! Endpoints (axum, loopback by default, see `[admin]`):
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text: every metric of the [`catalogue`] that has been published |
//! | `GET /health/live` | 200 `ok` while the process serves HTTP (never needs the token) |
//! | `GET /health/ready` | 200 `{"ready":true,…}`, or 503 `{"ready":false,"reasons":[…]}` |
//! | `GET /status` | the [`AdminSource::status`] JSON, plus `version` and `uptime_seconds` |
//! | `POST /admin/reload` | [`AdminSource::reload`]: 200 or 500 with its message |
//!
//! With a token configured every route but `/health/live` needs `Authorization: Bearer
//! <token>` (401 otherwise; compared in constant time). Connections are bounded in number
//! and idle time, requests in duration and body size.
//!
//! What the daemon knows reaches this module through one trait, [`AdminSource`]; metrics
//! through the `publish_*` helpers (see [`publish`]), called by the source's
//! [`AdminSource::collect`] just before each scrape or by a periodic pump.

pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod cdr_metrics;
mod http;
mod listener;
pub mod publish;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Admin;

pub use audit::{audit, Audit};
pub use auth::{Token, TokenError};
pub use cdr_metrics::{publish_calls, publish_cdr, CallMetrics, CdrMetrics, UploadErrorKind};
pub use publish::{
    install_recorder, publish_dest, publish_dests, publish_numbers, publish_policy, publish_proxy,
    publish_quality, publish_quality_drop, publish_quality_field_errors, publish_reconcile,
    publish_transport,
};

/// How long in-flight admin requests may run on after cancellation before the server task
/// ends anyway.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the gateway should receive traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// Not ready, with every reason (e.g. "number table not loaded").
    NotReady(Vec<String>),
}

/// What the admin server asks the daemon. Called on the async workers: keep `ready`,
/// `status` and `collect` short (no I/O, brief locks); `reload` runs on a blocking thread.
pub trait AdminSource: Send + Sync {
    /// Readiness: snapshot loaded, listeners bound, and so on.
    fn ready(&self) -> Readiness;

    /// The `/status` document; an object gets `version` and `uptime_seconds` added.
    fn status(&self) -> serde_json::Value;

    /// Reloads the configuration: `Ok` with a summary, or `Err` with why nothing changed.
    fn reload(&self) -> Result<String, String> {
        Err("reload is not supported".into())
    }

    /// Called before each `/metrics` render: publish current values here (the `publish_*`
    /// helpers). Does nothing by default (for sources published by a periodic pump).
    fn collect(&self) {}
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has stopped (after cancellation, at most [`DRAIN`] later).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task
            .await
            .context("admin server task")?
            .context("admin server")
    }
}

/// Reads the token, installs the metrics recorder, binds `cfg.listen` and serves until
/// `cancel`. Fails if the token cannot be read or the address cannot be bound; `enabled` is
/// the caller's to check.
pub async fn serve(
    cfg: &Admin,
    source: Arc<dyn AdminSource>,
    cancel: CancellationToken,
) -> anyhow::Result<AdminServer> {
    let token = Token::load(cfg)?;
    let ctx = Arc::new(http::Ctx {
        source,
        token,
        metrics: install_recorder(),
        started: Instant::now(),
        reload_lock: Arc::new(Mutex::new(())),
    });
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding the admin server to {}", cfg.listen))?;
    let addr = tcp.local_addr()?;
    let listener = listener::Bounded::new(tcp, cfg.max_connections, cfg.idle_timeout.0);
    let app = http::router(ctx, cfg.request_timeout.0);
    let drained = cancel.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { drained.cancelled().await });
    let task = tokio::spawn(async move {
        tokio::select! {
            r = server => r,
            // Graceful shutdown waits for open requests; bound that wait.
            _ = async { cancel.cancelled().await; tokio::time::sleep(DRAIN).await } => Ok(()),
        }
    });
    tracing::info!(%addr, "admin HTTP server listening");
    Ok(AdminServer { addr, task })
}
