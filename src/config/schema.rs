//! The configuration schema: one struct per TOML table, every field documented, unknown keys
//! refused. Defaults are the values a loopback test deployment needs; production values are
//! in `config/production.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::sip::Limits;
pub use crate::transport::Transport;

/// A duration written as a human string: `"500ms"`, `"30s"`, `"5m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// Which of the two sides a listener, peer or SBC belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The Microsoft Teams / Operator Connect SIP proxies.
    Microsoft,
    /// The carrier's SBCs.
    Carrier,
}

impl Side {
    /// The other side: where a request received on this side is forwarded.
    pub fn other(self) -> Side {
        match self {
            Side::Microsoft => Side::Carrier,
            Side::Carrier => Side::Microsoft,
        }
    }

    /// Lowercase name, as in the config and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Microsoft => "microsoft",
            Side::Carrier => "carrier",
        }
    }
}

/// `[node]`: who this gateway is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Our FQDN: the name in our TLS certificate, used in Contact, Via and Record-Route
    /// toward Microsoft on TLS listeners.
    pub fqdn: String,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            fqdn: "localhost".into(),
        }
    }
}

/// One `[[listen]]` entry: a socket the gateway receives SIP on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Which side's traffic arrives here.
    pub side: Side,
    /// `udp`, `tcp` or `tls`.
    pub transport: Transport,
    /// Local address and port (IPv4 or `[IPv6]`).
    pub addr: SocketAddr,
    /// Host (and optional port) written into Via and Record-Route for this listener;
    /// defaults to `node.fqdn` on TLS and the listen address otherwise.
    #[serde(default)]
    pub advertise: Option<String>,
}

/// `[transport]`: bounds and timeouts common to every listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportCfg {
    /// Most simultaneous connections per TCP/TLS listener; more are refused at accept.
    pub max_connections: usize,
    /// TLS handshakes not finished within this time are dropped.
    pub handshake_timeout: Dur,
    /// Stream connections idle for this long are closed.
    pub idle_timeout: Dur,
    /// TCP connect timeout for outgoing connections.
    pub connect_timeout: Dur,
    /// UDP sockets per UDP listener (SO_REUSEPORT); 0 means one per CPU core.
    pub udp_sockets: usize,
    /// Messages queued for sending on one stream connection before new ones are dropped.
    pub send_queue: usize,
}

impl Default for TransportCfg {
    fn default() -> Self {
        TransportCfg {
            max_connections: 1024,
            handshake_timeout: Dur(Duration::from_secs(5)),
            idle_timeout: Dur(Duration::from_secs(600)),
            connect_timeout: Dur(Duration::from_secs(3)),
            udp_sockets: 0,
            send_queue: 1024,
        }
    }
}

/// `[tls]`: our certificate and the roots Microsoft's certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain presented to peers (carries `node.fqdn`).
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA roots that peers' certificates must chain to.
    pub ca: PathBuf,
    /// When the three files are missing, generate a development CA and certificate for
    /// `node.fqdn` into them at start (`ocedge certs dev` does the same). Never in production.
    #[serde(default)]
    pub generate_dev: bool,
}

/// `[timers]`: RFC 3261 transaction timers and table bound.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersCfg {
    /// T1, the round-trip estimate (RFC 3261: 500ms).
    pub t1: Dur,
    /// T2, the cap on non-INVITE retransmit intervals (4s).
    pub t2: Dur,
    /// T4, how long a message stays in the network (5s).
    pub t4: Dur,
    /// Timer C, the proxy's INVITE transaction timeout (more than 3 minutes).
    pub timer_c: Dur,
    /// Most live transactions; beyond it new requests get 503.
    pub max_transactions: usize,
}

impl Default for TimersCfg {
    fn default() -> Self {
        TimersCfg {
            t1: Dur(Duration::from_millis(500)),
            t2: Dur(Duration::from_secs(4)),
            t4: Dur(Duration::from_secs(5)),
            timer_c: Dur(Duration::from_secs(181)),
            max_transactions: 100_000,
        }
    }
}

