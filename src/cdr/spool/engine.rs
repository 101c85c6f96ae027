//! The spool handle: appending, rotation, syncing and statistics. Opening and recovery are
//! in `recover`, acknowledgement and deletion in `clean`, reading in `reader`.
//!
//! Locking: `inner` guards all state and is held for one write(2) per batch, never across
//! an fsync; `sync_lock` serialises syncs (and the repair after a failed one, `repair`),
//! `ack_lock` acknowledgements and deletions,
//! `read_pos` the uploader's remembered position. Order when nested: `ack_lock`, then
//! `sync_lock`, then `inner`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::format::{frame_len, put_frame, FrameKind, SegHeader, HEADER_LEN, MAX_PAYLOAD};
use super::reader::ReadPos;
use super::segment::{self, io_err, Seg};
use super::state::{Keys, OpenLoc};
use super::{Kind, SpoolConfig, SpoolError, SpoolStats};

/// The durable call-record spool (see the module doc). `Send + Sync`: share it in an
/// [`Arc`].
pub struct Spool {
    pub(super) cfg: SpoolConfig,
    pub(super) inner: Mutex<Inner>,
    pub(super) sync_lock: Mutex<()>,
    pub(super) ack_lock: Mutex<()>,
    pub(super) read_pos: Mutex<Vec<ReadPos>>,
    pub(super) durable: AtomicU64,
    pub(super) cursor: AtomicU64,
    /// Sync rounds that failed (each followed by a repair).
    pub(super) fsync_failures: AtomicU64,
    /// Wakes the group-commit thread when it sleeps for want of anything to sync.
    pub(super) commit: super::commit::Signal,
    /// Tests: this many coming fsyncs fail.
    #[cfg(test)]
    pub(super) inject_fsync_failures: std::sync::atomic::AtomicU32,
    /// Holds the directory's exclusive lock for as long as the spool lives.
    pub(super) _lock: File,
}

/// The segment being appended to.
pub(super) struct Active {
    /// Its first seq (its key in `Inner::segs`).
    pub first: u64,
    pub file: Arc<File>,
}

/// One entry to write.
pub(super) struct Item<'a> {
    pub kind: FrameKind,
    pub key: [u8; 16],
    pub payload: &'a [u8],
    pub time_ms: u64,
}

/// Everything `inner` guards.
pub(super) struct Inner {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    /// Every segment, the active one last, by first seq.
    pub segs: BTreeMap<u64, Seg>,
    pub active: Active,
    pub next_seq: u64,
    pub keys: Keys,
    /// (seq, time_ms) of every Close after the cursor, in seq order.
    pub unacked: VecDeque<(u64, u64)>,
    /// Bytes of all segment files.
    pub bytes: u64,
    pub cursor: u64,
    /// Segments rotated out since the last sync (by first seq), still to be fsynced.
    pub unsynced: Vec<(u64, Arc<File>)>,
    /// Every byte written to a segment since the last successful sync, so that a failed
    /// fsync (after which Linux may have dropped those pages) can be repaired by writing
    /// them again to fresh files. About one `fsync_interval` of appends.
    pub pending: VecDeque<Pending>,
    /// Bytes held in `pending`.
    pub pending_bytes: u64,
    /// Serial of the last [`Pending`] started.
    pub pending_serial: u64,
    /// An fsync failed and the repair has not succeeded yet: the next sync repairs first
    /// (a later fsync of the same file may report success for pages already lost).
    pub repair_needed: bool,
    /// A segment was created since the last sync: the directory needs an fsync.
    pub dir_dirty: bool,
    /// A failed write could not be cut off: start a new segment before the next one.
    pub poisoned: bool,
    /// Encoding buffer of a write that failed, reused by the next (one that succeeds moves
    /// into `pending`).
    pub buf: Vec<u8>,
}

/// Bytes written to segment `seg` at offset `at` (one write) since the last successful
/// sync.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// Serial, in write order.
    pub id: u64,
    /// The segment (its first seq).
    pub seg: u64,
    /// Offset of `bytes[0]` in the segment file (0: the header was written since, too).
    pub at: u64,
    pub bytes: Vec<u8>,
}

/// Most bytes held for repairs before new calls are refused (as at the disk cap): a
/// quarter of the cap, at most 64 MiB. Only reached while fsyncs keep failing and cannot
/// be repaired. Closes are still written and held; a finished record is never dropped.
pub(super) fn pending_cap(max_bytes: u64) -> u64 {
    (max_bytes / 4).min(64 << 20)
}

