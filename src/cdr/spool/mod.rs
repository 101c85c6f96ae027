//! The durable call-record spool: append-only segment files of CRC32C-framed entries, the
//! record of every finished call (`Close`, payload [`crate::cdr::CallRecord::encode`]) and
//! the journal of every answered call still up (`Open`, payload
//! [`crate::cdr::OpenCall::encode`]). The spool treats payloads as opaque bytes.
//!
//! The byte layout, recovery rules, cursor file, deletion rule, lock, disk cap and
//! re-journaling are specified in `docs/spool-format.md`; in short:
//!
//! - **Seqs** start at 1, are consecutive within a segment and never reused, also across
//!   restarts. Cursor 0 means nothing acknowledged.
//! - **Durability**: [`Spool::append`] hands the whole batch to the kernel in one write, so
//!   a killed process loses nothing; [`Spool::sync`] (run by [`GroupCommit`] every
//!   `fsync_interval`) makes it survive a power loss and advances `durable_seq`. A failed
//!   fsync is repaired: what it covered is written again from memory to fresh files
//!   (`repair`), since Linux may have dropped the pages it could not write.
//! - **Recovery** ([`Spool::open`]) reads every segment; a torn tail of the last one is cut
//!   off, a bad frame anywhere else is skipped and counted and the rest still read.
//! - **Deletion** happens only after acknowledgement ([`Spool::ack`]): a non-active segment
//!   all of whose Closes are at or below the cursor is deleted once no more than half of
//!   it is live Opens (so long calls are not copied over and over); its live Opens are
//!   re-journaled first, and tombstones keep dead Opens elsewhere from coming back.
//! - **Disk cap**: past `max_bytes` new Opens are refused ([`SpoolError::Full`]: the caller
//!   refuses the call); Closes are always written.
//!
//! Memory: per open call ~80 bytes, per unacknowledged record 16 bytes, per closed call
//! whose Open is still on disk in another segment ~64 bytes; the bytes written since the
//! last successful fsync.

mod clean;
mod commit;
mod cursor;
mod engine;
mod format;
mod reader;
mod recover;
mod repair;
mod segment;
mod state;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use commit::GroupCommit;
pub use engine::Spool;
pub use format::MAX_PAYLOAD;

/// Where and how the spool writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// The directory: segments, the cursor file, the lock file.
    pub dir: PathBuf,
    /// A new segment is started rather than let the active one grow past this.
    pub segment_bytes: u64,
    /// How often [`GroupCommit`] makes appended entries durable.
    pub fsync_interval: Duration,
    /// Disk cap: at or past it new Opens are refused.
    pub max_bytes: u64,
    /// Fraction of `max_bytes` that raises the alarm.
    pub alarm_ratio: f64,
}

impl SpoolConfig {
    /// The spool settings of `[cdr]`.
    pub fn from_config(c: &crate::config::Cdr) -> SpoolConfig {
        SpoolConfig {
            dir: c.spool_dir.clone(),
            segment_bytes: c.segment_bytes,
            fsync_interval: c.fsync_interval.0,
            max_bytes: c.max_bytes,
            alarm_ratio: c.alarm_ratio,
        }
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An answered call that is up (journal).
    Open,
    /// A finished call record.
    Close,
}

/// One entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// UTC milliseconds when it was appended (a re-journaled Open keeps its first time).
    pub time_ms: u64,
    /// Open or Close.
    pub kind: Kind,
    /// The record id's 16 bytes ([`key_of`]).
    pub key: [u8; 16],
    /// The payload, as appended.
    pub payload: Vec<u8>,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone)]
pub struct Recovered {
    /// Open entries with no later Close for the same key, oldest (`time_ms`, then seq)
    /// first, each key once (its latest Open).
    pub open: Vec<Entry>,
    /// Close entries after the cursor.
    pub unacked: u64,
    /// Bytes cut off the tail of the last segment.
    pub torn_bytes: u64,
    /// Frames lost to a bad checksum or length anywhere but the torn tail (estimated from
    /// the seqs around them), plus bad segment headers.
    pub corrupt: u64,
    /// Segment files read.
    pub segments: usize,
}

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process (or another `Spool` in this one) holds the directory.
    #[error("spool {0} is locked by another process")]
    Locked(PathBuf),
    /// The spool is at its disk cap: the batch's Open entries were refused. Its Close
    /// entries, if any, were written all the same.
    #[error("spool is full: new calls refused")]
    Full,
    /// A file the spool cannot use (an unknown segment version, say).
    #[error("spool corrupt: {0}")]
    Corrupt(String),
    /// A payload larger than [`MAX_PAYLOAD`]; nothing of the batch was written.
    #[error("spool entry of {len} bytes is larger than {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// [`MAX_PAYLOAD`].
        max: usize,
    },
    /// An acknowledgement past the last seq appended.
    #[error("ack up to {upto} is past the last seq {last}")]
    AckBeyondEnd {
        /// The seq acknowledged.
        upto: u64,
        /// The last seq appended.
        last: u64,
    },
}

/// A snapshot of the spool for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Segment files, the active one included.
    pub segments: usize,
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Last seq appended (0: none).
    pub last_seq: u64,
    /// Every entry up to this seq is fsynced.
    pub durable_seq: u64,
    /// Every Close up to this seq is acknowledged.
    pub cursor: u64,
    /// Close entries after the cursor.
    pub unacked: u64,
    /// `time_ms` of the oldest unacknowledged Close.
    pub oldest_unacked_ms: Option<u64>,
    /// `bytes` is at or past `alarm_ratio` of `max_bytes`.
    pub alarm: bool,
    /// `bytes` is at or past `max_bytes`: Opens are refused.
    pub full: bool,
    /// Calls journaled as up.
    pub open_calls: usize,
    /// fsync rounds that failed; each is followed by a repair that writes what it covered
    /// again to fresh files (`docs/spool-format.md`).
    pub fsync_failures: u64,
}

/// The spool key of a record id: its 16 bytes when it is 32 hex digits (as
/// [`crate::cdr::record_id`] makes them), else the first 16 bytes of its SHA-256.
pub fn key_of(id: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    let hex = |b: u8| char::from(b).to_digit(16);
    let b = id.as_bytes();
    let decoded = b.len() == 32
        && key.iter_mut().zip(b.chunks_exact(2)).all(|(k, pair)| {
            match (
                pair.first().and_then(|&h| hex(h)),
                pair.get(1).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    *k = (h * 16 + l) as u8;
                    true
                }
                _ => false,
            }
        });
    if !decoded {
        let digest = ring::digest::digest(&ring::digest::SHA256, b);
        for (k, d) in key.iter_mut().zip(digest.as_ref()) {
            *k = *d;
        }
    }
    key
}
