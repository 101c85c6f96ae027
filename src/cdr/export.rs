//! The carrier's own record files: every finished record, one per line, in files rotated by
//! time (`cdr-<UTC period start>.jsonl`, or `.csv` with a header line). Independent of the
//! upload: an API outage does not hold billing files back.
//!
//! The exporter reads the spool after its own position, appends the batch to the current
//! file, fsyncs it, then persists its position in `export.cursor` (atomically: temp file,
//! fsync, rename). A crash between the two can write the last batch twice; each line
//! carries the record `id`, so a reader that keys on it is exact. Fields are documented in
//! `docs/cdr.md`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::gate::AckGate;
use super::spool::Spool;
use super::{rfc3339_ms, CallRecord};
use crate::config::{CdrExport, ExportFormat};

/// A record as exported: the record with RFC 3339 times.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRow<'a> {
    /// Record id (deterministic; the key to deduplicate on).
    pub id: &'a str,
    /// SIP Call-ID.
    pub call_id: &'a str,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// Teams tenant.
    pub tenant_id: &'a str,
    /// Calling number (E.164).
    pub caller_number: &'a str,
    /// Called number (E.164).
    pub callee_number: &'a str,
    /// The Teams user's SIP URI.
    pub sip_uri: &'a str,
    /// The INVITE.
    pub start_date_time: String,
    /// The answer, empty when not answered.
    pub answer_date_time: String,
    /// The end.
    pub end_date_time: String,
    /// Billable milliseconds.
    pub duration_ms: u64,
    /// `answered`, `failed`, `cancelled`.
    pub disposition: &'static str,
    /// Final SIP status.
    pub final_sip_code: u16,
    /// Why it ended.
    pub end_reason: &'static str,
    /// SBC or Microsoft target it went to.
    pub sbc: &'a str,
    /// Side the INVITE came from.
    pub side: &'static str,
}

/// CSV header, in [`ExportRow`] order.
pub const CSV_HEADER: &str = "id,callId,direction,tenantId,callerNumber,calleeNumber,sipUri,\
startDateTime,answerDateTime,endDateTime,durationMs,disposition,finalSipCode,endReason,sbc,side";

