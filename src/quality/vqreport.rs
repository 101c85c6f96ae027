//! RFC 6035 voice-quality reports: the `application/vq-rtcpxr` body that SBCs and phones send
//! in a SIP PUBLISH with `Event: vq-rtcpxr`, read tolerantly into a [`VqReport`]. Pure: bytes
//! in, report out; no I/O, no clock.
//!
//! # Format
//!
//! A report is lines of `Name: value` (RFC 6035 §4.6.1). The first names its type:
//! `VQSessionReport` (sent at the end of a session; `: CallTerm` when the call itself ended),
//! `VQIntervalReport` (sent periodically) or `VQAlertReport: Type=… Severity=… Dir=…` (a metric
//! crossed a threshold). Then come the session lines (`CallID`, `LocalID`, `RemoteID`, `OrigID`,
//! `LocalGroup`, `RemoteGroup`, `LocalAddr: IP=… PORT=… SSRC=…`, `RemoteAddr`, `LocalMAC`,
//! `RemoteMAC`, `DialogID`) and two metrics blocks: `LocalMetrics:`, what the reporter received,
//! and `RemoteMetrics:`, what its peer reported back in RTCP XR. Each block is parameter lines,
//! `Delay:RTD=200 ESD=140 …`; the types and units are those of [`Metrics`].
//!
//! # Tolerance
//!
//! [`parse`] never fails as a whole: it keeps every value that parses and counts what does not.
//! A value that is refused (not a number, negative, out of range, NaN, a bad address) becomes a
//! [`FieldError`] and leaves the field as it was. On top of the RFC's grammar it accepts:
//!
//! - CRLF, LF or CR line ends; blank lines; a UTF-8 byte order mark; invalid UTF-8 (replaced,
//!   so it fails as a number and survives in text);
//! - names in any case (`timestamps:`, `TimeStamps:`), spaces around `:` and `=`, commas between
//!   parameters, quoted values;
//! - continuation lines: a line that starts with whitespace and does not itself begin with
//!   `Name:` continues the line before, as in the RFC's own examples;
//! - `unavailable`, `-` or an empty value: `None`, not an error;
//! - metrics lines before any block header (they are the local block's) and `Metrics:` (an
//!   older spelling of `LocalMetrics:`); the alert's `Type=…` on the line after `VQAlertReport`;
//! - names it does not know (`x-UserAgent:`, `FromID:`, `RLQEstAlg=`): counted in
//!   [`VqReport::unknown`], not errors;
//! - a field given twice: the last value wins, counted in [`VqReport::duplicates`].
//!
//! A line it cannot read at all (no `Name:`, a malformed name) is an error, as is a report
//! with no type line.
//!
//! # Limits
//!
//! At most [`MAX_BODY`] bytes are read (the rest, from the last line end within the cap, is
//! dropped and flagged), at most [`MAX_LINES`] lines, each at most [`MAX_LINE`] bytes once its
//! continuations are joined (a longer line is skipped as an error). At most [`MAX_ERRORS`]
//! errors are kept, with their field name cut to [`MAX_FIELD_NAME`] characters; all are counted.
//! A report is a few dozen lines of about 60 bytes, so the caps leave a wide margin.

mod fields;
mod parser;
mod time;
mod values;

pub use fields::{
    Alert, BurstGapLoss, Delay, Direction, Endpoint, JitterBuffer, Metrics, PacketLoss, QualityEst,
    SessionDesc, Severity, Signal, Timestamps,
};

use crate::cdr::UtcMs;

/// Largest body read, bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// Most lines read, blank ones included.
pub const MAX_LINES: usize = 512;
/// Longest line, bytes, continuations included.
pub const MAX_LINE: usize = 1024;
/// Most errors kept in [`VqReport::errors`]; [`VqReport::error_count`] counts them all.
pub const MAX_ERRORS: usize = 32;
/// Longest [`FieldError::field`], characters.
pub const MAX_FIELD_NAME: usize = 48;

/// The kind of report, from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// `VQSessionReport`: the whole session.
    Session,
    /// `VQIntervalReport`: the interval since the last report.
    Interval,
    /// `VQAlertReport`: a metric crossed a threshold (see [`VqReport::alert`]).
    Alert,
}

