//! The [`Transports`] handle: binds the listeners, runs their loops on the caller's
//! [`TaskTracker`] until the [`CancellationToken`] fires, and sends without blocking.
//!
//! Everything is bound before any task is spawned, so a failed start leaves nothing running
//! and no port held. The TLS configurations sit behind a lock holding an `Arc`: a handshake
//! takes the current one, and [`Transports::reload_tls`] swaps in a new one, so rotation
//! affects new handshakes only.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::conn::ConnTable;
use super::setup::{check_peer_names, ListenerSetup, TransportSetup};
use super::stats::TransportStats;
use super::tls::{TlsConfigs, TlsSetup};
use super::{stream, udp, SendError, Sink, Target, Transport, TransportError};
use crate::config::{Side, TransportCfg};
use crate::sip::Limits;

/// A bound listener.
pub(crate) struct Bound {
    pub(crate) side: Side,
    pub(crate) transport: Transport,
    /// The actual bound address (port 0 resolved).
    pub(crate) local: SocketAddr,
    /// The socket group of a UDP listener; empty for TCP/TLS.
    udp: Vec<Arc<UdpSocket>>,
}

/// State shared by the handle and every task.
pub(crate) struct Shared {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) stats: Arc<TransportStats>,
    pub(crate) limits: Limits,
    pub(crate) cfg: TransportCfg,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Where tasks started by [`Transports::send`] run, whatever thread calls it.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) listeners: Vec<Bound>,
    pub(crate) conns: ConnTable,
    /// Slots for outgoing connections (`max_connections`).
    pub(crate) outgoing: Arc<Semaphore>,
    /// UDP sends waiting for room in a full socket buffer.
    pub(crate) udp_pending: AtomicUsize,
    tls: RwLock<Option<Arc<TlsConfigs>>>,
    peers: HashMap<SocketAddr, Side>,
    next_id: AtomicU64,
}

impl Shared {
    /// Capacity of a connection's send queue (`send_queue`, at least 1).
    pub(crate) fn queue_len(&self) -> usize {
        self.cfg.send_queue.max(1)
    }

    /// A fresh connection id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The current TLS configurations, if TLS is configured.
    pub(crate) fn tls_configs(&self) -> Option<Arc<TlsConfigs>> {
        self.tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The listener a connection we open to `to` is reported on: the first of `side` with
    /// the same transport and address family, relaxing each condition in turn.
    pub(crate) fn listener_for(&self, side: Option<Side>, to: Target) -> usize {
        let same_side = |b: &Bound| Some(b.side) == side;
        let same_transport = |b: &Bound| b.transport == to.transport;
        let same_family = |b: &Bound| b.local.is_ipv6() == to.addr.is_ipv6();
        let find = |f: &dyn Fn(&Bound) -> bool| self.listeners.iter().position(f);
        find(&|b| same_side(b) && same_transport(b) && same_family(b))
            .or_else(|| find(&|b| same_side(b) && same_transport(b)))
            .or_else(|| find(&same_side))
            .or_else(|| find(&same_transport))
            .unwrap_or(0)
    }

    /// A UDP socket that can reach `to`: from listener `from` if it is a UDP listener of the
    /// right family, else from a listener of `side`, else from any. Within a group the
    /// peer's port picks the socket.
    fn udp_socket(&self, from: Source, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        let usable = |b: &&Bound| !b.udp.is_empty() && b.local.is_ipv6() == to.is_ipv6();
        let side = from.side(self);
        let group = from
            .listener()
            .and_then(|i| self.listeners.get(i))
            .filter(usable)
            .or_else(|| {
                let mut of_side = self.listeners.iter().filter(usable);
                of_side.find(|b| Some(b.side) == side)
            })
            .or_else(|| self.listeners.iter().find(usable))?;
        group.udp.get(usize::from(to.port()) % group.udp.len())
    }
}

/// What the caller said about where a message should leave from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// Nothing: the side of a configured peer, if `to` is one.
    Auto(Option<Side>),
    /// A side.
    Side(Side),
    /// A listener index (the one a request arrived on).
    Listener(usize),
}

