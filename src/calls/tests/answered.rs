//! Answered calls: who hung up, exact durations through the wall clock, forks, repeats,
//! and a 2xx nobody acknowledged.

use super::{Dlg, EPOCH, H};
use crate::cdr::{record_id, Direction, Disposition, EndReason, SideName};
use crate::config::Side;
use crate::proxy::policy::Policy;

#[test]
fn caller_bye_gives_exact_duration_in_utc() {
    let mut h = H::new();
    let d = Dlg::new("c1");
    h.at(100).start(&d);
    h.at(600)
        .resp(Side::Carrier, &d.resp(180, Some("tt"), "1 INVITE", &[]));
    h.at(1234).answer(&d, "tt", &[]);
    assert_eq!(h.t.active(), 1);
    let opens = h.sink.opens();
    assert_eq!(opens.len(), 1, "journaled at the answer");
    assert_eq!(opens[0].record.answer_ms, Some(EPOCH + 1234));
    assert_eq!(
        (opens[0].from_tag.as_str(), opens[0].to_tag.as_str()),
        ("c1-ft", "tt")
    );
    assert!(h.records().is_empty());

    h.at(61_234).bye(&d, "tt");
    let r = h.record();
    assert_eq!(r.id, record_id(b"c1", b"c1-ft", b"tt", 1));
    assert_eq!(r.id, opens[0].record.id, "journal and record share the id");
    assert_eq!(r.call_id, "c1");
    assert_eq!(
        (r.direction, r.side),
        (Direction::Inbound, SideName::Carrier)
    );
    assert_eq!(
        (r.caller_number.as_str(), r.callee_number.as_str()),
        (super::CALLER, super::CALLEE)
    );
    assert_eq!(r.start_ms, EPOCH + 100);
    assert_eq!(r.answer_ms, Some(EPOCH + 1234));
    assert_eq!(r.end_ms, EPOCH + 61_234);
    assert_eq!(r.duration_ms, 60_000);
    assert_eq!(
        (r.disposition, r.final_status),
        (Disposition::Answered, 200)
    );
    assert_eq!(r.end_reason, EndReason::CallerBye);
    assert_eq!(r.sbc, "sbc1");
    assert_eq!(h.t.active(), 0);
    let s = h.t.stats();
    assert_eq!(
        (s.answered, s.ended(EndReason::CallerBye), s.active),
        (1, 1, 0)
    );
}

#[test]
fn callee_bye_is_told_apart_by_the_from_tag() {
    let mut h = H::new();
    let d = Dlg::new("c2");
    h.at(0).start(&d);
    h.at(2_000).answer(&d, "callee", &[]);
    h.at(9_500)
        .req(Side::Microsoft, &d.callee_req("BYE", 1, "callee", &[]));
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::CalleeBye);
    assert_eq!(r.duration_ms, 7_500);
    assert_eq!(r.end_ms, EPOCH + 9_500);
}

#[test]
fn outbound_direction_follows_the_side_of_the_invite() {
    let mut h = H::new();
    let d = Dlg::new("c3");
    let inv = d.invite(&[]);
    h.req(Side::Microsoft, &inv);
    h.t.on_forward(crate::proxy::transaction::Millis(0), &inv, "sbc2");
    h.resp(Side::Microsoft, &d.resp(200, Some("t"), "1 INVITE", &[]));
    h.at(10)
        .req(Side::Microsoft, &d.caller_req("BYE", 2, "t", &[]));
    let r = h.record();
    assert_eq!(
        (r.direction, r.side),
        (Direction::Outbound, SideName::Microsoft)
    );
    assert_eq!(r.sbc, "sbc2");
}

