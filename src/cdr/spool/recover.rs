//! Opening a spool: the directory lock, then recovery from every segment; and the
//! read-only view for the CLI.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::cursor::{self, Loaded};
use super::engine::{now_ms, Active, Book, Inner, Item, Spool};
use super::format::{HeaderError, RawFrame, Scan, SegHeader, HEADER_LEN};
use super::segment::{self, io_err, visit, Seg};
use super::state::Keys;
use super::{Entry, Kind, Recovered, SpoolConfig, SpoolError};

/// A segment file found in the directory, its header checked.
struct Found {
    first: u64,
    path: PathBuf,
    file: File,
    len: u64,
    header: Result<SegHeader, HeaderError>,
}

/// Opens and checks the header of every segment; the last one writable when `write_last`.
fn find(dir: &Path, write_last: bool) -> Result<Vec<Found>, SpoolError> {
    let list = segment::list(dir)?;
    let count = list.len();
    let mut found = Vec::with_capacity(count);
    for (i, (first, path)) in list.into_iter().enumerate() {
        let writable = write_last && i + 1 == count;
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        let header = segment::read_header(&file, len, &path)?;
        if let Err(HeaderError::Unsupported(version, flags)) = header {
            return Err(SpoolError::Corrupt(format!(
                "{}: segment version {version} flags {flags:#x} not supported",
                path.display()
            )));
        }
        if let Ok(h) = &header {
            if h.first_seq != first {
                tracing::warn!(path = %path.display(), header = h.first_seq, "spool: segment name and header disagree; the name wins");
            }
        }
        found.push(Found {
            first,
            path,
            file,
            len,
            header,
        });
    }
    Ok(found)
}

/// The cursor: the file's, or when it is missing or bad, the best lower bound the
/// segments give (everything below the oldest segment was deleted, hence acknowledged;
/// each header records the cursor when it was created). Never below either bound.
fn recover_cursor(dir: &Path, found: &[Found]) -> Result<u64, SpoolError> {
    let bound = found
        .iter()
        .filter_map(|f| f.header.as_ref().ok().map(|h| h.cursor))
        .chain(found.first().map(|f| f.first.saturating_sub(1)))
        .max()
        .unwrap_or(0);
    Ok(match cursor::load(dir)? {
        Loaded::Valid(c) => c.max(bound),
        Loaded::Missing => bound,
        Loaded::Corrupt(what) => {
            tracing::error!(
                what,
                fallback = bound,
                "spool: cursor file corrupt; records after the fallback will be uploaded again"
            );
            bound
        }
    })
}

// File::try_lock (flock) is Rust 1.89, the crate's rust-version; see docs/spool-format.md
fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_owned())),
        Err(TryLockError::Error(e)) => return Err(io_err(&path)(e)),
    }
    // For operators only: who holds it.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// Removes the `.log.repair` files a crash during a repair left behind: the segment each
/// was to replace is still there, whole or as the kernel kept it.
fn remove_stale_repairs(dir: &Path) -> Result<(), SpoolError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if name.to_str().is_some_and(segment::is_repair_copy) {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "spool: removing an unfinished repair copy");
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// The state rebuilt from the frames of every segment.
#[derive(Default)]
struct Replayed {
    segs: BTreeMap<u64, Seg>,
    keys: Keys,
    unacked: VecDeque<(u64, u64)>,
    payloads: HashMap<[u8; 16], Entry>,
    max_seq: u64,
}

/// The seq the next frame of a segment gets.
fn next_in(seg: &Seg, first: u64) -> u64 {
    if seg.last_seq == 0 {
        first
    } else {
        seg.last_seq.saturating_add(1)
    }
}

