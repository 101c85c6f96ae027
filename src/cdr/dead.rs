//! The dead-letter file: records Microsoft refused, with the reason, one JSON object per
//! line (`{"at": RFC 3339, "reason": …, "record": DurationRecord}`, or `"raw"` instead of
//! `"record"` for a spool payload that could not be decoded). Every line is fsynced before
//! the record is acknowledged in the spool, so a refused record is never simply gone.
//! `ocedge cdr dead-letters` lists them; fix the cause and re-send them by hand.
//!
//! One line per record: a crash between a line's fsync and the spool's acknowledgement
//! sends the record again after the restart, and when it is refused again the file already
//! holds it. The ids (and undecodable payloads) already in the file are read when it is
//! first opened, and a record whose id is among them is not written twice.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{now_ms, rfc3339_ms};
use crate::msapi::DurationRecord;

/// One line of the dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// When it was dead-lettered (RFC 3339 UTC).
    pub at: String,
    /// Why (the API's reason, or the HTTP error).
    pub reason: String,
    /// The record as it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<DurationRecord>,
    /// A spool payload that could not be decoded, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl DeadLetter {
    /// What makes two lines the same dead letter: the record's id, or the undecodable
    /// payload itself.
    fn key(&self) -> Option<String> {
        match (&self.record, &self.raw) {
            (Some(r), _) => Some(format!("id:{}", r.id)),
            (None, Some(raw)) => Some(format!("raw:{raw}")),
            (None, None) => None,
        }
    }
}

/// The dead-letter file, shared by clones.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    path: PathBuf,
    file: Arc<Mutex<Option<Open>>>,
}

/// The open file and the keys ([`DeadLetter::key`]) of the lines in it.
#[derive(Debug)]
struct Open {
    file: File,
    written: HashSet<String>,
}

impl DeadLetters {
    /// The file at `path` (opened, created, on first use).
    pub fn new(path: &Path) -> DeadLetters {
        DeadLetters {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a refused record with its reason and fsyncs; nothing when the file already
    /// holds a line for the record's id.
    pub fn append(&self, record: &DurationRecord, reason: &str) -> std::io::Result<()> {
        self.write(&DeadLetter {
            at: rfc3339_ms(now_ms()),
            reason: reason.to_owned(),
            record: Some(record.clone()),
            raw: None,
        })
    }

    /// Appends an undecodable payload with its reason and fsyncs; nothing when the file
    /// already holds it.
    pub fn append_raw(&self, raw: &str, reason: &str) -> std::io::Result<()> {
        self.write(&DeadLetter {
            at: rfc3339_ms(now_ms()),
            reason: reason.to_owned(),
            record: None,
            raw: Some(raw.to_owned()),
        })
    }

    fn write(&self, d: &DeadLetter) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(d).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // Called from the uploader's task: the fsync must not hold a runtime worker.
        crate::blocking(|| self.write_line(d.key(), &line))
    }

    fn write_line(&self, key: Option<String>, line: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&self.path)?;
            let cut = cut_torn_line(&file)?;
            if cut > 0 {
                tracing::warn!(path = %self.path.display(), bytes = cut, "dead-letter file: a torn last line (a crash while writing it) cut off; its record is dead-lettered again");
            }
            let written = Self::read(&self.path)?
                .into_iter()
                .filter_map(|l| l.ok()?.key())
                .collect();
            *guard = Some(Open { file, written });
        }
        let Some(open) = guard.as_mut() else {
            return Err(std::io::Error::other("dead-letter file not open"));
        };
        if let Some(key) = &key {
            if open.written.contains(key) {
                tracing::info!(path = %self.path.display(), "already dead-lettered (its batch was sent again after a restart): not written twice");
                return Ok(());
            }
        }
        let wrote = open
            .file
            .write_all(line)
            .and_then(|()| open.file.sync_data());
        match wrote {
            Ok(()) => {
                if let Some(key) = key {
                    open.written.insert(key);
                }
            }
            // Part of the line may be in the file: open it afresh next time, which cuts a
            // torn line off before writing the next.
            Err(_) => *guard = None,
        }
        wrote
    }

    /// Reads every line of a dead-letter file (a missing file has none). Lines that do not
    /// parse are returned as errors with their line number, the rest still read.
    pub fn read(path: &Path) -> std::io::Result<Vec<Result<DeadLetter, String>>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect())
    }
}

