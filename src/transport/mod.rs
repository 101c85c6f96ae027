//! Transports: UDP, TCP and TLS sockets carrying SIP, and the addressing types the protocol
//! core uses to name a peer.
//!
//! The types in this file are plain data; the socket loops live in the submodules and are the
//! only code (with `app`) that touches the network. [`Transports::start`] binds every
//! listener of a [`TransportSetup`] and hands each received message to a [`Sink`] on the task
//! that received it; [`Transports::send`] never blocks its caller.
//!
//! # Layout
//!
//! - `transports`: the [`Transports`] handle: start, send, TLS reload.
//! - `udp`: SO_REUSEPORT socket groups and their receive loops.
//! - `stream`: TCP/TLS accept loops and outgoing connects.
//! - `conn`: one stream connection (framer, reader, writer) and the table of live ones.
//! - `tls`: rustls configurations, the Microsoft peer-name check, [`TlsSetup`].
//! - `setup`: [`TransportSetup`], built from the configuration.
//! - [`devcerts`]: a development CA and certificates (`ocedge certs dev`).
//!
//! # Invariants
//!
//! - Every queue and count is bounded: connections per listener and outgoing, messages queued
//!   per connection, UDP sends waiting for a full socket buffer, bytes buffered per
//!   connection ([`crate::sip::Limits::max_stream_buffer`]).
//! - One connection's failure (garbage, a failed handshake, a framing error, a stalled
//!   writer) closes that connection only; accept and receive loops end only on cancellation.
//! - A stream connection, accepted or opened by us, is registered under its transport and
//!   peer address while it lives, and every send to that peer goes through it.

mod conn;
pub mod devcerts;
pub mod expiry;
mod setup;
mod stats;
mod stream;
mod tls;
mod transports;
mod udp;

use std::fmt;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::Deserialize;

pub use setup::{ListenerSetup, TransportSetup};
pub use stats::TransportStats;
pub use tls::{TlsError, TlsSetup};
pub use transports::Transports;

/// A transport protocol. Reliability decides which timers run (RFC 3261 §17.1.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP: unreliable, requests and responses are retransmitted by the transactions.
    Udp,
    /// TCP: reliable.
    Tcp,
    /// TLS over TCP: reliable.
    Tls,
}

impl Transport {
    /// True for stream transports, where Timers A, E and G do not run and D, I, J, K are 0.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in Via headers and `transport=` URI parameters.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Lowercase name, as in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Where a message goes or came from: a transport and a socket address. For a stream
/// transport the I/O layer maps it to the connection (reusing the one a request came in on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport.
    pub transport: Transport,
    /// The peer's address.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.addr)
    }
}

/// One received message: a UDP datagram, or one framed message from a stream connection.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The message bytes (at most `Limits::max_message`).
    pub bytes: Bytes,
    /// Who sent it, over which transport; sending to it reuses the same connection.
    pub source: Target,
    /// Index into `config.listen` of the listener it arrived on. For a connection we opened,
    /// the listener of the same side and transport (the one whose address we advertise).
    pub listener: usize,
    /// Our local address it arrived at. For UDP, the listener's bound address (so
    /// unspecified for a listener bound to `0.0.0.0` or `[::]`).
    pub local: SocketAddr,
    /// TLS only: on a Microsoft-side listener, the configured peer name the client
    /// certificate matched; on a connection we opened, the server name we verified.
    pub tls_peer_name: Option<String>,
}

/// Receives every inbound message, on the task that read it, so that parsing runs in
/// parallel on the receive tasks. Must not block: hand heavy work to another task.
pub trait Sink: Send + Sync + 'static {
    /// Takes one message.
    fn deliver(&self, msg: Inbound);
}

impl<F: Fn(Inbound) + Send + Sync + 'static> Sink for F {
    fn deliver(&self, msg: Inbound) {
        self(msg)
    }
}

/// Why the transports could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A listener's socket could not be created or bound.
    #[error("cannot bind {transport} listener {index} on {addr}: {source}")]
    Bind {
        /// Index into `config.listen`.
        index: usize,
        /// `udp`, `tcp` or `tls`.
        transport: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// A TLS listener without a `[tls]` table.
    #[error("listener {index} uses TLS but no [tls] certificate is configured")]
    NoTls {
        /// Index into `config.listen`.
        index: usize,
    },
    /// A Microsoft-side TLS listener with an empty `microsoft.peer_names`: it would refuse
    /// every client.
    #[error("listener {index} is a Microsoft-side TLS listener but microsoft.peer_names is empty")]
    NoPeerNames {
        /// Index into `config.listen`.
        index: usize,
    },
    /// The certificates could not be loaded or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Why a message could not even be queued for sending. Failures after queuing (connect,
/// handshake, write) are logged and counted, never returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No UDP listener of the target's address family to send from.
    #[error("no UDP socket to send to {target}")]
    NoSocket {
        /// The destination.
        target: Target,
    },
    /// The connection's send queue (or the UDP overflow queue) is full; the message was
    /// dropped.
    #[error("send queue to {target} is full")]
    QueueFull {
        /// The destination.
        target: Target,
    },
    /// As many outgoing connections as `transport.max_connections` are already open.
    #[error("too many outgoing connections, not connecting to {target}")]
    TooManyConnections {
        /// The destination.
        target: Target,
    },
    /// A TLS destination but no `[tls]` certificate configured.
    #[error("no TLS certificate configured to connect to {target}")]
    NoTls {
        /// The destination.
        target: Target,
    },
    /// The TLS name to verify is not a valid DNS name.
    #[error("invalid TLS server name {name:?}")]
    BadTlsName {
        /// The name given.
        name: String,
    },
    /// The UDP socket refused the datagram at once (e.g. too large, network unreachable).
    #[error("cannot send to {target}: {source}")]
    Io {
        /// The destination.
        target: Target,
        /// The socket error.
        source: io::Error,
    },
    /// The transports are shutting down.
    #[error("transports are shutting down")]
    ShuttingDown,
}

/// Whether the `count`th occurrence of a peer-triggered event (refused connection, failed
/// handshake, framing error, dropped message) is logged at warn rather than debug: on powers
/// of two, so at most 64 warnings per counter over a process lifetime. A flood shows in the
/// counters without flooding the log, and the first occurrences are always visible.
pub(crate) fn warn_worthy(count: u64) -> bool {
    count.is_power_of_two()
}
