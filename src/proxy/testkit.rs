//! A ready-made proxy for simulated-time tests and benches: two UDP listeners (0: the
//! Microsoft side, 1: the carrier side), one Microsoft target and one SBC, probing off, RFC
//! 3261 default timers. Not part of the daemon.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Bucket, Dur, Flood, MsTarget, Probe, Sbc, Side};
use crate::proxy::acl::Acl;
use crate::proxy::core::ProxySetup;
use crate::proxy::dispatch::DestSet;
use crate::proxy::flood::FloodControl;
use crate::proxy::policy::Policy;
use crate::proxy::route::{ListenerInfo, Peer, Routing};
use crate::proxy::transaction::{LayerConfig, Millis, Timers};
use crate::transport::{Target, Transport};

/// Name of the one Microsoft target.
pub const MS_NAME: &str = "sip.pstnhub.microsoft.com";

/// Where the pieces are.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// Our Microsoft-side and carrier-side listener addresses (also advertised).
    pub listeners: [&'a str; 2],
    /// The Microsoft target and the SBC.
    pub ms: Target,
    /// The SBC.
    pub sbc: Target,
    /// Source networks of the Microsoft side and of the carrier side.
    pub acl: [&'a str; 2],
    /// Flood bucket rate and burst for every source.
    pub flood: f64,
    /// Transaction table bound.
    pub max_transactions: usize,
}

/// A UDP target.
pub fn udp(addr: &str) -> Target {
    Target {
        transport: Transport::Udp,
        addr: addr.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
    }
}

/// The proxy setup for `pair` with `policy`.
pub fn setup(pair: Pair<'_>, policy: Box<dyn Policy>) -> ProxySetup {
    let listener = |side, addr: &str| ListenerInfo {
        side,
        transport: Transport::Udp,
        local: addr.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        advertise: addr.into(),
    };
    let peer = |name: &str, target, side| Peer {
        name: name.into(),
        target,
        side,
    };
    let acl = |net: &str| Acl::new(&net.parse().map(|n| vec![n]).unwrap_or_default());
    let routing = Routing::new(
        vec![
            listener(Side::Microsoft, pair.listeners[0]),
            listener(Side::Carrier, pair.listeners[1]),
        ],
        vec![
            peer(MS_NAME, pair.ms, Side::Microsoft),
            peer("sbc1", pair.sbc, Side::Carrier),
        ],
        acl(pair.acl[0]),
        acl(pair.acl[1]),
    );
    let probe = Probe {
        enabled: false,
        interval: Dur(Duration::from_secs(60)),
        failure_threshold: 2,
        success_threshold: 2,
    };
    let bucket = Bucket {
        rate: pair.flood,
        burst: pair.flood,
    };
    let flood = Flood {
        source: bucket,
        peer: bucket,
        retry_after: 5,
        max_sources: 100,
    };
    ProxySetup {
        routing,
        microsoft: DestSet::microsoft(
            &[MsTarget {
                name: MS_NAME.into(),
                addr: pair.ms.addr,
                transport: Transport::Udp,
                host: None,
            }],
            &probe,
            Millis(0),
        ),
        carrier: DestSet::carrier(
            &[Sbc {
                name: "sbc1".into(),
                addr: pair.sbc.addr,
                transport: Transport::Udp,
                host: None,
                priority: 1,
                weight: 1,
            }],
            &probe,
            Millis(0),
        ),
        flood: FloodControl::new(&flood, [pair.ms.addr.ip(), pair.sbc.addr.ip()]),
        strip: [Vec::new(), Vec::new()],
        rewrite_contact: true,
        layer: LayerConfig {
            timers: Timers::default(),
            max_transactions: pair.max_transactions,
            tag_key: [7; 16],
            ..LayerConfig::default()
        },
        shard: 0,
        retry_after: 5,
        policy,
        quality: None,
    }
}

/// Every value of a header, by name, as text.
pub fn vals(m: &crate::sip::Message, name: &str) -> Vec<String> {
    m.header_by_name(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The first value of a header, by name, as text (empty when absent).
pub fn one(m: &crate::sip::Message, name: &str) -> String {
    vals(m, name).into_iter().next().unwrap_or_default()
}
