//! The client side of [`TransactionLayer`]: sending requests, matching responses and
//! cancelling branches (RFC 3261 §9.1, §16.8, §16.10, §17.1).

use bytes::Bytes;

use super::build;
use super::client::{Cancel, Client, Held};
use super::key;
use super::layer::TransactionLayer;
use super::timers::Millis;
use super::{CancelStatus, ClientId, ResponseOutcome, ServerId, Target, TxError, TxId};
use crate::sip::headers::HeaderError;
use crate::sip::{Message, Method};

/// `branch` when it is an RFC 3261 one (magic cookie and more), the only kind a client
/// transaction is keyed by.
fn rfc3261_branch(branch: &[u8]) -> Result<&[u8], TxError> {
    crate::sip::headers::rfc3261_branch(branch).ok_or(TxError::BadBranch)
}

impl TransactionLayer {
    /// Starts a client transaction: sends `request` (as the proxy built it, with our Via on
    /// top) to `to` and retransmits it as the transport requires. `server` is the server
    /// transaction it is forwarded for, if any.
    ///
    /// The request's top Via must carry an RFC 3261 branch not already in use: the branch
    /// and the CSeq method are the key responses are matched with. ACK is refused (an ACK
    /// for a 2xx is sent directly, without a transaction).
    pub fn send_request(
        &mut self,
        now: Millis,
        server: Option<ServerId>,
        request: Message,
        to: Target,
    ) -> Result<ClientId, TxError> {
        let method = request.method().ok_or(TxError::NotATransaction)?;
        self.check_new(server, method)?;
        self.start_message(now, server, None, request, to)
    }

    /// [`send_request`](Self::send_request) for a request the caller built itself from a
    /// validated one and does not need parsed: its bytes, the branch of the Via it put on
    /// top, and its method as in its CSeq. It is parsed only if an ACK or a CANCEL must be
    /// built from it.
    pub fn send_built_request(
        &mut self,
        now: Millis,
        server: Option<ServerId>,
        request: Bytes,
        branch: &[u8],
        method: &[u8],
        to: Target,
    ) -> Result<ClientId, TxError> {
        let class = Method::classify(method);
        self.check_new(server, class)?;
        let key = key::client_key(rfc3261_branch(branch)?, method);
        self.start_client(now, server, None, Held::Raw(request), class, key, to)
    }

    fn check_new(&self, server: Option<ServerId>, method: Method) -> Result<(), TxError> {
        if method == Method::Ack {
            return Err(TxError::NotATransaction);
        }
        if server.is_some_and(|s| !self.servers.contains_key(&s)) {
            return Err(TxError::Unknown);
        }
        Ok(())
    }

    fn start_message(
        &mut self,
        now: Millis,
        server: Option<ServerId>,
        cancel_of: Option<ClientId>,
        request: Message,
        to: Target,
    ) -> Result<ClientId, TxError> {
        let branch = rfc3261_branch(request.top_via_branch()?.unwrap_or_default())?;
        let key = key::client_key(branch, request.cseq()?.method_raw);
        let method = request.method().unwrap_or(Method::Other);
        let held = Held::Parsed(Box::new(request));
        self.start_client(now, server, cancel_of, held, method, key, to)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_client(
        &mut self,
        now: Millis,
        server: Option<ServerId>,
        cancel_of: Option<ClientId>,
        request: Held,
        method: Method,
        key: key::Key,
        to: Target,
    ) -> Result<ClientId, TxError> {
        if self.client_index.contains_key(&key) {
            return Err(TxError::BadBranch);
        }
        if self.full() {
            return Err(TxError::Overloaded);
        }
        let id = ClientId(self.next_id());
        let tx = Client::start(
            id,
            key.clone(),
            request,
            method,
            to,
            server,
            cancel_of,
            now,
            &mut self.fx,
        );
        self.clients.insert(id, tx);
        self.client_index.insert(key, id);
        if let Some(parent) = server.and_then(|s| self.servers.get_mut(&s)) {
            parent.clients.push(id);
        }
        Ok(id)
    }

    /// Matches a response to a client transaction (branch and CSeq method, §17.1.3) and
    /// runs it through the state machine (see [`ResponseOutcome`]).
    pub fn on_response(&mut self, now: Millis, msg: &Message) -> ResponseOutcome {
        let Some(status) = msg.status() else {
            return ResponseOutcome::Invalid(HeaderError::Missing("status line"));
        };
        let key = match key::response_key(msg) {
            Ok(Some(k)) => k,
            Ok(None) => return ResponseOutcome::Stray,
            Err(e) => return ResponseOutcome::Invalid(e),
        };
        let Some(&id) = self.client_index.get(&key) else {
            return ResponseOutcome::Stray;
        };
        let Some(tx) = self.clients.get_mut(&id) else {
            return ResponseOutcome::Stray;
        };
        let r = tx.on_response(now, msg, status, &mut self.fx);
        let server = tx.server;
        let internal = tx.cancel_of.is_some();
        if r.send_cancel {
            // On failure (table full) the INVITE still ends after its 64*T1 wait.
            let _ = self.fire_cancel(now, id);
        }
        if r.terminate {
            self.terminate(now, TxId::Client(id));
        }
        if r.forward && !internal {
            ResponseOutcome::Forward {
                client: id,
                server,
                status,
            }
        } else {
            ResponseOutcome::Absorbed(id)
        }
    }

    /// CANCELs a client INVITE (§9.1): at once when a provisional has arrived, after the
    /// first provisional otherwise. The CANCEL has its own client transaction; its response
    /// is absorbed. The INVITE then waits at most `64*T1` for its final response.
    pub fn cancel_client(&mut self, now: Millis, id: ClientId) -> Result<CancelStatus, TxError> {
        let tx = self.clients.get_mut(&id).ok_or(TxError::Unknown)?;
        match tx.request_cancel(now, &mut self.fx) {
            None => Ok(CancelStatus::NotPending),
            Some(false) => Ok(CancelStatus::Deferred),
            Some(true) => self.fire_cancel(now, id).map(CancelStatus::Sent),
        }
    }

    /// CANCELs every pending INVITE branch of a server transaction (§16.10), returning how
    /// many were cancelled or will be after their first provisional.
    pub fn cancel_branches(&mut self, now: Millis, server: ServerId) -> usize {
        let branches = self.branches(server).to_vec();
        branches
            .into_iter()
            .filter(|&c| {
                matches!(
                    self.cancel_client(now, c),
                    Ok(CancelStatus::Sent(_) | CancelStatus::Deferred) | Err(TxError::Overloaded)
                )
            })
            .count()
    }

    /// Marks the INVITE cancelled and creates the CANCEL's client transaction, to the same
    /// target, with no server transaction (its response is never forwarded).
    pub(crate) fn fire_cancel(
        &mut self,
        now: Millis,
        invite: ClientId,
    ) -> Result<ClientId, TxError> {
        let tx = self.clients.get_mut(&invite).ok_or(TxError::Unknown)?;
        tx.cancel_sent(now, &mut self.fx);
        debug_assert_eq!(tx.cancel, Cancel::Sent);
        let target = tx.target;
        let request = tx.request.as_ref().ok_or(TxError::WrongState {
            state: "final",
            status: 0,
        })?;
        let request = request
            .parsed(&self.fx.limits)
            .ok_or(HeaderError::Missing("INVITE"))?;
        let bytes = build::cancel(&request).ok_or(HeaderError::Missing("To"))?;
        let cancel =
            Message::parse(bytes, &self.fx.limits).map_err(|_| HeaderError::Missing("CANCEL"))?;
        self.start_message(now, None, Some(invite), cancel, target)
    }
}
