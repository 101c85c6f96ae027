//! The line reader behind [`super::parse`]: splits the body into logical lines (continuations
//! joined), dispatches each by its name and keeps the account of errors, unknown names and
//! duplicates, within the caps the parent module documents.

use std::borrow::Cow;
use std::collections::HashSet;

use super::fields::{Endpoint, SetResult, GROUPS};
use super::values::{mac, params, text, unavailable};
use super::{
    FieldError, ReportKind, VqReport, MAX_BODY, MAX_ERRORS, MAX_FIELD_NAME, MAX_LINE, MAX_LINES,
};

/// The whole of [`super::parse`].
pub(super) fn read(body: &[u8]) -> VqReport {
    let mut p = Parser::default();
    let (body, over) = match body.get(..MAX_BODY) {
        Some(head) if body.len() > MAX_BODY => {
            let cut = head.iter().rposition(|&b| b == b'\n' || b == b'\r');
            (
                head.get(..cut.map_or(0, |i| i + 1)).unwrap_or_default(),
                true,
            )
        }
        _ => (body, false),
    };
    let text = crate::text_of(body);
    p.lines(text.strip_prefix('\u{feff}').unwrap_or(&text));
    if over {
        p.report.truncated = true;
        p.error(0, &["body"], "longer than MAX_BODY; the rest was not read");
    }
    if p.report.kind.is_none() {
        p.error(0, &["VQReport"], "no report type line");
    }
    p.report
}

/// Which block metrics lines go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Side {
    #[default]
    Local,
    Remote,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Local => "LocalMetrics",
            Side::Remote => "RemoteMetrics",
        }
    }
}

#[derive(Default)]
struct Parser {
    report: VqReport,
    side: Side,
    /// Fields already given a value: (block or section, group, parameter index). Hashed
    /// with foldhash: with the default SipHash, hashing these names was 40% of the time
    /// of parsing a report (`benches/quality.rs`).
    seen: HashSet<(&'static str, &'static str, usize), foldhash::fast::RandomState>,
}