impl Replayed {
    fn frame(&mut self, seg: u64, at: u64, end: u64, frame: &RawFrame<'_>, cursor: u64) {
        let it = Item {
            kind: frame.kind,
            key: frame.key,
            payload: frame.payload,
            time_ms: frame.time_ms,
        };
        let book = Book {
            segs: &mut self.segs,
            keys: &mut self.keys,
            unacked: &mut self.unacked,
            cursor,
        };
        book.note(seg, frame.seq, at, end - at, &it);
        self.max_seq = self.max_seq.max(frame.seq);
        match frame.kind.public() {
            Some(kind @ Kind::Open) => {
                let entry = Entry {
                    seq: frame.seq,
                    time_ms: frame.time_ms,
                    kind,
                    key: frame.key,
                    payload: frame.payload.to_vec(),
                };
                self.payloads.insert(frame.key, entry);
            }
            _ => {
                self.payloads.remove(&frame.key);
            }
        }
    }
}

/// Reads every frame of every segment in seq order; cuts a torn tail off the last one.
fn replay(found: &[Found], cursor: u64, rec: &mut Recovered) -> Result<Replayed, SpoolError> {
    let mut r = Replayed::default();
    for (i, f) in found.iter().enumerate() {
        r.segs
            .insert(f.first, Seg::new(f.path.clone(), HEADER_LEN as u64));
        if let Err(e) = &f.header {
            tracing::error!(path = %f.path.display(), error = ?e, "spool: bad segment header; reading its frames anyway");
            rec.corrupt += 1;
            if *e == HeaderError::Short {
                // Not the last segment (see `open`), and too short for a frame: nothing to
                // read; the next acknowledgement deletes it.
                continue;
            }
        }
        let mut tail = None;
        let mut on_item = |item: Scan<'_>| {
            match item {
                Scan::Frame { at, end, frame } => r.frame(f.first, at, end, &frame, cursor),
                Scan::Skip { from, to, lost } => {
                    tracing::error!(path = %f.path.display(), from, to, lost, "spool: corrupt frames skipped");
                    rec.corrupt += lost;
                }
                Scan::Tail { from } => tail = Some(from),
                Scan::More { .. } => {}
            }
            ControlFlow::Continue(())
        };
        visit(&f.file, HEADER_LEN as u64, f.len, f.first, &mut on_item).map_err(io_err(&f.path))?;
        let Some(from) = tail else { continue };
        if i + 1 == found.len() {
            tracing::warn!(path = %f.path.display(), from, bytes = f.len - from, "spool: torn tail cut off");
            f.file.set_len(from).map_err(io_err(&f.path))?;
            rec.torn_bytes += f.len - from;
        } else {
            let expect = r
                .segs
                .get(&f.first)
                .map_or(f.first, |s| next_in(s, f.first));
            let next_first = found.get(i + 1).map_or(expect, |n| n.first);
            let lost = next_first.saturating_sub(expect).max(1);
            tracing::error!(path = %f.path.display(), from, lost, "spool: unreadable end of a segment");
            rec.corrupt += lost;
        }
    }
    Ok(r)
}

