//! The daemon: wires configuration, transports and the proxy core together and runs them
//! until cancelled.
//!
//! Tasks: the transports' receive loops (one per UDP socket, one per stream connection)
//! parse each message on the receiving task — so parsing uses every core — and hand it to
//! the proxy inline (see [`shard`]); one timer task runs the proxy's timers and probes.

mod admin;
pub mod cdr;
pub mod quality;
pub mod reload;
mod shard;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::proxy::core::{Proxy, ProxySetup};
use crate::proxy::dispatch::DestSet;
use crate::proxy::flood::FloodControl;
use std::path::PathBuf;
use std::sync::Arc;

use crate::calls::{CallTracker, CdrSink, TrackerConfig, WallClock};
use crate::emulator::{Emulator, EmulatorConfig};
use crate::msapi::http::HttpApi;
use crate::msapi::token::load_secret;
use crate::msapi::DurationsApi;
use crate::numbers::{NumberTable, SyncConfig};
use crate::proxy::numbers_policy::NumberPolicy;
use crate::proxy::policy::{AllowAll, Policy};
use crate::proxy::route::{ListenerInfo, Routing};
use crate::proxy::transaction::{LayerConfig, Millis, Timers};
use crate::transport::{TransportSetup, Transports};

use shard::Shard;

/// A running gateway: its transports and the handle to stop it.
pub struct Running {
    /// The transports (bound addresses for tests).
    pub transports: Transports,
    /// The assigned-numbers table, when `[api]` is configured.
    pub numbers: Option<NumberTable>,
    /// The Microsoft API base URL in use (the embedded emulator's address when embedded).
    pub api_base_url: Option<String>,
    /// Cancels every task.
    pub cancel: CancellationToken,
    /// Tracks every task, to wait for them after cancelling.
    pub tracker: TaskTracker,
    /// The call-record pipeline, when `[cdr]` is on.
    pub cdr: Option<Arc<cdr::CdrPipeline>>,
    /// The admin HTTP server's address, when `[admin]` is on.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Reloads the configuration (SIGHUP, `POST /admin/reload`, tests).
    pub reloader: Arc<reload::Reloader>,
    /// The quality pipeline, when `[quality]` is on.
    pub quality: Option<Arc<quality::QualityPipeline>>,
    shard: Arc<Shard>,
}

impl Running {
    /// Starts draining: new calls get 503 (with Retry-After) from now on, calls already up
    /// or ringing go on, and readiness reports the drain.
    pub fn start_drain(&self) {
        self.shard.modify(|p| p.set_draining(true));
    }

    /// Calls up or ringing now (0 without call timing).
    pub fn calls_left(&self) -> usize {
        self.shard
            .inspect(|p| p.policy_report().calls.map_or(0, |c| c.active + c.pending))
            .unwrap_or(0)
    }

    /// Graceful drain: [`Running::start_drain`], then waits until no call is left, or for
    /// `timeout`; returns how many calls were still there (their journal entries survive
    /// and the next start closes them). Without call timing (`[cdr] enabled = false`) there
    /// is nothing to wait for and it returns at once.
    pub async fn drain(&self, timeout: std::time::Duration) -> usize {
        self.start_drain();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.calls_left();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stops every task and waits for them to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.shard.close();
        if let Some(c) = &self.cdr {
            c.finish();
        }
    }
}

/// Starts the gateway described by `cfg` on the current tokio runtime.
pub async fn start(cfg: &Config) -> anyhow::Result<Running> {
    start_from(cfg, None).await
}

