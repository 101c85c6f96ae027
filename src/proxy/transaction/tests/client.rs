//! Client transactions: Timers A, B, C, D, E, F, K, M, the hop-by-hop ACK, matching.

use super::*;
use crate::proxy::transaction::{ClientState, ResponseOutcome, TxError};
use crate::sip::Method;

fn times(h: &Harness, label: &str) -> Vec<u64> {
    h.sends_since(0)
        .into_iter()
        .filter(|(_, l)| l == label)
        .map(|(t, _)| t)
        .collect()
}

#[test]
fn timer_a_doubles_without_cap_and_timer_b_is_reported_once() {
    let mut h = Harness::new();
    let c = h.forward(None, outgoing("INVITE", 1), sbc(Transport::Udp));
    assert_eq!(h.layer.client_state(c), Some(ClientState::Calling));
    assert_eq!(h.run_out(), 32_000);
    // §17.1.1.2: A = T1, 2T1, 4T1, ... (the cap at T2 is Timer E's and G's, not A's).
    assert_eq!(
        times(&h, "INVITE"),
        vec![0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    assert_eq!(h.timeouts, vec![(32_000, c, None, Expiry::TimerB)]);
    assert_eq!(h.terminated, vec![(32_000, TxId::Client(c))]);
    h.assert_empty();
}

#[test]
fn timer_e_doubles_up_to_t2_and_timer_f_is_reported_once() {
    let mut h = Harness::new();
    let c = h.forward(None, outgoing("OPTIONS", 1), sbc(Transport::Udp));
    assert_eq!(h.layer.client_state(c), Some(ClientState::Trying));
    assert_eq!(h.run_out(), 32_000);
    assert_eq!(
        times(&h, "OPTIONS"),
        vec![0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(h.timeouts, vec![(32_000, c, None, Expiry::TimerF)]);
    h.assert_empty();
}

#[test]
fn no_retransmissions_on_stream_transports() {
    for method in ["INVITE", "OPTIONS"] {
        let mut h = Harness::new();
        let c = h.forward(None, outgoing(method, 1), sbc(Transport::Tcp));
        assert_eq!(h.run_out(), 32_000);
        assert_eq!(times(&h, method), vec![0]);
        let expiry = if method == "INVITE" {
            Expiry::TimerB
        } else {
            Expiry::TimerF
        };
        assert_eq!(h.timeouts, vec![(32_000, c, None, expiry)]);
        h.assert_empty();
    }
}

#[test]
fn a_provisional_stops_timer_a_and_sets_timer_e_to_t2() {
    let mut h = Harness::new();
    let inv = outgoing("INVITE", 1);
    let c = h.forward(None, inv.clone(), sbc(Transport::Udp));
    h.advance_to(700);
    let out = h.on_response(&response(&inv, 100, "s1"));
    assert_eq!(
        out,
        ResponseOutcome::Forward {
            client: c,
            server: None,
            status: 100
        }
    );
    assert_eq!(h.layer.client_state(c), Some(ClientState::Proceeding));
    h.advance_to(60_000);
    assert_eq!(times(&h, "INVITE"), vec![0, 500]);
    assert!(h.timeouts.is_empty(), "no Timer B in Proceeding");

    let mut h = Harness::new();
    let opt = outgoing("OPTIONS", 2);
    let c = h.forward(None, opt.clone(), sbc(Transport::Udp));
    h.advance_to(600);
    h.on_response(&response(&opt, 100, "s1"));
    h.advance_to(20_000);
    // The E armed at 500 for 1500 still fires, then every T2.
    assert_eq!(
        times(&h, "OPTIONS"),
        vec![0, 500, 1_500, 5_500, 9_500, 13_500, 17_500]
    );
    h.on_response(&response(&opt, 200, "s1"));
    assert_eq!(h.layer.client_state(c), Some(ClientState::Completed));
    // Timer K = T4, then gone; no Timer F report.
    h.advance_to(25_000);
    assert_eq!(h.terminated, vec![(25_000, TxId::Client(c))]);
    assert!(h.timeouts.is_empty());
    h.assert_empty();
}

#[test]
fn a_non_2xx_final_gets_a_hop_by_hop_ack_from_the_original_invite() {
    let mut h = Harness::new();
    let inv = request("INVITE", &[edge_via(7), ms_via(7)], 31, None);
    let c = h.forward(None, inv.clone(), sbc(Transport::Udp));
    h.advance_to(100);
    let busy = response(&inv, 486, "sbc-tag");
    assert_eq!(
        h.on_response(&busy),
        ResponseOutcome::Forward {
            client: c,
            server: None,
            status: 486
        }
    );
    assert_eq!(h.layer.client_state(c), Some(ClientState::Completed));
    let ack = &h.sent.last().unwrap();
    assert_eq!((ack.at, ack.to), (100, sbc(Transport::Udp)));
    assert_eq!(ack.msg.method(), Some(Method::Ack));
    assert_eq!(ack.msg.request_uri_bytes(), inv.request_uri_bytes());
    let core = ack.msg.core().unwrap();
    assert_eq!(core.via_count, 1, "only our Via");
    assert_eq!(core.via.branch(), Some(&b"z9hG4bKedge-7"[..]));
    assert_eq!((core.cseq.seq, core.cseq.method), (31, Method::Ack));
    assert_eq!(core.to.tag(), Some(&b"sbc-tag"[..]));
    assert_eq!(core.from.tag(), Some(&b"ms1"[..]));

    // A retransmitted 486 is absorbed and acknowledged again.
    h.advance_to(2_000);
    assert_eq!(h.on_response(&busy), ResponseOutcome::Absorbed(c));
    assert_eq!(h.sends_since(2_000), vec![(2_000, "ACK".into())]);
    // No Timer A after the final; Timer D = 32 s.
    assert_eq!(h.run_out(), 32_100);
    assert_eq!(times(&h, "INVITE"), vec![0]);
    h.assert_empty();

    // Over TCP, D is zero.
    let c = h.forward(None, inv.clone(), sbc(Transport::Tcp));
    h.on_response(&busy);
    assert_eq!(h.terminated.last(), Some(&(32_100, TxId::Client(c))));
    assert_eq!(label(&h.sent.last().unwrap().msg), "ACK");
    h.assert_empty();
}

#[test]
fn a_2xx_moves_the_client_invite_to_accepted_and_forwards_retransmissions() {
    let mut h = Harness::new();
    let inv = outgoing("INVITE", 1);
    let c = h.forward(None, inv.clone(), sbc(Transport::Udp));
    let ok = response(&inv, 200, "s1");
    h.advance_to(50);
    let fwd = ResponseOutcome::Forward {
        client: c,
        server: None,
        status: 200,
    };
    assert_eq!(h.on_response(&ok), fwd);
    assert_eq!(h.layer.client_state(c), Some(ClientState::Accepted));
    h.advance_to(3_000);
    assert_eq!(
        h.on_response(&ok),
        fwd,
        "2xx retransmission forwarded (RFC 6026)"
    );
    assert_eq!(
        h.on_response(&response(&inv, 180, "s1")),
        ResponseOutcome::Absorbed(c)
    );
    assert_eq!(
        times(&h, "ACK"),
        Vec::<u64>::new(),
        "the ACK for a 2xx is end to end"
    );
    assert_eq!(times(&h, "INVITE"), vec![0]);
    let finals: Vec<_> = h
        .events_of(TxId::Client(c))
        .into_iter()
        .filter(|e| matches!(e, TxEvent::Final(_)))
        .collect();
    assert_eq!(finals, vec![TxEvent::Final(200)]);
    assert_eq!(h.run_out(), 32_050, "Timer M = 64*T1");
    h.assert_empty();
}

#[test]
fn responses_match_on_branch_and_cseq_method_only() {
    let mut h = Harness::new();
    let inv = outgoing("INVITE", 1);
    let c = h.forward(None, inv.clone(), sbc(Transport::Udp));
    let other_branch = response(&outgoing("INVITE", 2), 180, "s");
    assert_eq!(h.on_response(&other_branch), ResponseOutcome::Stray);
    let other_method = response(&outgoing("OPTIONS", 1), 200, "s");
    assert_eq!(h.on_response(&other_method), ResponseOutcome::Stray);
    let no_branch = parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.on_response(&no_branch), ResponseOutcome::Stray);
    assert!(matches!(h.on_response(&inv), ResponseOutcome::Invalid(_)));
    assert_eq!(h.layer.client_state(c), Some(ClientState::Calling));
}

#[test]
fn send_request_refuses_ack_bad_branches_and_unknown_servers() {
    let mut h = Harness::new();
    let t = h.t();
    let to = sbc(Transport::Udp);
    let ack = request("ACK", &[edge_via(1)], 1, Some("x"));
    assert_eq!(
        h.layer.send_request(t, None, ack, to),
        Err(TxError::NotATransaction)
    );
    let legacy = request("INVITE", &["SIP/2.0/UDP edge;branch=1234".into()], 1, None);
    assert_eq!(
        h.layer.send_request(t, None, legacy, to),
        Err(TxError::BadBranch)
    );
    h.forward(None, outgoing("INVITE", 1), to);
    let dup = outgoing("INVITE", 1);
    assert_eq!(
        h.layer.send_request(t, None, dup, to),
        Err(TxError::BadBranch)
    );
    let orphan = outgoing("INVITE", 2);
    assert_eq!(
        h.layer.send_request(t, Some(ServerId(777)), orphan, to),
        Err(TxError::Unknown)
    );
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn timer_c_cancels_a_ringing_branch_then_gives_up() {
    let mut h = Harness::new();
    let inv = outgoing("INVITE", 1);
    let c = h.forward(None, inv.clone(), sbc(Transport::Udp));
    h.advance_to(1_000);
    h.on_response(&response(&inv, 180, "s1"));
    h.advance_to(100_000);
    h.on_response(&response(&inv, 183, "s1")); // restarts Timer C
    h.on_response(&response(&inv, 100, "s1")); // 100 does not
    h.advance_to(281_000);
    assert_eq!(h.timeouts, vec![(281_000, c, None, Expiry::TimerC)]);
    let cancel = h.sent.last().unwrap();
    assert_eq!(label(&cancel.msg), "CANCEL");
    assert_eq!(
        cancel.msg.top_via().unwrap().branch(),
        Some(&b"z9hG4bKedge-1"[..])
    );
    // Nobody answers: the CANCEL dies of Timer F silently, the INVITE after 64*T1.
    h.run_out();
    assert_eq!(
        h.timeouts,
        vec![
            (281_000, c, None, Expiry::TimerC),
            (313_000, c, None, Expiry::CancelUnanswered)
        ]
    );
    h.assert_empty();
}
