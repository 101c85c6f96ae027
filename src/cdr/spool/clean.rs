//! Acknowledgement and segment deletion, with re-journaling of live calls.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::cursor;
use super::engine::{lock, now_ms, Item, Spool};
use super::format::{frame_len, FrameKind, Scan, Scanner, HEADER_LEN};
use super::segment::{io_err, sync_dir};
use super::state::OpenLoc;
use super::SpoolError;

/// Most bytes of re-journaled entries written in one write(2).
pub(super) const REJOURNAL_BATCH: usize = 1 << 20;

impl Spool {
    /// Every Close with seq at or below `upto` is done (uploaded). Persists the cursor
    /// atomically, then deletes what that allows (see the module doc): a non-active
    /// segment whose Closes are all at or below the cursor and at most half of which is
    /// live Opens. A cursor never moves back: `upto` at or below it does nothing. A failed
    /// deletion is logged and tried again at the next acknowledgement.
    pub fn ack(&self, upto: u64) -> Result<(), SpoolError> {
        let _serial = lock(&self.ack_lock);
        if upto <= self.cursor() {
            return Ok(());
        }
        let last = lock(&self.inner).last_seq();
        if upto > last {
            return Err(SpoolError::AckBeyondEnd { upto, last });
        }
        cursor::store(&self.cfg.dir, upto, now_ms())?;
        {
            let mut g = lock(&self.inner);
            g.cursor = upto;
            let done = g.unacked.partition_point(|&(seq, _)| seq <= upto);
            g.unacked.drain(..done);
        }
        self.cursor.store(upto, Ordering::Release);
        if let Err(error) = self.clean() {
            tracing::error!(%error, "spool: segment deletion failed; retrying at the next ack");
        }
        Ok(())
    }

    /// Deletes every segment the deletion rule allows, oldest first.
    fn clean(&self) -> Result<(), SpoolError> {
        let candidates: Vec<u64> = {
            let g = lock(&self.inner);
            g.segs
                .iter()
                .filter(|(&first, s)| {
                    let data = s.len.saturating_sub(HEADER_LEN as u64);
                    first != g.active.first
                        && !s.pinned
                        && s.max_close <= g.cursor
                        && s.live_bytes.saturating_mul(2) <= data
                })
                .map(|(&first, _)| first)
                .collect()
        };
        for seg in candidates {
            self.delete(seg)?;
        }
        Ok(())
    }

    /// Re-journals the live Opens of `seg`, writes the tombstones it needs, makes both
    /// durable, then deletes it.
    fn delete(&self, seg: u64) -> Result<(), SpoolError> {
        let (path, live) = {
            let g = lock(&self.inner);
            let Some(s) = g.segs.get(&seg) else {
                return Ok(());
            };
            (s.path.clone(), g.keys.live_in(seg))
        };
        // The segment is no longer written to: read the Opens without the lock.
        let mut opens = Vec::with_capacity(live.len());
        if !live.is_empty() {
            let file = File::open(&path).map_err(io_err(&path))?;
            for (key, loc) in &live {
                match read_open(&file, loc, key) {
                    Some(payload) => opens.push((*key, *loc, payload)),
                    None => {
                        tracing::error!(path = %path.display(), seq = loc.seq, "spool: a live call's journal entry cannot be read back; keeping its segment");
                        if let Some(s) = lock(&self.inner).segs.get_mut(&seg) {
                            s.pinned = true;
                        }
                        return Ok(());
                    }
                }
            }
        }
        // In chunks, so that appends are not held up for long. A Close may arrive between
        // two: under the lock, re-journal only what is still live at that Open.
        for chunk in by_bytes(&opens, |(_, _, p)| p.len()) {
            let mut g = lock(&self.inner);
            let items: Vec<Item<'_>> = chunk
                .iter()
                .filter(|(key, loc, _)| g.keys.live.get(key) == Some(loc))
                .map(|(key, loc, payload)| Item {
                    kind: FrameKind::Open,
                    key: *key,
                    payload,
                    time_ms: loc.time_ms,
                })
                .collect();
            if !items.is_empty() {
                g.write(&items)?;
            }
        }
        {
            // Kills recorded from now on are in the active segment, never in `seg`: this
            // set is complete.
            let mut g = lock(&self.inner);
            let now = now_ms();
            let tombstones: Vec<Item<'_>> = g
                .keys
                .tombstones_for(seg)
                .into_iter()
                .map(|key| Item {
                    kind: FrameKind::Forget,
                    key,
                    payload: &[],
                    time_ms: now,
                })
                .collect();
            for chunk in by_bytes(&tombstones, |it| it.payload.len()) {
                g.write(chunk)?;
            }
        }
        self.sync()?;
        {
            let mut g = lock(&self.inner);
            if g.keys.live.values().any(|l| l.seg == seg) {
                return Ok(()); // cannot happen: nothing appends to a non-active segment
            }
            if let Some(s) = g.segs.remove(&seg) {
                g.bytes = g.bytes.saturating_sub(s.len);
            }
            g.keys.drop_segment(seg);
        }
        fs::remove_file(&path).map_err(io_err(&path))?;
        // Durable before the next deletion, so deletions reach the disk in order.
        sync_dir(&self.cfg.dir)
    }
}

/// `items` cut into runs of about [`REJOURNAL_BATCH`] bytes of frames.
pub(super) fn by_bytes<T>(items: &[T], payload: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut rest, mut bytes, mut n) = (items, 0, 0);
    for it in items {
        bytes += frame_len(payload(it));
        n += 1;
        if bytes >= REJOURNAL_BATCH {
            let (run, tail) = rest.split_at(n);
            runs.push(run);
            (rest, bytes, n) = (tail, 0, 0);
        }
    }
    if !rest.is_empty() {
        runs.push(rest);
    }
    runs
}

/// The payload of the Open at `loc`, if it reads back whole and is the one expected.
fn read_open(file: &File, loc: &OpenLoc, key: &[u8; 16]) -> Option<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(loc.len).ok()?];
    file.read_exact_at(&mut buf, loc.at).ok()?;
    match Scanner::new(&buf, loc.at, loc.seq, true).next_item()? {
        Scan::Frame { frame, .. }
            if frame.seq == loc.seq && frame.key == *key && frame.kind == FrameKind::Open =>
        {
            Some(frame.payload.to_vec())
        }
        _ => None,
    }
}
