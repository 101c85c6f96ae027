//! Tests of reconciliation: the matcher's classes and edges (`matcher`), the puller against
//! the in-process emulator with pages, restarts and outages (`pull`), and the reporting task
//! over a spool (`service`). Helpers shared by them and by the module tests.

mod matcher;
mod pull;
mod service;

use crate::cdr::{CallRecord, Direction, Disposition, EndReason, SideName};
use crate::msapi;

/// 2024-05-01T10:00:00Z in UTC ms.
pub(crate) const T0: u64 = 1_714_557_600_000;

/// A Microsoft record `id` ending at `end` (RFC 3339) that billed `duration_ms`.
pub(crate) fn ms_record(id: &str, end: &str, duration_ms: u64) -> msapi::CallRecord {
    let end_ms = super::parse_ms(end).unwrap_or(0);
    msapi::CallRecord {
        id: id.into(),
        call_id: format!("call-{id}"),
        start_date_time: crate::cdr::rfc3339_ms(end_ms.saturating_sub(duration_ms)),
        end_date_time: end.into(),
        duration: duration_ms.saturating_add(500) / 1000,
        duration_ms: Some(duration_ms),
        caller_number: "+14255550100".into(),
        callee_number: "+14255510000".into(),
        call_type: "user_in".into(),
        call_duration_source: "operator".into(),
        tenant_id: String::new(),
        user_id: None,
        media_streams: Vec::new(),
    }
}

/// Our answered record of `call_id`: answered at `T0 + answer_s` seconds, billed
/// `duration_ms`, from +14255550100 to `callee`.
pub(crate) fn answered(call_id: &str, answer_s: u64, duration_ms: u64, callee: &str) -> CallRecord {
    let answer = T0 + answer_s * 1000;
    CallRecord {
        id: crate::cdr::record_id(call_id.as_bytes(), b"f", callee.as_bytes(), 1),
        call_id: call_id.into(),
        direction: Direction::Inbound,
        tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
        caller_number: "+14255550100".into(),
        callee_number: callee.into(),
        sip_uri: String::new(),
        start_ms: answer - 2000,
        answer_ms: Some(answer),
        end_ms: answer + duration_ms,
        duration_ms,
        disposition: Disposition::Answered,
        final_status: 200,
        end_reason: EndReason::CallerBye,
        sbc: "sbc1".into(),
        side: SideName::Carrier,
    }
}

/// Our record of a call that failed with 486 at `T0 + start_s`.
pub(crate) fn failed(call_id: &str, start_s: u64, callee: &str) -> CallRecord {
    let start = T0 + start_s * 1000;
    CallRecord {
        answer_ms: None,
        start_ms: start,
        end_ms: start + 3000,
        duration_ms: 0,
        disposition: Disposition::Failed,
        final_status: 486,
        end_reason: EndReason::Rejected,
        ..answered(call_id, start_s, 0, callee)
    }
}

/// Time that passes only when someone sleeps or advances it.
pub(crate) struct VirtualClock {
    start_ms: u64,
    base: std::time::Instant,
    elapsed: std::sync::Mutex<std::time::Duration>,
    sleeps: std::sync::Mutex<Vec<std::time::Duration>>,
}

impl VirtualClock {
    /// A clock whose wall time starts at `start_ms` (UTC ms).
    pub(crate) fn at(start_ms: u64) -> std::sync::Arc<VirtualClock> {
        std::sync::Arc::new(VirtualClock {
            start_ms,
            base: std::time::Instant::now(),
            elapsed: Default::default(),
            sleeps: Default::default(),
        })
    }

    /// Moves time on by `d`.
    pub(crate) fn advance(&self, d: std::time::Duration) {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }

    /// Every sleep asked for so far.
    pub(crate) fn sleeps(&self) -> Vec<std::time::Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn elapsed(&self) -> std::time::Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::numbers::sync::Clock for VirtualClock {
    fn now(&self) -> std::time::Instant {
        self.base + self.elapsed()
    }
    fn wall(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.start_ms) + self.elapsed()
    }
    fn sleep(&self, d: std::time::Duration) -> crate::msapi::BoxFuture<'_, ()> {
        self.advance(d);
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d);
        Box::pin(tokio::task::yield_now())
    }
}

/// The emulator in-process on 127.0.0.1:0, and a client of it asking `page_size` records
/// a page. Stops when dropped.
pub(crate) struct Emu {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// The client.
    pub(crate) api: std::sync::Arc<msapi::HttpApi>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Emu {
    pub(crate) async fn start(page_size: u32) -> Emu {
        let cancel = tokio_util::sync::CancellationToken::new();
        let running = crate::emulator::Emulator::new(crate::emulator::EmulatorConfig::default())
            .start(([127, 0, 0, 1], 0).into(), cancel.clone())
            .await
            .expect("emulator starts");
        let mut api: crate::config::Api =
            toml::from_str(&format!("base_url = \"{}\"", running.base_url())).expect("[api]");
        api.page_size = page_size;
        Emu {
            base: running.base_url(),
            api: std::sync::Arc::new(msapi::HttpApi::new(&api, "s".into()).expect("client")),
            cancel,
        }
    }

    /// Uploads our records' durations; all must be accepted.
    pub(crate) async fn upload(&self, records: &[CallRecord]) {
        use crate::msapi::DurationsApi;
        let batch = msapi::DurationBatch {
            value: records.iter().map(CallRecord::to_duration).collect(),
        };
        let res = self.api.upload(&batch.value).await.expect("upload");
        assert!(res.value.iter().all(|r| r.status == "accepted"), "{res:?}");
    }

    /// POSTs `body` to the control API at `path`.
    pub(crate) async fn control(&self, path: &str, body: serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control request");
        assert_eq!(resp.status(), 200, "{path} {body}");
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
