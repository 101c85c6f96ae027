//! UDP: each UDP listener is a group of sockets bound to the same address with
//! SO_REUSEPORT, one receive loop per socket, so that the kernel spreads datagrams from
//! different peers over the runtime's worker threads.
//!
//! The kernel picks the socket by a hash of the peer's address, so one busy peer still lands
//! on one loop; the gateway's two sides (and each SBC or Microsoft proxy) are different peers.
//! Each loop reads into a buffer of `max_message + 1` bytes: a datagram that fills it is
//! larger than the limit, and is dropped and counted without being parsed.
//!
//! Sending never blocks: `try_send_to`, and when the socket buffer is full a task that waits
//! for it, with the number of such tasks bounded by `send_queue`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::stats::bump;
use super::transports::Shared;
use super::{warn_worthy, Inbound, SendError, Target, Transport};

/// Socket buffer size asked for (the kernel caps it at `net.core.rmem_max`/`wmem_max`): a
/// burst of INVITEs at several thousand calls per second must not overflow the receive
/// buffer while a worker is busy.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// How long a datagram may wait for room in a full send buffer. Not configurable on purpose:
/// past T1 (500 ms) the transaction layer retransmits anyway, so an older datagram is stale.
const SEND_WAIT: Duration = Duration::from_secs(1);
/// Pause after a receive error so that a persistent error cannot spin a worker.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Binds `count` sockets (at least one) to `addr` with SO_REUSEPORT. With port 0 the first
/// socket picks the port and the others join it.
pub(crate) fn bind_group(addr: SocketAddr, count: usize) -> io::Result<Vec<Arc<UdpSocket>>> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second gateway (same user) join a running one's port and
        // take half its datagrams, silently. A plain bind first fails if anyone holds it.
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into())?;
    }
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut group = vec![Arc::new(first)];
    for _ in 1..count.max(1) {
        group.push(Arc::new(bind_one(addr)?));
    }
    Ok(group)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // An IPv6 listener serves IPv6 only, so that `0.0.0.0:p` and `[::]:p` can both be
        // configured, and a socket's family tells which peers it can reach.
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel may cap or refuse larger buffers.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Receives on one socket of listener `index` until shutdown.
pub(crate) async fn recv_loop(shared: Arc<Shared>, socket: Arc<UdpSocket>, index: usize) {
    let max = shared.limits.max_message;
    let mut buf = vec![0u8; max.saturating_add(1)];
    let local = shared.listeners.get(index).map(|l| l.local);
    let Some(local) = local else { return };
    loop {
        let received = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, from) = match received {
            Ok(r) => r,
            Err(error) => {
                // E.g. ICMP errors reported on the socket: never fatal for the listener.
                debug!(listener = index, %error, "UDP receive error");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        if n > max {
            let count = bump(&shared.stats.datagrams_oversize);
            debug!(listener = index, peer = %from, limit = max, count, "oversize datagram dropped");
            continue;
        }
        let Some(data) = buf.get(..n) else { continue };
        if data.is_empty() {
            continue;
        }
        bump(&shared.stats.datagrams_in);
        shared.sink.deliver(Inbound {
            bytes: Bytes::copy_from_slice(data),
            source: Target {
                transport: Transport::Udp,
                addr: from,
            },
            listener: index,
            local,
            tls_peer_name: None,
        });
    }
}

/// Sends one datagram from `socket` without blocking the caller.
pub(crate) fn send(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    to: Target,
    bytes: Bytes,
) -> Result<(), SendError> {
    match socket.try_send_to(&bytes, to.addr) {
        Ok(_) => {
            bump(&shared.stats.datagrams_out);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => queue(shared, socket, to, bytes),
        Err(source) => {
            bump(&shared.stats.udp_send_errors);
            Err(SendError::Io { target: to, source })
        }
    }
}

/// The socket buffer is full: wait for room on a task, at most `send_queue` of them.
fn queue(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    to: Target,
    bytes: Bytes,
) -> Result<(), SendError> {
    let pending = shared.udp_pending.fetch_add(1, Ordering::Relaxed);
    if pending >= shared.cfg.send_queue {
        shared.udp_pending.fetch_sub(1, Ordering::Relaxed);
        let count = bump(&shared.stats.send_queue_drops);
        if warn_worthy(count) {
            warn!(peer = %to, count, "UDP send buffer full, datagram dropped");
        }
        return Err(SendError::QueueFull { target: to });
    }
    let (task_shared, socket) = (shared.clone(), socket.clone());
    let task = async move {
        let sent = tokio::select! {
            _ = task_shared.cancel.cancelled() => None,
            r = tokio::time::timeout(SEND_WAIT, socket.send_to(&bytes, to.addr)) => Some(r),
        };
        match sent {
            Some(Ok(Ok(_))) => {
                bump(&task_shared.stats.datagrams_out);
            }
            Some(Ok(Err(error))) => {
                bump(&task_shared.stats.udp_send_errors);
                debug!(peer = %to, %error, "UDP send failed");
            }
            Some(Err(_)) | None => {
                bump(&task_shared.stats.send_queue_drops);
            }
        }
        task_shared.udp_pending.fetch_sub(1, Ordering::Relaxed);
    };
    shared.tracker.spawn_on(task, &shared.runtime);
    Ok(())
}
