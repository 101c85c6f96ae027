//! The carrier's own record files: every finished record, one per line, in files rotated by
//! time (`cdr-<UTC period start>.jsonl`, or `.csv` with a header line). Independent of the
//! upload: an API outage does not hold billing files back.
//!
//! Each record is written exactly once, across crashes and power loss. A batch goes:
//! 1. `export.pending` (atomically: temp file, fsync, rename): the batch's last seq and, for
//!    every file the batch will append to, its length before the batch;
//! 2. the lines, appended to their files, which are then fsynced;
//! 3. `export.cursor` (atomically): the batch's last seq, the exporter's position.
//!
//! At start [`Exporter::recover`] compares the two: a pending batch past the cursor was cut
//! short by a crash, so its files are truncated back to the lengths recorded before it, and
//! the batch is exported again from the spool. Each batch does the same first, so a batch
//! that failed half-way in a running process (a full disk) is not repeated by its retry.
//! Formats in `docs/cdr.md`.

use std::fs::{self, File, OpenOptions};
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

/// The exporter's position: the last seq every line of which is in the files.
const CURSOR: &str = "export.cursor";
/// The batch being written: its last seq, then `<file name>\t<length before>` per file.
const PENDING: &str = "export.pending";

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
        fs::read_to_string(dir.join(CURSOR))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Undoes a batch a crash cut short (see the module documentation) and returns the
    /// position to export from. Run once at start, before the exporter. An `Err` is a file
    /// that could not be truncated; a malformed `export.pending` is reported and ignored.
    pub fn recover(dir: &Path) -> std::io::Result<u64> {
        let pos = Self::load_position(dir);
        if undo_pending(dir, pos)? {
            fs::remove_file(dir.join(PENDING))?;
        }
        Ok(pos)
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

    /// Exports one batch after `pos`; how many records it wrote (at least 1 when the
    /// position moved).
    pub fn export_from(&mut self, pos: u64) -> std::io::Result<usize> {
        let Some((last, n)) = self.write_batch(pos)? else {
            return Ok(0);
        };
        write_atomic(&self.cfg.dir.join(CURSOR), format!("{last}\n").as_bytes())?;
        self.gate
            .advance(self.consumer, last)
            .map_err(std::io::Error::other)?;
        Ok(n.max(1))
    }

    /// Steps 1 and 2 of a batch: announces it in `export.pending`, appends its lines and
    /// fsyncs their files. Returns the batch's last seq and its line count.
    fn write_batch(&mut self, pos: u64) -> std::io::Result<Option<(u64, usize)>> {
        let entries = self
            .spool
            .read_closes(pos, 1000)
            .map_err(std::io::Error::other)?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        // A batch that failed half-way in this process (a full disk) is undone as a
        // crashed one would be, before it is written again.
        undo_pending(&self.cfg.dir, pos)?;
        let mut lines = Vec::with_capacity(entries.len());
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
            lines.push((
                file_name(r.end_ms, self.cfg.rotate.0, self.cfg.format),
                line,
            ));
        }
        if lines.is_empty() {
            return Ok(Some((last, 0)));
        }
        fs::create_dir_all(&self.cfg.dir)?;
        let mut names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut pending = format!("{last}\n");
        for name in names {
            let len = fs::metadata(self.cfg.dir.join(name)).map_or(0, |m| m.len());
            pending.push_str(&format!("{name}\t{len}\n"));
        }
        write_atomic(&self.cfg.dir.join(PENDING), pending.as_bytes())?;
        for (name, line) in &lines {
            self.file_for(name)?.write_all(line.as_bytes())?;
        }
        if let Some((_, f)) = &self.open {
            f.sync_data()?;
        }
        Ok(Some((last, lines.len())))
    }

    fn file_for(&mut self, name: &str) -> std::io::Result<&mut File> {
        if self.open.as_ref().is_none_or(|(n, _)| n != name) {
            if let Some((_, f)) = &self.open {
                f.sync_data()?;
            }
            let path = self.cfg.dir.join(name);
            let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
            // Empty rather than new: a batch rolled back to nothing took its header along.
            if f.metadata()?.len() == 0 && self.cfg.format == ExportFormat::Csv {
                f.write_all(CSV_HEADER.as_bytes())?;
                f.write_all(b"\n")?;
            }
            self.open = Some((name.to_owned(), f));
        }
        match &mut self.open {
            Some((_, f)) => Ok(f),
            None => Err(std::io::Error::other("no export file")),
        }
    }
}

