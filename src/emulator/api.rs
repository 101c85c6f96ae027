//! Handlers of the contract's `/v1.0/operatorConnect/*` endpoints. Each checks the bearer
//! token, takes the lock it needs without awaiting, and answers JSON; errors use the Graph
//! body `{"error":{"code","message"}}`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::authorize;
use super::durations::Verdict;
use super::numbers::{DeltaPosition, PageError};
use super::records::records_page;
use super::Shared;
use crate::msapi::wire::{self, ErrorBody};
use crate::msapi::{CallRecordsPage, DurationRecord, DurationResult, DurationResults};

/// `$top` when the request gives none.
pub const DEFAULT_TOP: usize = 100;

/// Query parameters of the paged endpoints (unknown ones are ignored, as Graph does).
#[derive(Deserialize)]
pub(crate) struct PageQuery {
    #[serde(rename = "$top")]
    top: Option<String>,
    #[serde(rename = "$skiptoken")]
    skip: Option<String>,
    #[serde(rename = "$deltatoken")]
    delta: Option<String>,
    #[serde(rename = "fromDateTime")]
    from: Option<String>,
    #[serde(rename = "toDateTime")]
    to: Option<String>,
}

/// A Graph-style error response.
pub(crate) fn graph_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "badRequest", message)
}

fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The base URL links are written with: the configured public one, else the `Host` the
/// client used (so links match the client's base URL), else the bound address.
fn base_url(s: &Shared, headers: &HeaderMap) -> String {
    if let Some(base) = &s.cfg.public_base_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']));
    match (host, s.local_addr.get()) {
        (Some(h), _) => format!("http://{h}"),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => "http://127.0.0.1".into(),
    }
}

#[allow(clippy::result_large_err)] // the Err is the response itself
fn parse_query(
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<(PageQuery, usize), Response> {
    let Query(q) = q.map_err(|e| bad_request(format!("query: {e}")))?;
    let top = match q.top.as_deref() {
        None => DEFAULT_TOP,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad_request(format!("$top {t:?} is not a positive integer"))),
        },
    };
    Ok((q, top))
}

fn page_error(s: &Shared, e: PageError) -> Response {
    match e {
        PageError::Gone(why) => {
            s.stats.bump(&s.stats.gone);
            graph_error(
                StatusCode::GONE,
                wire::SYNC_STATE_NOT_FOUND,
                format!("{why}: start again with a full listing"),
            )
        }
        PageError::BadToken => bad_request("malformed $skiptoken"),
    }
}

/// `GET /v1.0/operatorConnect/numbers`.
pub(crate) async fn numbers(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    let (q, top) = match parse_query(q) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let base = base_url(&s, &headers);
    let page = s
        .numbers()
        .full_page(&base, top, q.skip.as_deref(), SystemTime::now());
    match page {
        Ok((body, _)) => {
            s.stats.bump(&s.stats.number_pages);
            json_bytes(body)
        }
        Err(e) => page_error(&s, e),
    }
}

/// `GET /v1.0/operatorConnect/numbers/delta`.
pub(crate) async fn delta(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    let (q, top) = match parse_query(q) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let position = match (q.delta.as_deref(), q.skip.as_deref()) {
        (Some(t), None) => DeltaPosition::Token(t),
        (None, Some(t)) => DeltaPosition::Skip(t),
        _ => return bad_request("give exactly one of $deltatoken and $skiptoken"),
    };
    let base = base_url(&s, &headers);
    let lifetime = s.cfg.delta_token_lifetime;
    let page = s
        .numbers()
        .delta_page(&base, top, position, SystemTime::now(), lifetime);
    match page {
        Ok((body, _)) => {
            s.stats.bump(&s.stats.delta_pages);
            json_bytes(body)
        }
        Err(e) => page_error(&s, e),
    }
}

/// The upload body, read loosely so one malformed record is rejected alone.
#[derive(Deserialize)]
struct LooseBatch {
    value: Vec<serde_json::Value>,
}

