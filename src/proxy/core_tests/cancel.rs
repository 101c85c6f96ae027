//! CANCEL (RFC 3261 §9, §16.10) in every state of a proxied INVITE: unmatched, before any
//! response from the callee (deferred until the first provisional), after a provisional,
//! after the final response, and unanswered; and no new branch once a call is cancelled.

use bytes::Bytes;

use super::msg::{reply, to_tag, top_branch, val, vals, via, Call};
use super::net::{Net, Spec, GW_MS, MS, SBC1, SBC2, T64};
use crate::sip::{Limits, Message};

/// A Microsoft → carrier call; returns it and the INVITE SBC1 received.
fn ringing_call(net: &mut Net, id: &str) -> (Call, Message) {
    let call = Call::new(id, MS, &format!("sip:+12065550100@{GW_MS}"));
    net.from(MS, call.msg());
    let inv = net.take().one(SBC1, "INVITE").msg.clone();
    (call, inv)
}

/// Asserts the 200 for the caller's CANCEL and returns nothing else it produced.
fn assert_cancel_ok(net: &mut Net, call: &Call) -> super::net::Out {
    net.from(MS, call.cancel());
    let out = net.take();
    let ok = out.one(MS, "200");
    assert_eq!(val(&ok.msg, "CSeq").as_deref(), Some("1 CANCEL"));
    assert_eq!(vals(&ok.msg, "Via"), [via(MS, &call_branch(call))]);
    out
}

fn call_branch(call: &Call) -> String {
    top_branch(&call.msg())
        .trim_start_matches("z9hG4bK")
        .to_string()
}

/// The configured `[limits]`, not the defaults, bound what the proxy forwards and what it
/// parses again to build a CANCEL: an INVITE larger, and with more header lines, than the
/// defaults allow goes out, and so does its CANCEL.
#[test]
fn configured_limits_govern_a_large_invite_and_its_cancel() {
    let limits = Limits {
        max_message: 64 * 1024,
        max_head: 48 * 1024,
        max_headers: 300,
        ..Limits::DEFAULT
    };
    let mut net = Net::with(Spec {
        limits,
        ..Spec::default()
    });
    let mut call = Call::new("c-big", MS, &format!("sip:+12065550100@{GW_MS}"));
    for i in 0..200 {
        call.invite = call
            .invite
            .line(&format!("X-Filler-{i}: {}", "v".repeat(90)));
    }
    let text = Bytes::from(call.invite.text());
    assert!(text.len() > Limits::DEFAULT.max_message);
    assert!(Message::parse(text.clone(), &Limits::DEFAULT).is_err());
    net.from(MS, Message::parse(text, &limits).unwrap());
    let out = net.take();
    assert_eq!(
        out.labels(MS),
        ["100"],
        "no 500: the edit is within the limits"
    );
    let inv = out.one(SBC1, "INVITE").msg.clone();
    assert!(inv.as_bytes().len() > Limits::DEFAULT.max_message);

    net.from(SBC1, reply(&inv, 180, "t1", SBC1));
    net.take();
    net.from(MS, call.cancel());
    let out = net.take();
    assert_eq!(out.labels(SBC1), ["CANCEL"]);
    assert_eq!(top_branch(&out.to(SBC1)[0].msg), top_branch(&inv));
}

#[test]
fn cancel_without_a_matching_invite_gets_481() {
    let mut net = Net::new();
    let call = Call::new("early", MS, &format!("sip:+12065550100@{GW_MS}"));
    net.from(MS, call.cancel());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "481".into())]);
    assert_eq!(net.proxy.stats().forwarded_requests, 0);
}

