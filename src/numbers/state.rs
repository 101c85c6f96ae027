//! What the table says about itself: where its content came from and how fresh it is
//! ([`TableState`], for readiness, metrics and logs), and the status the sync loop keeps.

use std::time::{Duration, Instant, SystemTime};

/// Where the table's current content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The persisted snapshot, loaded at start; no sync has succeeded since.
    Snapshot,
    /// A full listing or delta from the API.
    Sync,
}

/// What readiness checks, metrics and logs need to know about the table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableState {
    /// A table (snapshot or sync) has been installed: lookups are meaningful. False at
    /// start with no snapshot and no API: the gateway is not ready.
    pub loaded: bool,
    /// Where the content came from; `None` before anything was loaded.
    pub source: Option<Source>,
    /// Numbers held.
    pub entries: usize,
    /// Wall-clock time of the last successful sync (or of the snapshot's writing).
    pub last_sync_ok: Option<SystemTime>,
    /// Time since the last successful sync (or since the snapshot was written).
    pub stale_for: Option<Duration>,
    /// The last API error, cleared by the next success.
    pub last_error: Option<String>,
    /// API errors since the last success.
    pub consecutive_errors: u32,
    /// Why the snapshot could not be loaded at start (it was ignored), if it could not.
    pub snapshot_load_error: Option<String>,
    /// Why the last snapshot write failed; cleared by the next successful write.
    pub snapshot_write_error: Option<String>,
    /// API entries skipped as invalid, in total.
    pub skipped_invalid: u64,
    /// Completed full listings.
    pub full_syncs: u64,
    /// Completed delta rounds.
    pub deltas: u64,
}

/// The sync status, written by the sync loop.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) source: Option<Source>,
    pub(crate) last_ok_wall: Option<SystemTime>,
    pub(crate) last_ok: Option<Instant>,
    /// How old the content already was at `last_ok` (a snapshot's age when loaded).
    pub(crate) last_ok_age: Duration,
    pub(crate) last_error: Option<String>,
    pub(crate) consecutive_errors: u32,
    pub(crate) snapshot_load_error: Option<String>,
    pub(crate) snapshot_write_error: Option<String>,
    pub(crate) full_syncs: u64,
    pub(crate) deltas: u64,
}
