//! Nothing leaks: after every kind of flow and enough simulated time, no transaction is
//! left, the only deadlines are OPTIONS probes, and every transaction the policy saw created
//! it also saw terminated.

use std::collections::HashSet;

use super::msg::{reply, val, Call, Req};
use super::net::{Net, Spec, GW_CARRIER, GW_MS, MS, REFUSED, SBC1, SBC2};
use crate::proxy::transaction::{Millis, TxEvent};

fn ms_call(id: &str) -> Call {
    Call::new(id, MS, &format!("sip:+12065550100@{GW_MS}"))
}

fn carrier_call(id: &str, number: &str) -> Call {
    Call::new(id, SBC1, &format!("sip:{number}@{GW_CARRIER}"))
}

#[test]
fn every_flow_ends_and_only_probe_deadlines_remain() {
    let mut spec = Spec::default();
    spec.probe.enabled = true;
    spec.probe.interval.0 = std::time::Duration::from_secs(10);
    let mut net = Net::with(spec);
    // The first probes (Microsoft target, SBC1) at t=0, answered.
    net.advance_to(0);
    for s in net.take().0 {
        net.from(s.to, reply(&s.msg, 200, "p", s.to));
    }

    // A completed call carrier → Microsoft, with ACK and BYE.
    let a = carrier_call("a", "+14255550100");
    net.from(SBC1, a.msg());
    let inv = net.take().one(MS, "INVITE").msg.clone();
    net.from(MS, reply(&inv, 200, "ma", MS));
    let ok = net.take().one(SBC1, "200").msg.clone();
    net.from(SBC1, a.in_dialog("ACK", 1, "a-ack", &ok).msg());
    net.from(SBC1, a.in_dialog("BYE", 2, "a-bye", &ok).msg());
    let bye = net.take().one(MS, "BYE").msg.clone();
    net.from(MS, reply(&bye, 200, "ma", MS));

    // Microsoft → carrier, failed over from SBC1 (503) to SBC2.
    let b = ms_call("b");
    net.from(MS, b.msg());
    let inv = net.take().one(SBC1, "INVITE").msg.clone();
    net.from(SBC1, reply(&inv, 503, "s1", SBC1));
    let inv = net.take().one(SBC2, "INVITE").msg.clone();
    net.from(SBC2, reply(&inv, 200, "s2", SBC2));
    let ok = net.take().one(MS, "200").msg.clone();
    net.from(MS, b.in_dialog("ACK", 1, "b-ack", &ok).msg());
    assert_eq!(net.take().labels(SBC2), ["ACK"]);

    // Microsoft → carrier, cancelled while ringing; the caller ACKs the 487.
    let c = ms_call("c");
    net.from(MS, c.msg());
    let inv = net.take().one(SBC1, "INVITE").msg.clone();
    net.from(SBC1, reply(&inv, 180, "s1", SBC1));
    net.from(MS, c.cancel());
    let cancel = net.take().one(SBC1, "CANCEL").msg.clone();
    net.from(SBC1, reply(&cancel, 200, "s1", SBC1));
    net.from(SBC1, reply(&inv, 487, "s1", SBC1));
    let terminated = net.take().one(MS, "487").msg.clone();
    let mut ack = c.invite.clone();
    ack.method = "ACK".into();
    ack.extra.clear();
    ack.to = val(&terminated, "To").unwrap();
    net.from(MS, ack.msg());

    // Refused by the policy, never ACKed (Timer H ends it).
    net.from(SBC1, carrier_call("d", REFUSED).msg());
    // OPTIONS to us; an in-dialog request with no route (404); one never answered (408).
    net.from(
        SBC2,
        Req::new("OPTIONS", &format!("sip:{GW_CARRIER}"), SBC2, "e").msg(),
    );
    let mut nowhere = Req::new("BYE", "sip:x@198.18.0.1", SBC1, "f");
    nowhere.to.push_str(";tag=t");
    net.from(SBC1, nowhere.msg());
    let mut lost = Req::new("BYE", &format!("sip:x@{}", MS.addr), SBC1, "g");
    lost.to.push_str(";tag=t");
    net.from(SBC1, lost.msg());
    // A call nobody answers: Timer B twice, then 408 the caller never ACKs.
    net.from(MS, ms_call("h").msg());
    net.take();
    assert!(net.proxy.transactions() > 0);

    // SBC2's first probe is at 5 s, half an interval in; everything else is over by then.
    net.advance_to(4_999);
    let out = net.take();
    assert_eq!(out.labels(MS).last().map(String::as_str), Some("408"));
    assert_eq!(net.proxy.transactions(), 0);
    assert_eq!(net.proxy.poll_timeout(), Some(Millis(5_000)));
    assert_eq!(net.proxy.poll_timeout(), net.next_probe());

    let seen = net.seen.lock().unwrap();
    let with = |k: fn(&TxEvent) -> bool| -> HashSet<_> {
        seen.events
            .iter()
            .filter(|e| k(&e.kind))
            .map(|e| e.tx)
            .collect()
    };
    let created = with(|k| matches!(k, TxEvent::Created { .. }));
    let ended = with(|k| matches!(k, TxEvent::Terminated));
    assert!(created.len() > 20, "{}", created.len());
    assert_eq!(created, ended);
}
