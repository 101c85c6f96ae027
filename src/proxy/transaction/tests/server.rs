//! Server transactions: 100 Trying, absorption, Timers G, H, I, J, L, the leak guard.

use super::*;
use crate::proxy::transaction::{ServerState, TxError};

fn new_id(o: RequestOutcome) -> ServerId {
    match o {
        RequestOutcome::New(id) => id,
        other => panic!("expected New, got {other:?}"),
    }
}

#[test]
fn invite_gets_100_at_once_and_retransmissions_get_the_last_provisional() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    assert_eq!(h.sends_since(0), vec![(0, "100".into())]);
    let trying = &h.sent[0];
    assert_eq!(trying.to, ms(Transport::Udp));
    assert_eq!(trying.msg.to_hdr().unwrap().tag(), None, "no To-tag on 100");
    assert_eq!(h.layer.server_state(id), Some(ServerState::Proceeding));

    h.advance_to(400);
    assert_eq!(
        h.on_request(&inv, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    h.respond(id, &inv, 180);
    h.advance_to(900);
    assert_eq!(
        h.on_request(&inv, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    assert_eq!(
        h.sends_since(0),
        vec![
            (0, "100".into()),
            (400, "100".into()),
            (400, "180".into()),
            (900, "180".into())
        ]
    );
    let tx = TxId::Server(id);
    assert_eq!(
        h.events_of(tx)[..2],
        [
            TxEvent::Created {
                method: crate::sip::Method::Invite,
                parent: None
            },
            TxEvent::Provisional(100)
        ]
    );
}

#[test]
fn non_2xx_final_is_retransmitted_by_timer_g_until_the_ack() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    h.respond(id, &inv, 486);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Completed));
    assert_eq!(h.layer.server_holds_response(id), Some(true));
    h.advance_to(12_000);
    // G: T1, then doubling capped at T2 = 4 s.
    let times: Vec<u64> = h.sends_since(1).iter().map(|s| s.0).collect();
    assert_eq!(times, vec![500, 1_500, 3_500, 7_500, 11_500]);
    // A retransmitted INVITE gets the final again.
    assert_eq!(
        h.on_request(&inv, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    assert_eq!(h.sends_since(12_000), vec![(12_000, "486".into())]);

    let ack = request("ACK", &[ms_via(1)], 1, Some("edge1"));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Udp)),
        RequestOutcome::AckAbsorbed(id)
    );
    assert_eq!(h.layer.server_state(id), Some(ServerState::Confirmed));
    // Confirmed never re-sends the final: it is not kept for Timer I's 5 s.
    assert_eq!(h.layer.server_holds_response(id), Some(false));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Udp)),
        RequestOutcome::AckAbsorbed(id)
    );
    h.advance_to(16_999);
    assert_eq!(h.sends_since(12_001), vec![], "no G after the ACK");
    assert_eq!(h.layer.server_state(id), Some(ServerState::Confirmed));
    // Timer I = T4 = 5 s after the ACK.
    h.advance_to(17_000);
    assert_eq!(h.terminated, vec![(17_000, TxId::Server(id))]);
    h.assert_empty();
}

#[test]
fn timer_h_gives_up_waiting_for_the_ack() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    h.respond(id, &inv, 503);
    let end = h.run_out();
    assert_eq!(end, 32_000);
    let g: Vec<u64> = h.sends_since(1).iter().map(|s| s.0).collect();
    assert_eq!(
        g,
        vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    let ev = h.events_of(TxId::Server(id));
    assert_eq!(
        ev[ev.len() - 2..],
        [TxEvent::TimedOut(Expiry::TimerH), TxEvent::Terminated]
    );
    h.assert_empty();
}

#[test]
fn reliable_transports_run_no_timer_g_and_end_on_the_ack() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Tls)));
    h.respond(id, &inv, 486);
    assert_eq!(h.layer.poll_timeout(), Some(Millis(32_000)), "only Timer H");
    let ack = request("ACK", &[ms_via(1)], 1, Some("edge1"));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Tls)),
        RequestOutcome::AckAbsorbed(id)
    );
    assert_eq!(h.terminated, vec![(0, TxId::Server(id))], "Timer I is 0");
    assert_eq!(h.sends_since(0).len(), 2, "100 and 486 only");
    h.assert_empty();
}

#[test]
fn a_2xx_moves_the_invite_to_accepted_rfc6026() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    h.respond(id, &inv, 180);
    assert_eq!(h.layer.server_holds_response(id), Some(true));
    h.respond(id, &inv, 200);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Accepted));
    // Neither the 2xx nor the 180 before it is kept for Timer L's 32 s: Accepted never
    // re-sends a response of its own.
    assert_eq!(h.layer.server_holds_response(id), Some(false));
    h.advance_to(1_000);
    // INVITE retransmissions are absorbed without a response; no 2xx retransmission of
    // our own; a 2xx from the UAS (or another fork) passes through.
    assert_eq!(
        h.on_request(&inv, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    h.respond(id, &inv, 200);
    assert_eq!(h.sends_since(1), vec![(1_000, "200".into())]);
    assert_eq!(h.layer.server_holds_response(id), Some(false));
    // The ACK for the 2xx has its own branch: no transaction, forwarded end to end.
    let ack = request("ACK", &[ms_via(99)], 1, Some("edge1"));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Udp)),
        RequestOutcome::AckPassThrough { server: None }
    );
    let same_branch = request("ACK", &[ms_via(1)], 1, Some("edge1"));
    assert_eq!(
        h.on_request(&same_branch, ms(Transport::Udp)),
        RequestOutcome::AckPassThrough { server: Some(id) }
    );
    // A non-2xx after the 2xx is refused.
    let busy = response(&inv, 486, "x").buf().clone();
    assert!(matches!(
        h.layer.send_response(h.t(), id, busy, 486),
        Err(TxError::WrongState {
            state: "Accepted",
            status: 486
        })
    ));
    // Timer L = 64*T1 after the first 2xx.
    h.advance_to(31_999);
    assert!(h.terminated.is_empty());
    h.advance_to(32_000);
    assert_eq!(h.terminated, vec![(32_000, TxId::Server(id))]);
    h.assert_empty();
}

