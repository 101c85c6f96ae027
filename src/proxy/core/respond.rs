//! Responses: matched to client transactions and relayed upstream (failover on 408/503),
//! our own answers on server transactions, and stateless replies.

use super::*;
use crate::sip::message::Headers;

impl Proxy {
    pub(super) fn on_response(&mut self, now: Millis, msg: Message) {
        match self.layer.on_response(now, &msg) {
            ResponseOutcome::Forward {
                client,
                server,
                status,
            } => match self.clients.get(&client).map(|c| c.0) {
                Some(ClientRole::Probe(side, dest)) => {
                    if status >= 200 {
                        let ok = status < 500 && status != 408;
                        let change = self.sets[idx(side)].on_probe_result(dest, ok, now);
                        self.health(side, change);
                    }
                }
                Some(ClientRole::Forward(sid, dest)) => {
                    self.forward_response(now, sid, dest, status, &msg)
                }
                None => {
                    if let Some(sid) = server {
                        self.relay_response(now, sid, status, &msg);
                    }
                }
            },
            ResponseOutcome::Stray => self.stats.stray_responses += 1,
            ResponseOutcome::Absorbed(_) | ResponseOutcome::Invalid(_) => {}
        }
    }

    pub(super) fn forward_response(
        &mut self,
        now: Millis,
        sid: ServerId,
        dest: Option<(Side, DestId)>,
        status: u16,
        msg: &Message,
    ) {
        if status == 100 {
            // RFC 3261 §16.7 step 5: a 100 is hop by hop; ours was sent already.
            return;
        }
        if status >= 200 {
            if let Some((side, d)) = dest {
                // Only a timeout, 408 or 503 says the destination itself is unwell; any other
                // answer (a 500 for one call included) proves it alive.
                let ok = !is_failover_status(status);
                let change = self.sets[idx(side)].on_call_result(d, ok, now);
                self.health(side, change);
                let retry = is_failover_status(status)
                    && self.pending.get(&sid).is_some_and(|p| p.out_of_dialog);
                if retry && self.forward_to_next(now, sid) {
                    self.stats.failovers += 1;
                    return;
                }
            }
        }
        self.relay_response(now, sid, status, msg);
    }

    /// Pops our Via and sends the response on its server transaction.
    pub(super) fn relay_response(
        &mut self,
        now: Millis,
        sid: ServerId,
        status: u16,
        msg: &Message,
    ) {
        // Only dialog-creating answers carry a remote target; the Contacts of a 3xx are
        // redirection targets and go as they are.
        let contact = self
            .pending
            .get(&sid)
            .filter(|p| p.from_side == Side::Microsoft && status < 300)
            .and_then(|p| self.routing.listener(p.listener))
            .and_then(|l| self.contact_for_microsoft(msg, l));
        let mut e = Editor::new(msg);
        if e.pop_via().is_err() {
            return;
        }
        if let Some(c) = &contact {
            if e.set_contact(c.as_bytes()).is_err() {
                return;
            }
        }
        let bytes = e.finish();
        if self.layer.send_response(now, sid, bytes, status).is_ok() {
            self.stats.forwarded_responses += 1;
            self.observe_response(now, sid, msg);
            self.finish_pending(sid, status);
        }
    }

    /// After a final response went upstream the request is no longer needed.
    pub(super) fn finish_pending(&mut self, sid: ServerId, status: u16) {
        if status >= 200 {
            if let Some(p) = self.pending.get_mut(&sid) {
                p.request = None;
            }
        }
    }

    /// Answers a server transaction ourselves with a policy's reason phrase.
    pub(super) fn answer_with_reason(
        &mut self,
        now: Millis,
        sid: ServerId,
        status: u16,
        reason: &str,
    ) {
        let Some(request) = self.pending.get(&sid).and_then(|p| p.request.as_ref()) else {
            return;
        };
        let printable = !reason.is_empty() && reason.bytes().all(|b| (0x20..0x7f).contains(&b));
        let phrase = if printable {
            reason
        } else {
            reason_phrase(status)
        };
        let bytes = self.own_response(request.headers(), status, phrase, &[]);
        self.send_answer(now, sid, bytes, status);
    }

    /// Answers a server transaction ourselves.
    pub(super) fn answer(
        &mut self,
        now: Millis,
        sid: ServerId,
        status: u16,
        extra: &[(&str, &[u8])],
    ) {
        let Some(request) = self.pending.get(&sid).and_then(|p| p.request.as_ref()) else {
            return;
        };
        let bytes = self.own_response(request.headers(), status, reason_phrase(status), extra);
        self.send_answer(now, sid, bytes, status);
    }

    /// A response of ours to the request with `headers`, with our To tag for it.
    fn own_response(
        &self,
        headers: &Headers,
        status: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) -> Bytes {
        let tag = to_tag_for(&self.tag_key, headers);
        build_response(headers, status, reason, Some(tag.as_bytes()), extra, None)
    }

    /// Sends a response the proxy built on its server transaction and shows it to the policy.
    pub(super) fn send_answer(&mut self, now: Millis, sid: ServerId, bytes: Bytes, status: u16) {
        if self
            .layer
            .send_response(now, sid, bytes.clone(), status)
            .is_ok()
            && status > 100
        {
            if let Ok(msg) = Message::parse(bytes, self.layer.limits()) {
                self.observe_response(now, sid, &msg);
            }
        }
        self.finish_pending(sid, status);
    }

    /// Shows a response sent upstream to the policy, with the side its request came from.
    pub(super) fn observe_response(&mut self, now: Millis, sid: ServerId, msg: &Message) {
        if let Some(side) = self.pending.get(&sid).map(|p| p.from_side) {
            self.policy.on_response(now, side, msg);
        }
    }

    /// Answers a request without a transaction (invalid, looping, flooding, overload).
    pub(super) fn stateless_reply(
        &mut self,
        msg: &Message,
        to: Target,
        side: Side,
        status: u16,
        extra: &[(&str, &[u8])],
    ) {
        if msg.method() == Some(Method::Ack) {
            return;
        }
        let bytes = self.own_response(msg.headers(), status, reason_phrase(status), extra);
        self.send(to, side, bytes);
    }
}
