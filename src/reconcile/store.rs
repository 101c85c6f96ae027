//! The local store of Microsoft's call records, and the cursor files.
//!
//! # On disk: `<reconcile.dir>/ms-records/`
//!
//! - `records-<YYYYMMDD>T<HH>Z.jsonl`: the records whose `endDateTime` is in that UTC hour,
//!   one `msapi::CallRecord` per line as JSON (the contract's field names), newline
//!   terminated, in the order they were pulled. Append-only; a file is fsynced after every
//!   append, before the cursor moves past its records.
//! - `cursor.json`: `{"version":1,"cursorMs":N,"cursor":"<RFC 3339>","sinceMs":S}`: every
//!   record whose call ended in `[sinceMs, cursorMs)` has been pulled (records that appear
//!   later are caught by the re-read, `reconcile.reread`); `sinceMs` is the first cursor,
//!   where the store began. Written atomically (temp file, fsync, rename, directory fsync).
//!
//! # Invariants and recovery
//!
//! - Records are appended before the cursor that covers them is written; a crash in between
//!   pulls that window again, and the puller drops what the store already holds (it loads
//!   the ids of the re-read span at start), so no id is appended twice in normal operation.
//! - Readers key on `id` all the same (the first line of an id wins), so a store copied or
//!   merged by hand still reads exactly once per record.
//! - A torn last line (a crash mid-write) does not parse and is skipped and counted; the next
//!   append starts on a new line first, so it never glues onto the torn one. A record torn
//!   away is not in the id set, so the next pull of its window appends it again.
//! - A cursor file that does not read is an error, never a reason to start over: starting
//!   over would pull again or skip.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{parse_ms, ReconcileError};
use crate::cdr::export::write_atomic;
use crate::cdr::rfc3339_ms;
use crate::msapi::CallRecord;

const HOUR_MS: u64 = 3_600_000;

/// The cursor file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CursorFile {
    version: u32,
    cursor_ms: u64,
    /// For people reading the file; `cursorMs` is what counts.
    cursor: String,
    /// Where what the cursor covers began (the store's first cursor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since_ms: Option<u64>,
}

/// Reads a cursor file: `None` when there is none.
pub fn load_cursor(path: &Path) -> Result<Option<u64>, ReconcileError> {
    Ok(read_cursor(path)?.map(|c| c.cursor_ms))
}

/// Writes a cursor file atomically.
pub fn save_cursor(path: &Path, ms: u64) -> Result<(), ReconcileError> {
    write_cursor(path, ms, None)
}

fn read_cursor(path: &Path) -> Result<Option<CursorFile>, ReconcileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReconcileError::io(path)(e)),
    };
    let corrupt = |reason: String| ReconcileError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let c: CursorFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if c.version != 1 {
        return Err(corrupt(format!("unknown version {}", c.version)));
    }
    Ok(Some(c))
}

fn write_cursor(path: &Path, ms: u64, since_ms: Option<u64>) -> Result<(), ReconcileError> {
    let c = CursorFile {
        version: 1,
        cursor_ms: ms,
        cursor: rfc3339_ms(ms),
        since_ms,
    };
    let mut text = serde_json::to_vec(&c).unwrap_or_default();
    text.push(b'\n');
    write_atomic(path, &text).map_err(ReconcileError::io(path))
}

/// What [`MsStore::read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreRead {
    /// The records of the range, each id once.
    pub records: Vec<CallRecord>,
    /// Lines that did not parse (torn tails, damage).
    pub bad_lines: u64,
}

/// The store directory; see the module documentation.
#[derive(Debug, Clone)]
pub struct MsStore {
    dir: PathBuf,
}

