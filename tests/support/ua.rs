//! The test user agent: one UDP socket or one TCP/TLS connection, plain tokio (not the
//! crate's transport module), with every receive bounded in time.
//!
//! Two ways to receive:
//! - [`Ua::recv_raw`]: the next message as it arrived, nothing hidden;
//! - [`Ua::next`] and the `expect_*` helpers: like a UA's transaction layer, they absorb
//!   retransmissions (a request or response whose top branch, CSeq and method/status were
//!   already returned) and handle OPTIONS requests (the gateway's health probes): answered
//!   200 when [`Ua::answer_options`] is set, else left unanswered; both are recorded in
//!   [`Ua::options_seen`].

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ocedge::sip::framing::{Frame, StreamFramer};
use ocedge::sip::{Limits, Message};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::msg::{param, response, MsgExt, Request};

/// Default bound on one expected message.
pub const WAIT: Duration = Duration::from_secs(3);

/// A byte stream (TCP or TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Io {
    Udp(UdpSocket),
    Stream {
        s: Box<dyn Stream>,
        framer: StreamFramer,
        peer: SocketAddr,
        closed: bool,
    },
}

/// One received message and where it came from (the connection's peer for streams).
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message.
    pub msg: Message,
    /// Source address.
    pub from: SocketAddr,
}

impl std::ops::Deref for Incoming {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// Why nothing was received.
#[derive(Debug)]
pub enum RecvError {
    /// Nothing within the bound.
    Timeout,
    /// The stream ended (EOF).
    Closed,
    /// The stream failed (e.g. a TLS alert).
    Io(io::Error),
}

/// A test user agent.
pub struct Ua {
    io: Io,
    /// Our address.
    pub local: SocketAddr,
    /// Via token: `UDP`, `TCP` or `TLS`.
    pub transport: &'static str,
    /// Answer OPTIONS requests with 200 (default true).
    pub answer_options: bool,
    /// Every OPTIONS request received through [`Ua::next`].
    pub options_seen: Vec<Message>,
    /// Retransmissions absorbed by [`Ua::next`].
    pub absorbed: usize,
    seen: HashSet<String>,
}

impl Ua {
    fn new(io: Io, local: SocketAddr, transport: &'static str) -> Ua {
        Ua {
            io,
            local,
            transport,
            answer_options: true,
            options_seen: Vec::new(),
            absorbed: 0,
            seen: HashSet::new(),
        }
    }

    /// A UDP agent bound to `ip:0` (`127.0.0.1`, `127.0.0.5`, `::1`, …).
    pub async fn udp(ip: &str) -> Ua {
        let addr: SocketAddr = SocketAddr::new(ip.parse().expect("ip"), 0);
        let sock = UdpSocket::bind(addr).await.expect("bind UDP");
        let local = sock.local_addr().expect("local addr");
        Ua::new(Io::Udp(sock), local, "UDP")
    }

    /// A connected stream agent.
    pub fn stream(
        s: Box<dyn Stream>,
        local: SocketAddr,
        peer: SocketAddr,
        transport: &'static str,
    ) -> Ua {
        let io = Io::Stream {
            s,
            framer: StreamFramer::new(Limits::DEFAULT),
            peer,
            closed: false,
        };
        Ua::new(io, local, transport)
    }

    /// A TCP connection to `to`.
    pub async fn tcp(to: SocketAddr) -> Ua {
        let s = tokio::time::timeout(WAIT, TcpStream::connect(to))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        s.set_nodelay(true).expect("nodelay");
        let local = s.local_addr().expect("local addr");
        Ua::stream(Box::new(s), local, to, "TCP")
    }

    /// A TLS connection to `to`, verifying the server as `server_name`. The handshake error
    /// (e.g. our certificate refused) is returned; with TLS 1.3 a refusal of our client
    /// certificate may only show on the first read.
    pub async fn tls(
        to: SocketAddr,
        cfg: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<Ua> {
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(to))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let local = tcp.local_addr()?;
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let s = tokio::time::timeout(WAIT, TlsConnector::from(cfg).connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
        Ok(Ua::stream(Box::new(s), local, to, "TLS"))
    }

    /// The peer of a stream agent.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.io {
            Io::Udp(_) => None,
            Io::Stream { peer, .. } => Some(*peer),
        }
    }

