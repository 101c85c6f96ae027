//! A window's report: what was compared, the counts per class, and the findings.
//!
//! # On disk: `<reconcile.dir>/reports/`
//!
//! - `report-<from>-<to>.jsonl` (times as `20240501T100000Z`), one per report window,
//!   written atomically (temp file, fsync, rename): the first line is the summary
//!   (`"type":"summary"`: the window, whether our records covered it, record counts, the
//!   counts per class and the billed totals of each side), then one line per discrepancy
//!   (`"type":"finding"`, see [`Finding`]), the largest first. Matched and not-billable
//!   calls are counted, not listed.
//! - `cursor.json`: the end of the last window reported (format of `super::store`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::matcher::reconcile;
use super::model::{Class, Counts, Finding, Ours, Params, Theirs};
use super::ReconcileError;
use crate::cdr::export::write_atomic;
use crate::cdr::rfc3339_ms;

/// One window's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Start of the window (calls that ended at or after it), RFC 3339.
    pub from: String,
    /// End of the window (exclusive), RFC 3339.
    pub to: String,
    /// Start of the window, UTC ms.
    #[serde(skip)]
    pub from_ms: u64,
    /// End of the window, UTC ms.
    #[serde(skip)]
    pub to_ms: u64,
    /// When it was made, RFC 3339.
    pub generated: String,
    /// False when our records did not cover the whole window (see `notes`): its
    /// `missingOurs` may be records of ours that are gone, not records Microsoft made up.
    pub complete: bool,
    /// What a reader should know (sources, coverage, unreadable records).
    pub notes: Vec<String>,
    /// Our records compared (the window and its edge margins).
    pub our_records: usize,
    /// Microsoft's records compared (the window and its edge margins).
    pub microsoft_records: usize,
    /// Microsoft's records left out because their times do not read.
    pub unreadable: usize,
    /// Per class, and the billed totals.
    pub counts: Counts,
    /// Every finding of the window.
    #[serde(skip)]
    pub findings: Vec<Finding>,
}

impl Report {
    /// Reconciles the window `[from_ms, to_ms)` of `ours` against `theirs` (both may hold
    /// more; see [`reconcile`]).
    pub fn build(
        (from_ms, to_ms): (u64, u64),
        ours: &[crate::cdr::CallRecord],
        theirs: &[crate::msapi::CallRecord],
        p: &Params,
        now_ms: u64,
    ) -> Report {
        let ours: Vec<Ours> = ours.iter().map(Ours::from).collect();
        let readable: Vec<Theirs> = theirs.iter().filter_map(Theirs::from_record).collect();
        let outcome = reconcile(&ours, &readable, from_ms, to_ms, p);
        Report {
            from: rfc3339_ms(from_ms),
            to: rfc3339_ms(to_ms),
            from_ms,
            to_ms,
            generated: rfc3339_ms(now_ms),
            complete: true,
            notes: Vec::new(),
            our_records: ours.len(),
            microsoft_records: readable.len(),
            unreadable: theirs.len() - readable.len(),
            counts: outcome.counts,
            findings: outcome.findings,
        }
    }

    /// Marks the report incomplete, saying why.
    pub fn incomplete(mut self, why: impl Into<String>) -> Report {
        self.complete = false;
        self.notes.push(why.into());
        self
    }

    /// The findings of `classes`, largest first ([`Finding::weight_ms`]; ties by start).
    pub fn worst(&self, classes: &[Class]) -> Vec<&Finding> {
        let mut v: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| classes.contains(&f.class))
            .collect();
        v.sort_by(|a, b| {
            b.weight_ms()
                .cmp(&a.weight_ms())
                .then(a.start_ms.cmp(&b.start_ms))
                .then(a.call_id.cmp(&b.call_id))
        });
        v
    }

    /// The discrepancies, largest first.
    pub fn discrepancies(&self) -> Vec<&Finding> {
        let classes: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|c| c.is_discrepancy())
            .collect();
        self.worst(&classes)
    }

    /// The summary line's JSON (`"type":"summary"`).
    pub fn summary_json(&self) -> serde_json::Value {
        tagged("summary", self)
    }

    /// Writes `report-<from>-<to>.jsonl` into `dir` (created when missing), atomically;
    /// returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ReconcileError> {
        std::fs::create_dir_all(dir).map_err(ReconcileError::io(dir))?;
        let path = dir.join(format!(
            "report-{}-{}.jsonl",
            compact(self.from_ms),
            compact(self.to_ms)
        ));
        let mut text = String::new();
        let lines = std::iter::once(self.summary_json()).chain(
            self.discrepancies()
                .into_iter()
                .map(|f| tagged("finding", f)),
        );
        for v in lines {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes()).map_err(ReconcileError::io(&path))?;
        Ok(path)
    }
}

/// `v` as a JSON object with a `"type": kind` field.
fn tagged(kind: &str, v: &impl Serialize) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert("type".into(), kind.into());
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(v) {
        obj.extend(fields);
    }
    serde_json::Value::Object(obj)
}

/// `20240501T100000Z`.
fn compact(ms: u64) -> String {
    let digits: String = rfc3339_ms(ms)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(15)
        .collect();
    format!("{digits}Z")
}
