//! What stands between a request and forwarding: the source ACL, the stateless first look,
//! loop detection, flood control, the transaction table bound, and the policy.

use super::msg::{reply, to_tag, val, vals, via, Call, Req};
use super::net::{
    Net, Spec, CARRIER_HOST, GW_CARRIER, GW_MS, L_CARRIER, L_MS, MS, REFUSED, REFUSED_STATUS, SBC1,
    STRANGER,
};
use crate::config::Side;

fn invite_to_ms(id: &str, from: crate::transport::Target) -> Call {
    Call::new(id, from, &format!("sip:+14255550100@{GW_CARRIER}"))
}

#[test]
fn sources_outside_the_acl_are_dropped_unanswered() {
    let mut net = Net::new();
    net.deliver(L_CARRIER, STRANGER, invite_to_ms("acl1", STRANGER).msg());
    // An SBC is no Microsoft peer: on the Microsoft listener it is outside the ACL too.
    net.deliver(L_MS, SBC1, invite_to_ms("acl2", SBC1).msg());
    net.deliver_bytes(
        L_CARRIER,
        STRANGER,
        b"INVITE sip:x@y SIP/2.0\r\nbroken\r\n\r\n",
    );
    assert!(net.take().is_empty());
    assert_eq!(net.proxy.stats().acl_dropped, 3);
    assert_eq!(net.proxy.transactions(), 0);
    assert!(net.seen.lock().unwrap().checks.is_empty());
    assert_eq!(net.proxy.poll_timeout(), None, "no state, no timer");
}

#[test]
fn the_first_look_answers_statelessly() {
    let mut net = Net::new();
    let mut hops = invite_to_ms("mf0", SBC1).invite;
    hops.max_forwards = 0;
    net.from(SBC1, hops.msg());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "483".into())]);
    assert_eq!(out.0[0].side, Some(Side::Carrier));
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "mf0")]);

    let ext = invite_to_ms("ext", SBC1).invite.line("Proxy-Require: foo");
    net.from(SBC1, ext.msg());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "420".into())]);
    assert_eq!(val(&out.0[0].msg, "Unsupported").as_deref(), Some("foo"));

    // Unparsable (a header line without a colon): answered 400 through handle_unparsed.
    let text = invite_to_ms("bad", SBC1).invite.text();
    let broken = text.replace("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nno colon here\r\n");
    net.deliver_bytes(L_CARRIER, SBC1, broken.as_bytes());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "400".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "bad")]);
    assert!(to_tag(&out.0[0].msg).is_some());
    // Unreadable: dropped.
    net.deliver_bytes(L_CARRIER, SBC1, b"\x16\x03\x01garbage");
    assert!(net.take().is_empty());

    let s = net.proxy.stats();
    assert_eq!((s.rejected_invalid, s.dropped_invalid), (3, 1));
    assert_eq!((s.forwarded_requests, net.proxy.transactions()), (0, 0));
}

#[test]
fn a_request_carrying_our_own_via_is_a_loop() {
    let mut net = Net::new();
    let mut looped = Call::new("loop", MS, &format!("sip:+12065550100@{GW_MS}")).invite;
    looped.vias.push(format!(
        "SIP/2.0/UDP {GW_CARRIER};branch=z9hG4bKoc0.99;rport"
    ));
    net.from(MS, looped.msg());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "482".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via").len(), 2, "every Via copied");
    assert_eq!(net.proxy.stats().loops, 1);
    assert_eq!(net.proxy.transactions(), 0);
}

#[test]
fn a_flooding_source_gets_one_503_then_silence_until_its_bucket_refills() {
    let mut net = Net::new();
    let ping = |n: u32| {
        Req::new(
            "OPTIONS",
            &format!("sip:{GW_CARRIER}"),
            CARRIER_HOST,
            &format!("fl{n}"),
        )
    };
    for n in 0..3 {
        net.from(CARRIER_HOST, ping(n).msg());
    }
    assert_eq!(
        net.take().labels(CARRIER_HOST),
        ["200", "200", "200"],
        "burst of 3"
    );
    net.from(CARRIER_HOST, ping(3).msg());
    let out = net.take();
    assert_eq!(out.all(), [(CARRIER_HOST, "503".into())]);
    assert_eq!(val(&out.0[0].msg, "Retry-After").as_deref(), Some("7"));
    for n in 4..6 {
        net.from(CARRIER_HOST, ping(n).msg());
    }
    assert!(net.take().is_empty());

    // In-dialog requests are not limited.
    let mut bye = Req::new("BYE", &format!("sip:u@{}", MS.addr), CARRIER_HOST, "fl-bye");
    bye.to.push_str(";tag=far");
    net.from(CARRIER_HOST, bye.msg());
    assert_eq!(net.take().all(), [(MS, "BYE".into())]);
    // Peers have their own, larger bucket.
    for n in 0..10 {
        net.from(
            SBC1,
            Req::new(
                "OPTIONS",
                &format!("sip:{GW_CARRIER}"),
                SBC1,
                &format!("p{n}"),
            )
            .msg(),
        );
    }
    assert_eq!(net.take().labels(SBC1).len(), 10);

    let s = net.proxy.stats();
    assert_eq!((s.flood_rejected, s.flood_dropped), (1, 2));
    // One token per second: allowed again a second later.
    net.advance(1000);
    net.take();
    net.from(CARRIER_HOST, ping(6).msg());
    assert_eq!(net.take().labels(CARRIER_HOST), ["200"]);
}

