//! The matcher: every class, and the edges (forks, the same numbers twice in the window,
//! clock skew within the window, a duration exactly at the tolerance, window ownership).

use super::{answered, failed, ms_record, T0};
use crate::reconcile::matcher::MAX_GROUP_PAIRS;
use crate::reconcile::{reconcile, Class, MatchedBy, Ours, Outcome, Params, Report, Theirs};

const A: &str = "+14255550100";
const B: &str = "+14255510000";
const HOUR: u64 = 3_600_000;

fn ours(id: &str, call_id: &str, start_ms: u64, duration_ms: u64) -> Ours {
    Ours {
        id: id.into(),
        call_id: call_id.into(),
        caller: A.into(),
        callee: B.into(),
        start_ms,
        end_ms: start_ms + duration_ms,
        duration_ms,
        billable: true,
    }
}

fn theirs(id: &str, call_id: &str, start_ms: u64, duration_ms: u64) -> Theirs {
    Theirs {
        id: id.into(),
        call_id: call_id.into(),
        caller: A.into(),
        callee: B.into(),
        start_ms,
        end_ms: start_ms + duration_ms,
        duration_ms,
        whole_seconds: false,
    }
}

fn unbilled(mut o: Ours) -> Ours {
    o.billable = false;
    o.duration_ms = 0;
    o
}

fn run(o: &[Ours], t: &[Theirs]) -> Outcome {
    reconcile(o, t, T0, T0 + HOUR, &Params::default())
}

/// `(class, our id, Microsoft's id)` of every finding, sorted.
fn classes(out: &Outcome) -> Vec<(Class, Option<&str>, Option<&str>)> {
    let mut v: Vec<_> = out
        .findings
        .iter()
        .map(|f| (f.class, f.our_id.as_deref(), f.microsoft_id.as_deref()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_class() {
    let o = [
        ours("o1", "c1", T0 + 1000, 60_000),
        ours("o2", "c2", T0 + 2000, 60_000),
        ours("o3", "c3", T0 + 3000, 30_000),
        unbilled(ours("o4", "c4", T0 + 4000, 0)),
        unbilled(ours("o5", "c5", T0 + 5000, 0)),
    ];
    let t = [
        theirs("m1", "c1", T0 + 1100, 60_200),
        theirs("m2", "c2", T0 + 2000, 61_500),
        theirs("m4", "c4", T0 + 4000, 0),
        theirs("m9", "c9", T0 + 600_000, 45_000),
        theirs("m8", "c8", T0 + 700_000, 0),
    ];
    let out = run(&o, &t);
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("o1"), Some("m1")),
            (Class::DurationMismatch, Some("o2"), Some("m2")),
            (Class::MissingOurs, None, Some("m9")),
            (Class::MissingMicrosoft, Some("o3"), None),
            (Class::NotBillable, None, Some("m8")),
            (Class::NotBillable, Some("o4"), Some("m4")),
            (Class::NotBillable, Some("o5"), None),
        ]
    );
    let c = out.counts;
    assert_eq!((c.matched, c.duration_mismatch, c.missing_ours), (1, 1, 1));
    assert_eq!(
        (c.missing_microsoft, c.not_billable, c.discrepancies()),
        (1, 3, 3)
    );
    assert_eq!(c.our_billed_ms, 150_000);
    assert_eq!(c.microsoft_billed_ms, 60_200 + 61_500 + 45_000);
    let m = out
        .findings
        .iter()
        .find(|f| f.class == Class::DurationMismatch);
    assert_eq!(m.and_then(|f| f.diff_ms), Some(1500));
    assert_eq!(m.and_then(|f| f.matched_by), Some(MatchedBy::CallId));
}