impl MsStore {
    /// The store in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<MsStore, ReconcileError> {
        std::fs::create_dir_all(dir).map_err(ReconcileError::io(dir))?;
        Ok(MsStore {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted cursor, `None` before the first one.
    pub fn cursor(&self) -> Result<Option<u64>, ReconcileError> {
        load_cursor(&self.dir.join("cursor.json"))
    }

    /// `[since, cursor)`: the ends of the calls whose records the store holds; `None`
    /// before the first cursor.
    pub fn covers(&self) -> Result<Option<(u64, u64)>, ReconcileError> {
        let c = read_cursor(&self.dir.join("cursor.json"))?;
        Ok(c.map(|c| (c.since_ms.unwrap_or(0).min(c.cursor_ms), c.cursor_ms)))
    }

    /// Persists the cursor (atomically); the first one also marks where the store began.
    pub fn save_cursor(&self, ms: u64) -> Result<(), ReconcileError> {
        let path = self.dir.join("cursor.json");
        let since = read_cursor(&path)?.map_or(ms, |c| c.since_ms.unwrap_or(0));
        write_cursor(&path, ms, Some(since))
    }

    /// Appends `(end_ms, record)` pairs to their hour files and fsyncs each file written.
    pub fn append(&self, records: &[(u64, &CallRecord)]) -> Result<(), ReconcileError> {
        let mut by_file: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (end, r) in records {
            let buf = by_file.entry(file_name(*end)).or_default();
            if serde_json::to_writer(&mut *buf, r).is_ok() {
                buf.push(b'\n');
            }
        }
        let mut created = false;
        for (name, buf) in by_file {
            let path = self.dir.join(name);
            created |= !path.exists();
            append_lines(&path, &buf).map_err(ReconcileError::io(&path))?;
        }
        if created {
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The records whose `endDateTime` is in `[from_ms, to_ms)`, each id once (its first
    /// line). Records whose end does not read are skipped (they are never stored).
    pub fn read(&self, from_ms: u64, to_ms: u64) -> Result<StoreRead, ReconcileError> {
        let mut out = StoreRead::default();
        let mut ids = HashSet::new();
        for path in self.files(from_ms, to_ms)? {
            let f = File::open(&path).map_err(ReconcileError::io(&path))?;
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(ReconcileError::io(&path))?;
                let Ok(r) = serde_json::from_slice::<CallRecord>(&line) else {
                    out.bad_lines += 1;
                    continue;
                };
                let in_range =
                    parse_ms(&r.end_date_time).is_some_and(|e| e >= from_ms && e < to_ms);
                if in_range && ids.insert(r.id.clone()) {
                    out.records.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Hour files that may hold records ending in `[from_ms, to_ms)`, oldest first.
    fn files(&self, from_ms: u64, to_ms: u64) -> Result<Vec<PathBuf>, ReconcileError> {
        let list = std::fs::read_dir(&self.dir).map_err(ReconcileError::io(&self.dir))?;
        let mut found: Vec<(u64, PathBuf)> = list
            .filter_map(Result::ok)
            .filter_map(|e| {
                let hour = hour_of(e.file_name().to_str()?)?;
                let overlaps = hour < to_ms && hour.saturating_add(HOUR_MS) > from_ms;
                overlaps.then(|| (hour, e.path()))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }
}

/// `records-20240501T10Z.jsonl` for an end time in 10:00–10:59 UTC on 2024-05-01.
pub fn file_name(end_ms: u64) -> String {
    let stamp: String = rfc3339_ms(end_ms - end_ms % HOUR_MS)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(11)
        .collect();
    format!("records-{stamp}Z.jsonl")
}

/// The start (UTC ms) of the hour a store file name stands for.
fn hour_of(name: &str) -> Option<u64> {
    let s = name.strip_prefix("records-")?.strip_suffix("Z.jsonl")?;
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and(s.get(r))
    };
    if b.len() != 11 || b.get(8) != Some(&b'T') {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:00:00Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?
    );
    parse_ms(&text)
}

/// Appends `buf` to `path` on a line of its own, then fsyncs.
fn append_lines(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    f.write_all(buf)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::tests::ms_record;
    use crate::testdir::temp_dir;

    #[test]
    fn names_map_to_hours_and_back() {
        let t = parse_ms("2024-05-01T10:59:59.999Z").unwrap_or(0);
        assert_eq!(file_name(t), "records-20240501T10Z.jsonl");
        assert_eq!(hour_of(&file_name(t)), parse_ms("2024-05-01T10:00:00Z"));
        for bad in [
            "records-2024050110Z.jsonl",
            "records-20240501T1xZ.jsonl",
            "x.jsonl",
        ] {
            assert_eq!(hour_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn appends_read_back_once_and_survive_a_torn_tail() {
        let dir = temp_dir("reconcile-store");
        let store = MsStore::open(&dir).unwrap();
        let a = ms_record("a", "2024-05-01T10:00:05Z", 5000);
        let b = ms_record("b", "2024-05-01T11:00:00Z", 7000);
        let end = |r: &CallRecord| parse_ms(&r.end_date_time).unwrap_or(0);
        store.append(&[(end(&a), &a), (end(&b), &b)]).unwrap();
        let path = dir.join(file_name(end(&a)));
        // A crash mid-line, then the same record again (a re-pull), then another.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\":\"torn").unwrap();
        let c = ms_record("c", "2024-05-01T10:30:00Z", 1000);
        store.append(&[(end(&a), &a), (end(&c), &c)]).unwrap();
        let all = store.read(0, u64::MAX).unwrap();
        let ids: Vec<&str> = all.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "b"]);
        assert_eq!(all.bad_lines, 1, "the torn line alone");
        let from = parse_ms("2024-05-01T10:10:00Z").unwrap_or(0);
        let to = parse_ms("2024-05-01T11:00:00Z").unwrap_or(0);
        let window = store.read(from, to).unwrap();
        assert_eq!(window.records.len(), 1, "[from, to) by endDateTime");
    }

    #[test]
    fn cursors_persist_and_refuse_garbage() {
        let dir = temp_dir("reconcile-cursor");
        let store = MsStore::open(&dir).unwrap();
        assert_eq!(store.cursor().unwrap(), None);
        store.save_cursor(1_714_557_600_000).unwrap();
        store.save_cursor(1_714_561_200_000).unwrap();
        assert_eq!(store.cursor().unwrap(), Some(1_714_561_200_000));
        let covers = Some((1_714_557_600_000, 1_714_561_200_000));
        assert_eq!(store.covers().unwrap(), covers, "since the first cursor");
        std::fs::write(dir.join("cursor.json"), "{\"cursorMs\": \"soon\"}").unwrap();
        let e = store.cursor().unwrap_err().to_string();
        assert!(e.contains("cursor.json"), "{e}");
    }
}