/// How far a sync reached into [`Inner::pending`]: the serial of the last write then.
pub(super) type PendingMark = Option<u64>;

/// The parts of the state a frame changes; shared by appends and recovery.
pub(super) struct Book<'a> {
    pub segs: &'a mut BTreeMap<u64, Seg>,
    pub keys: &'a mut Keys,
    pub unacked: &'a mut VecDeque<(u64, u64)>,
    pub cursor: u64,
}

impl Book<'_> {
    /// Applies the frame `seq` (of `len` bytes at offset `at` of segment `seg_id`).
    pub(super) fn note(self, seg_id: u64, seq: u64, at: u64, len: u64, it: &Item<'_>) {
        if let Some(seg) = self.segs.get_mut(&seg_id) {
            seg.len = seg.len.max(at + len);
            seg.last_seq = seq;
            if it.kind == FrameKind::Close {
                seg.max_close = seq;
            }
        }
        if it.kind == FrameKind::Close && seq > self.cursor {
            self.unacked.push_back((seq, it.time_ms));
        }
        let loc = OpenLoc {
            seg: seg_id,
            at,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            seq,
            time_ms: it.time_ms,
        };
        self.keys.apply(self.segs, it.kind, it.key, loc);
    }
}

/// Locks `m`, ignoring poisoning: state is updated only after the I/O it describes
/// succeeded, so a panic elsewhere cannot leave it half-changed.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) use crate::cdr::now_ms;

impl Inner {
    pub(super) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Keeps the bytes of a write just done at `at` of segment `seg` until a sync
    /// covers them (moved, not copied).
    fn keep(&mut self, seg: u64, at: u64, bytes: Vec<u8>) {
        self.pending_serial += 1;
        self.pending_bytes += bytes.len() as u64;
        self.pending.push_back(Pending {
            id: self.pending_serial,
            seg,
            at,
            bytes,
        });
    }

    /// Where a sync starting now reaches.
    pub(super) fn pending_mark(&self) -> PendingMark {
        self.pending.back().map(|p| p.id)
    }

    /// A sync made every write up to `mark` durable: forget them.
    pub(super) fn settle(&mut self, mark: PendingMark) {
        let Some(id) = mark else { return };
        self.retain_pending(|p| p.id > id);
    }

    /// Forgets the pending writes `keep` says no to.
    pub(super) fn retain_pending(&mut self, mut keep: impl FnMut(&Pending) -> bool) {
        let mut dropped = 0;
        self.pending.retain(|p| {
            let k = keep(p);
            if !k {
                dropped += p.bytes.len() as u64;
            }
            k
        });
        self.pending_bytes = self.pending_bytes.saturating_sub(dropped);
    }

    /// New calls are refused: the disk cap is reached, or fsyncs have been failing long
    /// enough that the bytes held for their repair reach the memory bound.
    pub(super) fn over_cap(&self, max_bytes: u64) -> bool {
        self.bytes >= max_bytes
            || (self.repair_needed && self.pending_bytes >= pending_cap(max_bytes))
    }

    fn active_len(&self) -> u64 {
        self.segs.get(&self.active.first).map_or(0, |s| s.len)
    }