impl Spool {
    /// Opens (creating it if needed) the spool in `cfg.dir`, locked for this process, and
    /// recovers it: every segment is read; a torn tail of the last one is cut off; a bad
    /// frame elsewhere is skipped and counted, and the rest still read. Everything found
    /// is fsynced, so `durable_seq` starts at the last seq.
    pub fn open(cfg: SpoolConfig) -> Result<(Arc<Spool>, Recovered), SpoolError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = take_lock(&dir)?;
        remove_stale_repairs(&dir)?;
        let mut found = find(&dir, true)?;
        let cursor = recover_cursor(&dir, &found)?;
        let mut rec = Recovered {
            segments: found.len(),
            ..Recovered::default()
        };
        // A last segment torn while being created holds no frame: remove it.
        if let Some(last) = found.last() {
            if last.header == Err(HeaderError::Short) {
                rec.torn_bytes += last.len;
                fs::remove_file(&last.path).map_err(io_err(&last.path))?;
                found.pop();
            }
        }
        let mut r = replay(&found, cursor, &mut rec)?;
        let last_first = found.last().map_or(0, |f| f.first);
        let next_seq = r
            .max_seq
            .saturating_add(1)
            .max(last_first)
            .max(cursor.saturating_add(1));
        // Keep appending to the last segment when it is sound and its seqs run on.
        let reuse = found.pop().filter(|f| {
            r.segs.get(&f.first).is_some_and(|s| {
                f.header.is_ok() && next_in(s, f.first) == next_seq && s.len < cfg.segment_bytes
            })
        });
        let active = match reuse {
            Some(f) => Active {
                first: f.first,
                file: Arc::new(segment::open_append(&f.path)?),
            },
            None => {
                if r.segs.get(&next_seq).is_some_and(|s| s.last_seq == 0) {
                    // An empty segment with a bad header holds the next name.
                    let stale = segment::path(&dir, next_seq);
                    fs::remove_file(&stale).map_err(io_err(&stale))?;
                    r.segs.remove(&next_seq);
                }
                let path = segment::path(&dir, next_seq);
                let header = SegHeader {
                    first_seq: next_seq,
                    created_ms: now_ms(),
                    cursor,
                };
                let file = segment::create(&path, &header)?;
                r.segs.insert(next_seq, Seg::new(path, HEADER_LEN as u64));
                Active {
                    first: next_seq,
                    file: Arc::new(file),
                }
            }
        };
        // What a killed process left in the page cache becomes durable now.
        for s in r.segs.values() {
            File::open(&s.path)
                .and_then(|f| f.sync_data())
                .map_err(io_err(&s.path))?;
        }
        segment::sync_dir(&dir)?;
        rec.unacked = r.unacked.len() as u64;
        let keys = &r.keys;
        rec.open = r
            .payloads
            .into_values()
            .filter(|e| keys.live.get(&e.key).is_some_and(|l| l.seq == e.seq))
            .collect();
        rec.open.sort_unstable_by_key(|e| (e.time_ms, e.seq));
        let inner = Inner {
            dir,
            segment_bytes: cfg.segment_bytes,
            bytes: r.segs.values().map(|s| s.len).sum(),
            segs: r.segs,
            active,
            next_seq,
            keys: r.keys,
            unacked: r.unacked,
            cursor,
            unsynced: Vec::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            pending_serial: 0,
            repair_needed: false,
            dir_dirty: false,
            poisoned: false,
            buf: Vec::new(),
        };
        let spool = Spool {
            cfg,
            inner: Mutex::new(inner),
            sync_lock: Mutex::new(()),
            ack_lock: Mutex::new(()),
            read_pos: Mutex::new(Vec::new()),
            durable: AtomicU64::new(next_seq - 1),
            cursor: AtomicU64::new(cursor),
            fsync_failures: AtomicU64::new(0),
            commit: Default::default(),
            #[cfg(test)]
            inject_fsync_failures: Default::default(),
            _lock: lock,
        };
        Ok((Arc::new(spool), rec))
    }

    /// Every Open and Close entry in `dir`, in seq order, and the cursor: a read-only view
    /// for the CLI. Takes no lock and repairs nothing, so it works beside a running spool;
    /// a torn tail or a bad frame is skipped.
    pub fn read_all(dir: &Path) -> Result<(Vec<Entry>, u64), SpoolError> {
        let found = find(dir, false)?;
        let cursor = recover_cursor(dir, &found)?;
        let mut entries = Vec::new();
        for f in found.iter().filter(|f| f.header != Err(HeaderError::Short)) {
            let mut on_item = |item: Scan<'_>| {
                if let Scan::Frame { frame, .. } = item {
                    if let Some(kind) = frame.kind.public() {
                        entries.push(Entry {
                            seq: frame.seq,
                            time_ms: frame.time_ms,
                            kind,
                            key: frame.key,
                            payload: frame.payload.to_vec(),
                        });
                    }
                }
                ControlFlow::Continue(())
            };
            visit(&f.file, HEADER_LEN as u64, f.len, f.first, &mut on_item)
                .map_err(io_err(&f.path))?;
        }
        Ok((entries, cursor))
    }
}
