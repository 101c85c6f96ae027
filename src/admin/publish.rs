//! The process's metrics recorder and the helpers that publish ocedge's counters into it.
//!
//! Every helper takes the existing stats structs and sets the metrics of the
//! [catalogue](super::catalogue) from them: counters with absolute values (the recorder keeps
//! the maximum it was given, so a counter never goes backwards), gauges with the current
//! value. They can be called at any time and any number of times: from a periodic pump, or
//! from [`AdminSource::collect`](super::AdminSource::collect) just before each scrape.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::catalogue::{self as c, describe_all};
use crate::config::Side;
use crate::numbers::TableState;
use crate::proxy::dispatch::{DestSet, DestState};
use crate::proxy::numbers_policy::PolicyStats;
use crate::proxy::stats::ProxyStats;
use crate::transport::TransportStats;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics` recorder (once; later
/// calls return the same handle), registers the catalogue's help texts and sets
/// `ocedge_build_info` and `ocedge_start_time_seconds`.
///
/// Should another recorder already be installed (nothing in ocedge installs one), a warning
/// is logged and the handle renders only the build metrics.
pub fn install_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "a metrics recorder was already installed");
            }
            describe_all();
            gauge!(c::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let start = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            gauge!(c::START_TIME).set(start.as_secs_f64());
            handle
        })
        .clone()
}

/// The exporter's builder with the catalogue's histogram buckets.
pub fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for m in super::catalogue::CATALOGUE {
        if let Some(b) = super::catalogue::buckets(m.name) {
            let matcher = metrics_exporter_prometheus::Matcher::Full(m.name.to_owned());
            builder = match builder.set_buckets_for_metric(matcher, b) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, metric = m.name, "histogram buckets");
                    PrometheusBuilder::new()
                }
            };
        }
    }
    builder
}

/// Records one quality sample: the per-source counter and the histograms (labels: `source`
/// is `sbc` or `microsoft`, `trunk` the SBC's configured name or `microsoft`).
pub fn publish_quality(
    source: &'static str,
    trunk: &str,
    s: &crate::quality::vqreport::QualitySample,
) {
    counter!(c::QUALITY_SAMPLES, "source" => source).increment(1);
    let labels = [("source", source.to_owned()), ("trunk", trunk.to_owned())];
    let figures = [
        (c::QUALITY_JITTER, s.jitter_ms.map(f64::from)),
        (c::QUALITY_LOSS, s.loss_percent.map(f64::from)),
        (c::QUALITY_ROUND_TRIP, s.round_trip_ms.map(f64::from)),
        (c::QUALITY_MOS_LQ, s.mos_lq.map(f64::from)),
        (c::QUALITY_MOS_CQ, s.mos_cq.map(f64::from)),
    ];
    for (name, v) in figures {
        if let Some(v) = v {
            metrics::histogram!(name, &labels).record(v);
        }
    }
}

/// Publishes the reconciliation's totals and pull state.
pub fn publish_reconcile(s: &crate::reconcile::ReconcileSnapshot, now_ms: u64) {
    for (class, v) in [
        ("matched", s.matched),
        ("duration_mismatch", s.duration_mismatch),
        ("missing_ours", s.missing_ours),
        ("missing_microsoft", s.missing_microsoft),
        ("not_billable", s.not_billable),
    ] {
        counter!(c::RECONCILE_CALLS, "class" => class).absolute(v);
    }
    let complete = s.windows.saturating_sub(s.windows_incomplete);
    counter!(c::RECONCILE_WINDOWS, "complete" => "true").absolute(complete);
    counter!(c::RECONCILE_WINDOWS, "complete" => "false").absolute(s.windows_incomplete);
    counter!(c::RECONCILE_PULL_ERRORS).absolute(s.pull_errors);
    let lag = now_ms.saturating_sub(s.pull_cursor_ms) as f64 / 1000.0;
    gauge!(c::RECONCILE_PULL_LAG).set(lag);
}

/// Counts report fields that did not parse.
pub fn publish_quality_field_errors(n: u64) {
    counter!(c::QUALITY_FIELD_ERRORS).increment(n);
}

/// Counts a sample dropped by a full queue (`sink`: `queue` or `webhook`).
pub fn publish_quality_drop(sink: &'static str) {
    counter!(c::QUALITY_DROPPED, "sink" => sink).increment(1);
}

/// Publishes the proxy's counters (summed over shards) and its live transaction count.
pub fn publish_proxy(s: &ProxyStats, transactions: usize) {
    // Destructured so that a new field fails to compile until it is published.
    let ProxyStats {
        acl_dropped,
        rejected_invalid,
        dropped_invalid,
        loops,
        flood_rejected,
        flood_dropped,
        policy_rejected,
        no_destination,
        no_route,
        overloaded,
        forwarded_requests,
        forwarded_responses,
        failovers,
        stray_responses,
        probes_sent,
        draining_rejected,
        quality_reports,
        quality_refused,
    } = *s;
    for (message, v) in [
        ("request", forwarded_requests),
        ("response", forwarded_responses),
    ] {
        counter!(c::PROXY_FORWARDED, "message" => message).absolute(v);
    }
    for (reason, v) in [
        ("invalid", rejected_invalid),
        ("loop", loops),
        ("flood", flood_rejected),
        ("policy", policy_rejected),
        ("no_destination", no_destination),
        ("no_route", no_route),
        ("overloaded", overloaded),
        ("draining", draining_rejected),
    ] {
        counter!(c::PROXY_REJECTED, "reason" => reason).absolute(v);
    }
    for (reason, v) in [
        ("acl", acl_dropped),
        ("invalid", dropped_invalid),
        ("flood", flood_dropped),
        ("stray_response", stray_responses),
    ] {
        counter!(c::PROXY_DROPPED, "reason" => reason).absolute(v);
    }
    counter!(c::QUALITY_REPORTS, "result" => "accepted").absolute(quality_reports);
    counter!(c::QUALITY_REPORTS, "result" => "refused").absolute(quality_refused);
    counter!(c::PROXY_FAILOVERS).absolute(failovers);
    counter!(c::PROXY_PROBES_SENT).absolute(probes_sent);
    gauge!(c::PROXY_TRANSACTIONS).set(transactions as f64);
}

/// Publishes the number policy's decisions (summed over shards).
pub fn publish_policy(s: &PolicyStats) {
    let PolicyStats {
        allowed,
        emergency,
        unassigned_called,
        unassigned_caller,
        tenant_mismatch,
        not_ready,
        unenforced,
    } = *s;
    for (decision, v) in [
        ("allowed", allowed),
        ("emergency", emergency),
        ("unassigned_called", unassigned_called),
        ("unassigned_caller", unassigned_caller),
        ("tenant_mismatch", tenant_mismatch),
        ("not_ready", not_ready),
        ("unenforced", unenforced),
    ] {
        counter!(c::POLICY_DECISIONS, "decision" => decision).absolute(v);
    }
}

/// Publishes the number table's state (`NumberTable::state()`).
pub fn publish_numbers(s: &TableState) {
    gauge!(c::NUMBERS_ENTRIES).set(s.entries as f64);
    gauge!(c::NUMBERS_LOADED).set(flag(s.loaded));
    let age = s.stale_for.map_or(f64::INFINITY, |d| d.as_secs_f64());
    gauge!(c::NUMBERS_SYNC_AGE).set(age);
    gauge!(c::NUMBERS_SYNC_ERRORS).set(f64::from(s.consecutive_errors));
    counter!(c::NUMBERS_SYNCS, "kind" => "full").absolute(s.full_syncs);
    counter!(c::NUMBERS_SYNCS, "kind" => "delta").absolute(s.deltas);
    counter!(c::NUMBERS_SKIPPED).absolute(s.skipped_invalid);
    gauge!(c::NUMBERS_SNAPSHOT_FAILING).set(flag(s.snapshot_write_error.is_some()));
}

/// Publishes the transport counters and the live stream connection count
/// (`Transports::stats()` and `Transports::connections()`).
pub fn publish_transport(s: &TransportStats, connections: usize) {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let TransportStats {
        datagrams_in,
        datagrams_out,
        datagrams_oversize,
        udp_send_errors,
        stream_messages_in,
        stream_messages_out,
        pings_answered,
        connections_accepted,
        connections_refused,
        connections_opened,
        connect_failures,
        connections_closed,
        handshake_failures,
        tls_peer_rejected,
        framing_errors,
        idle_closed,
        write_stalls,
        send_queue_drops,
    } = s;
    for (transport, direction, v) in [
        ("udp", "in", datagrams_in),
        ("udp", "out", datagrams_out),
        ("stream", "in", stream_messages_in),
        ("stream", "out", stream_messages_out),
    ] {
        counter!(c::TRANSPORT_MESSAGES, "transport" => transport, "direction" => direction)
            .absolute(load(v));
    }
    for (name, v) in [
        (c::TRANSPORT_OVERSIZE, datagrams_oversize),
        (c::TRANSPORT_UDP_SEND_ERRORS, udp_send_errors),
        (c::TRANSPORT_PINGS, pings_answered),
        (c::TRANSPORT_ACCEPTED, connections_accepted),
        (c::TRANSPORT_REFUSED, connections_refused),
        (c::TRANSPORT_OPENED, connections_opened),
        (c::TRANSPORT_CONNECT_FAILURES, connect_failures),
        (c::TRANSPORT_CLOSED, connections_closed),
        (c::TRANSPORT_HANDSHAKE_FAILURES, handshake_failures),
        (c::TRANSPORT_PEER_REJECTED, tls_peer_rejected),
        (c::TRANSPORT_FRAMING_ERRORS, framing_errors),
        (c::TRANSPORT_IDLE_CLOSED, idle_closed),
        (c::TRANSPORT_WRITE_STALLS, write_stalls),
        (c::TRANSPORT_QUEUE_DROPS, send_queue_drops),
    ] {
        counter!(name).absolute(load(v));
    }
    gauge!(c::TRANSPORT_CONNECTIONS).set(connections as f64);
}

/// Publishes one destination's health. `name` is the configured name of a Microsoft target
/// or SBC (a bounded set), never an address.
pub fn publish_dest(side: Side, name: &str, up: bool) {
    gauge!(c::DEST_UP, "side" => side.as_str(), "dest" => name.to_owned()).set(flag(up));
}

/// Publishes the health of every destination of a side (`Proxy::dest_set(side)`).
pub fn publish_dests(side: Side, set: &DestSet) {
    for (_, d) in set.iter() {
        publish_dest(side, &d.name, d.state == DestState::Up);
    }
}

pub(super) fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::audit::audit;
    use crate::admin::cdr_metrics::*;
    use crate::cdr::{Disposition, EndReason};
    use crate::numbers::NumberTable;
    use metrics_exporter_prometheus::PrometheusRecorder;
    use std::time::Duration;

    /// Every helper called once, with `n` in every counter.
    fn publish_everything(n: u64) {
        let proxy = ProxyStats {
            acl_dropped: n,
            forwarded_requests: n,
            ..ProxyStats::default()
        };
        publish_proxy(&proxy, 3);
        publish_policy(&PolicyStats {
            allowed: n,
            ..PolicyStats::default()
        });
        publish_numbers(&NumberTable::new().state());
        publish_transport(&TransportStats::default(), 2);
        let sample = crate::quality::vqreport::QualitySample {
            jitter_ms: Some(12),
            loss_percent: Some(1.5),
            round_trip_ms: Some(120),
            mos_lq: Some(4.1),
            mos_cq: Some(3.9),
            ..Default::default()
        };
        publish_quality("sbc", "sbc1", &sample);
        publish_quality("microsoft", "microsoft", &sample);
        publish_quality_field_errors(0);
        publish_quality_drop("queue");
        publish_quality_drop("webhook");
        publish_reconcile(&Default::default(), 0);
        publish_dest(Side::Carrier, "sbc1", true);
        publish_dest(Side::Microsoft, "sip.pstnhub.microsoft.com", false);
        publish_calls(&CallMetrics {
            active: 1,
            dispositions: vec![
                (Disposition::Answered, n),
                (Disposition::Failed, 0),
                (Disposition::Cancelled, 0),
            ],
            end_reasons: EndReason::ALL.map(|r| (r, n)).to_vec(),
            refused_spool_full: n,
            refused_max_calls: 0,
        });
        publish_cdr(&CdrMetrics {
            upload_lag: Duration::from_millis(1500),
            upload_errors: UploadErrorKind::ALL.map(|k| (k, n)).to_vec(),
            ..CdrMetrics::default()
        });
    }

    fn rendered(recorder: &PrometheusRecorder, n: u64) -> String {
        metrics::with_local_recorder(recorder, || {
            describe_all();
            gauge!(c::BUILD_INFO, "version" => "test").set(1.0);
            gauge!(c::START_TIME).set(1.0);
            publish_everything(n);
        });
        recorder.handle().render()
    }

    #[test]
    fn helpers_publish_exactly_the_catalogue() {
        let recorder = builder().build_recorder();
        let text = rendered(&recorder, 5);
        let a = audit(&text);
        assert!(a.is_clean(), "{a:#?}\n{text}");
        assert!(text.contains("# HELP ocedge_cdr_dead_letters_total Records written"));
        assert!(
            text.contains("ocedge_proxy_dropped_total{reason=\"acl\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("ocedge_numbers_sync_age_seconds inf"),
            "{text}"
        );
        assert!(text.contains("ocedge_cdr_upload_lag_seconds 1.5"), "{text}");
        assert!(
            text.contains(
                "ocedge_dest_up{side=\"microsoft\",dest=\"sip.pstnhub.microsoft.com\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn counters_never_go_backwards() {
        let recorder = builder().build_recorder();
        rendered(&recorder, 7);
        let text = rendered(&recorder, 4);
        assert!(
            text.contains("ocedge_proxy_forwarded_total{message=\"request\"} 7"),
            "{text}"
        );
    }
}