/// [`start`], remembering the file `cfg` came from for reloads (SIGHUP, admin).
pub async fn start_from(cfg: &Config, path: Option<PathBuf>) -> anyhow::Result<Running> {
    let setup = TransportSetup::from_config(cfg).context("preparing transports")?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (numbers, api_base_url, client) = match start_numbers(cfg, &cancel, &tracker).await {
        Ok(v) => v,
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    let durations = client.clone().map(|c| c as Arc<dyn DurationsApi>);
    let cdr = match cdr::start(cfg, durations, &cancel, &tracker) {
        Ok(c) => c.map(Arc::new),
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    if let Some(table) = &numbers {
        wait_loaded(table, cfg.numbers.startup_wait.0).await;
    }
    let shard = Shard::new(cfg.limits);
    let transports = match Transports::start(&setup, shard.clone(), cancel.clone(), &tracker).await
    {
        Ok(t) => t,
        Err(e) => {
            cancel.cancel();
            return Err(e).context("starting listeners");
        }
    };
    let quality = if cfg.quality.enabled {
        Some(quality::start(&cfg.quality, &cancel, &tracker)?)
    } else {
        None
    };
    let reconcile = match client.clone() {
        Some(c) => match crate::reconcile::Reconciler::from_config(
            cfg,
            c as Arc<dyn crate::msapi::CallRecordsApi>,
        ) {
            Ok(Some(mut r)) => {
                // Microsoft's quality data goes to the same sinks as the SBCs' reports.
                if let Some(q) = quality.clone() {
                    r.on_record(Arc::new(move |rec| {
                        for s in quality::microsoft_samples(rec) {
                            q.submit(quality::Source::Microsoft, "microsoft", s);
                        }
                    }));
                }
                let stats = r.stats();
                tracker.spawn(r.run(cancel.clone()));
                Some(stats)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "reconciliation not started");
                None
            }
        },
        None => None,
    };
    let policy = build_policy(cfg, numbers.as_ref(), cdr.as_deref(), &shard);
    let intake: Option<Arc<dyn crate::proxy::policy::QualityIntake>> = quality
        .clone()
        .map(|q| q as Arc<dyn crate::proxy::policy::QualityIntake>);
    let proxy = build_proxy(cfg, &transports, policy, intake)?;
    shard.install(proxy, transports.clone());
    tracker.spawn(shard.clone().timers(cancel.clone()));
    let reloader = Arc::new(reload::Reloader::new(
        path,
        cfg.clone(),
        shard.clone(),
        transports.clone(),
    ));
    let admin_addr = if cfg.admin.enabled {
        let source = Arc::new(admin::DaemonSource {
            shard: shard.clone(),
            transports: transports.clone(),
            numbers: numbers.clone(),
            cdr: cdr.clone(),
            reloader: reloader.clone(),
            cert: cfg.tls.as_ref().map(|t| t.cert.clone()),
            reconcile: reconcile.clone(),
        });
        match crate::admin::serve(&cfg.admin, source, cancel.clone()).await {
            Ok(server) => {
                let addr = server.local_addr();
                tracing::info!(%addr, "admin HTTP");
                tracker.spawn(async move {
                    if let Err(e) = server.wait().await {
                        tracing::error!(error = %e, "admin HTTP stopped");
                    }
                });
                Some(addr)
            }
            Err(e) => {
                cancel.cancel();
                return Err(e).context("starting the admin HTTP server");
            }
        }
    } else {
        None
    };
    Ok(Running {
        transports,
        numbers,
        api_base_url,
        cancel,
        tracker,
        cdr,
        admin_addr,
        reloader,
        quality,
        shard,
    })
}

/// The number policy (or none), wrapped by the call tracker when `[cdr]` is on; calls
/// journaled before a restart are handed to the tracker here.
fn build_policy(
    cfg: &Config,
    numbers: Option<&NumberTable>,
    cdr: Option<&cdr::CdrPipeline>,
    shard: &Shard,
) -> Box<dyn Policy> {
    let Some(cdr) = cdr else {
        return match numbers {
            Some(table) => Box::new(NumberPolicy::new(table.clone(), cfg.numbers.clone())),
            None => Box::new(AllowAll),
        };
    };
    let now = shard.now();
    let clock = WallClock::anchored(crate::cdr::now_ms(), now);
    let tcfg = TrackerConfig::from_config(&cfg.cdr).with_timer_c(cfg.timers.timer_c.0);
    let sink: Arc<dyn CdrSink> = cdr.sink.clone();
    let recovered = cdr.recovered.clone();
    match numbers {
        Some(table) => {
            let inner = NumberPolicy::new(table.clone(), cfg.numbers.clone());
            let mut t = CallTracker::new(inner, sink, clock, tcfg);
            t.recover(now, recovered);
            Box::new(t)
        }
        None => {
            let mut t = CallTracker::new(AllowAll, sink, clock, tcfg);
            t.recover(now, recovered);
            Box::new(t)
        }
    }
}

/// Runs the gateway until SIGINT or SIGTERM (then drains); SIGHUP reloads the file.
pub async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    // First: a SIGHUP during start-up (which may wait for the number table) must not kill
    // the daemon; it is taken as a reload once running.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let running = start_from(&cfg, Some(path)).await?;
    tracing::info!(listeners = cfg.listen.len(), "ocedge running");
    // Peer names looked up again every node.dns_refresh ("0s": never).
    let refresh = cfg.node.dns_refresh.0;
    let period = refresh.max(std::time::Duration::from_secs(1));
    let mut dns = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    dns.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = dns.tick(), if !refresh.is_zero() => {
                let r = running.reloader.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || r.refresh_peers()).await {
                    tracing::error!(error = %e, "DNS refresh task failed");
                }
            }
            _ = hup.recv() => {
                let r = running.reloader.clone();
                match tokio::task::spawn_blocking(move || r.reload()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "reload failed; running configuration kept"),
                    Err(e) => tracing::error!(error = %e, "reload task failed"),
                }
            }
            r = wait_for_signal() => { r?; break; }
        }
    }
    let timeout = cfg.node.drain_timeout.0;
    tracing::info!(
        ?timeout,
        "draining: new calls get 503; a second signal stops at once"
    );
    tokio::select! {
        left = running.drain(timeout) => {
            if left > 0 {
                tracing::warn!(calls = left, "drain timeout: stopping with calls up (journaled)");
            }
        }
        r = wait_for_signal() => r?,
    }
    tracing::info!("shutting down");
    running.stop().await;
    tracing::info!("stopped: spool flushed");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Waits (bounded) for the number table to be loaded, so the first calls are not refused
