//! What the daemon tells the admin server: readiness with reasons, the `/status` document
//! and the metrics published before each scrape.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::cdr::CdrPipeline;
use super::shard::Shard;
use crate::admin::{self, AdminSource, CallMetrics, CdrMetrics, Readiness};
use crate::cdr::{now_ms, Disposition};
use crate::config::Side;
use crate::numbers::NumberTable;
use crate::proxy::dispatch::DestState;
use crate::transport::Transports;

/// The daemon as the admin server sees it.
pub struct DaemonSource {
    pub(super) shard: Arc<Shard>,
    pub(super) transports: Transports,
    pub(super) numbers: Option<NumberTable>,
    pub(super) cdr: Option<Arc<CdrPipeline>>,
    pub(super) reloader: Arc<super::reload::Reloader>,
    /// Our certificate file, for its expiry in `/status`.
    pub(super) cert: Option<std::path::PathBuf>,
    /// The reconciliation's counters, when it runs.
    pub(super) reconcile: Option<Arc<crate::reconcile::ReconcileStats>>,
}

impl AdminSource for DaemonSource {
    fn ready(&self) -> Readiness {
        let mut reasons = Vec::new();
        if let Some(t) = &self.numbers {
            if !t.is_loaded() {
                let st = t.state();
                let why = st
                    .last_error
                    .or(st.snapshot_load_error)
                    .unwrap_or_else(|| "first sync still running".into());
                reasons.push(format!(
                    "number table not loaded (no snapshot, API not reached: {why})"
                ));
            }
        }
        match self.shard.inspect(|p| p.is_draining()) {
            None => reasons.push("SIP listeners not bound yet".into()),
            Some(true) => reasons.push("draining for shutdown: new calls get 503".into()),
            Some(false) => {}
        }
        if let Some(c) = &self.cdr {
            if c.sink.held() > 0 || c.spool.is_full() {
                reasons.push("CDR spool full or failing: new calls are refused".into());
            }
        }
        if reasons.is_empty() {
            Readiness::Ready
        } else {
            Readiness::NotReady(reasons)
        }
    }

    fn status(&self) -> Value {
        let proxy = self.shard.inspect(|p| {
            let dests = |side: Side| -> Vec<Value> {
                p.dest_set(side)
                    .iter()
                    .map(|(_, d)| json!({"name": d.name, "up": d.state == DestState::Up}))
                    .collect()
            };
            let report = p.policy_report();
            json!({
                "transactions": p.transactions(),
                "microsoft_targets": dests(Side::Microsoft),
                "sbcs": dests(Side::Carrier),
                "calls": report.calls.map(|c| json!({
                    "active": c.active,
                    "pending": c.pending,
                    "answered": c.answered,
                    "failed": c.failed,
                    "cancelled": c.cancelled,
                    "recovered": c.recovered,
                    "refused_spool_full": c.refused_full,
                    "refused_max_calls": c.refused_too_many,
                })),
            })
        });
        let numbers = self.numbers.as_ref().map(|t| {
            let st = t.state();
            json!({
                "loaded": st.loaded,
                "entries": st.entries,
                "sync_age_seconds": st.stale_for.map(|d| d.as_secs()),
                "last_error": st.last_error,
                "consecutive_errors": st.consecutive_errors,
            })
        });
        let cdr = self.cdr.as_ref().map(|c| {
            let s = c.spool.stats();
            let up = c.upload.as_ref().map(|u| {
                use std::sync::atomic::Ordering::Relaxed;
                json!({
                    "accepted": u.accepted.load(Relaxed),
                    "duplicate": u.duplicate.load(Relaxed),
                    "rejected": u.rejected.load(Relaxed),
                    "queue": u.queue.load(Relaxed),
                })
            });
            json!({
                "spool_bytes": s.bytes,
                "segments": s.segments,
                "unacked": s.unacked,
                "calls_journaled": s.open_calls,
                "upload_lag_seconds": lag(s.oldest_unacked_ms).as_secs(),
                "alarm": s.alarm,
                "full": s.full,
                "fsync_failures": s.fsync_failures,
                "held_in_memory": c.sink.held(),
                "upload": up,
            })
        });
        let tls = self.cert.as_ref().map(|path| {
            match crate::transport::expiry::pem_file_not_after(path) {
                Ok(t) => {
                    let now = std::time::SystemTime::now();
                    let days = match t.duration_since(now) {
                        Ok(left) => (left.as_secs() / 86_400) as i64,
                        Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
                    };
                    let ms = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    json!({"cert_not_after": crate::cdr::rfc3339_ms(ms), "cert_expires_in_days": days})
                }
                Err(e) => json!({"error": e}),
            }
        });
        let reconcile = self.reconcile.as_ref().map(|r| {
            let s = r.snapshot();
            json!({
                "pull_lag_seconds": now_ms().saturating_sub(s.pull_cursor_ms) / 1000,
                "windows": s.windows,
                "windows_incomplete": s.windows_incomplete,
                "matched": s.matched,
                "duration_mismatch": s.duration_mismatch,
                "missing_ours": s.missing_ours,
                "missing_microsoft": s.missing_microsoft,
                "not_billable": s.not_billable,
                "pull_errors": s.pull_errors,
            })
        });
        json!({
            "proxy": proxy,
            "numbers": numbers,
            "cdr": cdr,
            "tls": tls,
            "reconcile": reconcile,
            "connections": self.transports.connections(),
        })
    }

