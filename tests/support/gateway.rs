//! A gateway configuration for one test, written as TOML text (the documented schema of
//! `config/ocedge.toml`) and started with `ocedge::app::start` on the test's runtime.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ocedge::app::Running;
use ocedge::config::Config;
use ocedge::numbers::NumberTable;

use super::testdir::{temp_dir, TempDir};

/// A destination (Microsoft target or SBC).
#[derive(Debug, Clone)]
pub struct Dest {
    /// Name (TLS name for Microsoft targets).
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// SBC priority.
    pub priority: u32,
}

/// OPTIONS probing settings of one side.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Interval, as a duration string.
    pub interval: String,
    /// Failures that take a destination down.
    pub failure_threshold: u32,
    /// Successes that bring it back.
    pub success_threshold: u32,
}

/// Everything a test may vary. Defaults: short timers (t1 50 ms), loopback ACLs, probes
/// once an hour (the first destination of each side is probed once at start).
#[derive(Debug, Clone)]
pub struct Spec {
    /// `node.fqdn`.
    pub fqdn: String,
    /// Listeners: side, transport, address (port 0).
    pub listen: Vec<(&'static str, &'static str, String)>,
    /// Microsoft targets.
    pub targets: Vec<Dest>,
    /// SBCs.
    pub sbcs: Vec<Dest>,
    /// `microsoft.acl`.
    pub ms_acl: Vec<String>,
    /// `carrier.acl`.
    pub carrier_acl: Vec<String>,
    /// `microsoft.peer_names`.
    pub peer_names: Vec<String>,
    /// `microsoft.strip_headers`.
    pub ms_strip: Vec<String>,
    /// `carrier.strip_headers`.
    pub carrier_strip: Vec<String>,
    /// T1, T2, T4, Timer C.
    pub timers: [&'static str; 4],
    /// `flood.source` rate and burst.
    pub flood_source: (f64, f64),
    /// `flood.peer` rate and burst.
    pub flood_peer: (f64, f64),
    /// `flood.retry_after`.
    pub retry_after: u32,
    /// `microsoft.probe`.
    pub ms_probe: Probe,
    /// `carrier.probe`.
    pub carrier_probe: Probe,
    /// TLS files: cert, key, CA.
    pub tls: Option<[PathBuf; 3]>,
    /// `[api]`, `[numbers]` and `[emulator]`; `None`: no number policy (every call allowed).
    pub numbers: Option<NumbersSpec>,
    /// `[cdr] spool_dir`: a fresh directory per spec, shared by its clones and by the
    /// gateways started from it, removed when the last of them is dropped.
    pub spool_dir: Arc<TempDir>,
    /// Extra `[cdr]` lines (e.g. `max_call_duration = "5s"`).
    pub cdr_extra: String,
}

/// The usage written for every seeded number.
pub const SEED_USAGE: &str = "CallingUserAssignment";

/// The Microsoft API side of a test gateway: `[api]`, `[numbers]` and, when embedded,
/// `[emulator]` on `127.0.0.1:0`. Its files (seed CSV, client secret, snapshot) live in
/// `dir`, which the test owns.
#[derive(Debug, Clone)]
pub struct NumbersSpec {
    /// `api.base_url`: `"embedded"` or a URL.
    pub base_url: String,
    /// Directory of the seed, the secret and the snapshot.
    pub dir: PathBuf,
    /// `emulator.seed_csv`, when embedded.
    pub seed_csv: Option<PathBuf>,
    /// `api.client_secret_file`, when not embedded.
    pub secret_file: Option<PathBuf>,
    /// `numbers.delta_interval`.
    pub delta_interval: &'static str,
    /// `numbers.default_country_code`.
    pub default_country_code: Option<&'static str>,
    /// `numbers.startup_wait`.
    pub startup_wait: &'static str,
}

impl NumbersSpec {
    /// The embedded emulator seeded with `seed` (number, tenant, SIP URI), written to
    /// `dir/seed.csv`; deltas every 300 ms, default country code 1.
    pub fn embedded(dir: &Path, seed: &[(&str, &str, &str)]) -> NumbersSpec {
        let mut csv = String::from("telephone_number,tenant_id,sip_uri,usage\n");
        for (number, tenant, uri) in seed {
            let _ = writeln!(csv, "{number},{tenant},{uri},{SEED_USAGE}");
        }
        let path = dir.join("seed.csv");
        std::fs::write(&path, csv).expect("write seed CSV");
        NumbersSpec {
            base_url: "embedded".into(),
            dir: dir.to_owned(),
            seed_csv: Some(path),
            secret_file: None,
            delta_interval: "300ms",
            default_country_code: Some("1"),
            startup_wait: "5s",
        }
    }

