//! Requests: the ACL, first look, loop and flood checks, the transaction layer, then a new
//! out-of-dialog request through the policy to a destination, or an in-dialog one to its
//! next hop; SBC quality reports (RFC 6035 PUBLISH) answered here.

use super::*;
use crate::transport::Transport;

impl Proxy {
    pub(super) fn on_request(&mut self, now: Millis, r: Received, side: Side) {
        let ip = r.source.addr.ip();
        if !self.routing.acl(side).allows(ip) {
            self.stats.acl_dropped += 1;
            return;
        }
        match validate::decide(&r.msg) {
            Decision::Forward => {}
            d @ Decision::Reply { .. } => {
                self.stats.rejected_invalid += 1;
                let tag = to_tag_for(&self.tag_key, r.msg.headers());
                if let Some(bytes) = reply_for(&d, r.msg.headers(), tag.as_bytes()) {
                    self.send(r.source, side, bytes);
                }
                return;
            }
            Decision::Drop { .. } => {
                self.stats.dropped_invalid += 1;
                return;
            }
        }
        if r.msg
            .vias()
            .is_ok_and(|v| v.iter().any(|v| self.routing.is_our_via(v)))
        {
            self.stats.loops += 1;
            self.stateless_reply(&r.msg, r.source, side, 482, &[]);
            return;
        }
        let method = r.msg.method();
        let in_dialog = r.msg.to_tag_param().is_ok_and(|t| t.is_some());
        if !in_dialog && !matches!(method, Some(Method::Ack | Method::Cancel)) {
            match self.flood.check(now, ip) {
                FloodVerdict::Allow => {}
                FloodVerdict::RejectFirst { .. } => {
                    self.stats.flood_rejected += 1;
                    let ra = self.retry_after.clone();
                    self.stateless_reply(
                        &r.msg,
                        r.source,
                        side,
                        503,
                        &[("Retry-After", ra.as_bytes())],
                    );
                    return;
                }
                FloodVerdict::Drop => {
                    self.stats.flood_dropped += 1;
                    return;
                }
            }
        }
        match self.layer.on_request(now, &r.msg, r.source) {
            RequestOutcome::New(sid) => {
                self.policy.on_request(now, side, &r.msg);
                self.new_request(now, sid, r, side, in_dialog)
            }
            RequestOutcome::AckPassThrough { .. } => {
                self.policy.on_request(now, side, &r.msg);
                self.forward_ack(r.msg, side)
            }
            RequestOutcome::Cancel { invite, .. } => {
                if let Some(p) = self.pending.get_mut(&invite) {
                    p.cancelled = true;
                }
                if self.layer.cancel_branches(now, invite) == 0 {
                    self.answer(now, invite, 487, &[]);
                }
            }
            RequestOutcome::Overloaded => {
                self.stats.overloaded += 1;
                self.stateless_reply(&r.msg, r.source, side, 503, &[]);
            }
            RequestOutcome::Invalid(_) => self.stateless_reply(&r.msg, r.source, side, 400, &[]),
            RequestOutcome::Retransmission(_)
            | RequestOutcome::AckAbsorbed(_)
            | RequestOutcome::CancelAnswered { .. } => {}
        }
    }

    pub(super) fn new_request(
        &mut self,
        now: Millis,
        sid: ServerId,
        r: Received,
        side: Side,
        in_dialog: bool,
    ) {
        let Received {
            msg,
            source,
            listener,
        } = r;
        let to_side = side.other();
        let (name, reconnect) = response_reconnect(&msg, source);
        self.peer_ref(source, side, name, reconnect);
        self.pending.insert(
            sid,
            Pending {
                request: Some(std::sync::Arc::new(msg.clone())),
                source,
                listener,
                cancelled: false,
                rewrite: None,
                from_side: side,
                out_of_dialog: !in_dialog,
                tried: Vec::new(),
            },
        );
        if in_dialog {
            return self.forward_in_dialog(now, sid, &msg, to_side);
        }
        if msg.method() == Some(Method::Options)
            && msg
                .request_uri()
                .is_some_and(|u| u.user.is_none() && self.routing.is_us(&u))
        {
            return self.answer(now, sid, 200, &[("Allow", ALLOW.as_bytes())]);
        }
        if msg.method() == Some(Method::Publish)
            && msg
                .event()
                .ok()
                .flatten()
                .is_some_and(|e| e.package.eq_ignore_ascii_case(b"vq-rtcpxr"))
        {
            return self.quality_report(now, sid, &msg, source);
        }
        if self.draining {
            self.stats.draining_rejected += 1;
            let ra = self.retry_after.clone();
            return self.answer(now, sid, 503, &[("Retry-After", ra.as_bytes())]);
        }
        match self.policy.check(now, side, &msg) {
            Verdict::Allow => {}
            Verdict::AllowRewrite { request_uri } => {
                if let Some(p) = self.pending.get_mut(&sid) {
                    p.rewrite = Some(request_uri);
                }
            }
            Verdict::Reject { status, reason } => {
                self.stats.policy_rejected += 1;
                return self.answer_with_reason(now, sid, status, &reason);
            }
        }
        if !self.forward_to_next(now, sid) {
            self.stats.no_destination += 1;
            self.answer(now, sid, 503, &[]);
        }
    }

    /// An RFC 6035 report (PUBLISH `Event: vq-rtcpxr`): the gateway is the collector. From a
    /// configured SBC (any port of its address) it is queued for the quality sinks and
    /// answered 200 with a SIP-ETag (RFC 3903); from anyone else, 403.
    pub(super) fn quality_report(
        &mut self,
        now: Millis,
        sid: ServerId,
        msg: &Message,
        source: Target,
    ) {
        let sbc = self
            .routing
            .peers()
            .iter()
            .find(|p| p.side == Side::Carrier && p.target.addr.ip() == source.addr.ip())
            .map(|p| p.name.clone());
        // Refused from anyone but a configured SBC, and by all when `[quality]` is off.
        let (Some(sbc), Some(q)) = (sbc, &self.quality) else {
            self.stats.quality_refused += 1;
            return self.answer(now, sid, 403, &[]);
        };
        self.stats.quality_reports += 1;
        q.report(&sbc, Bytes::copy_from_slice(msg.body()));
        self.etag += 1;
        let etag = format!("oc{:x}.{:x}", self.shard, self.etag);
        self.answer(
            now,
            sid,
            200,
            &[("SIP-ETag", etag.as_bytes()), ("Expires", b"0")],
        );
    }
}

/// Methods we accept, for the `Allow` of our OPTIONS answers.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, MESSAGE";

/// Where responses to `msg` go should the stream connection it came on from `source` be gone
/// (RFC 3261 §18.2.2): the source's IP (what `received` would say) at the top Via's sent-by
/// port, or the transport's default, with the sent-by host as TLS name when it is a name.
/// `(None, None)` for UDP and when that is `source` itself (a new connection to it is what
/// the transport opens anyway).
fn response_reconnect(msg: &Message, source: Target) -> (Option<String>, Option<SocketAddr>) {
    // Checked before the Via is parsed: UDP is the hot path.
    if source.transport == Transport::Udp {
        return (None, None);
    }
    let Ok(via) = msg.top_via() else {
        return (None, None);
    };
    match flow::reconnect(source, via.port) {
        Some(addr) => (flow::tls_name(&via.host), Some(addr)),
        None => (None, None),
    }
}