/// A value or line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Line number in the body, from 1; 0 for the body as a whole.
    pub line: usize,
    /// What it was: `LocalMetrics.Delay.RTD`, `LocalAddr.IP`, `CallID` or the start of an
    /// unreadable line (control characters replaced by `?`).
    pub field: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// A parsed report: every field that was present and readable, and the account of the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VqReport {
    /// The report type; `None` when no type line was found.
    pub kind: Option<ReportKind>,
    /// `CallTerm` was given: the call has ended.
    pub call_term: bool,
    /// `Type`, `Severity`, `Dir` of an alert report.
    pub alert: Alert,
    /// `CallID`: the SIP Call-ID of the reported call.
    pub call_id: Option<String>,
    /// `LocalID`: the reporter (a SIP URI or name-addr).
    pub local_id: Option<String>,
    /// `RemoteID`: its peer.
    pub remote_id: Option<String>,
    /// `OrigID`: who originated the call.
    pub orig_id: Option<String>,
    /// `LocalGroup`: the reporter's group, as configured on it.
    pub local_group: Option<String>,
    /// `RemoteGroup`.
    pub remote_group: Option<String>,
    /// `LocalAddr`.
    pub local_addr: Endpoint,
    /// `RemoteAddr`.
    pub remote_addr: Endpoint,
    /// `LocalMAC`.
    pub local_mac: Option<[u8; 6]>,
    /// `RemoteMAC`.
    pub remote_mac: Option<[u8; 6]>,
    /// `DialogID`: Call-ID and tags of the dialog, as sent.
    pub dialog_id: Option<String>,
    /// `LocalMetrics`: what the reporter received.
    pub local: Metrics,
    /// `RemoteMetrics`: what its peer received.
    pub remote: Metrics,
    /// The first [`MAX_ERRORS`] errors, in the order found (line 0, the body as a whole, last).
    pub errors: Vec<FieldError>,
    /// Every error, kept or not.
    pub error_count: u32,
    /// Lines and parameters with names this parser does not know.
    pub unknown: u32,
    /// Values that replaced an earlier value of the same field.
    pub duplicates: u32,
    /// The body went past [`MAX_BODY`] or [`MAX_LINES`] and its tail was not read.
    pub truncated: bool,
}

/// The figures the quality sinks take from one report. Each prefers the local block and falls
/// back to the remote one (see [`VqReport::mos_lq`] and its siblings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualitySample {
    /// The SIP Call-ID the report is about.
    pub call_id: Option<String>,
    /// Session, interval or alert.
    pub kind: Option<ReportKind>,
    /// Jitter, ms: interarrival jitter (`IAJ`), else mean absolute jitter (`MAJ`).
    pub jitter_ms: Option<u32>,
    /// Network packet loss (`NLR`), percent 0–100; jitter buffer discards are not included.
    pub loss_percent: Option<f32>,
    /// Round-trip delay (`RTD`), ms.
    pub round_trip_ms: Option<u32>,
    /// Listening-quality MOS, 1.0–5.0.
    pub mos_lq: Option<f32>,
    /// Conversational-quality MOS, 1.0–5.0.
    pub mos_cq: Option<f32>,
    /// Start of the reported period, ms since the Unix epoch, UTC.
    pub start_ms: Option<UtcMs>,
    /// End of the reported period, ms since the Unix epoch, UTC.
    pub stop_ms: Option<UtcMs>,
}

impl VqReport {
    /// Listening-quality MOS (`MOSLQ`), 1.0–5.0.
    pub fn mos_lq(&self) -> Option<f32> {
        self.pick(|m| m.quality_est.moslq)
    }

    /// Conversational-quality MOS (`MOSCQ`), 1.0–5.0.
    pub fn mos_cq(&self) -> Option<f32> {
        self.pick(|m| m.quality_est.moscq)
    }

    /// Jitter, ms: `IAJ`, else `MAJ`.
    pub fn jitter_ms(&self) -> Option<u32> {
        self.pick(|m| m.delay.iaj.or(m.delay.maj))
    }

    /// Network packet loss (`NLR`), percent.
    pub fn loss_percent(&self) -> Option<f32> {
        self.pick(|m| m.packet_loss.nlr)
    }

    /// Round-trip delay (`RTD`), ms.
    pub fn round_trip_ms(&self) -> Option<u32> {
        self.pick(|m| m.delay.rtd)
    }

    /// `START`, ms since the Unix epoch, UTC.
    pub fn start_ms(&self) -> Option<UtcMs> {
        self.pick(|m| m.timestamps.start_ms)
    }

    /// `STOP`, ms since the Unix epoch, UTC.
    pub fn stop_ms(&self) -> Option<UtcMs> {
        self.pick(|m| m.timestamps.stop_ms)
    }

    /// The figures the sinks need, with the units [`QualitySample`] documents.
    pub fn summary(&self) -> QualitySample {
        QualitySample {
            call_id: self.call_id.clone(),
            kind: self.kind,
            jitter_ms: self.jitter_ms(),
            loss_percent: self.loss_percent(),
            round_trip_ms: self.round_trip_ms(),
            mos_lq: self.mos_lq(),
            mos_cq: self.mos_cq(),
            start_ms: self.start_ms(),
            stop_ms: self.stop_ms(),
        }
    }

    /// The local block's value if it has one, else the remote block's.
    fn pick<T>(&self, f: impl Fn(&Metrics) -> Option<T>) -> Option<T> {
        f(&self.local).or_else(|| f(&self.remote))
    }
}

/// Reads a report body. Never fails and never panics: see the module doc for what it
/// tolerates, what it counts and its limits.
pub fn parse(body: &[u8]) -> VqReport {
    parser::read(body)
}

#[cfg(test)]
#[path = "vqreport_tests.rs"]
mod tests;