#[test]
fn a_full_transaction_table_answers_503() {
    let mut net = Net::with(Spec {
        max_transactions: 3,
        ..Spec::default()
    });
    net.from(SBC1, invite_to_ms("o1", SBC1).msg());
    assert_eq!(net.take().labels(MS), ["INVITE"]);
    assert_eq!(net.proxy.transactions(), 2, "server and client");
    // Room for the server transaction only: answered 503 on it, after the 100.
    net.from(SBC1, invite_to_ms("o2", SBC1).msg());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "100".into()), (SBC1, "503".into())]);
    assert_eq!(vals(&out.0[1].msg, "Via"), [via(SBC1, "o2")]);
    // No room at all: a stateless 503.
    net.from(SBC1, invite_to_ms("o3", SBC1).msg());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "503".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "o3")]);
    assert_eq!(net.proxy.stats().overloaded, 2);
    assert_eq!(net.proxy.stats().forwarded_requests, 1);
}

#[test]
fn the_policy_refuses_with_its_status() {
    let mut net = Net::new();
    let ruri = format!("sip:{REFUSED}@{GW_CARRIER}");
    net.from(SBC1, Call::new("pol", SBC1, &ruri).msg());
    let out = net.take();
    assert_eq!(
        out.all(),
        [(SBC1, "100".into()), (SBC1, REFUSED_STATUS.to_string())]
    );
    assert!(to_tag(&out.0[1].msg).is_some());
    assert_eq!(net.seen.lock().unwrap().checks, [(Side::Carrier, ruri)]);
    let s = net.proxy.stats();
    assert_eq!((s.policy_rejected, s.forwarded_requests), (1, 0));
}

#[test]
fn the_policy_observes_every_transaction_event() {
    use crate::proxy::transaction::{TxEvent, TxId};
    use crate::sip::Method;

    let mut net = Net::new();
    let call = invite_to_ms("ev", SBC1);
    net.from(SBC1, call.msg());
    let inv = net.take().one(MS, "INVITE").msg.clone();
    net.from(MS, reply(&inv, 180, "m", MS));
    net.from(MS, reply(&inv, 200, "m", MS));
    net.advance(10_000);
    let seen = net.seen.lock().unwrap();
    let kinds = |server: bool| -> Vec<TxEvent> {
        seen.events
            .iter()
            .filter(|e| matches!(e.tx, TxId::Server(_)) == server)
            .map(|e| e.kind)
            .collect()
    };
    let server = seen.events.iter().find_map(|e| match e.tx {
        TxId::Server(s) => Some(s),
        TxId::Client(_) => None,
    });
    let created = |parent| TxEvent::Created {
        method: Method::Invite,
        parent,
    };
    assert_eq!(
        kinds(true),
        [
            created(None),
            TxEvent::Provisional(100),
            TxEvent::Provisional(180),
            TxEvent::Final(200),
            TxEvent::Terminated
        ]
    );
    assert_eq!(
        kinds(false),
        [
            created(server),
            TxEvent::Provisional(180),
            TxEvent::Final(200),
            TxEvent::Terminated
        ]
    );
}

/// Collects the RFC 6035 reports the proxy accepts.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<(String, bytes::Bytes)>>);

impl crate::proxy::policy::QualityIntake for Reports {
    fn report(&self, sbc: &str, body: bytes::Bytes) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((sbc.to_owned(), body));
    }
}

fn vq_publish(id: &str, from: crate::transport::Target) -> crate::sip::Message {
    Req::new("PUBLISH", &format!("sip:collector@{GW_CARRIER}"), from, id)
        .line("Event: vq-rtcpxr")
        .msg()
}

#[test]
fn quality_reports_are_taken_from_sbcs_only_and_refused_when_quality_is_off() {
    let reports = std::sync::Arc::new(Reports::default());
    let mut net = Net::with(Spec {
        quality: Some(reports.clone()),
        ..Spec::default()
    });
    net.deliver(L_CARRIER, SBC1, vq_publish("vq1", SBC1));
    assert_eq!(net.take().all(), [(SBC1, "200".into())]);
    let got = reports.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "sbc1");
    // From an address that is no SBC (but inside the ACL): refused.
    let other = crate::transport::Target {
        addr: "192.0.2.99:5060".parse().unwrap(),
        ..SBC1
    };
    net.deliver(L_CARRIER, other, vq_publish("vq2", other));
    assert_eq!(net.take().all(), [(other, "403".into())]);
    assert_eq!(reports.0.lock().unwrap().len(), 1);

    // `[quality] enabled = false`: nobody's reports are taken.
    let mut net = Net::new();
    net.deliver(L_CARRIER, SBC1, vq_publish("vq3", SBC1));
    assert_eq!(net.take().all(), [(SBC1, "403".into())]);
    assert_eq!(
        (
            net.proxy.stats().quality_refused,
            net.proxy.stats().quality_reports
        ),
        (1, 0)
    );
}
