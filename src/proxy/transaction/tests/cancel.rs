//! CANCEL (§9, §16.10), the bounded table, poll_timeout, and the absence of leaks.

use super::*;
use crate::proxy::transaction::{CancelStatus, ClientState, ResponseOutcome, ServerState, TxError};
use crate::sip::Method;

/// Microsoft's INVITE forwarded to the SBC: (server, client, forwarded INVITE).
fn proxied_invite(h: &mut Harness, n: u32, t: Transport) -> (ServerId, ClientId, Message) {
    let RequestOutcome::New(s) = h.on_request(&incoming("INVITE", n), ms(t)) else {
        panic!("not new");
    };
    let fwd = outgoing("INVITE", n);
    let c = h.forward(Some(s), fwd.clone(), sbc(t));
    (s, c, fwd)
}

/// The SBC's 487 to the cancelled INVITE `fwd`: forwarded upstream, and our hop-by-hop ACK
/// sent (returned).
fn terminated_and_acknowledged(
    h: &mut Harness,
    fwd: &Message,
    c: ClientId,
    s: ServerId,
) -> Message {
    let out = h.on_response(&response(fwd, 487, "sbc"));
    assert_eq!(
        out,
        ResponseOutcome::Forward {
            client: c,
            server: Some(s),
            status: 487
        }
    );
    let ack = h.sent.last().unwrap().msg.clone();
    assert_eq!(label(&ack), "ACK");
    ack
}

#[test]
fn cancel_of_a_proceeding_invite_is_answered_and_cancels_the_branches() {
    let mut h = Harness::new();
    let (s, c, fwd) = proxied_invite(&mut h, 1, Transport::Udp);
    assert_eq!(h.layer.branches(s), &[c]);
    h.advance_to(200);
    let ringing = response(&fwd, 180, "sbc");
    let out = h.on_response(&ringing);
    assert_eq!(
        out,
        ResponseOutcome::Forward {
            client: c,
            server: Some(s),
            status: 180
        }
    );

    h.advance_to(5_000);
    let cancel = incoming("CANCEL", 1);
    let RequestOutcome::Cancel { cancel: cs, invite } = h.on_request(&cancel, ms(Transport::Udp))
    else {
        panic!("not matched");
    };
    assert_eq!(invite, s);
    assert_eq!(
        h.events_of(TxId::Server(s)).last(),
        Some(&TxEvent::Cancelled)
    );
    let ok = &h.sent.last().unwrap().msg;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.cseq().unwrap().method, Method::Cancel);
    assert!(ok.to_hdr().unwrap().tag().is_some());
    // A retransmitted CANCEL gets the 200 again.
    assert_eq!(
        h.on_request(&cancel, ms(Transport::Udp)),
        RequestOutcome::Retransmission(cs)
    );
    assert_eq!(
        h.sends_since(5_000),
        vec![(5_000, "200".into()), (5_000, "200".into())]
    );

    // The proxy cancels its branch: §9.1 CANCEL with the INVITE's branch and CSeq number.
    assert_eq!(h.layer.cancel_branches(h.t(), s), 1);
    h.drain();
    let down = h.sent.last().unwrap().clone();
    assert_eq!(
        (down.to, label(&down.msg)),
        (sbc(Transport::Udp), "CANCEL".to_string())
    );
    let core = down.msg.core().unwrap();
    assert_eq!(core.via.branch(), Some(&b"z9hG4bKedge-1"[..]));
    assert_eq!((core.cseq.seq, core.cseq.method), (1, Method::Cancel));
    assert_eq!(core.to.tag(), None);
    assert_eq!(down.msg.request_uri_bytes(), fwd.request_uri_bytes());
    assert_eq!(
        h.layer.cancel_client(h.t(), c),
        Ok(CancelStatus::NotPending),
        "only once"
    );

    // 200 to our CANCEL is absorbed; the 487 is forwarded and acknowledged hop by hop.
    let cancel_ok = response(&down.msg, 200, "sbc");
    assert!(matches!(
        h.on_response(&cancel_ok),
        ResponseOutcome::Absorbed(_)
    ));
    terminated_and_acknowledged(&mut h, &fwd, c, s);
    h.respond(s, &incoming("INVITE", 1), 487);
    assert_eq!(h.layer.server_state(s), Some(ServerState::Completed));
    let ack = request("ACK", &[ms_via(1)], 1, Some("edge1"));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Udp)),
        RequestOutcome::AckAbsorbed(s)
    );
    h.run_out();
    assert!(h.timeouts.is_empty());
    h.assert_empty();
}