#[test]
fn cancel_before_any_response_goes_out_after_the_first_provisional() {
    let mut net = Net::new();
    let (call, inv) = ringing_call(&mut net, "c-early");
    let out = assert_cancel_ok(&mut net, &call);
    assert!(
        out.to(SBC1).is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );

    net.from(SBC1, reply(&inv, 100, "", SBC1));
    let out = net.take();
    assert_eq!(out.labels(SBC1), ["CANCEL"]);
    let cancel = &out.to(SBC1)[0].msg;
    assert_eq!(top_branch(cancel), top_branch(&inv));
    assert_eq!(cancel.request_uri_bytes(), inv.request_uri_bytes());
    assert_eq!(val(cancel, "CSeq").as_deref(), Some("1 CANCEL"));

    net.from(SBC1, reply(cancel, 200, "s1", SBC1));
    assert!(net.take().is_empty());
    net.from(SBC1, reply(&inv, 487, "s1", SBC1));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "ACK".into()), (MS, "487".into())]);
    assert_eq!(to_tag(&out.0[1].msg).as_deref(), Some("s1"));
}

#[test]
fn cancel_after_ringing_goes_out_at_once_and_the_487_is_relayed() {
    let mut net = Net::new();
    let (call, inv) = ringing_call(&mut net, "c-ring");
    net.from(SBC1, reply(&inv, 180, "s1", SBC1));
    assert_eq!(net.take().all(), [(MS, "180".into())]);
    let out = assert_cancel_ok(&mut net, &call);
    assert_eq!(out.all(), [(MS, "200".into()), (SBC1, "CANCEL".into())]);
    net.from(SBC1, reply(&inv, 487, "s1", SBC1));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "ACK".into()), (MS, "487".into())]);
    // The caller's ACK for the 487 is absorbed here.
    let mut ack = call.invite.clone();
    ack.method = "ACK".into();
    ack.extra.clear();
    ack.to = val(&out.0[1].msg, "To").unwrap();
    net.from(MS, ack.msg());
    assert!(net.take().is_empty());
    assert_eq!(net.proxy.stats().failovers, 0);
}

#[test]
fn cancel_after_the_final_response_changes_nothing() {
    let mut net = Net::new();
    let (call, inv) = ringing_call(&mut net, "c-late");
    net.from(SBC1, reply(&inv, 200, "s1", SBC1));
    assert_eq!(net.take().all(), [(MS, "200".into())]);
    let out = assert_cancel_ok(&mut net, &call);
    assert_eq!(out.all(), [(MS, "200".into())], "nothing toward the callee");
}

#[test]
fn a_cancel_the_callee_never_answers_ends_with_our_487() {
    let mut net = Net::new();
    let (call, inv) = ringing_call(&mut net, "c-mute");
    net.from(SBC1, reply(&inv, 180, "s1", SBC1));
    net.take();
    let cancelled_at = net.now;
    assert_cancel_ok(&mut net, &call);
    net.advance(T64 + 10);
    let out = net.take();
    let to_caller = out.to(MS);
    assert_eq!(to_caller[0].label(), "487");
    assert_eq!(to_caller[0].at, cancelled_at + T64);
    assert!(to_tag(&to_caller[0].msg).is_some());
    assert!(out.to(SBC2).is_empty());
}

#[test]
fn a_cancelled_call_is_not_sent_to_another_sbc_after_timer_b() {
    // The CANCEL is deferred (SBC1 sent nothing yet), then SBC1 stays silent: Timer B must
    // end the call with 487, not start a new branch the caller can no longer cancel
    // (RFC 3261 §16.10: no new branches after a CANCEL).
    let mut net = Net::new();
    let (call, _) = ringing_call(&mut net, "c-tb");
    assert_cancel_ok(&mut net, &call);
    net.advance(T64 + 10);
    let out = net.take();
    assert!(out.to(SBC2).is_empty(), "{:?}", out.all());
    assert_eq!(out.labels(MS).first().map(String::as_str), Some("487"));
}

#[test]
fn a_cancelled_call_is_not_sent_to_another_sbc_after_a_503() {
    let mut net = Net::new();
    let (call, inv) = ringing_call(&mut net, "c-503");
    assert_cancel_ok(&mut net, &call);
    net.from(SBC1, reply(&inv, 503, "s1", SBC1));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "ACK".into()), (MS, "503".into())]);
}
