//! The daemon: wires configuration, transports and the proxy core together and runs them
//! until cancelled.
//!
//! Tasks:
//! - the transports' receive loops (one per UDP socket, one per stream connection) parse
//!   each message on the receiving task — so parsing uses every core — and hand it to the
//!   proxy task through a bounded queue (full queue: the message is dropped and counted;
//!   UDP peers retransmit, stream peers are never blocked);
//! - one proxy task owns the sans-IO [`Proxy`] (transactions, routing, health, flood
//!   control): it feeds it messages and timer ticks and passes what it returns to the
//!   transports. One task keeps every call's state in one place; its per-message work is
//!   a few microseconds, well below what one core can do at the target call rate.

mod shard;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Side};
use crate::proxy::acl::Acl;
use crate::proxy::core::{Proxy, ProxySetup, Received};
use crate::proxy::dispatch::DestSet;
use crate::proxy::flood::FloodControl;
use crate::proxy::policy::AllowAll;
use crate::proxy::route::{ListenerInfo, Peer, Routing};
use crate::proxy::transaction::{LayerConfig, Millis, Timers};
use crate::sip::{Limits, Message};
use crate::transport::{Inbound, Sink, Target, TransportSetup, Transports};

pub use shard::Input;

/// Capacity of the queue between the receive loops and the proxy task.
const QUEUE: usize = 65_536;

/// A running gateway: its transports and the handle to stop it.
pub struct Running {
    /// The transports (bound addresses for tests).
    pub transports: Transports,
    /// Cancels every task.
    pub cancel: CancellationToken,
    /// Tracks every task, to wait for them after cancelling.
    pub tracker: TaskTracker,
    /// Messages dropped because the proxy queue was full.
    pub queue_drops: Arc<AtomicU64>,
}

impl Running {
    /// Stops every task and waits for them to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Parses on the receiving task and queues for the proxy task.
struct QueueSink {
    tx: mpsc::Sender<Input>,
    limits: Limits,
    drops: Arc<AtomicU64>,
}

impl Sink for QueueSink {
    fn deliver(&self, m: Inbound) {
        let input = match Message::parse(m.bytes, &self.limits) {
            Ok(msg) => Input::Message(Received {
                msg,
                source: m.source,
                listener: m.listener,
            }),
            Err(failure) => Input::Unparsed {
                failure,
                source: m.source,
                listener: m.listener,
            },
        };
        if self.tx.try_send(input).is_err() {
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the gateway described by `cfg` on the current tokio runtime.
pub async fn start(cfg: &Config) -> anyhow::Result<Running> {
    let setup = TransportSetup::from_config(cfg).context("preparing transports")?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, rx) = mpsc::channel(QUEUE);
    let drops = Arc::new(AtomicU64::new(0));
    let sink = Arc::new(QueueSink {
        tx,
        limits: cfg.limits,
        drops: drops.clone(),
    });
    let transports = Transports::start(&setup, sink, cancel.clone(), &tracker)
        .await
        .context("starting listeners")?;
    let proxy = build_proxy(cfg, &transports)?;
    let epoch = Instant::now();
    tracker.spawn(shard::run(
        proxy,
        rx,
        transports.clone(),
        cancel.clone(),
        epoch,
    ));
    Ok(Running {
        transports,
        cancel,
        tracker,
        queue_drops: drops,
    })
}

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let running = start(&cfg).await?;
    tracing::info!(listeners = cfg.listen.len(), "ocedge running");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    running.stop().await;
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

fn build_proxy(cfg: &Config, transports: &Transports) -> anyhow::Result<Proxy> {
    let ms = cfg.microsoft.as_ref().context("[microsoft] is required")?;
    let carrier = cfg.carrier.as_ref().context("[carrier] is required")?;
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
    let mut peers: Vec<Peer> = ms
        .targets
        .iter()
        .map(|t| Peer {
            name: t.name.clone(),
            target: Target {
                transport: t.transport,
                addr: t.addr,
            },
            side: Side::Microsoft,
        })
        .collect();
    peers.extend(carrier.sbcs.iter().map(|s| Peer {
        name: s.name.clone(),
        target: Target {
            transport: s.transport,
            addr: s.addr,
        },
        side: Side::Carrier,
    }));
    let peer_ips: Vec<_> = peers.iter().map(|p| p.target.addr.ip()).collect();
    let routing = Routing::new(listeners, peers, Acl::new(&ms.acl), Acl::new(&carrier.acl));
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
    };
    Ok(Proxy::new(ProxySetup {
        routing,
        microsoft: DestSet::microsoft(&ms.targets, &ms.probe, Millis(0)),
        carrier: DestSet::carrier(&carrier.sbcs, &carrier.probe, Millis(0)),
        flood: FloodControl::new(&cfg.flood, peer_ips),
        strip: [ms.strip_headers.clone(), carrier.strip_headers.clone()],
        layer,
        shard: 0,
        retry_after: cfg.flood.retry_after,
        policy: Box::new(AllowAll),
    }))
}
