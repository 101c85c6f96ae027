//! The configuration schema: one struct per TOML table, every field documented, unknown keys
//! refused. Defaults are the values a loopback test deployment needs; production values are
//! in `config/production.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub use super::admin::Admin;
pub use super::reconcile::{Reconcile, MAX_PULL_WINDOW};
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
    /// On SIGTERM, how long calls already up may go on (new calls get 503) before the
    /// gateway stops anyway; their records are closed as `recovered` at the next start.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Dur,
    /// How often peer addresses written as DNS names are looked up again (a changed answer
    /// moves new calls and probes to the new address; a failed lookup keeps the last one).
    /// "0s" turns it off (names are then looked up at start and at reloads only).
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh: Dur,
}

fn default_drain_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

fn default_dns_refresh() -> Dur {
    Dur(Duration::from_secs(300))
}

impl Default for Node {
    fn default() -> Self {
        Node {
            fqdn: "localhost".into(),
            drain_timeout: default_drain_timeout(),
            dns_refresh: default_dns_refresh(),
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
            max_transactions: 1_000_000,
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

/// A Microsoft target: its name, address and transport.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsTarget {
    /// Name for logs, metrics and TLS name checks (e.g. `sip.pstnhub.microsoft.com`).
    pub name: String,
    /// Address to send to: written as `IP:PORT` or `HOST:PORT`, a name resolved at load
    /// ([`super::peer`]).
    #[serde(deserialize_with = "super::peer::deserialize")]
    pub addr: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
    /// The DNS name `addr` was written with (`None` for an IP literal): looked up again
    /// every `node.dns_refresh` ([`super::peer`]).
    #[serde(skip)]
    pub host: Option<String>,
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
    /// Rewrite the Contact of requests and responses sent to Microsoft to this gateway's
    /// advertised Microsoft-side address (the SBC FQDN Microsoft knows), carrying the
    /// original in the `oc-alias` URI parameter; in-dialog requests to that Contact are
    /// sent to the original. Default true.
    #[serde(default = "yes")]
    pub rewrite_contact: bool,
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
    /// Address to send to: written as `IP:PORT` or `HOST:PORT`, a name resolved at load
    /// ([`super::peer`]).
    #[serde(deserialize_with = "super::peer::deserialize")]
    pub addr: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
    /// As for [`MsTarget::host`].
    #[serde(skip)]
    pub host: Option<String>,
    /// Lower is preferred; SBCs of equal priority share calls by weight.
    #[serde(default = "one")]
    pub priority: u32,
    /// Share of calls among SBCs of the same priority.
    #[serde(default = "one")]
    pub weight: u32,
}

fn yes() -> bool {
    true
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

/// `[api]`: the Microsoft API (or its emulator).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Base URL of the API, e.g. `https://api.example.com`, or `"embedded"` to run the
    /// emulator inside the daemon (see `[emulator]`).
    pub base_url: String,
    /// Entra-style tenant of the operator, used in the token URL
    /// (`{base_url}/{tenant}/oauth2/v2.0/token`).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// OAuth2 client id.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// File holding the OAuth2 client secret (never the secret itself in the config).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the OAuth2 client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// OAuth2 scope.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Timeout of one HTTP request.
    #[serde(default = "default_api_timeout")]
    pub timeout: Dur,
    /// Entries per page asked for (`$top`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_tenant() -> String {
    "operator".into()
}
fn default_client_id() -> String {
    "ocedge".into()
}
fn default_scope() -> String {
    "https://graph.microsoft.com/.default".into()
}
fn default_api_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_page_size() -> u32 {
    1000
}

/// `[numbers]`: the assigned-numbers table and the policy that enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Numbers {
    /// Where the last good table is persisted (written atomically; loaded at start).
    pub snapshot: PathBuf,
    /// Interval between delta polls.
    pub delta_interval: Dur,
    /// Country code prepended to national numbers (no `+`, no `00`) before lookup.
    pub default_country_code: Option<String>,
    /// Status for a call to a number that is not assigned (carrier → Microsoft).
    pub unassigned_status: u16,
    /// Status for a call from a number that is not assigned, or from another tenant
    /// (Microsoft → carrier).
    pub forbidden_status: u16,
    /// Rewrite the Request-URI of calls toward Microsoft to the number's assigned SIP URI.
    pub rewrite_request_uri: bool,
    /// Check `X-MS-TenantID` of calls from Microsoft against the number's tenant.
    pub check_tenant: bool,
    /// Emergency numbers: always let through (both directions), flagged.
    pub emergency: Vec<String>,
    /// Enforce the table at all (false: numbers are synced and looked up but never refused).
    pub enforce: bool,
    /// At start, how long to wait for the table (snapshot or first sync) before opening the
    /// SIP listeners anyway; until it is loaded new calls get 503.
    pub startup_wait: Dur,
}

impl Default for Numbers {
    fn default() -> Self {
        Numbers {
            snapshot: PathBuf::from("var/numbers.snapshot"),
            delta_interval: Dur(Duration::from_secs(30)),
            default_country_code: None,
            unassigned_status: 404,
            forbidden_status: 403,
            rewrite_request_uri: true,
            check_tenant: true,
            emergency: ["911", "933", "112", "999", "000", "110", "118", "119"]
                .into_iter()
                .map(String::from)
                .collect(),
            enforce: true,
            startup_wait: Dur(Duration::from_secs(10)),
        }
    }
}

/// `[emulator]`: the embedded Microsoft API emulator (when `api.base_url = "embedded"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorCfg {
    /// Where it listens.
    pub listen: SocketAddr,
    /// CSV seed: `telephone_number,tenant_id,sip_uri,usage`.
    pub seed_csv: Option<PathBuf>,
}

