//! Tests of the RFC 6035 report parser. The reports are the fuzz seeds in
//! `fuzz/corpus/vqreport/`, so what the fuzzer starts from is what these tests pin.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

const SESSION: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/rfc6035-session");
const INTERVAL: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/rfc6035-interval");
const ALERT: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/rfc6035-alert");
const PHONE: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/vendor-phone-session");
const PRESTANDARD: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/vendor-prestandard-alert");
const SBC: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/vendor-sbc-lowercase");
const MALFORMED: &[u8] = include_bytes!("../../fuzz/corpus/vqreport/vendor-malformed");

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// No errors, nothing unknown, nothing given twice.
fn assert_clean(r: &VqReport) {
    assert_eq!((&r.errors, r.error_count), (&vec![], 0));
    assert_eq!((r.unknown, r.duplicates, r.truncated), (0, 0, false));
}

/// The local block of RFC 6035 §4.7.3 (F13); START and STOP as printed (STOP is nine days
/// before START in the RFC: its typo, kept).
fn rfc_local() -> Metrics {
    Metrics {
        timestamps: Timestamps {
            start: s("2004-10-10T18:23:43Z"),
            stop: s("2004-10-01T18:26:02Z"),
            start_ms: Some(1_097_432_623_000),
            stop_ms: Some(1_096_655_162_000),
        },
        session_desc: SessionDesc {
            pt: Some(18),
            pd: s("G729"),
            sr: Some(8000),
            fd: Some(20),
            fo: Some(20),
            fpp: Some(2),
            pps: Some(50),
            fmtp: s("annexb=no"),
            plc: Some(3),
            ssup: Some(true),
        },
        jitter_buffer: JitterBuffer {
            jba: Some(3),
            jbr: Some(2),
            jbn: Some(40),
            jbm: Some(80),
            jbx: Some(120),
        },
        packet_loss: PacketLoss {
            nlr: Some(5.0),
            jdr: Some(2.0),
        },
        burst_gap_loss: BurstGapLoss {
            bld: Some(0.0),
            bd: Some(0),
            gld: Some(2.0),
            gd: Some(500),
            gmin: Some(16),
        },
        delay: Delay {
            rtd: Some(200),
            esd: Some(140),
            owd: None,
            sowd: Some(200),
            iaj: Some(2),
            maj: Some(10),
        },
        signal: Signal {
            sl: Some(-21),
            nl: Some(-50),
            rerl: Some(55),
        },
        quality_est: QualityEst {
            rlq: Some(90),
            rcq: Some(85),
            extri: Some(90),
            extro: None,
            moslq: Some(4.2),
            moscq: Some(4.3),
            qoe_est_alg: s("P.564"),
        },
    }
}

#[test]
fn rfc_session_report_parses_exactly() {
    let r = parse(SESSION);
    assert_clean(&r);
    assert_eq!((r.kind, r.call_term), (Some(ReportKind::Session), true));
    assert_eq!(r.alert, Alert::default());
    assert_eq!(r.call_id, s("6dg37f1890463"));
    assert_eq!(r.local_id, s("Alice <sip:alice@example.org>"));
    assert_eq!(r.remote_id, s("Bill <sip:bill@example.net>"));
    assert_eq!(r.orig_id, s("Alice <sip:alice@example.org>"));
    assert_eq!(r.local_group, s("example-phone-55671"));
    assert_eq!(r.remote_group, s("example-gateway-09871"));
    // The RFC's LocalAddr SSRC has no `0x`; bare hex reads as hex.
    let local = Endpoint {
        ip: ip("192.0.2.100"),
        port: Some(5000),
        ssrc: Some(0x1a3b_5c7d),
    };
    let remote = Endpoint {
        ip: ip("198.51.100.150"),
        port: Some(5002),
        ssrc: Some(0x2468_abcd),
    };
    assert_eq!((&r.local_addr, &r.remote_addr), (&local, &remote));
    assert_eq!(r.local_mac, Some([0x00, 0x00, 0x5e, 0x00, 0x53, 0x01]));
    assert_eq!(r.remote_mac, Some([0x00, 0x00, 0x5e, 0x00, 0x53, 0x02]));
    // The folded DialogID is joined with one space, which SEMI allows.
    assert_eq!(
        r.dialog_id,
        s("1890463548@alice.example.org;to-tag=8472761; from-tag=9123dh311")
    );
    assert_eq!(r.local, rfc_local());
    let mut remote = rfc_local();
    remote.signal.nl = Some(-45);
    remote.quality_est.extri = None;
    (remote.quality_est.moslq, remote.quality_est.moscq) = (Some(4.3), Some(4.2));
    assert_eq!(r.remote, remote);
    let expected = QualitySample {
        call_id: s("6dg37f1890463"),
        kind: Some(ReportKind::Session),
        jitter_ms: Some(2),
        loss_percent: Some(5.0),
        round_trip_ms: Some(200),
        mos_lq: Some(4.2),
        mos_cq: Some(4.3),
        start_ms: Some(1_097_432_623_000),
        stop_ms: Some(1_096_655_162_000),
    };
    assert_eq!(r.summary(), expected);
}

