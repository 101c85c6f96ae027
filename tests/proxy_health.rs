//! OPTIONS: the gateway's health probes of the SBCs (down after `failure_threshold`
//! unanswered probes, back after `success_threshold` answered ones) and its answer to OPTIONS
//! addressed to it. T1 is 20 ms here, so an unanswered probe fails after 64·T1 = 1.28 s.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::gateway::Probe;
use support::msg::{options, tag};
use support::{bounded, callee_uri, dest, ms, Gateway, Leg, MsgExt, Spec, Ua};

const TIMER_F: Duration = Duration::from_millis(64 * 20);

/// Microsoft target `msp`, SBCs in priority order, carrier probes every 150 ms.
async fn gateway(msp: &Ua, sbcs: &[&Ua], failure_threshold: u32) -> Gateway {
    let sbcs = sbcs
        .iter()
        .enumerate()
        .map(|(i, s)| dest(&format!("sbc{}", i + 1), s.local, "udp", i as u32 + 1))
        .collect();
    let mut spec = Spec::new(
        vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
        sbcs,
    )
    .listen("microsoft", "udp", "127.0.0.1")
    .listen("carrier", "udp", "127.0.0.1");
    spec.timers = ["20ms", "200ms", "200ms", "30s"];
    spec.carrier_probe = Probe {
        interval: "150ms".into(),
        failure_threshold,
        success_threshold: 2,
    };
    spec.start().await
}

/// Distinct probes (by branch) `ua` has seen.
fn probes(ua: &Ua) -> HashSet<String> {
    ua.options_seen.iter().map(|m| m.top_branch()).collect()
}

/// Lets the SBCs handle probes for `d`; no other message may reach them.
async fn idle(a: &mut Ua, b: &mut Ua, d: Duration) {
    tokio::join!(a.expect_nothing(d, "idle"), b.expect_nothing(d, "idle"));
}

/// Microsoft calls; `to` must get the INVITE and answer 486; `other` must see nothing.
async fn call_lands_on(msp: &mut Ua, l_ms: std::net::SocketAddr, to: &mut Ua, other: &mut Ua) {
    let ruri = callee_uri("+12065550100", l_ms);
    let mut call = Leg::caller("UDP", msp.local, "+14255550100", &ruri);
    msp.send(l_ms, &call.invite(&ruri)).await;
    let ((), ()) = tokio::join!(
        other.expect_nothing(ms(400), "the call goes to the other SBC"),
        async {
            let inv = to.expect_request("INVITE").await;
            to.reply(&inv, 486, Some(&tag()), None, None).await;
            to.expect_request("ACK").await;
        }
    );
    let (_, busy) = msp.expect_final().await;
    assert_eq!(busy.code(), 486);
    msp.send(l_ms, &call.ack_non_2xx(&busy)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_probes_take_an_sbc_down_and_answered_ones_bring_it_back() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc1 = Ua::udp("127.0.0.1").await;
        let mut sbc2 = Ua::udp("127.0.0.1").await;
        sbc1.answer_options = false;
        let gw = gateway(&msp, &[&sbc1, &sbc2], 2).await;
        let l_ms = gw.addr(0);

        // Two probes must go unanswered and time out (Timer F) before SBC 1 is down.
        idle(&mut sbc1, &mut sbc2, ms(300)).await;
        assert!(probes(&sbc1).len() >= 2, "SBC 1 is probed every 150 ms");
        assert!(probes(&sbc2).len() >= 2, "SBC 2 is probed every 150 ms");
        idle(&mut sbc1, &mut sbc2, TIMER_F + ms(300)).await;

        // New calls go straight to SBC 2: SBC 1 is not even tried.
        call_lands_on(&mut msp, l_ms, &mut sbc2, &mut sbc1).await;
        call_lands_on(&mut msp, l_ms, &mut sbc2, &mut sbc1).await;

        // SBC 1 answers again: two answered probes bring it back, and it gets calls again.
        let before = probes(&sbc1).len();
        sbc1.answer_options = true;
        idle(&mut sbc1, &mut sbc2, ms(500)).await;
        assert!(probes(&sbc1).len() >= before + 2, "still probed while down");
        call_lands_on(&mut msp, l_ms, &mut sbc1, &mut sbc2).await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sbcs_down_answers_503_without_trying() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc1 = Ua::udp("127.0.0.1").await;
        let mut sbc2 = Ua::udp("127.0.0.1").await;
        sbc1.answer_options = false;
        sbc2.answer_options = false;
        let gw = gateway(&msp, &[&sbc1, &sbc2], 1).await;
        let l_ms = gw.addr(0);
        idle(&mut sbc1, &mut sbc2, TIMER_F + ms(500)).await;

        let ruri = callee_uri("+12065550100", l_ms);
        let mut call = Leg::caller("UDP", msp.local, "+14255550100", &ruri);
        msp.send(l_ms, &call.invite(&ruri)).await;
        let (_, fin) = msp.expect_final().await;
        assert_eq!(fin.code(), 503, "{}", fin.dump());
        msp.send(l_ms, &call.ack_non_2xx(&fin)).await;
        idle(&mut sbc1, &mut sbc2, ms(200)).await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_to_the_gateway_is_answered_and_other_options_are_forwarded() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc = Ua::udp("127.0.0.1").await;
        let gw = gateway(&msp, &[&sbc], 3).await;
        let l_ms = gw.addr(0);

        // Microsoft's keep-alive: OPTIONS to our address, no user part.
        let ping = options("UDP", msp.local, &format!("sip:{l_ms}"));
        msp.send(l_ms, &ping).await;
        let ok = msp.expect_response(200).await;
        assert_eq!(ok.top_branch(), ping.branch());
        let allow = ok.h("Allow").unwrap_or_default();
        for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"] {
            assert!(allow.contains(m), "Allow {allow:?} lacks {m}");
        }
        let seen = sbc.options_seen.len();
        sbc.expect_nothing(ms(200), "answered by the gateway").await;
        assert!(
            sbc.options_seen
                .iter()
                .skip(seen)
                .all(|o| o.ruri() != ping.uri),
            "OPTIONS to us was forwarded"
        );

        // An OPTIONS for a number is not for us: it goes to the SBC, which answers.
        let uri = callee_uri("+12065550100", l_ms);
        let fwd = options("UDP", msp.local, &uri);
        msp.send(l_ms, &fwd).await;
        let (ok, ()) = tokio::join!(
            msp.expect_response(200),
            sbc.expect_nothing(ms(300), "only OPTIONS")
        );
        assert!(
            ok.to_tag().unwrap_or_default().starts_with("opt"),
            "answered by the SBC:\n{}",
            ok.dump()
        );
        assert!(
            sbc.options_seen.iter().any(|o| o.ruri() == uri),
            "forwarded to the SBC"
        );
        gw.stop().await;
    })
    .await;
}
