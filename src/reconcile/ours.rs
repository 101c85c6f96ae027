//! Our records for a window: the spool's Close entries (read-only, beside a running
//! gateway: [`Spool::read_all`]) and the export files of `[cdr.export]`, each id once.
//!
//! The spool deletes segments once both the uploader and the exporter acknowledged them, so
//! for windows older than the spool's first remaining record only the export files hold
//! our side. [`OurRecords::covered_from_ms`] says from when the records read are complete;
//! a window starting earlier is reported as incomplete rather than blaming Microsoft's
//! records on a gap of ours. [`OurRecords::unacked_from_ms`] is the earliest end of a record
//! not yet acknowledged (uploaded and exported): Microsoft cannot have the record of
//! a duration it was not given yet, so the daemon waits for it before reporting.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ms, parse_ms, ReconcileError};
use crate::cdr::spool::{Kind, Spool};
use crate::cdr::{CallRecord, Direction, Disposition, EndReason, SideName};
use crate::config::Config;

/// Where our records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurSource {
    /// The spool directory (`cdr.spool_dir`).
    pub spool_dir: PathBuf,
    /// The export directory and its file period (`[cdr.export]`), when there is one.
    pub export: Option<(PathBuf, Duration)>,
}

impl OurSource {
    /// The sources a configuration names.
    pub fn from_config(cfg: &Config) -> OurSource {
        OurSource {
            spool_dir: cfg.cdr.spool_dir.clone(),
            export: cfg.cdr.export.as_ref().map(|x| (x.dir.clone(), x.rotate.0)),
        }
    }
}

/// What [`OurSource::load`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OurRecords {
    /// Records ending in the range asked for, each id once.
    pub records: Vec<CallRecord>,
    /// Our records are complete for calls that ended at or after this (UTC ms); 0 when
    /// nothing was ever deleted, `u64::MAX` when records were deleted and none remain.
    pub covered_from_ms: u64,
    /// The end (UTC ms) of the earliest-ending record in the spool not yet acknowledged by
    /// the uploader and the exporter.
    pub unacked_from_ms: Option<u64>,
    /// Spool payloads and export lines that did not read.
    pub bad: u64,
}

impl OurSource {
    /// Our records ending in `[from_ms, to_ms)`.
    pub fn load(&self, from_ms: u64, to_ms: u64) -> Result<OurRecords, ReconcileError> {
        let mut out = OurRecords {
            covered_from_ms: u64::MAX,
            ..OurRecords::default()
        };
        let mut ids = HashSet::new();
        let mut keep = |r: CallRecord, out: &mut OurRecords| {
            if (from_ms..to_ms).contains(&r.end_ms) && ids.insert(r.id.clone()) {
                out.records.push(r);
            }
        };
        if self.spool_dir.is_dir() {
            let (entries, cursor) = Spool::read_all(&self.spool_dir)?;
            let first = entries.iter().map(|e| e.seq).min();
            // Seq 1 still there, or nothing ever written: nothing was deleted. Otherwise
            // everything from the first remaining Close on is there.
            let untouched = first == Some(1) || (first.is_none() && cursor == 0);
            let mut first_close: Option<(u64, u64)> = None;
            for e in entries.into_iter().filter(|e| e.kind == Kind::Close) {
                let record = CallRecord::decode(&e.payload).ok();
                // A record's end when it reads, else when it was written (about the same).
                let end = record.as_ref().map_or(e.time_ms, |r| r.end_ms);
                if first_close.is_none_or(|(seq, _)| e.seq < seq) {
                    first_close = Some((e.seq, end));
                }
                if e.seq > cursor {
                    out.unacked_from_ms = Some(out.unacked_from_ms.map_or(end, |u| u.min(end)));
                }
                match record {
                    Some(r) => keep(r, &mut out),
                    None => out.bad += 1,
                }
            }
            out.covered_from_ms = match first_close {
                _ if untouched => 0,
                Some((_, end)) => end,
                None => u64::MAX,
            };
        }
        if let Some((dir, rotate)) = &self.export {
            for (start, path) in export_files(dir)? {
                out.covered_from_ms = out.covered_from_ms.min(start);
                let period = ms(*rotate).max(1000);
                if start >= to_ms || start.saturating_add(period) <= from_ms {
                    continue;
                }
                let (records, bad) = read_export(&path)?;
                out.bad += bad;
                for r in records {
                    keep(r, &mut out);
                }
            }
        }
        Ok(out)
    }
}

/// The export files in `dir` with the start of their period, oldest first.
fn export_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ReconcileError> {
    let list = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReconcileError::io(dir)(e)),
    };
    let mut files: Vec<(u64, PathBuf)> = list
        .filter_map(Result::ok)
        .filter_map(|e| Some((period_start(e.file_name().to_str()?)?, e.path())))
        .collect();
    files.sort();
    Ok(files)
}

