//! The proxy core (RFC 3261 §16), sans-IO: messages and `now` in, messages to send out.
//!
//! One [`Proxy`] owns a transaction layer, the destination sets of both sides, flood control
//! and the policy. The app runs one per shard (calls are sharded by Call-ID, so a call's
//! transactions always meet the same shard). Per input:
//!
//! - requests: source ACL (drop, never answer) → stateless first look (`sip::validate`) →
//!   loop detection (482) → flood control for out-of-dialog requests → transaction layer →
//!   for a new transaction: OPTIONS to us answered 200, policy check, destination choice
//!   (SBC set or Microsoft targets, 503 when none is up), forward edit (with the Request-URI
//!   the policy may have asked for), client transaction;
//!   in-dialog requests are loose-routed to a configured peer or an ACL address;
//! - responses: matched to their client transaction, our Via popped, forwarded on the server
//!   transaction; a 408/503/timeout of an out-of-dialog request fails over to the next
//!   destination (counted against the destination's health, as Kamailio's dispatcher does).
//!
//! The forward edit and the messages the layer builds are the only allocations per message.

use bytes::Bytes;

use crate::config::Side;
use crate::proxy::contact;
use crate::proxy::dispatch::{DestId, DestSet, HealthChange};
use crate::proxy::flood::{FloodControl, FloodVerdict};
use crate::proxy::flow;
use crate::proxy::policy::{Policy, Verdict};
use crate::proxy::route::{ListenerInfo, Routing, BRANCH_PREFIX};
use crate::proxy::transaction::{
    Action, ClientId, Expiry, LayerConfig, Millis, RequestOutcome, ResponseOutcome, ServerId,
    TransactionLayer, TxId,
};
use crate::sip::edit::Editor;
use crate::sip::headers::NameAddr;
use crate::sip::message::ParseFailure;
use crate::sip::response::{build_response, reason_phrase, reply_for, to_tag_for};
use crate::sip::uri::{Host, Uri};
use crate::sip::validate::{self, Decision};
use crate::sip::{Limits, Message, Method};
use crate::transport::Target;

use super::stats::ProxyStats;

/// A message received by the transports, parsed.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message.
    pub msg: Message,
    /// Where it came from.
    pub source: Target,
    /// Index of the listener it arrived on.
    pub listener: usize,
}

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Destination.
    pub to: Target,
    /// The TLS name to verify when a new TLS connection must be opened.
    pub tls_name: Option<String>,
    /// The side the destination is on, so UDP leaves from that side's socket (the peer
    /// sees answers come from the address it sent to); `None` when unknown.
    pub side: Option<Side>,
    /// The message.
    pub bytes: Bytes,
}

/// Everything a [`Proxy`] is built from.
pub struct ProxySetup {
    /// Listeners, peers and ACLs.
    pub routing: Routing,
    /// Microsoft targets, in preference order.
    pub microsoft: DestSet,
    /// The carrier's SBCs.
    pub carrier: DestSet,
    /// Per-source flood control.
    pub flood: FloodControl,
    /// Headers stripped when forwarding toward Microsoft and toward the carrier.
    pub strip: [Vec<String>; 2],
    /// Rewrite the Contact of what goes to Microsoft to our advertised address
    /// ([`super::contact`]).
    pub rewrite_contact: bool,
    /// Transaction layer settings (timers, table bound, tag key).
    pub layer: LayerConfig,
    /// This shard's number, part of every branch id so shards never collide.
    pub shard: u16,
    /// `Retry-After` seconds for flood 503s.
    pub retry_after: u32,
    /// The policy.
    pub policy: Box<dyn Policy>,
    /// Where accepted voice-quality reports go (`None`: accepted and discarded).
    pub quality: Option<std::sync::Arc<dyn crate::proxy::policy::QualityIntake>>,
}