#[test]
fn non_invite_trying_proceeding_completed_and_timer_j() {
    let mut h = Harness::new();
    let opt = incoming("OPTIONS", 2);
    let id = new_id(h.on_request(&opt, ms(Transport::Udp)));
    assert_eq!(h.layer.server_state(id), Some(ServerState::Trying));
    assert!(h.sent.is_empty(), "no 100 for non-INVITE");
    assert_eq!(
        h.on_request(&opt, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    assert!(h.sent.is_empty(), "Trying absorbs silently");
    h.respond(id, &opt, 200);
    assert_eq!(h.layer.server_state(id), Some(ServerState::Completed));
    h.advance_to(5_000);
    assert_eq!(
        h.on_request(&opt, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    assert_eq!(
        h.sends_since(0),
        vec![(0, "200".into()), (5_000, "200".into())]
    );
    assert!(matches!(
        h.layer.send_response(h.t(), id, bytes_of(&opt), 500),
        Err(TxError::WrongState { .. })
    ));
    assert_eq!(h.run_out(), 32_000, "Timer J = 64*T1 on UDP");
    h.assert_empty();

    // Over TCP, J is zero: the final ends the transaction.
    let id = new_id(h.on_request(&incoming("OPTIONS", 3), ms(Transport::Tcp)));
    h.respond(id, &opt, 200);
    assert_eq!(h.terminated.last(), Some(&(32_000, TxId::Server(id))));
    h.assert_empty();
}

#[test]
fn bad_calls_are_refused_without_effect() {
    let mut h = Harness::new();
    let inv = incoming("INVITE", 1);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    h.sent.clear();
    let b = bytes_of(&inv);
    assert_eq!(
        h.layer.send_response(h.t(), id, b.clone(), 99),
        Err(TxError::BadStatus(99))
    );
    assert_eq!(
        h.layer.send_response(h.t(), id, b.clone(), 700),
        Err(TxError::BadStatus(700))
    );
    let gone = ServerId(u64::MAX);
    assert_eq!(
        h.layer.send_response(h.t(), gone, b, 200),
        Err(TxError::Unknown)
    );
    h.drain();
    assert!(h.sent.is_empty());
    // A request without a Via cannot be matched.
    let no_via = parse(b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    assert!(matches!(
        h.on_request(&no_via, ms(Transport::Udp)),
        RequestOutcome::Invalid(_)
    ));
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn the_guard_removes_a_transaction_the_proxy_never_answers() {
    let mut h = Harness::new();
    let id = new_id(h.on_request(&incoming("INVITE", 1), ms(Transport::Udp)));
    let opt = new_id(h.on_request(&incoming("OPTIONS", 2), ms(Transport::Udp)));
    h.run_out();
    let guard = |id| {
        h.events_of(TxId::Server(id))
            .contains(&TxEvent::TimedOut(Expiry::NoFinalResponse))
    };
    assert!(guard(id) && guard(opt));
    // Non-INVITE: 2 * 64*T1; INVITE: Timer C (181 s) + 2 * 64*T1.
    assert_eq!(
        h.terminated,
        vec![(64_000, TxId::Server(opt)), (245_000, TxId::Server(id))]
    );
    h.assert_empty();
}

#[test]
fn rfc2543_invite_without_cookie_is_matched_by_the_legacy_key() {
    let mut h = Harness::new();
    let via = "SIP/2.0/UDP 192.0.2.4:5060;branch=old-style".to_string();
    let inv = request("INVITE", std::slice::from_ref(&via), 5, None);
    let id = new_id(h.on_request(&inv, ms(Transport::Udp)));
    assert_eq!(
        h.on_request(&inv, ms(Transport::Udp)),
        RequestOutcome::Retransmission(id)
    );
    h.respond(id, &inv, 404);
    let ack = request("ACK", std::slice::from_ref(&via), 5, Some("edge1"));
    assert_eq!(
        h.on_request(&ack, ms(Transport::Udp)),
        RequestOutcome::AckAbsorbed(id)
    );
    // §9.2 legacy CANCEL matching: same fields, CSeq number included.
    let next = new_id(h.on_request(
        &request("INVITE", std::slice::from_ref(&via), 6, None),
        ms(Transport::Udp),
    ));
    let other = request("CANCEL", std::slice::from_ref(&via), 7, None);
    assert!(matches!(
        h.on_request(&other, ms(Transport::Udp)),
        RequestOutcome::CancelAnswered { invite: None, .. }
    ));
    let cancel = request("CANCEL", &[via], 6, None);
    assert!(matches!(
        h.on_request(&cancel, ms(Transport::Udp)),
        RequestOutcome::Cancel { invite, .. } if invite == next
    ));
}