#[test]
fn cancel_after_the_final_gets_200_and_nothing_else() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let RequestOutcome::New(s) = h.on_request(&inv, ms(Transport::Udp)) else {
        panic!()
    };
    h.respond(s, &inv, 486);
    let out = h.on_request(&incoming("CANCEL", 1), ms(Transport::Udp));
    assert!(matches!(out, RequestOutcome::CancelAnswered { invite: Some(i), .. } if i == s));
    assert_eq!(h.sent.last().unwrap().msg.status(), Some(200));
    assert!(!h.events_of(TxId::Server(s)).contains(&TxEvent::Cancelled));
}

#[test]
fn cancel_without_an_invite_gets_481() {
    let mut h = Harness::new();
    for (n, t) in [(8, Transport::Udp), (9, Transport::Tls)] {
        let out = h.on_request(&incoming("CANCEL", n), ms(t));
        assert!(matches!(
            out,
            RequestOutcome::CancelAnswered { invite: None, .. }
        ));
        assert_eq!(h.sent.last().unwrap().msg.status(), Some(481));
    }
    // A CANCEL whose branch matches only a non-INVITE does not cancel it.
    h.on_request(&incoming("OPTIONS", 4), ms(Transport::Tls));
    let out = h.on_request(&incoming("CANCEL", 4), ms(Transport::Tls));
    assert!(matches!(
        out,
        RequestOutcome::CancelAnswered { invite: None, .. }
    ));
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut h = Harness::new();
    let (_, c, fwd) = proxied_invite(&mut h, 1, Transport::Udp);
    assert_eq!(h.layer.cancel_client(h.t(), c), Ok(CancelStatus::Deferred));
    assert_eq!(
        h.layer.cancel_client(h.t(), c),
        Ok(CancelStatus::NotPending)
    );
    h.drain();
    h.advance_to(700);
    assert!(h.sends_since(1).iter().all(|(_, l)| l != "CANCEL"));
    h.on_response(&response(&fwd, 100, "sbc"));
    assert_eq!(label(&h.sent.last().unwrap().msg), "CANCEL");
    assert_eq!(
        h.layer.len(),
        3,
        "server INVITE, client INVITE, client CANCEL"
    );
    assert_eq!(h.layer.client_state(c), Some(ClientState::Proceeding));
}

#[test]
fn the_table_is_bounded() {
    let config = LayerConfig {
        max_transactions: 2,
        ..LayerConfig::default()
    };
    let mut h = Harness::with(config);
    let (s, _, _) = proxied_invite(&mut h, 1, Transport::Tcp);
    let sent = h.sent.len();
    assert_eq!(
        h.on_request(&incoming("INVITE", 2), ms(Transport::Tcp)),
        RequestOutcome::Overloaded
    );
    assert_eq!(
        h.on_request(&incoming("CANCEL", 3), ms(Transport::Tcp)),
        RequestOutcome::Overloaded
    );
    let t = h.t();
    let more = h
        .layer
        .send_request(t, Some(s), outgoing("OPTIONS", 4), sbc(Transport::Tcp));
    assert_eq!(more, Err(TxError::Overloaded));
    h.drain();
    assert_eq!(
        (h.sent.len(), h.layer.len()),
        (sent, 2),
        "nothing sent or created"
    );
    // Retransmissions of live transactions are still matched.
    assert_eq!(
        h.on_request(&incoming("INVITE", 1), ms(Transport::Tcp)),
        RequestOutcome::Retransmission(s)
    );
    h.run_out();
    h.assert_empty();
    assert!(matches!(
        h.on_request(&incoming("INVITE", 2), ms(Transport::Tcp)),
        RequestOutcome::New(_)
    ));
}

