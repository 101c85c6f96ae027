//! [`TransactionLayer`]: the table of transactions, the timer loop, the output queues and
//! the server-side entry points. The client-side entry points are in `outbound.rs`.
//!
//! Invariants (besides those of the module): `server_index` and `client_index` map each key
//! to exactly one live transaction and hold nothing else; a client transaction's id is in
//! its server transaction's `clients` list while both live.

use std::collections::VecDeque;

use bytes::Bytes;

use super::client::Client;
use super::key::{self, Key};
use super::server::{AckResult, Server};
use super::timers::{Cells, Deadlines, Millis, Slot, Timers};
use super::{
    Action, ClientId, ClientState, Event, RequestOutcome, ServerId, ServerState, Target, TxError,
    TxEvent, TxId,
};
use crate::sip::headers::HeaderError;
use crate::sip::response::{build_response, to_tag_for};
use crate::sip::{Limits, Message, Method};

/// How a [`TransactionLayer`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// Timer values.
    pub timers: Timers,
    /// Most live transactions, server and client together. Beyond it new requests get
    /// [`RequestOutcome::Overloaded`] and new client transactions [`TxError::Overloaded`].
    pub max_transactions: usize,
    /// Secret for the To-tags of the responses the layer writes itself (200 to CANCEL, 481),
    /// see [`crate::sip::response::to_tag`].
    pub tag_key: [u8; 16],
    /// The message limits the gateway enforces (`[limits]`): a request the proxy edited
    /// and forwards must stay within them, and is parsed with them to build a CANCEL.
    pub limits: Limits,
}

impl Default for LayerConfig {
    fn default() -> LayerConfig {
        LayerConfig {
            timers: Timers::default(),
            max_transactions: 100_000,
            tag_key: [0; 16],
            limits: Limits::DEFAULT,
        }
    }
}

/// Whether a transaction lives on after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    Terminate,
}

/// What the state machines write to: timers, deadlines and the two output queues.
#[derive(Debug)]
pub(crate) struct Effects {
    pub(crate) timers: Timers,
    /// The gateway's message limits ([`LayerConfig::limits`]).
    pub(crate) limits: Limits,
    pub(crate) deadlines: Deadlines,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) events: VecDeque<Event>,
}

impl Effects {
    pub(crate) fn send(&mut self, to: Target, bytes: Bytes) {
        self.actions.push_back(Action::Send { to, bytes });
    }

    pub(crate) fn event(&mut self, tx: TxId, at: Millis, kind: TxEvent) {
        self.events.push_back(Event { tx, at, kind });
    }

    pub(crate) fn arm(&mut self, tx: TxId, cells: &mut Cells, slot: Slot, at: Option<Millis>) {
        self.deadlines.arm(tx, cells, slot, at);
    }
}

/// The armed value of a transaction's timer cell, for [`Deadlines`]: `None` when the
/// transaction is gone or the cell is not armed.
fn cell_of<'a>(
    servers: &'a crate::FastMap<ServerId, Server>,
    clients: &'a crate::FastMap<ClientId, Client>,
) -> impl Fn(TxId, Slot) -> Option<Millis> + 'a {
    move |id, slot| {
        let cells = match id {
            TxId::Server(s) => servers.get(&s)?.cells,
            TxId::Client(c) => clients.get(&c)?.cells,
        };
        cells[slot as usize]
    }
}

/// The RFC 3261 §17 transaction layer of the proxy (see the module documentation).
#[derive(Debug)]
pub struct TransactionLayer {
    pub(crate) max: usize,
    tag_key: [u8; 16],
    next_id: u64,
    pub(crate) servers: crate::FastMap<ServerId, Server>,
    pub(crate) clients: crate::FastMap<ClientId, Client>,
    pub(crate) server_index: crate::FastMap<Key, ServerId>,
    pub(crate) client_index: crate::FastMap<Key, ClientId>,
    pub(crate) fx: Effects,
}

impl TransactionLayer {
    /// An empty layer.
    pub fn new(config: LayerConfig) -> TransactionLayer {
        TransactionLayer {
            max: config.max_transactions,
            tag_key: config.tag_key,
            next_id: 1,
            servers: crate::FastMap::default(),
            clients: crate::FastMap::default(),
            server_index: crate::FastMap::default(),
            client_index: crate::FastMap::default(),
            fx: Effects {
                timers: config.timers,
                limits: config.limits,
                deadlines: Deadlines::default(),
                actions: VecDeque::new(),
                events: VecDeque::new(),
            },
        }
    }

