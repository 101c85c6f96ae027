//! The metrics catalogue: one table naming every metric ocedge exports, its type, its help
//! text and its labels with their value sets. `docs/metrics.md` is this table
//! ([`markdown`]; a test keeps the two equal) and [`super::audit()`] checks a `/metrics`
//! page against it.
//!
//! Naming: every name starts with `ocedge_`; counters end in `_total`; gauges in seconds
//! end in `_seconds`. Counters are grouped under one name with a `reason`-like label only
//! when the label's values are disjoint outcomes of the same event (each request is counted
//! under exactly one reason), so that summing over the label is meaningful; overlapping
//! tallies (a connection closed, and closed *for being idle*) are separate metrics.
//!
//! Labels are bounded: a fixed set written here, or names from the configuration (the
//! destinations). Never a Call-ID, a phone number, a tenant or an address.

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (until the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket{le}`, `_sum`, `_count` series).
    Histogram,
}

impl Kind {
    /// `counter` or `gauge`, as in the exposition's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The values a label may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Exactly these.
    Fixed(&'static [&'static str]),
    /// A bounded set defined elsewhere (the configuration, the build); the text says where.
    From(&'static str),
}

/// One label of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// The label name.
    pub name: &'static str,
    /// Its possible values.
    pub values: Values,
}

/// One exported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Full name, `ocedge_` prefix included.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its labels; every sample carries all of them.
    pub labels: &'static [Label],
}

const fn fixed(name: &'static str, values: &'static [&'static str]) -> Label {
    Label {
        name,
        values: Values::Fixed(values),
    }
}

const SIDE: Label = fixed("side", &["microsoft", "carrier"]);
const DEST: Label = Label {
    name: "dest",
    values: Values::From("the names in `microsoft.targets` and `carrier.sbcs`"),
};
const SOURCE: Label = fixed("source", &["sbc", "microsoft"]);
const TRUNK: Label = Label {
    name: "trunk",
    values: Values::From(
        "the names in `carrier.sbcs` for SBC reports; `microsoft` for Microsoft's",
    ),
};
const VERSION: Label = Label {
    name: "version",
    values: Values::From("the running build's version (one value)"),
};

/// Declares each metric's name constant (documented by its help text) and [`CATALOGUE`].
macro_rules! catalogue {
    ($($konst:ident = $name:literal, $kind:ident, [$($label:expr),*], $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $konst: &str = $name;
        )*
        /// Every metric ocedge exports, in the order of `docs/metrics.md`.
        pub static CATALOGUE: &[Metric] = &[$(Metric {
            name: $konst,
            kind: Kind::$kind,
            help: $help,
            labels: &[$($label),*],
        }),*];
    };
}

catalogue! {
    BUILD_INFO = "ocedge_build_info", Gauge, [VERSION],
        "Always 1; the version label names the running build.";
    START_TIME = "ocedge_start_time_seconds", Gauge, [],
        "Unix time at which the process installed its metrics recorder (its start).";

    PROXY_FORWARDED = "ocedge_proxy_forwarded_total", Counter,
        [fixed("message", &["request", "response"])],
        "Messages forwarded: requests (each failover attempt counts) and responses upstream.";
    PROXY_REJECTED = "ocedge_proxy_rejected_total", Counter,
        [fixed("reason", &["invalid", "loop", "flood", "policy", "no_destination", "no_route",
            "overloaded", "draining"])],
        "Requests answered with an error by the proxy itself, by reason.";
    PROXY_DROPPED = "ocedge_proxy_dropped_total", Counter,
        [fixed("reason", &["acl", "invalid", "flood", "stray_response"])],
        "Messages dropped unanswered, by reason.";
    PROXY_FAILOVERS = "ocedge_proxy_failovers_total", Counter, [],
        "Retries on the next destination after 408, 503 or a timeout.";
    PROXY_PROBES_SENT = "ocedge_proxy_probes_sent_total", Counter, [],
        "OPTIONS health probes sent.";
    PROXY_TRANSACTIONS = "ocedge_proxy_transactions", Gauge, [],
        "Live SIP transactions.";

    POLICY_DECISIONS = "ocedge_policy_decisions_total", Counter,
        [fixed("decision", &["allowed", "emergency", "unassigned_called", "unassigned_caller",
            "tenant_mismatch", "not_ready", "unenforced"])],
        "Number policy decisions on new INVITEs, by decision.";

    NUMBERS_ENTRIES = "ocedge_numbers_entries", Gauge, [],
        "Assigned numbers held in the table.";
    NUMBERS_LOADED = "ocedge_numbers_loaded", Gauge, [],
        "1 once a table (snapshot or sync) is loaded; until then new calls get 503.";
    NUMBERS_SYNC_AGE = "ocedge_numbers_sync_age_seconds", Gauge, [],
        "Age of the table's content: since the last successful sync, or the snapshot's age; +Inf before any.";
    NUMBERS_SYNC_ERRORS = "ocedge_numbers_sync_errors", Gauge, [],
        "Consecutive API errors since the last successful sync.";
    NUMBERS_SYNCS = "ocedge_numbers_syncs_total", Counter,
        [fixed("kind", &["full", "delta"])],
        "Completed syncs: full listings and delta rounds.";
    NUMBERS_SKIPPED = "ocedge_numbers_skipped_invalid_total", Counter, [],
        "API entries skipped as invalid.";
    NUMBERS_SNAPSHOT_FAILING = "ocedge_numbers_snapshot_write_failing", Gauge, [],
        "1 while the last snapshot write failed.";

    TRANSPORT_MESSAGES = "ocedge_transport_messages_total", Counter,
        [fixed("transport", &["udp", "stream"]), fixed("direction", &["in", "out"])],
        "SIP messages received (delivered) and sent, UDP datagrams and TCP/TLS stream messages.";
    TRANSPORT_OVERSIZE = "ocedge_transport_datagrams_oversize_total", Counter, [],
        "UDP datagrams over limits.max_message, dropped unparsed.";
    TRANSPORT_UDP_SEND_ERRORS = "ocedge_transport_udp_send_errors_total", Counter, [],
        "UDP sends the socket refused (other than a full buffer).";
    TRANSPORT_PINGS = "ocedge_transport_pings_answered_total", Counter, [],
        "Stream keep-alive pings (double CRLF) answered.";
    TRANSPORT_ACCEPTED = "ocedge_transport_connections_accepted_total", Counter, [],
        "TCP/TLS connections accepted by a listener.";
    TRANSPORT_REFUSED = "ocedge_transport_connections_refused_total", Counter, [],
        "Connections refused at transport.max_connections (incoming or outgoing).";
    TRANSPORT_OPENED = "ocedge_transport_connections_opened_total", Counter, [],
        "Outgoing connections established (TLS: handshake done).";
    TRANSPORT_CONNECT_FAILURES = "ocedge_transport_connect_failures_total", Counter, [],
        "Outgoing connects that failed or timed out.";
    TRANSPORT_CLOSED = "ocedge_transport_connections_closed_total", Counter, [],
        "Stream connections closed, for whatever reason.";
    TRANSPORT_HANDSHAKE_FAILURES = "ocedge_transport_handshake_failures_total", Counter, [],
        "TLS handshakes that failed or timed out, in either direction.";
    TRANSPORT_PEER_REJECTED = "ocedge_transport_tls_peer_rejected_total", Counter, [],
        "Microsoft-side client certificates naming no configured peer (also handshake failures).";
    TRANSPORT_FRAMING_ERRORS = "ocedge_transport_framing_errors_total", Counter, [],
        "Stream connections closed for malformed or oversized input.";
    TRANSPORT_IDLE_CLOSED = "ocedge_transport_idle_closed_total", Counter, [],
        "Stream connections closed after transport.idle_timeout.";
    TRANSPORT_WRITE_STALLS = "ocedge_transport_write_stalls_total", Counter, [],
        "Stream connections closed because a write stalled.";
    TRANSPORT_QUEUE_DROPS = "ocedge_transport_send_queue_drops_total", Counter, [],
        "Messages dropped because a connection's send queue was full.";
    TRANSPORT_CONNECTIONS = "ocedge_transport_connections", Gauge, [],
        "Live TCP/TLS connections (accepted, opened or connecting).";

    DEST_UP = "ocedge_dest_up", Gauge, [SIDE, DEST],
        "1 while a destination (Microsoft target or SBC) is up, 0 while down.";

    CALLS_ACTIVE = "ocedge_calls_active", Gauge, [],
        "Calls being timed now.";
    CALLS = "ocedge_calls_total", Counter,
        [fixed("disposition", &["answered", "failed", "cancelled"])],
        "Finished calls, by disposition.";
    CALLS_ENDED = "ocedge_calls_ended_total", Counter,
        [fixed("reason", &["caller_bye", "callee_bye", "session_timer", "max_duration", "no_ack",
            "recovered", "rejected", "cancelled", "timeout"])],
        "Finished calls, by why they ended.";
    CALLS_REFUSED = "ocedge_calls_refused_total", Counter,
        [fixed("reason", &["spool_full", "max_calls"])],
        "New calls refused (503) by call timing: the spool at its cap, or cdr.max_calls held.";
    CDR_SPOOL_BYTES = "ocedge_cdr_spool_bytes", Gauge, [],
        "Bytes the record spool holds on disk.";
    CDR_SPOOL_UNACKED = "ocedge_cdr_spool_unacked", Gauge, [],
        "Records in the spool not yet acknowledged by every consumer.";
    CDR_SPOOL_ALARM = "ocedge_cdr_spool_alarm", Gauge, [],
        "1 while the spool is past cdr.alarm_ratio of cdr.max_bytes.";
    CDR_SPOOL_FSYNC_FAILURES = "ocedge_cdr_spool_fsync_failures_total", Counter, [],
        "Spool fsyncs that failed; each is repaired by writing what it covered again to fresh files.";
    CDR_UPLOAD_LAG = "ocedge_cdr_upload_lag_seconds", Gauge, [],
        "Age of the oldest record not yet uploaded; 0 when none waits.";
    CDR_UPLOAD_QUEUE = "ocedge_cdr_upload_queue", Gauge, [],
        "Records waiting for upload.";
    CDR_UPLOADED = "ocedge_cdr_uploaded_total", Counter,
        [fixed("result", &["accepted", "duplicate", "rejected"])],
        "Records uploaded, by Microsoft's per-record result.";
    CDR_UPLOAD_ERRORS = "ocedge_cdr_upload_errors_total", Counter,
        [fixed("kind", &["transport", "throttled", "unauthorized", "status", "decode"])],
        "Upload requests that failed as a whole, by kind of error.";
    CDR_DEAD_LETTERS = "ocedge_cdr_dead_letters_total", Counter, [],
        "Records written to the dead-letter file.";
    RECONCILE_CALLS = "ocedge_reconcile_calls_total", Counter,
        [fixed("class", &["matched", "duration_mismatch", "missing_ours", "missing_microsoft",
            "not_billable"])],
        "Calls reconciled against Microsoft's records, by class (complete windows only).";
    RECONCILE_WINDOWS = "ocedge_reconcile_windows_total", Counter,
        [fixed("complete", &["true", "false"])],
        "Report windows written; incomplete ones lacked our records and are not in the totals.";
    RECONCILE_PULL_ERRORS = "ocedge_reconcile_pull_errors_total", Counter, [],
        "Failed call-records requests (each retry counts).";
    RECONCILE_PULL_LAG = "ocedge_reconcile_pull_lag_seconds", Gauge, [],
        "Now minus the pull cursor: how far behind Microsoft's records are pulled.";
    QUALITY_REPORTS = "ocedge_quality_reports_total", Counter,
        [fixed("result", &["accepted", "refused"])],
        "RFC 6035 reports (PUBLISH vq-rtcpxr): accepted from configured SBCs, refused (403) from anyone else and from everyone when `[quality] enabled = false`.";
    QUALITY_SAMPLES = "ocedge_quality_samples_total", Counter, [SOURCE],
        "Quality samples forwarded to the sinks, by source.";
    QUALITY_FIELD_ERRORS = "ocedge_quality_field_errors_total", Counter, [],
        "Report fields that did not parse (the rest of each report is kept).";
    QUALITY_DROPPED = "ocedge_quality_dropped_total", Counter,
        [fixed("sink", &["queue", "webhook"])],
        "Samples dropped: the intake queue was full, or the webhook queue overflowed.";
    QUALITY_JITTER = "ocedge_quality_jitter_ms", Histogram, [SOURCE, TRUNK],
        "Interarrival jitter per sample, milliseconds.";
    QUALITY_LOSS = "ocedge_quality_loss_percent", Histogram, [SOURCE, TRUNK],
        "Network packet loss per sample, percent.";
    QUALITY_ROUND_TRIP = "ocedge_quality_round_trip_ms", Histogram, [SOURCE, TRUNK],
        "Round-trip delay per sample, milliseconds.";
    QUALITY_MOS_LQ = "ocedge_quality_mos_lq", Histogram, [SOURCE, TRUNK],
        "Listening-quality MOS per sample (1 to 5).";
    QUALITY_MOS_CQ = "ocedge_quality_mos_cq", Histogram, [SOURCE, TRUNK],
        "Conversational-quality MOS per sample (1 to 5).";
}

/// Bucket bounds of a histogram metric (`None` for other kinds).
pub fn buckets(name: &str) -> Option<&'static [f64]> {
    match name {
        QUALITY_JITTER | QUALITY_ROUND_TRIP => Some(&[
            5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
        ]),
        QUALITY_LOSS => Some(&[0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
        QUALITY_MOS_LQ | QUALITY_MOS_CQ => {
            Some(&[1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 5.0])
        }
        _ => None,
    }
}

/// The catalogue entry named `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    CATALOGUE.iter().find(|m| m.name == name)
}

