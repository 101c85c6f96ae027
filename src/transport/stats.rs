//! Transport counters: plain atomics, incremented on the I/O paths and read by whoever wants
//! them (tests today, the metrics exporter later).
//!
//! Every counter only grows. Relaxed ordering is enough: a counter is a tally, never used to
//! synchronise other memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every listener and connection of one [`super::Transports`].
#[derive(Debug, Default)]
pub struct TransportStats {
    /// UDP datagrams received and delivered.
    pub datagrams_in: AtomicU64,
    /// UDP datagrams sent.
    pub datagrams_out: AtomicU64,
    /// UDP datagrams larger than `Limits::max_message`, dropped unparsed.
    pub datagrams_oversize: AtomicU64,
    /// UDP sends the socket refused (other than a full buffer).
    pub udp_send_errors: AtomicU64,
    /// Messages received on stream connections and delivered.
    pub stream_messages_in: AtomicU64,
    /// Messages written to stream connections.
    pub stream_messages_out: AtomicU64,
    /// Keep-alive pings (double CRLF) answered with a pong.
    pub pings_answered: AtomicU64,
    /// TCP/TLS connections accepted by a listener.
    pub connections_accepted: AtomicU64,
    /// Connections refused: at accept because the listener had `max_connections` already,
    /// or outgoing because `max_connections` outgoing connections are open.
    pub connections_refused: AtomicU64,
    /// Outgoing connections established (TLS: handshake done).
    pub connections_opened: AtomicU64,
    /// Outgoing connects that failed or timed out (TLS handshakes count as handshake
    /// failures instead).
    pub connect_failures: AtomicU64,
    /// Stream connections closed, for whatever reason.
    pub connections_closed: AtomicU64,
    /// TLS handshakes that failed or timed out, in either direction.
    pub handshake_failures: AtomicU64,
    /// Microsoft-side client certificates that chained to the CA but matched no configured
    /// peer name (also counted in `handshake_failures`).
    pub tls_peer_rejected: AtomicU64,
    /// Stream connections closed for a framing error (malformed or oversized input).
    pub framing_errors: AtomicU64,
    /// Stream connections closed after `idle_timeout` without traffic.
    pub idle_closed: AtomicU64,
    /// Stream connections closed because a write stalled past the handshake timeout.
    pub write_stalls: AtomicU64,
    /// Messages dropped because a send queue was full.
    pub send_queue_drops: AtomicU64,
}

/// Adds one and returns the new value (for [`super::warn_worthy`]).
pub(crate) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}
