//! Destination health: call results and OPTIONS probes take an SBC down and bring it back,
//! and new calls follow (Kamailio dispatcher style, thresholds 2 and 2 here).

use std::collections::HashSet;

use super::msg::{reply, val, vals, Call};
use super::net::{Net, Spec, GW_CARRIER, GW_MS, MS, MS_NAME, SBC1, SBC2, T64};
use crate::config::Side;
use crate::proxy::dispatch::DestState;
use crate::proxy::route::BRANCH_PREFIX;
use crate::proxy::transaction::Millis;
use crate::transport::Target;

/// A Microsoft → carrier call; returns where its INVITE went.
fn new_call(net: &mut Net, id: &str) -> (Target, crate::sip::Message) {
    net.from(
        MS,
        Call::new(id, MS, &format!("sip:+12065550100@{GW_MS}")).msg(),
    );
    let out = net.take();
    assert_eq!(out.labels(MS), ["100"]);
    let inv = out
        .0
        .iter()
        .find(|s| s.label() == "INVITE")
        .expect("forwarded");
    (inv.to, inv.msg.clone())
}

#[test]
fn call_failures_take_an_sbc_down_and_new_calls_skip_it() {
    let mut net = Net::new();
    // A timeout counts as a failure...
    let (to, _) = new_call(&mut net, "h1");
    assert_eq!(to, SBC1);
    net.advance(T64);
    let inv = net.take().one(SBC2, "INVITE").msg.clone();
    net.from(SBC2, reply(&inv, 200, "s2", SBC2));
    assert_eq!(net.take().all(), [(MS, "200".into())]);
    assert_eq!(
        net.state(Side::Carrier, SBC1),
        DestState::Up,
        "threshold is 2"
    );
    // ...and so does a 503: the second one takes SBC1 down.
    let (to, inv) = new_call(&mut net, "h2");
    assert_eq!(to, SBC1);
    net.from(SBC1, reply(&inv, 503, "s1", SBC1));
    let inv = net.take().one(SBC2, "INVITE").msg.clone();
    net.from(SBC2, reply(&inv, 200, "s2", SBC2));
    assert_eq!(net.take().all(), [(MS, "200".into())]);
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Down);

    // New calls go straight to SBC2.
    let (to, inv) = new_call(&mut net, "h3");
    assert_eq!(to, SBC2);
    net.from(SBC2, reply(&inv, 503, "s2", SBC2));
    assert_eq!(net.take().all(), [(SBC2, "ACK".into()), (MS, "503".into())]);
    let (to, inv) = new_call(&mut net, "h4");
    assert_eq!(to, SBC2);
    net.from(SBC2, reply(&inv, 503, "s2", SBC2));
    net.take();
    assert_eq!(net.state(Side::Carrier, SBC2), DestState::Down);

    // Nothing is up: 503 at once, from us, nothing forwarded.
    net.from(
        MS,
        Call::new("h5", MS, &format!("sip:+12065550100@{GW_MS}")).msg(),
    );
    let out = net.take();
    assert_eq!(out.all(), [(MS, "100".into()), (MS, "503".into())]);
    assert_eq!(net.proxy.stats().no_destination, 1);
}

fn probing() -> Spec {
    let mut spec = Spec::default();
    spec.probe.enabled = true;
    spec
}

/// Runs to `until`, answering each new probe to a destination listed in `answers` with its
/// status as soon as it is sent. Returns `(time, destination)` of each new probe.
fn run_probes(net: &mut Net, until: u64, answers: &[(Target, u16)]) -> Vec<(u64, Target)> {
    let mut seen = HashSet::new();
    let mut probes = Vec::new();
    loop {
        for s in net.take().0 {
            assert_eq!(
                s.label(),
                "OPTIONS",
                "only probes expected, got {}",
                s.label()
            );
            if !seen.insert(val(&s.msg, "Call-ID")) {
                continue; // a retransmission
            }
            probes.push((s.at, s.to));
            if let Some((_, status)) = answers.iter().find(|(t, _)| *t == s.to) {
                net.from(s.to, reply(&s.msg, *status, "p", s.to));
            }
        }
        match net.proxy.poll_timeout() {
            Some(Millis(at)) if at <= until => net.advance_to(at),
            _ => break,
        }
    }
    net.advance_to(until);
    assert!(net.take().0.iter().all(|s| s.label() == "OPTIONS"));
    probes
}