impl Default for EmulatorCfg {
    fn default() -> Self {
        EmulatorCfg {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            seed_csv: None,
        }
    }
}

/// `[cdr]`: call timing, the durable record spool, upload to Microsoft and export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cdr {
    /// Time calls and write records at all (false: no spool, no upload).
    pub enabled: bool,
    /// The spool directory (segments, the acknowledgement cursor, the dead-letter file).
    pub spool_dir: PathBuf,
    /// A segment is closed and a new one started past this many bytes.
    pub segment_bytes: u64,
    /// Group commit: appended records are fsynced at least this often.
    pub fsync_interval: Dur,
    /// Disk cap for the spool. Past `alarm_ratio` of it an alarm is raised; at the cap new
    /// calls are refused (503) so that records of calls already up are never dropped.
    pub max_bytes: u64,
    /// Fraction of `max_bytes` that raises the alarm.
    pub alarm_ratio: f64,
    /// A call still up after this long is ended (record closed as `max_duration`).
    pub max_call_duration: Dur,
    /// Most calls timed at once; beyond it new calls get 503.
    pub max_calls: usize,
    /// `[cdr.upload]`
    pub upload: CdrUpload,
    /// `[cdr.export]`: the carrier's own record files; absent = none.
    pub export: Option<CdrExport>,
}

impl Default for Cdr {
    fn default() -> Self {
        Cdr {
            enabled: true,
            spool_dir: PathBuf::from("var/spool"),
            segment_bytes: 64 << 20,
            fsync_interval: Dur(Duration::from_millis(20)),
            max_bytes: 4 << 30,
            alarm_ratio: 0.8,
            max_call_duration: Dur(Duration::from_secs(12 * 3600)),
            max_calls: 1_000_000,
            upload: CdrUpload::default(),
            export: None,
        }
    }
}

