//! The RFC 3261 §17 transaction layer, sans-IO.
//!
//! [`TransactionLayer`] owns every server and client transaction of the proxy. It never
//! touches a socket or a clock: the caller feeds it parsed messages with the time
//! ([`TransactionLayer::on_request`], [`TransactionLayer::on_response`]), tells it what to
//! send ([`TransactionLayer::send_request`], [`TransactionLayer::send_response`]), and
//! drives its timers ([`TransactionLayer::poll_timeout`],
//! [`TransactionLayer::handle_timeout`]). What the layer wants done comes out of
//! [`TransactionLayer::poll_action`] (bytes to send, client timeouts the proxy must act on,
//! terminations); what observers (number policy, call timing) may want to know comes out of
//! [`TransactionLayer::poll_event`]. Both queues must be drained after every call.
//!
//! State machines: RFC 3261 §17.1.1, §17.1.2, §17.2.1 and §17.2.2 as updated by RFC 6026
//! (a 2xx to an INVITE moves both sides to *Accepted* for `64*T1` instead of terminating
//! them, so INVITE retransmissions are absorbed and 2xx retransmissions are matched and
//! forwarded), plus the proxy's Timer C (§16.6, §16.8) on client INVITE transactions and the
//! CANCEL rules of §9.1, §9.2 and §16.10.
//!
//! # Invariants
//!
//! - Every live transaction has its `Timeout` deadline armed, in every state, so every
//!   transaction terminates even if no message ever arrives again; a transaction is removed
//!   from every map the moment it terminates (RFC 3261: "destroyed the instant it enters
//!   Terminated"). When all deadlines have passed the layer is empty.
//! - The deadline set mirrors the transactions' timer cells exactly, so
//!   [`TransactionLayer::poll_timeout`] is the earliest real deadline, in O(log n).
//! - The number of live transactions (server plus client) never exceeds
//!   [`LayerConfig::max_transactions`]; a request beyond it gets
//!   [`RequestOutcome::Overloaded`] and creates nothing.
//! - Ids are never reused, so a stale id held by the proxy can only miss, never alias.
//! - Nothing read from the network can panic the layer: malformed input is reported as
//!   [`RequestOutcome::Invalid`] or [`ResponseOutcome::Invalid`].

mod build;
mod client;
mod key;
mod layer;
mod outbound;
mod server;
mod timers;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use client::ClientState;
pub use layer::{LayerConfig, TransactionLayer};
pub use server::ServerState;
pub(crate) use timers::DeadlineHeap;
pub use timers::{Millis, Timers};

use crate::sip::headers::HeaderError;
use crate::sip::Method;

pub use crate::transport::{Target, Transport};

/// A server transaction (a request we received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(u64);

/// A client transaction (a request we sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(u64);

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxId {
    /// A server transaction.
    Server(ServerId),
    /// A client transaction.
    Client(ClientId),
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (a request, a response, a retransmission, an ACK or a CANCEL).
    Send {
        /// Destination.
        to: Target,
        /// The whole message.
        bytes: Bytes,
    },
    /// A client transaction the proxy forwarded gave up. The proxy fails over to the next
    /// target or answers its server transaction (408 for [`Expiry::TimerB`] and
    /// [`Expiry::TimerF`]; for [`Expiry::TimerC`] the layer has already sent a CANCEL and
    /// the 487 will normally follow; for [`Expiry::CancelUnanswered`] the proxy answers
    /// itself). Not reported for the CANCELs the layer sends on its own.
    ClientTimedOut {
        /// The client transaction.
        client: ClientId,
        /// The server transaction it was forwarded for.
        server: Option<ServerId>,
        /// Which timer fired.
        expiry: Expiry,
    },
    /// The transaction is gone; its id will never be seen again.
    Terminated(TxId),
}

/// Why a transaction gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// Client INVITE got no response at all within `64*T1`.
    TimerB,
    /// Client INVITE got no final response within Timer C of its last provisional; the
    /// layer CANCELs it (§16.8) and keeps it open `64*T1` for the final response.
    TimerC,
    /// Client non-INVITE got no final response within `64*T1`.
    TimerF,
    /// Server INVITE sent a non-2xx final and got no ACK within `64*T1`.
    TimerH,
    /// A CANCELled client INVITE got no final response within `64*T1` of the CANCEL
    /// (§9.1); the transaction is destroyed.
    CancelUnanswered,
    /// A server transaction never got a final response from the proxy (leak guard, see
    /// [`Timers`]); removed without answering.
    NoFinalResponse,
}

/// An observable transaction event, for the number policy, call timing and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The transaction.
    pub tx: TxId,
    /// When it happened.
    pub at: Millis,
    /// What happened.
    pub kind: TxEvent,
}

