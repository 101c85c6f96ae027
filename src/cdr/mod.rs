//! Call detail records: the record ([`record`]), the durable spool they are written to
//! ([`spool`]), the uploader that gives them to Microsoft exactly once ([`upload`]) and the
//! carrier's own export files ([`export`]).

pub mod dead;
pub mod export;
pub mod gate;
mod json;
pub(crate) use json::duration_batch;
pub mod record;
pub mod spool;
pub mod upload;

pub use record::{
    record_id, rfc3339_ms, CallRecord, Direction, Disposition, EndReason, OpenCall, SideName, UtcMs,
};

/// Wall-clock ms since the Unix epoch.
pub fn now_ms() -> UtcMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