#[test]
fn a_duration_exactly_at_the_tolerance_matches() {
    let o: Vec<Ours> = (0..4)
        .map(|i| ours(&format!("o{i}"), &format!("c{i}"), T0 + i * 10_000, 60_000))
        .collect();
    let mut t = vec![
        theirs("m0", "c0", T0, 61_000),
        theirs("m1", "c1", T0 + 10_000, 61_001),
        theirs("m2", "c2", T0 + 20_000, 59_000),
        theirs("m3", "c3", T0 + 30_000, 58_999),
    ];
    let got: Vec<Class> = run(&o, &t).findings.iter().map(|f| f.class).collect();
    use Class::{DurationMismatch as X, Matched as M};
    assert_eq!(got, [M, X, M, X]);
    // Whole seconds only: Microsoft's rounding adds 500 ms.
    for r in &mut t {
        r.whole_seconds = true;
    }
    t[1].duration_ms = 61_500;
    t[3].duration_ms = 58_499;
    let got: Vec<Class> = run(&o, &t).findings.iter().map(|f| f.class).collect();
    assert_eq!(got, [M, M, M, X]);
}

#[test]
fn forks_pair_within_their_call_id() {
    let a = ours("fork-a", "c", T0, 60_000);
    let b = ours("fork-b", "c", T0 + 1000, 5000);
    let ta = theirs("ms-a", "c", T0 + 200, 60_300);
    let tb = theirs("ms-b", "c", T0 + 1100, 5000);
    let out = run(&[a.clone(), b.clone()], &[tb.clone(), ta.clone()]);
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("fork-a"), Some("ms-a")),
            (Class::Matched, Some("fork-b"), Some("ms-b")),
        ]
    );
    // Microsoft has one of the two forks.
    let out = run(&[a.clone(), b.clone()], std::slice::from_ref(&tb));
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("fork-b"), Some("ms-b")),
            (Class::MissingMicrosoft, Some("fork-a"), None),
        ]
    );
    // A fork that failed does not take the answered fork's record.
    let lost = unbilled(ours("fork-lost", "c", T0, 0));
    let out = run(&[lost, a], &[ta]);
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("fork-a"), Some("ms-a")),
            (Class::NotBillable, Some("fork-lost"), None),
        ]
    );
}

#[test]
fn the_same_numbers_twice_in_the_window_pair_by_closest_start() {
    // Microsoft's Call-IDs differ from ours, so only numbers and time can pair them.
    let o = [
        ours("o1", "x1", T0, 30_000),
        ours("o2", "x2", T0 + 3000, 90_000),
    ];
    let t = [
        theirs("m2", "y2", T0 + 3400, 90_000),
        theirs("m1", "y1", T0 + 500, 30_000),
    ];
    let out = run(&o, &t);
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("o1"), Some("m1")),
            (Class::Matched, Some("o2"), Some("m2")),
        ]
    );
    assert!(out
        .findings
        .iter()
        .all(|f| f.matched_by == Some(MatchedBy::Numbers)));
    assert_eq!(out.findings[0].microsoft_call_id.as_deref(), Some("y1"));
    // A failed attempt and its answered redial: the billed record goes to the redial.
    let o = [
        unbilled(ours("try", "x1", T0, 0)),
        ours("redial", "x2", T0 + 2000, 30_000),
    ];
    let out = run(&o, &[theirs("m", "y", T0 + 1000, 30_000)]);
    assert_eq!(
        classes(&out),
        vec![
            (Class::Matched, Some("redial"), Some("m")),
            (Class::NotBillable, Some("try"), None),
        ]
    );
}

#[test]
fn clock_skew_within_the_window_still_pairs() {
    for (skew, pairs) in [
        (4900, true),
        (5000, true),
        (5001, false),
        (0u64.wrapping_sub(5000), true),
    ] {
        let o = [ours("o", "x", T0 + 10_000, 30_000)];
        let t = [theirs("m", "y", (T0 + 10_000).wrapping_add(skew), 30_000)];
        let out = run(&o, &t);
        let expected = if pairs {
            vec![(Class::Matched, Some("o"), Some("m"))]
        } else {
            vec![
                (Class::MissingOurs, None, Some("m")),
                (Class::MissingMicrosoft, Some("o"), None),
            ]
        };
        assert_eq!(classes(&out), expected, "skew {}", skew as i64);
    }
    // Numbers must agree: the same time with another callee is another call.
    let mut t = theirs("m", "y", T0, 30_000);
    t.callee = "+14255519999".into();
    assert_eq!(
        run(&[ours("o", "x", T0, 30_000)], &[t])
            .counts
            .discrepancies(),
        2
    );
}

