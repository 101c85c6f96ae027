//! What the gateway refuses before any routing: sources outside a side's ACL (dropped,
//! never answered), per-source floods (one 503 with Retry-After, then silence), and the
//! stateless first look (483, 400, 482). Also: a UDP response leaves from the listener the
//! request arrived on (RFC 3581 symmetric response), whoever sent it.

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use support::msg::{branch, options};
use support::{bounded, callee_uri, dest, ms, Leg, MsgExt, Spec, Ua};

/// OPTIONS to the gateway at `to`.
fn ping(ua: &Ua, to: SocketAddr) -> support::Request {
    options("UDP", ua.local, &format!("sip:{to}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_drops_requests_from_outside_sources_silently() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc = Ua::udp("127.0.0.2").await;
        let mut outsider = Ua::udp("127.0.0.1").await;
        let mut spec = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1");
        spec.carrier_acl = vec!["127.0.0.2/32".into()];
        let gw = spec.start().await;
        let (l_ms, l_c) = (gw.addr(0), gw.addr(1));

        // From 127.0.0.1 to the carrier side: neither OPTIONS nor INVITE gets any answer,
        // and nothing is forwarded.
        outsider.send(l_c, &ping(&outsider, l_c)).await;
        let ruri = callee_uri("+14255550100", l_c);
        let mut call = Leg::caller("UDP", outsider.local, "+12065550100", &ruri);
        outsider.send(l_c, &call.invite(&ruri)).await;
        let (_, ()) = tokio::join!(
            outsider.expect_nothing(ms(700), "source outside carrier.acl"),
            msp.expect_nothing(ms(700), "nothing forwarded")
        );

        // The allowed source is answered on the same listener, and the same outsider is
        // answered on the Microsoft side, whose ACL admits it.
        sbc.send(l_c, &ping(&sbc, l_c)).await;
        sbc.expect_response(200).await;
        outsider.send(l_ms, &ping(&outsider, l_ms)).await;
        outsider.expect_response(200).await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_gets_one_503_then_silence_until_the_bucket_refills() {
    bounded(async {
        let msp = Ua::udp("127.0.0.1").await;
        let mut sbc = Ua::udp("127.0.0.1").await;
        // Not a configured peer's address: the `flood.source` bucket applies.
        let mut flooder = Ua::udp("127.0.0.5").await;
        let mut spec = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1");
        spec.flood_source = (1.0, 2.0);
        spec.retry_after = 7;
        let gw = spec.start().await;
        let l_c = gw.addr(1);

        for _ in 0..2 {
            flooder.send(l_c, &ping(&flooder, l_c)).await;
            flooder.expect_response(200).await;
        }
        let emptied = Instant::now();
        flooder.send(l_c, &ping(&flooder, l_c)).await;
        let busy = flooder.expect_response(503).await;
        assert_eq!(
            busy.h("Retry-After").as_deref(),
            Some("7"),
            "{}",
            busy.dump()
        );
        for _ in 0..3 {
            flooder.send(l_c, &ping(&flooder, l_c)).await;
        }
        flooder
            .expect_nothing(ms(500), "over the limit and already told")
            .await;

        // Configured peers have their own, larger bucket.
        for _ in 0..5 {
            sbc.send(l_c, &ping(&sbc, l_c)).await;
            sbc.expect_response(200).await;
        }

        // One token per second: after a second the source is served again.
        let refilled = emptied + ms(1100);
        tokio::time::sleep_until(refilled.into()).await;
        flooder.send(l_c, &ping(&flooder, l_c)).await;
        flooder.expect_response(200).await;
        gw.stop().await;
    })
    .await;
}

/// A request as raw text from `ua` (top Via `via`, or the agent's own).
fn raw_request(
    ua: &Ua,
    to: SocketAddr,
    vias: &[String],
    max_forwards: u32,
    call_id: Option<&str>,
    cseq: &str,
) -> Vec<u8> {
    let mut s = format!("INVITE sip:+14255550100@{to} SIP/2.0\r\n");
    for v in vias {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!(
        "Via: SIP/2.0/UDP {};branch={};rport\r\n",
        ua.local,
        branch()
    ));
    s.push_str(&format!("Max-Forwards: {max_forwards}\r\n"));
    s.push_str(&format!(
        "From: <sip:+12065550100@{}>;tag=f1\r\nTo: <sip:+14255550100@{to}>\r\n",
        ua.local
    ));
    if let Some(c) = call_id {
        s.push_str(&format!("Call-ID: {c}\r\n"));
    }
    s.push_str(&format!(
        "CSeq: {cseq}\r\nContact: <sip:a@{}>\r\nContent-Length: 0\r\n\r\n",
        ua.local
    ));
    s.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_first_look_answers_483_400_482() {
    bounded(async {
        let mut msp = Ua::udp("127.0.0.1").await;
        let mut sbc = Ua::udp("127.0.0.1").await;
        let gw = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1")
        .start()
        .await;
        let l_c = gw.addr(1);

        sbc.send_raw(
            l_c,
            &raw_request(&sbc, l_c, &[], 0, Some("mf0@test"), "1 INVITE"),
        )
        .await;
        assert_eq!(sbc.expect_final().await.1.code(), 483, "Max-Forwards 0");

        sbc.send_raw(l_c, &raw_request(&sbc, l_c, &[], 70, None, "1 INVITE"))
            .await;
        assert_eq!(sbc.expect_final().await.1.code(), 400, "no Call-ID");

        sbc.send_raw(
            l_c,
            &raw_request(&sbc, l_c, &[], 70, Some("badcseq@test"), "one INVITE"),
        )
        .await;
        assert_eq!(
            sbc.expect_final().await.1.code(),
            400,
            "CSeq without a number"
        );

        // Our own Via on top: the request has been through us already.
        let ours = format!("SIP/2.0/UDP {l_c};branch=z9hG4bKoc0.77;rport");
        sbc.send_raw(
            l_c,
            &raw_request(&sbc, l_c, &[ours], 70, Some("loop@test"), "1 INVITE"),
        )
        .await;
        let (provisional, looped) = sbc.expect_final().await;
        assert_eq!(
            (provisional, looped.code()),
            (vec![], 482),
            "{}",
            looped.dump()
        );

        // An ACK is never answered, even when invalid.
        let ack = String::from_utf8(raw_request(&sbc, l_c, &[], 0, Some("ack@test"), "1 ACK"))
            .unwrap()
            .replacen("INVITE", "ACK", 1);
        sbc.send_raw(l_c, ack.as_bytes()).await;
        let (_, ()) = tokio::join!(
            sbc.expect_nothing(ms(400), "ACK with Max-Forwards 0 is dropped"),
            msp.expect_nothing(ms(400), "nothing of this is forwarded")
        );
        gw.stop().await;
    })
    .await;
}

/// RFC 3581 §4: the response goes back from the address and port the request arrived on.
/// The sender here is not a configured peer, so the gateway cannot know its side from its
/// address; it must use the listener the request came in on (here the second UDP one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_responses_leave_from_the_listener_the_request_reached() {
    bounded(async {
        let msp = Ua::udp("127.0.0.1").await;
        let sbc = Ua::udp("127.0.0.1").await;
        let mut other = Ua::udp("127.0.0.9").await;
        let gw = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1")
        .start()
        .await;
        let (l_ms, l_c) = (gw.addr(0), gw.addr(1));

        other.send(l_ms, &ping(&other, l_ms)).await;
        let r = other.expect_response(200).await;
        assert_eq!(r.from, l_ms);

        other.send(l_c, &ping(&other, l_c)).await;
        let r = other.expect_response(200).await;
        assert_eq!(
            r.from, l_c,
            "200 to a request received on {l_c} came from {}",
            r.from
        );

        let mut mf0 = ping(&other, l_c);
        mf0.max_forwards = Some(0);
        other.send(l_c, &mf0).await;
        let r = other.expect_response(483).await;
        assert_eq!(
            r.from, l_c,
            "483 to a request received on {l_c} came from {}",
            r.from
        );
        gw.stop().await;
    })
    .await;
}
