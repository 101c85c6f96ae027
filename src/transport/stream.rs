//! TCP and TLS: accept loops, TLS handshakes, and outgoing connections.
//!
//! The accept loop only accepts: each connection's TLS handshake and life run on their own
//! task, so a slow or hostile client cannot hold the listener. Connections beyond
//! `max_connections` per listener are closed at once and counted. Outgoing connections are
//! bounded by `max_connections` too, registered before connecting (messages queue while the
//! connect and handshake run, bounded by `connect_timeout` and `handshake_timeout`), and
//! carry our certificate and verify the server's chain and name.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::conn::{serve, ConnMeta, Queued};
use super::stats::bump;
use super::transports::Shared;
use super::{warn_worthy, SendError, Target, Transport};
use crate::config::Side;

/// Pause after an accept error (e.g. out of file descriptors) so the loop cannot spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Listen backlog: connections the kernel holds before we accept them.
const BACKLOG: i32 = 1024;

/// Binds a TCP listening socket (SO_REUSEADDR so a restart can bind at once).
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accepts on listener `index` until shutdown.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, index: usize) {
    let Some(bound) = shared.listeners.get(index) else {
        return;
    };
    let (side, transport) = (bound.side, bound.transport);
    let permits = Arc::new(Semaphore::new(shared.cfg.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                warn!(listener = index, %error, "accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let count = bump(&shared.stats.connections_refused);
            if warn_worthy(count) {
                warn!(listener = index, %peer, count, "max_connections reached, connection refused");
            }
            continue;
        };
        bump(&shared.stats.connections_accepted);
        let task = accepted_conn(shared.clone(), sock, peer, index, side, transport, permit);
        shared.tracker.spawn(task);
    }
}

/// Handshakes (TLS) and serves one accepted connection; `_permit` holds its slot.
async fn accepted_conn(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    listener: usize,
    side: Side,
    transport: Transport,
    _permit: OwnedSemaphorePermit,
) {
    let _ = sock.set_nodelay(true);
    let Ok(local) = sock.local_addr() else { return };
    let mut meta = ConnMeta {
        id: shared.next_id(),
        peer: Target {
            transport,
            addr: peer,
        },
        listener,
        local,
        tls_peer_name: None,
    };
    let (tx, rx) = mpsc::channel(shared.queue_len());
    if transport == Transport::Tcp {
        shared.conns.insert((transport, peer), meta.id, tx.clone());
        return serve(shared, sock, meta, tx, rx).await;
    }
    let Some(tls) = shared.tls_configs() else {
        return;
    };
    let acceptor = TlsAcceptor::from(tls.server(side));
    let handshake = tokio::select! {
        _ = shared.cancel.cancelled() => return,
        r = tokio::time::timeout(shared.cfg.handshake_timeout.0, acceptor.accept(sock)) => r,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => return handshake_failed(&shared, listener, peer, &error.to_string()),
        Err(_) => return handshake_failed(&shared, listener, peer, "timeout"),
    };
    if side == Side::Microsoft {
        meta.tls_peer_name = tls.peer_name(stream.get_ref().1.peer_certificates());
    }
    shared.conns.insert((transport, peer), meta.id, tx.clone());
    serve(shared, stream, meta, tx, rx).await;
}

fn handshake_failed(shared: &Shared, listener: usize, peer: SocketAddr, error: &str) {
    let count = bump(&shared.stats.handshake_failures);
    if warn_worthy(count) {
        warn!(listener, %peer, error, count, "TLS handshake failed");
    } else {
        debug!(listener, %peer, error, count, "TLS handshake failed");
    }
}

/// Queues `bytes` on the connection to `to`, opening one if there is none.
pub(crate) fn send(
    shared: &Arc<Shared>,
    side: Option<Side>,
    to: Target,
    tls_name: Option<&str>,
    bytes: Bytes,
) -> Result<(), SendError> {
    let queued = shared
        .conns
        .send_or_open((to.transport, to.addr), bytes, |bytes| {
            open(shared, side, to, tls_name, bytes)
        })?;
    match queued {
        Ok(Queued::Existing | Queued::Opened) => Ok(()),
        Err(_dropped) => {
            let count = bump(&shared.stats.send_queue_drops);
            if warn_worthy(count) {
                warn!(peer = %to, count, "send queue full, message dropped");
            }
            Err(SendError::QueueFull { target: to })
        }
    }
}

/// Starts an outgoing connection with `bytes` as its first queued message; returns its id
/// and queue for registration. Called under the connection table's lock: never blocks.
fn open(
    shared: &Arc<Shared>,
    side: Option<Side>,
    to: Target,
    tls_name: Option<&str>,
    bytes: Bytes,
) -> Result<(u64, mpsc::Sender<Bytes>), SendError> {
    let tls = match to.transport {
        Transport::Tls => {
            let configs = shared
                .tls_configs()
                .ok_or(SendError::NoTls { target: to })?;
            let name = match tls_name {
                Some(n) => ServerName::try_from(n.to_owned())
                    .map_err(|_| SendError::BadTlsName { name: n.to_owned() })?,
                None => ServerName::IpAddress(to.addr.ip().into()),
            };
            // No name: a Microsoft proxy must still prove one of its peer names.
            let config = if tls_name.is_none() && side == Some(Side::Microsoft) {
                configs.microsoft_by_ip.clone()
            } else {
                configs.client.clone()
            };
            Some((TlsConnector::from(config), name))
        }
        _ => None,
    };
    let Ok(permit) = shared.outgoing.clone().try_acquire_owned() else {
        let count = bump(&shared.stats.connections_refused);
        if warn_worthy(count) {
            warn!(peer = %to, count, "max_connections outgoing reached, not connecting");
        }
        return Err(SendError::TooManyConnections { target: to });
    };
    let listener = shared.listener_for(side, to);
    let (tx, rx) = mpsc::channel(shared.queue_len());
    tx.try_send(bytes)
        .map_err(|_| SendError::QueueFull { target: to })?;
    let meta = ConnMeta {
        id: shared.next_id(),
        peer: to,
        listener,
        local: to.addr, // replaced once connected
        tls_peer_name: tls_name.filter(|_| tls.is_some()).map(str::to_owned),
    };
    let id = meta.id;
    let task = outgoing_conn(shared.clone(), meta, tls, tx.clone(), rx, permit);
    shared.tracker.spawn_on(task, &shared.runtime);
    Ok((id, tx))
}

/// Connects, handshakes (TLS) and serves an outgoing connection.
async fn outgoing_conn(
    shared: Arc<Shared>,
    mut meta: ConnMeta,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
) {
    let key = (meta.peer.transport, meta.peer.addr);
    let connect = connect(&shared, meta.peer.addr, meta.listener);
    let connected = tokio::select! {
        _ = shared.cancel.cancelled() => return shared.conns.remove(key, meta.id),
        r = tokio::time::timeout(shared.cfg.connect_timeout.0, connect) => r,
    };
    let sock = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return connect_failed(&shared, &meta, &e.to_string()),
        Err(_) => return connect_failed(&shared, &meta, "timeout"),
    };
    let _ = sock.set_nodelay(true);
    if let Ok(local) = sock.local_addr() {
        meta.local = local;
    }
    let Some((connector, name)) = tls else {
        bump(&shared.stats.connections_opened);
        return serve(shared, sock, meta, tx, rx).await;
    };
    let handshake = tokio::select! {
        _ = shared.cancel.cancelled() => return shared.conns.remove(key, meta.id),
        r = tokio::time::timeout(shared.cfg.handshake_timeout.0, connector.connect(name, sock)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => {
            bump(&shared.stats.connections_opened);
            serve(shared, stream, meta, tx, rx).await;
        }
        Ok(Err(e)) => outgoing_handshake_failed(&shared, &meta, &e.to_string()),
        Err(_) => outgoing_handshake_failed(&shared, &meta, "timeout"),
    }
}

/// Opens a TCP connection, from the IP of listener `listener` when it has a specific one
/// of the right family, so the peer sees the address we advertise.
async fn connect(shared: &Shared, to: SocketAddr, listener: usize) -> io::Result<TcpStream> {
    let socket = if to.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    let local = shared.listeners.get(listener).map(|l| l.local.ip());
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv6() == to.is_ipv6()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(to).await
}

fn connect_failed(shared: &Shared, meta: &ConnMeta, error: &str) {
    shared
        .conns
        .remove((meta.peer.transport, meta.peer.addr), meta.id);
    let count = bump(&shared.stats.connect_failures);
    warn!(peer = %meta.peer, error, count, "connect failed, queued messages dropped");
}

fn outgoing_handshake_failed(shared: &Shared, meta: &ConnMeta, error: &str) {
    shared
        .conns
        .remove((meta.peer.transport, meta.peer.addr), meta.id);
    bump(&shared.stats.handshake_failures);
    warn!(peer = %meta.peer, name = ?meta.tls_peer_name, error, "outgoing TLS handshake failed");
}