/// Cuts a last line without its newline (a write cut short by a crash) off `file`, so the
/// next line starts on a line of its own; returns the bytes cut. The record of that line
/// was not acknowledged (that waits for the fsync), so it is dead-lettered again.
fn cut_torn_line(file: &File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let chunk = buf.get_mut(..(end - from) as usize).unwrap_or_default();
        file.read_exact_at(chunk, from)?;
        if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
            end = from + nl as u64 + 1;
            break;
        }
        end = from;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(len - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_appended_and_read_back() {
        let dir = crate::testdir::temp_dir("dead");
        let path = dir.join("sub/dead-letter.jsonl");
        let d = DeadLetters::new(&path);
        assert!(DeadLetters::read(&path).unwrap().is_empty());
        let rec = crate::cdr::record::tests::sample().to_duration();
        d.append(&rec, "durationMs differs").unwrap();
        d.append_raw("{not json", "undecodable").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        let lines = DeadLetters::read(&path).unwrap();
        assert_eq!(lines.len(), 3);
        let first = lines[0].as_ref().unwrap();
        assert_eq!(first.record.as_ref(), Some(&rec));
        assert_eq!(first.reason, "durationMs differs");
        assert_eq!(lines[1].as_ref().unwrap().raw.as_deref(), Some("{not json"));
        assert!(lines[2].as_ref().unwrap_err().starts_with("line 3"));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_before_the_next_is_written() {
        let dir = crate::testdir::temp_dir("dead-torn");
        let path = dir.join("dead-letter.jsonl");
        let rec = crate::cdr::record::tests::sample().to_duration();
        DeadLetters::new(&path).append(&rec, "first").unwrap();
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of the second line, then one with no newline at all: the
        // torn line is cut off, and its record is written again whole.
        for (i, torn) in [&b"{\"at\":\"2026-"[..], &whole[..whole.len() - 1]]
            .into_iter()
            .enumerate()
        {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(torn).unwrap();
            drop(f);
            DeadLetters::new(&path)
                .append(&with_id(&rec, i), "again")
                .unwrap();
        }
        let lines = DeadLetters::read(&path).unwrap();
        let reasons: Vec<_> = lines
            .iter()
            .map(|l| l.as_ref().expect("every line whole").reason.as_str())
            .collect();
        assert_eq!(reasons, ["first", "again", "again"]);
        // A file that is only a torn line.
        std::fs::write(&path, b"{\"at\"").unwrap();
        DeadLetters::new(&path).append(&rec, "only").unwrap();
        assert_eq!(DeadLetters::read(&path).unwrap().len(), 1);
    }

    fn with_id(rec: &DurationRecord, n: usize) -> DurationRecord {
        let mut r = rec.clone();
        r.id = format!("{}-{n}", rec.id);
        r
    }

    #[test]
    fn a_record_is_dead_lettered_once_across_restarts() {
        let dir = crate::testdir::temp_dir("dead-once");
        let path = dir.join("dead-letter.jsonl");
        let rec = crate::cdr::record::tests::sample().to_duration();
        let other = with_id(&rec, 1);
        let d = DeadLetters::new(&path);
        d.append(&rec, "refused").unwrap();
        d.append(&rec, "refused").unwrap();
        d.append(&other, "refused").unwrap();
        d.append_raw("{not json", "undecodable").unwrap();
        d.append_raw("{not json", "undecodable").unwrap();
        assert_eq!(DeadLetters::read(&path).unwrap().len(), 3);
        // After a restart the batch is sent again and refused again: the file already has it,
        // whatever the reason says this time. A new record still gets its line.
        let after = DeadLetters::new(&path);
        after.append(&rec, "refused (again)").unwrap();
        after.append_raw("{not json", "undecodable").unwrap();
        after.append(&with_id(&rec, 2), "refused").unwrap();
        let ids: Vec<_> = DeadLetters::read(&path)
            .unwrap()
            .into_iter()
            .map(|l| {
                let l = l.unwrap();
                l.record.map(|r| r.id).or(l.raw).unwrap()
            })
            .collect();
        assert_eq!(
            ids,
            [
                rec.id.clone(),
                other.id,
                "{not json".to_owned(),
                with_id(&rec, 2).id
            ]
        );
    }
}