#[test]
fn a_window_owns_its_findings_by_our_end_time() {
    let p = Params::default();
    // Our record ends just before the window, Microsoft's (drifted) just inside: the pair
    // is the previous window's, and is not counted here as missing.
    let o = [ours("o", "c", T0 - 31_000, 30_000)];
    let t = [theirs("m", "c", T0 - 31_000, 32_000)];
    assert!(reconcile(&o, &t, T0, T0 + HOUR, &p).findings.is_empty());
    let prev = reconcile(&o, &t, T0 - HOUR, T0, &p);
    assert_eq!(
        classes(&prev),
        vec![(Class::DurationMismatch, Some("o"), Some("m"))]
    );
    // Ours ends inside, Microsoft's after the window (within the margin): counted here.
    let o = [ours("o", "c", T0 + HOUR - 31_000, 30_000)];
    let t = [theirs("m", "c", T0 + HOUR - 31_000, 30_500)];
    assert_eq!(
        classes(&run(&o, &t)),
        vec![(Class::Matched, Some("o"), Some("m"))]
    );
    // A lone record belongs to the window of its own end; beyond the margin, nothing.
    let t = [theirs("m", "c", T0 + HOUR + 1000, 30_000)];
    assert!(run(&[], &t).findings.is_empty());
    let far = [ours("o", "c", T0 + HOUR + p.edge_margin_ms, 1000)];
    assert!(run(&far, &t).findings.is_empty());
}

#[test]
fn a_call_id_reused_beyond_reason_falls_back_to_numbers() {
    let n = 70u64;
    assert!(n * n > MAX_GROUP_PAIRS as u64);
    let o: Vec<Ours> = (0..n)
        .map(|i| ours(&format!("o{i}"), "same", T0 + i * 20_000, 10_000))
        .collect();
    let t: Vec<Theirs> = (0..n)
        .rev()
        .map(|i| theirs(&format!("m{i}"), "same", T0 + i * 20_000 + 100, 10_000))
        .collect();
    let out = run(&o, &t);
    assert_eq!(out.counts.matched, n);
    assert!(out
        .findings
        .iter()
        .all(|f| f.matched_by == Some(MatchedBy::Numbers)));
    assert!(out.findings.iter().all(
        |f| f.our_id.as_deref().map(|s| &s[1..]) == f.microsoft_id.as_deref().map(|s| &s[1..])
    ));
}

#[test]
fn reports_list_the_worst_first_from_full_records() {
    let ours_recs = [
        answered("c1", 10, 60_000, B),
        answered("c2", 20, 60_000, B),
        answered("c3", 30, 120_000, B),
        failed("c4", 40, B),
    ];
    let mut theirs_recs: Vec<_> = ours_recs
        .iter()
        .map(|r| {
            let mut m = ms_record(&r.id, &crate::cdr::rfc3339_ms(r.end_ms), r.duration_ms);
            m.call_id = r.call_id.clone();
            m
        })
        .collect();
    theirs_recs[0].duration_ms = Some(62_000);
    theirs_recs[1].duration_ms = Some(55_000);
    theirs_recs.remove(2);
    theirs_recs[2].end_date_time = "garbage".into();
    let r = Report::build(
        (T0, T0 + HOUR),
        &ours_recs,
        &theirs_recs,
        &Params::default(),
        T0,
    );
    assert_eq!(
        (r.our_records, r.microsoft_records, r.unreadable),
        (4, 2, 1)
    );
    let worst: Vec<(Class, Option<i64>)> = r
        .discrepancies()
        .iter()
        .map(|f| (f.class, f.diff_ms))
        .collect();
    assert_eq!(
        worst,
        vec![
            (Class::MissingMicrosoft, None),
            (Class::DurationMismatch, Some(-5000)),
            (Class::DurationMismatch, Some(2000)),
        ]
    );
    let summary = r.summary_json();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["counts"]["durationMismatch"], 2);
    assert_eq!(summary["from"], "2024-05-01T10:00:00.000Z");
}
