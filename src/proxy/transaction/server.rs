//! One server transaction: RFC 3261 §17.2.1 (INVITE, with RFC 6026's *Accepted* state) and
//! §17.2.2 (non-INVITE).
//!
//! ```text
//! INVITE:      Proceeding --1xx--> Proceeding
//!              Proceeding --2xx--> Accepted  --Timer L (64*T1)--> gone
//!              Proceeding --300-699--> Completed --ACK--> Confirmed --Timer I--> gone
//!                                      Completed --Timer H--> gone (TimedOut(TimerH))
//! non-INVITE:  Trying --1xx--> Proceeding --final--> Completed --Timer J--> gone
//! ```
//!
//! Timer G re-sends a non-2xx final on UDP (T1 doubling, capped at T2) until the ACK or
//! Timer H. On reliable transports Timers I and J are zero: the transaction ends at once.
//! Before the final response, the `Timeout` cell holds the leak guard
//! ([`super::Timers::server_guard`]), so the cell is armed in every state.

use std::time::Duration;

use bytes::Bytes;

use super::key::Key;
use super::layer::{Effects, Step};
use super::timers::{Cells, Millis, Slot};
use super::{ClientId, Expiry, ServerId, Target, TxError, TxEvent, TxId};
use crate::sip::Method;

/// The state of a server transaction (Terminated transactions no longer exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE: nothing sent yet.
    Trying,
    /// A provisional was sent (INVITE starts here, with its 100 Trying).
    Proceeding,
    /// A final response was sent (non-2xx for INVITE); retransmissions get it again.
    Completed,
    /// INVITE: the ACK for the non-2xx arrived; absorbing further ACKs for Timer I.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026); further 2xx pass through, INVITE retransmissions
    /// are absorbed, ACKs are passed to the proxy.
    Accepted,
}

impl ServerState {
    fn name(self) -> &'static str {
        match self {
            ServerState::Trying => "Trying",
            ServerState::Proceeding => "Proceeding",
            ServerState::Completed => "Completed",
            ServerState::Confirmed => "Confirmed",
            ServerState::Accepted => "Accepted",
        }
    }
}

/// What an ACK matched to a server transaction means.
pub(crate) enum AckResult {
    /// Hop-by-hop ACK for our non-2xx: absorbed.
    Absorbed(Step),
    /// ACK in Accepted: the proxy forwards it.
    PassThrough,
}

/// A server transaction.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) id: ServerId,
    pub(crate) key: Key,
    pub(crate) method: Method,
    pub(crate) state: ServerState,
    /// Where responses go: the source of the request.
    pub(crate) peer: Target,
    /// The last response sent, for retransmissions.
    last: Option<Bytes>,
    /// Current Timer G interval.
    interval: Duration,
    pub(crate) cells: Cells,
    /// A CANCEL for this INVITE was already reported.
    pub(crate) cancelled: bool,
    /// Client transactions created for this one (the proxy's branches).
    pub(crate) clients: Vec<ClientId>,
}

impl Server {
    /// Creates the transaction, arms its guard and reports it.
    pub(crate) fn new(
        id: ServerId,
        key: Key,
        method: Method,
        peer: Target,
        now: Millis,
        fx: &mut Effects,
    ) -> Server {
        let invite = method == Method::Invite;
        let mut s = Server {
            id,
            key,
            method,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            peer,
            last: None,
            interval: Duration::ZERO,
            cells: [None; 2],
            cancelled: false,
            clients: Vec::new(),
        };
        let guard = now + fx.timers.server_guard(invite);
        fx.arm(s.tx(), &mut s.cells, Slot::Timeout, Some(guard));
        fx.event(
            s.tx(),
            now,
            TxEvent::Created {
                method,
                parent: None,
            },
        );
        s
    }

    pub(crate) fn tx(&self) -> TxId {
        TxId::Server(self.id)
    }

    #[cfg(test)]
    pub(crate) fn holds_response(&self) -> bool {
        self.last.is_some()
    }

