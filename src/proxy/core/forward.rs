//! Forwarding: the destination choice and failover, loose routing of in-dialog requests
//! (our Route entries popped, rewritten Contacts and flow tokens followed), the forward edit
//! (Via, Max-Forwards, double Record-Route, stripped headers) and stateless 2xx ACKs.

use super::*;
use crate::proxy::text;

/// A next hop's target, TLS name and reconnect address ([`Output::reconnect`]).
type FlowHop = (Target, Option<String>, Option<SocketAddr>);

impl Proxy {
    /// Picks the next untried destination of the other side and forwards there. False when
    /// none is left: the caller answers (503 when nothing could be tried, 408 after a timeout,
    /// the last response otherwise — RFC 3261 §16.7 step 6).
    pub(super) fn forward_to_next(&mut self, now: Millis, sid: ServerId) -> bool {
        let Some(p) = self.pending.get(&sid) else {
            return true;
        };
        if p.cancelled {
            return false;
        }
        let to_side = p.from_side.other();
        let tried = p.tried.clone();
        let Some(dest) = self.sets[idx(to_side)].pick(&tried) else {
            return false;
        };
        let d = self.sets[idx(to_side)].dest(dest);
        let (target, name) = (d.target, d.tls_name.clone());
        if let Some(p) = self.pending.get_mut(&sid) {
            p.tried.push(dest);
        }
        let Some(request) = self.pending.get(&sid).and_then(|p| p.request.clone()) else {
            return false;
        };
        let pops = self.our_route_pops(&request);
        let dest_name = self.sets[idx(to_side)].dest(dest).name.clone();
        self.policy.on_forward(now, &request, &dest_name);
        let hop = Hop {
            target,
            name,
            pops,
            request_uri: None,
            reconnect: None,
        };
        self.forward_inner(now, sid, &request, to_side, hop, Some(dest));
        true
    }

    pub(super) fn forward_in_dialog(
        &mut self,
        now: Millis,
        sid: ServerId,
        msg: &Message,
        to_side: Side,
    ) {
        match self.next_hop(msg, to_side) {
            Some(mut hop) => {
                if let (Some(uri), Some(p)) = (hop.request_uri.take(), self.pending.get_mut(&sid)) {
                    p.rewrite = Some(uri);
                }
                self.forward_inner(now, sid, msg, to_side, hop, None)
            }
            None => {
                self.stats.no_route += 1;
                self.answer(now, sid, 404, &[]);
            }
        }
    }

    /// How many Route entries at the top of `msg` are ours (two with double Record-Route).
    pub(super) fn our_route_pops(&self, msg: &Message) -> usize {
        msg.routes().map(|r| self.ours(&r)).unwrap_or(0)
    }