impl Parser {
    /// Splits the body into lines, joins continuations and reads each logical line.
    fn lines(&mut self, text: &str) {
        // Borrowed from the body until a continuation has to be joined to it.
        let mut pending: Option<(usize, Cow<'_, str>)> = None;
        let mut rest = Some(text);
        let mut number = 0;
        while let Some(s) = rest {
            let (line, next) = match memchr::memchr2(b'\r', b'\n', s.as_bytes()) {
                Some(i) => {
                    let skip = if s.get(i..i + 2) == Some("\r\n") {
                        2
                    } else {
                        1
                    };
                    // A body that ends in a line end has no line after it.
                    let after = s.get(i + skip..).filter(|r| !r.is_empty());
                    (s.get(..i).unwrap_or_default(), after)
                }
                None => (s, None),
            };
            rest = next;
            number += 1;
            if number > MAX_LINES {
                self.report.truncated = true;
                self.error(
                    number,
                    &["body"],
                    "more than MAX_LINES lines; the rest was not read",
                );
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            if line.len() > MAX_LINE {
                self.error(number, &[head(line)], "line longer than MAX_LINE");
                continue;
            }
            match pending.as_mut() {
                Some((_, buf)) if is_continuation(line) => {
                    if buf.len() + 1 + line.trim().len() > MAX_LINE {
                        self.error(number, &[head(line)], "line longer than MAX_LINE");
                    } else {
                        let joined = buf.to_mut();
                        joined.push(' ');
                        joined.push_str(line.trim());
                    }
                }
                _ => {
                    if let Some((n, buf)) = pending.replace((number, Cow::Borrowed(line.trim()))) {
                        self.line(n, &buf);
                    }
                }
            }
        }
        if let Some((n, buf)) = pending {
            self.line(n, &buf);
        }
    }

    /// One logical line, trimmed and non-empty.
    fn line(&mut self, no: usize, line: &str) {
        let named = line.split_once(':').filter(|(k, _)| is_name(k.trim_end()));
        let (key, value, colon) = match named {
            Some((k, v)) => (k.trim_end(), v.trim(), true),
            None => {
                let (k, v) = line.split_once([' ', '\t']).unwrap_or((line, ""));
                (k, v.trim(), false)
            }
        };
        // Lower-cased on the stack: every name the match knows is short.
        let mut stack = [0u8; 32];
        let heap;
        let lower = match stack.get_mut(..key.len()) {
            Some(b) => {
                b.copy_from_slice(key.as_bytes());
                b.make_ascii_lowercase();
                std::str::from_utf8(b).unwrap_or_default()
            }
            None => {
                heap = key.to_ascii_lowercase();
                heap.as_str()
            }
        };
        match lower {
            "vqsessionreport" => self.kind(no, ReportKind::Session, value),
            "vqintervalreport" => self.kind(no, ReportKind::Interval, value),
            "vqalertreport" => self.kind(no, ReportKind::Alert, value),
            k if !colon && k.starts_with("type=") => self.type_params(no, line),
            _ if !colon => self.error(no, &[head(line)], "not a `Name: value` line"),
            "localmetrics" | "metrics" => self.block(no, Side::Local, value),
            "remotemetrics" => self.block(no, Side::Remote, value),
            "callid" => self.single(no, "CallID", value, text, |r| &mut r.call_id),
            "localid" => self.single(no, "LocalID", value, text, |r| &mut r.local_id),
            "remoteid" => self.single(no, "RemoteID", value, text, |r| &mut r.remote_id),
            "origid" => self.single(no, "OrigID", value, text, |r| &mut r.orig_id),
            "localgroup" => self.single(no, "LocalGroup", value, text, |r| &mut r.local_group),
            "remotegroup" => self.single(no, "RemoteGroup", value, text, |r| &mut r.remote_group),
            "dialogid" => self.single(no, "DialogID", value, text, |r| &mut r.dialog_id),
            "localmac" => self.single(no, "LocalMAC", value, mac, |r| &mut r.local_mac),
            "remotemac" => self.single(no, "RemoteMAC", value, mac, |r| &mut r.remote_mac),
            "localaddr" => self.endpoint(no, "LocalAddr", value, |r| &mut r.local_addr),
            "remoteaddr" => self.endpoint(no, "RemoteAddr", value, |r| &mut r.remote_addr),
            k => match GROUPS.iter().position(|g| g.eq_ignore_ascii_case(k)) {
                Some(group) => self.metrics(no, group, value),
                None => self.report.unknown = self.report.unknown.saturating_add(1),
            },
        }
    }

    fn kind(&mut self, no: usize, kind: ReportKind, rest: &str) {
        self.mark("report", "type", 0);
        self.report.kind = Some(kind);
        self.type_params(no, rest);
    }

    /// What follows the report type: `CallTerm`, or an alert's `Type=… Severity=… Dir=…`.
    fn type_params(&mut self, no: usize, rest: &str) {
        for (key, value) in params(rest) {
            if value.is_none() && key.eq_ignore_ascii_case("CallTerm") {
                self.report.call_term = true;
            } else {
                self.param(no, "report", "Alert", key, value, |r, k, v| {
                    r.alert.set(k, v)
                });
            }
        }
    }

    fn block(&mut self, no: usize, side: Side, rest: &str) {
        self.side = side;
        if !rest.is_empty() {
            self.error(no, &[side.name()], "text after a block header");
        }
    }

    /// A one-value session line.
    fn single<T>(
        &mut self,
        no: usize,
        name: &'static str,
        value: &str,
        parse: fn(&str) -> Result<T, &'static str>,
        slot: fn(&mut VqReport) -> &mut Option<T>,
    ) {
        let parsed = if unavailable(value) {
            Ok(None)
        } else {
            parse(value).map(Some)
        };
        match parsed {
            Ok(v) => {
                *slot(&mut self.report) = v;
                self.mark("session", name, 0);
            }
            Err(reason) => self.error(no, &[name], reason),
        }
    }

    fn endpoint(
        &mut self,
        no: usize,
        name: &'static str,
        value: &str,
        slot: fn(&mut VqReport) -> &mut Endpoint,
    ) {
        for (key, v) in params(value) {
            self.param(no, "session", name, key, v, |r, k, v| slot(r).set(k, v));
        }
    }

    fn metrics(&mut self, no: usize, group: usize, value: &str) {
        let (side, name) = (self.side, GROUPS.get(group).copied().unwrap_or_default());
        for (key, v) in params(value) {
            self.param(no, side.name(), name, key, v, |r, k, v| {
                match side {
                    Side::Local => &mut r.local,
                    Side::Remote => &mut r.remote,
                }
                .set(group, k, v)
            });
        }
    }

    /// One `KEY=value` of a parameter line, handed to `set` (`None`: unavailable).
    fn param(
        &mut self,
        no: usize,
        scope: &'static str,
        group: &'static str,
        key: &str,
        value: Option<&str>,
        set: impl FnOnce(&mut VqReport, &str, Option<&str>) -> SetResult,
    ) {
        // Errors name the block of a metrics parameter, not the "report" or "session" scope.
        let path = [scope, group, key];
        let field = path
            .get(usize::from(matches!(scope, "report" | "session"))..)
            .unwrap_or_default();
        let Some(value) = value else {
            return self.error(no, field, "parameter without `=`");
        };
        let value = (!unavailable(value)).then_some(value);
        match set(&mut self.report, key, value) {
            Ok(Some(index)) => self.mark(scope, group, index),
            Ok(None) => self.report.unknown = self.report.unknown.saturating_add(1),
            Err(reason) => self.error(no, field, reason),
        }
    }

    fn mark(&mut self, scope: &'static str, group: &'static str, index: usize) {
        if !self.seen.insert((scope, group, index)) {
            self.report.duplicates = self.report.duplicates.saturating_add(1);
        }
    }

    /// Counts an error, and keeps it while fewer than `MAX_ERRORS` are kept. `parts` name the
    /// field, joined with `.`, cut to `MAX_FIELD_NAME` characters, control characters made `?`.
    fn error(&mut self, line: usize, parts: &[&str], reason: &'static str) {
        self.report.error_count = self.report.error_count.saturating_add(1);
        if self.report.errors.len() >= MAX_ERRORS {
            return;
        }
        let field = parts
            .join(".")
            .chars()
            .take(MAX_FIELD_NAME)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        self.report.errors.push(FieldError {
            line,
            field,
            reason,
        });
    }
}

/// A field name: letters, digits, `-`, `_`, `.`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An indented line that does not begin with `Name:` continues the line before it.
fn is_continuation(line: &str) -> bool {
    let starts_indented = line.starts_with([' ', '\t']);
    let head = first_token(line.trim_start());
    starts_indented && !head.split_once(':').is_some_and(|(k, _)| is_name(k))
}

/// Up to the first whitespace.
fn first_token(s: &str) -> &str {
    s.split([' ', '\t']).next().unwrap_or(s)
}

/// What an unreadable line is called in its error: up to the first whitespace or `:`.
fn head(line: &str) -> &str {
    line.trim_start()
        .split([' ', '\t', ':'])
        .next()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::quality::vqreport::*;

    const SESSION: &[u8] = include_bytes!("../../../fuzz/corpus/vqreport/rfc6035-session");
    const PHONE: &[u8] = include_bytes!("../../../fuzz/corpus/vqreport/vendor-phone-session");
    const JUNK: &[u8] = include_bytes!("../../../fuzz/corpus/vqreport/vendor-binary-junk");

    #[test]
    fn binary_junk_is_refused_line_by_line() {
        let r = parse(JUNK);
        assert_eq!(r.kind, Some(ReportKind::Session));
        assert_eq!(r.call_id.as_deref(), Some("junk\0\u{fffd}\u{fffd}@x"));
        assert_eq!(r.local.delay.iaj, Some(4));
        let found: Vec<_> = r
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str(), e.reason))
            .collect();
        let expected = [
            (3, "??", "not a `Name: value` line"),
            (4, "LocalMetrics.Delay.RTD", "not an integer"),
            (5, "\u{fffd}(\u{fffd}\u{fffd}", "not a `Name: value` line"),
            (6, "LocalMetrics.QualityEst.MOSLQ", "not a number"),
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn a_report_without_a_type_line_is_an_error_but_keeps_its_fields() {
        let r = parse(b"CallID: x\r\nDelay: RTD=7\r\n");
        assert_eq!(
            (r.kind, r.call_id.as_deref(), r.round_trip_ms()),
            (None, Some("x"), Some(7))
        );
        let e = FieldError {
            line: 0,
            field: "VQReport".into(),
            reason: "no report type line",
        };
        assert_eq!(r.errors, vec![e]);
        assert_eq!(parse(b"").error_count, 1);
    }

    #[test]
    fn line_ends_and_indentation_do_not_change_the_report() {
        let lf = String::from_utf8(SESSION.to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        assert_eq!(parse(lf.as_bytes()), parse(SESSION));
        assert_eq!(parse(lf.replace('\n', "\r").as_bytes()), parse(SESSION));
        // Every line indented (as some vendors' manuals print them): `Name:` lines stay lines.
        let phone = String::from_utf8(PHONE.to_vec()).unwrap();
        let indented: String = phone.lines().map(|l| format!(" {l}\n\n")).collect();
        assert_eq!(parse(indented.as_bytes()), parse(PHONE));
        let bom = [b"\xef\xbb\xbf".as_slice(), SESSION].concat();
        assert_eq!(parse(&bom), parse(SESSION));
    }

    #[test]
    fn caps_bound_the_work_and_the_errors() {
        let mut big = SESSION.to_vec();
        big.resize(MAX_BODY + 100, b'x');
        let r = parse(&big);
        assert!(r.truncated);
        assert_eq!(
            (r.call_id.as_deref(), r.mos_lq()),
            (Some("6dg37f1890463"), Some(4.2))
        );
        assert_eq!(
            r.errors.last().map(|e| (e.line, e.reason)),
            Some((0, "longer than MAX_BODY; the rest was not read"))
        );

        let many = format!("VQSessionReport\n{}Delay:RTD=9\n", "\n".repeat(MAX_LINES));
        let r = parse(many.as_bytes());
        assert!(r.truncated && r.local.delay.rtd.is_none());
        // Exactly MAX_LINES lines, the last with its line end: all read.
        let full = format!(
            "VQSessionReport\n{}Delay:RTD=9\n",
            "\n".repeat(MAX_LINES - 2)
        );
        assert_eq!(parse(full.as_bytes()).round_trip_ms(), Some(9));

        let long = format!(
            "VQSessionReport\nCallID: {}\nDelay:RTD=9\n",
            "a".repeat(MAX_LINE)
        );
        let r = parse(long.as_bytes());
        assert_eq!(
            (r.call_id.as_deref(), r.round_trip_ms(), r.errors[0].reason),
            (None, Some(9), "line longer than MAX_LINE")
        );
        assert_eq!(r.errors[0].field, "CallID");
        let r = parse("x".repeat(200).as_bytes());
        assert_eq!(r.errors[0].field, "x".repeat(MAX_FIELD_NAME));

        let bad = format!("VQSessionReport\n{}", "Delay:RTD=x\n".repeat(100));
        let r = parse(bad.as_bytes());
        assert_eq!((r.errors.len(), r.error_count), (MAX_ERRORS, 100));
    }
}
