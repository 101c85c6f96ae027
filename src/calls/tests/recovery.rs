//! Calls journaled before a restart, re-inserted into a new tracker with a new epoch.

use std::time::Duration;

use super::{Dlg, EPOCH, H};
use crate::calls::{CallTracker, MemorySink, WallClock};
use crate::cdr::{EndReason, OpenCall};
use crate::config::Side;
use crate::proxy::policy::{AllowAll, Policy};
use crate::proxy::transaction::Millis;

/// The journal a first run left: calls answered, never closed.
fn journal(calls: &[(&Dlg, u64, &[&str])]) -> Vec<OpenCall> {
    let mut h = H::new();
    for (d, at, extra) in calls {
        h.at(*at).start(d);
        h.answer(d, "t", extra);
    }
    assert!(h.records().is_empty());
    h.sink.opens()
}

/// A tracker started `restart_utc - EPOCH` ms after the first one's epoch, its own
/// `Millis(0)` at that instant, with `calls` recovered at `Millis(0)`.
fn restarted(restart_utc: u64, calls: Vec<OpenCall>) -> H {
    let sink = std::sync::Arc::new(MemorySink::new());
    let mut t = CallTracker::new(
        AllowAll,
        sink.clone(),
        WallClock::anchored(restart_utc, Millis(0)),
        super::cfg(),
    );
    t.recover(Millis(0), calls);
    H { t, sink, now: 0 }
}

#[test]
fn a_bye_after_the_restart_closes_with_the_true_duration() {
    let d = Dlg::new("rec-bye");
    let j = journal(&[(&d, 1_234, &[])]);
    // Restart 50 s after the first epoch; the BYE comes 11.234 s into the new run.
    let mut h = restarted(EPOCH + 50_000, j.clone());
    assert_eq!((h.t.active(), h.t.stats().recovered), (1, 1));
    h.at(11_234)
        .req(Side::Carrier, &d.caller_req("BYE", 2, "t", &[]));
    let r = h.record();
    assert_eq!(r.id, j[0].record.id);
    assert_eq!(r.end_reason, EndReason::CallerBye);
    assert_eq!(r.answer_ms, Some(EPOCH + 1_234));
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 61_234, 60_000));
    assert_eq!(h.t.active(), 0);
}

#[test]
fn a_call_never_closed_ends_as_recovered_at_the_maximum() {
    let d = Dlg::new("rec-max");
    let j = journal(&[(&d, 1_000, &[])]);
    let mut h = restarted(EPOCH + 10_000, j);
    let max = super::cfg().max_call_duration.as_millis() as u64;
    // Answer at EPOCH+1000; the new run's Millis(0) is EPOCH+10000.
    let due = 1_000 + max - 10_000;
    assert_eq!(h.t.poll_timeout(), Some(Millis(due)));
    h.at(due);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::Recovered);
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 1_000 + max, max));
}

#[test]
fn journal_entries_past_the_maximum_end_at_once() {
    let d = Dlg::new("rec-old");
    let j = journal(&[(&d, 0, &[])]);
    let max = super::cfg().max_call_duration.as_millis() as u64;
    let h = restarted(EPOCH + max + 5_000, j);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::Recovered);
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + max, max));
    assert_eq!(h.t.active(), 0);
}

#[test]
fn a_session_timed_call_gets_a_fresh_interval_from_the_restart() {
    let a = Dlg::new("rec-se-dead");
    let b = Dlg::new("rec-se-alive");
    let se: &[&str] = &["Session-Expires: 120;refresher=uac"];
    let j = journal(&[(&a, 0, se), (&b, 0, se)]);
    let mut h = restarted(EPOCH + 100_000, j);
    // b is refreshed 30 s after the restart: alive, its own timer from then on.
    h.at(30_000)
        .req(Side::Carrier, &b.caller_req("UPDATE", 2, "t", se))
        .resp(Side::Carrier, &b.resp(200, Some("t"), "2 UPDATE", se));
    h.at(120_000);
    let r = h.record();
    assert_eq!(r.call_id, "rec-se-dead");
    assert_eq!(
        r.end_reason,
        EndReason::Recovered,
        "never seen alive after the restart"
    );
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 220_000, 220_000));
    h.at(150_000);
    let r = h.records().pop().expect("second record");
    assert_eq!(r.call_id, "rec-se-alive");
    assert_eq!(r.end_reason, EndReason::SessionTimer);
    assert_eq!(r.end_ms, EPOCH + 250_000);
}

#[test]
fn a_recovered_call_keeps_the_interval_last_negotiated() {
    let d = Dlg::new("rec-se-changed");
    let mut h = H::new();
    h.at(0).start(&d);
    h.answer(&d, "t", &["Session-Expires: 1800;refresher=uac"]);
    let se = "Session-Expires: 90;refresher=uac";
    h.at(60_000)
        .req(Side::Carrier, &d.caller_req("UPDATE", 2, "t", &[se]))
        .resp(Side::Carrier, &d.resp(200, Some("t"), "2 UPDATE", &[se]));
    // The spool keeps the last Open of a call: what recovery reads.
    let last = h.sink.opens().pop().expect("journaled");
    assert_eq!(last.session_expires_s, Some(90));
    let mut h = restarted(EPOCH + 100_000, vec![last]);
    assert_eq!(h.t.poll_timeout(), Some(Millis(90_000)), "not 1800 s");
    h.at(90_000);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::Recovered);
    assert_eq!(r.end_ms, EPOCH + 190_000);
}

#[test]
fn recovering_a_call_twice_holds_it_once() {
    let d = Dlg::new("twice");
    let j = journal(&[(&d, 0, &[])]);
    let mut h = restarted(EPOCH + 1_000, j.clone());
    h.t.recover(Millis(0), j);
    assert_eq!((h.t.active(), h.t.stats().recovered), (1, 1));
    h.at(Duration::from_secs(1).as_millis() as u64)
        .req(Side::Microsoft, &d.callee_req("BYE", 1, "t", &[]));
    assert_eq!(h.record().end_reason, EndReason::CalleeBye);
}