/// merely because the first sync is still running.
async fn wait_loaded(table: &NumberTable, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !table.is_loaded() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if table.is_loaded() {
        tracing::info!(numbers = table.len(), "number table loaded");
    } else {
        tracing::warn!("number table not loaded yet: new calls get 503 until it is");
    }
}

/// Starts the Microsoft API side: the embedded emulator when `api.base_url = "embedded"`,
/// the HTTP client, and the sync loop filling the number table. `None` without `[api]`.
async fn start_numbers(
    cfg: &Config,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(Option<NumberTable>, Option<String>, Option<Arc<HttpApi>>)> {
    let Some(api) = &cfg.api else {
        return Ok((None, None, None));
    };
    let mut api = api.clone();
    let secret = if api.base_url == "embedded" {
        let emu =
            EmulatorConfig::from_config(&cfg.emulator).context("loading the emulator seed")?;
        let running = Emulator::new(emu)
            .start(cfg.emulator.listen, cancel.clone())
            .await
            .with_context(|| {
                format!("starting the embedded emulator on {}", cfg.emulator.listen)
            })?;
        api.base_url = running.base_url();
        tracing::info!(url = %api.base_url, "embedded Microsoft API emulator");
        tracker.spawn(async move {
            if let Err(e) = running.wait().await {
                tracing::error!(error = %e, "embedded emulator stopped");
            }
        });
        // The embedded emulator accepts any credentials: a fresh machine needs none.
        "embedded".to_owned()
    } else {
        load_secret(&api).context("reading the API client secret")?
    };
    let client = Arc::new(HttpApi::new(&api, secret).context("configuring the API client")?);
    let table = NumberTable::new();
    tracker.spawn(crate::numbers::run(
        client.clone(),
        table.clone(),
        SyncConfig::from_config(&cfg.numbers),
        cancel.clone(),
    ));
    Ok((Some(table), Some(api.base_url), Some(client)))
}

fn build_proxy(
    cfg: &Config,
    transports: &Transports,
    policy: Box<dyn Policy>,
    quality: Option<Arc<dyn crate::proxy::policy::QualityIntake>>,
) -> anyhow::Result<Proxy> {
    cfg.microsoft.as_ref().context("[microsoft] is required")?;
    cfg.carrier.as_ref().context("[carrier] is required")?;
    let listeners = cfg
        .listen
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let local = transports.local_addr(i).unwrap_or(l.addr);
            let advertise = l.advertise.clone().unwrap_or_else(|| {
                if l.transport == crate::transport::Transport::Tls {
                    format!("{}:{}", cfg.node.fqdn, local.port())
                } else {
                    local.to_string()
                }
            });
            ListenerInfo {
                side: l.side,
                transport: l.transport,
                local,
                advertise,
            }
        })
        .collect();
    // What a reload may change comes from the same place at start and at reload.
    let r = reload::proxy_reload(cfg);
    let [acl_ms, acl_carrier] = r.acl;
    let routing = Routing::new(listeners, r.peers, acl_ms, acl_carrier);
    let t = &cfg.timers;
    let layer = LayerConfig {
        timers: Timers {
            t1: t.t1.0,
            t2: t.t2.0,
            t4: t.t4.0,
            c: t.timer_c.0,
            ..Timers::default()
        },
        max_transactions: t.max_transactions,
        tag_key: rand::random(),
        limits: cfg.limits,
    };
    Ok(Proxy::new(ProxySetup {
        routing,
        microsoft: DestSet::new(r.microsoft.0, &r.microsoft.1, Millis(0)),
        carrier: DestSet::new(r.carrier.0, &r.carrier.1, Millis(0)),
        flood: FloodControl::new(&r.flood, r.flood_peers),
        strip: r.strip,
        rewrite_contact: r.rewrite_contact,
        layer,
        shard: 0,
        retry_after: cfg.flood.retry_after,
        policy,
        quality,
    }))
}
