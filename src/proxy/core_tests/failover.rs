//! Destination choice and failover of new calls toward the carrier: priority order, retry
//! on 503, 408 and Timer B with a new branch, 503 upstream when no SBC is left, answers that
//! are relayed without retry, and Timer C.

use super::msg::{reply, to_tag, top_branch, val, vals, via, Call};
use super::net::{Net, GW_MS, MS, SBC1, SBC2, T64, TIMER_C};
use crate::config::Side;

/// A Microsoft → carrier call; returns the INVITE SBC1 received.
fn call_to_carrier(net: &mut Net, id: &str) -> crate::sip::Message {
    net.from(
        MS,
        Call::new(id, MS, &format!("sip:+12065550100@{GW_MS}")).msg(),
    );
    let out = net.take();
    assert_eq!(out.all(), [(MS, "100".into()), (SBC1, "INVITE".into())]);
    out.0[1].msg.clone()
}

#[test]
fn a_503_fails_over_to_the_next_sbc_with_a_new_branch() {
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "f1");
    net.from(SBC1, reply(&first, 503, "s1", SBC1));
    let out = net.take();
    assert_eq!(
        out.all(),
        [(SBC1, "ACK".into()), (SBC2, "INVITE".into())],
        "503 not relayed"
    );
    assert_eq!(top_branch(&out.0[0].msg), top_branch(&first));
    let second = &out.0[1].msg;
    assert_ne!(top_branch(second), top_branch(&first));
    assert_eq!(vals(second, "Via")[1], via(MS, "f1"));
    assert_eq!(val(second, "Max-Forwards").as_deref(), Some("69"));
    assert_eq!(
        vals(second, "Record-Route").len(),
        2,
        "one Record-Route pair, not two"
    );

    net.from(SBC2, reply(second, 200, "s2", SBC2));
    let out = net.take();
    assert_eq!(out.all(), [(MS, "200".into())]);
    assert_eq!(to_tag(&out.0[0].msg).as_deref(), Some("s2"));
    assert_eq!(net.proxy.stats().failovers, 1);
}

#[test]
fn a_100_from_the_sbc_is_not_relayed() {
    // We already sent our own 100 when the INVITE arrived; a 100 is hop by hop.
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "t100");
    net.from(SBC1, reply(&first, 100, "", SBC1));
    assert_eq!(net.take().all(), []);
    net.from(SBC1, reply(&first, 183, "s1", SBC1));
    assert_eq!(
        net.take().all(),
        [(MS, "183".into())],
        "other provisionals are relayed"
    );
}

#[test]
fn a_408_fails_over_like_a_503() {
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "f408");
    net.from(SBC1, reply(&first, 408, "s1", SBC1));
    assert_eq!(
        net.take().all(),
        [(SBC1, "ACK".into()), (SBC2, "INVITE".into())]
    );
}

#[test]
fn when_the_last_sbc_fails_its_answer_is_relayed() {
    // RFC 3261 §16.7 step 6 as core.rs documents it: with no destination left, the last
    // response goes upstream.
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "f2");
    net.from(SBC1, reply(&first, 503, "s1", SBC1));
    let second = net.take().one(SBC2, "INVITE").msg.clone();
    net.from(SBC2, reply(&second, 503, "s2", SBC2));
    let out = net.take();
    assert_eq!(out.all(), [(SBC2, "ACK".into()), (MS, "503".into())]);
    let unavailable = &out.0[1].msg;
    assert_eq!(vals(unavailable, "Via"), [via(MS, "f2")]);
    assert_eq!(to_tag(unavailable).as_deref(), Some("s2"));
    let s = net.proxy.stats();
    assert_eq!((s.failovers, s.no_destination), (1, 0));
}

#[test]
fn answers_other_than_408_and_503_are_relayed_without_retry() {
    for status in [404, 486, 500, 603] {
        let mut net = Net::new();
        let first = call_to_carrier(&mut net, &format!("r{status}"));
        net.from(SBC1, reply(&first, status, "s1", SBC1));
        let out = net.take();
        assert_eq!(out.all(), [(SBC1, "ACK".into()), (MS, status.to_string())]);
        assert_eq!(to_tag(&out.0[1].msg).as_deref(), Some("s1"), "relayed");
        assert_eq!(net.proxy.stats().failovers, 0);
    }
}