    /// Sends raw bytes: a datagram to `to`, or on the stream (`to` ignored).
    pub async fn send_raw(&mut self, to: SocketAddr, bytes: &[u8]) {
        match &mut self.io {
            Io::Udp(s) => {
                s.send_to(bytes, to).await.expect("UDP send");
            }
            Io::Stream { s, .. } => {
                tokio::time::timeout(WAIT, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await
                .expect("stream write timed out")
                .expect("stream write");
            }
        }
    }

    /// Like [`Ua::send_raw`], reporting a write failure instead of panicking.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.io {
            Io::Udp(_) => Ok(()),
            Io::Stream { s, .. } => tokio::time::timeout(WAIT, async {
                s.write_all(bytes).await?;
                s.flush().await
            })
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out"))),
        }
    }

    /// Sends a built request.
    pub async fn send(&mut self, to: SocketAddr, req: &Request) {
        self.send_raw(to, &req.to_bytes()).await;
    }

    /// Answers `req`: UDP to the top Via's `received`/`rport` or sent-by (RFC 3261
    /// §18.2.2, RFC 3581), falling back to the source; streams on the connection.
    pub async fn reply(
        &mut self,
        req: &Incoming,
        status: u16,
        to_tag: Option<&str>,
        contact: Option<&str>,
        body: Option<&str>,
    ) {
        let bytes = response(&req.msg, status, to_tag, contact, body);
        let to = response_address(req);
        self.send_raw(to, &bytes).await;
    }

    /// The next message as it arrived, within `within`.
    pub async fn recv_raw(&mut self, within: Duration) -> Result<Incoming, RecvError> {
        let deadline = tokio::time::Instant::now() + within;
        match &mut self.io {
            Io::Udp(s) => {
                let mut buf = vec![0u8; 65_536];
                let (n, from) = tokio::time::timeout_at(deadline, s.recv_from(&mut buf))
                    .await
                    .map_err(|_| RecvError::Timeout)?
                    .map_err(RecvError::Io)?;
                buf.truncate(n);
                Ok(Incoming {
                    msg: parse(Bytes::from(buf)),
                    from,
                })
            }
            Io::Stream {
                s,
                framer,
                peer,
                closed,
            } => loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(b))) => {
                        return Ok(Incoming {
                            msg: parse(b),
                            from: *peer,
                        })
                    }
                    Ok(Some(Frame::Ping | Frame::Pong)) => continue,
                    Ok(None) => {}
                    Err(e) => panic!("gateway sent an unframeable stream: {e}"),
                }
                if *closed {
                    return Err(RecvError::Closed);
                }
                let read = tokio::time::timeout_at(deadline, s.read_buf(&mut framer.recv_buf()))
                    .await
                    .map_err(|_| RecvError::Timeout)?;
                match read {
                    Ok(0) => {
                        *closed = true;
                        return Err(RecvError::Closed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        *closed = true;
                        return Err(RecvError::Io(e));
                    }
                }
            },
        }
    }

    /// The next message that is not a retransmission nor an OPTIONS probe, within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = match self.recv_raw(left).await {
                Ok(m) => m,
                Err(_) => return None,
            };
            if m.is_request() && m.method_name() == "OPTIONS" {
                self.on_options(&m).await;
                continue;
            }
            let key = if m.is_request() {
                format!(
                    "req {} {} {}",
                    m.method_name(),
                    m.top_branch(),
                    m.h("CSeq").unwrap_or_default()
                )
            } else {
                format!(
                    "resp {} {} {}",
                    m.code(),
                    m.top_branch(),
                    m.h("CSeq").unwrap_or_default()
                )
            };
            if !self.seen.insert(key) {
                self.absorbed += 1;
                continue;
            }
            return Some(m);
        }
    }

    /// The next message as it arrived (retransmissions included), OPTIONS requests handled
    /// as in [`Ua::next`].
    pub async fn next_raw(&mut self, within: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv_raw(left).await.ok()?;
            if m.is_request() && m.method_name() == "OPTIONS" {
                self.on_options(&m).await;
                continue;
            }
            return Some(m);
        }
    }

    async fn on_options(&mut self, m: &Incoming) {
        self.options_seen.push(m.msg.clone());
        if self.answer_options {
            let tag = format!("opt{}", super::msg::unique());
            self.reply(m, 200, Some(&tag), None, None).await;
        }
    }

    /// The next message; panics with `what` when none arrives within [`WAIT`].
    pub async fn expect(&mut self, what: &str) -> Incoming {
        self.expect_within(what, WAIT).await
    }

    /// The next message; panics with `what` when none arrives within `d`.
    pub async fn expect_within(&mut self, what: &str, d: Duration) -> Incoming {
        match self.next(d).await {
            Some(m) => m,
            None => panic!(
                "{} ({}): expected {what}, nothing arrived within {d:?}",
                self.local, self.transport
            ),
        }
    }

    /// The next message must be a `method` request.
    pub async fn expect_request(&mut self, method: &str) -> Incoming {
        self.expect_request_within(method, WAIT).await
    }

    /// The next message, within `d`, must be a `method` request.
    pub async fn expect_request_within(&mut self, method: &str, d: Duration) -> Incoming {
        let m = self.expect_within(method, d).await;
        assert!(
            m.is_request() && m.method_name() == method,
            "{}: expected a {method} request, got:\n{}",
            self.local,
            m.dump()
        );
        m
    }

    /// The next message must be a `status` response.
    pub async fn expect_response(&mut self, status: u16) -> Incoming {
        let m = self.expect(&format!("a {status} response")).await;
        assert_eq!(
            m.code(),
            status,
            "{}: expected {status}, got:\n{}",
            self.local,
            m.dump()
        );
        m
    }

    /// Skips provisional responses (listing them in the result) and returns the final one.
    pub async fn expect_final(&mut self) -> (Vec<u16>, Incoming) {
        self.expect_final_within(WAIT).await
    }

    /// Like [`Ua::expect_final`], each response within `d`.
    pub async fn expect_final_within(&mut self, d: Duration) -> (Vec<u16>, Incoming) {
        let mut provisional = Vec::new();
        loop {
            let m = self.expect_within("a final response", d).await;
            assert!(
                !m.is_request(),
                "{}: expected a response, got:\n{}",
                self.local,
                m.dump()
            );
            if m.code() >= 200 {
                return (provisional, m);
            }
            provisional.push(m.code());
        }
    }

    /// Every message that arrives within `d`, as it arrives, OPTIONS requests excluded
    /// (and not answered).
    pub async fn raw_for(&mut self, d: Duration) -> Vec<Incoming> {
        let deadline = tokio::time::Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_raw(left).await {
                Ok(m) if m.is_request() && m.method_name() == "OPTIONS" => continue,
                Ok(m) => out.push(m),
                Err(_) => return out,
            }
        }
    }

    /// Nothing but retransmissions and probes may arrive for `d`.
    pub async fn expect_nothing(&mut self, d: Duration, why: &str) {
        if let Some(m) = self.next(d).await {
            panic!(
                "{}: expected nothing ({why}), got:\n{}",
                self.local,
                m.dump()
            );
        }
    }

    /// Stream agents: the connection must end (EOF or error) within `d` without any SIP
    /// message arriving first.
    pub async fn expect_closed(&mut self, d: Duration) -> RecvError {
        match self.recv_raw(d).await {
            Ok(m) => panic!(
                "{}: expected the connection to be closed, got:\n{}",
                self.local,
                m.dump()
            ),
            Err(RecvError::Timeout) => panic!("{}: connection still open after {d:?}", self.local),
            Err(e) => e,
        }
    }
}