#[test]
fn probes_go_out_once_per_interval_and_poll_timeout_includes_them() {
    let mut net = Net::with(probing());
    assert_eq!(
        net.proxy.poll_timeout(),
        Some(Millis(0)),
        "first probes due at start"
    );
    net.advance_to(0);
    let out = net.take();
    assert_eq!(
        out.all(),
        [(MS, "OPTIONS".into()), (SBC1, "OPTIONS".into())]
    );
    let ms = out.one(MS, "OPTIONS");
    assert_eq!(
        ms.msg.request_uri_bytes(),
        Some(format!("sip:{MS_NAME}").as_bytes())
    );
    assert_eq!(
        (ms.side, ms.tls_name.as_deref()),
        (Some(Side::Microsoft), Some(MS_NAME))
    );
    let sbc = &out.one(SBC1, "OPTIONS").msg;
    assert_eq!(
        sbc.request_uri_bytes(),
        Some(format!("sip:{}", SBC1.addr).as_bytes())
    );
    let v = vals(sbc, "Via");
    assert_eq!(v.len(), 1);
    assert!(v[0].starts_with(&format!("SIP/2.0/UDP {GW_CARRIER};branch={BRANCH_PREFIX}")));
    assert_eq!(val(sbc, "Max-Forwards").as_deref(), Some("70"));
    assert_eq!(val(sbc, "CSeq").as_deref(), Some("1 OPTIONS"));
    for s in &out.0 {
        net.from(s.to, reply(&s.msg, 200, "p", s.to));
    }
    assert!(net.take().is_empty(), "probe answers go nowhere");

    // Answered probes end after Timer K; then only probe deadlines are left: SBC2's first
    // one is half an interval in (staggered).
    net.advance_to(100);
    assert_eq!(net.proxy.transactions(), 0);
    assert_eq!(net.proxy.poll_timeout(), Some(Millis(500)));
    let all = [(MS, 200), (SBC1, 200), (SBC2, 200)];
    let probes = run_probes(&mut net, 2_600, &all);
    let times = |t| -> Vec<u64> { probes.iter().filter(|p| p.1 == t).map(|p| p.0).collect() };
    assert_eq!(times(MS), [1000, 2000]);
    assert_eq!(times(SBC1), [1000, 2000]);
    assert_eq!(times(SBC2), [500, 1500, 2500]);
    assert_eq!(net.proxy.stats().probes_sent, 9);
    net.advance_to(2_999);
    assert_eq!(net.proxy.transactions(), 0);
    assert_eq!(net.proxy.poll_timeout(), Some(Millis(3000)));
}

#[test]
fn probe_failures_take_an_sbc_down_and_successes_bring_it_back() {
    let mut net = Net::with(probing());
    // t=0: SBC1 answers 503 (a failure); at 1000 it does not answer (Timer F at 1640).
    let others = [(MS, 200), (SBC2, 200)];
    run_probes(&mut net, 0, &[(MS, 200), (SBC1, 503)]);
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Up);
    run_probes(&mut net, 1000 + T64 - 1, &others);
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Up);
    run_probes(&mut net, 1000 + T64, &others);
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Down);

    let (to, inv) = new_call(&mut net, "p1");
    assert_eq!(to, SBC2, "a down SBC gets no calls");
    net.from(SBC2, reply(&inv, 200, "s2", SBC2));
    assert_eq!(net.take().all(), [(MS, "200".into())]);

    // Down SBCs are still probed; two answered probes (2000, 3000) bring SBC1 back.
    let all = [(MS, 200), (SBC1, 200), (SBC2, 200)];
    let probes = run_probes(&mut net, 2_999, &all);
    assert!(probes.contains(&(2000, SBC1)));
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Down);
    run_probes(&mut net, 3_000, &all);
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Up);
    let (to, _) = new_call(&mut net, "p2");
    assert_eq!(to, SBC1);
}

#[test]
fn only_timeouts_408_and_503_count_against_an_sbc() {
    let mut net = Net::new();
    for id in ["x1", "x2"] {
        let (to, inv) = new_call(&mut net, id);
        assert_eq!(to, SBC1);
        net.from(SBC1, reply(&inv, 500, "s1", SBC1));
        assert_eq!(net.take().all(), [(SBC1, "ACK".into()), (MS, "500".into())]);
    }
    assert_eq!(net.state(Side::Carrier, SBC1), DestState::Up);
}
