//! One client transaction: RFC 3261 §17.1.1 (INVITE, with RFC 6026's *Accepted* state and
//! the proxy's Timer C) and §17.1.2 (non-INVITE).
//!
//! ```text
//! INVITE:      Calling --1xx--> Proceeding --1xx--> Proceeding (Timer C restarts on >100)
//!              Calling/Proceeding --2xx--> Accepted --Timer M (64*T1)--> gone
//!              Calling/Proceeding --300-699 (ACK sent)--> Completed --Timer D--> gone
//!              Calling --Timer B--> gone (TimedOut(TimerB))
//!              Proceeding --Timer C--> CANCEL sent, wait 64*T1 --> gone (CancelUnanswered)
//! non-INVITE:  Trying --1xx--> Proceeding --final--> Completed --Timer K--> gone
//!              Trying/Proceeding --Timer F--> gone (TimedOut(TimerF))
//! ```
//!
//! Timer A (INVITE) retransmits on UDP at T1, 2T1, 4T1, … without a cap (§17.1.1.2);
//! Timer E (non-INVITE) doubles up to T2, and is T2 once a provisional arrived. Neither
//! runs on reliable transports, where D and K are zero. The `Timeout` cell is armed in
//! every state (B, C or the CANCEL wait, F, D, K, M).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;

use super::build;
use super::key::Key;
use super::layer::Effects;
use super::timers::{Cells, Millis, Slot};
use super::{Action, ClientId, Expiry, ServerId, Target, TxEvent, TxId};
use crate::sip::{Limits, Message, Method};

/// The state of a client transaction (Terminated transactions no longer exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, no response yet.
    Calling,
    /// Non-INVITE sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final (non-2xx for INVITE) arrived; retransmissions of it are absorbed.
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026); further 2xx are forwarded.
    Accepted,
}

/// Where a client INVITE stands with respect to CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    None,
    /// Asked for before any provisional: sent when the first one arrives.
    Pending,
    /// Sent (or attempted); the `Timeout` cell holds the 64*T1 wait.
    Sent,
}

/// What the layer must do after a client transaction handled an input.
#[derive(Debug, Default)]
pub(crate) struct Reaction {
    /// Report the response to the proxy.
    pub(crate) forward: bool,
    /// Send the CANCEL for this INVITE now: the layer calls [`Client::cancel_sent`] and
    /// creates the CANCEL's own transaction.
    pub(crate) send_cancel: bool,
    /// Destroy the transaction.
    pub(crate) terminate: bool,
}

/// The request a client transaction holds: parsed when it was given parsed, else only its
/// bytes. A request the proxy forwards is its own edit of a message it validated; parsing
/// it again was 7% of the proxy's instructions per call, and only an ACK for a non-2xx
/// final or a CANCEL needs it parsed (then parsed for that, and not kept).
#[derive(Debug)]
pub(crate) enum Held {
    /// Boxed: a parsed message is hundreds of bytes, and rare here (probes, CANCELs).
    Parsed(Box<Message>),
    Raw(Bytes),
}

impl Held {
    /// What goes on the wire.
    pub(crate) fn bytes(&self) -> &Bytes {
        match self {
            Held::Parsed(m) => m.buf(),
            Held::Raw(b) => b,
        }
    }

    /// The request parsed (with `limits`, the gateway's own); `None` for bytes that do
    /// not parse (the proxy's edit of a valid request always does).
    pub(crate) fn parsed(&self, limits: &Limits) -> Option<Cow<'_, Message>> {
        match self {
            Held::Parsed(m) => Some(Cow::Borrowed(m)),
            Held::Raw(b) => Message::parse(b.clone(), limits).ok().map(Cow::Owned),
        }
    }
}

