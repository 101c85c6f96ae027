//! Call detail records: the record ([`record`]), the durable spool they are written to
//! ([`spool`]), the uploader that gives them to Microsoft exactly once ([`upload`]) and the
//! carrier's own export files ([`export`]).

pub mod record;

pub use record::{
    record_id, rfc3339_ms, CallRecord, Direction, Disposition, EndReason, OpenCall, SideName, UtcMs,
};
