//! Helpers shared by the `transport_*` integration tests: a collecting sink, a started
//! `Transports` that stops itself, SIP messages, raw clients, and TLS material.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ocedge::config::{Side, Transport};
use ocedge::sip::framing::{Frame, StreamFramer};
use ocedge::sip::Limits;
use ocedge::transport::devcerts::{DevCa, Leaf};
use ocedge::transport::{Inbound, ListenerSetup, TlsSetup, TransportSetup, Transports};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Upper bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running `Transports` with the messages it delivered; stops on drop.
pub struct Running {
    pub transports: Transports,
    pub inbox: mpsc::UnboundedReceiver<Inbound>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl Running {
    /// Starts `setup` with a sink that collects into `inbox`.
    pub async fn start(setup: &TransportSetup) -> Running {
        let (tx, inbox) = mpsc::unbounded_channel();
        let sink = Arc::new(move |m: Inbound| {
            let _ = tx.send(m);
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let transports = Transports::start(setup, sink, cancel.clone(), &tracker)
            .await
            .expect("start transports");
        Running {
            transports,
            inbox,
            cancel,
            tracker,
        }
    }

    /// The next delivered message, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> Inbound {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("no message delivered in time")
            .expect("sink closed")
    }

    /// Asserts nothing is delivered within `d`.
    pub async fn nothing_for(&mut self, d: Duration) {
        if let Ok(Some(m)) = tokio::time::timeout(d, self.inbox.recv()).await {
            panic!("unexpected message from {}: {:?}", m.source, m.bytes);
        }
    }

    pub fn addr(&self, listener: usize) -> SocketAddr {
        self.transports
            .local_addr(listener)
            .expect("listener bound")
    }

    /// Cancels and waits (bounded) for every task to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(WAIT, self.tracker.wait())
            .await
            .expect("transport tasks did not stop in time");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A setup with the given listeners, small bounds suited to tests.
pub fn setup(listeners: &[(Side, Transport, &str)]) -> TransportSetup {
    let mut s = TransportSetup::new(
        listeners
            .iter()
            .map(|(side, transport, addr)| ListenerSetup {
                side: *side,
                transport: *transport,
                addr: addr.parse().expect("listener address"),
            })
            .collect(),
    );
    s.transport.udp_sockets = 2;
    s.transport.max_connections = 16;
    s.transport.send_queue = 64;
    s.limits = Limits::DEFAULT;
    s
}

/// An OPTIONS request with `tag` in its Call-ID and `body` as body.
pub fn sip(tag: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@example.net SIP/2.0\r\n\
         Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK{tag}\r\n\
         Call-ID: {tag}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one framed SIP message (skipping keep-alives) from a stream, within [`WAIT`].
pub async fn read_message<R: AsyncRead + Unpin>(rd: &mut R, framer: &mut StreamFramer) -> Bytes {
    let fut = async {
        loop {
            match framer.next_frame().expect("valid framing") {
                Some(Frame::Message(m)) => return m,
                Some(_) => continue,
                None => {}
            }
            let n = rd.read_buf(&mut framer.recv_buf()).await.expect("read");
            assert!(n > 0, "connection closed before a message arrived");
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("no message in time")
}

/// Reads until end of stream or error, within [`WAIT`]; true if the peer closed.
pub async fn closed_by_peer<R: AsyncRead + Unpin>(rd: &mut R) -> bool {
    let fut = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, fut).await.unwrap_or(false)
}

/// Polls `cond` every 10 ms until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One counter of the running transports.
pub fn count(
    r: &Running,
    f: impl Fn(&ocedge::transport::TransportStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(r.transports.stats()).load(std::sync::atomic::Ordering::Relaxed)
}

/// A test PKI: a CA and leaves it signs.
pub struct Pki {
    pub ca: DevCa,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        Pki {
            ca: DevCa::new(name).expect("CA"),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.ca.issue(names).expect("leaf")
    }

    /// A `TlsSetup` with `leaf` as our certificate, this CA as roots.
    pub fn setup(&self, leaf: &Leaf, peer_names: &[&str]) -> TlsSetup {
        TlsSetup::from_pem(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            self.ca.cert_pem().as_bytes(),
            peer_names.iter().map(|s| (*s).to_owned()).collect(),
        )
        .expect("TLS setup")
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_and_key(leaf: &Leaf) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
    )
}

/// A rustls client trusting `pki`'s CA, presenting `cert` if given.
pub fn client_config(pki: &Pki, cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots());
    let config = match cert {
        Some(leaf) => {
            let (chain, key) = chain_and_key(leaf);
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A rustls server with `cert`, requiring a client certificate chaining to `pki`'s CA.
pub fn server_config(pki: &Pki, cert: &Leaf) -> Arc<rustls::ServerConfig> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(pki.roots()),
        provider(),
    )
    .build()
    .unwrap();
    let (chain, key) = chain_and_key(cert);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Connects a TLS client to `addr`, verifying the server as `name`.
pub async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timeout"))?
}

/// Whether `::1` can be bound here (some CI containers have no IPv6 loopback).
pub fn ipv6_available() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}
