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
//!
//! This file holds the state and the entry points; the paths are in `core/`: `request`
//! (requests in: checks, policy, destination), `forward` (failover, loose routing, the
//! forward edit, 2xx ACKs), `respond` (responses relayed, our own answers) and `timeouts`
//! (transaction expiries, OPTIONS probes).

use std::net::SocketAddr;

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
use crate::sip::uri::Uri;
use crate::sip::validate::{self, Decision};
use crate::sip::{Message, Method};
use crate::transport::Target;

use super::stats::ProxyStats;

mod forward;
mod request;
mod respond;
mod timeouts;

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
    /// `to` is a flow ([`super::flow`]) over a connection the peer opened: when that
    /// connection is gone, a new one goes to this address (the proxy's listening port).
    pub reconnect: Option<SocketAddr>,
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
    /// See [`Output::reconnect`].
    reconnect: Option<SocketAddr>,
}

/// What the proxy knows of an address a live transaction talks to.
struct PeerRef {
    side: Side,
    /// Live transactions (server and client) with it.
    refs: u32,
    /// The TLS name to verify when a connection to it must be opened.
    tls_name: Option<String>,
    /// See [`Output::reconnect`].
    reconnect: Option<SocketAddr>,
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
    /// it then, and the server transaction may linger 32 s in Accepted/Completed). Behind a
    /// pointer: a parsed message is 512 bytes, and inline it made every entry of this table
    /// that large for those 32 s (at 1,000 calls/s the table grew to 40 MB); shared, so that
    /// failover's copy of it is a reference count.
    request: Option<std::sync::Arc<Message>>,
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
    /// Every address a live transaction talks to, reference-counted by transaction
    /// (bounded by the transaction table): its side, and how to reach it.
    peers: crate::FastMap<Target, PeerRef>,
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
            peers: crate::FastMap::default(),
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

    /// The message limits it enforces (`[limits]`).
    pub fn limits(&self) -> &crate::sip::Limits {
        self.layer.limits()
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
}

pub(super) fn is_failover_status(status: u16) -> bool {
    matches!(status, 408 | 503)
}

impl Proxy {
    /// Sends to an address of `side` that needs no TLS name or reconnect address (an
    /// answer to where a request came from).
    pub(super) fn send(&mut self, to: Target, side: Side, bytes: Bytes) {
        self.out.push(Output {
            to,
            tls_name: None,
            side: Some(side),
            bytes,
            reconnect: None,
        });
    }

    /// One more live transaction with `t`; `tls_name` and `reconnect`, when given, are how
    /// to reach it from now on.
    fn peer_ref(
        &mut self,
        t: Target,
        side: Side,
        tls_name: Option<String>,
        reconnect: Option<SocketAddr>,
    ) {
        let e = self.peers.entry(t).or_insert(PeerRef {
            side,
            refs: 0,
            tls_name: None,
            reconnect: None,
        });
        e.side = side;
        e.refs += 1;
        if tls_name.is_some() {
            e.tls_name = tls_name;
        }
        if reconnect.is_some() {
            e.reconnect = reconnect;
        }
    }

    fn peer_unref(&mut self, t: Target) {
        if let Some(e) = self.peers.get_mut(&t) {
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                self.peers.remove(&t);
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
                    self.send(source, side, bytes);
                }
            }
            _ => self.stats.dropped_invalid += 1,
        }
    }
}
