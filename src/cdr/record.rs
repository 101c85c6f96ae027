//! The call record: what the gateway knows about one call (or one forked dialog of it) once
//! it has ended, and the journal entry of a call that is up.
//!
//! Times are milliseconds since the Unix epoch (UTC), mapped once from the monotonic clock
//! ([`crate::calls::WallClock`]); they become RFC 3339 strings with milliseconds only at
//! the edges (upload, export). The record's id is derived from the call's identity (see
//! [`record_id`]) so a replay or a recovery after a crash gives the same id, and the API
//! never counts one call twice.

use serde::{Deserialize, Serialize};

use crate::config::Side;
use crate::msapi::DurationRecord;

/// Which way the call goes, in the Operator Connect sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// PSTN → Teams: the INVITE came from the carrier's side.
    Inbound,
    /// Teams → PSTN: the INVITE came from Microsoft's side.
    Outbound,
}

impl Direction {
    /// The direction of a call whose INVITE arrived on `side`.
    pub fn from_side(side: Side) -> Direction {
        match side {
            Side::Carrier => Direction::Inbound,
            Side::Microsoft => Direction::Outbound,
        }
    }

    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// How the call ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// A 2xx answered it.
    Answered,
    /// A final 3xx–6xx (or a timeout) ended it before an answer.
    Failed,
    /// The caller cancelled it before an answer.
    Cancelled,
}

impl Disposition {
    /// `answered`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Failed => "failed",
            Disposition::Cancelled => "cancelled",
        }
    }
}

/// Why the call (or the attempt) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller sent BYE.
    CallerBye,
    /// The callee sent BYE.
    CalleeBye,
    /// An RFC 4028 session timer expired without a refresh.
    SessionTimer,
    /// The configured maximum call duration was reached.
    MaxDuration,
    /// The 2xx was never acknowledged (no ACK within 64·T1).
    NoAck,
    /// The call was up when the gateway stopped, and nothing closed it after the restart.
    Recovered,
    /// A final non-2xx response (see the status).
    Rejected,
    /// CANCEL before the answer.
    Cancelled,
    /// No final response before the transaction timed out (408).
    Timeout,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 9] = [
        EndReason::CallerBye,
        EndReason::CalleeBye,
        EndReason::SessionTimer,
        EndReason::MaxDuration,
        EndReason::NoAck,
        EndReason::Recovered,
        EndReason::Rejected,
        EndReason::Cancelled,
        EndReason::Timeout,
    ];

    /// The snake_case name used in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerBye => "caller_bye",
            EndReason::CalleeBye => "callee_bye",
            EndReason::SessionTimer => "session_timer",
            EndReason::MaxDuration => "max_duration",
            EndReason::NoAck => "no_ack",
            EndReason::Recovered => "recovered",
            EndReason::Rejected => "rejected",
            EndReason::Cancelled => "cancelled",
            EndReason::Timeout => "timeout",
        }
    }
}

/// Milliseconds since the Unix epoch, UTC.
pub type UtcMs = u64;

/// A finished call (or one forked dialog of it). The spool's payload for finished records,
/// and what the uploader and the exporters read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallRecord {
    /// Deterministic id ([`record_id`]).
    pub id: String,
    /// SIP Call-ID.
    pub call_id: String,
    /// Inbound (PSTN → Teams) or outbound.
    pub direction: Direction,
    /// Teams tenant of the Teams-side number, empty when unknown.
    pub tenant_id: String,
    /// Calling number, E.164, empty when not a number.
    pub caller_number: String,
    /// Called number, E.164, empty when not a number.
    pub callee_number: String,
    /// The Teams user's SIP URI (the assignment's), empty when unknown.
    pub sip_uri: String,
    /// When the INVITE arrived.
    pub start_ms: UtcMs,
    /// When the 2xx passed (answered calls only).
    pub answer_ms: Option<UtcMs>,
    /// When the call ended.
    pub end_ms: UtcMs,
    /// Billable duration, answer to end; 0 when not answered.
    pub duration_ms: u64,
    /// Answered, failed or cancelled.
    pub disposition: Disposition,
    /// The final SIP status of the INVITE (the 2xx for answered calls).
    pub final_status: u16,
    /// Why it ended.
    pub end_reason: EndReason,
    /// The destination the INVITE was last forwarded to (an SBC or Microsoft target name),
    /// empty when it was answered by the gateway itself.
    pub sbc: String,
    /// The side the INVITE came from.
    pub side: SideName,
}