    /// Writes `items` to the active segment in one write(2) with consecutive seqs and
    /// applies them to the state; returns the first seq. Starts a new segment first when
    /// the batch would take a non-empty active segment past `segment_bytes`.
    pub(super) fn write(&mut self, items: &[Item<'_>]) -> Result<u64, SpoolError> {
        let total: u64 = items
            .iter()
            .map(|i| frame_len(i.payload.len()) as u64)
            .sum();
        let len = self.active_len();
        if self.poisoned || (len > HEADER_LEN as u64 && len + total > self.segment_bytes) {
            if let Err(e) = self.rotate() {
                if self.poisoned {
                    return Err(e);
                }
                tracing::error!(error = %e, "spool: cannot start a new segment, appending to the current one");
            }
        }
        let first = self.next_seq;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(usize::try_from(total).unwrap_or(0));
        for (seq, it) in (first..).zip(items) {
            put_frame(&mut buf, seq, it.time_ms, it.kind, &it.key, it.payload);
        }
        let seg_id = self.active.first;
        let start = self.active_len();
        if let Err(e) = (&*self.active.file).write_all(&buf) {
            self.buf = buf;
            // A short write leaves part of a frame: cut it off so that the next frame
            // follows a whole one; if that fails too, never write here again.
            if self.active.file.set_len(start).is_err() {
                self.poisoned = true;
            }
            let path = self.segs.get(&seg_id).map(|s| s.path.clone());
            return Err(io_err(&path.unwrap_or_default())(e));
        }
        self.keep(seg_id, start, buf);
        let mut at = start;
        for (seq, it) in (first..).zip(items) {
            let len = frame_len(it.payload.len()) as u64;
            self.note(seg_id, seq, at, len, it);
            at += len;
        }
        self.next_seq = first + items.len() as u64;
        self.bytes += total;
        Ok(first)
    }

    /// Applies one frame just written to the state.
    fn note(&mut self, seg_id: u64, seq: u64, at: u64, len: u64, it: &Item<'_>) {
        let book = Book {
            segs: &mut self.segs,
            keys: &mut self.keys,
            unacked: &mut self.unacked,
            cursor: self.cursor,
        };
        book.note(seg_id, seq, at, len, it);
    }

    /// Closes the active segment and starts `seg-<next seq>.log`.
    pub(super) fn rotate(&mut self) -> Result<(), SpoolError> {
        let first = self.next_seq;
        let path = segment::path(&self.dir, first);
        if self.active.first == first {
            // The active segment has no frame (only a failed write's remains): replace it.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
            if let Some(old) = self.segs.remove(&first) {
                self.bytes = self.bytes.saturating_sub(old.len);
            }
            self.retain_pending(|p| p.seg != first);
        }
        let header = SegHeader {
            first_seq: first,
            created_ms: now_ms(),
            cursor: self.cursor,
        };
        let file = segment::create(&path, &header)?;
        self.keep(first, 0, header.encode().to_vec());
        let old = std::mem::replace(
            &mut self.active,
            Active {
                first,
                file: Arc::new(file),
            },
        );
        if old.first != first {
            self.unsynced.push((old.first, old.file));
        }
        self.segs.insert(first, Seg::new(path, HEADER_LEN as u64));
        self.bytes += HEADER_LEN as u64;
        self.dir_dirty = true;
        self.poisoned = false;
        Ok(())
    }
}

impl Spool {
    /// Appends a batch with consecutive seqs and returns the first (the next seq when the
    /// batch is empty). The batch reaches the kernel in one write(2) before this returns,
    /// so a killed process loses none of it; [`Spool::sync`] makes it durable.
    ///
    /// At the disk cap a batch holding Opens gets [`SpoolError::Full`]: its Opens are not
    /// written, its Closes are (a finished record is never dropped).
    pub fn append(&self, batch: &[(Kind, [u8; 16], &[u8])]) -> Result<u64, SpoolError> {
        if let Some((_, _, p)) = batch.iter().find(|(_, _, p)| p.len() > MAX_PAYLOAD) {
            return Err(SpoolError::TooLarge {
                len: p.len(),
                max: MAX_PAYLOAD,
            });
        }
        let time_ms = now_ms();
        let mut g = lock(&self.inner);
        if batch.is_empty() {
            return Ok(g.next_seq);
        }
        let full = g.over_cap(self.cfg.max_bytes);
        let refused = full && batch.iter().any(|(k, _, _)| *k == Kind::Open);
        let items: Vec<Item<'_>> = batch
            .iter()
            .filter(|(k, _, _)| !refused || *k == Kind::Close)
            .map(|&(kind, key, payload)| Item {
                kind: kind.into(),
                key,
                payload,
                time_ms,
            })
            .collect();
        let first = if items.is_empty() {
            g.next_seq
        } else {
            g.write(&items)?
        };
        drop(g);
        self.commit.wake();
        if refused {
            return Err(SpoolError::Full);
        }
        Ok(first)
    }