impl<'a> ExportRow<'a> {
    /// The row of `r`.
    pub fn of(r: &'a CallRecord) -> ExportRow<'a> {
        ExportRow {
            id: &r.id,
            call_id: &r.call_id,
            direction: r.direction.as_str(),
            tenant_id: &r.tenant_id,
            caller_number: &r.caller_number,
            callee_number: &r.callee_number,
            sip_uri: &r.sip_uri,
            start_date_time: rfc3339_ms(r.start_ms),
            answer_date_time: r.answer_ms.map(rfc3339_ms).unwrap_or_default(),
            end_date_time: rfc3339_ms(r.end_ms),
            duration_ms: r.duration_ms,
            disposition: r.disposition.as_str(),
            final_sip_code: r.final_status,
            end_reason: r.end_reason.as_str(),
            sbc: &r.sbc,
            side: crate::config::Side::from(r.side).as_str(),
        }
    }

    /// One JSON line (no newline).
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One CSV line (no newline); fields quoted when they need it (RFC 4180).
    pub fn csv(&self) -> String {
        let fields: [&str; 16] = [
            self.id,
            self.call_id,
            self.direction,
            self.tenant_id,
            self.caller_number,
            self.callee_number,
            self.sip_uri,
            &self.start_date_time,
            &self.answer_date_time,
            &self.end_date_time,
            &self.duration_ms.to_string(),
            self.disposition,
            &self.final_sip_code.to_string(),
            self.end_reason,
            self.sbc,
            self.side,
        ];
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// The file `rotate`-period containing `ms`, named by its start.
fn file_name(ms: u64, rotate: Duration, format: ExportFormat) -> String {
    let ext = match format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
    };
    period_file("cdr", ms, rotate, ext).1
}

/// The start of the `rotate`-long period (at least 1 s) holding `ms`, and the name of its
/// file: `<prefix>-<UTC start, YYYYMMDDTHHMMSS>Z.<ext>`. Shared by the rotating record and
/// quality files.
pub(crate) fn period_file(prefix: &str, ms: u64, rotate: Duration, ext: &str) -> (u64, String) {
    let period = (rotate.as_millis() as u64).max(1000);
    let start = ms - ms % period;
    let stamp: String = rfc3339_ms(start)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    (start, format!("{prefix}-{stamp}Z.{ext}"))
}

/// The exporter task; see the module documentation.
pub struct Exporter {
    cfg: CdrExport,
    spool: Arc<Spool>,
    gate: Arc<AckGate>,
    consumer: usize,
    wake: Arc<Notify>,
    open: Option<(String, File)>,
}

impl Exporter {
    /// The position persisted in `dir` (0 when none).
    pub fn load_position(dir: &Path) -> u64 {
        std::fs::read_to_string(dir.join("export.cursor"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// An exporter for `cfg`, consumer `consumer` of `gate`.
    pub fn new(
        cfg: CdrExport,
        spool: Arc<Spool>,
        gate: Arc<AckGate>,
        consumer: usize,
        wake: Arc<Notify>,
    ) -> Exporter {
        Exporter {
            cfg,
            spool,
            gate,
            consumer,
            wake,
            open: None,
        }
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let pos = self.gate.position(self.consumer);
            let wrote = match crate::blocking(|| self.export_from(pos)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, dir = %self.cfg.dir.display(), "CDR export failed");
                    0
                }
            };
            if wrote == 0 {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// Exports one batch after `pos`; how many records it wrote.
    pub fn export_from(&mut self, pos: u64) -> std::io::Result<usize> {
        let entries = self
            .spool
            .read_closes(pos, 1000)
            .map_err(std::io::Error::other)?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(0);
        };
        std::fs::create_dir_all(&self.cfg.dir)?;
        let mut n = 0;
        for e in &entries {
            // An undecodable payload is the uploader's to dead-letter; skip it here.
            let Ok(r) = CallRecord::decode(&e.payload) else {
                continue;
            };
            let row = ExportRow::of(&r);
            let mut line = match self.cfg.format {
                ExportFormat::Jsonl => row.json(),
                ExportFormat::Csv => row.csv(),
            };
            line.push('\n');
            self.file_for(r.end_ms)?.write_all(line.as_bytes())?;
            n += 1;
        }
        if let Some((_, f)) = &self.open {
            f.sync_data()?;
        }
        write_atomic(
            &self.cfg.dir.join("export.cursor"),
            format!("{last}\n").as_bytes(),
        )?;
        self.gate
            .advance(self.consumer, last)
            .map_err(std::io::Error::other)?;
        Ok(n.max(1))
    }

    fn file_for(&mut self, end_ms: u64) -> std::io::Result<&mut File> {
        let name = file_name(end_ms, self.cfg.rotate.0, self.cfg.format);
        if self.open.as_ref().is_none_or(|(n, _)| *n != name) {
            if let Some((_, f)) = &self.open {
                f.sync_data()?;
            }
            let path = self.cfg.dir.join(&name);
            let fresh = !path.exists();
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            if fresh && self.cfg.format == ExportFormat::Csv {
                f.write_all(CSV_HEADER.as_bytes())?;
                f.write_all(b"\n")?;
            }
            self.open = Some((name, f));
        }
        match &mut self.open {
            Some((_, f)) => Ok(f),
            None => Err(std::io::Error::other("no export file")),
        }
    }
}

/// Writes `path` atomically: temp file, fsync, rename, directory fsync.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_as_json_and_csv() {
        let mut r = crate::cdr::record::tests::sample();
        r.sip_uri = "sip:\"odd\",user@x".into();
        let row = ExportRow::of(&r);
        let v: serde_json::Value = serde_json::from_str(&row.json()).unwrap();
        assert_eq!(v["durationMs"], 60_250);
        assert_eq!(v["endReason"], "caller_bye");
        assert_eq!(v["side"], "carrier");
        assert!(v["answerDateTime"].as_str().unwrap().ends_with(".500Z"));
        let csv = row.csv();
        assert_eq!(
            csv.matches(',').count() - 1,
            CSV_HEADER.matches(',').count(),
            "one quoted field holds a comma"
        );
        assert!(csv.contains("\"sip:\"\"odd\"\",user@x\""));
    }

    #[test]
    fn files_rotate_by_period_start() {
        let h = Duration::from_secs(3600);
        let t = 1_795_000_000_000; // 2026-11-18T11:06:40Z
        assert_eq!(
            file_name(t, h, ExportFormat::Jsonl),
            "cdr-20261118T110000Z.jsonl"
        );
        assert_eq!(
            file_name(t + 1, h, ExportFormat::Csv),
            "cdr-20261118T110000Z.csv"
        );
        assert_ne!(
            file_name(t, h, ExportFormat::Jsonl),
            file_name(t + 3_600_000, h, ExportFormat::Jsonl)
        );
    }
}