/// What happened to a transaction. Server transactions report the responses they send,
/// client transactions the responses they receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// The transaction exists; `parent` is the server transaction a client one serves.
    Created {
        /// The request's method.
        method: Method,
        /// For a client transaction, the server transaction it was created for.
        parent: Option<ServerId>,
    },
    /// A provisional response: each one a client transaction receives (reliable provisionals,
    /// RFC 3262, may repeat, and are reported each time) or a server transaction sends.
    Provisional(u16),
    /// The first final response (later 2xx of a forked INVITE are not reported again).
    Final(u16),
    /// A timer gave up (see [`Expiry`]).
    TimedOut(Expiry),
    /// Server INVITE: a CANCEL arrived before the final response. Client INVITE: we sent
    /// (or will send after the first provisional) a CANCEL for it.
    Cancelled,
    /// The transaction was destroyed.
    Terminated,
}

/// What [`TransactionLayer::on_request`] made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new server transaction (for INVITE, 100 Trying is already queued). The proxy
    /// decides: forward it with [`TransactionLayer::send_request`] or answer it with
    /// [`TransactionLayer::send_response`].
    New(ServerId),
    /// A retransmission, absorbed; the last response, if the state calls for it, is queued.
    Retransmission(ServerId),
    /// The ACK for a non-2xx final response we sent: absorbed (it ends the transaction's
    /// retransmissions). Never forwarded.
    AckAbsorbed(ServerId),
    /// An ACK that belongs to no transaction (the ACK for a 2xx, RFC 3261 §17.2.3) or that
    /// matched a server INVITE in *Accepted* (RFC 6026 §7.1): the proxy forwards it
    /// statelessly (§16.11).
    AckPassThrough {
        /// The INVITE transaction it matched, if any.
        server: Option<ServerId>,
    },
    /// A CANCEL for an INVITE still waiting for a final response: 200 is queued on the
    /// CANCEL's own transaction; the proxy must now CANCEL the INVITE's client transactions
    /// ([`TransactionLayer::cancel_branches`]) and will forward the 487 that results; if it
    /// has not forwarded the INVITE yet, it answers the INVITE 487 itself.
    Cancel {
        /// The CANCEL's server transaction.
        cancel: ServerId,
        /// The INVITE server transaction being cancelled.
        invite: ServerId,
    },
    /// A CANCEL answered by the layer with nothing else to do: 200 when the INVITE already
    /// had a final response (`invite` is `Some`), 481 when no INVITE matched.
    CancelAnswered {
        /// The CANCEL's server transaction.
        cancel: ServerId,
        /// The INVITE it matched.
        invite: Option<ServerId>,
    },
    /// The transaction table is full: nothing was created; answer 503 statelessly.
    Overloaded,
    /// The headers needed for matching are missing or malformed.
    Invalid(HeaderError),
}

/// What [`TransactionLayer::on_response`] made of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// A response the proxy must consider for forwarding upstream on `server` (RFC 3261
    /// §16.7): every provisional, every final that changed the transaction's state, and
    /// every 2xx to an INVITE in *Accepted* (forked or retransmitted 2xx).
    Forward {
        /// The client transaction it matched.
        client: ClientId,
        /// The server transaction that client transaction was created for.
        server: Option<ServerId>,
        /// The status code.
        status: u16,
    },
    /// A retransmission (the ACK for a non-2xx is re-sent), a response to one of the
    /// layer's own CANCELs, or a response the state ignores: nothing to forward.
    Absorbed(ClientId),
    /// No client transaction matches: RFC 6026 §7.2 says a proxy drops it.
    Stray,
    /// The headers needed for matching are missing or malformed.
    Invalid(HeaderError),
}

/// Result of [`TransactionLayer::cancel_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStatus {
    /// The CANCEL went out on its own client transaction.
    Sent(ClientId),
    /// No provisional response yet: the CANCEL goes out when the first one arrives
    /// (§9.1), unless a final response or Timer B comes first.
    Deferred,
    /// Already cancelled, already final, or not an INVITE: nothing to cancel.
    NotPending,
}

/// Why a call from the proxy was refused. Nothing was sent or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The transaction id is not (or no longer) live.
    #[error("no such transaction")]
    Unknown,
    /// The transaction table is full.
    #[error("transaction table full")]
    Overloaded,
    /// The state does not allow this response (e.g. a final after a non-2xx final).
    #[error("status {status} not allowed in state {state}")]
    WrongState {
        /// The state's name.
        state: &'static str,
        /// The status refused.
        status: u16,
    },
    /// A status outside 100..=699.
    #[error("invalid status {0}")]
    BadStatus(u16),
    /// The message is a response, or an ACK (which never has a client transaction: send it
    /// directly).
    #[error("not a request that starts a transaction")]
    NotATransaction,
    /// The request's top Via has no RFC 3261 branch, or one already in use.
    #[error("top Via branch missing, without magic cookie, or already in use")]
    BadBranch,
    /// A header needed for the transaction is missing or malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
}
