//! TLS transport: mutual authentication on a Microsoft-side listener (configured peer name
//! accepted; wrong name, no certificate, or another CA refused), optional client
//! certificates on the carrier side, garbage and failed handshakes that leave the listener
//! serving, outgoing connections that verify the server's name and are reused, and
//! certificate reload.

mod transport_util;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ocedge::config::{Side, Transport};
use ocedge::sip::framing::StreamFramer;
use ocedge::sip::Limits;
use ocedge::transport::devcerts::Leaf;
use ocedge::transport::{Target, TransportError};
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use transport_util::{
    client_config, closed_by_peer, count, eventually, read_message, server_config, setup, sip,
    tls_connect, Pki, Running, WAIT,
};

const MS: &str = "sip.pstnhub.microsoft.com";
const GW: &str = "sbc.carrier.example";

fn tls(addr: SocketAddr) -> Target {
    Target {
        transport: Transport::Tls,
        addr,
    }
}

/// A gateway with one TLS listener of `side`, our certificate for [`GW`] and 127.0.0.1.
async fn gateway(pki: &Pki, side: Side) -> Running {
    let mut s = setup(&[(side, Transport::Tls, "127.0.0.1:0")]);
    s.transport.handshake_timeout.0 = Duration::from_secs(2);
    s.tls = Some(pki.setup(
        &pki.leaf(&[GW, "127.0.0.1"]),
        &[MS, "sip2.pstnhub.microsoft.com"],
    ));
    Running::start(&s).await
}

/// Connects with `cert`, sends a message, and reports whether the gateway took it.
async fn client_gets_through(r: &mut Running, pki: &Pki, cert: Option<&Leaf>) -> bool {
    let Ok(mut stream) = tls_connect(client_config(pki, cert), r.addr(0), GW).await else {
        return false;
    };
    // With TLS 1.3 the client finishes before the server has checked its certificate: the
    // refusal shows as an alert or a close when the client next reads.
    let _ = stream.write_all(&sip("probe", "")).await;
    let _ = stream.flush().await;
    match tokio::time::timeout(Duration::from_millis(500), r.inbox.recv()).await {
        Ok(Some(_)) => true,
        _ => !closed_by_peer(&mut stream).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_side_accepts_a_configured_peer_name_and_replies_on_the_connection() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Microsoft).await;
    let ms = pki.leaf(&[MS]);
    let mut stream = tls_connect(client_config(&pki, Some(&ms)), r.addr(0), GW)
        .await
        .expect("handshake");
    let me = stream.get_ref().0.local_addr().unwrap();
    stream.write_all(&sip("ms1", "")).await.unwrap();
    let got = r.next().await;
    assert_eq!(&got.bytes[..], &sip("ms1", "")[..]);
    assert_eq!(got.source, tls(me));
    assert_eq!(got.tls_peer_name.as_deref(), Some(MS));
    r.transports
        .send(got.source, None, Bytes::from(sip("ms1-reply", "")))
        .unwrap();
    let mut framer = StreamFramer::new(Limits::DEFAULT);
    let reply = read_message(&mut stream, &mut framer).await;
    assert_eq!(&reply[..], &sip("ms1-reply", "")[..]);
    assert_eq!(count(&r, |s| &s.handshake_failures), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_side_refuses_wrong_name_missing_cert_and_foreign_ca() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Microsoft).await;

    let wrong = pki.leaf(&["sip.evil.example"]);
    assert!(!client_gets_through(&mut r, &pki, Some(&wrong)).await);
    eventually("name refusal", || count(&r, |s| &s.tls_peer_rejected) == 1).await;

    assert!(!client_gets_through(&mut r, &pki, None).await);
    let other = Pki::new("another CA");
    let foreign = other.leaf(&[MS]);
    // Trusting our CA for the server, but presenting a certificate from another CA.
    let Ok(mut s) = tls_connect(client_config(&pki, Some(&foreign)), r.addr(0), GW).await else {
        panic!("client side of the handshake should complete");
    };
    let _ = s.write_all(&sip("foreign", "")).await;
    assert!(closed_by_peer(&mut s).await);
    eventually("three handshake failures", || {
        count(&r, |s| &s.handshake_failures) == 3
    })
    .await;
    assert_eq!(
        count(&r, |s| &s.tls_peer_rejected),
        1,
        "chain failures are not name failures"
    );
    r.nothing_for(Duration::from_millis(100)).await;

    // The listener still serves a good client.
    assert!(client_gets_through(&mut r, &pki, Some(&pki.leaf(&[MS]))).await);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_side_does_not_require_a_client_certificate() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Carrier).await;
    assert!(client_gets_through(&mut r, &pki, None).await);
    assert!(client_gets_through(&mut r, &pki, Some(&pki.leaf(&["sbc1.carrier.example"]))).await);
    assert_eq!(count(&r, |s| &s.handshake_failures), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_failed_handshake_leave_the_listener_serving() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Microsoft).await;
    // Plain SIP on the TLS port, then random bytes.
    let mut plain = TcpStream::connect(r.addr(0)).await.unwrap();
    plain.write_all(&sip("plaintext", "")).await.unwrap();
    assert!(closed_by_peer(&mut plain).await);
    let mut junk = TcpStream::connect(r.addr(0)).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3])
        .await
        .unwrap();
    junk.write_all(&[0xa5; 4096]).await.unwrap();
    assert!(closed_by_peer(&mut junk).await);
    // A client that connects and says nothing is dropped at the handshake timeout.
    let mut silent = TcpStream::connect(r.addr(0)).await.unwrap();
    // A handshake refused for its certificate.
    assert!(!client_gets_through(&mut r, &pki, Some(&pki.leaf(&["nobody.example"]))).await);
    // A good client still gets through while the silent one waits.
    assert!(client_gets_through(&mut r, &pki, Some(&pki.leaf(&[MS]))).await);
    assert!(
        closed_by_peer(&mut silent).await,
        "silent client dropped after the timeout"
    );
    eventually("four failures", || {
        count(&r, |s| &s.handshake_failures) == 4
    })
    .await;
    r.stop().await;
}

