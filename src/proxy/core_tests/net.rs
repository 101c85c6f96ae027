//! The simulated network around one [`Proxy`]: fixed peers, a recording policy, delivery
//! of messages from a peer on a listener, simulated time, and the log of what was sent.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::msg::label;
use crate::config::{Bucket, Dur, Flood, MsTarget, Probe, Sbc, Side};
use crate::proxy::acl::Acl;
use crate::proxy::core::{Proxy, ProxySetup, Received};
use crate::proxy::dispatch::{DestSet, DestState};
use crate::proxy::flood::FloodControl;
use crate::proxy::policy::{Policy, Verdict};
use crate::proxy::route::{ListenerInfo, Peer, Routing};
use crate::proxy::transaction::{Event, LayerConfig, Millis, Timers};
use crate::sip::{Limits, Message};
use crate::transport::{Target, Transport};

/// Listener indexes: Microsoft UDP 10.0.0.1:5066, carrier UDP 10.0.0.1:5062, Microsoft TCP
/// 10.0.0.1:5067, carrier TCP 10.0.0.1:5063.
pub(super) const L_MS: usize = 0;
pub(super) const L_CARRIER: usize = 1;
/// The Microsoft-side TCP listener.
pub(super) const L_MS_TCP: usize = 2;

/// Our advertised addresses on the two UDP listeners.
pub(super) const GW_MS: &str = "10.0.0.1:5066";
pub(super) const GW_CARRIER: &str = "10.0.0.1:5062";

const fn udp(a: u8, b: u8, c: u8, d: u8, port: u16) -> Target {
    Target {
        transport: Transport::Udp,
        addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)),
    }
}

/// The Microsoft target (`sip.pstnhub.microsoft.com`), inside the Microsoft ACL.
pub(super) const MS: Target = udp(52, 112, 0, 10, 5060);
pub(super) const MS_NAME: &str = "sip.pstnhub.microsoft.com";
/// The SBCs, priority 1 and 2, inside the carrier ACL.
pub(super) const SBC1: Target = udp(192, 0, 2, 11, 5060);
pub(super) const SBC2: Target = udp(192, 0, 2, 12, 5060);
/// Inside the carrier ACL, not a configured peer (flood limits for plain sources).
pub(super) const CARRIER_HOST: Target = udp(192, 0, 2, 99, 5060);
/// Outside both ACLs.
pub(super) const STRANGER: Target = udp(203, 0, 113, 9, 5060);

/// T1 10 ms, so Timers B and F (64·T1) fire at 640 ms.
pub(super) const T1: u64 = 10;
pub(super) const T64: u64 = 64 * T1;
/// Timer C.
pub(super) const TIMER_C: u64 = 2_000;
/// The number the policy refuses, and with what.
pub(super) const REFUSED: &str = "+15550000666";
pub(super) const REFUSED_STATUS: u16 = 403;

/// What a test may vary.
pub(super) struct Spec {
    /// Transport of the Microsoft target.
    pub ms_transport: Transport,
    /// OPTIONS probing of both sides. Off by default so that call tests see only their
    /// own messages; health follows call results then (failure threshold 2).
    pub probe: Probe,
    pub flood: Flood,
    pub max_transactions: usize,
    /// The gateway's `[limits]`; what it sends is parsed back with them too.
    pub limits: Limits,
    /// Where RFC 6035 reports go; `None` is `[quality] enabled = false`.
    pub quality: Option<Arc<dyn crate::proxy::policy::QualityIntake>>,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            ms_transport: Transport::Udp,
            probe: Probe {
                enabled: false,
                interval: Dur(Duration::from_secs(1)),
                failure_threshold: 2,
                success_threshold: 2,
            },
            flood: Flood {
                source: Bucket {
                    rate: 1.0,
                    burst: 3.0,
                },
                peer: Bucket {
                    rate: 1000.0,
                    burst: 1000.0,
                },
                retry_after: 7,
                max_sources: 100,
            },
            max_transactions: 1000,
            limits: Limits::DEFAULT,
            quality: None,
        }
    }
}

/// What the policy saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// `check` calls: side and Request-URI.
    pub checks: Vec<(Side, String)>,
    /// Every observed transaction event, in order.
    pub events: Vec<Event>,
}

/// The policy test double: refuses [`REFUSED`], records everything.
struct Recorder(Arc<Mutex<Seen>>);