    /// How many of `routes`, from the top, name us.
    pub(super) fn ours(&self, routes: &[NameAddr<'_>]) -> usize {
        routes
            .iter()
            .take_while(|r| self.routing.is_us(&r.uri))
            .count()
    }

    /// Loose routing (§16.4, §16.6 step 6): pops our own Route entries (two with double
    /// Record-Route) and resolves the next Route, or the Request-URI. A Request-URI that is
    /// one of our rewritten Contacts is replaced by the original it carries
    /// ([`super::contact`]). Toward Microsoft, a next hop that does not resolve (a host
    /// name of theirs) goes to the flow in our popped entry ([`super::flow`]).
    pub(super) fn next_hop(&self, msg: &Message, to_side: Side) -> Option<Hop> {
        let routes = msg.routes().ok()?;
        let pops = self.ours(&routes);
        let hop = |(target, name, reconnect): FlowHop, request_uri| Hop {
            target,
            name,
            pops,
            request_uri,
            reconnect,
        };
        let plain = |(target, name): (Target, Option<String>)| (target, name, None);
        let ours = routes.get(..pops).unwrap_or_default();
        if let Some(next) = routes.get(pops) {
            return self
                .routing
                .resolve(&next.uri, to_side)
                .map(plain)
                .or_else(|| self.flow_hop(ours, &next.uri, to_side))
                .map(|r| hop(r, None));
        }
        let uri = msg.request_uri()?;
        if to_side == Side::Carrier && self.routing.is_us(&uri) {
            if let Some(orig) = contact::original(&uri) {
                let resolved = self
                    .routing
                    .resolve(&Uri::parse(orig.as_bytes()).ok()?, to_side);
                return resolved.map(|r| hop(plain(r), Some(orig)));
            }
        }
        self.routing
            .resolve(&uri, to_side)
            .map(plain)
            .or_else(|| self.flow_hop(ours, &uri, to_side))
            .map(|r| hop(r, None))
    }

    /// The Microsoft proxy named by the flow token of one of `ours` (our popped Route
    /// entries), if the relay rule accepts it; with `next`'s host as TLS name when it is a
    /// name and the flow is no configured target. A stream flow that is no configured
    /// target is a connection the proxy opened from some port of its own: should it be gone,
    /// a new connection goes to the same address at `next`'s port (default 5061 for TLS,
    /// 5060 for TCP), where that proxy listens.
    pub(super) fn flow_hop(
        &self,
        ours: &[NameAddr<'_>],
        next: &Uri<'_>,
        to_side: Side,
    ) -> Option<FlowHop> {
        if to_side != Side::Microsoft {
            return None;
        }
        let token = ours.iter().find_map(|r| r.uri.param(flow::FLOW))??;
        let (target, name) = self.routing.relay(flow::decode(token)?, to_side)?;
        let reconnect = match name {
            Some(_) => None,
            None => flow::reconnect(target, next.port),
        };
        let name = name.or_else(|| flow::tls_name(&next.host));
        Some((target, name, reconnect))
    }

    /// The Contact value to send toward Microsoft from listener `via` (`None`: leave it).
    pub(super) fn contact_for_microsoft(
        &self,
        msg: &Message,
        via: &ListenerInfo,
    ) -> Option<String> {
        if !self.rewrite_contact {
            return None;
        }
        let (contacts, _) = msg.contacts().ok()?;
        contact::rewrite(&contacts, &via.advertise, via.transport)
    }

    /// The forward edit (§16.6) and the client transaction.
    pub(super) fn forward_inner(
        &mut self,
        now: Millis,
        sid: ServerId,
        msg: &Message,
        to_side: Side,
        hop: Hop,
        dest: Option<DestId>,
    ) {
        let target = hop.target;
        let ingress = self.pending.get(&sid).map(|p| (p.listener, p.source));
        let rewrite = self.pending.get(&sid).and_then(|p| p.rewrite.clone());
        let Some((bytes, via)) =
            self.edit_request(msg, to_side, target, hop.pops, ingress, rewrite.as_deref())
        else {
            return self.answer(now, sid, 500, &[]);
        };
        // Not parsed again (the transaction parses it only to build an ACK or a CANCEL):
        // it is our edit of a request that passed validation. Only its size can have grown
        // past what we accept ourselves.
        if bytes.len() > self.layer.limits().max_message {
            return self.answer(now, sid, 500, &[]);
        }
        let Ok(cseq) = msg.cseq() else {
            return self.answer(now, sid, 500, &[]);
        };
        let sent = self.layer.send_built_request(
            now,
            Some(sid),
            bytes,
            via.branch(),
            cseq.method_raw,
            target,
        );
        match sent {
            Ok(cid) => {
                self.stats.forwarded_requests += 1;
                self.clients.insert(
                    cid,
                    (ClientRole::Forward(sid, dest.map(|d| (to_side, d))), target),
                );
                self.peer_ref(target, to_side, hop.name, hop.reconnect);
            }
            Err(_) => {
                self.stats.overloaded += 1;
                self.answer(now, sid, 503, &[]);
            }
        }
    }

    /// Builds the forwarded request: our Via, Max-Forwards − 1, our Route entries popped,
    /// double Record-Route for dialog-creating requests (we always change side; the entry
    /// facing Microsoft carries the dialog's Microsoft proxy, [`super::flow`]), the
    /// destination side's stripped headers removed. `ingress`: the listener the request
    /// arrived on and its source.
    pub(super) fn edit_request(
        &mut self,
        msg: &Message,
        to_side: Side,
        target: Target,
        pops: usize,
        ingress: Option<(usize, Target)>,
        request_uri: Option<&str>,
    ) -> Option<(Bytes, NewVia)> {
        let egress = self.routing.egress(to_side, target.transport)?.clone();
        let via = self.new_via(&egress.advertise, target.transport);
        let dialog_creating = matches!(
            msg.method(),
            Some(Method::Invite | Method::Subscribe | Method::Refer)
        ) && msg.to_tag_param().is_ok_and(|t| t.is_none());
        let from_side = to_side.other();
        let (rr_in, rr_out) = if dialog_creating {
            // The caller-side entry names the listener the request really arrived on, so
            // the caller's in-dialog requests come back the way it first reached us.
            let (listener, source) = match ingress {
                Some((i, source)) => (self.routing.listener(i), Some(source)),
                None => (None, None),
            };
            let listener = match listener {
                Some(l) => l,
                None => self.routing.egress(from_side, target.transport)?,
            };
            let (flow_in, flow_out) = match to_side {
                Side::Microsoft => (None, Some(target)),
                Side::Carrier => (source, None),
            };
            (
                record_route(&listener.advertise, listener.transport, flow_in),
                record_route(&egress.advertise, egress.transport, flow_out),
            )
        } else {
            (String::new(), String::new())
        };
        let contact = if to_side == Side::Microsoft {
            self.contact_for_microsoft(msg, &egress)
        } else {
            None
        };
        let mut e = Editor::new(msg);
        e.push_via(via.text.as_bytes()).ok()?;
        e.decrement_max_forwards().ok()?;
        if let Some(c) = &contact {
            e.set_contact(c.as_bytes()).ok()?;
        }
        for _ in 0..pops {
            e.pop_route().ok()?;
        }
        if let Some(uri) = request_uri {
            e.set_request_uri(uri.as_bytes()).ok()?;
        }
        if dialog_creating {
            e.push_record_route(rr_in.as_bytes()).ok()?;
            e.push_record_route(rr_out.as_bytes()).ok()?;
        }
        for h in &self.strip[idx(to_side)] {
            e.remove_headers(h.as_bytes());
        }
        Some((e.finish(), via))
    }

    pub(super) fn new_via(&mut self, advertise: &str, t: crate::transport::Transport) -> NewVia {
        self.next_branch += 1;
        // SIP/2.0/{t} {advertise};branch={BRANCH_PREFIX}{shard:x}.{next_branch:x}[;rport]
        let (mut v, start) = via_up_to_branch(t, advertise);
        text::push_hex(&mut v, u64::from(self.shard));
        v.push('.');
        text::push_hex(&mut v, self.next_branch);
        let branch = start..v.len();
        if t == crate::transport::Transport::Udp {
            v.push_str(";rport");
        }
        NewVia { text: v, branch }
    }

    /// Forwards an ACK for a 2xx statelessly (§16.11), loose-routed like any in-dialog
    /// request, with a branch derived from the incoming one so retransmissions match.
    pub(super) fn forward_ack(&mut self, msg: Message, from_side: Side) {
        let to_side = from_side.other();
        let Some(Hop {
            target,
            name,
            pops,
            request_uri,
            reconnect,
        }) = self.next_hop(&msg, to_side)
        else {
            self.stats.no_route += 1;
            return;
        };
        let Some(egress) = self.routing.egress(to_side, target.transport).cloned() else {
            return;
        };
        let incoming = msg.top_via_branch().ok().flatten().unwrap_or(b"");
        // SIP/2.0/{t} {advertise};branch={BRANCH_PREFIX}a{fnv1a:016x}
        let (mut via, _) = via_up_to_branch(target.transport, &egress.advertise);
        via.push('a');
        text::push_hex16(&mut via, fnv1a(incoming));
        let mut e = Editor::new(&msg);
        if e.push_via(via.as_bytes()).is_err() || e.decrement_max_forwards().is_err() {
            return;
        }
        for _ in 0..pops {
            if e.pop_route().is_err() {
                return;
            }
        }
        if let Some(uri) = &request_uri {
            if e.set_request_uri(uri.as_bytes()).is_err() {
                return;
            }
        }
        for h in &self.strip[idx(to_side)] {
            e.remove_headers(h.as_bytes());
        }
        let bytes = e.finish();
        self.stats.forwarded_requests += 1;
        self.out.push(Output {
            to: target,
            tls_name: name,
            side: Some(to_side),
            bytes,
            reconnect,
        });
    }
}

/// `SIP/2.0/{t} {advertise};branch={BRANCH_PREFIX}`, the start of each Via we write, and
/// where its branch starts.
fn via_up_to_branch(t: crate::transport::Transport, advertise: &str) -> (String, usize) {
    let mut v = String::with_capacity(advertise.len() + 64);
    v.push_str("SIP/2.0/");
    v.push_str(t.via_token());
    v.push(' ');
    v.push_str(advertise);
    v.push_str(";branch=");
    let start = v.len();
    v.push_str(BRANCH_PREFIX);
    (v, start)
}

/// Our Via for a request we forward or originate, and where its branch lies in it.
pub(super) struct NewVia {
    pub(super) text: String,
    branch: std::ops::Range<usize>,
}

impl NewVia {
    /// The branch, `z9hG4bKoc…`.
    pub(super) fn branch(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(self.branch.clone())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for NewVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Our Record-Route entry for `advertise`; `flow`: the Microsoft proxy it faces.
pub(super) fn record_route(
    advertise: &str,
    t: crate::transport::Transport,
    flow: Option<Target>,
) -> String {
    // <sip:{advertise};transport={t};lr[;{FLOW}={token}]>
    let mut rr = String::with_capacity(advertise.len() + 96);
    rr.push_str("<sip:");
    rr.push_str(advertise);
    rr.push_str(";transport=");
    rr.push_str(t.as_str());
    rr.push_str(";lr");
    if let Some(f) = flow {
        rr.push(';');
        rr.push_str(flow::FLOW);
        rr.push('=');
        flow::push_token(&mut rr, f);
    }
    rr.push('>');
    rr
}

/// FNV-1a, for deriving stable branch ids from incoming ones.
pub(super) fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}