/// Registers every metric's help text with the installed recorder.
pub fn describe_all() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The catalogue as the Markdown table of `docs/metrics.md`.
pub fn markdown() -> String {
    let mut out = String::from("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
    for m in CATALOGUE {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|l| match l.values {
                Values::Fixed(v) => format!("`{}`: {}", l.name, v.join(", ")),
                Values::From(text) => format!("`{}`: {text}", l.name),
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels.join("; "),
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_prefixed_and_suffixed_by_kind() {
        let mut seen = HashSet::new();
        for m in CATALOGUE {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("ocedge_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!m.help.is_empty() && !m.help.contains('|'), "{}", m.name);
            let mut labels = HashSet::new();
            for l in m.labels {
                assert!(labels.insert(l.name), "{}: label {} twice", m.name, l.name);
                if let Values::Fixed(v) = l.values {
                    assert_eq!(
                        v.iter().collect::<HashSet<_>>().len(),
                        v.len(),
                        "{}",
                        m.name
                    );
                }
            }
        }
        assert_eq!(find(CDR_DEAD_LETTERS).map(|m| m.kind), Some(Kind::Counter));
        assert!(find("ocedge_nope").is_none());
    }

    #[test]
    fn label_sets_match_the_enums_they_come_from() {
        use crate::cdr::{Disposition, EndReason};
        let values = |name: &str| match find(name).unwrap().labels[0].values {
            Values::Fixed(v) => v,
            Values::From(_) => panic!("{name}"),
        };
        use Disposition as D;
        let d = [D::Answered, D::Failed, D::Cancelled];
        for x in d {
            // A new variant fails to compile here: add it to `d` and to the catalogue.
            match x {
                D::Answered | D::Failed | D::Cancelled => {}
            }
        }
        assert_eq!(d.map(Disposition::as_str), values(CALLS));
        use EndReason as E;
        let all = [
            E::CallerBye,
            E::CalleeBye,
            E::SessionTimer,
            E::MaxDuration,
            E::NoAck,
            E::Recovered,
            E::Rejected,
            E::Cancelled,
            E::Timeout,
        ];
        for e in all {
            // A new variant fails to compile here: add it to `all` and to the catalogue.
            match e {
                E::CallerBye | E::CalleeBye | E::SessionTimer | E::MaxDuration => {}
                E::NoAck | E::Recovered | E::Rejected | E::Cancelled | E::Timeout => {}
            }
        }
        assert_eq!(all.map(EndReason::as_str), values(CALLS_ENDED));
    }

    #[test]
    fn markdown_has_one_row_per_metric() {
        let md = markdown();
        assert_eq!(md.lines().count(), CATALOGUE.len() + 2);
        assert!(md.contains("| `ocedge_dest_up` | gauge | `side`: microsoft, carrier; `dest`:"));
    }
}
