//! Names on the wire shared by the HTTP client and the emulator, so the two cannot drift:
//! paths, query parameters, per-record statuses and the two error body shapes.

use serde::{Deserialize, Serialize};

/// Token endpoint, after `{base}/{tenant}`.
pub const TOKEN_PATH: &str = "/oauth2/v2.0/token";
/// Full listing of assigned numbers.
pub const NUMBERS_PATH: &str = "/v1.0/operatorConnect/numbers";
/// Changes since a delta token.
pub const NUMBERS_DELTA_PATH: &str = "/v1.0/operatorConnect/numbers/delta";
/// Call duration upload.
pub const DURATIONS_PATH: &str = "/v1.0/operatorConnect/callDurations";
/// Microsoft-side call records.
pub const CALL_RECORDS_PATH: &str = "/v1.0/operatorConnect/callRecords";

/// Page size query parameter.
pub const TOP: &str = "$top";
/// Opaque continuation of a listing (inside `@odata.nextLink`).
pub const SKIP_TOKEN: &str = "$skiptoken";
/// Opaque delta position (inside `@odata.deltaLink`).
pub const DELTA_TOKEN: &str = "$deltatoken";
/// Start of a call-records window (inclusive), RFC 3339.
pub const FROM_DATE_TIME: &str = "fromDateTime";
/// End of a call-records window (exclusive), RFC 3339.
pub const TO_DATE_TIME: &str = "toDateTime";

/// Largest `$top` the API honours; larger values are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Per-record upload status: stored and counted.
pub const ACCEPTED: &str = "accepted";
/// Per-record upload status: the id was accepted before; not counted again.
pub const DUPLICATE: &str = "duplicate";
/// Per-record upload status: invalid, not stored; `reason` says why.
pub const REJECTED: &str = "rejected";

/// Graph's error code for an expired or unknown delta token (HTTP 410).
pub const SYNC_STATE_NOT_FOUND: &str = "syncStateNotFound";

/// The API's error body (Graph style): `{"error":{"code":…,"message":…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `syncStateNotFound`, `tooManyRequests`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// The token endpoint's error body (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// `invalid_client`, `invalid_request`, `unsupported_grant_type`, …
    pub error: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}