/// A client transaction.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: ClientId,
    pub(crate) key: Key,
    /// The request as sent: retransmitted, and the source of our ACK and CANCEL. Dropped
    /// once a final response arrives (nothing needs it then), so a transaction lingering in
    /// Completed or Accepted holds only its key, timers and ACK.
    pub(crate) request: Option<Held>,
    pub(crate) invite: bool,
    pub(crate) state: ClientState,
    pub(crate) target: Target,
    pub(crate) server: Option<ServerId>,
    /// Set on the CANCELs the layer creates itself: the INVITE they cancel.
    pub(crate) cancel_of: Option<ClientId>,
    pub(crate) cancel: Cancel,
    interval: Duration,
    pub(crate) cells: Cells,
    /// The ACK sent for our non-2xx final, re-sent for each retransmission of it.
    ack: Option<Bytes>,
}

impl Client {
    /// Creates the transaction, sends the request and arms its timers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        id: ClientId,
        key: Key,
        request: Held,
        method: Method,
        target: Target,
        server: Option<ServerId>,
        cancel_of: Option<ClientId>,
        now: Millis,
        fx: &mut Effects,
    ) -> Client {
        let invite = method == Method::Invite;
        let mut c = Client {
            id,
            key,
            request: Some(request),
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            target,
            server,
            cancel_of,
            cancel: Cancel::None,
            interval: fx.timers.first_interval(),
            cells: [None; 2],
            ack: None,
        };
        let tx = c.tx();
        fx.event(
            tx,
            now,
            TxEvent::Created {
                method,
                parent: server,
            },
        );
        if let Some(r) = &c.request {
            fx.send(target, r.bytes().clone());
        }
        if !target.transport.is_reliable() {
            fx.arm(tx, &mut c.cells, Slot::Retransmit, Some(now + c.interval));
        }
        // Timer B or F.
        fx.arm(tx, &mut c.cells, Slot::Timeout, Some(now + fx.timers.t64()));
        c
    }

    pub(crate) fn tx(&self) -> TxId {
        TxId::Client(self.id)
    }

    fn reliable(&self) -> bool {
        self.target.transport.is_reliable()
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(
        &mut self,
        now: Millis,
        msg: &Message,
        status: u16,
        fx: &mut Effects,
    ) -> Reaction {
        let tx = self.tx();
        let pending = matches!(
            self.state,
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding
        );
        let mut r = Reaction::default();
        match status {
            100..=199 if pending => {
                let was_calling = self.state == ClientState::Calling;
                self.state = ClientState::Proceeding;
                if self.invite {
                    fx.arm(tx, &mut self.cells, Slot::Retransmit, None);
                    // Timer C replaces B on leaving Calling and restarts on every
                    // provisional other than 100 (§16.7 step 2), unless a CANCEL is out.
                    if self.cancel != Cancel::Sent && (was_calling || status > 100) {
                        let c = now + fx.timers.c;
                        fx.arm(tx, &mut self.cells, Slot::Timeout, Some(c));
                    }
                    r.send_cancel = self.cancel == Cancel::Pending;
                } else {
                    // Timer E keeps running, at T2 from its next firing.
                    self.interval = fx.timers.t2.max(Duration::from_millis(1));
                }
                fx.event(tx, now, TxEvent::Provisional(status));
                r.forward = true;
            }
            200..=299 if pending && self.invite => {
                self.state = ClientState::Accepted;
                self.request = None;
                fx.arm(tx, &mut self.cells, Slot::Retransmit, None);
                let m = now + fx.timers.t64();
                fx.arm(tx, &mut self.cells, Slot::Timeout, Some(m));
                fx.event(tx, now, TxEvent::Final(status));
                r.forward = true;
            }
            200..=299 if self.state == ClientState::Accepted => r.forward = true,
            200..=699 if pending => {
                self.state = ClientState::Completed;
                fx.arm(tx, &mut self.cells, Slot::Retransmit, None);
                fx.event(tx, now, TxEvent::Final(status));
                r.forward = true;
                let linger = if self.invite {
                    // §17.1.1.3: the hop-by-hop ACK, sent to where the INVITE went.
                    self.ack = self
                        .request
                        .as_ref()
                        .and_then(|h| h.parsed(&fx.limits))
                        .and_then(|r| build::ack(&r, msg));
                    if let Some(ack) = &self.ack {
                        fx.send(self.target, ack.clone());
                    }
                    fx.timers.d // Timer D
                } else {
                    fx.timers.t4 // Timer K
                };
                self.request = None;
                if self.reliable() {
                    r.terminate = true;
                } else {
                    fx.arm(tx, &mut self.cells, Slot::Timeout, Some(now + linger));
                }
            }
            300..=699 if self.state == ClientState::Completed && self.invite => {
                if let Some(ack) = &self.ack {
                    fx.send(self.target, ack.clone());
                }
            }
            _ => {}
        }
        r
    }

    /// The proxy wants this INVITE cancelled: returns true when the CANCEL must go out now.
    pub(crate) fn request_cancel(&mut self, now: Millis, fx: &mut Effects) -> Option<bool> {
        if !self.invite || self.cancel != Cancel::None {
            return None;
        }
        match self.state {
            ClientState::Calling => {
                self.cancel = Cancel::Pending;
                fx.event(self.tx(), now, TxEvent::Cancelled);
                Some(false)
            }
            ClientState::Proceeding => {
                fx.event(self.tx(), now, TxEvent::Cancelled);
                Some(true)
            }
            _ => None,
        }
    }

    /// The CANCEL is going out now: wait `64*T1` for the final response (§9.1).
    pub(crate) fn cancel_sent(&mut self, now: Millis, fx: &mut Effects) {
        self.cancel = Cancel::Sent;
        let wait = now + fx.timers.t64();
        fx.arm(self.tx(), &mut self.cells, Slot::Timeout, Some(wait));
    }

    /// A deadline of this transaction passed (its cell is already cleared).
    pub(crate) fn on_timer(&mut self, now: Millis, slot: Slot, fx: &mut Effects) -> Reaction {
        let tx = self.tx();
        let mut r = Reaction::default();
        match (slot, self.state) {
            (Slot::Retransmit, ClientState::Calling) => {
                // Timer A: doubles without a cap; Timer B ends it.
                if let Some(r) = &self.request {
                    fx.send(self.target, r.bytes().clone());
                }
                self.interval = self.interval.saturating_mul(2);
                let a = now + self.interval;
                fx.arm(tx, &mut self.cells, Slot::Retransmit, Some(a));
            }
            (Slot::Retransmit, ClientState::Trying | ClientState::Proceeding) if !self.invite => {
                // Timer E.
                if let Some(r) = &self.request {
                    fx.send(self.target, r.bytes().clone());
                }
                if self.state == ClientState::Trying {
                    self.interval = fx.timers.next_capped(self.interval);
                }
                let e = now + self.interval;
                fx.arm(tx, &mut self.cells, Slot::Retransmit, Some(e));
            }
            (Slot::Retransmit, _) => {}
            (Slot::Timeout, ClientState::Calling) => self.give_up(now, Expiry::TimerB, fx, &mut r),
            (Slot::Timeout, ClientState::Trying | ClientState::Proceeding) if !self.invite => {
                self.give_up(now, Expiry::TimerF, fx, &mut r)
            }
            (Slot::Timeout, ClientState::Proceeding) => {
                if self.cancel == Cancel::Sent {
                    self.give_up(now, Expiry::CancelUnanswered, fx, &mut r);
                } else {
                    // Timer C (§16.8): CANCEL the branch and wait for its final.
                    self.report(now, Expiry::TimerC, fx);
                    fx.event(tx, now, TxEvent::Cancelled);
                    r.send_cancel = true;
                }
            }
            // Timers D, K and M.
            (Slot::Timeout, _) => r.terminate = true,
        }
        r
    }

    fn give_up(&self, now: Millis, expiry: Expiry, fx: &mut Effects, r: &mut Reaction) {
        self.report(now, expiry, fx);
        r.terminate = true;
    }

    fn report(&self, now: Millis, expiry: Expiry, fx: &mut Effects) {
        fx.event(self.tx(), now, TxEvent::TimedOut(expiry));
        if self.cancel_of.is_none() {
            fx.actions.push_back(Action::ClientTimedOut {
                client: self.id,
                server: self.server,
                expiry,
            });
        }
    }
}
