//! Lossy and failing peers: UDP retransmissions in both directions, INVITE timeout, and
//! failover between SBCs on 503 and on timeout. T1 is 50 ms, so Timer B is 3.2 s.

mod support;

use std::time::{Duration, Instant};

use support::msg::{sdp, tag};
use support::{bounded, callee_uri, dest, ms, Gateway, Incoming, Leg, MsgExt, Spec, Ua};

/// T1 of the test configuration and 64·T1 (Timers B and F).
const T1: Duration = Duration::from_millis(50);
const TIMER_B: Duration = Duration::from_millis(64 * 50);

/// A gateway with the fake Microsoft proxy `msp` and the SBCs `sbcs` (priority in order),
/// UDP listeners: 0 Microsoft side, 1 carrier side.
async fn gateway(msp: &Ua, sbcs: &[&Ua]) -> Gateway {
    let sbcs = sbcs
        .iter()
        .enumerate()
        .map(|(i, s)| dest(&format!("sbc{}", i + 1), s.local, "udp", i as u32 + 1))
        .collect();
    Spec::new(
        vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
        sbcs,
    )
    .listen("microsoft", "udp", "127.0.0.1")
    .listen("carrier", "udp", "127.0.0.1")
    .start()
    .await
}

/// Collects the INVITEs `ua` receives within `d`, with their arrival times.
async fn invites_for(ua: &mut Ua, d: Duration) -> Vec<(Instant, Incoming)> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ua.recv_raw(left).await {
            Ok(m) if m.is_request() && m.method_name() == "INVITE" => out.push((Instant::now(), m)),
            Ok(m) if m.is_request() && m.method_name() == "OPTIONS" => {}
            Ok(m) => panic!("unexpected message:\n{}", m.dump()),
            Err(_) => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_invite_retransmission_is_absorbed() {
    bounded(async {
        let mut sbc = Ua::udp("127.0.0.1").await;
        let mut msp = Ua::udp("127.0.0.1").await;
        let gw = gateway(&msp, &[&sbc]).await;
        let l_c = gw.addr(1);

        let ruri = callee_uri("+14255550100", l_c);
        let mut call = Leg::caller("UDP", sbc.local, "+12065550100", &ruri);
        let invite = call.invite(&ruri);
        sbc.send(l_c, &invite).await;
        let inv = msp.expect_request("INVITE").await;
        // The callee's 100 stops the gateway's own retransmissions (Timer A).
        msp.reply(&inv, 100, None, None, None).await;
        sbc.expect_response(100).await;
        msp.expect_nothing(ms(150), "nothing after the callee's 100")
            .await;

        // The caller retransmits: the server transaction answers with its last provisional
        // and forwards nothing.
        for _ in 0..2 {
            sbc.send(l_c, &invite).await;
            let again = sbc
                .next_raw(support::WAIT)
                .await
                .expect("100 for the retransmission");
            assert_eq!(again.code(), 100, "{}", again.dump());
            assert_eq!(again.top_branch(), invite.branch());
        }
        let forwarded = invites_for(&mut msp, ms(500)).await;
        assert!(
            forwarded.is_empty(),
            "the retransmitted INVITE was forwarded {} more time(s)",
            forwarded.len()
        );

        // And the call still completes normally.
        let uas_tag = tag();
        let contact = format!("<sip:ms@{}>", msp.local);
        msp.reply(
            &inv,
            200,
            Some(&uas_tag),
            Some(&contact),
            Some(&sdp(msp.local)),
        )
        .await;
        let (_, ok) = sbc.expect_final().await;
        assert_eq!(ok.code(), 200);
        gw.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_invite_is_retransmitted_then_408() {
    bounded(async {
        let mut sbc = Ua::udp("127.0.0.1").await;
        let mut msp = Ua::udp("127.0.0.1").await;
        let gw = gateway(&msp, &[&sbc]).await;
        let l_c = gw.addr(1);

        let ruri = callee_uri("+14255550100", l_c);
        let mut call = Leg::caller("UDP", sbc.local, "+12065550100", &ruri);
        let sent = Instant::now();
        sbc.send(l_c, &call.invite(&ruri)).await;
        let (copies, answer) = tokio::join!(
            invites_for(&mut msp, TIMER_B + ms(800)),
            sbc.expect_final_within(TIMER_B * 2)
        );
        let (provisional, fin) = answer;
        let elapsed = sent.elapsed();

        // Timer A: the same request (one branch), at intervals doubling from T1.
        assert!(
            copies.len() >= 5,
            "only {} transmissions before Timer B",
            copies.len()
        );
        let branch = copies[0].1.top_branch();
        assert!(
            copies.iter().all(|(_, m)| m.top_branch() == branch),
            "a new branch: forwarded, not retransmitted"
        );
        let gaps: Vec<Duration> = copies.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(
            gaps[0] >= T1 * 8 / 10,
            "first retransmission after {:?}, T1 is {T1:?}",
            gaps[0]
        );
        for w in gaps.windows(2) {
            assert!(w[1] >= w[0] * 3 / 2, "intervals must double: {gaps:?}");
        }

        assert_eq!(provisional, vec![100]);
        assert!(
            elapsed >= TIMER_B * 9 / 10,
            "final answer after {elapsed:?}, before Timer B"
        );
        assert_eq!(
            fin.code(),
            408,
            "the only Microsoft target never answered: RFC 3261 §16.7 step 6 wants 408, got:\n{}",
            fin.dump()
        );
        sbc.send(l_c, &call.ack_non_2xx(&fin)).await;
        gw.stop().await;
    })
    .await;
}

/// Microsoft calls; SBC 1 refuses with `first_answer` (or never answers when `None`); the
/// call must land on SBC 2.
async fn failover(first_answer: Option<u16>) {
    let mut msp = Ua::udp("127.0.0.1").await;
    let mut sbc1 = Ua::udp("127.0.0.1").await;
    let mut sbc2 = Ua::udp("127.0.0.1").await;
    let gw = gateway(&msp, &[&sbc1, &sbc2]).await;
    let l_ms = gw.addr(0);

    let ruri = callee_uri("+12065550100", l_ms);
    let mut call = Leg::caller("UDP", msp.local, "+14255550100", &ruri);
    let started = Instant::now();
    msp.send(l_ms, &call.invite(&ruri)).await;
    let first = sbc1.expect_request("INVITE").await;
    if let Some(status) = first_answer {
        sbc1.reply(&first, status, Some(&tag()), None, None).await;
        let ack = sbc1.expect_request("ACK").await;
        assert_eq!(
            ack.top_branch(),
            first.top_branch(),
            "hop-by-hop ACK of the refusal"
        );
    }
    let second = sbc2.expect_request_within("INVITE", TIMER_B * 2).await;
    assert_ne!(
        second.top_branch(),
        first.top_branch(),
        "a new client transaction"
    );
    assert_eq!(second.ruri(), first.ruri());
    if first_answer.is_none() {
        assert!(
            started.elapsed() >= TIMER_B * 9 / 10,
            "failed over after {:?}, before Timer B",
            started.elapsed()
        );
    }
    let uas_tag = tag();
    let contact = format!("<sip:sbc2@{}>", sbc2.local);
    sbc2.reply(
        &second,
        200,
        Some(&uas_tag),
        Some(&contact),
        Some(&sdp(sbc2.local)),
    )
    .await;

    let (provisional, ok) = msp.expect_final().await;
    assert_eq!(provisional, vec![100], "the caller sees nothing of SBC 1");
    assert_eq!(ok.code(), 200, "{}", ok.dump());
    call.established(&ok);
    msp.send(l_ms, &call.ack_2xx()).await;
    let ack = sbc2.expect_request("ACK").await;
    assert_eq!(ack.ruri(), format!("sip:sbc2@{}", sbc2.local));
    // SBC 1 only ever saw its INVITE (and, without an answer, its retransmissions).
    let rest: Vec<_> = sbc1
        .raw_for(ms(200))
        .await
        .into_iter()
        .filter(|m| m.top_branch() != first.top_branch())
        .collect();
    assert!(
        rest.is_empty(),
        "SBC 1 got more: {:?}",
        rest.iter().map(|m| m.dump()).collect::<Vec<_>>()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_second_sbc_on_503() {
    bounded(failover(Some(503))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_second_sbc_on_408() {
    bounded(failover(Some(408))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_second_sbc_on_timeout() {
    bounded(failover(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_is_not_failed_over() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc1 = Ua::udp("127.0.0.1").await;
        let mut sbc2 = Ua::udp("127.0.0.1").await;
        let gw = gateway(&msp, &[&sbc1, &sbc2]).await;
        let l_ms = gw.addr(0);

        let ruri = callee_uri("+12065550100", l_ms);
        let mut call = Leg::caller("UDP", msp.local, "+14255550100", &ruri);
        msp.send(l_ms, &call.invite(&ruri)).await;
        let inv = sbc1.expect_request("INVITE").await;
        sbc1.reply(&inv, 486, Some(&tag()), None, None).await;
        let (_, busy) = msp.expect_final().await;
        assert_eq!(busy.code(), 486, "the callee's answer, not a failover");
        msp.send(l_ms, &call.ack_non_2xx(&busy)).await;
        sbc2.expect_nothing(ms(300), "486 is a real answer").await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sbcs_refusing_gives_503() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc1 = Ua::udp("127.0.0.1").await;
        let mut sbc2 = Ua::udp("127.0.0.1").await;
        let gw = gateway(&msp, &[&sbc1, &sbc2]).await;
        let l_ms = gw.addr(0);

        let ruri = callee_uri("+12065550100", l_ms);
        let mut call = Leg::caller("UDP", msp.local, "+14255550100", &ruri);
        msp.send(l_ms, &call.invite(&ruri)).await;
        for sbc in [&mut sbc1, &mut sbc2] {
            let inv = sbc.expect_request("INVITE").await;
            sbc.reply(&inv, 503, Some(&tag()), None, None).await;
            sbc.expect_request("ACK").await;
        }
        let (_, fin) = msp.expect_final().await;
        assert_eq!(fin.code(), 503, "no SBC left:\n{}", fin.dump());
        msp.send(l_ms, &call.ack_non_2xx(&fin)).await;
        gw.stop().await;
    })
    .await;
}