    /// An API that cannot be reached (`http://127.0.0.1:1`: nothing listens on port 1),
    /// with a client secret file written to `dir/secret`.
    pub fn unreachable(dir: &Path) -> NumbersSpec {
        let secret = dir.join("secret");
        std::fs::write(&secret, "test-secret\n").expect("write secret");
        NumbersSpec {
            base_url: "http://127.0.0.1:1".into(),
            dir: dir.to_owned(),
            seed_csv: None,
            secret_file: Some(secret),
            delta_interval: "300ms",
            default_country_code: Some("1"),
            startup_wait: "5s",
        }
    }

    /// Where the snapshot is written.
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("numbers.snapshot")
    }

    fn write_toml(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "[api]\nbase_url = {:?}\ntimeout = \"2s\"\npage_size = 100",
            self.base_url
        );
        if let Some(f) = &self.secret_file {
            let _ = writeln!(s, "client_secret_file = {:?}", f.display().to_string());
        }
        let _ = writeln!(
            s,
            "\n[numbers]\nsnapshot = {:?}\ndelta_interval = {:?}\nstartup_wait = {:?}",
            self.snapshot().display().to_string(),
            self.delta_interval,
            self.startup_wait
        );
        if let Some(cc) = self.default_country_code {
            let _ = writeln!(s, "default_country_code = {cc:?}");
        }
        let _ = writeln!(s, "\n[emulator]\nlisten = \"127.0.0.1:0\"");
        if let Some(f) = &self.seed_csv {
            let _ = writeln!(s, "seed_csv = {:?}", f.display().to_string());
        }
        s.push('\n');
    }
}

impl Spec {
    /// Defaults around the given peers, no listener yet.
    pub fn new(targets: Vec<Dest>, sbcs: Vec<Dest>) -> Spec {
        let probe = Probe {
            interval: "1h".into(),
            failure_threshold: 3,
            success_threshold: 2,
        };
        Spec {
            fqdn: "ocedge.test".into(),
            listen: Vec::new(),
            targets,
            sbcs,
            ms_acl: vec!["127.0.0.0/8".into(), "::1/128".into()],
            carrier_acl: vec!["127.0.0.0/8".into(), "::1/128".into()],
            peer_names: vec![
                "sip.pstnhub.microsoft.com".into(),
                "sip2.pstnhub.microsoft.com".into(),
            ],
            ms_strip: vec!["X-Carrier-Internal".into()],
            carrier_strip: vec!["X-MS-TenantID".into()],
            timers: ["50ms", "400ms", "500ms", "30s"],
            flood_source: (100.0, 200.0),
            flood_peer: (10_000.0, 20_000.0),
            retry_after: 5,
            ms_probe: probe.clone(),
            carrier_probe: probe,
            tls: None,
            numbers: None,
            spool_dir: Arc::new(temp_dir("spool")),
            cdr_extra: String::new(),
        }
    }

    /// Enforces the number policy with this API and table.
    pub fn numbers(mut self, n: NumbersSpec) -> Spec {
        self.numbers = Some(n);
        self
    }

    /// Adds a listener on `ip:0`; its index is its position.
    pub fn listen(mut self, side: &'static str, transport: &'static str, ip: &str) -> Spec {
        let addr = if ip.contains(':') {
            format!("[{ip}]:0")
        } else {
            format!("{ip}:0")
        };
        self.listen.push((side, transport, addr));
        self
    }