impl Policy for Recorder {
    fn check(&mut self, _now: Millis, side: Side, msg: &Message) -> Verdict {
        let uri = msg.request_uri_bytes().unwrap_or_default();
        let uri = String::from_utf8_lossy(uri).into_owned();
        let refused = uri.contains(&format!(":{REFUSED}@"));
        self.0.lock().unwrap().checks.push((side, uri));
        if refused {
            Verdict::Reject {
                status: REFUSED_STATUS,
                reason: "Forbidden".into(),
            }
        } else {
            Verdict::Allow
        }
    }

    fn observe(&mut self, event: &Event) {
        self.0.lock().unwrap().events.push(event.clone());
    }
}

/// One message the proxy sent, parsed, with when and how.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub at: u64,
    pub to: Target,
    pub side: Option<Side>,
    pub tls_name: Option<String>,
    pub reconnect: Option<std::net::SocketAddr>,
    pub msg: Message,
}

impl Sent {
    pub fn label(&self) -> String {
        label(&self.msg)
    }
}

/// What the proxy sent between two [`Net::take`]s, in order.
#[derive(Debug)]
pub(super) struct Out(pub Vec<Sent>);

impl Out {
    /// `(destination, method or status)` of everything, in order.
    pub fn all(&self) -> Vec<(Target, String)> {
        self.0.iter().map(|s| (s.to, s.label())).collect()
    }

    /// Everything sent to `t`.
    pub fn to(&self, t: Target) -> Vec<&Sent> {
        self.0.iter().filter(|s| s.to == t).collect()
    }

    /// Labels of what was sent to `t`.
    pub fn labels(&self, t: Target) -> Vec<String> {
        self.to(t).iter().map(|s| s.label()).collect()
    }