/// A test TLS server for the gateway's outgoing connections: our `name` certificate,
/// requiring a client certificate from `pki`.
async fn tls_server(pki: &Pki, name: &str) -> (TcpListener, TlsAcceptor) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = TlsAcceptor::from(server_config(pki, &pki.leaf(&[name])));
    (listener, acceptor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_tls_verifies_the_server_name_and_is_reused_for_responses() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Microsoft).await;
    let (server, acceptor) = tls_server(&pki, MS).await;
    let to = tls(server.local_addr().unwrap());
    r.transports
        .send(to, Some(MS), Bytes::from(sip("invite", "")))
        .unwrap();
    let (tcp, _) = tokio::time::timeout(WAIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    let mut conn = tokio::time::timeout(WAIT, acceptor.accept(tcp))
        .await
        .unwrap()
        .unwrap();
    // The gateway presented its certificate.
    let presented: Vec<CertificateDer<'static>> =
        conn.get_ref().1.peer_certificates().unwrap().to_vec();
    assert_eq!(presented.len(), 1);
    let mut framer = StreamFramer::new(Limits::DEFAULT);
    assert_eq!(
        &read_message(&mut conn, &mut framer).await[..],
        &sip("invite", "")[..]
    );
    // The server sends a request back over the same connection...
    conn.write_all(&sip("bye", "")).await.unwrap();
    let got = r.next().await;
    assert_eq!(got.source, to);
    assert_eq!(got.tls_peer_name.as_deref(), Some(MS));
    // ...and the response to it travels over that connection too.
    r.transports
        .send(got.source, None, Bytes::from(sip("bye-200", "")))
        .unwrap();
    assert_eq!(
        &read_message(&mut conn, &mut framer).await[..],
        &sip("bye-200", "")[..]
    );
    let second = tokio::time::timeout(Duration::from_millis(200), server.accept()).await;
    assert!(second.is_err(), "no second connection");
    assert_eq!(count(&r, |s| &s.connections_opened), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_tls_to_a_server_with_another_name_fails() {
    let pki = Pki::new("test CA");
    let r = gateway(&pki, Side::Microsoft).await;
    let (server, acceptor) = tls_server(&pki, "sip.impostor.example").await;
    let to = tls(server.local_addr().unwrap());
    r.transports
        .send(to, Some(MS), Bytes::from(sip("secret", "")))
        .unwrap();
    let (tcp, _) = tokio::time::timeout(WAIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    let accepted = tokio::time::timeout(WAIT, acceptor.accept(tcp))
        .await
        .unwrap();
    assert!(accepted.is_err(), "the gateway aborts the handshake");
    eventually("handshake failure", || {
        count(&r, |s| &s.handshake_failures) == 1
    })
    .await;
    eventually("entry removed", || r.transports.connections() == 0).await;
    assert_eq!(count(&r, |s| &s.connections_opened), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_certificate_is_used_by_new_handshakes_only() {
    let pki = Pki::new("test CA");
    let mut r = gateway(&pki, Side::Carrier).await;
    let old = tls_connect(client_config(&pki, None), r.addr(0), GW)
        .await
        .unwrap();
    let new_leaf = pki.leaf(&["renamed.carrier.example", "127.0.0.1"]);
    r.transports
        .reload_tls(pki.setup(&new_leaf, &[MS]))
        .unwrap();
    // The new name verifies now; the old one no longer does.
    let mut fresh = tls_connect(
        client_config(&pki, None),
        r.addr(0),
        "renamed.carrier.example",
    )
    .await
    .expect("new certificate served");
    assert!(tls_connect(client_config(&pki, None), r.addr(0), GW)
        .await
        .is_err());
    fresh.write_all(&sip("fresh", "")).await.unwrap();
    r.next().await;
    // The connection made before the reload still works.
    let mut old = old;
    old.write_all(&sip("old", "")).await.unwrap();
    assert_eq!(
        r.next().await.source,
        tls(old.get_ref().0.local_addr().unwrap())
    );
    // A Microsoft-side listener cannot lose all its peer names in a reload.
    let mut ms = gateway(&pki, Side::Microsoft).await;
    let refused = ms.transports.reload_tls(pki.setup(&new_leaf, &[]));
    assert!(matches!(
        refused,
        Err(TransportError::NoPeerNames { index: 0 })
    ));
    assert!(client_gets_through(&mut ms, &pki, Some(&pki.leaf(&[MS]))).await);
    ms.stop().await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_needs_certificates_and_peer_names() {
    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let sink = std::sync::Arc::new(|_m: ocedge::transport::Inbound| {});
    let mut s = setup(&[(Side::Microsoft, Transport::Tls, "127.0.0.1:0")]);
    let started = ocedge::transport::Transports::start(&s, sink.clone(), cancel.clone(), &tracker);
    assert!(matches!(
        started.await,
        Err(TransportError::NoTls { index: 0 })
    ));
    let pki = Pki::new("test CA");
    s.tls = Some(pki.setup(&pki.leaf(&[GW]), &[]));
    let started = ocedge::transport::Transports::start(&s, sink, cancel, &tracker);
    assert!(matches!(
        started.await,
        Err(TransportError::NoPeerNames { index: 0 })
    ));
    assert!(tracker.is_empty(), "nothing spawned by a failed start");
}