/// What a reload may change in a running proxy (listeners, timers and limits need a
/// restart).
pub struct ProxyReload {
    /// Peers and ACLs (the listeners stay).
    pub peers: Vec<crate::proxy::route::Peer>,
    /// Source ACLs: Microsoft side, carrier side.
    pub acl: [crate::proxy::acl::Acl; 2],
    /// Microsoft targets and their probing.
    pub microsoft: (Vec<crate::proxy::dispatch::DestSpec>, crate::config::Probe),
    /// SBCs and their probing.
    pub carrier: (Vec<crate::proxy::dispatch::DestSpec>, crate::config::Probe),
    /// Flood limits.
    pub flood: crate::config::Flood,
    /// Addresses that get the peer flood limit.
    pub flood_peers: Vec<std::net::IpAddr>,
    /// Headers stripped toward Microsoft and toward the carrier.
    pub strip: [Vec<String>; 2],
    /// Rewrite the Contact of what goes to Microsoft.
    pub rewrite_contact: bool,
}

/// Where an in-dialog request goes next ([`Proxy::next_hop`]).
struct Hop {
    target: Target,
    /// TLS name of a configured peer.
    name: Option<String>,
    /// Our own Route entries to pop.
    pops: usize,
    /// The Request-URI to forward with, when not the one received.
    request_uri: Option<String>,
}

/// Why a client transaction exists.
#[derive(Debug, Clone, Copy)]
pub(super) enum ClientRole {
    /// Forwarded for a server transaction, to a destination of a set (if chosen from one).
    Forward(ServerId, Option<(Side, DestId)>),
    /// An OPTIONS health probe.
    Probe(Side, DestId),
}

/// Per server transaction we forwarded (or are about to).
struct Pending {
    /// The request as received; dropped once a final response went upstream (nothing needs
    /// it then, and the server transaction may linger 32 s in Accepted/Completed).
    request: Option<Message>,
    source: Target,
    /// The listener the request arrived on: the caller-side Record-Route names it.
    listener: usize,
    /// A CANCEL arrived: no new branch may be started (RFC 3261 §16.10).
    cancelled: bool,
    /// The Request-URI the policy asked for.
    rewrite: Option<String>,
    from_side: Side,
    out_of_dialog: bool,
    tried: Vec<DestId>,
}

/// The proxy; see the module documentation.
pub struct Proxy {
    layer: TransactionLayer,
    routing: Routing,
    sets: [DestSet; 2],
    flood: FloodControl,
    strip: [Vec<String>; 2],
    rewrite_contact: bool,
    policy: Box<dyn Policy>,
    tag_key: [u8; 16],
    shard: u16,
    retry_after: String,
    next_branch: u64,
    pending: crate::FastMap<ServerId, Pending>,
    clients: crate::FastMap<ClientId, (ClientRole, Target)>,
    /// TLS names of the peers we sent to (for connections the transport must open).
    tls_names: crate::FastMap<Target, String>,
    /// The side of every address a live transaction talks to, reference-counted by
    /// transaction (bounded by the transaction table).
    sides: crate::FastMap<Target, (Side, u32)>,
    out: Vec<Output>,
    stats: ProxyStats,
    /// Shutting down: new out-of-dialog requests (OPTIONS to us excepted) get 503.
    draining: bool,
    quality: Option<std::sync::Arc<dyn crate::proxy::policy::QualityIntake>>,
    /// Counter for the SIP-ETag of quality-report answers.
    etag: u64,
}

/// Where this run's branch counter starts. Branch ids must not repeat across restarts: a
/// peer still holding a transaction of the previous run would take a new request for a
/// retransmission of it. The (random) tag key puts each run's counter at a random multiple
/// of 2^20 in a 2^60 space: two runs' ids meet only if one of them sends more branches than
/// the distance between their starts.
fn first_branch(key: &[u8; 16]) -> u64 {
    u64::from_le_bytes([key[0], key[1], key[2], key[3], key[4], 0, 0, 0]) << 20
}

fn idx(side: Side) -> usize {
    match side {
        Side::Microsoft => 0,
        Side::Carrier => 1,
    }
}