    /// The message limits it was configured with.
    pub fn limits(&self) -> &Limits {
        &self.fx.limits
    }

    /// Live transactions, server and client.
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of a live server transaction.
    pub fn server_state(&self, id: ServerId) -> Option<ServerState> {
        self.servers.get(&id).map(|s| s.state)
    }

    /// Whether a live server transaction holds a response to re-send (tests: what a
    /// lingering transaction keeps).
    #[cfg(test)]
    pub(crate) fn server_holds_response(&self, id: ServerId) -> Option<bool> {
        self.servers.get(&id).map(|s| s.holds_response())
    }

    /// The state of a live client transaction.
    pub fn client_state(&self, id: ClientId) -> Option<ClientState> {
        self.clients.get(&id).map(|c| c.state)
    }

    /// The client transactions created for a live server transaction.
    pub fn branches(&self, id: ServerId) -> &[ClientId] {
        self.servers.get(&id).map_or(&[], |s| &s.clients[..])
    }

    /// The next thing to do, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.fx.actions.pop_front()
    }

    /// The next transaction event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.fx.events.pop_front()
    }

    /// The earliest pending deadline: call [`TransactionLayer::handle_timeout`] then.
    /// `None` only when no transaction is live.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.fx
            .deadlines
            .first(cell_of(&self.servers, &self.clients))
    }

    /// Runs every timer due at `now` (retransmissions, timeouts, terminations).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.fx
            .deadlines
            .compact(cell_of(&self.servers, &self.clients));
        while let Some((id, slot)) = self
            .fx
            .deadlines
            .pop_due(now, cell_of(&self.servers, &self.clients))
        {
            match id {
                TxId::Server(s) => {
                    let Some(tx) = self.servers.get_mut(&s) else {
                        continue;
                    };
                    self.fx.deadlines.fired(&mut tx.cells, slot);
                    if tx.on_timer(now, slot, &mut self.fx) == Step::Terminate {
                        self.terminate(now, id);
                    }
                }
                TxId::Client(c) => {
                    let Some(tx) = self.clients.get_mut(&c) else {
                        continue;
                    };
                    self.fx.deadlines.fired(&mut tx.cells, slot);
                    let r = tx.on_timer(now, slot, &mut self.fx);
                    if r.send_cancel {
                        // A full table cannot stop the INVITE from ending: cancel_sent armed
                        // its 64*T1 wait whether or not the CANCEL could be created.
                        let _ = self.fire_cancel(now, c);
                    }
                    if r.terminate {
                        self.terminate(now, id);
                    }
                }
            }
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    pub(crate) fn full(&self) -> bool {
        self.len() >= self.max
    }

    /// Destroys a transaction: deadlines, index entries, pairing; reports it.
    pub(crate) fn terminate(&mut self, now: Millis, id: TxId) {
        match id {
            TxId::Server(s) => {
                let Some(mut tx) = self.servers.remove(&s) else {
                    return;
                };
                self.fx.deadlines.clear(id, &mut tx.cells);
                if self.server_index.get(&tx.key) == Some(&s) {
                    self.server_index.remove(&tx.key);
                }
            }
            TxId::Client(c) => {
                let Some(mut tx) = self.clients.remove(&c) else {
                    return;
                };
                self.fx.deadlines.clear(id, &mut tx.cells);
                if self.client_index.get(&tx.key) == Some(&c) {
                    self.client_index.remove(&tx.key);
                }
                if let Some(parent) = tx.server.and_then(|s| self.servers.get_mut(&s)) {
                    parent.clients.retain(|&x| x != c);
                }
            }
        }
        self.fx.event(id, now, TxEvent::Terminated);
        self.fx.actions.push_back(Action::Terminated(id));
    }

    /// Matches a request received from `from` to a server transaction, or creates one (see
    /// [`RequestOutcome`]). The caller has validated the message (`sip::validate`).
    pub fn on_request(&mut self, now: Millis, msg: &Message, from: Target) -> RequestOutcome {
        let Some(method) = msg.method() else {
            return RequestOutcome::Invalid(HeaderError::Missing("request line"));
        };
        let key = match key::server_key(msg, None) {
            Ok(k) => k,
            Err(e) => return RequestOutcome::Invalid(e),
        };
        let found = self.server_index.get(&key).copied();
        if method == Method::Ack {
            return self.on_ack(now, found);
        }
        if let Some(id) = found {
            if let Some(tx) = self.servers.get(&id) {
                tx.on_retransmission(&mut self.fx);
            }
            return RequestOutcome::Retransmission(id);
        }
        if self.full() {
            return RequestOutcome::Overloaded;
        }
        if method == Method::Cancel {
            return self.on_cancel(now, msg, key, from);
        }
        let id = self.new_server(now, key, method, from);
        if method == Method::Invite {
            // §16.2: a stateful proxy sends 100 Trying for an INVITE at once. No To-tag.
            let trying = build_response(msg.headers(), 100, "Trying", None, &[], None);
            self.respond(now, id, trying, 100);
        }
        RequestOutcome::New(id)
    }

    fn on_ack(&mut self, now: Millis, found: Option<ServerId>) -> RequestOutcome {
        let Some((id, tx)) = found.and_then(|id| Some((id, self.servers.get_mut(&id)?))) else {
            return RequestOutcome::AckPassThrough { server: None };
        };
        if !tx.is_invite() {
            return RequestOutcome::AckPassThrough { server: None };
        }
        match tx.on_ack(now, &mut self.fx) {
            AckResult::PassThrough => RequestOutcome::AckPassThrough { server: Some(id) },
            AckResult::Absorbed(step) => {
                if step == Step::Terminate {
                    self.terminate(now, TxId::Server(id));
                }
                RequestOutcome::AckAbsorbed(id)
            }
        }
    }

    /// §9.2 and §16.10: a CANCEL is answered by its own transaction, 200 when it matches an
    /// INVITE server transaction and 481 when it does not.
    fn on_cancel(&mut self, now: Millis, msg: &Message, key: Key, from: Target) -> RequestOutcome {
        let invite = key::server_key(msg, Some(b"INVITE"))
            .ok()
            .and_then(|k| self.server_index.get(&k).copied())
            .filter(|id| self.servers.get(id).is_some_and(Server::is_invite));
        let cancel = self.new_server(now, key, Method::Cancel, from);
        let tag = to_tag_for(&self.tag_key, msg.headers());
        let status = if invite.is_some() { 200 } else { 481 };
        let reply = build_response(msg.headers(), status, "", Some(tag.as_bytes()), &[], None);
        self.respond(now, cancel, reply, status);
        let Some(inv) = invite else {
            return RequestOutcome::CancelAnswered {
                cancel,
                invite: None,
            };
        };
        let pending = self
            .servers
            .get_mut(&inv)
            .filter(|s| s.state == ServerState::Proceeding && !s.cancelled);
        match pending {
            Some(s) => {
                s.cancelled = true;
                self.fx.event(TxId::Server(inv), now, TxEvent::Cancelled);
                RequestOutcome::Cancel {
                    cancel,
                    invite: inv,
                }
            }
            None => RequestOutcome::CancelAnswered {
                cancel,
                invite: Some(inv),
            },
        }
    }

    fn new_server(&mut self, now: Millis, key: Key, method: Method, from: Target) -> ServerId {
        let id = ServerId(self.next_id());
        let tx = Server::new(id, key.clone(), method, from, now, &mut self.fx);
        self.servers.insert(id, tx);
        self.server_index.insert(key, id);
        id
    }

    /// A response the layer writes itself on a transaction it just created: cannot be in a
    /// state that refuses it.
    fn respond(&mut self, now: Millis, id: ServerId, bytes: Bytes, status: u16) {
        let _ = self.send_response(now, id, bytes, status);
    }

    /// Sends a response on a server transaction, to the address the request came from
    /// (for UDP, the source address and port as with `rport`; for streams, the connection).
    /// A 1xx keeps the transaction pending, a 2xx to an INVITE moves it to Accepted (later
    /// 2xx pass through), any other final completes it. Refused, with nothing sent, in a
    /// state that allows no such response.
    pub fn send_response(
        &mut self,
        now: Millis,
        id: ServerId,
        bytes: Bytes,
        status: u16,
    ) -> Result<(), TxError> {
        let tx = self.servers.get_mut(&id).ok_or(TxError::Unknown)?;
        if tx.respond(now, bytes, status, &mut self.fx)? == Step::Terminate {
            self.terminate(now, TxId::Server(id));
        }
        Ok(())
    }
}
