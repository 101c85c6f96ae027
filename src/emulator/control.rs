//! The `/emulator/*` control API: what tests and benchmarks use to change the emulator's
//! state and see what it received. No authentication (the emulator is a test tool; bind it
//! to loopback) and never subject to injected faults.
//!
//! - `POST /emulator/numbers` `{"value":[{telephoneNumber, tenantId, sipUri, usage,
//!   assignmentStatus?, capabilities?}]}`: adds or replaces numbers (all or none).
//! - `DELETE /emulator/numbers/{telephoneNumber}`: removes one (204, or 404).
//! - `GET|POST /emulator/faults`: reads or replaces the faults in force ([`Faults`]).
//! - `GET|POST /emulator/discrepancies`: reads or replaces the discrepancies injected into
//!   call records ([`Discrepancies`]).
//! - `GET /emulator/call-durations`: every distinct accepted record, in acceptance order.
//! - `GET /emulator/stats`: counters ([`EmulatorStats`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::graph_error;
use super::discrepancy::Discrepancies;
use super::durations::Verdict;
use super::faults::Faults;
use super::seed::NumberSpec;
use super::Shared;
use crate::sip::number::E164;

/// Counters, bumped by the handlers.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) received: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batches_refused: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) tokens_refused: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) number_pages: AtomicU64,
    pub(crate) delta_pages: AtomicU64,
    pub(crate) gone: AtomicU64,
    pub(crate) call_record_pages: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) churned: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one uploaded record.
    pub(crate) fn count(&self, v: &Verdict) {
        self.bump(&self.received);
        self.bump(match v {
            Verdict::Accepted => &self.accepted,
            Verdict::Duplicate => &self.duplicates,
            Verdict::Rejected(_) => &self.rejected,
        });
    }
}

/// The body of `GET /emulator/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorStats {
    /// Call-duration records received (every record of every batch answered 200).
    pub received: u64,
    /// Records accepted (each id once).
    pub accepted: u64,
    /// Records whose id was accepted before.
    pub duplicates: u64,
    /// Records rejected by validation.
    pub rejected: u64,
    /// Upload requests answered 200.
    pub batches: u64,
    /// Upload requests refused whole (413 too many records, 507 storage full).
    pub batches_refused: u64,
    /// Distinct records stored (equals `accepted`).
    pub stored_durations: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused for bad credentials.
    pub tokens_refused: u64,
    /// API requests refused with 401.
    pub unauthorized: u64,
    /// Full-listing pages served.
    pub number_pages: u64,
    /// Delta pages served.
    pub delta_pages: u64,
    /// Delta requests answered 410.
    pub gone: u64,
    /// Call-records pages served.
    pub call_record_pages: u64,
    /// Requests given an injected fault.
    pub faults_injected: u64,
    /// Random churn changes made.
    pub churned: u64,
    /// Numbers in the table now.
    pub numbers: u64,
}

/// `GET /emulator/stats`.
pub(crate) async fn stats(State(s): State<Arc<Shared>>) -> Json<EmulatorStats> {
    let st = &s.stats;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let stored = s.durations().all().len() as u64;
    let numbers = s.numbers().len() as u64;
    Json(EmulatorStats {
        received: get(&st.received),
        accepted: get(&st.accepted),
        duplicates: get(&st.duplicates),
        rejected: get(&st.rejected),
        batches: get(&st.batches),
        batches_refused: get(&st.batches_refused),
        stored_durations: stored,
        tokens_issued: get(&st.tokens_issued),
        tokens_refused: get(&st.tokens_refused),
        unauthorized: get(&st.unauthorized),
        number_pages: get(&st.number_pages),
        delta_pages: get(&st.delta_pages),
        gone: get(&st.gone),
        call_record_pages: get(&st.call_record_pages),
        faults_injected: get(&st.faults_injected),
        churned: get(&st.churned),
        numbers,
    })
}

/// One entry of `POST /emulator/numbers`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewNumber {
    telephone_number: String,
    tenant_id: String,
    sip_uri: String,
    usage: String,
    assignment_status: Option<String>,
    capabilities: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNumbers {
    value: Vec<NewNumber>,
}

/// The answer to `POST /emulator/numbers`.
#[derive(Serialize)]
struct Applied {
    added: usize,
    replaced: usize,
}

/// `POST /emulator/numbers`.
pub(crate) async fn add_numbers(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let batch: NewNumbers = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "badRequest", e.to_string()),
    };
    let mut specs = Vec::with_capacity(batch.value.len());
    for (i, n) in batch.value.into_iter().enumerate() {
        let mut spec =
            match NumberSpec::new(&n.telephone_number, &n.tenant_id, &n.sip_uri, &n.usage) {
                Ok(spec) => spec,
                Err(e) => {
                    return graph_error(
                        StatusCode::BAD_REQUEST,
                        "badRequest",
                        format!("value[{i}]: {e}"),
                    )
                }
            };
        if let Some(status) = n.assignment_status {
            spec.assignment_status = status;
        }
        if let Some(caps) = n.capabilities {
            spec.capabilities = caps;
        }
        specs.push(spec);
    }
    let now = SystemTime::now();
    let mut table = s.numbers_mut();
    let added = specs.iter().filter(|spec| table.upsert(spec, now)).count();
    Json(Applied {
        added,
        replaced: specs.len().saturating_sub(added),
    })
    .into_response()
}

/// `DELETE /emulator/numbers/{telephoneNumber}`.
pub(crate) async fn remove_number(
    State(s): State<Arc<Shared>>,
    Path(number): Path<String>,
) -> Response {
    let Ok(number) = E164::parse(&number) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "badRequest",
            format!("{number:?} is not E.164"),
        );
    };
    if s.numbers_mut().remove(number) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        graph_error(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("{number} is not in the table"),
        )
    }
}

/// `GET /emulator/faults`.
pub(crate) async fn get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(s.faults().get().clone())
}

/// `POST /emulator/faults`: replaces the faults and runs the actions it asks for.
pub(crate) async fn set_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "badRequest", e.to_string()),
    };
    if let Err(e) = faults.check() {
        return graph_error(StatusCode::BAD_REQUEST, "badRequest", e);
    }
    if faults.expire_delta_tokens {
        s.numbers_mut().expire_delta_tokens();
    }
    if faults.revoke_tokens {
        s.tokens().revoke_all();
    }
    let mut state = s.faults();
    state.set(Faults {
        expire_delta_tokens: false,
        revoke_tokens: false,
        ..faults
    });
    Json(state.get().clone()).into_response()
}

/// `GET /emulator/discrepancies`.
pub(crate) async fn get_discrepancies(State(s): State<Arc<Shared>>) -> Json<Discrepancies> {
    Json(s.discrepancies().spec().clone())
}

/// `POST /emulator/discrepancies`: checks and replaces them whole.
pub(crate) async fn set_discrepancies(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let spec: Discrepancies = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "badRequest", e.to_string()),
    };
    if let Err(e) = spec.check() {
        return graph_error(StatusCode::BAD_REQUEST, "badRequest", e);
    }
    s.set_discrepancies(spec.clone());
    Json(spec).into_response()
}

/// `GET /emulator/call-durations`.
pub(crate) async fn call_durations(State(s): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct All<'a> {
        value: &'a [crate::msapi::DurationRecord],
    }
    let store = s.durations();
    let body = serde_json::to_vec(&All { value: store.all() }).unwrap_or_default();
    drop(store);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