#[test]
fn timer_b_fails_over_then_the_caller_gets_408() {
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "tb");
    net.advance(2 * T64 + 100);
    let out = net.take();
    let at = |t, label: &str| -> Vec<u64> {
        out.to(t)
            .iter()
            .filter(|s| s.label() == label)
            .map(|s| s.at)
            .collect()
    };
    // Timer A retransmits at T1, 2T1, 4T1… until Timer B (64·T1) moves the call on.
    assert_eq!(at(SBC1, "INVITE"), [10, 30, 70, 150, 310, 630]);
    let b = T64;
    let second: Vec<u64> = [0, 10, 30, 70, 150, 310, 630]
        .iter()
        .map(|d| b + d)
        .collect();
    assert_eq!(at(SBC2, "INVITE"), second);
    assert_ne!(top_branch(&out.to(SBC2)[0].msg), top_branch(&first));
    // No SBC left after the second Timer B: 408 (issue 3 "408 on timeout"; core.rs
    // `forward_to_next`), retransmitted by Timer G until the caller's ACK.
    assert_eq!(at(MS, "408"), [1280, 1290, 1310, 1350]);
    assert_eq!(out.to(MS).len(), 4, "nothing else to the caller");
    let timeout = &out.to(MS)[0].msg;
    assert_eq!(vals(timeout, "Via"), [via(MS, "tb")]);
    assert!(to_tag(timeout).is_some());
    let s = net.proxy.stats();
    assert_eq!((s.failovers, s.no_destination), (1, 0));
}

#[test]
fn a_late_answer_from_a_timed_out_sbc_is_not_relayed() {
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "late");
    net.advance(T64);
    let second = net.take().to(SBC2)[0].msg.clone();
    // SBC1's transaction is gone: its 200 is a stray response, dropped.
    net.from(SBC1, reply(&first, 200, "s1", SBC1));
    assert!(net.take().is_empty());
    assert_eq!(net.proxy.stats().stray_responses, 1);
    net.from(SBC2, reply(&second, 200, "s2", SBC2));
    assert_eq!(net.take().all(), [(MS, "200".into())]);
}

#[test]
fn timer_c_cancels_a_ringing_branch_and_its_487_is_relayed() {
    let mut net = Net::new();
    let first = call_to_carrier(&mut net, "tc");
    net.from(SBC1, reply(&first, 180, "s1", SBC1));
    assert_eq!(net.take().all(), [(MS, "180".into())]);
    let ringing_at = net.now;
    net.advance(TIMER_C);
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "CANCEL".into())]);
    let cancel = &out.0[0];
    assert_eq!(cancel.at, ringing_at + TIMER_C);
    assert_eq!(top_branch(&cancel.msg), top_branch(&first));
    assert_eq!(val(&cancel.msg, "CSeq").as_deref(), Some("1 CANCEL"));
    net.from(SBC1, reply(&cancel.msg, 200, "s1", SBC1));
    assert!(net.take().is_empty(), "the CANCEL's 200 is ours");
    net.from(SBC1, reply(&first, 487, "s1", SBC1));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "ACK".into()), (MS, "487".into())]);
    assert_eq!(
        net.proxy.stats().failovers,
        0,
        "a ringing call is not moved elsewhere"
    );
}

#[test]
fn outputs_to_sbcs_leave_from_the_carrier_side() {
    let mut net = Net::new();
    call_to_carrier(&mut net, "side");
    net.advance(T64);
    let out = net.take();
    let to_sbcs: Vec<_> = out.to(SBC1).into_iter().chain(out.to(SBC2)).collect();
    assert_eq!(
        to_sbcs.len(),
        6 + 1,
        "six retransmissions, then the INVITE to SBC2"
    );
    for s in to_sbcs {
        assert_eq!(s.side, Some(Side::Carrier), "{} at {}", s.label(), s.at);
    }
}
