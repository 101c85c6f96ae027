//! Reconciliation: Microsoft's call records pulled from the API and matched with ours, so
//! both sides' billed durations can be settled (`docs/reconcile.md`).
//!
//! - [`pull`]: the puller: settled windows of Microsoft's records, page by page, into the
//!   local store, with a persisted cursor (nothing pulled twice or skipped across
//!   restarts), retries with backoff and `Retry-After`.
//! - [`store`]: the local store of Microsoft's records (`<dir>/ms-records/`) and the
//!   atomically written cursor files; its on-disk format is documented there.
//! - [`ours`]: our records for a window, from the spool and the export files.
//! - [`model`] and [`matcher`]: the pure matcher (by Call-ID, then by numbers and start
//!   time) and its classes: matched, duration mismatch, missing on either side, not billable.
//! - [`report`]: a window's report, written as JSONL under `<dir>/reports/`; [`render`]: the
//!   table, JSON and CSV of `ocedge reconcile`.
//! - [`service`]: the daemon task (pull, then report each settled window) and its counters
//!   ([`ReconcileStats`]).
//!
//! Only [`pull`], [`store`], [`ours`], [`report`] and [`service`] touch files, the clock or
//! the network; the matcher takes records and parameters and returns findings.

pub mod matcher;
pub mod model;
pub mod ours;
pub mod pull;
pub mod render;
pub mod report;
pub mod service;
pub mod stats;
pub mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

pub use matcher::reconcile;
pub use model::{Class, Counts, Finding, MatchedBy, Ours, Outcome, Params, Theirs};
pub use ours::{OurRecords, OurSource};
pub use pull::{fetch_range, PullConfig, Puller, Step};
pub use report::Report;
pub use service::{Reconciler, ServiceConfig};
pub use stats::{ReconcileSnapshot, ReconcileStats};
pub use store::MsStore;

/// Why a reconciliation step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// A file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds what it must not (a cursor that does not read, say).
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The spool could not be read.
    #[error("reading the spool: {0}")]
    Spool(#[from] crate::cdr::spool::SpoolError),
    /// The API failed (after the retries).
    #[error("call records API: {0}")]
    Api(#[from] crate::msapi::ApiError),
}

impl ReconcileError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReconcileError {
        let path = path.into();
        move |source| ReconcileError::Io { path, source }
    }
}

/// Unix milliseconds of an RFC 3339 UTC time (`2024-05-01T10:00:00.000Z`); `None` when it
/// does not read or is before 1970.
pub fn parse_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s.trim()).ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