/// A deterministic pseudo-random walk over every entry point, checking after each step
/// that `poll_timeout` is the minimum of every armed cell, that every live transaction has
/// its Timeout cell armed, and at the end that letting time run empties the layer.
#[test]
fn poll_timeout_is_the_earliest_deadline_and_nothing_leaks() {
    let mut seen = std::collections::HashSet::new();
    let mut expiries = std::collections::HashSet::new();
    for seed in 1..=40u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut h = Harness::new();
        let mut servers: Vec<(ServerId, u32)> = Vec::new();
        let mut clients: Vec<(ClientId, Message)> = Vec::new();
        for step in 0..300u32 {
            let t = if next(2) == 0 {
                Transport::Udp
            } else {
                Transport::Tcp
            };
            let n = next(12) as u32;
            let method = ["INVITE", "OPTIONS", "BYE"][next(3) as usize];
            match next(9) {
                0 => {
                    if let RequestOutcome::New(s) = h.on_request(&incoming(method, n), ms(t)) {
                        servers.push((s, n));
                    }
                }
                1 => {
                    let req = request(
                        method,
                        &[edge_via(1000 * seed as u32 + step), ms_via(n)],
                        1,
                        None,
                    );
                    let parent = servers
                        .get(next(servers.len() as u64 + 1) as usize)
                        .map(|p| p.0);
                    if let Ok(c) = h.layer.send_request(h.t(), parent, req.clone(), sbc(t)) {
                        clients.push((c, req));
                    }
                    h.drain();
                }
                2 | 3 if !clients.is_empty() => {
                    let (_, req) = &clients[next(clients.len() as u64) as usize];
                    let status = [100, 180, 200, 404, 487][next(5) as usize];
                    h.on_response(&response(req, status, "r"));
                }
                4 if !servers.is_empty() => {
                    let (s, n) = servers[next(servers.len() as u64) as usize];
                    let status = [180, 200, 486][next(3) as usize];
                    let req = incoming("INVITE", n);
                    let _ = h.layer.send_response(h.t(), s, bytes_of(&req), status);
                    h.drain();
                }
                5 => {
                    let ack = request("ACK", &[ms_via(n)], 1, Some("edge1"));
                    h.on_request(&ack, ms(t));
                    h.on_request(&incoming("CANCEL", n), ms(t));
                }
                6 if !clients.is_empty() => {
                    let (c, _) = clients[next(clients.len() as u64) as usize];
                    let _ = h.layer.cancel_client(h.t(), c);
                    h.drain();
                }
                _ => {
                    let to = h.now + next(40_000);
                    h.advance_to(to);
                }
            }
            check_deadlines(&h.layer);
        }
        h.run_out();
        h.assert_empty();
        // Every transaction ever created was terminated exactly once.
        let created = h
            .events
            .iter()
            .filter(|e| matches!(e.kind, TxEvent::Created { .. }))
            .count();
        let gone = h
            .events
            .iter()
            .filter(|e| e.kind == TxEvent::Terminated)
            .count();
        assert_eq!((created, h.terminated.len()), (gone, gone), "seed {seed}");
        seen.extend(h.events.iter().map(|e| std::mem::discriminant(&e.kind)));
        expiries.extend(h.events.iter().filter_map(|e| match e.kind {
            TxEvent::TimedOut(x) => Some(x),
            _ => None,
        }));
    }
    // The walk is only worth something if it reaches every kind of event and most expiries.
    assert_eq!(seen.len(), 6, "event kinds reached");
    for x in [
        Expiry::TimerB,
        Expiry::TimerF,
        Expiry::TimerH,
        Expiry::NoFinalResponse,
    ] {
        assert!(expiries.contains(&x), "{x:?} never reached");
    }
}