/// A token bucket: sustained rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Requests per second, sustained.
    pub rate: f64,
    /// Requests allowed at once.
    pub burst: f64,
}

/// `[flood]`: per-source limits on out-of-dialog requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flood {
    /// Limit for any source that is not a configured peer.
    pub source: Bucket,
    /// Limit for configured peers (Microsoft targets and SBCs).
    pub peer: Bucket,
    /// `Retry-After` seconds in the 503 sent to the first excess request.
    pub retry_after: u32,
    /// Most sources tracked at once; the least recently seen are forgotten first.
    pub max_sources: usize,
}

impl Default for Flood {
    fn default() -> Self {
        Flood {
            source: Bucket {
                rate: 20.0,
                burst: 40.0,
            },
            peer: Bucket {
                rate: 10_000.0,
                burst: 20_000.0,
            },
            retry_after: 5,
            max_sources: 65_536,
        }
    }
}

/// A peer address, as `host:port` (IP literal) with its transport.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsTarget {
    /// Name for logs, metrics and TLS name checks (e.g. `sip.pstnhub.microsoft.com`).
    pub name: String,
    /// Address to send to.
    pub addr: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
}

/// Health probing with OPTIONS, as Kamailio's dispatcher does it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    /// Send OPTIONS probes at all; when false, health follows call results only.
    pub enabled: bool,
    /// Interval between OPTIONS to each destination.
    pub interval: Dur,
    /// Consecutive failures (timeout or 5xx) that mark a destination down.
    pub failure_threshold: u32,
    /// Consecutive successes that mark a down destination up again.
    pub success_threshold: u32,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            enabled: true,
            interval: Dur(Duration::from_secs(60)),
            failure_threshold: 3,
            success_threshold: 2,
        }
    }
}

/// `[microsoft]`: the Microsoft side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Microsoft {
    /// Where calls from the carrier go, in order of preference.
    pub targets: Vec<MsTarget>,
    /// Names a Microsoft peer's TLS certificate must match (any of them).
    #[serde(default)]
    pub peer_names: Vec<String>,
    /// Source networks allowed to send to the Microsoft-side listeners; empty allows all.
    #[serde(default)]
    pub acl: Vec<IpNet>,
    /// Headers removed from requests forwarded toward Microsoft.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// OPTIONS probing of the targets.
    #[serde(default)]
    pub probe: Probe,
}

/// One SBC of the carrier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sbc {
    /// Name for logs and metrics.
    pub name: String,
    /// Address to send to.
    pub addr: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
    /// Lower is preferred; SBCs of equal priority share calls by weight.
    #[serde(default = "one")]
    pub priority: u32,
    /// Share of calls among SBCs of the same priority.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// `[carrier]`: the carrier side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carrier {
    /// The SBC set calls from Microsoft go to.
    pub sbcs: Vec<Sbc>,
    /// Source networks allowed to send to the carrier-side listeners; empty allows all.
    #[serde(default)]
    pub acl: Vec<IpNet>,
    /// Headers removed from requests forwarded toward the SBCs.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// OPTIONS probing of the SBCs.
    #[serde(default)]
    pub probe: Probe,
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`
    #[serde(default)]
    pub node: Node,
    /// `[[listen]]`
    #[serde(default)]
    pub listen: Vec<Listen>,
    /// `[transport]`
    #[serde(default)]
    pub transport: TransportCfg,
    /// `[tls]`, required when any listener or peer uses TLS.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// `[timers]`
    #[serde(default)]
    pub timers: TimersCfg,
    /// `[limits]`: size limits on SIP input; every key optional, defaults in [`Limits`].
    #[serde(default)]
    pub limits: Limits,
    /// `[flood]`
    #[serde(default)]
    pub flood: Flood,
    /// `[microsoft]`
    pub microsoft: Option<Microsoft>,
    /// `[carrier]`
    pub carrier: Option<Carrier>,
}