    pub(crate) fn is_invite(&self) -> bool {
        self.method == Method::Invite
    }

    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    /// A retransmitted request: re-send the last response where §17.2.1/§17.2.2 say so.
    /// Trying has nothing to send; Confirmed and Accepted absorb silently.
    pub(crate) fn on_retransmission(&self, fx: &mut Effects) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            if let Some(last) = &self.last {
                fx.send(self.peer, last.clone());
            }
        }
    }

    /// An ACK matched this (INVITE) transaction.
    pub(crate) fn on_ack(&mut self, now: Millis, fx: &mut Effects) -> AckResult {
        match self.state {
            ServerState::Completed => {
                // Confirmed absorbs retransmitted INVITEs and ACKs: the final is not re-sent.
                self.state = ServerState::Confirmed;
                self.last = None;
                fx.arm(self.tx(), &mut self.cells, Slot::Retransmit, None);
                if self.reliable() {
                    return AckResult::Absorbed(Step::Terminate);
                }
                let i = now + fx.timers.t4;
                fx.arm(self.tx(), &mut self.cells, Slot::Timeout, Some(i));
                AckResult::Absorbed(Step::Continue)
            }
            ServerState::Accepted => AckResult::PassThrough,
            // Confirmed: a retransmitted ACK. Proceeding: an ACK before any final is
            // meaningless; it must not be forwarded as if it acknowledged a 2xx.
            _ => AckResult::Absorbed(Step::Continue),
        }
    }

    /// The proxy (or the layer) sends a response on this transaction.
    pub(crate) fn respond(
        &mut self,
        now: Millis,
        bytes: Bytes,
        status: u16,
        fx: &mut Effects,
    ) -> Result<Step, TxError> {
        if !(100..=699).contains(&status) {
            return Err(TxError::BadStatus(status));
        }
        let pending = matches!(self.state, ServerState::Trying | ServerState::Proceeding);
        let invite = self.is_invite();
        let tx = self.tx();
        match status {
            100..=199 if pending => {
                self.state = ServerState::Proceeding;
                let guard = now + fx.timers.server_guard(invite);
                fx.arm(tx, &mut self.cells, Slot::Timeout, Some(guard));
                fx.event(tx, now, TxEvent::Provisional(status));
            }
            200..=299 if pending && invite => {
                self.state = ServerState::Accepted;
                let l = now + fx.timers.t64();
                fx.arm(tx, &mut self.cells, Slot::Timeout, Some(l));
                fx.event(tx, now, TxEvent::Final(status));
            }
            // A further 2xx (another fork, or the UAS retransmitting) passes through.
            200..=299 if self.state == ServerState::Accepted => {}
            _ if pending => {
                self.state = ServerState::Completed;
                fx.event(tx, now, TxEvent::Final(status));
                let timeout = match (invite, self.reliable()) {
                    (true, reliable) => {
                        if !reliable {
                            self.interval = fx.timers.first_interval();
                            let g = now + self.interval;
                            fx.arm(tx, &mut self.cells, Slot::Retransmit, Some(g));
                        }
                        fx.timers.t64() // Timer H, all transports
                    }
                    (false, false) => fx.timers.t64(), // Timer J
                    (false, true) => Duration::ZERO,
                };
                fx.send(self.peer, bytes.clone());
                self.last = Some(bytes);
                if timeout.is_zero() {
                    return Ok(Step::Terminate);
                }
                fx.arm(tx, &mut self.cells, Slot::Timeout, Some(now + timeout));
                return Ok(Step::Continue);
            }
            _ => {
                return Err(TxError::WrongState {
                    state: self.state.name(),
                    status,
                })
            }
        }
        if self.state == ServerState::Accepted {
            // Accepted absorbs retransmitted INVITEs without answering (RFC 6026), so
            // nothing is kept for the 32 s of Timer L: not a 2xx (the largest message of a
            // call), nor the last provisional.
            self.last = None;
            fx.send(self.peer, bytes);
        } else {
            fx.send(self.peer, bytes.clone());
            self.last = Some(bytes);
        }
        Ok(Step::Continue)
    }

    /// A deadline of this transaction passed (its cell is already cleared).
    pub(crate) fn on_timer(&mut self, now: Millis, slot: Slot, fx: &mut Effects) -> Step {
        let tx = self.tx();
        match (slot, self.state) {
            (Slot::Retransmit, ServerState::Completed) => {
                // Timer G.
                if let Some(last) = &self.last {
                    fx.send(self.peer, last.clone());
                }
                self.interval = fx.timers.next_capped(self.interval);
                let g = now + self.interval;
                fx.arm(tx, &mut self.cells, Slot::Retransmit, Some(g));
                Step::Continue
            }
            (Slot::Retransmit, _) => Step::Continue,
            (Slot::Timeout, ServerState::Trying | ServerState::Proceeding) => {
                fx.event(tx, now, TxEvent::TimedOut(Expiry::NoFinalResponse));
                Step::Terminate
            }
            (Slot::Timeout, ServerState::Completed) if self.is_invite() => {
                fx.event(tx, now, TxEvent::TimedOut(Expiry::TimerH));
                Step::Terminate
            }
            // Timers J, I and L.
            (Slot::Timeout, _) => Step::Terminate,
        }
    }
}
