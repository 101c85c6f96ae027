//! RFC 6035 voice-quality reports: any bytes through `quality::vqreport::parse`, which never
//! fails as a whole. Checks that the kept errors stay within their caps, every value is within
//! the range its type documents, the summary agrees with the accessors, the same bytes give the
//! same report, and LF and CRLF line ends read alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocedge::quality::vqreport::{parse, Metrics, VqReport, MAX_BODY, MAX_ERRORS, MAX_FIELD_NAME};

fn check_metrics(m: &Metrics) {
    let percents = [
        m.packet_loss.nlr,
        m.packet_loss.jdr,
        m.burst_gap_loss.bld,
        m.burst_gap_loss.gld,
    ];
    for p in percents.into_iter().flatten() {
        assert!((0.0..=100.0).contains(&p), "percentage {p}");
    }
    for mos in [m.quality_est.moslq, m.quality_est.moscq]
        .into_iter()
        .flatten()
    {
        assert!((1.0..=5.0).contains(&mos), "MOS {mos}");
    }
    let q = &m.quality_est;
    for r in [q.rlq, q.rcq, q.extri, q.extro].into_iter().flatten() {
        assert!(r <= 120, "R {r}");
    }
    let codes = [m.jitter_buffer.jba, m.session_desc.plc];
    assert!(codes.into_iter().flatten().all(|c| c <= 3));
    assert!(m.jitter_buffer.jbr.is_none_or(|r| r <= 15));
    assert!(m.session_desc.pt.is_none_or(|pt| pt <= 127));
    // A parsed time always comes with its text.
    let t = &m.timestamps;
    assert!(t.start_ms.is_none() || t.start.is_some());
    assert!(t.stop_ms.is_none() || t.stop.is_some());
}

fn check(r: &VqReport) {
    assert!(r.errors.len() <= MAX_ERRORS);
    assert!(r.errors.len() as u64 <= u64::from(r.error_count));
    for e in &r.errors {
        assert!(e.field.chars().count() <= MAX_FIELD_NAME);
        assert!(!e.field.chars().any(char::is_control), "{:?}", e.field);
    }
    check_metrics(&r.local);
    check_metrics(&r.remote);
    let s = r.summary();
    assert_eq!(s.call_id, r.call_id);
    assert_eq!((s.mos_lq, s.mos_cq), (r.mos_lq(), r.mos_cq()));
    assert_eq!(
        (s.jitter_ms, s.round_trip_ms),
        (r.jitter_ms(), r.round_trip_ms())
    );
    assert_eq!(s.loss_percent, r.loss_percent());
    assert_eq!((s.start_ms, s.stop_ms), (r.start_ms(), r.stop_ms()));
}

fuzz_target!(|data: &[u8]| {
    let r = parse(data);
    check(&r);
    assert_eq!(parse(data), r, "not deterministic");
    if !data.contains(&b'\r') && data.len().saturating_mul(2) <= MAX_BODY {
        let mut crlf = Vec::with_capacity(data.len() * 2);
        for &b in data {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        assert_eq!(parse(&crlf), r, "CRLF reads differently from LF");
    }
});
