//! Logs: `tracing` to stderr, human or JSON lines (`[log] format`), filtered by `[log]
//! level` (an `EnvFilter` directive such as `info` or `info,ocedge::proxy=debug`; the
//! `RUST_LOG` environment variable overrides it). The level can change at run time
//! (reload); the format needs a restart.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{Log, LogFormat};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (once; later calls only set the level).
pub fn init(cfg: &Log) {
    let from_env = std::env::var("RUST_LOG").ok();
    let directive = from_env.as_deref().unwrap_or(&cfg.level);
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"));
    if FILTER.get().is_some() {
        let _ = set_level(directive);
        return;
    }
    let (layer, handle) = reload::Layer::new(filter);
    let json = cfg.format == LogFormat::Json
        || std::env::var("OCEDGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let registry = tracing_subscriber::registry().with(layer);
    let installed = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Changes the level (reload). `RUST_LOG`, when set, still wins.
pub fn set_level(directive: &str) -> Result<(), String> {
    if std::env::var("RUST_LOG").is_ok() {
        return Ok(());
    }
    let filter = EnvFilter::try_new(directive).map_err(|e| format!("log.level: {e}"))?;
    match FILTER.get() {
        Some(h) => h.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