/// A [`Side`] as it is serialised in records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    /// Microsoft's SIP proxies.
    Microsoft,
    /// The carrier's SBCs.
    Carrier,
}

impl SideName {
    /// `microsoft` or `carrier`.
    pub fn as_str(self) -> &'static str {
        match self {
            SideName::Microsoft => "microsoft",
            SideName::Carrier => "carrier",
        }
    }
}

impl From<Side> for SideName {
    fn from(s: Side) -> SideName {
        match s {
            Side::Microsoft => SideName::Microsoft,
            Side::Carrier => SideName::Carrier,
        }
    }
}

impl From<SideName> for Side {
    fn from(s: SideName) -> Side {
        match s {
            SideName::Microsoft => Side::Microsoft,
            SideName::Carrier => Side::Carrier,
        }
    }
}

/// The journal entry of an answered call that is still up: everything the final record
/// needs but the end. A restart rebuilds the live call from it (see the spool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenCall {
    /// The record as it would be if the call ended at the answer.
    pub record: CallRecord,
    /// The INVITE's From tag (tells a caller's BYE from a callee's).
    pub from_tag: String,
    /// The dialog's To tag.
    pub to_tag: String,
    /// Negotiated session interval (RFC 4028) in seconds, if any.
    pub session_expires_s: Option<u32>,
}