impl Proxy {
    /// Builds a proxy.
    pub fn new(setup: ProxySetup) -> Proxy {
        let next_branch = first_branch(&setup.layer.tag_key);
        Proxy {
            tag_key: setup.layer.tag_key,
            layer: TransactionLayer::new(setup.layer),
            routing: setup.routing,
            sets: [setup.microsoft, setup.carrier],
            flood: setup.flood,
            strip: setup.strip,
            rewrite_contact: setup.rewrite_contact,
            policy: setup.policy,
            shard: setup.shard,
            retry_after: setup.retry_after.to_string(),
            next_branch,
            pending: crate::FastMap::default(),
            clients: crate::FastMap::default(),
            tls_names: crate::FastMap::default(),
            sides: crate::FastMap::default(),
            out: Vec::new(),
            stats: ProxyStats::default(),
            draining: false,
            quality: setup.quality,
            etag: 0,
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// Applies a reload. Transactions under way go on; destinations that stay keep their
    /// health; the policy takes `cfg`'s reloadable settings.
    pub fn reload(&mut self, r: ProxyReload, cfg: &crate::config::Config, now: Millis) {
        let [acl_ms, acl_c] = r.acl;
        self.routing = self.routing.with_peers(r.peers, acl_ms, acl_c);
        self.sets[0].update(r.microsoft.0, &r.microsoft.1, now);
        self.sets[1].update(r.carrier.0, &r.carrier.1, now);
        self.flood.reconfigure(&r.flood);
        self.flood.set_peers(r.flood_peers);
        self.retry_after = r.flood.retry_after.to_string();
        self.strip = r.strip;
        self.rewrite_contact = r.rewrite_contact;
        self.policy.reconfigure(cfg);
    }

    /// Starts (or ends) draining: new out-of-dialog requests get 503 with Retry-After,
    /// in-dialog requests and transactions already running go on.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The policy's counters.
    pub fn policy_report(&self) -> crate::proxy::policy::PolicyReport {
        self.policy.report()
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.layer.len()
    }

    /// The destination set of a side (health, for status and tests).
    pub fn dest_set(&self, side: Side) -> &DestSet {
        &self.sets[idx(side)]
    }

    /// Takes the messages to send, in order.
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// When [`Proxy::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        [
            self.layer.poll_timeout(),
            self.sets[0].next_probe_at(),
            self.sets[1].next_probe_at(),
            self.policy.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs timers and probes due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.layer.handle_timeout(now);
        if self.policy.poll_timeout().is_some_and(|at| at <= now) {
            self.policy.handle_timeout(now);
        }
        for side in [Side::Microsoft, Side::Carrier] {
            while let Some(dest) = self.sets[idx(side)].poll_probe(now) {
                self.send_probe(now, side, dest);
            }
        }
        self.drain_layer(now);
    }

    /// Handles one received message.
    pub fn handle(&mut self, now: Millis, r: Received) {
        let Some(side) = self.routing.listener(r.listener).map(|l| l.side) else {
            return;
        };
        if r.msg.is_request() {
            self.on_request(now, r, side);
        } else {
            self.on_response(now, r.msg);
        }
        self.drain_layer(now);
    }

    fn on_request(&mut self, now: Millis, r: Received, side: Side) {
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
                    self.send(r.source, Some(side), None, bytes);
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

    fn new_request(
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
        self.side_ref(source, side);
        self.pending.insert(
            sid,
            Pending {
                request: Some(msg.clone()),
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
    fn quality_report(&mut self, now: Millis, sid: ServerId, msg: &Message, source: Target) {
        let sbc = self
            .routing
            .peers()
            .iter()
            .find(|p| p.side == Side::Carrier && p.target.addr.ip() == source.addr.ip())
            .map(|p| p.name.clone());
        let Some(sbc) = sbc else {
            self.stats.quality_refused += 1;
            return self.answer(now, sid, 403, &[]);
        };
        self.stats.quality_reports += 1;
        if let Some(q) = &self.quality {
            q.report(&sbc, Bytes::copy_from_slice(msg.body()));
        }
        self.etag += 1;
        let etag = format!("oc{:x}.{:x}", self.shard, self.etag);
        self.answer(
            now,
            sid,
            200,
            &[("SIP-ETag", etag.as_bytes()), ("Expires", b"0")],
        );
    }

    /// Picks the next untried destination of the other side and forwards there. False when
    /// none is left: the caller answers (503 when nothing could be tried, 408 after a timeout,
    /// the last response otherwise — RFC 3261 §16.7 step 6).
    fn forward_to_next(&mut self, now: Millis, sid: ServerId) -> bool {
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
        self.forward_inner(now, sid, &request, to_side, target, name, Some(dest), pops);
        true
    }

    fn forward_in_dialog(&mut self, now: Millis, sid: ServerId, msg: &Message, to_side: Side) {
        match self.next_hop(msg, to_side) {
            Some(Hop {
                target,
                name,
                pops,
                request_uri,
            }) => {
                if let (Some(uri), Some(p)) = (request_uri, self.pending.get_mut(&sid)) {
                    p.rewrite = Some(uri);
                }
                self.forward_inner(now, sid, msg, to_side, target, name, None, pops)
            }
            None => {
                self.stats.no_route += 1;
                self.answer(now, sid, 404, &[]);
            }
        }
    }

    /// How many Route entries at the top of `msg` are ours (two with double Record-Route).
    fn our_route_pops(&self, msg: &Message) -> usize {
        msg.routes().map(|r| self.ours(&r)).unwrap_or(0)
    }

    /// How many of `routes`, from the top, name us.
    fn ours(&self, routes: &[NameAddr<'_>]) -> usize {
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
    fn next_hop(&self, msg: &Message, to_side: Side) -> Option<Hop> {
        let routes = msg.routes().ok()?;
        let pops = self.ours(&routes);
        let hop = |(target, name): (Target, Option<String>), request_uri| Hop {
            target,
            name,
            pops,
            request_uri,
        };
        let ours = routes.get(..pops).unwrap_or_default();
        if let Some(next) = routes.get(pops) {
            return self
                .routing
                .resolve(&next.uri, to_side)
                .or_else(|| self.flow_hop(ours, &next.uri, to_side))
                .map(|r| hop(r, None));
        }
        let uri = msg.request_uri()?;
        if to_side == Side::Carrier && self.routing.is_us(&uri) {
            if let Some(orig) = contact::original(&uri) {
                let resolved = self
                    .routing
                    .resolve(&Uri::parse(orig.as_bytes()).ok()?, to_side);
                return resolved.map(|r| hop(r, Some(orig)));
            }
        }
        self.routing
            .resolve(&uri, to_side)
            .or_else(|| self.flow_hop(ours, &uri, to_side))
            .map(|r| hop(r, None))
    }

    /// The Microsoft proxy named by the flow token of one of `ours` (our popped Route
    /// entries), if the relay rule accepts it; with `next`'s host as TLS name when it is a
    /// name and the flow is no configured target.
    fn flow_hop(
        &self,
        ours: &[NameAddr<'_>],
        next: &Uri<'_>,
        to_side: Side,
    ) -> Option<(Target, Option<String>)> {
        if to_side != Side::Microsoft {
            return None;
        }
        let token = ours.iter().find_map(|r| r.uri.param(flow::FLOW))??;
        let (target, name) = self.routing.relay(flow::decode(token)?, to_side)?;
        let name = name.or_else(|| match next.host {
            Host::Name(n) => std::str::from_utf8(n).ok().map(str::to_owned),
            _ => None,
        });
        Some((target, name))
    }

    /// The Contact value to send toward Microsoft from listener `via` (`None`: leave it).
    fn contact_for_microsoft(&self, msg: &Message, via: &ListenerInfo) -> Option<String> {
        if !self.rewrite_contact {
            return None;
        }
        let (contacts, _) = msg.contacts().ok()?;
        contact::rewrite(&contacts, &via.advertise, via.transport)
    }

    /// The forward edit (§16.6) and the client transaction.
    #[allow(clippy::too_many_arguments)]
    fn forward_inner(
        &mut self,
        now: Millis,
        sid: ServerId,
        msg: &Message,
        to_side: Side,
        target: Target,
        name: Option<String>,
        dest: Option<DestId>,
        pops: usize,
    ) {
        let ingress = self.pending.get(&sid).map(|p| (p.listener, p.source));
        let rewrite = self.pending.get(&sid).and_then(|p| p.rewrite.clone());
        let Some(bytes) =
            self.edit_request(msg, to_side, target, pops, ingress, rewrite.as_deref())
        else {
            return self.answer(now, sid, 500, &[]);
        };
        let Ok(out) = Message::parse(bytes, &Limits::DEFAULT) else {
            return self.answer(now, sid, 500, &[]);
        };
        match self.layer.send_request(now, Some(sid), out, target) {
            Ok(cid) => {
                self.stats.forwarded_requests += 1;
                self.clients.insert(
                    cid,
                    (ClientRole::Forward(sid, dest.map(|d| (to_side, d))), target),
                );
                self.side_ref(target, to_side);
                if let Some(n) = name {
                    self.tls_names.insert(target, n);
                }
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
    fn edit_request(
        &mut self,
        msg: &Message,
        to_side: Side,
        target: Target,
        pops: usize,
        ingress: Option<(usize, Target)>,
        request_uri: Option<&str>,
    ) -> Option<Bytes> {
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
        e.push_via(via.as_bytes()).ok()?;
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
        Some(e.finish())
    }

    fn new_via(&mut self, advertise: &str, t: crate::transport::Transport) -> String {
        self.next_branch += 1;
        let rport = if t == crate::transport::Transport::Udp {
            ";rport"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {advertise};branch={BRANCH_PREFIX}{:x}.{:x}{rport}",
            t.via_token(),
            self.shard,
            self.next_branch
        )
    }
}

/// Methods we accept, for the `Allow` of our OPTIONS answers.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, MESSAGE";

/// Our Record-Route entry for `advertise`; `flow`: the Microsoft proxy it faces.
fn record_route(advertise: &str, t: crate::transport::Transport, flow: Option<Target>) -> String {
    match flow {
        Some(f) => format!(
            "<sip:{advertise};transport={};lr;{}={}>",
            t.as_str(),
            flow::FLOW,
            flow::encode(f)
        ),
        None => format!("<sip:{advertise};transport={};lr>", t.as_str()),
    }
}

pub(super) fn is_failover_status(status: u16) -> bool {
    matches!(status, 408 | 503)
}

impl Proxy {
    fn on_response(&mut self, now: Millis, msg: Message) {
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

    fn forward_response(
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
    fn relay_response(&mut self, now: Millis, sid: ServerId, status: u16, msg: &Message) {
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
    fn finish_pending(&mut self, sid: ServerId, status: u16) {
        if status >= 200 {
            if let Some(p) = self.pending.get_mut(&sid) {
                p.request = None;
            }
        }
    }

    /// Answers a server transaction ourselves with a policy's reason phrase.
    fn answer_with_reason(&mut self, now: Millis, sid: ServerId, status: u16, reason: &str) {
        let Some(request) = self.pending.get(&sid).and_then(|p| p.request.as_ref()) else {
            return;
        };
        let tag = to_tag_for(&self.tag_key, request.headers());
        let printable = !reason.is_empty() && reason.bytes().all(|b| (0x20..0x7f).contains(&b));
        let phrase = if printable {
            reason
        } else {
            reason_phrase(status)
        };
        let bytes = build_response(
            request.headers(),
            status,
            phrase,
            Some(tag.as_bytes()),
            &[],
            None,
        );
        self.send_answer(now, sid, bytes, status);
    }

    /// Answers a server transaction ourselves.
    fn answer(&mut self, now: Millis, sid: ServerId, status: u16, extra: &[(&str, &[u8])]) {
        let Some(request) = self.pending.get(&sid).and_then(|p| p.request.as_ref()) else {
            return;
        };
        let tag = to_tag_for(&self.tag_key, request.headers());
        let bytes = build_response(
            request.headers(),
            status,
            reason_phrase(status),
            Some(tag.as_bytes()),
            extra,
            None,
        );
        self.send_answer(now, sid, bytes, status);
    }

    /// Sends a response the proxy built on its server transaction and shows it to the policy.
    fn send_answer(&mut self, now: Millis, sid: ServerId, bytes: Bytes, status: u16) {
        if self
            .layer
            .send_response(now, sid, bytes.clone(), status)
            .is_ok()
            && status > 100
        {
            if let Ok(msg) = Message::parse(bytes, &Limits::DEFAULT) {
                self.observe_response(now, sid, &msg);
            }
        }
        self.finish_pending(sid, status);
    }

    /// Shows a response sent upstream to the policy, with the side its request came from.
    fn observe_response(&mut self, now: Millis, sid: ServerId, msg: &Message) {
        if let Some(side) = self.pending.get(&sid).map(|p| p.from_side) {
            self.policy.on_response(now, side, msg);
        }
    }

    /// Answers a request without a transaction (invalid, looping, flooding, overload).
    fn stateless_reply(
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
        let tag = to_tag_for(&self.tag_key, msg.headers());
        let bytes = build_response(
            msg.headers(),
            status,
            reason_phrase(status),
            Some(tag.as_bytes()),
            extra,
            None,
        );
        self.send(to, Some(side), None, bytes);
    }

    /// Forwards an ACK for a 2xx statelessly (§16.11), loose-routed like any in-dialog
    /// request, with a branch derived from the incoming one so retransmissions match.
    fn forward_ack(&mut self, msg: Message, from_side: Side) {
        let to_side = from_side.other();
        let Some(Hop {
            target,
            name,
            pops,
            request_uri,
        }) = self.next_hop(&msg, to_side)
        else {
            self.stats.no_route += 1;
            return;
        };
        let Some(egress) = self.routing.egress(to_side, target.transport).cloned() else {
            return;
        };
        let incoming = msg.top_via_branch().ok().flatten().unwrap_or(b"");
        let via = format!(
            "SIP/2.0/{} {};branch={BRANCH_PREFIX}a{:016x}",
            target.transport.via_token(),
            egress.advertise,
            fnv1a(incoming)
        );
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
        self.send(target, Some(to_side), name, bytes);
    }

    /// Logs a destination's health change.
    fn health(&mut self, side: Side, change: Option<HealthChange>) {
        if let Some(c) = change {
            let name = &self.sets[idx(side)].dest(c.id).name;
            if c.up {
                tracing::info!(side = side.as_str(), dest = %name, "destination up");
            } else {
                tracing::warn!(side = side.as_str(), dest = %name, "destination down");
            }
        }
    }

    pub(super) fn send(
        &mut self,
        to: Target,
        side: Option<Side>,
        tls_name: Option<String>,
        bytes: Bytes,
    ) {
        self.out.push(Output {
            to,
            tls_name,
            side,
            bytes,
        });
    }

    fn side_ref(&mut self, t: Target, side: Side) {
        let e = self.sides.entry(t).or_insert((side, 0));
        e.0 = side;
        e.1 += 1;
    }

    fn side_unref(&mut self, t: Target) {
        if let Some(e) = self.sides.get_mut(&t) {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                self.sides.remove(&t);
            }
        }
    }

    /// Moves the layer's actions to the output and reacts to timeouts and terminations.
    fn drain_layer(&mut self, now: Millis) {
        while let Some(a) = self.layer.poll_action() {
            match a {
                Action::Send { to, bytes } => {
                    let name = self.tls_names.get(&to).cloned();
                    let side = self.sides.get(&to).map(|s| s.0);
                    self.send(to, side, name, bytes);
                }
                Action::ClientTimedOut {
                    client,
                    server,
                    expiry,
                } => self.on_client_timeout(now, client, server, expiry),
                Action::Terminated(TxId::Server(sid)) => {
                    if let Some(p) = self.pending.remove(&sid) {
                        self.side_unref(p.source);
                    }
                }
                Action::Terminated(TxId::Client(cid)) => {
                    if let Some((_, target)) = self.clients.remove(&cid) {
                        self.side_unref(target);
                    }
                }
            }
        }
        while let Some(ev) = self.layer.poll_event() {
            self.policy.observe(&ev);
        }
    }

    fn on_client_timeout(
        &mut self,
        now: Millis,
        client: ClientId,
        server: Option<ServerId>,
        expiry: Expiry,
    ) {
        match self.clients.get(&client).map(|c| c.0) {
            Some(ClientRole::Probe(side, dest)) => {
                let change = self.sets[idx(side)].on_probe_result(dest, false, now);
                self.health(side, change);
            }
            Some(ClientRole::Forward(sid, dest)) => match expiry {
                Expiry::TimerB | Expiry::TimerF => {
                    if let Some((side, d)) = dest {
                        let change = self.sets[idx(side)].on_call_result(d, false, now);
                        self.health(side, change);
                    }
                    let retry =
                        dest.is_some() && self.pending.get(&sid).is_some_and(|p| p.out_of_dialog);
                    let cancelled = self.pending.get(&sid).is_some_and(|p| p.cancelled);
                    if retry && self.forward_to_next(now, sid) {
                        self.stats.failovers += 1;
                    } else if cancelled {
                        self.answer(now, sid, 487, &[]);
                    } else {
                        self.answer(now, sid, 408, &[]);
                    }
                }
                Expiry::CancelUnanswered => self.answer(now, sid, 487, &[]),
                _ => {}
            },
            None => {
                if let Some(sid) = server {
                    self.answer(now, sid, 408, &[]);
                }
            }
        }
    }
}

/// FNV-1a, for deriving stable branch ids from incoming ones.
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Proxy {
    /// Sends an OPTIONS health probe to a destination (RFC 3261 §11; Kamailio dispatcher
    /// style). Its result feeds the destination's health.
    fn send_probe(&mut self, now: Millis, side: Side, dest: DestId) {
        let d = self.sets[idx(side)].dest(dest);
        let (target, name) = (d.target, d.tls_name.clone());
        let Some(egress) = self.routing.egress(side, target.transport).cloned() else {
            return;
        };
        self.next_branch += 1;
        let n = self.next_branch;
        let via = self.new_via(&egress.advertise, target.transport);
        let host = name.clone().unwrap_or_else(|| target.addr.to_string());
        let text = format!(
            "OPTIONS sip:{host} SIP/2.0\r\n\
             Via: {via}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:ocedge@{adv}>;tag=p{shard:x}.{n:x}\r\n\
             To: <sip:{host}>\r\n\
             Call-ID: probe.{shard:x}.{n:x}@{adv}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Contact: <sip:{adv};transport={t}>\r\n\
             Content-Length: 0\r\n\r\n",
            adv = egress.advertise,
            shard = self.shard,
            t = target.transport.as_str(),
        );
        let Ok(msg) = Message::parse(Bytes::from(text), &Limits::DEFAULT) else {
            return;
        };
        if let Ok(cid) = self.layer.send_request(now, None, msg, target) {
            self.stats.probes_sent += 1;
            self.clients
                .insert(cid, (ClientRole::Probe(side, dest), target));
            self.side_ref(target, side);
            if let Some(n) = name {
                self.tls_names.insert(target, n);
            }
        }
    }
}

impl Proxy {
    /// Handles a message the parser refused: a request from an allowed source is answered
    /// with the status the first look decides (when its headers could be read); anything else
    /// is dropped.
    pub fn handle_unparsed(&mut self, failure: &ParseFailure, source: Target, listener: usize) {
        let Some(side) = self.routing.listener(listener).map(|l| l.side) else {
            return;
        };
        if !self.routing.acl(side).allows(source.addr.ip()) {
            self.stats.acl_dropped += 1;
            return;
        }
        let d = validate::decide_failure(failure);
        match (&d, &failure.headers) {
            (Decision::Reply { .. }, Some(headers)) => {
                self.stats.rejected_invalid += 1;
                let tag = to_tag_for(&self.tag_key, headers);
                if let Some(bytes) = reply_for(&d, headers, tag.as_bytes()) {
                    self.send(source, Some(side), None, bytes);
                }
            }
            _ => self.stats.dropped_invalid += 1,
        }
    }
}
