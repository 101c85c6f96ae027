//! Calls ended by a timer: RFC 4028 session timers (refreshed by re-INVITE and UPDATE from
//! either side, expiring, turned off) and the maximum call duration.

use std::time::Duration;

use super::{Dlg, EPOCH, H};
use crate::cdr::EndReason;
use crate::config::Side;
use crate::proxy::policy::AllowAll;

const SE_120: &str = "Session-Expires: 120;refresher=uac";

#[test]
fn an_unrefreshed_session_ends_when_it_expires() {
    let mut h = H::new();
    let d = Dlg::new("se");
    h.at(0).start(&d);
    h.at(1_000).answer(&d, "t", &[SE_120]);
    assert_eq!(h.sink.opens()[0].session_expires_s, Some(120));
    h.at(120_999);
    assert!(h.records().is_empty());
    h.at(121_000);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::SessionTimer);
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 121_000, 120_000));
    // The BYE the non-refresher sends after expiry changes nothing.
    h.at(125_000).bye(&d, "t");
    assert_eq!(h.records().len(), 1);
}

#[test]
fn refreshes_by_reinvite_and_update_push_the_expiry_then_it_expires() {
    let mut h = H::new();
    let d = Dlg::new("refresh");
    h.at(0).start(&d);
    h.at(1_000).answer(&d, "t", &[SE_120]);
    // The caller refreshes with a re-INVITE at half the interval: the 2xx resets the timer.
    h.at(60_000)
        .req(Side::Carrier, &d.caller_req("INVITE", 2, "t", &[SE_120]));
    h.at(60_100).resp(
        Side::Carrier,
        &d.resp(200, Some("t"), "2 INVITE", &[SE_120]),
    );
    // Its retransmitted 2xx does not move the timer again.
    h.at(62_000).resp(
        Side::Carrier,
        &d.resp(200, Some("t"), "2 INVITE", &[SE_120]),
    );
    h.at(121_000);
    assert!(h.records().is_empty(), "refreshed: not at the first expiry");
    assert_eq!(h.sink.opens().len(), 1, "same interval: journaled once");
    // The callee refreshes with an UPDATE and a longer interval.
    let se = "Session-Expires: 300;refresher=uas";
    h.at(150_000)
        .req(Side::Microsoft, &d.callee_req("UPDATE", 1, "t", &[se]));
    h.at(150_100)
        .resp(Side::Microsoft, &d.callee_req_ok("UPDATE", 1, "t", &[se]));
    // The new interval is journaled again: a restart would recover it.
    let opens = h.sink.opens();
    assert_eq!(opens.len(), 2);
    assert_eq!(opens[1].session_expires_s, Some(300));
    assert_eq!(opens[1].record.id, opens[0].record.id);
    h.at(450_099);
    assert!(h.records().is_empty());
    h.at(450_100);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::SessionTimer);
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 450_100, 449_100));
}

#[test]
fn a_refresh_answered_without_session_expires_turns_the_timer_off() {
    let mut h = H::new();
    let d = Dlg::new("off");
    h.at(0).start(&d);
    h.at(0).answer(&d, "t", &[SE_120]);
    h.at(50_000)
        .req(Side::Carrier, &d.caller_req("UPDATE", 2, "t", &[]))
        .resp(Side::Carrier, &d.resp(200, Some("t"), "2 UPDATE", &[]));
    h.at(1_000_000).bye(&d, "t");
    let r = h.record();
    assert_eq!(
        (r.end_reason, r.duration_ms),
        (EndReason::CallerBye, 1_000_000)
    );
}

#[test]
fn intervals_below_the_rfc_floor_count_as_90_s() {
    let mut h = H::new();
    let d = Dlg::new("tiny");
    h.at(0).start(&d);
    h.at(0)
        .answer(&d, "t", &["Session-Expires: 1;refresher=uac"]);
    h.at(89_999);
    assert!(h.records().is_empty());
    h.at(90_000);
    assert_eq!(h.record().end_reason, EndReason::SessionTimer);
}

#[test]
fn a_non_2xx_to_a_refresh_changes_nothing() {
    let mut h = H::new();
    let d = Dlg::new("491");
    h.at(0).start(&d);
    h.at(0).answer(&d, "t", &[SE_120]);
    h.at(60_000)
        .req(Side::Carrier, &d.caller_req("INVITE", 2, "t", &[SE_120]))
        .resp(Side::Carrier, &d.resp(491, Some("t"), "2 INVITE", &[]));
    h.at(200_000);
    let r = h.record();
    assert_eq!(
        (r.end_reason, r.end_ms),
        (EndReason::SessionTimer, EPOCH + 120_000)
    );
}

#[test]
fn max_duration_ends_a_call_at_answer_plus_the_maximum() {
    let mut cfg = super::cfg();
    cfg.max_call_duration = Duration::from_secs(600);
    let mut h = H::with(AllowAll, cfg);
    let d = Dlg::new("long");
    h.at(0).start(&d);
    h.at(2_500).answer(&d, "t", &[]);
    // A session timer refreshed forever does not outlive the maximum.
    for i in 0..20u32 {
        let at = 2_500 + u64::from(i + 1) * 30_000;
        h.at(at).req(
            Side::Carrier,
            &d.caller_req("UPDATE", i + 2, "t", &[SE_120]),
        );
        let cseq = format!("{} UPDATE", i + 2);
        h.resp(Side::Carrier, &d.resp(200, Some("t"), &cseq, &[SE_120]));
    }
    h.at(602_500);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::MaxDuration);
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 602_500, 600_000));
    assert_eq!(h.t.stats().ended(EndReason::MaxDuration), 1);
}