    /// The only message labelled `label` sent to `t`.
    pub fn one(&self, t: Target, label: &str) -> &Sent {
        let m: Vec<&Sent> = self
            .to(t)
            .into_iter()
            .filter(|s| s.label() == label)
            .collect();
        assert_eq!(
            m.len(),
            1,
            "one {label} to {t} expected in {:?}",
            self.all()
        );
        m[0]
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The proxy, the simulated clock and the log.
pub(super) struct Net {
    pub proxy: Proxy,
    pub now: u64,
    /// The Microsoft target as configured (transport per [`Spec::ms_transport`]).
    pub ms: Target,
    pub seen: Arc<Mutex<Seen>>,
    log: Vec<Sent>,
}

impl Net {
    pub fn new() -> Net {
        Net::with(Spec::default())
    }

    pub fn with(spec: Spec) -> Net {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ms = Target {
            transport: spec.ms_transport,
            addr: MS.addr,
        };
        let proxy = Proxy::new(setup(&spec, ms, Box::new(Recorder(seen.clone()))));
        Net {
            proxy,
            now: 0,
            ms,
            seen,
            log: Vec::new(),
        }
    }

    /// Delivers a message from `from` on listener `listener`.
    pub fn deliver(&mut self, listener: usize, from: Target, msg: Message) {
        let r = Received {
            msg,
            source: from,
            listener,
        };
        self.proxy.handle(Millis(self.now), r);
        self.collect();
    }

    /// Delivers raw bytes as the app does: parsed, or handed over as a parse failure.
    pub fn deliver_bytes(&mut self, listener: usize, from: Target, bytes: &[u8]) {
        match Message::parse(Bytes::copy_from_slice(bytes), &Limits::DEFAULT) {
            Ok(msg) => return self.deliver(listener, from, msg),
            Err(f) => self.proxy.handle_unparsed(&f, from, listener),
        }
        self.collect();
    }

    /// Delivers from a configured peer (or any address) on its side's UDP listener:
    /// 52.112/14 is Microsoft's side, everything else the carrier's.
    pub fn from(&mut self, peer: Target, msg: Message) {
        let ms = matches!(peer.addr.ip(), std::net::IpAddr::V4(a) if a.octets()[..2] == [52, 112]);
        self.deliver(if ms { L_MS } else { L_CARRIER }, peer, msg);
    }

    /// Advances to `ms`, running every deadline on the way at its own time.
    pub fn advance_to(&mut self, ms: u64) {
        for _ in 0..1_000_000 {
            match self.proxy.poll_timeout() {
                Some(Millis(at)) if at <= ms => {
                    self.now = self.now.max(at);
                    self.proxy.handle_timeout(Millis(self.now));
                    self.collect();
                }
                _ => {
                    self.now = self.now.max(ms);
                    return;
                }
            }
        }
        panic!("deadlines never ran out before {ms}");
    }

    pub fn advance(&mut self, ms: u64) {
        self.advance_to(self.now + ms);
    }

    /// Everything sent since the last call.
    pub fn take(&mut self) -> Out {
        Out(std::mem::take(&mut self.log))
    }

    /// Health of an SBC or the Microsoft target.
    pub fn state(&self, side: Side, t: Target) -> DestState {
        let set = self.proxy.dest_set(side);
        let (_, d) = set.iter().find(|(_, d)| d.target == t).expect("configured");
        d.state
    }

    /// The earliest probe deadline of either side.
    pub fn next_probe(&self) -> Option<Millis> {
        let p = |s| self.proxy.dest_set(s).next_probe_at();
        [p(Side::Microsoft), p(Side::Carrier)]
            .into_iter()
            .flatten()
            .min()
    }

    fn collect(&mut self) {
        let now = self.now;
        let limits = *self.proxy.limits();
        let sent = self.proxy.drain_output().map(|o| Sent {
            at: now,
            to: o.to,
            side: o.side,
            tls_name: o.tls_name,
            reconnect: o.reconnect,
            msg: Message::parse(o.bytes.clone(), &limits)
                .unwrap_or_else(|e| panic!("{e:?}:\n{}", String::from_utf8_lossy(&o.bytes))),
        });
        self.log.extend(sent);
    }
}

fn setup(spec: &Spec, ms: Target, policy: Box<dyn Policy>) -> ProxySetup {
    let listener = |side, transport, addr: &str| ListenerInfo {
        side,
        transport,
        local: addr.parse().unwrap(),
        advertise: addr.into(),
    };
    let listeners = vec![
        listener(Side::Microsoft, Transport::Udp, GW_MS),
        listener(Side::Carrier, Transport::Udp, GW_CARRIER),
        listener(Side::Microsoft, Transport::Tcp, "10.0.0.1:5067"),
        listener(Side::Carrier, Transport::Tcp, "10.0.0.1:5063"),
    ];
    let targets = [MsTarget {
        name: MS_NAME.into(),
        addr: ms.addr,
        transport: ms.transport,
        host: None,
    }];
    let sbc = |name: &str, t: Target, priority| Sbc {
        name: name.into(),
        addr: t.addr,
        transport: t.transport,
        host: None,
        priority,
        weight: 1,
    };
    let sbcs = [sbc("sbc1", SBC1, 1), sbc("sbc2", SBC2, 2)];
    let peer = |name: &str, target, side| Peer {
        name: name.into(),
        target,
        side,
    };
    let peers = vec![
        peer(MS_NAME, ms, Side::Microsoft),
        peer("sbc1", SBC1, Side::Carrier),
        peer("sbc2", SBC2, Side::Carrier),
    ];
    let peer_ips: Vec<_> = peers.iter().map(|p| p.target.addr.ip()).collect();
    let acl = |net: &str| Acl::new(&[net.parse().unwrap()]);
    let routing = Routing::new(listeners, peers, acl("52.112.0.0/14"), acl("192.0.2.0/24"));
    let layer = LayerConfig {
        timers: Timers {
            t1: Duration::from_millis(T1),
            t2: Duration::from_millis(4 * T1),
            t4: Duration::from_millis(5 * T1),
            d: Duration::from_millis(10 * T1),
            c: Duration::from_millis(TIMER_C),
        },
        max_transactions: spec.max_transactions,
        tag_key: [7; 16],
        limits: spec.limits,
    };
    ProxySetup {
        routing,
        microsoft: DestSet::microsoft(&targets, &spec.probe, Millis(0)),
        carrier: DestSet::carrier(&sbcs, &spec.probe, Millis(0)),
        flood: FloodControl::new(&spec.flood, peer_ips),
        strip: [
            vec!["X-Carrier-Internal".into()],
            vec!["X-MS-Internal".into()],
        ],
        rewrite_contact: true,
        layer,
        shard: 0,
        retry_after: spec.flood.retry_after,
        policy,
        quality: spec.quality.clone(),
    }
}