fn check_deadlines(layer: &TransactionLayer) {
    let cells = layer
        .servers
        .values()
        .map(|s| s.cells)
        .chain(layer.clients.values().map(|c| c.cells));
    let mut earliest = None;
    for [retransmit, timeout] in cells {
        assert!(
            timeout.is_some(),
            "a live transaction without a Timeout deadline"
        );
        for at in [retransmit, timeout].into_iter().flatten() {
            earliest = Some(earliest.map_or(at, |e: Millis| e.min(at)));
        }
    }
    assert_eq!(layer.poll_timeout(), earliest);
}

/// A request handed over as bytes (`send_built_request`, as the proxy forwards) is parsed
/// only to build what needs it: the CANCEL, and the ACK for a non-2xx final.
#[test]
fn a_request_sent_as_bytes_is_cancelled_and_acknowledged_like_a_parsed_one() {
    let mut h = Harness::new();
    let t = Transport::Udp;
    let RequestOutcome::New(s) = h.on_request(&incoming("INVITE", 1), ms(t)) else {
        panic!("not new");
    };
    let fwd = outgoing("INVITE", 1);
    let c = h
        .layer
        .send_built_request(
            h.t(),
            Some(s),
            bytes_of(&fwd),
            b"z9hG4bKedge-1",
            b"INVITE",
            sbc(t),
        )
        .unwrap();
    h.drain();
    assert_eq!(h.sent.last().unwrap().msg.as_bytes(), fwd.as_bytes());
    // Retransmitted as it was given.
    h.advance_to(500);
    assert_eq!(h.sends_since(500), vec![(500, "INVITE".into())]);
    assert_eq!(h.sent.last().unwrap().msg.as_bytes(), fwd.as_bytes());

    h.on_response(&response(&fwd, 180, "sbc"));
    assert_eq!(h.layer.cancel_branches(h.t(), s), 1);
    h.drain();
    let down = h.sent.last().unwrap().clone();
    let core = down.msg.core().unwrap();
    assert_eq!(label(&down.msg), "CANCEL");
    assert_eq!(core.via.branch(), Some(&b"z9hG4bKedge-1"[..]));
    assert_eq!((core.cseq.seq, core.cseq.method), (1, Method::Cancel));
    assert_eq!(down.msg.request_uri_bytes(), fwd.request_uri_bytes());

    let ack = terminated_and_acknowledged(&mut h, &fwd, c, s);
    assert_eq!(ack.top_via().unwrap().branch(), Some(&b"z9hG4bKedge-1"[..]));
    assert_eq!(ack.to_tag_param().unwrap(), Some(&b"sbc"[..]));
}

#[test]
fn send_built_request_refuses_ack_bad_branches_duplicates_and_unknown_servers() {
    let mut h = Harness::new();
    let (t, to) = (h.t(), sbc(Transport::Udp));
    let fwd = bytes_of(&outgoing("INVITE", 1));
    let send = |h: &mut Harness, server, branch: &[u8], method: &[u8]| {
        h.layer
            .send_built_request(t, server, fwd.clone(), branch, method, to)
    };
    assert_eq!(
        send(&mut h, None, b"z9hG4bKedge-1", b"ACK"),
        Err(TxError::NotATransaction)
    );
    assert_eq!(
        send(&mut h, None, b"1234", b"INVITE"),
        Err(TxError::BadBranch)
    );
    assert_eq!(
        send(&mut h, Some(ServerId(777)), b"z9hG4bKedge-1", b"INVITE"),
        Err(TxError::Unknown)
    );
    assert!(send(&mut h, None, b"z9hG4bKedge-1", b"INVITE").is_ok());
    assert_eq!(
        send(&mut h, None, b"z9hG4bKedge-1", b"INVITE"),
        Err(TxError::BadBranch),
        "the key is in use"
    );
    assert_eq!(h.layer.len(), 1);
}