#[test]
fn forked_answers_make_one_record_each() {
    let mut h = H::new();
    let d = Dlg::new("fork");
    h.at(0).start(&d);
    h.at(1_000).answer(&d, "a", &[]);
    h.at(1_200).answer(&d, "b", &[]);
    assert_eq!(h.t.active(), 2);
    assert_eq!(h.sink.opens().len(), 2);
    h.at(5_000).bye(&d, "b");
    h.at(8_000).bye(&d, "a");
    let r = h.records();
    assert_eq!(r.len(), 2);
    assert_ne!(r[0].id, r[1].id);
    assert_eq!(r[0].id, record_id(b"fork", b"fork-ft", b"b", 1));
    assert_eq!((r[0].duration_ms, r[1].duration_ms), (3_800, 7_000));
}

#[test]
fn repeated_answers_and_byes_are_counted_once() {
    let mut h = H::new();
    let d = Dlg::new("rtx");
    h.at(0).start(&d);
    h.at(1_000).answer(&d, "t", &[]);
    // 2xx retransmissions (the proxy relays every one), and a retransmitted ACK.
    h.at(1_500).answer(&d, "t", &[]);
    h.at(2_500).answer(&d, "t", &[]);
    assert_eq!(h.sink.opens().len(), 1);
    h.at(3_000).bye(&d, "t");
    // A late copy of the 2xx after the BYE, a second BYE, the callee's BYE too.
    h.at(3_100).answer(&d, "t", &[]);
    h.at(3_200).bye(&d, "t");
    h.req(Side::Microsoft, &d.callee_req("BYE", 1, "t", &[]));
    h.at(200_000);
    assert_eq!(h.records().len(), 1, "{:#?}", h.records());
    assert_eq!(h.record().duration_ms, 2_000);
    assert_eq!(h.sink.opens().len(), 1);
}

#[test]
fn a_replayed_sequence_gives_the_same_ids() {
    let run = || {
        let mut h = H::new();
        let d = Dlg::new("replay");
        h.at(7).start(&d);
        h.at(50)
            .resp(Side::Carrier, &d.resp(486, Some("busy"), "1 INVITE", &[]));
        let d2 = Dlg {
            call_id: "replay2".into(),
            ..d
        };
        h.at(60).start(&d2);
        h.at(70).answer(&d2, "x", &[]);
        h.at(80).bye(&d2, "x");
        h.records().into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a.len(), 2);
    assert_eq!(a, run());
    assert_eq!(a[0], record_id(b"replay", b"replay-ft", b"busy", 1));
}

#[test]
fn a_2xx_never_acknowledged_ends_with_nothing_billable() {
    let mut h = H::new();
    let d = Dlg::new("noack");
    h.at(0).start(&d);
    h.at(1_000)
        .resp(Side::Carrier, &d.resp(200, Some("t"), "1 INVITE", &[]));
    h.at(32_999);
    assert!(h.records().is_empty(), "not before 64·T1");
    h.at(33_000);
    let r = h.record();
    assert_eq!(r.end_reason, EndReason::NoAck);
    assert_eq!(
        (r.disposition, r.final_status),
        (Disposition::Answered, 200)
    );
    assert_eq!(r.answer_ms, Some(EPOCH + 1_000));
    assert_eq!((r.end_ms, r.duration_ms), (EPOCH + 1_000, 0));
    assert_eq!(h.t.active(), 0);
    // The callee's BYE that follows finds nothing to close.
    h.req(Side::Microsoft, &d.callee_req("BYE", 1, "t", &[]));
    assert_eq!(h.records().len(), 1);
}

#[test]
fn a_caller_request_stands_in_for_a_lost_ack() {
    let mut h = H::new();
    let d = Dlg::new("lostack");
    h.at(0).start(&d);
    h.at(1_000)
        .resp(Side::Carrier, &d.resp(200, Some("t"), "1 INVITE", &[]));
    h.at(2_000)
        .req(Side::Carrier, &d.caller_req("INFO", 2, "t", &[]));
    h.at(40_000).bye(&d, "t");
    let r = h.record();
    assert_eq!(
        (r.end_reason, r.duration_ms),
        (EndReason::CallerBye, 39_000)
    );
}
