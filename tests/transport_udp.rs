//! UDP transport: both directions over IPv4 and IPv6, the oversize limit, choice of the
//! sending socket by side, and rebinding after shutdown.

mod transport_util;

use std::net::SocketAddr;

use bytes::Bytes;
use ocedge::config::{Side, Transport};
use ocedge::transport::{SendError, Target};
use tokio::net::UdpSocket;
use transport_util::{count, eventually, setup, sip, Running, WAIT};

async fn recv(sock: &UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no datagram in time")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

async fn both_ways(bind: &str) {
    let mut r = Running::start(&setup(&[(Side::Carrier, Transport::Udp, bind)])).await;
    let gw = r.addr(0);
    assert_ne!(gw.port(), 0);
    let peer = UdpSocket::bind(SocketAddr::new(gw.ip(), 0)).await.unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let request = sip("udp1", "");
    peer.send_to(&request, gw).await.unwrap();
    let got = r.next().await;
    assert_eq!(&got.bytes[..], &request[..]);
    assert_eq!(
        got.source,
        Target {
            transport: Transport::Udp,
            addr: peer_addr
        }
    );
    assert_eq!((got.listener, got.local, got.tls_peer_name), (0, gw, None));

    let response = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    r.transports
        .send(got.source, None, response.clone())
        .unwrap();
    let (bytes, from) = recv(&peer).await;
    assert_eq!(bytes, &response[..]);
    assert_eq!(from, gw, "sent from the listener's address");
    assert_eq!(count(&r, |s| &s.datagrams_in), 1);
    eventually("datagrams_out", || count(&r, |s| &s.datagrams_out) == 1).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_both_ways_ipv4() {
    both_ways("127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_both_ways_ipv6() {
    if !transport_util::ipv6_available() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    both_ways("[::1]:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_datagram_is_dropped_unparsed_and_counted() {
    let mut s = setup(&[(Side::Microsoft, Transport::Udp, "127.0.0.1:0")]);
    s.limits.max_message = 1024;
    s.transport.udp_sockets = 1;
    let mut r = Running::start(&s).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let big = sip("big", &"x".repeat(1100));
    assert!(big.len() > 1024);
    peer.send_to(&big, r.addr(0)).await.unwrap();
    // Content-Length is three digits for any body of 100 to 999 bytes.
    let exact = sip("exact", &"y".repeat(100));
    let exact = sip("exact", &"y".repeat(1124 - exact.len()));
    assert_eq!(
        exact.len(),
        1024,
        "a datagram of exactly max_message passes"
    );
    peer.send_to(&exact, r.addr(0)).await.unwrap();
    let got = r.next().await;
    assert_eq!(&got.bytes[..], &exact[..]);
    assert_eq!(count(&r, |s| &s.datagrams_oversize), 1);
    assert_eq!(count(&r, |s| &s.datagrams_in), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_leave_from_the_side_of_the_destination() {
    let mut s = setup(&[
        (Side::Microsoft, Transport::Udp, "127.0.0.1:0"),
        (Side::Carrier, Transport::Udp, "127.0.0.1:0"),
    ]);
    let ms_peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sbc = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.peers = vec![
        (ms_peer.local_addr().unwrap(), Side::Microsoft),
        (sbc.local_addr().unwrap(), Side::Carrier),
    ];
    let r = Running::start(&s).await;
    let to = |sock: &UdpSocket| Target {
        transport: Transport::Udp,
        addr: sock.local_addr().unwrap(),
    };
    let msg = Bytes::from(sip("side", ""));
    r.transports.send(to(&sbc), None, msg.clone()).unwrap();
    assert_eq!(recv(&sbc).await.1, r.addr(1));
    r.transports.send(to(&ms_peer), None, msg.clone()).unwrap();
    assert_eq!(recv(&ms_peer).await.1, r.addr(0));
    // An unknown peer, told explicitly.
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    r.transports
        .send_on(Side::Carrier, to(&other), None, msg.clone())
        .unwrap();
    assert_eq!(recv(&other).await.1, r.addr(1));
    // ...or by the listener a request arrived on.
    for listener in [0, 1] {
        r.transports
            .send_from(listener, to(&other), None, msg.clone())
            .unwrap();
        assert_eq!(recv(&other).await.1, r.addr(listener));
    }
    // No IPv6 listener: nothing to send an IPv6 datagram from.
    let v6 = Target {
        transport: Transport::Udp,
        addr: "[::1]:5060".parse().unwrap(),
    };
    assert!(matches!(
        r.transports.send(v6, None, msg),
        Err(SendError::NoSocket { .. })
    ));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_socket_of_a_group_receives_and_ports_are_free_after_stop() {
    let mut s = setup(&[
        (Side::Carrier, Transport::Udp, "127.0.0.1:0"),
        (Side::Carrier, Transport::Tcp, "127.0.0.1:0"),
    ]);
    s.transport.udp_sockets = 4;
    let mut r = Running::start(&s).await;
    let (udp, tcp) = (r.addr(0), r.addr(1));
    // Many peers: the kernel spreads them over the four sockets; all must be read.
    let mut peers = Vec::new();
    for i in 0..32 {
        let p = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        p.send_to(&sip(&format!("p{i}"), ""), udp).await.unwrap();
        peers.push(p);
    }
    for _ in 0..32 {
        r.next().await;
    }
    // A second gateway cannot join the running one's UDP port through SO_REUSEPORT (it
    // would take a share of the datagrams): its start fails with the address in use.
    let mut twin = setup(&[(Side::Carrier, Transport::Udp, &udp.to_string())]);
    twin.transport.udp_sockets = 4;
    let (tx, _inbox) = tokio::sync::mpsc::unbounded_channel();
    let sink = std::sync::Arc::new(move |m: ocedge::transport::Inbound| {
        let _ = tx.send(m);
    });
    let refused = ocedge::transport::Transports::start(
        &twin,
        sink,
        tokio_util::sync::CancellationToken::new(),
        &tokio_util::task::TaskTracker::new(),
    )
    .await;
    let Err(err) = refused else {
        panic!("a second group bound a UDP port in use");
    };
    assert!(err.to_string().contains("in use"), "{err}");
    r.stop().await;

    // The same ports bind again at once after shutdown.
    s.listeners[0].addr = udp;
    s.listeners[1].addr = tcp;
    let r = Running::start(&s).await;
    assert_eq!((r.addr(0), r.addr(1)), (udp, tcp));
    r.stop().await;
}