    fn reload(&self) -> Result<String, String> {
        self.reloader.reload()
    }

    fn collect(&self) {
        self.shard.inspect(|p| {
            admin::publish_proxy(p.stats(), p.transactions());
            admin::publish_dests(Side::Microsoft, p.dest_set(Side::Microsoft));
            admin::publish_dests(Side::Carrier, p.dest_set(Side::Carrier));
            let report = p.policy_report();
            if let Some(n) = &report.numbers {
                admin::publish_policy(n);
            }
            if let Some(c) = &report.calls {
                admin::publish_calls(&CallMetrics {
                    active: c.active as u64,
                    dispositions: vec![
                        (Disposition::Answered, c.answered),
                        (Disposition::Failed, c.failed),
                        (Disposition::Cancelled, c.cancelled),
                    ],
                    end_reasons: c.ended_by_reason().collect(),
                    refused_spool_full: c.refused_full,
                    refused_max_calls: c.refused_too_many,
                });
            }
        });
        admin::publish_transport(self.transports.stats(), self.transports.connections());
        if let Some(r) = &self.reconcile {
            admin::publish_reconcile(&r.snapshot(), now_ms());
        }
        if let Some(t) = &self.numbers {
            admin::publish_numbers(&t.state());
        }
        if let Some(c) = &self.cdr {
            use std::sync::atomic::Ordering::Relaxed;
            let s = c.spool.stats();
            let mut m = CdrMetrics {
                spool_bytes: s.bytes,
                spool_unacked: s.unacked,
                spool_alarm: s.alarm,
                spool_fsync_failures: s.fsync_failures,
                upload_lag: lag(s.oldest_unacked_ms),
                ..CdrMetrics::default()
            };
            if let Some(u) = &c.upload {
                m.upload_queue = u.queue.load(Relaxed);
                m.accepted = u.accepted.load(Relaxed);
                m.duplicate = u.duplicate.load(Relaxed);
                m.rejected = u.rejected.load(Relaxed);
                m.dead_letters = m.rejected;
                m.upload_errors = u.errors_by_kind();
            }
            admin::publish_cdr(&m);
        }
    }
}

/// Age of the oldest unacknowledged record.
fn lag(oldest: Option<u64>) -> Duration {
    oldest.map_or(Duration::ZERO, |t| {
        Duration::from_millis(now_ms().saturating_sub(t))
    })
}
