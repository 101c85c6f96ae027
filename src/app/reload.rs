//! Reload (SIGHUP and `POST /admin/reload`): a new configuration is read and checked in
//! full (peer host names looked up again, [`crate::config::peer`]); if anything is wrong
//! the running one stays and the error says why. Otherwise the
//! certificates (new handshakes use them, live connections keep theirs), the peers, SBC
//! sets, ACLs, flood limits, stripped headers, number-policy switches, emergency list and
//! call limits take effect at once, transactions and calls under way untouched. Settings
//! that need a restart (listeners, timers, limits, the API, the spool, admin) are named
//! and left as they are.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::shard::Shard;
use crate::config::{Config, Side};
use crate::proxy::acl::Acl;
use crate::proxy::core::ProxyReload;
use crate::proxy::dispatch::DestSpec;
use crate::proxy::route::Peer;
use crate::transport::{Target, TransportSetup, Transports};

/// Reloads the configuration file the daemon was started with.
pub struct Reloader {
    path: Option<PathBuf>,
    current: Mutex<Config>,
    shard: Arc<Shard>,
    transports: Transports,
}

impl Reloader {
    /// A reloader for the running `cfg`, read from `path` (None: [`Reloader::apply`]
    /// only, e.g. in tests).
    pub(super) fn new(
        path: Option<PathBuf>,
        cfg: Config,
        shard: Arc<Shard>,
        transports: Transports,
    ) -> Reloader {
        Reloader {
            path,
            current: Mutex::new(cfg),
            shard,
            transports,
        }
    }

    /// Reads the file again and applies it: a summary, or why nothing changed.
    pub fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.path else {
            return Err("no configuration file to reload".into());
        };
        let cfg = Config::load(path).map_err(|e| format!("reload refused: {e}"))?;
        self.apply(cfg)
    }

    /// Applies a checked configuration; see the module documentation.
    pub fn apply(&self, new: Config) -> Result<String, String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let restart = needs_restart(&current, &new);
        // Certificates first: the one step that can still fail.
        if let Some(tls) = TransportSetup::from_config(&new)
            .map_err(|e| format!("reload refused: TLS: {e}"))?
            .tls
        {
            self.transports
                .reload_tls(tls)
                .map_err(|e| format!("reload refused: TLS: {e}"))?;
        }
        if new.log.level != current.log.level {
            crate::logging::set_level(&new.log.level)
                .map_err(|e| format!("reload refused: {e}"))?;
        }
        let r = proxy_reload(&new);
        self.shard
            .modify(|p| p.reload(r, &new, self.shard.now()))
            .ok_or("the proxy is not running yet")?;
        let summary = if restart.is_empty() {
            "configuration reloaded".to_owned()
        } else {
            format!(
                "configuration reloaded; these changes need a restart and are not in effect: {}",
                restart.join(", ")
            )
        };
        // What runs now: the new settings, but the restart-only ones as they were, so the
        // next reload names them again until the restart.
        *current = Config {
            listen: current.listen.clone(),
            transport: current.transport.clone(),
            timers: current.timers.clone(),
            limits: current.limits,
            api: current.api.clone(),
            emulator: current.emulator.clone(),
            admin: current.admin.clone(),
            log: crate::config::Log {
                format: current.log.format,
                ..new.log.clone()
            },
            node: crate::config::Node {
                fqdn: current.node.fqdn.clone(),
                dns_refresh: current.node.dns_refresh,
                ..new.node.clone()
            },
            cdr: crate::config::Cdr {
                spool_dir: current.cdr.spool_dir.clone(),
                enabled: current.cdr.enabled,
                ..new.cdr.clone()
            },
            ..new
        };
        tracing::info!(%summary, "reload");
        Ok(summary)
    }
}

impl Reloader {
    /// Looks the peer addresses written as DNS names up again ([`crate::config::peer`]) and
    /// moves the peers whose answer changed, as a reload would (new calls and probes go to
    /// the new address; transactions and calls under way are untouched). A failed lookup
    /// keeps that peer's last address. `Some(summary)` when anything moved.
    pub fn refresh_peers(&self) -> Option<String> {
        self.refresh_peers_with(crate::config::peer::resolve_name)
    }