/// Truncates the files of the batch announced in `export.pending`, when it was not committed
/// (its last seq is past `pos`), back to their lengths before it. False when there is no
/// `export.pending`.
fn undo_pending(dir: &Path, pos: u64) -> std::io::Result<bool> {
    let path = dir.join(PENDING);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match parse_pending(&text) {
        Some((last, files)) if last > pos => {
            for (name, len) in files {
                roll_back(&dir.join(name), len)?;
            }
        }
        Some(_) => {}
        None => tracing::warn!(file = %path.display(), "malformed export.pending ignored"),
    }
    Ok(true)
}

/// `export.pending`: the batch's last seq and its files with their lengths before it.
/// `None` when malformed, or when a name is not a plain file name of ours.
fn parse_pending(text: &str) -> Option<(u64, Vec<(&str, u64)>)> {
    let mut lines = text.lines();
    let last = lines.next()?.trim().parse().ok()?;
    let mut files = Vec::new();
    for line in lines {
        let (name, len) = line.split_once('\t')?;
        if !name.starts_with("cdr-") || name.contains(['/', '\\']) {
            return None;
        }
        files.push((name, len.trim().parse().ok()?));
    }
    Some((last, files))
}

/// Truncates `path` back to `len` bytes when it grew past it (a missing file is left so).
fn roll_back(path: &Path, len: u64) -> std::io::Result<()> {
    let f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = f.metadata()?.len();
    if now > len {
        f.set_len(len)?;
        f.sync_all()?;
        tracing::warn!(
            file = %path.display(),
            removed_bytes = now - len,
            "export: rolled back an unfinished batch; it is written again"
        );
    }
    Ok(())
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
    use crate::testdir::{temp_dir, TempDir};

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

    /// A spool under a fresh directory, with `export/` beside it.
    struct Bench {
        spool: Arc<Spool>,
        /// Declared last: removed after the spool is closed.
        root: TempDir,
    }

    impl Bench {
        fn new(name: &str) -> Bench {
            let root = temp_dir(&format!("export-{name}"));
            let cfg = crate::cdr::spool::SpoolConfig {
                dir: root.join("spool"),
                segment_bytes: 1 << 20,
                fsync_interval: Duration::from_millis(5),
                max_bytes: 1 << 30,
                alarm_ratio: 0.8,
            };
            let (spool, _) = Spool::open(cfg).unwrap();
            Bench { spool, root }
        }

        /// Appends finished records `n` (ids and Call-IDs from it), ending at `end_ms + n`.
        fn close(&self, ns: std::ops::Range<u64>, end_ms: u64) {
            for n in ns {
                let mut r = crate::cdr::record::tests::sample();
                r.call_id = format!("call-{n}");
                r.id = crate::cdr::record_id(r.call_id.as_bytes(), b"f", b"t", 1);
                r.end_ms = end_ms + n;
                let payload = r.encode();
                let batch = [(
                    crate::cdr::spool::Kind::Close,
                    crate::cdr::spool::key_of(&r.id),
                    payload.as_slice(),
                )];
                self.spool.append(&batch).unwrap();
            }
            self.spool.sync().unwrap();
        }

        /// An exporter as the daemon starts one: after [`Exporter::recover`].
        fn exporter(&self, format: ExportFormat) -> (Exporter, u64) {
            let dir = self.root.join("export");
            let pos = Exporter::recover(&dir).unwrap();
            let cfg = CdrExport {
                dir,
                format,
                rotate: crate::config::Dur(Duration::from_secs(3600)),
            };
            let gate = Arc::new(AckGate::new(self.spool.clone(), &[pos]));
            let ex = Exporter::new(cfg, self.spool.clone(), gate, 0, Arc::new(Notify::new()));
            (ex, pos)
        }

        /// Every export file's lines, by file name.
        fn files(&self) -> Vec<(String, Vec<String>)> {
            let mut out: Vec<(String, Vec<String>)> = fs::read_dir(self.root.join("export"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("cdr-"))
                .map(|n| {
                    let text = fs::read_to_string(self.root.join("export").join(&n)).unwrap();
                    (n, text.lines().map(str::to_owned).collect())
                })
                .collect();
            out.sort();
            out
        }
    }

    const HOUR: u64 = 3_600_000;
    const T: u64 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR;

    #[test]
    fn a_batch_cut_short_by_a_crash_is_rolled_back_and_written_once() {
        let b = Bench::new("crash");
        b.close(0..3, T);
        let (mut ex, pos) = b.exporter(ExportFormat::Jsonl);
        assert_eq!(pos, 0);
        assert_eq!(ex.export_from(0).unwrap(), 3);
        // The next batch reaches its file, but the process dies before the cursor moves.
        b.close(3..5, T);
        assert_eq!(ex.write_batch(3).unwrap(), Some((5, 2)));
        drop(ex);
        assert_eq!(
            b.files()[0].1.len(),
            5,
            "the crash left the batch in the file"
        );

        let (mut ex, pos) = b.exporter(ExportFormat::Jsonl);
        assert_eq!(pos, 3, "the batch was never committed");
        assert_eq!(
            b.files()[0].1.len(),
            3,
            "rolled back to its length before the batch"
        );
        assert!(!b.root.join("export").join(PENDING).exists());
        assert_eq!(ex.export_from(pos).unwrap(), 2);
        let files = b.files();
        assert_eq!(files.len(), 1);
        let calls: Vec<String> = files[0]
            .1
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["callId"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(calls, ["call-0", "call-1", "call-2", "call-3", "call-4"]);
    }

    #[test]
    fn a_batch_that_failed_half_way_is_not_repeated_by_its_retry() {
        let b = Bench::new("retry");
        b.close(0..4, T);
        let (mut ex, _) = b.exporter(ExportFormat::Jsonl);
        // The lines reach the file, then the position cannot be written (a full disk).
        assert_eq!(ex.write_batch(0).unwrap(), Some((4, 4)));
        // The exporter's loop tries the same batch again, in the same process.
        assert_eq!(ex.export_from(0).unwrap(), 4);
        assert_eq!(b.files()[0].1.len(), 4, "each record once");
        assert_eq!(Exporter::load_position(&b.root.join("export")), 4);
    }

    #[test]
    fn a_rolled_back_new_csv_file_gets_its_header_once() {
        let b = Bench::new("csv");
        b.close(0..2, T);
        let (mut ex, _) = b.exporter(ExportFormat::Csv);
        ex.export_from(0).unwrap();
        // An unfinished batch spanning the old period's file and a new one.
        b.close(2..3, T);
        b.close(3..5, T + HOUR);
        assert_eq!(ex.write_batch(2).unwrap(), Some((5, 3)));
        drop(ex);
        let (mut ex, pos) = b.exporter(ExportFormat::Csv);
        assert_eq!(pos, 2);
        let files = b.files();
        assert_eq!(
            (files[0].1.len(), files[1].1.len()),
            (3, 0),
            "header + 2; emptied"
        );
        ex.export_from(pos).unwrap();
        let files = b.files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].1.len(), 4, "header + call-0..2");
        assert_eq!(files[1].1.len(), 3, "header + call-3..4");
        for (_, lines) in &files {
            assert_eq!(lines[0], CSV_HEADER);
            assert_eq!(lines.iter().filter(|l| *l == CSV_HEADER).count(), 1);
        }
    }

    #[test]
    fn a_committed_batch_is_never_rolled_back() {
        let b = Bench::new("committed");
        b.close(0..3, T);
        let (mut ex, _) = b.exporter(ExportFormat::Jsonl);
        ex.export_from(0).unwrap();
        drop(ex);
        // export.pending of the committed batch is still there: a restart keeps its lines.
        assert!(b.root.join("export").join(PENDING).exists());
        let (_, pos) = b.exporter(ExportFormat::Jsonl);
        assert_eq!(pos, 3);
        assert_eq!(b.files()[0].1.len(), 3);
    }

    #[test]
    fn malformed_or_foreign_pending_files_touch_nothing() {
        assert_eq!(
            parse_pending("7\ncdr-20261118T110000Z.jsonl\t120\n"),
            Some((7, vec![("cdr-20261118T110000Z.jsonl", 120)]))
        );
        for bad in [
            "",
            "x\n",
            "7\ncdr-a.jsonl\n",
            "7\ncdr-a.jsonl\tlots\n",
            "7\n../cdr-a.jsonl\t1\n",
            "7\ncdr-a/../../etc/passwd\t0\n",
            "7\nsegment.log\t0\n",
        ] {
            assert_eq!(parse_pending(bad), None, "{bad:?}");
        }
        let b = Bench::new("malformed");
        b.close(0..2, T);
        let (mut ex, _) = b.exporter(ExportFormat::Jsonl);
        ex.export_from(0).unwrap();
        drop(ex);
        let dir = b.root.join("export");
        let name = b.files()[0].0.clone();
        fs::write(dir.join(PENDING), format!("9\n{name}\tnot-a-length\n")).unwrap();
        let (_, pos) = b.exporter(ExportFormat::Jsonl);
        assert_eq!(pos, 2);
        assert_eq!(b.files()[0].1.len(), 2, "nothing truncated");
        assert!(!dir.join(PENDING).exists(), "reported and removed");
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