    /// Makes every entry appended so far durable: fsyncs the segments written since the
    /// last sync (and the directory after a rotation), then advances `durable_seq`. Does
    /// nothing when nothing was appended. Appends go on while it waits for the disk.
    ///
    /// A failed fsync is not retried on the same files: Linux may already have dropped
    /// the pages it could not write and report success next time. Everything written
    /// since the last successful sync is written again from memory to fresh files that
    /// replace the segments (`repair`), and those are fsynced instead. The error is
    /// returned only when that fails too; the next sync then repairs first.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let _serial = lock(&self.sync_lock);
        let first = self.repair_if_needed().and_then(|()| self.sync_files());
        let Err(error) = first else { return Ok(()) };
        lock(&self.inner).repair_needed = true;
        self.fsync_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%error, "spool: fsync failed; writing the unsynced records again to fresh segment files");
        let second = self.repair_if_needed().and_then(|()| self.sync_files());
        if second.is_err() {
            lock(&self.inner).repair_needed = true;
            // A caller other than the group-commit thread failed: the thread retries.
            self.commit.wake();
        }
        second
    }

    /// True when a sync would have something to do: entries not yet durable, files or the
    /// directory not yet fsynced, bytes held for a repair, or a repair outstanding.
    pub(super) fn needs_sync(&self) -> bool {
        let g = lock(&self.inner);
        !Self::settled(&g, self.durable.load(Ordering::Acquire)) || g.repair_needed
    }

    fn settled(g: &Inner, durable: u64) -> bool {
        g.last_seq() <= durable && g.unsynced.is_empty() && !g.dir_dirty && g.pending.is_empty()
    }

    fn repair_if_needed(&self) -> Result<(), SpoolError> {
        if lock(&self.inner).repair_needed {
            self.repair()?;
        }
        Ok(())
    }

    /// One fsync round: the segments written since the last one, the active segment and,
    /// after a creation, the directory. Call with `sync_lock` held.
    fn sync_files(&self) -> Result<(), SpoolError> {
        let (target, files, dir_dirty, active, mark) = {
            let mut g = lock(&self.inner);
            let target = g.last_seq();
            if Self::settled(&g, self.durable.load(Ordering::Acquire)) {
                return Ok(());
            }
            let files = std::mem::take(&mut g.unsynced);
            let dir_dirty = std::mem::replace(&mut g.dir_dirty, false);
            let active = (g.active.first, Arc::clone(&g.active.file));
            (target, files, dir_dirty, active, g.pending_mark())
        };
        let mut result = Ok(());
        for (_, f) in files.iter().chain(std::iter::once(&active)) {
            if let Err(e) = self.fault(|| f.sync_data()) {
                result = Err(io_err(&self.cfg.dir)(e));
                break;
            }
        }
        if result.is_ok() && dir_dirty {
            result = self.sync_dir();
        }
        match result {
            Ok(()) => {
                lock(&self.inner).settle(mark);
                self.durable.fetch_max(target, Ordering::AcqRel);
                Ok(())
            }
            Err(e) => {
                let mut g = lock(&self.inner);
                let active_now = g.active.first;
                g.unsynced.extend(files);
                if active.0 != active_now {
                    g.unsynced.push(active);
                }
                g.dir_dirty |= dir_dirty;
                Err(e)
            }
        }
    }

    /// fsyncs the spool directory (renames, creations), through [`Spool::fault`].
    pub(super) fn sync_dir(&self) -> Result<(), SpoolError> {
        self.fault(|| Ok(())).map_err(io_err(&self.cfg.dir))?;
        segment::sync_dir(&self.cfg.dir)
    }

    /// Runs an fsync, or fails it when a test injected a failure.
    pub(super) fn fault(&self, op: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .inject_fsync_failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        op()
    }

    /// Every Close with seq at or below this is acknowledged.
    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// The spool at a glance.
    pub fn stats(&self) -> SpoolStats {
        let g = lock(&self.inner);
        let max = self.cfg.max_bytes;
        SpoolStats {
            segments: g.segs.len(),
            bytes: g.bytes,
            last_seq: g.last_seq(),
            durable_seq: self.durable.load(Ordering::Acquire),
            cursor: g.cursor,
            unacked: g.unacked.len() as u64,
            oldest_unacked_ms: g.unacked.front().map(|&(_, t)| t),
            alarm: g.bytes as f64 >= self.cfg.alarm_ratio * max as f64,
            full: g.over_cap(max),
            open_calls: g.keys.live.len(),
            fsync_failures: self.fsync_failures.load(Ordering::Relaxed),
        }
    }

    /// At or past the disk cap: new Opens (new calls) are refused.
    pub fn is_full(&self) -> bool {
        lock(&self.inner).over_cap(self.cfg.max_bytes)
    }
}

impl Drop for Spool {
    /// A last sync on an orderly shutdown (a crash loses only what the kernel had not
    /// written yet; a killed process nothing).
    fn drop(&mut self) {
        if let Err(error) = self.sync() {
            tracing::error!(%error, "spool: final fsync failed");
        }
    }
}