    /// The configuration text.
    pub fn toml(&self) -> String {
        let q = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::new();
        let _ = writeln!(s, "[node]\nfqdn = {:?}\n", self.fqdn);
        for (side, transport, addr) in &self.listen {
            let _ = writeln!(
                s,
                "[[listen]]\nside = {side:?}\ntransport = {transport:?}\naddr = {addr:?}\n"
            );
        }
        let _ = writeln!(
            s,
            "[transport]\nhandshake_timeout = \"2s\"\nidle_timeout = \"60s\"\nconnect_timeout = \"2s\"\nudp_sockets = 2\n"
        );
        if let Some([cert, key, ca]) = &self.tls {
            let _ = writeln!(
                s,
                "[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\ngenerate_dev = false\n",
                cert.display().to_string(),
                key.display().to_string(),
                ca.display().to_string()
            );
        }
        let [t1, t2, t4, c] = self.timers;
        let _ = writeln!(
            s,
            "[timers]\nt1 = {t1:?}\nt2 = {t2:?}\nt4 = {t4:?}\ntimer_c = {c:?}\n"
        );
        let _ = writeln!(
            s,
            "[flood]\nsource = {{ rate = {:.1}, burst = {:.1} }}\npeer = {{ rate = {:.1}, burst = {:.1} }}\nretry_after = {}\n",
            self.flood_source.0, self.flood_source.1, self.flood_peer.0, self.flood_peer.1, self.retry_after
        );
        let _ = writeln!(
            s,
            "[microsoft]\npeer_names = [{}]\nacl = [{}]\nstrip_headers = [{}]\n",
            q(&self.peer_names),
            q(&self.ms_acl),
            q(&self.ms_strip)
        );
        let probe = |s: &mut String, table: &str, p: &Probe| {
            let _ = writeln!(
                s,
                "[{table}.probe]\ninterval = {:?}\nfailure_threshold = {}\nsuccess_threshold = {}\n",
                p.interval, p.failure_threshold, p.success_threshold
            );
        };
        probe(&mut s, "microsoft", &self.ms_probe);
        for t in &self.targets {
            let _ = writeln!(
                s,
                "[[microsoft.targets]]\nname = {:?}\naddr = \"{}\"\ntransport = {:?}\n",
                t.name, t.addr, t.transport
            );
        }
        let _ = writeln!(
            s,
            "[carrier]\nacl = [{}]\nstrip_headers = [{}]\n",
            q(&self.carrier_acl),
            q(&self.carrier_strip)
        );
        probe(&mut s, "carrier", &self.carrier_probe);
        for b in &self.sbcs {
            let _ = writeln!(
                s,
                "[[carrier.sbcs]]\nname = {:?}\naddr = \"{}\"\ntransport = {:?}\npriority = {}\nweight = 1\n",
                b.name, b.addr, b.transport, b.priority
            );
        }
        if let Some(n) = &self.numbers {
            n.write_toml(&mut s);
        }
        let _ = writeln!(s, "[admin]\nlisten = \"127.0.0.1:0\"\n");
        let _ = writeln!(
            s,
            "[cdr]\nspool_dir = {:?}\n{}",
            self.spool_dir.display().to_string(),
            self.cdr_extra
        );
        s
    }

    /// Parses the text as the daemon would and starts the gateway.
    pub async fn start(&self) -> Gateway {
        let text = self.toml();
        let cfg = config_from(&text);
        let running = ocedge::app::start(&cfg)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e:#}\n{text}"));
        Gateway {
            running: Some(running),
            cfg,
            _spool_dir: self.spool_dir.clone(),
        }
    }
}

/// Loads the configuration exactly as the daemon does (`Config::parse`: decoding and every
/// semantic check).
fn config_from(text: &str) -> Config {
    Config::parse(text, "test").unwrap_or_else(|e| panic!("config refused: {e}\n{text}"))
}

/// A running gateway.
pub struct Gateway {
    running: Option<Running>,
    /// The configuration it runs.
    pub cfg: Config,
    /// Its spool directory, kept while it runs (tests often drop the [`Spec`] at start).
    _spool_dir: Arc<TempDir>,
}

impl Gateway {
    /// The bound address of listener `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.running()
            .transports
            .local_addr(i)
            .expect("listener index")
    }

    /// The running daemon (transports, counters).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// The assigned-numbers table (panics without `[api]`).
    pub fn numbers(&self) -> &NumberTable {
        self.running()
            .numbers
            .as_ref()
            .expect("gateway started without [api]")
    }

    /// The Microsoft API base URL in use: the embedded emulator's (panics without `[api]`).
    pub fn api_base_url(&self) -> &str {
        self.running()
            .api_base_url
            .as_deref()
            .expect("gateway started without [api]")
    }

    /// Stops the gateway; it must finish within 5 s.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(5), r.stop())
                .await
                .expect("gateway did not stop within 5 s");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A test that panicked before `stop`: cancel the tasks so they end with the runtime.
        if let Some(r) = &self.running {
            r.cancel.cancel();
        }
    }
}

/// A destination at `addr`.
pub fn dest(name: &str, addr: SocketAddr, transport: &'static str, priority: u32) -> Dest {
    Dest {
        name: name.into(),
        addr,
        transport,
        priority,
    }
}