/// The deterministic record id: the first 16 bytes of SHA-256 over the length-prefixed
/// Call-ID, From tag, To tag (empty when the call never got one) and the INVITE's CSeq
/// number, in lowercase hex (32 characters). A replay of the same messages, or the recovery
/// of a journaled call, gives the same id; each fork of a call (its own To tag) and each new
/// INVITE of a retried call (a new CSeq, e.g. after 407) gives its own.
pub fn record_id(call_id: &[u8], from_tag: &[u8], to_tag: &[u8], cseq: u32) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [call_id, from_tag, to_tag] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&cseq.to_be_bytes());
    let digest = ctx.finish();
    let mut s = String::with_capacity(32);
    for b in &digest.as_ref()[..16] {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The last millisecond RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const RFC3339_MAX_MS: UtcMs = 253_402_300_799_999;

/// RFC 3339 UTC with milliseconds: `2026-11-26T22:05:00.123Z`. RFC 3339 years have four
/// digits, so a time past the year 9999 (only a damaged clock or record has one) is written
/// as the last millisecond of 9999.
pub fn rfc3339_ms(ms: UtcMs) -> String {
    let ms = ms.min(RFC3339_MAX_MS);
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let mut put = |mut v: u64, width: usize, after: char| {
        let mut digits = [b'0'; 4];
        for slot in digits.iter_mut().take(width).rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        digits
            .iter()
            .take(width)
            .for_each(|&d| out.push(char::from(d)));
        out.push(after);
    };
    put(year, 4, '-');
    put(month, 2, '-');
    put(day, 2, 'T');
    put(day_secs / 3600, 2, ':');
    put(day_secs / 60 % 60, 2, ':');
    put(day_secs % 60, 2, '.');
    put(milli, 3, 'Z');
    out
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl CallRecord {
    /// The record as the API's call-durations upload takes it.
    pub fn to_duration(&self) -> DurationRecord {
        self.clone().into_duration()
    }

    /// [`to_duration`](Self::to_duration), taking the record's strings instead of copying
    /// them (the uploader's way: it decoded the record for this).
    pub fn into_duration(self) -> DurationRecord {
        DurationRecord {
            id: self.id,
            call_id: self.call_id,
            direction: self.direction.as_str().into(),
            tenant_id: self.tenant_id,
            caller_number: self.caller_number,
            callee_number: self.callee_number,
            start_date_time: rfc3339_ms(self.start_ms),
            answer_date_time: self.answer_ms.map(rfc3339_ms),
            end_date_time: rfc3339_ms(self.end_ms),
            duration_ms: self.duration_ms,
            disposition: self.disposition.as_str().into(),
            final_sip_code: self.final_status,
        }
    }

    /// The spool payload (JSON; see `docs/spool-format.md`), as serde would write it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        super::json::call_record(&mut out, self);
        out
    }

    /// Reads a spool payload: the form [`encode`](Self::encode) writes directly, any other
    /// through serde (the two read the same payload alike).
    pub fn decode(bytes: &[u8]) -> Result<CallRecord, serde_json::Error> {
        match super::json::read_call_record(bytes) {
            Some(r) => Ok(r),
            None => serde_json::from_slice(bytes),
        }
    }
}

impl OpenCall {
    /// The spool payload (JSON), as serde would write it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(448);
        super::json::open_call(&mut out, self);
        out
    }

    /// Reads a spool payload.
    pub fn decode(bytes: &[u8]) -> Result<OpenCall, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    pub(crate) fn sample() -> CallRecord {
        CallRecord {
            id: record_id(b"a84b4c76e66710", b"1928301774", b"314159", 1),
            call_id: "a84b4c76e66710".into(),
            direction: Direction::Inbound,
            tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
            caller_number: "+14255550100".into(),
            callee_number: "+14255550199".into(),
            sip_uri: "sip:alice@contoso.com".into(),
            start_ms: 1_795_000_000_000,
            answer_ms: Some(1_795_000_002_500),
            end_ms: 1_795_000_062_750,
            duration_ms: 60_250,
            disposition: Disposition::Answered,
            final_status: 200,
            end_reason: EndReason::CallerBye,
            sbc: "sbc1".into(),
            side: SideName::Carrier,
        }
    }

    #[test]
    fn ids_are_deterministic_and_tell_forks_and_retries_apart() {
        let a = record_id(b"c1", b"f", b"t1", 1);
        assert_eq!(a, record_id(b"c1", b"f", b"t1", 1));
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, record_id(b"c1", b"f", b"t2", 1));
        assert_ne!(a, record_id(b"c1", b"f", b"t1", 2));
        // Length prefixes: moving a byte between fields changes the id.
        assert_ne!(
            record_id(b"ab", b"c", b"", 1),
            record_id(b"a", b"bc", b"", 1)
        );
        // Pinned: the id is part of the durable format and of the API contract.
        // (python3: sha256 of the big-endian u64 length + bytes of each, then u32 CSeq.)
        assert_eq!(
            record_id(b"a84b4c76e66710", b"1928301774", b"314159", 1),
            "3974685567d6d612664d9c721aa4b40d"
        );
    }

    #[test]
    fn records_round_trip_and_convert_for_upload() {
        let r = sample();
        assert_eq!(CallRecord::decode(&r.encode()).unwrap(), r);
        let d = r.to_duration();
        assert_eq!(d.direction, "inbound");
        assert_eq!(d.disposition, "answered");
        assert_eq!(d.duration_ms, 60_250);
        assert_eq!(d.start_date_time, rfc3339_ms(1_795_000_000_000));
        assert!(d.end_date_time.ends_with(".750Z"), "{}", d.end_date_time);
        assert!(d.answer_date_time.unwrap().ends_with(".500Z"));
        let open = OpenCall {
            record: r,
            from_tag: "1928301774".into(),
            to_tag: "314159".into(),
            session_expires_s: Some(1800),
        };
        assert_eq!(OpenCall::decode(&open.encode()).unwrap(), open);
    }

    proptest::proptest! {
        #[test]
        fn times_are_written_as_humantime_writes_them(ms in 0..=RFC3339_MAX_MS) {
            let theirs =
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
            proptest::prop_assert_eq!(rfc3339_ms(ms), theirs.to_string());
        }
    }

    #[test]
    fn leap_days_and_year_ends_are_written_right() {
        for (ms, text) in [
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (1_798_761_599_999, "2026-12-31T23:59:59.999Z"),
            (1_798_761_600_000, "2027-01-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339_ms(ms), text);
            assert_eq!(
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string(),
                text
            );
        }
    }

    #[test]
    fn times_past_the_year_9999_are_written_as_its_last_millisecond() {
        assert_eq!(rfc3339_ms(RFC3339_MAX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn unknown_fields_in_a_payload_are_refused() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["surprise"] = 1.into();
        assert!(CallRecord::decode(v.to_string().as_bytes()).is_err());
    }
}