fn parse(b: Bytes) -> Message {
    let text = String::from_utf8_lossy(&b).into_owned();
    Message::parse(b, &Limits::DEFAULT).unwrap_or_else(|e| {
        panic!(
            "gateway sent an unparsable message ({:?}):\n{text}",
            e.error
        )
    })
}

/// Where a UDP response to `req` goes (RFC 3261 §18.2.2 with RFC 3581 rport).
fn response_address(req: &Incoming) -> SocketAddr {
    let Some(via) = req.hs("Via").into_iter().next() else {
        return req.from;
    };
    let sent_by = via
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .unwrap_or("");
    let received = param(&via, "received");
    let rport = param(&via, "rport").and_then(|p| p.parse::<u16>().ok());
    let parsed: Option<SocketAddr> = sent_by
        .parse()
        .ok()
        .or_else(|| format!("{sent_by}:5060").parse().ok());
    match parsed {
        Some(mut a) => {
            if let Some(ip) = received.and_then(|r| r.trim_matches(['[', ']']).parse().ok()) {
                a.set_ip(ip);
            }
            if let Some(p) = rport {
                a.set_port(p);
            }
            a
        }
        None => req.from,
    }
}

/// A fake peer's listening socket for TCP or TLS.
pub struct StreamServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl StreamServer {
    /// A TCP listener on `ip:0`.
    pub async fn tcp(ip: &str) -> StreamServer {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind TCP");
        let addr = listener.local_addr().expect("local addr");
        StreamServer {
            listener,
            tls: None,
            addr,
        }
    }

    /// A TLS listener on `ip:0`.
    pub async fn tls(ip: &str, cfg: Arc<rustls::ServerConfig>) -> StreamServer {
        let mut s = StreamServer::tcp(ip).await;
        s.tls = Some(TlsAcceptor::from(cfg));
        s
    }

    /// Accepts one connection (and its TLS handshake) within `within`.
    pub async fn accept(&self, within: Duration) -> Ua {
        let (tcp, peer) = tokio::time::timeout(within, self.listener.accept())
            .await
            .unwrap_or_else(|_| panic!("{}: no connection within {within:?}", self.addr))
            .expect("accept");
        tcp.set_nodelay(true).expect("nodelay");
        let local = tcp.local_addr().expect("local addr");
        match &self.tls {
            None => Ua::stream(Box::new(tcp), local, peer, "TCP"),
            Some(acceptor) => {
                let s = tokio::time::timeout(within, acceptor.accept(tcp))
                    .await
                    .expect("TLS accept timed out")
                    .expect("TLS accept");
                Ua::stream(Box::new(s), local, peer, "TLS")
            }
        }
    }

    /// No connection may arrive within `d`.
    pub async fn expect_no_connection(&self, d: Duration) {
        if let Ok(Ok((_, peer))) = tokio::time::timeout(d, self.listener.accept()).await {
            panic!("{}: unexpected connection from {peer}", self.addr);
        }
    }
}