#[test]
fn rfc_interval_report_parses_exactly() {
    let r = parse(INTERVAL);
    assert_clean(&r);
    assert_eq!((r.kind, r.call_term), (Some(ReportKind::Interval), false));
    assert_eq!(r.local_addr.ssrc, Some(0x1a3b_5c7d));
    assert_eq!(
        r.dialog_id,
        s("1890463548@alice.example.org;to-tag=8472761;from-tag=9123dh311")
    );
    assert_eq!(r.local.session_desc.fmtp, None);
    assert_eq!(r.remote, Metrics::default());
    let sample = r.summary();
    assert_eq!(
        (sample.jitter_ms, sample.loss_percent, sample.round_trip_ms),
        (Some(3), Some(1.5), Some(180))
    );
    assert_eq!((sample.mos_lq, sample.mos_cq), (Some(4.1), Some(4.0)));
    assert_eq!(
        (sample.start_ms, sample.stop_ms),
        (Some(1_097_432_623_000), Some(1_097_432_683_000))
    );
}

#[test]
fn rfc_alert_report_parses_exactly() {
    let r = parse(ALERT);
    assert_clean(&r);
    assert_eq!((r.kind, r.call_term), (Some(ReportKind::Alert), false));
    let alert = Alert {
        metric: s("MOSLQ"),
        severity: Some(Severity::Critical),
        direction: Some(Direction::Local),
    };
    assert_eq!(r.alert, alert);
    assert_eq!(r.local.burst_gap_loss.bld, Some(30.0));
    assert_eq!(r.local.signal, Signal::default());
    assert_eq!(
        (r.mos_lq(), r.mos_cq(), r.loss_percent()),
        (Some(2.4), Some(2.2), Some(12.0))
    );
    assert_eq!(
        (r.jitter_ms(), r.round_trip_ms(), r.stop_ms()),
        (Some(35), Some(420), Some(1_097_432_633_000))
    );
}

#[test]
fn phone_report_with_session_lines_inside_the_block() {
    let r = parse(PHONE);
    assert_eq!((r.error_count, r.duplicates), (0, 0));
    // x-UserAgent, FromID, ToID, x-SIPmetrics, x-SIPterm.
    assert_eq!(r.unknown, 5);
    assert_eq!(r.call_id, s("3c26a8de500f-12ct7zov3kjs"));
    assert_eq!(
        (r.local_addr.ssrc, r.remote_addr.port),
        (Some(0xCBE3_450E), Some(54018))
    );
    assert_eq!(r.local.session_desc.pd, s("G.711U"));
    assert_eq!(r.local.session_desc.ssup, Some(false));
    assert_eq!(r.local.jitter_buffer.jbx, Some(65535));
    assert_eq!((r.local.delay.iaj, r.remote.delay.iaj), (Some(4), Some(2)));
    assert_eq!(r.remote.burst_gap_loss.gd, Some(4677));
    assert_eq!(
        (r.start_ms(), r.stop_ms()),
        (Some(1_266_415_182_000), Some(1_266_415_186_000))
    );
    assert_eq!((r.mos_lq(), r.jitter_ms()), (None, Some(4)));
}

