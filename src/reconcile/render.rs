//! The three outputs of `ocedge reconcile`: a table for people, JSON and CSV for programs.
//! Pure formatting over a [`Report`]; the caller picks the findings to show.

use std::io::{self, Write};

use super::model::{Class, Finding};
use super::report::Report;
use crate::cdr::rfc3339_ms;

/// CSV header of [`csv`], in [`Finding`] order.
pub const CSV_HEADER: &str = "class,matchedBy,callId,microsoftCallId,ourId,microsoftId,\
callerNumber,calleeNumber,start,end,ourDurationMs,microsoftDurationMs,diffMs";

/// The table: window, sources, totals per class, billed totals, then the first `top` of
/// `findings` (the caller sorts them, largest first) and how many more there are.
pub fn table(r: &Report, findings: &[&Finding], top: usize, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "reconciliation {} .. {}", r.from, r.to)?;
    for note in &r.notes {
        writeln!(out, "  {note}")?;
    }
    if !r.complete {
        writeln!(
            out,
            "  INCOMPLETE: our records do not cover the whole window"
        )?;
    }
    writeln!(
        out,
        "records: ours {}, Microsoft's {}{}",
        r.our_records,
        r.microsoft_records,
        match r.unreadable {
            0 => String::new(),
            n => format!(" ({n} of Microsoft's unreadable, left out)"),
        }
    )?;
    writeln!(out)?;
    writeln!(out, "{:<18} {:>10}", "class", "calls")?;
    for c in Class::ALL {
        writeln!(out, "{:<18} {:>10}", c.as_str(), r.counts.get(c))?;
    }
    writeln!(
        out,
        "{:<18} {:>10}",
        "discrepancies",
        r.counts.discrepancies()
    )?;
    let (ours, theirs) = (r.counts.our_billed_ms, r.counts.microsoft_billed_ms);
    writeln!(
        out,
        "billed: ours {} s, Microsoft's {} s, difference {:+} s",
        seconds(ours),
        seconds(theirs),
        (i128::from(theirs) - i128::from(ours)) as f64 / 1000.0
    )?;
    if findings.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "worst first (duration difference, or billed duration when missing):"
    )?;
    writeln!(
        out,
        "{:<17} {:>10} {:>10} {:>10}  {:<24} {:<16} {:<16} call-id",
        "class", "diff ms", "ours ms", "MS ms", "start", "caller", "callee"
    )?;
    for f in findings.iter().take(top) {
        let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        writeln!(
            out,
            "{:<17} {:>10} {:>10} {:>10}  {:<24} {:<16} {:<16} {}",
            f.class.as_str(),
            f.diff_ms.map_or("-".to_owned(), |d| format!("{d:+}")),
            opt(f.our_duration_ms),
            opt(f.microsoft_duration_ms),
            rfc3339_ms(f.start_ms),
            f.caller_number,
            f.callee_number,
            f.call_id
        )?;
    }
    if findings.len() > top {
        writeln!(
            out,
            "... and {} more (--top, or --format json|csv)",
            findings.len() - top
        )?;
    }
    Ok(())
}

/// One JSON document: the summary with `"findings"`.
pub fn json(r: &Report, findings: &[&Finding], out: &mut dyn Write) -> io::Result<()> {
    let mut v = r.summary_json();
    if let serde_json::Value::Object(obj) = &mut v {
        obj.remove("type");
        let list = serde_json::to_value(findings).unwrap_or_default();
        obj.insert("findings".into(), list);
    }
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)
}

/// CSV: [`CSV_HEADER`], then one line per finding.
pub fn csv(findings: &[&Finding], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for f in findings {
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let by = match f.matched_by {
            Some(super::MatchedBy::CallId) => "callId",
            Some(super::MatchedBy::Numbers) => "numbers",
            None => "",
        };
        let fields = [
            f.class.as_str().to_owned(),
            by.to_owned(),
            f.call_id.clone(),
            f.microsoft_call_id.clone().unwrap_or_default(),
            f.our_id.clone().unwrap_or_default(),
            f.microsoft_id.clone().unwrap_or_default(),
            f.caller_number.clone(),
            f.callee_number.clone(),
            rfc3339_ms(f.start_ms),
            rfc3339_ms(f.end_ms),
            opt(f.our_duration_ms),
            opt(f.microsoft_duration_ms),
            f.diff_ms.map_or(String::new(), |d| d.to_string()),
        ];
        let line: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

/// Milliseconds as seconds with three decimals.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