/// `cdr-20261118T110000Z.jsonl` (or `.csv`) → the UTC ms of 2026-11-18T11:00:00Z.
fn period_start(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("cdr-")?;
    let stamp = stem
        .strip_suffix(".jsonl")
        .or_else(|| stem.strip_suffix(".csv"))?;
    let d = |r: std::ops::Range<usize>| {
        stamp
            .get(r)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };
    if stamp.len() != 16 || stamp.get(8..9) != Some("T") || stamp.get(15..) != Some("Z") {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        d(0..4)?,
        d(4..6)?,
        d(6..8)?,
        d(9..11)?,
        d(11..13)?,
        d(13..15)?
    );
    parse_ms(&text)
}

/// An export line (JSONL or CSV), as `crate::cdr::export::ExportRow` writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    id: String,
    call_id: String,
    direction: Direction,
    tenant_id: String,
    caller_number: String,
    callee_number: String,
    sip_uri: String,
    start_date_time: String,
    answer_date_time: String,
    end_date_time: String,
    duration_ms: u64,
    disposition: Disposition,
    final_sip_code: u16,
    end_reason: EndReason,
    sbc: String,
    side: SideName,
}

impl Row {
    fn record(self) -> Option<CallRecord> {
        Some(CallRecord {
            start_ms: parse_ms(&self.start_date_time)?,
            answer_ms: match self.answer_date_time.as_str() {
                "" => None,
                a => Some(parse_ms(a)?),
            },
            end_ms: parse_ms(&self.end_date_time)?,
            id: self.id,
            call_id: self.call_id,
            direction: self.direction,
            tenant_id: self.tenant_id,
            caller_number: self.caller_number,
            callee_number: self.callee_number,
            sip_uri: self.sip_uri,
            duration_ms: self.duration_ms,
            disposition: self.disposition,
            final_status: self.final_sip_code,
            end_reason: self.end_reason,
            sbc: self.sbc,
            side: self.side,
        })
    }

    /// A CSV line in `CSV_HEADER` order.
    fn from_csv(line: &str) -> Option<Row> {
        const NAMES: [&str; 16] = [
            "id",
            "callId",
            "direction",
            "tenantId",
            "callerNumber",
            "calleeNumber",
            "sipUri",
            "startDateTime",
            "answerDateTime",
            "endDateTime",
            "durationMs",
            "disposition",
            "finalSipCode",
            "endReason",
            "sbc",
            "side",
        ];
        let fields = split_csv(line)?;
        if fields.len() != NAMES.len() {
            return None;
        }
        let mut obj = serde_json::Map::new();
        for (name, value) in NAMES.iter().zip(fields) {
            let v = match *name {
                "durationMs" | "finalSipCode" => {
                    serde_json::Value::from(value.parse::<u64>().ok()?)
                }
                _ => serde_json::Value::from(value),
            };
            obj.insert((*name).to_owned(), v);
        }
        serde_json::from_value(serde_json::Value::Object(obj)).ok()
    }
}

/// Reads one export file: its records, and how many lines did not read (the CSV header
/// aside).
fn read_export(path: &Path) -> Result<(Vec<CallRecord>, u64), ReconcileError> {
    let (mut records, mut bad) = (Vec::new(), 0);
    let csv = path.extension().is_some_and(|e| e == "csv");
    let f = File::open(path).map_err(ReconcileError::io(path))?;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(ReconcileError::io(path))?;
        if line.is_empty() || (csv && i == 0 && line.starts_with("id,")) {
            continue;
        }
        let row = if csv {
            Row::from_csv(&line)
        } else {
            serde_json::from_str::<Row>(&line).ok()
        };
        match row.and_then(Row::record) {
            Some(r) => records.push(r),
            None => bad += 1,
        }
    }
    Ok((records, bad))
}

/// Splits an RFC 4180 line (quoted fields with doubled quotes); `None` when a quote is
/// left open.
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    (!quoted).then(|| {
        fields.push(cur);
        fields
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::export::{ExportRow, CSV_HEADER};

    #[test]
    fn export_rows_read_back_as_records() {
        let mut r = crate::cdr::record::tests::sample();
        r.sip_uri = "sip:\"odd\",user@x".into();
        let row = ExportRow::of(&r);
        let json = serde_json::from_str::<Row>(&row.json())
            .ok()
            .and_then(Row::record);
        assert_eq!(json.as_ref(), Some(&r));
        assert_eq!(
            Row::from_csv(&row.csv()).and_then(Row::record).as_ref(),
            Some(&r)
        );
        assert!(Row::from_csv(CSV_HEADER).is_none_or(|h| h.record().is_none()));
        assert_eq!(
            split_csv("a,\"b\"\"c\",,\"d,e\""),
            Some(vec!["a".into(), "b\"c".into(), String::new(), "d,e".into()])
        );
        assert_eq!(split_csv("\"open"), None);
    }

    #[test]
    fn export_file_names_give_their_period() {
        assert_eq!(
            period_start("cdr-20261118T110000Z.jsonl"),
            parse_ms("2026-11-18T11:00:00Z")
        );
        assert_eq!(
            period_start("cdr-20261118T110000Z.csv"),
            parse_ms("2026-11-18T11:00:00Z")
        );
        assert_eq!(period_start("cdr-20261118T1100Z.csv"), None);
        assert_eq!(period_start("export.cursor"), None);
    }
}
