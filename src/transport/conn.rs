//! One stream connection (TCP or TLS, accepted or opened by us) and the table of live ones.
//!
//! A connection is two tasks: the reader, which frames what arrives with a
//! [`StreamFramer`] and delivers each message to the sink, and the writer, which drains the
//! connection's bounded queue. Either ending closes both: they share a child of the
//! transports' cancellation token. The reader answers keep-alive pings through the same
//! queue, so a pong never interleaves with a message being written.
//!
//! A connection is closed on end of stream, a read or write error, a framing error (logged
//! with the peer and counted), `idle_timeout` without traffic either way, a write that
//! stalls longer than `handshake_timeout` (a peer that stopped reading), or shutdown. While
//! it lives it is in the [`ConnTable`] under its transport and peer address, so every send to
//! that peer uses it; it removes itself when it closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use super::stats::bump;
use super::transports::Shared;
use super::{warn_worthy, Inbound, Target, Transport};
use crate::sip::framing::{Frame, FramingError, StreamFramer};

/// Most queued messages the writer takes in one batch before flushing.
const WRITE_BATCH: usize = 64;
/// Capacity of the writer's buffer: one flush per batch instead of one write per message.
const WRITE_BUFFER: usize = 16 * 1024;

/// Key of a live connection: transport and peer address.
pub(crate) type ConnKey = (Transport, SocketAddr);

/// The live stream connections, each with the sending end of its queue.
#[derive(Default)]
pub(crate) struct ConnTable {
    map: Mutex<HashMap<ConnKey, Entry>>,
}

struct Entry {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

/// What [`ConnTable::send_or_open`] did with the message.
pub(crate) enum Queued {
    /// Queued on an existing (or connecting) connection.
    Existing,
    /// Handed to a new connection by the `open` callback.
    Opened,
}

impl ConnTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnKey, Entry>> {
        // A panic elsewhere while holding the lock leaves a usable map: entries are only
        // inserted and removed whole.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection; it replaces any other under the same key for sending.
    pub(crate) fn insert(&self, key: ConnKey, id: u64, tx: mpsc::Sender<Bytes>) {
        self.lock().insert(key, Entry { id, tx });
    }

    /// Unregisters connection `id`, if it is still the one registered under `key`.
    pub(crate) fn remove(&self, key: ConnKey, id: u64) {
        let mut map = self.lock();
        if map.get(&key).is_some_and(|e| e.id == id) {
            map.remove(&key);
        }
    }

    /// Whether a live (or connecting) connection is registered under `key`.
    pub(crate) fn is_live(&self, key: ConnKey) -> bool {
        self.lock().get(&key).is_some_and(|e| !e.tx.is_closed())
    }

