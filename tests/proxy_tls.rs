//! TLS with mutual authentication on the Microsoft side: calls both ways, refused client
//! certificates, and garbage that must not hurt the listener. Certificates are made in the
//! test: one CA, the gateway's leaf for `ocedge.test`, the Microsoft proxy's leaf for
//! `sip.pstnhub.microsoft.com`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use ocedge::transport::TransportStats;
use support::certs::{self, Ca, Leaf};
use support::msg::{options, sdp, tag};
use support::ua::RecvError;
use support::{
    assert_rr, bounded, callee_uri, dest, ms, temp_dir, Gateway, Leg, MsgExt, Spec, StreamServer,
    TempDir, Ua, WAIT,
};
use tokio::io::AsyncWriteExt;

const MS_NAME: &str = "sip.pstnhub.microsoft.com";

struct Setup {
    ca: Ca,
    ms_leaf: Leaf,
    gw: Gateway,
    /// The fake Microsoft proxy's TLS listener (the configured target).
    ms_srv: StreamServer,
    sbc: Ua,
    /// The gateway's TLS files; after `gw`, so the gateway goes first.
    _dir: TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let ca = Ca::new("ocedge test CA");
        let gw_leaf = ca.leaf(&["ocedge.test"]);
        let ms_leaf = ca.leaf(&[MS_NAME]);
        let dir = temp_dir("tls");
        let files = certs::write_gateway_files(&dir, &ca.pem(), &gw_leaf);
        let ms_srv =
            StreamServer::tls("127.0.0.1", certs::server_config(&ca.pem(), &ms_leaf)).await;
        let sbc = Ua::udp("127.0.0.1").await;
        let mut spec = Spec::new(
            vec![dest(MS_NAME, ms_srv.addr, "tls", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "tls", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1");
        spec.tls = Some(files);
        let gw = spec.start().await;
        Setup {
            ca,
            ms_leaf,
            gw,
            ms_srv,
            sbc,
            _dir: dir,
        }
    }

    fn l_ms(&self) -> SocketAddr {
        self.gw.addr(0)
    }

    fn l_c(&self) -> SocketAddr {
        self.gw.addr(1)
    }

    /// Our advertised TLS host:port.
    fn advertised(&self) -> String {
        format!("ocedge.test:{}", self.l_ms().port())
    }

    fn client(&self, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        certs::client_config(&self.ca.pem(), leaf)
    }

    /// A Microsoft proxy connecting to our TLS listener with its certificate.
    async fn ms_client(&self) -> Ua {
        Ua::tls(self.l_ms(), self.client(Some(&self.ms_leaf)), "ocedge.test")
            .await
            .expect("Microsoft peer handshake")
    }

    /// A call from the Microsoft proxy `msp` (its Record-Route `rr`, its Contact a host name,
    /// as Microsoft writes them) answered 200 by the SBC: the leg (established), the INVITE
    /// the SBC got, its tag, and the 200 Microsoft got.
    async fn call_from_microsoft(
        &mut self,
        msp: &mut Ua,
        rr: &str,
    ) -> (Leg, support::ua::Incoming, String, support::ua::Incoming) {
        let ruri = callee_uri("+12065550100", self.l_ms());
        let mut call = Leg::caller("TLS", msp.local, "+14255550100", &ruri);
        let mut invite = call.invite(&ruri);
        invite.contact = Some(format!("<{MS_CONTACT}>"));
        invite.extra.push(("Record-Route".into(), rr.into()));
        msp.send(self.l_ms(), &invite).await;
        let inv = self.sbc.expect_request("INVITE").await;
        msp.expect_response(100).await;
        let uas_tag = tag();
        let sbc_contact = format!("<sip:sbc@{};transport=udp>", self.sbc.local);
        let body = sdp(self.sbc.local);
        self.sbc
            .reply(&inv, 200, Some(&uas_tag), Some(&sbc_contact), Some(&body))
            .await;
        let ok = msp.expect_response(200).await;
        call.established(&ok);
        (call, inv, uas_tag, ok)
    }

    /// An INVITE from a Microsoft proxy whose top Via is `sent_by`; its connection closes
    /// after the 100, then the SBC answers 486. Returns the Call-ID.
    async fn busy_after_the_connection_is_gone(&mut self, sent_by: &str) -> String {
        let mut msp = self.ms_client().await;
        let ruri = callee_uri("+12065550100", self.l_ms());
        let mut call = Leg::caller("TLS", msp.local, "+14255550100", &ruri);
        let mut invite = call.invite(&ruri);
        let branch = invite.branch();
        invite.vias = vec![format!("SIP/2.0/TLS {sent_by};branch={branch}")];
        msp.send(self.l_ms(), &invite).await;
        let inv = self.sbc.expect_request("INVITE").await;
        msp.expect_response(100).await;
        self.hang_up_connection(msp).await;
        self.sbc.reply(&inv, 486, Some(&tag()), None, None).await;
        call.call_id
    }

    /// Closes the Microsoft proxy's connection `msp` and waits until the gateway let go of it.
    async fn hang_up_connection(&self, msp: Ua) {
        let live = self.gw.running().transports.connections();
        drop(msp);
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.gw.running().transports.connections() >= live {
            assert!(
                tokio::time::Instant::now() < deadline,
                "connection never dropped"
            );
            tokio::time::sleep(ms(10)).await;
        }
    }

    /// OPTIONS to the gateway over `ua` must get 200.
    async fn options_ok(&self, ua: &mut Ua) {
        let uri = format!("sip:{};transport=tls", self.advertised());
        ua.send(self.l_ms(), &options("TLS", ua.local, &uri)).await;
        ua.expect_response(200).await;
    }

    fn stat(&self, f: impl Fn(&TransportStats) -> &std::sync::atomic::AtomicU64) -> u64 {
        f(self.gw.running().transports.stats()).load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn stop(self) {
        self.gw.stop().await;
    }
}

/// A refused client: either the handshake fails, or (TLS 1.3, where the client finishes
/// before the server checks its certificate) the connection ends without any SIP answer.
async fn expect_refused(attempt: std::io::Result<Ua>, l_ms: SocketAddr) {
    let mut ua = match attempt {
        Err(_) => return,
        Ok(ua) => ua,
    };
    let uri = format!("sip:{l_ms};transport=tls");
    let req = options("TLS", ua.local, &uri);
    // The write itself may already fail once the server's alert has arrived.
    let _ = ua.try_send_raw(&req.to_bytes()).await;
    match ua.expect_closed(WAIT).await {
        RecvError::Closed | RecvError::Io(_) => {}
        RecvError::Timeout => unreachable!(),
    }
}

/// Microsoft's own Record-Route entry and Contact, as its proxies write them: host names.
const MS_RR: &str = "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>";
const MS_CONTACT: &str = "sip:api-du-b-uswe.pstnhub.microsoft.com:443;transport=tls;x-i=7c1d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_calls_both_ways_with_mutual_auth() {
    bounded(async {
        let mut s = Setup::new().await;
        let (l_ms, l_c) = (s.l_ms(), s.l_c());
        // The gateway probes the Microsoft target at start: it connects to the fake proxy,
        // which requires a client certificate from our CA; the gateway verified ours as
        // sip.pstnhub.microsoft.com, or it would not have finished the handshake.
        let mut ms_in = s.ms_srv.accept(WAIT).await;

        // Microsoft → carrier over the connection the Microsoft proxy opens. As Microsoft
        // does, its Record-Route and Contact are host names the gateway cannot resolve.
        let mut msp = s.ms_client().await;
        let (mut call, inv, uas_tag, ok) = s.call_from_microsoft(&mut msp, MS_RR).await;
        let rr = inv.hs("Record-Route");
        assert_eq!(
            rr.len(),
            3,
            "double Record-Route over Microsoft's:\n{}",
            inv.dump()
        );
        assert_rr(&rr[0], &l_c.to_string(), "udp");
        assert_rr(&rr[1], &s.advertised(), "tls");
        assert_eq!(rr[2], MS_RR);
        let contact = ok.h("Contact").unwrap_or_default();
        assert!(
            contact.starts_with(&format!(
                "<sip:sbc@{};transport=tls;oc-alias=",
                s.advertised()
            )),
            "Microsoft sees our FQDN as the Contact:\n{}",
            ok.dump()
        );
        // The Microsoft proxy pops its own entry before the ACK reaches us.
        call.route_set.retain(|r| r != MS_RR);
        msp.send(l_ms, &call.ack_2xx()).await;
        let ack = s.sbc.expect_request("ACK").await;
        assert_eq!(
            ack.ruri(),
            format!("sip:sbc@{};transport=udp", s.sbc.local),
            "in-dialog requests reach the SBC at its own Contact"
        );
        // The SBC's BYE names Microsoft's host names only: it follows the flow in our
        // Record-Route back over the connection the INVITE came on.
        let mut callee = Leg::callee("UDP", s.sbc.local, &inv, &uas_tag);
        s.sbc.send(l_c, &callee.in_dialog("BYE")).await;
        let bye = msp.expect_request("BYE").await;
        assert_eq!(bye.ruri(), MS_CONTACT, "{}", bye.dump());
        assert_eq!(bye.hs("Route"), [MS_RR], "{}", bye.dump());
        assert!(
            bye.hs("Via")[0].starts_with(&format!("SIP/2.0/TLS {};", s.advertised())),
            "toward Microsoft we are our FQDN:\n{}",
            bye.dump()
        );
        msp.reply(&bye, 200, None, None, None).await;
        s.sbc.expect_response(200).await;

        // Carrier → Microsoft over the connection the gateway opened to the target.
        let ruri = callee_uri("+14255550100", l_c);
        let mut call = Leg::caller("UDP", s.sbc.local, "+12065550100", &ruri);
        s.sbc.send(l_c, &call.invite(&ruri)).await;
        let inv = ms_in.expect_request("INVITE").await;
        let contact = inv.h("Contact").unwrap_or_default();
        assert!(
            contact.contains(&format!("@{};transport=tls;oc-alias=", s.advertised())),
            "{}",
            inv.dump()
        );
        assert!(
            inv.hs("Via")[0].starts_with(&format!("SIP/2.0/TLS {};", s.advertised())),
            "{}",
            inv.dump()
        );
        let rr = inv.hs("Record-Route");
        assert_eq!(rr.len(), 2, "double Record-Route:\n{}", inv.dump());
        assert_rr(&rr[0], &s.advertised(), "tls");
        assert_rr(&rr[1], &l_c.to_string(), "udp");
        let uas_tag = tag();
        let ms_contact = format!("<sip:ms@{};transport=tls>", s.ms_srv.addr);
        ms_in
            .reply(
                &inv,
                200,
                Some(&uas_tag),
                Some(&ms_contact),
                Some(&sdp(s.ms_srv.addr)),
            )
            .await;
        let (_, ok) = s.sbc.expect_final().await;
        assert_eq!(ok.code(), 200, "{}", ok.dump());
        call.established(&ok);
        s.sbc.send(l_c, &call.ack_2xx()).await;
        ms_in.expect_request("ACK").await;
        let mut callee = Leg::callee("TLS", s.ms_srv.addr, &inv, &uas_tag);
        ms_in.send(l_ms, &callee.in_dialog("BYE")).await;
        let bye = s.sbc.expect_request("BYE").await;
        assert!(bye.hs("Route").is_empty(), "{}", bye.dump());
        s.sbc.reply(&bye, 200, None, None, None).await;
        ms_in.expect_response(200).await;

        // One connection each way, reused for everything.
        s.ms_srv.expect_no_connection(ms(100)).await;
        s.stop().await;
    })
    .await;
}

/// Microsoft's proxy called over a connection it opened, then closed that connection
/// mid-call (its proxies recycle them). The SBC's BYE cannot take that flow: it goes to the
/// same address at the port of Microsoft's Record-Route, here over the connection the
/// gateway already holds to that listener (the configured target's, opened by the probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bye_reconnects_when_microsofts_connection_is_gone() {
    bounded(async {
        let mut s = Setup::new().await;
        let (l_ms, l_c) = (s.l_ms(), s.l_c());
        let mut ms_in = s.ms_srv.accept(WAIT).await;
        let ms_rr = format!(
            "<sip:sip-du-a-us.pstnhub.microsoft.com:{};transport=tls;lr>",
            s.ms_srv.addr.port()
        );
        let mut msp = s.ms_client().await;
        let (mut call, inv, uas_tag, _) = s.call_from_microsoft(&mut msp, &ms_rr).await;
        call.route_set.retain(|r| *r != ms_rr);
        msp.send(l_ms, &call.ack_2xx()).await;
        s.sbc.expect_request("ACK").await;

        s.hang_up_connection(msp).await;

        let mut callee = Leg::callee("UDP", s.sbc.local, &inv, &uas_tag);
        s.sbc.send(l_c, &callee.in_dialog("BYE")).await;
        let bye = ms_in.expect_request("BYE").await;
        assert_eq!(bye.ruri(), MS_CONTACT, "{}", bye.dump());
        assert_eq!(bye.hs("Route"), [ms_rr.as_str()], "{}", bye.dump());
        ms_in.reply(&bye, 200, None, None, None).await;
        s.sbc.expect_response(200).await;

        // Responses too (RFC 3261 §18.2.2): a connection gone before the answer, the 486
        // goes to the same address at the port of Microsoft's Via.
        let sent_by = format!("sip-du-a-us.pstnhub.microsoft.com:{}", s.ms_srv.addr.port());
        let call_id = s.busy_after_the_connection_is_gone(&sent_by).await;
        let busy = ms_in.expect_response(486).await;
        assert_eq!(busy.h("Call-ID"), Some(call_id));
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_response_reconnects_to_a_microsoft_proxy_whose_via_is_an_ip() {
    bounded(async {
        let mut s = Setup::new().await;
        // A second Microsoft proxy, reachable only by the IP:port of its Via, whose
        // certificate names it (sip.pstnhub.microsoft.com) but not its address.
        let other =
            StreamServer::tls("127.0.0.1", certs::server_config(&s.ca.pem(), &s.ms_leaf)).await;
        let call_id = s
            .busy_after_the_connection_is_gone(&other.addr.to_string())
            .await;
        // Verified against microsoft.peer_names, as its client certificate was: an address
        // alone would match nothing in a Microsoft certificate.
        let mut conn = other.accept(WAIT).await;
        let busy = conn.expect_response(486).await;
        assert_eq!(busy.h("Call-ID"), Some(call_id));
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_wrong_or_missing_client_certificates() {
    bounded(async {
        let s = Setup::new().await;
        let l_ms = s.l_ms();

        // Chains to our CA, but is not one of microsoft.peer_names.
        let wrong_name = s.ca.leaf(&["sbc.evil.example"]);
        expect_refused(
            Ua::tls(l_ms, s.client(Some(&wrong_name)), "ocedge.test").await,
            l_ms,
        )
        .await;
        assert_eq!(s.stat(|t| &t.tls_peer_rejected), 1, "refused for its name");

        // No certificate at all.
        expect_refused(Ua::tls(l_ms, s.client(None), "ocedge.test").await, l_ms).await;

        // The right name, from a CA we do not trust.
        let other_ca = Ca::new("someone else");
        let forged = other_ca.leaf(&[MS_NAME]);
        expect_refused(
            Ua::tls(l_ms, s.client(Some(&forged)), "ocedge.test").await,
            l_ms,
        )
        .await;

        assert!(
            s.stat(|t| &t.handshake_failures) >= 3,
            "three refused handshakes counted"
        );
        assert_eq!(
            s.stat(|t| &t.stream_messages_in),
            0,
            "no SIP from a refused peer reached the proxy"
        );

        let mut good = s.ms_client().await;
        s.options_ok(&mut good).await;
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_garbage_closes_that_connection_only() {
    bounded(async {
        let s = Setup::new().await;
        let l_ms = s.l_ms();
        // A good connection opened before the garbage arrives.
        let mut before = s.ms_client().await;

        // Garbage instead of a TLS handshake.
        let mut raw = tokio::net::TcpStream::connect(l_ms).await.expect("connect");
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02\xff\xfe")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        let read =
            tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut raw, &mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            // rustls may answer with an alert record before closing.
            Ok(Ok(_)) => {
                let rest =
                    tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut raw, &mut buf))
                        .await;
                assert!(
                    matches!(rest, Ok(Ok(0)) | Ok(Err(_))),
                    "connection not closed after garbage handshake"
                );
            }
            Err(_) => panic!("garbage handshake left open past the timeout"),
        }

        // Garbage inside an authenticated TLS session: a framing error.
        let mut bad = s.ms_client().await;
        bad.send_raw(l_ms, b"this is not SIP\r\nnor a header line\r\n\r\n")
            .await;
        bad.expect_closed(WAIT).await;
        assert!(s.stat(|t| &t.framing_errors) >= 1, "framing error counted");

        // The listener and the other connections still work.
        s.options_ok(&mut before).await;
        let mut after = s.ms_client().await;
        s.options_ok(&mut after).await;
        s.stop().await;
    })
    .await;
}