impl Source {
    /// The side this points at, if any.
    pub(crate) fn side(self, shared: &Shared) -> Option<Side> {
        match self {
            Source::Auto(side) => side,
            Source::Side(side) => Some(side),
            Source::Listener(i) => shared.listeners.get(i).map(|b| b.side),
        }
    }

    fn listener(self) -> Option<usize> {
        match self {
            Source::Listener(i) => Some(i),
            _ => None,
        }
    }
}

/// The running transports. Cheap to clone; every clone sends through the same sockets and
/// connections.
#[derive(Clone)]
pub struct Transports {
    shared: Arc<Shared>,
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<_> = self.shared.listeners.iter().map(|l| l.local).collect();
        f.debug_struct("Transports")
            .field("listeners", &addrs)
            .field("connections", &self.shared.conns.len())
            .finish_non_exhaustive()
    }
}

/// A bound socket not yet given to its loop.
enum Socket {
    Udp(Vec<Arc<UdpSocket>>),
    Stream(tokio::net::TcpListener),
}

impl Transports {
    /// Binds every listener of `setup` (port 0 allowed) and spawns the receive and accept
    /// loops on `tracker`; they stop when `cancel` fires. Must be called within a Tokio
    /// runtime, which also runs the tasks [`send`](Self::send) starts.
    pub async fn start(
        setup: &TransportSetup,
        sink: Arc<dyn Sink>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Transports, TransportError> {
        setup.check()?;
        let stats = Arc::new(TransportStats::default());
        let tls = match &setup.tls {
            Some(t) => Some(Arc::new(TlsConfigs::build(t, stats.clone())?)),
            None => None,
        };
        let per_group = match setup.transport.udp_sockets {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut sockets = Vec::with_capacity(setup.listeners.len());
        let mut listeners = Vec::with_capacity(setup.listeners.len());
        for (index, l) in setup.listeners.iter().enumerate() {
            let bind_err = |source| TransportError::Bind {
                index,
                transport: l.transport.as_str(),
                addr: l.addr,
                source,
            };
            let (socket, local, udp) = if l.transport == Transport::Udp {
                let group = udp::bind_group(l.addr, per_group).map_err(bind_err)?;
                let local = group[0].local_addr().map_err(bind_err)?;
                (Socket::Udp(group.clone()), local, group)
            } else {
                let listener = stream::bind_listener(l.addr).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                (Socket::Stream(listener), local, Vec::new())
            };
            sockets.push(socket);
            listeners.push(Bound {
                side: l.side,
                transport: l.transport,
                local,
                udp,
            });
        }
        let shared = Arc::new(Shared {
            sink,
            stats,
            limits: setup.limits,
            cfg: setup.transport.clone(),
            cancel,
            tracker: tracker.clone(),
            runtime: tokio::runtime::Handle::current(),
            listeners,
            conns: ConnTable::default(),
            outgoing: Arc::new(Semaphore::new(setup.transport.max_connections)),
            udp_pending: AtomicUsize::new(0),
            tls: RwLock::new(tls),
            peers: setup.peers.iter().copied().collect(),
            next_id: AtomicU64::new(1),
        });
        for (index, socket) in sockets.into_iter().enumerate() {
            let l = &shared.listeners[index];
            let (side, transport, addr) = (l.side.as_str(), l.transport.as_str(), l.local);
            match socket {
                Socket::Udp(group) => {
                    info!(listener = index, side, transport, %addr, sockets = group.len(), "listening");
                    for s in group {
                        tracker.spawn(udp::recv_loop(shared.clone(), s, index));
                    }
                }
                Socket::Stream(listener) => {
                    info!(listener = index, side, transport, %addr, "listening");
                    tracker.spawn(stream::accept_loop(shared.clone(), listener, index));
                }
            }
        }
        Ok(Transports { shared })
    }

    /// The actual bound address of listener `listener` (port 0 resolved).
    pub fn local_addr(&self, listener: usize) -> Option<SocketAddr> {
        self.shared.listeners.get(listener).map(|l| l.local)
    }

    /// Sends one message without blocking. UDP: from a socket of the listener on the side
    /// the target is configured for (Microsoft target or SBC), else any UDP socket of its
    /// address family. TCP/TLS: over the live connection to that address (one the peer
    /// opened to us, or one we opened), else a new one; TLS verifies the server against the
    /// CA roots and `tls_name` (or its IP address when `None`). Errors only for what fails at
    /// once; later connect, handshake and write failures are logged and counted.
    ///
    /// A destination that is not a configured peer (a UDP source answered by Via) has no
    /// known side: prefer [`send_from`](Self::send_from) for responses.
    pub fn send(&self, to: Target, tls_name: Option<&str>, bytes: Bytes) -> Result<(), SendError> {
        let side = self.shared.peers.get(&to.addr).copied();
        self.send_inner(Source::Auto(side), to, tls_name, None, bytes)
    }

    /// Like [`send`](Self::send), for a destination known to be on `side`: a UDP message
    /// leaves from that side's listener, and a new connection reports messages as received
    /// on it.
    pub fn send_on(
        &self,
        side: Side,
        to: Target,
        tls_name: Option<&str>,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        self.send_inner(Source::Side(side), to, tls_name, None, bytes)
    }

    /// Like [`send_on`](Self::send_on), to a flow: the stream connection the peer opened
    /// from `to`. When it is gone (peers open connections from ports they do not listen
    /// on), a connection to `reconnect` carries the message instead, reusing a live one.
    pub fn send_flow(
        &self,
        side: Side,
        to: Target,
        reconnect: SocketAddr,
        tls_name: Option<&str>,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        self.send_inner(Source::Side(side), to, tls_name, Some(reconnect), bytes)
    }

    /// Like [`send`](Self::send), leaving from listener `listener` (index into
    /// `config.listen`, as in [`super::Inbound::listener`]): a response to a UDP request goes
    /// out from the socket address the request was sent to, as peers and NATs expect. Falls
    /// back to that listener's side when it cannot reach `to` (other transport or family).
    pub fn send_from(
        &self,
        listener: usize,
        to: Target,
        tls_name: Option<&str>,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        self.send_inner(Source::Listener(listener), to, tls_name, None, bytes)
    }

    fn send_inner(
        &self,
        from: Source,
        to: Target,
        tls_name: Option<&str>,
        reconnect: Option<SocketAddr>,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        let shared = &self.shared;
        if shared.cancel.is_cancelled() {
            return Err(SendError::ShuttingDown);
        }
        match to.transport {
            Transport::Udp => {
                let socket = shared
                    .udp_socket(from, to.addr)
                    .ok_or(SendError::NoSocket { target: to })?;
                udp::send(shared, socket, to, bytes)
            }
            Transport::Tcp | Transport::Tls => {
                let key = (to.transport, to.addr);
                let to = match reconnect {
                    Some(addr) if !shared.conns.is_live(key) => Target {
                        transport: to.transport,
                        addr,
                    },
                    _ => to,
                };
                stream::send(shared, from.side(shared), to, tls_name, bytes)
            }
        }
    }

    /// Replaces the certificates: new handshakes use `setup`, established connections keep
    /// theirs. On error the old certificates stay in use.
    pub fn reload_tls(&self, setup: TlsSetup) -> Result<(), TransportError> {
        let listeners: Vec<ListenerSetup> = self
            .shared
            .listeners
            .iter()
            .map(|l| ListenerSetup {
                side: l.side,
                transport: l.transport,
                addr: l.local,
            })
            .collect();
        check_peer_names(&listeners, &setup)?;
        let configs = TlsConfigs::build(&setup, self.shared.stats.clone())?;
        *self
            .shared
            .tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(configs));
        info!(peer_names = ?setup.peer_names, "TLS certificates reloaded");
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> &TransportStats {
        &self.shared.stats
    }

    /// Live stream connections (accepted, opened, or still connecting).
    pub fn connections(&self) -> usize {
        self.shared.conns.len()
    }
}
