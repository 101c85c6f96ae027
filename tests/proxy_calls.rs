//! Whole calls through the real gateway: carrier → Microsoft over UDP (IPv4 and IPv6),
//! Microsoft → carrier over TCP with connection reuse, and CANCEL.

mod support;

use support::msg::{param, sdp, tag};
use support::{assert_rr, bounded, callee_uri, dest, ms, Leg, MsgExt, Spec, StreamServer, Ua};

/// The carrier → Microsoft call of `udp_call_carrier_to_microsoft`, on `ip`.
async fn udp_call(ip: &str) {
    let mut sbc = Ua::udp(ip).await;
    let mut msp = Ua::udp(ip).await;
    let gw = Spec::new(
        vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
        vec![dest("sbc1", sbc.local, "udp", 1)],
    )
    .listen("microsoft", "udp", ip)
    .listen("carrier", "udp", ip)
    .start()
    .await;
    let (l_ms, l_c) = (gw.addr(0), gw.addr(1));

    let ruri = callee_uri("+14255550100", l_c);
    let mut call = Leg::caller("UDP", sbc.local, "+12065550100", &ruri);
    let invite = call
        .invite(&ruri)
        .with("X-Carrier-Internal", "secret")
        .with("X-MS-TenantID", "tenant-1");
    sbc.send(l_c, &invite).await;

    // The fake Microsoft proxy receives the INVITE from the Microsoft-side listener.
    let inv = msp.expect_request("INVITE").await;
    assert_eq!(
        inv.from, l_ms,
        "INVITE toward Microsoft must leave from the Microsoft-side listener"
    );
    assert_eq!(inv.ruri(), ruri, "Request-URI is not rewritten");
    let vias = inv.hs("Via");
    assert_eq!(
        vias.len(),
        2,
        "our Via on top of the caller's:\n{}",
        inv.dump()
    );
    assert!(
        vias[0].starts_with(&format!("SIP/2.0/UDP {l_ms};")),
        "top Via {:?}",
        vias[0]
    );
    assert!(
        param(&vias[0], "branch").unwrap().starts_with("z9hG4bKoc"),
        "top Via {:?}",
        vias[0]
    );
    assert_eq!(param(&vias[1], "branch"), Some(invite.branch()));
    assert_eq!(inv.h("Max-Forwards").as_deref(), Some("69"));
    let rr = inv.hs("Record-Route");
    assert_eq!(rr.len(), 2, "double Record-Route:\n{}", inv.dump());
    assert_rr(&rr[0], &l_ms.to_string(), "udp");
    assert_rr(&rr[1], &l_c.to_string(), "udp");
    assert_eq!(
        inv.h("X-Carrier-Internal"),
        None,
        "carrier-internal header must be stripped toward Microsoft"
    );
    assert_eq!(
        inv.h("X-MS-TenantID").as_deref(),
        Some("tenant-1"),
        "only the configured header is stripped"
    );
    assert_eq!(inv.body_str(), sdp(sbc.local), "body intact");

    let trying = sbc.expect_response(100).await;
    assert_eq!(trying.hs("Via").len(), 1);
    assert_eq!(
        trying.from, l_c,
        "responses come from the listener the request reached"
    );

    let uas_tag = tag();
    let uas_contact = format!("<sip:ms@{};transport=udp>", msp.local);
    msp.reply(&inv, 180, Some(&uas_tag), Some(&uas_contact), None)
        .await;
    msp.reply(
        &inv,
        200,
        Some(&uas_tag),
        Some(&uas_contact),
        Some(&sdp(msp.local)),
    )
    .await;

    let ringing = sbc.expect_response(180).await;
    assert_eq!(
        ringing.hs("Via"),
        vec![invite.vias[0].clone()],
        "our Via popped:\n{}",
        ringing.dump()
    );
    let ok = sbc.expect_response(200).await;
    assert_eq!(
        ok.hs("Via"),
        vec![invite.vias[0].clone()],
        "our Via popped:\n{}",
        ok.dump()
    );
    assert_eq!(ok.to_tag().as_deref(), Some(uas_tag.as_str()));
    assert_eq!(
        ok.hs("Record-Route"),
        rr,
        "Record-Route reaches the caller unchanged"
    );
    assert_eq!(ok.body_str(), sdp(msp.local));

    // ACK and BYE along the route set: Route = Record-Route reversed, first hop the
    // carrier-side listener.
    call.established(&ok);
    assert_rr(&call.route_set[0], &l_c.to_string(), "udp");
    let ack = call.ack_2xx();
    sbc.send(l_c, &ack).await;
    let ack_in = msp.expect_request("ACK").await;
    assert_eq!(ack_in.ruri(), format!("sip:ms@{};transport=udp", msp.local));
    assert!(
        ack_in.hs("Route").is_empty(),
        "both of our Route entries popped:\n{}",
        ack_in.dump()
    );
    assert_eq!(ack_in.hs("Via").len(), 2);
    assert_eq!(ack_in.h("Max-Forwards").as_deref(), Some("69"));

    let bye = call.in_dialog("BYE");
    sbc.send(l_c, &bye).await;
    let bye_in = msp.expect_request("BYE").await;
    assert!(
        bye_in.hs("Route").is_empty(),
        "both of our Route entries popped:\n{}",
        bye_in.dump()
    );
    assert_eq!(bye_in.ruri(), ack_in.ruri());
    assert!(bye_in.hs("Via")[0].starts_with(&format!("SIP/2.0/UDP {l_ms};")));
    msp.reply(&bye_in, 200, None, None, None).await;
    let bye_ok = sbc.expect_response(200).await;
    assert_eq!(bye_ok.cseq_method(), "BYE");
    assert_eq!(bye_ok.hs("Via").len(), 1);

    sbc.expect_nothing(ms(300), "call is over").await;
    msp.expect_nothing(ms(100), "call is over").await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_carrier_to_microsoft() {
    bounded(udp_call("127.0.0.1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    bounded(udp_call("::1")).await;
}

/// Microsoft → carrier over TCP: the fake Microsoft proxy has no listening socket at all,
/// so every response and the in-dialog BYE toward it can only arrive on the connection it
/// opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_call_microsoft_to_carrier_reuses_the_peer_connection() {
    bounded(async {
        let sbc_srv = StreamServer::tcp("127.0.0.1").await;
        let ms_target = StreamServer::tcp("127.0.0.1").await;
        let gw = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", ms_target.addr, "tcp", 1)],
            vec![dest("sbc1", sbc_srv.addr, "tcp", 1)],
        )
        .listen("microsoft", "tcp", "127.0.0.1")
        .listen("carrier", "tcp", "127.0.0.1")
        .start()
        .await;
        let (l_ms, l_c) = (gw.addr(0), gw.addr(1));
        // The gateway probes its first SBC at start: that opens its connection to us.
        let mut sbc = sbc_srv.accept(support::WAIT).await;
        let mut msp = Ua::tcp(l_ms).await;

        let ruri = callee_uri("+12065550100", l_ms);
        let mut call = Leg::caller("TCP", msp.local, "+14255550100", &ruri);
        let invite = call
            .invite(&ruri)
            .with("X-MS-TenantID", "tenant-1")
            .with("X-Carrier-Internal", "kept");
        msp.send(l_ms, &invite).await;

        let inv = sbc.expect_request("INVITE").await;
        let vias = inv.hs("Via");
        assert_eq!(vias.len(), 2);
        assert!(
            vias[0].starts_with(&format!("SIP/2.0/TCP {l_c};")),
            "top Via {:?}",
            vias[0]
        );
        assert_eq!(inv.h("Max-Forwards").as_deref(), Some("69"));
        let rr = inv.hs("Record-Route");
        assert_eq!(rr.len(), 2, "double Record-Route:\n{}", inv.dump());
        assert_rr(&rr[0], &l_c.to_string(), "tcp");
        assert_rr(&rr[1], &l_ms.to_string(), "tcp");
        assert_eq!(
            inv.h("X-MS-TenantID"),
            None,
            "Microsoft tenant header stripped toward the carrier"
        );
        assert_eq!(inv.h("X-Carrier-Internal").as_deref(), Some("kept"));

        msp.expect_response(100).await;
        let uas_tag = tag();
        let sbc_contact = format!("<sip:sbc@{};transport=tcp>", sbc_srv.addr);
        sbc.reply(&inv, 180, Some(&uas_tag), Some(&sbc_contact), None)
            .await;
        sbc.reply(
            &inv,
            200,
            Some(&uas_tag),
            Some(&sbc_contact),
            Some(&sdp(sbc_srv.addr)),
        )
        .await;
        msp.expect_response(180).await;
        let ok = msp.expect_response(200).await;
        assert_eq!(ok.hs("Via"), vec![invite.vias[0].clone()]);

        call.established(&ok);
        msp.send(l_ms, &call.ack_2xx()).await;
        let ack_in = sbc.expect_request("ACK").await;
        assert_eq!(
            ack_in.ruri(),
            format!("sip:sbc@{};transport=tcp", sbc_srv.addr)
        );
        assert!(ack_in.hs("Route").is_empty());

        // The callee hangs up: BYE toward the Microsoft peer's Contact (its ephemeral
        // address), routed through both of our Record-Route entries.
        let mut callee = Leg::callee("TCP", sbc_srv.addr, &inv, &uas_tag);
        let bye = callee.in_dialog("BYE");
        assert_rr(&bye.routes[0], &l_c.to_string(), "tcp");
        sbc.send(l_c, &bye).await;
        let bye_in = msp.expect_request("BYE").await;
        assert_eq!(bye_in.ruri(), format!("sip:ua@{};transport=tcp", msp.local));
        assert!(
            bye_in.hs("Route").is_empty(),
            "our Route entries popped:\n{}",
            bye_in.dump()
        );
        assert!(bye_in.hs("Via")[0].starts_with(&format!("SIP/2.0/TCP {l_ms};")));
        msp.reply(&bye_in, 200, None, None, None).await;
        let bye_ok = sbc.expect_response(200).await;
        assert_eq!(bye_ok.cseq_method(), "BYE");

        let stats = gw.running().transports.stats();
        assert_eq!(
            stats
                .connect_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the gateway must not try to open a connection to the Microsoft peer's address"
        );
        sbc_srv.expect_no_connection(ms(100)).await;
        gw.stop().await;
    })
    .await;
}

/// CANCEL of a ringing call: answered 200 at once, forwarded on the INVITE's branch, the
/// callee's 487 acknowledged by the gateway and relayed, the caller's ACK absorbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_ringing_call() {
    bounded(async {
        let mut sbc = Ua::udp("127.0.0.1").await;
        let mut msp = Ua::udp("127.0.0.1").await;
        let gw = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1")
        .start()
        .await;
        let l_c = gw.addr(1);

        let ruri = callee_uri("+14255550100", l_c);
        let mut call = Leg::caller("UDP", sbc.local, "+12065550100", &ruri);
        sbc.send(l_c, &call.invite(&ruri)).await;
        let inv = msp.expect_request("INVITE").await;
        let uas_tag = tag();
        msp.reply(&inv, 180, Some(&uas_tag), None, None).await;
        sbc.expect_response(100).await;
        sbc.expect_response(180).await;

        sbc.send(l_c, &call.cancel()).await;
        let cancel_ok = sbc.expect_response(200).await;
        assert_eq!(cancel_ok.cseq_method(), "CANCEL", "{}", cancel_ok.dump());

        let cancel_in = msp.expect_request("CANCEL").await;
        assert_eq!(
            cancel_in.top_branch(),
            inv.top_branch(),
            "CANCEL travels on the INVITE's branch"
        );
        assert_eq!(cancel_in.ruri(), inv.ruri());
        assert_eq!(
            cancel_in.h("CSeq"),
            inv.h("CSeq").map(|c| c.replace("INVITE", "CANCEL"))
        );
        msp.reply(&cancel_in, 200, None, None, None).await;
        msp.reply(&inv, 487, Some(&uas_tag), None, None).await;

        // Hop-by-hop ACK for the 487, from the gateway, on the INVITE's branch.
        let ack = msp.expect_request("ACK").await;
        assert_eq!(ack.top_branch(), inv.top_branch());
        assert_eq!(ack.to_tag().as_deref(), Some(uas_tag.as_str()));
        assert_eq!(ack.cseq_method(), "ACK");

        let (_, terminated) = sbc.expect_final().await;
        assert_eq!(terminated.code(), 487, "{}", terminated.dump());
        sbc.send(l_c, &call.ack_non_2xx(&terminated)).await;

        // The caller's ACK is absorbed: nothing more reaches the callee, and the gateway
        // stops retransmitting its 487 (Timer G would fire every 50–400 ms otherwise).
        let callee_saw = msp.raw_for(ms(700)).await;
        assert!(
            callee_saw.is_empty(),
            "callee got: {:?}",
            callee_saw.iter().map(|m| m.dump()).collect::<Vec<_>>()
        );
        sbc.raw_for(ms(200)).await; // retransmissions that crossed our ACK
        let late = sbc.raw_for(ms(700)).await;
        assert!(
            late.is_empty(),
            "487 still retransmitted after ACK: {:?}",
            late.iter().map(|m| m.dump()).collect::<Vec<_>>()
        );
        gw.stop().await;
    })
    .await;
}