    /// Number of live (and connecting) connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Queues `bytes` on the connection to `key`; if there is none (or only a closed one),
    /// calls `open` under the table lock, so that concurrent sends to a new peer open one
    /// connection, and registers what it returns. `Err(bytes)` means the queue is full.
    pub(crate) fn send_or_open<E>(
        &self,
        key: ConnKey,
        bytes: Bytes,
        open: impl FnOnce(Bytes) -> Result<(u64, mpsc::Sender<Bytes>), E>,
    ) -> Result<Result<Queued, Bytes>, E> {
        let mut map = self.lock();
        let bytes = match map.get(&key) {
            Some(entry) => match entry.tx.try_send(bytes) {
                Ok(()) => return Ok(Ok(Queued::Existing)),
                Err(mpsc::error::TrySendError::Full(b)) => return Ok(Err(b)),
                // Closed but not yet unregistered: replace it.
                Err(mpsc::error::TrySendError::Closed(b)) => b,
            },
            None => bytes,
        };
        let (id, tx) = open(bytes)?;
        map.insert(key, Entry { id, tx });
        Ok(Ok(Queued::Opened))
    }
}

/// Who a connection is with and how it maps to a listener.
#[derive(Debug, Clone)]
pub(crate) struct ConnMeta {
    /// Unique among the connections of one `Transports`.
    pub(crate) id: u64,
    /// The peer, with the connection's transport.
    pub(crate) peer: Target,
    /// Listener index reported in [`Inbound::listener`].
    pub(crate) listener: usize,
    /// Our end's address.
    pub(crate) local: SocketAddr,
    /// See [`Inbound::tls_peer_name`].
    pub(crate) tls_peer_name: Option<String>,
}

/// Last time anything was read or written, for the idle timeout.
struct Activity {
    start: Instant,
    millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// Why the reader stopped.
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Stopped,
    Framing(FramingError),
    Read(std::io::Error),
}

/// Runs a registered connection until it closes, then unregisters it. `tx` is the sending
/// end of the queue registered in the table (the reader queues pongs on it).
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    meta: ConnMeta,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span =
        tracing::info_span!("conn", id = meta.id, peer = %meta.peer, listener = meta.listener);
    let (rd, wr) = tokio::io::split(stream);
    let cancel = shared.cancel.child_token();
    let activity = Arc::new(Activity::new());
    let writer = shared.tracker.spawn(
        write_loop(shared.clone(), wr, rx, cancel.clone(), activity.clone())
            .instrument(span.clone()),
    );
    let close = read_loop(&shared, rd, &meta, &tx, &cancel, &activity)
        .instrument(span.clone())
        .await;
    cancel.cancel();
    shared
        .conns
        .remove((meta.peer.transport, meta.peer.addr), meta.id);
    drop(tx);
    let _ = writer.await;
    bump(&shared.stats.connections_closed);
    let _enter = span.enter();
    match close {
        Close::Framing(error) => {
            let count = bump(&shared.stats.framing_errors);
            if warn_worthy(count) {
                warn!(peer = %meta.peer, %error, count, "framing error, connection closed");
            } else {
                debug!(peer = %meta.peer, %error, count, "framing error, connection closed");
            }
        }
        Close::Idle => {
            bump(&shared.stats.idle_closed);
            debug!(peer = %meta.peer, "idle connection closed");
        }
        Close::Read(error) => debug!(peer = %meta.peer, %error, "read failed, connection closed"),
        Close::Eof | Close::Stopped => {
            debug!(peer = %meta.peer, reason = ?close, "connection closed")
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    mut rd: R,
    meta: &ConnMeta,
    tx: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
    activity: &Activity,
) -> Close {
    let idle = shared.cfg.idle_timeout.0;
    let mut framer = StreamFramer::new(shared.limits);
    loop {
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    bump(&shared.stats.stream_messages_in);
                    shared.sink.deliver(Inbound {
                        bytes,
                        source: meta.peer,
                        listener: meta.listener,
                        local: meta.local,
                        tls_peer_name: meta.tls_peer_name.clone(),
                    });
                }
                Ok(Some(Frame::Ping)) => {
                    // A full queue already carries traffic, which keeps the peer's
                    // keep-alive satisfied; dropping the pong is harmless.
                    if tx.try_send(Bytes::from_static(b"\r\n")).is_ok() {
                        bump(&shared.stats.pings_answered);
                    }
                }
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => break,
                Err(e) => return Close::Framing(e),
            }
        }
        // `Ok(None)` above guarantees room in the framer's buffer, so a read of 0 bytes
        // really is the end of the stream.
        let mut target = framer.recv_buf();
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Close::Stopped,
            r = tokio::time::timeout_at(activity.last() + idle, rd.read_buf(&mut target)) => r,
        };
        match read {
            Err(_) if activity.last() + idle <= Instant::now() => return Close::Idle,
            Err(_) => {} // the writer was active meanwhile
            Ok(Ok(0)) => return Close::Eof,
            Ok(Ok(_)) => activity.touch(),
            Ok(Err(e)) => return Close::Read(e),
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    wr: W,
    mut rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    activity: Arc<Activity>,
) {
    let stall = shared.cfg.handshake_timeout.0;
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
    loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        let batch = async {
            wr.write_all(&first).await?;
            let mut n = 1;
            while n < WRITE_BATCH {
                let Ok(m) = rx.try_recv() else { break };
                wr.write_all(&m).await?;
                n += 1;
            }
            wr.flush().await?;
            Ok::<_, std::io::Error>(n)
        };
        let written = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(stall, batch) => r,
        };
        match written {
            Ok(Ok(n)) => {
                shared
                    .stats
                    .stream_messages_out
                    .fetch_add(n as u64, Ordering::Relaxed);
                activity.touch();
            }
            Ok(Err(error)) => {
                debug!(%error, "write failed, closing connection");
                break;
            }
            Err(_) => {
                bump(&shared.stats.write_stalls);
                warn!(timeout = ?stall, "write stalled, closing connection");
                break;
            }
        }
    }
    cancel.cancel();
    // Best effort: a TLS close_notify and a FIN, bounded like any write.
    let _ = tokio::time::timeout(stall, wr.shutdown()).await;
}