#[test]
fn prestandard_alert_with_type_line_and_metrics_block() {
    let r = parse(PRESTANDARD);
    assert_eq!((r.error_count, r.duplicates, r.unknown), (0, 0, 2));
    assert_eq!(r.kind, Some(ReportKind::Alert));
    let alert = Alert {
        metric: s("OWD"),
        severity: Some(Severity::Critical),
        direction: Some(Direction::Local),
    };
    assert_eq!(r.alert, alert);
    assert_eq!(r.local_addr.ssrc, Some(3_825_483_318), "decimal SSRC");
    assert_eq!(r.remote_addr.ssrc, Some(2_017_446_972));
    assert_eq!(
        (r.local.delay.owd, r.local.signal.rerl),
        (Some(240), Some(127))
    );
    assert_eq!(r.local.timestamps.start_ms, Some(1_448_008_985_000));
    assert_eq!((r.mos_lq(), r.mos_cq()), (Some(3.8), Some(3.4)));
    assert_eq!(r.remote, Metrics::default());
}

#[test]
fn sbc_report_with_lowercase_odd_spacing_and_duplicates() {
    let r = parse(SBC);
    assert_eq!(
        (r.error_count, r.unknown, r.duplicates),
        (0, 1, 1),
        "{:?}",
        r.errors
    );
    assert_eq!((r.kind, r.call_term), (Some(ReportKind::Interval), true));
    let local = Endpoint {
        ip: ip("2001:db8::10"),
        port: Some(40000),
        ssrc: Some(0x00AB_CDEF),
    };
    assert_eq!(r.local_addr, local);
    assert_eq!(
        (r.remote_addr.ip, r.remote_addr.ssrc),
        (ip("2001:db8::20"), None)
    );
    assert_eq!(r.local_mac, Some([0x00, 0x00, 0x5e, 0x00, 0x53, 0x0a]));
    // No block header before the first metrics: they are local.
    let t = &r.local.timestamps;
    assert_eq!(
        (t.start_ms, t.stop_ms),
        (Some(1_795_730_700_250), Some(1_795_730_760_000))
    );
    assert_eq!(t.stop, s("2026-11-26 22:06:00z"));
    let d = &r.local.delay;
    assert_eq!(
        (d.rtd, d.esd, d.iaj, d.maj),
        (Some(48), None, Some(3), None)
    );
    assert_eq!(
        (r.local.packet_loss.nlr, r.local.packet_loss.jdr),
        (Some(0.25), None)
    );
    assert_eq!(r.local.quality_est.moslq, Some(4.35), "the last value wins");
    assert_eq!(
        (r.remote.delay.rtd, r.remote.quality_est.moslq),
        (Some(50), Some(4.10))
    );
    let sample = r.summary();
    assert_eq!(
        (sample.mos_lq, sample.mos_cq, sample.round_trip_ms),
        (Some(4.35), Some(4.05), Some(48))
    );
}

