//! Publishing the call-timing and CDR pipeline's figures: plain structs the daemon fills
//! from the call tracker, the spool and the uploader, so that this module depends on their
//! numbers and not on their types while those settle.

use std::time::Duration;

use metrics::{counter, gauge};

use super::catalogue as c;
use super::publish::flag;
use crate::cdr::{Disposition, EndReason};
use crate::msapi::ApiError;

/// Call counts for [`publish_calls`]: the call-timing layer's tallies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMetrics {
    /// Calls being timed now.
    pub active: u64,
    /// Finished calls per disposition (absent dispositions are left as they are).
    pub dispositions: Vec<(Disposition, u64)>,
    /// Finished calls per end reason (absent reasons are left as they are).
    pub end_reasons: Vec<(EndReason, u64)>,
    /// New calls refused because the spool was at its cap.
    pub refused_spool_full: u64,
    /// New calls refused because `cdr.max_calls` calls were held.
    pub refused_max_calls: u64,
}

/// Publishes the call counts.
pub fn publish_calls(m: &CallMetrics) {
    gauge!(c::CALLS_ACTIVE).set(m.active as f64);
    for (d, v) in &m.dispositions {
        counter!(c::CALLS, "disposition" => d.as_str()).absolute(*v);
    }
    for (r, v) in &m.end_reasons {
        counter!(c::CALLS_ENDED, "reason" => r.as_str()).absolute(*v);
    }
    for (reason, v) in [
        ("spool_full", m.refused_spool_full),
        ("max_calls", m.refused_max_calls),
    ] {
        counter!(c::CALLS_REFUSED, "reason" => reason).absolute(v);
    }
}

/// Why a whole upload request failed: the `kind` label of `ocedge_cdr_upload_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UploadErrorKind {
    /// Connection refused, reset or timed out.
    Transport,
    /// 429 or 503 with Retry-After.
    Throttled,
    /// Credentials refused.
    Unauthorized,
    /// Any other HTTP error status.
    Status,
    /// The response was not what the contract says.
    Decode,
}

impl UploadErrorKind {
    /// Every kind, in catalogue order.
    pub const ALL: [UploadErrorKind; 5] = [
        UploadErrorKind::Transport,
        UploadErrorKind::Throttled,
        UploadErrorKind::Unauthorized,
        UploadErrorKind::Status,
        UploadErrorKind::Decode,
    ];

    /// The kind of an API error.
    pub fn of(e: &ApiError) -> UploadErrorKind {
        match e {
            ApiError::Transport(_) => UploadErrorKind::Transport,
            ApiError::Throttled { .. } => UploadErrorKind::Throttled,
            ApiError::Unauthorized(_) => UploadErrorKind::Unauthorized,
            ApiError::Gone | ApiError::Status { .. } => UploadErrorKind::Status,
            ApiError::Decode(_) => UploadErrorKind::Decode,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadErrorKind::Transport => "transport",
            UploadErrorKind::Throttled => "throttled",
            UploadErrorKind::Unauthorized => "unauthorized",
            UploadErrorKind::Status => "status",
            UploadErrorKind::Decode => "decode",
        }
    }
}

/// The spool's and the uploader's figures for [`publish_cdr`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdrMetrics {
    /// Bytes the spool holds on disk.
    pub spool_bytes: u64,
    /// Records not yet acknowledged by every consumer.
    pub spool_unacked: u64,
    /// The spool is past its alarm ratio.
    pub spool_alarm: bool,
    /// Spool fsyncs that failed (each followed by a repair).
    pub spool_fsync_failures: u64,
    /// Age of the oldest record not yet uploaded (zero when none waits).
    pub upload_lag: Duration,
    /// Records waiting for upload.
    pub upload_queue: u64,
    /// Records Microsoft accepted.
    pub accepted: u64,
    /// Records Microsoft already had.
    pub duplicate: u64,
    /// Records Microsoft refused.
    pub rejected: u64,
    /// Failed upload requests per kind (absent kinds are left as they are).
    pub upload_errors: Vec<(UploadErrorKind, u64)>,
    /// Records written to the dead-letter file.
    pub dead_letters: u64,
}

/// Publishes the spool and upload figures.
pub fn publish_cdr(m: &CdrMetrics) {
    gauge!(c::CDR_SPOOL_BYTES).set(m.spool_bytes as f64);
    gauge!(c::CDR_SPOOL_UNACKED).set(m.spool_unacked as f64);
    gauge!(c::CDR_SPOOL_ALARM).set(flag(m.spool_alarm));
    counter!(c::CDR_SPOOL_FSYNC_FAILURES).absolute(m.spool_fsync_failures);
    gauge!(c::CDR_UPLOAD_LAG).set(m.upload_lag.as_secs_f64());
    gauge!(c::CDR_UPLOAD_QUEUE).set(m.upload_queue as f64);
    for (result, v) in [
        ("accepted", m.accepted),
        ("duplicate", m.duplicate),
        ("rejected", m.rejected),
    ] {
        counter!(c::CDR_UPLOADED, "result" => result).absolute(v);
    }
    for (kind, v) in &m.upload_errors {
        counter!(c::CDR_UPLOAD_ERRORS, "kind" => kind.as_str()).absolute(*v);
    }
    counter!(c::CDR_DEAD_LETTERS).absolute(m.dead_letters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_errors_map_to_their_kind() {
        let kinds = [
            ApiError::Transport("reset".into()),
            ApiError::Throttled {
                retry_after_secs: 1,
            },
            ApiError::Unauthorized("no".into()),
            ApiError::Status {
                status: 500,
                message: String::new(),
            },
            ApiError::Decode("x".into()),
        ]
        .map(|e| UploadErrorKind::of(&e));
        assert_eq!(kinds, UploadErrorKind::ALL);
        assert_eq!(
            UploadErrorKind::of(&ApiError::Gone),
            UploadErrorKind::Status
        );
    }
}