/// `POST /v1.0/operatorConnect/callDurations`.
pub(crate) async fn durations(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    let batch: LooseBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("body is not a DurationBatch: {e}")),
    };
    if batch.value.len() > s.cfg.max_batch {
        s.stats.bump(&s.stats.batches_refused);
        return graph_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
            format!(
                "{} records; at most {} per request",
                batch.value.len(),
                s.cfg.max_batch
            ),
        );
    }
    let records: Vec<Result<DurationRecord, (String, String)>> = batch
        .value
        .into_iter()
        .map(|v| {
            let id = v
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or_default()
                .to_owned();
            serde_json::from_value(v).map_err(|e| (id, format!("not a DurationRecord: {e}")))
        })
        .collect();
    let mut store = s.durations_mut();
    let needed = store.needed(
        records
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.id.as_str()),
    );
    if needed > store.room() {
        drop(store);
        s.stats.bump(&s.stats.batches_refused);
        return graph_error(
            StatusCode::INSUFFICIENT_STORAGE,
            "storageFull",
            format!(
                "emulator stores at most {} call durations",
                s.cfg.max_durations
            ),
        );
    }
    let value: Vec<DurationResult> = records
        .into_iter()
        .map(|r| {
            let (id, verdict) = match r {
                Ok(rec) => (rec.id.clone(), store.submit(rec)),
                Err((id, reason)) => (id, Verdict::Rejected(reason)),
            };
            s.stats.count(&verdict);
            let (status, reason) = match verdict {
                Verdict::Accepted => (wire::ACCEPTED, None),
                Verdict::Duplicate => (wire::DUPLICATE, None),
                Verdict::Rejected(why) => (wire::REJECTED, Some(why)),
            };
            DurationResult {
                id,
                status: status.into(),
                reason,
            }
        })
        .collect();
    drop(store);
    s.stats.bump(&s.stats.batches);
    Json(DurationResults { value }).into_response()
}

/// `GET /v1.0/operatorConnect/callRecords`.
pub(crate) async fn call_records(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r;
    }
    let (q, top) = match parse_query(q) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let window = match (&q.skip, &q.from, &q.to) {
        (Some(t), _, _) => RecordsWindow::from_skip(t),
        (None, Some(from), Some(to)) => match (time_ms(from), time_ms(to)) {
            (Some(from), Some(to)) if from < to => Some(RecordsWindow {
                from,
                to,
                top,
                after: None,
            }),
            _ => return bad_request("fromDateTime and toDateTime must be RFC 3339 UTC, from < to"),
        },
        _ => return bad_request("fromDateTime and toDateTime are required"),
    };
    let Some(w) = window else {
        return bad_request("malformed $skiptoken");
    };
    let top = w.top.clamp(1, s.cfg.max_page_size);
    let (value, last) = {
        let store = s.durations();
        let inj = s.discrepancies();
        records_page(&store, &inj, (w.from, w.to), w.after, top)
    };
    let next_link = last.map(|after| {
        let next = RecordsWindow {
            top,
            after: Some(after),
            ..w
        };
        format!(
            "{}{}?{}={}",
            base_url(&s, &headers),
            wire::CALL_RECORDS_PATH,
            wire::SKIP_TOKEN,
            next.skip_token()
        )
    });
    s.stats.bump(&s.stats.call_record_pages);
    Json(CallRecordsPage { value, next_link }).into_response()
}

/// A call-records window and the position in it (Unix milliseconds); its skip token is
/// `c.from.to.top.end.pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordsWindow {
    from: u64,
    to: u64,
    top: usize,
    /// `(end, pos)` of the last entry served (see `records::records_page`).
    after: Option<(u64, u64)>,
}

impl RecordsWindow {
    fn from_skip(t: &str) -> Option<RecordsWindow> {
        let f: Vec<&str> = t.split('.').collect();
        match f[..] {
            ["c", from, to, top, end, idx] => Some(RecordsWindow {
                from: from.parse().ok()?,
                to: to.parse().ok()?,
                top: top.parse().ok()?,
                after: Some((end.parse().ok()?, idx.parse().ok()?)),
            }),
            _ => None,
        }
    }

    fn skip_token(&self) -> String {
        let (end, idx) = self.after.unwrap_or((self.from, 0));
        format!("c.{}.{}.{}.{end}.{idx}", self.from, self.to, self.top)
    }
}

fn time_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let d: Duration = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

/// Any other path.
pub(crate) async fn not_found() -> Response {
    graph_error(StatusCode::NOT_FOUND, "notFound", "no such endpoint")
}