#[test]
fn malformed_values_are_counted_and_the_good_ones_kept() {
    let r = parse(MALFORMED);
    let found: Vec<_> = r
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.reason))
        .collect();
    let expected = [
        (3, "LocalAddr.IP", "not an IP address"),
        (3, "LocalAddr.PORT", "number out of range"),
        (3, "LocalAddr.SSRC", "not an SSRC (0x and 1-8 hex digits)"),
        (
            5,
            "LocalMetrics.Timestamps.START",
            "not an RFC 3339 date-time (text kept)",
        ),
        (6, "LocalMetrics.JitterBuffer.JBA", "code outside 0-3"),
        (
            6,
            "LocalMetrics.JitterBuffer.JBN",
            "negative value for an unsigned metric",
        ),
        (6, "LocalMetrics.JitterBuffer.JBM", "number out of range"),
        (7, "LocalMetrics.PacketLoss.NLR", "not a finite number"),
        (7, "LocalMetrics.PacketLoss.JDR", "not a finite number"),
        (8, "LocalMetrics.Delay.RTD", "not an integer"),
        (8, "LocalMetrics.Delay.ESD", "not an integer"),
        (
            8,
            "LocalMetrics.Delay.MAJ",
            "negative value for an unsigned metric",
        ),
        (9, "LocalMetrics.Signal.SL", "number out of range"),
        (10, "LocalMetrics.QualityEst.MOSLQ", "MOS outside 1.0-5.0"),
        (10, "LocalMetrics.QualityEst.RLQ", "R factor above 120"),
        (11, "this", "not a `Name: value` line"),
        (12, "Delay", "not a `Name: value` line"),
        (13, "LocalMetrics.QualityEst.RCQ", "parameter without `=`"),
    ];
    assert_eq!(found, expected);
    assert_eq!(r.error_count, 18);
    assert_eq!(
        (r.kind, r.call_id.as_deref()),
        (Some(ReportKind::Session), Some("broken-1@sbc.example.net"))
    );
    assert_eq!(r.local_addr, Endpoint::default());
    let t = &r.local.timestamps;
    assert_eq!(
        (t.start.as_deref(), t.start_ms),
        (Some("2026-13-45T25:61:61Z"), None)
    );
    assert_eq!(t.stop_ms, Some(1_795_730_760_000));
    let jb = &r.local.jitter_buffer;
    assert_eq!(
        (jb.jba, jb.jbr, jb.jbn, jb.jbm, jb.jbx),
        (None, Some(2), None, None, Some(120))
    );
    assert_eq!(r.local.packet_loss, PacketLoss::default());
    assert_eq!((r.local.delay.iaj, r.local.delay.rtd), (Some(3), None));
    assert_eq!((r.local.signal.sl, r.local.signal.nl), (None, Some(-50)));
    assert_eq!((r.mos_lq(), r.mos_cq()), (None, Some(4.1)));
}

#[test]
fn unavailable_values_are_none_without_errors() {
    let r = parse(
        b"VQIntervalReport\nQualityEst:MOSLQ=unavailable MOSCQ=- RLQ= RCQ=UNAVAILABLE\nCallID:\n",
    );
    assert_eq!((r.error_count, r.unknown), (0, 0));
    assert_eq!(
        (r.local.quality_est, r.call_id),
        (QualityEst::default(), None)
    );
    // An unavailable value still replaces an earlier one: the last wins.
    let r = parse(b"VQIntervalReport\nDelay:RTD=5\nDelay:RTD=unavailable\n");
    assert_eq!((r.local.delay.rtd, r.duplicates), (None, 1));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_errors_stay_bounded(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let r = parse(&body);
        prop_assert!(r.errors.len() <= MAX_ERRORS);
        prop_assert!(r.errors.len() <= r.error_count as usize);
        prop_assert!(r.errors.iter().all(|e| e.field.chars().count() <= MAX_FIELD_NAME));
    }

    /// Lines made of the report's own vocabulary reach the value parsers far more often.
    #[test]
    fn report_like_lines_parse_the_same_with_any_line_end(
        lines in proptest::collection::vec(
            (
                prop::sample::select(vec!["VQSessionReport", "LocalMetrics", "RemoteMetrics", "Delay",
                    "QualityEst", "Timestamps", "LocalAddr", "PacketLoss", "CallID", "  ", "x-Foo"]),
                prop::sample::select(vec![":", " : ", "", " "]),
                proptest::collection::vec(
                    (prop::sample::select(vec!["RTD", "MOSLQ", "START", "IP", "SSRC", "NLR", "CallTerm", ""]),
                     prop::sample::select(vec!["=", " = ", ""]),
                     prop::sample::select(vec!["5", "-1", "4.2", "NaN", "0x1f", "2004-10-10T18:23:43Z",
                        "unavailable", "\"q", "99999999999", "::1", ""])),
                    0..4),
            ),
            0..40),
    ) {
        let mut body = String::new();
        for (name, colon, ps) in &lines {
            body.push_str(name);
            body.push_str(colon);
            for (k, eq, v) in ps {
                body.push_str(&format!(" {k}{eq}{v}"));
            }
            body.push('\n');
        }
        let r = parse(body.as_bytes());
        prop_assert!(r.errors.len() <= MAX_ERRORS && r.errors.len() <= r.error_count as usize);
        prop_assert_eq!(&parse(body.replace('\n', "\r\n").as_bytes()), &r);
        prop_assert_eq!(r.summary().mos_lq, r.mos_lq());
        if let Some(m) = r.mos_lq() {
            prop_assert!((1.0..=5.0).contains(&m));
        }
    }
}
