//! TCP transport: pipelined messages, replies over the accepted connection, keep-alive,
//! framing errors, connection limits, idle timeout, outgoing connections and their reuse,
//! and a full send queue.

mod transport_util;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ocedge::config::{Side, Transport};
use ocedge::sip::framing::StreamFramer;
use ocedge::sip::Limits;
use ocedge::transport::{SendError, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport_util::{closed_by_peer, count, eventually, read_message, setup, sip, Running, WAIT};

fn tcp(addr: SocketAddr) -> Target {
    Target {
        transport: Transport::Tcp,
        addr,
    }
}

async fn tcp_gateway() -> Running {
    Running::start(&setup(&[(Side::Microsoft, Transport::Tcp, "127.0.0.1:0")])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_messages_and_reply_over_the_accepted_connection() {
    let mut r = tcp_gateway().await;
    let mut client = TcpStream::connect(r.addr(0)).await.unwrap();
    let me = client.local_addr().unwrap();
    let msgs = [sip("a", "v=0\r\n"), sip("b", ""), sip("c", "xyz")];
    client.write_all(&msgs.concat()).await.unwrap();
    for m in &msgs {
        let got = r.next().await;
        assert_eq!(&got.bytes[..], &m[..]);
        assert_eq!(got.source, tcp(me));
        assert_eq!((got.listener, got.local), (0, r.addr(0)));
    }
    // The reply goes back over the same connection, not a new one.
    let reply = sip("reply", "ok");
    r.transports
        .send(tcp(me), None, Bytes::from(reply.clone()))
        .unwrap();
    let mut framer = StreamFramer::new(Limits::DEFAULT);
    assert_eq!(
        &read_message(&mut client, &mut framer).await[..],
        &reply[..]
    );
    assert_eq!(count(&r, |s| &s.connections_opened), 0);
    assert_eq!(r.transports.connections(), 1);
    drop(client);
    eventually("connection unregistered", || {
        r.transports.connections() == 0
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_ping_gets_one_pong() {
    let mut r = tcp_gateway().await;
    let mut client = TcpStream::connect(r.addr(0)).await.unwrap();
    client.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, client.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
    // A lone CRLF (a pong) is not answered, and a message still flows afterwards.
    client.write_all(b"\r\n").await.unwrap();
    client.write_all(&sip("after", "")).await.unwrap();
    r.next().await;
    assert_eq!(count(&r, |s| &s.pings_answered), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_error_closes_only_that_connection() {
    let mut r = tcp_gateway().await;
    let mut bad = TcpStream::connect(r.addr(0)).await.unwrap();
    let mut good = TcpStream::connect(r.addr(0)).await.unwrap();
    let smuggle = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n";
    bad.write_all(smuggle.as_bytes()).await.unwrap();
    bad.write_all(&sip("hidden", "")).await.unwrap();
    assert!(
        closed_by_peer(&mut bad).await,
        "the bad connection is closed"
    );
    // Counted as the connection task ends, just after the close the peer saw.
    eventually("framing error counted", || {
        count(&r, |s| &s.framing_errors) == 1
    })
    .await;
    good.write_all(&sip("good", "")).await.unwrap();
    let got = r.next().await;
    assert!(
        got.bytes.windows(4).any(|w| w == b"good"),
        "only the good message arrives"
    );
    assert_eq!(got.source, tcp(good.local_addr().unwrap()));
    // And the listener still accepts.
    let mut third = TcpStream::connect(r.addr(0)).await.unwrap();
    third.write_all(&sip("third", "")).await.unwrap();
    assert_eq!(r.next().await.source, tcp(third.local_addr().unwrap()));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_are_refused_and_counted() {
    let mut s = setup(&[(Side::Carrier, Transport::Tcp, "127.0.0.1:0")]);
    s.transport.max_connections = 2;
    let mut r = Running::start(&s).await;
    let mut first = TcpStream::connect(r.addr(0)).await.unwrap();
    let mut second = TcpStream::connect(r.addr(0)).await.unwrap();
    for (c, tag) in [(&mut first, "one"), (&mut second, "two")] {
        c.write_all(&sip(tag, "")).await.unwrap();
        r.next().await;
    }
    let mut third = TcpStream::connect(r.addr(0)).await.unwrap();
    assert!(
        closed_by_peer(&mut third).await,
        "the third connection is closed"
    );
    assert_eq!(count(&r, |s| &s.connections_refused), 1);
    assert_eq!(count(&r, |s| &s.connections_accepted), 2);
    // Closing one frees its slot.
    drop(first);
    eventually("slot freed", || count(&r, |s| &s.connections_closed) == 1).await;
    let mut fourth = TcpStream::connect(r.addr(0)).await.unwrap();
    fourth.write_all(&sip("four", "")).await.unwrap();
    assert_eq!(r.next().await.source, tcp(fourth.local_addr().unwrap()));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() {
    let mut s = setup(&[(Side::Carrier, Transport::Tcp, "127.0.0.1:0")]);
    s.transport.idle_timeout.0 = Duration::from_millis(300);
    let r = Running::start(&s).await;
    let mut client = TcpStream::connect(r.addr(0)).await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(closed_by_peer(&mut client).await);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    eventually("idle counted", || count(&r, |s| &s.idle_closed) == 1).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_connection_is_opened_once_and_reused_both_ways() {
    let mut r = tcp_gateway().await;
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let to = tcp(server.local_addr().unwrap());
    for tag in ["req1", "req2"] {
        r.transports
            .send(to, None, Bytes::from(sip(tag, "")))
            .unwrap();
    }
    let (mut conn, _) = tokio::time::timeout(WAIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    let mut framer = StreamFramer::new(Limits::DEFAULT);
    for tag in ["req1", "req2"] {
        let m = read_message(&mut conn, &mut framer).await;
        assert_eq!(&m[..], &sip(tag, "")[..]);
    }
    // The peer answers on that connection: delivered with the peer's address as source.
    conn.write_all(&sip("resp", "")).await.unwrap();
    let got = r.next().await;
    assert_eq!(got.source, to);
    assert_eq!(
        got.listener, 0,
        "reported on the listener of the same transport"
    );
    assert_eq!(got.local, conn.peer_addr().unwrap());
    // Sending to it again reuses the connection.
    r.transports
        .send(got.source, None, Bytes::from(sip("ack", "")))
        .unwrap();
    assert_eq!(
        &read_message(&mut conn, &mut framer).await[..],
        &sip("ack", "")[..]
    );
    let second = tokio::time::timeout(Duration::from_millis(200), server.accept()).await;
    assert!(second.is_err(), "no second connection");
    assert_eq!(count(&r, |s| &s.connections_opened), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connect_is_counted_and_the_next_send_retries() {
    let r = tcp_gateway().await;
    // A port with nothing listening: bind, note, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    r.transports
        .send(tcp(addr), None, Bytes::from(sip("x", "")))
        .unwrap();
    eventually("connect failure", || {
        count(&r, |s| &s.connect_failures) == 1
    })
    .await;
    eventually("entry removed", || r.transports.connections() == 0).await;
    r.transports
        .send(tcp(addr), None, Bytes::from(sip("y", "")))
        .unwrap();
    eventually("second attempt", || count(&r, |s| &s.connect_failures) == 2).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_send_queue_drops_and_reports() {
    let mut s = setup(&[(Side::Carrier, Transport::Tcp, "127.0.0.1:0")]);
    s.transport.send_queue = 4;
    let mut r = Running::start(&s).await;
    // A peer that never reads: the socket buffers fill, then the queue.
    let mut client = TcpStream::connect(r.addr(0)).await.unwrap();
    client.write_all(&sip("hello", "")).await.unwrap();
    let to = r.next().await.source;
    let big = Bytes::from(sip("big", &"z".repeat(12_000)));
    let mut refused = None;
    for i in 0..200_000 {
        match r.transports.send(to, None, big.clone()) {
            Ok(()) if i % 4 == 3 => tokio::task::yield_now().await,
            Ok(()) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(SendError::QueueFull { .. })),
        "{refused:?}"
    );
    assert!(count(&r, |s| &s.send_queue_drops) >= 1);
    drop(client);
    r.stop().await;
}