    /// [`Reloader::refresh_peers`] with the lookup given (tests).
    pub fn refresh_peers_with(
        &self,
        resolve: impl Fn(&str, u16) -> Result<SocketAddr, String>,
    ) -> Option<String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = current.clone();
        let mut moved = Vec::new();
        let mut look = |name: &str, host: &Option<String>, addr: &mut SocketAddr| {
            let Some(host) = host else { return };
            match resolve(host, addr.port()) {
                Ok(a) if a != *addr => {
                    moved.push(format!("{name} {addr} -> {a}"));
                    *addr = a;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(peer = name, %error, "DNS lookup failed; last address kept");
                }
            }
        };
        if let Some(m) = next.microsoft.as_mut() {
            for t in &mut m.targets {
                look(&t.name, &t.host, &mut t.addr);
            }
        }
        if let Some(c) = next.carrier.as_mut() {
            for sbc in &mut c.sbcs {
                look(&sbc.name, &sbc.host, &mut sbc.addr);
            }
        }
        if moved.is_empty() {
            return None;
        }
        let r = proxy_reload(&next);
        self.shard
            .modify(|p| p.reload(r, &next, self.shard.now()))?;
        *current = next;
        let summary = format!("peer addresses moved: {}", moved.join(", "));
        tracing::info!(%summary, "DNS refresh");
        Some(summary)
    }
}

/// The keys whose change needs a restart, by table.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    check(old.listen != new.listen, "listen");
    check(old.transport != new.transport, "transport");
    check(old.timers != new.timers, "timers");
    check(old.limits != new.limits, "limits");
    check(old.node.fqdn != new.node.fqdn, "node.fqdn");
    check(
        old.node.dns_refresh != new.node.dns_refresh,
        "node.dns_refresh",
    );
    check(old.api != new.api, "api");
    check(old.emulator != new.emulator, "emulator");
    check(old.admin != new.admin, "admin");
    check(old.log.format != new.log.format, "log.format");
    check(
        old.cdr.spool_dir != new.cdr.spool_dir || old.cdr.enabled != new.cdr.enabled,
        "cdr.spool_dir/cdr.enabled",
    );
    check(
        old.cdr.upload != new.cdr.upload
            || old.cdr.export != new.cdr.export
            || old.cdr.segment_bytes != new.cdr.segment_bytes
            || old.cdr.fsync_interval != new.cdr.fsync_interval
            || old.cdr.max_bytes != new.cdr.max_bytes,
        "cdr (spool and upload settings)",
    );
    check(
        old.numbers.snapshot != new.numbers.snapshot
            || old.numbers.delta_interval != new.numbers.delta_interval,
        "numbers.snapshot/numbers.delta_interval",
    );
    out
}

/// The peers of a configuration: Microsoft targets and SBCs.
pub(super) fn peers(cfg: &Config) -> Vec<Peer> {
    let mut peers = Vec::new();
    if let Some(ms) = &cfg.microsoft {
        peers.extend(ms.targets.iter().map(|t| Peer {
            name: t.name.clone(),
            target: Target {
                transport: t.transport,
                addr: t.addr,
            },
            side: Side::Microsoft,
        }));
    }
    if let Some(c) = &cfg.carrier {
        peers.extend(c.sbcs.iter().map(|s| Peer {
            name: s.name.clone(),
            target: Target {
                transport: s.transport,
                addr: s.addr,
            },
            side: Side::Carrier,
        }));
    }
    peers
}

/// What a reload changes in the proxy.
pub(super) fn proxy_reload(cfg: &Config) -> ProxyReload {
    let peers = peers(cfg);
    let flood_peers = peers.iter().map(|p| p.target.addr.ip()).collect();
    let (ms_acl, ms_strip, ms_specs, ms_probe) = match &cfg.microsoft {
        Some(m) => (
            Acl::new(&m.acl),
            m.strip_headers.clone(),
            DestSpec::from_ms_targets(&m.targets),
            m.probe.clone(),
        ),
        None => Default::default(),
    };
    let (c_acl, c_strip, c_specs, c_probe) = match &cfg.carrier {
        Some(c) => (
            Acl::new(&c.acl),
            c.strip_headers.clone(),
            DestSpec::from_sbcs(&c.sbcs),
            c.probe.clone(),
        ),
        None => Default::default(),
    };
    ProxyReload {
        peers,
        acl: [ms_acl, c_acl],
        microsoft: (ms_specs, ms_probe),
        carrier: (c_specs, c_probe),
        flood: cfg.flood.clone(),
        flood_peers,
        strip: [ms_strip, c_strip],
        rewrite_contact: cfg.microsoft.as_ref().is_some_and(|m| m.rewrite_contact),
    }
}