/// `[cdr.upload]`: giving durations to Microsoft.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrUpload {
    /// Upload at all (needs `[api]`).
    pub enabled: bool,
    /// Most records per request (the API takes at most 1000).
    pub batch_size: usize,
    /// A partial batch is sent after waiting this long for more records.
    pub batch_wait: Dur,
    /// Shortest and longest wait after a failed upload (exponential, jittered; a
    /// `Retry-After` is honoured up to an hour).
    pub backoff_min: Dur,
    /// See `backoff_min`.
    pub backoff_max: Dur,
}

impl Default for CdrUpload {
    fn default() -> Self {
        CdrUpload {
            enabled: true,
            batch_size: 500,
            batch_wait: Dur(Duration::from_millis(500)),
            backoff_min: Dur(Duration::from_millis(500)),
            backoff_max: Dur(Duration::from_secs(60)),
        }
    }
}

/// Record file format for `[cdr.export]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// `[cdr.export]`: finished records written to rotating files for the carrier's billing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrExport {
    /// Directory of the files (`cdr-<UTC start>.jsonl`).
    pub dir: PathBuf,
    /// `jsonl` (default) or `csv`.
    #[serde(default = "default_export_format")]
    pub format: ExportFormat,
    /// A new file is started this often.
    #[serde(default = "default_rotate")]
    pub rotate: Dur,
}

fn default_export_format() -> ExportFormat {
    ExportFormat::Jsonl
}
fn default_rotate() -> Dur {
    Dur(Duration::from_secs(3600))
}

/// `[quality]`: voice-quality samples (RFC 6035 reports from SBCs) and where they go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityCfg {
    /// Accept RFC 6035 reports from the configured SBCs at all (false: they get 403).
    pub enabled: bool,
    /// Reports waiting to be parsed at most; beyond, they are answered but dropped and
    /// counted (`ocedge_quality_dropped_total{sink="queue"}`).
    pub queue: usize,
    /// Directory of rotating JSONL files of samples (`quality-<UTC period start>.jsonl`);
    /// absent: no files.
    pub dir: Option<PathBuf>,
    /// A new file is started this often.
    pub rotate: Dur,
    /// `[quality.webhook]`: samples POSTed in batches to the carrier's endpoint.
    pub webhook: Option<Webhook>,
}

impl Default for QualityCfg {
    fn default() -> Self {
        QualityCfg {
            enabled: true,
            queue: 10_000,
            dir: None,
            rotate: Dur(Duration::from_secs(3600)),
            webhook: None,
        }
    }
}

/// `[quality.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://` URL; samples are POSTed as a JSON array.
    pub url: String,
    /// Most samples per request.
    #[serde(default = "default_webhook_batch")]
    pub batch_size: usize,
    /// Samples waiting at most; the oldest are dropped (and counted) beyond it.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// Timeout of one request; failures are retried with backoff.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Dur,
}

fn default_webhook_batch() -> usize {
    100
}
fn default_webhook_queue() -> usize {
    10_000
}
fn default_webhook_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line (with the current span's fields, e.g. the Call-ID).
    Json,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// An `EnvFilter` directive: `info`, `warn`, `info,ocedge::proxy=debug`. Reloadable.
    pub level: String,
    /// `human` or `json` (restart to change).
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: LogFormat::Human,
        }
    }
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
    /// `[api]`: the Microsoft API; without it no numbers are synced and none enforced.
    #[serde(default)]
    pub api: Option<Api>,
    /// `[numbers]`
    #[serde(default)]
    pub numbers: Numbers,
    /// `[emulator]`
    #[serde(default)]
    pub emulator: EmulatorCfg,
    /// `[cdr]`
    #[serde(default)]
    pub cdr: Cdr,
    /// `[log]`
    #[serde(default)]
    pub log: Log,
    /// `[quality]`
    #[serde(default)]
    pub quality: QualityCfg,
    /// `[admin]`: the admin HTTP server.
    #[serde(default)]
    pub admin: Admin,
    /// `[reconcile]`: Microsoft's call records pulled and reconciled with ours.
    #[serde(default)]
    pub reconcile: Reconcile,
}
