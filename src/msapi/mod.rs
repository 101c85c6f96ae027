//! The Microsoft API contract ocedge speaks (documented in `docs/microsoft-api.md` and
//! `docs/openapi.yaml`), modelled on Microsoft Graph conventions: OAuth2 client credentials,
//! `value` / `@odata.nextLink` paging, `@odata.deltaLink` deltas with `@removed` entries.
//!
//! The real Operator Connect API is partner-confidential, so the rest of ocedge only sees
//! the types and the [`NumbersApi`] / [`DurationsApi`] traits here: a carrier maps the real
//! partner API onto them by implementing the traits, and the HTTP client in this module
//! speaks the documented contract (served by the emulator for tests and the default config).
//!
//! - [`http`]: [`HttpApi`], the client of the documented contract (OAuth2 client
//!   credentials, status mapping, link checks). It never retries: the sync loop and the
//!   uploader own retry and backoff.
//! - [`response`]: response reading and the status → [`ApiError`] mapping.
//! - [`token`]: the client secret ([`load_secret`]) and the cached bearer token.
//! - [`records`]: Microsoft-side call records and their quality data.
//! - [`wire`]: paths, parameters and error bodies shared with the emulator.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub mod http;
pub mod records;
pub mod response;
pub mod token;
pub mod wire;

pub use http::{HttpApi, SetupError};
pub use records::{CallRecord, CallRecordsPage, MediaStream};
pub use token::{load_secret, SecretError};

/// A boxed future, so the API traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The OAuth2 token endpoint's answer (client credentials grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The bearer token.
    pub access_token: String,
}

/// One assigned number, as the numbers endpoints return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberEntry {
    /// E.164 number, `+` and digits.
    pub telephone_number: String,
    /// The Teams tenant it is assigned in (GUID).
    #[serde(default)]
    pub tenant_id: String,
    /// The SIP URI calls to it are routed to.
    #[serde(default)]
    pub sip_uri: String,
    /// `CallingUserAssignment`, `VoiceApplicationAssignment`, `ConferenceAssignment`, …
    #[serde(default)]
    pub usage: String,
    /// `assigned`, `unassigned`, `pending`, … (only `assigned` numbers take calls).
    #[serde(default)]
    pub assignment_status: String,
    /// `InboundCalling`, `OutboundCalling`, …
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// RFC 3339 time of the last change.
    #[serde(default)]
    pub last_modified_date_time: String,
    /// Present (with a reason) on delta entries for numbers that were removed.
    #[serde(rename = "@removed", default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// The `@removed` marker of a delta entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// `deleted` or `changed`.
    pub reason: String,
}

/// One page of a numbers listing or delta.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NumbersPage {
    /// The entries.
    pub value: Vec<NumberEntry>,
    /// URL of the next page, when there is one.
    #[serde(
        rename = "@odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
    /// On the last page: the URL to ask for changes since this listing.
    #[serde(
        rename = "@odata.deltaLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delta_link: Option<String>,
}

/// Where to read numbers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor<'a> {
    /// The first page of a full listing.
    Start,
    /// A `@odata.nextLink` from the previous page.
    Next(&'a str),
    /// A `@odata.deltaLink` from the end of the previous listing or delta.
    Delta(&'a str),
}

/// Why an API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The delta token expired (HTTP 410): a full resync is needed.
    #[error("delta token expired: full resync needed")]
    Gone,
    /// Throttled (HTTP 429 or 503 with Retry-After): wait that long.
    #[error("throttled, retry after {retry_after_secs}s")]
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Credentials refused (HTTP 401/403 from the token endpoint or the API).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Any other HTTP error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// Status code.
        status: u16,
        /// Error message from the body, if any.
        message: String,
    },
    /// Connection refused, reset, timed out.
    #[error("transport: {0}")]
    Transport(String),
    /// The body was not what the contract says.
    #[error("bad response: {0}")]
    Decode(String),
}

impl ApiError {
    /// True when retrying later may succeed (everything but a decode error or refused
    /// credentials, which need a person).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ApiError::Decode(_) | ApiError::Unauthorized(_))
    }
}

/// The assigned-numbers half of the contract. Implementations refresh tokens themselves.
pub trait NumbersApi: Send + Sync {
    /// Reads one page.
    fn numbers<'a>(&'a self, cursor: Cursor<'a>) -> BoxFuture<'a, Result<NumbersPage, ApiError>>;
}

/// One call duration record as uploaded (issue 5 fills in the producer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationRecord {
    /// Deterministic client-chosen id: a replay never counts twice.
    pub id: String,
    /// SIP Call-ID.
    pub call_id: String,
    /// `inbound` (PSTN → Teams) or `outbound` (Teams → PSTN).
    pub direction: String,
    /// Teams tenant.
    #[serde(default)]
    pub tenant_id: String,
    /// Calling number (E.164).
    #[serde(default)]
    pub caller_number: String,
    /// Called number (E.164).
    #[serde(default)]
    pub callee_number: String,
    /// RFC 3339 UTC with milliseconds.
    pub start_date_time: String,
    /// RFC 3339 UTC with milliseconds, when answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_date_time: Option<String>,
    /// RFC 3339 UTC with milliseconds.
    pub end_date_time: String,
    /// Billable duration (answer to end) in milliseconds.
    pub duration_ms: u64,
    /// `answered`, `failed`, `cancelled`.
    pub disposition: String,
    /// Final SIP status.
    pub final_sip_code: u16,
}

/// The upload batch body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DurationBatch {
    /// The records.
    pub value: Vec<DurationRecord>,
}

/// The per-record outcome of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationResult {
    /// The record's id.
    pub id: String,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: String,
    /// Why a record was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The upload response body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DurationResults {
    /// One result per record, in order.
    pub value: Vec<DurationResult>,
}

/// The call-durations half of the contract.
pub trait DurationsApi: Send + Sync {
    /// Uploads a batch (the body is a [`DurationBatch`] of `records`); per-record results.
    fn upload<'a>(
        &'a self,
        records: &'a [DurationRecord],
    ) -> BoxFuture<'a, Result<DurationResults, ApiError>>;
}

/// The call-records half of the contract (Microsoft's records with quality data).
pub trait CallRecordsApi: Send + Sync {
    /// Reads one page of the records whose `endDateTime` is in `[from, to)`: the first page
    /// when `next` is `None`, else the page behind a `@odata.nextLink` of the same window
    /// (which carries the window itself; `from` and `to` are then ignored).
    fn call_records<'a>(
        &'a self,
        from: SystemTime,
        to: SystemTime,
        next: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CallRecordsPage, ApiError>>;
}
