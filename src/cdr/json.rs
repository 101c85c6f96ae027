//! The JSON the call path writes once per call: the spool payloads of an answered call and
//! of a finished one ([`CallRecord::encode`], [`OpenCall::encode`]) and the body of a
//! call-durations upload. The output is byte for byte what `serde_json` writes for the same
//! value (property tests below hold the two together), so the spool's documented format and
//! the API contract do not depend on which writer wrote them.
//!
//! Why not serde: with the uploader's reading of the records back, these encodings cost
//! about 7% of the gateway's instructions per call (`bench/profile.sh callgrind`).
//! `serde_json` escapes strings one byte at a time through a table; here a string with
//! nothing to escape (every Call-ID, number, tag and id a gateway sees in practice) is
//! checked eight bytes at a time and copied whole, and the one that has something to
//! escape is handed to `serde_json` itself. [`read_call_record`] is the reading side.

use super::record::{CallRecord, OpenCall};
use crate::msapi::DurationRecord;

/// One JSON object being written into `out`: `{` on creation, `}` on [`Obj::end`].
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Writes `"key":` (keys are plain ASCII names, never escaped) and gives the writer
    /// back, for a value written by someone else.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        string(self.key(key), value);
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        let out = self.key(key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// `null` for `None`, as serde writes an `Option` without `skip_serializing_if`.
    pub(crate) fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(v) => self.u64(key, v),
            None => self.key(key).extend_from_slice(b"null"),
        }
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// `value` as a JSON string, escaped as `serde_json` escapes it.
pub(crate) fn string(out: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        // Rare: let serde_json escape it, so that the two writers cannot disagree.
        let _ = serde_json::to_writer(out, value);
        return;
    }
    out.reserve(value.len() + 2);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

/// True when `b` holds a byte JSON escapes: a control character, `"` or `\\`. Eight bytes
/// at a time (the classic "has a byte less than n / equal to c" word tests, which never
/// miss one; a false alarm would only send the string to serde).
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_ne_bytes(a);
        if below(x, 0x20) | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// The spool payload of a finished call (the serde form of [`CallRecord`]).
pub(crate) fn call_record(out: &mut Vec<u8>, r: &CallRecord) {
    let mut o = Obj::new(out);
    o.str("id", &r.id);
    o.str("callId", &r.call_id);
    o.str("direction", r.direction.as_str());
    o.str("tenantId", &r.tenant_id);
    o.str("callerNumber", &r.caller_number);
    o.str("calleeNumber", &r.callee_number);
    o.str("sipUri", &r.sip_uri);
    o.u64("startMs", r.start_ms);
    o.opt_u64("answerMs", r.answer_ms);
    o.u64("endMs", r.end_ms);
    o.u64("durationMs", r.duration_ms);
    o.str("disposition", r.disposition.as_str());
    o.u64("finalStatus", u64::from(r.final_status));
    o.str("endReason", r.end_reason.as_str());
    o.str("sbc", &r.sbc);
    o.str("side", r.side.as_str());
    o.end();
}

/// The spool payload of an answered call that is up (the serde form of [`OpenCall`]).
pub(crate) fn open_call(out: &mut Vec<u8>, c: &OpenCall) {
    let mut o = Obj::new(out);
    call_record(o.key("record"), &c.record);
    o.str("fromTag", &c.from_tag);
    o.str("toTag", &c.to_tag);
    o.opt_u64("sessionExpiresS", c.session_expires_s.map(u64::from));
    o.end();
}

/// The upload body `{"value":[…]}` (the serde form of [`crate::msapi::DurationBatch`]).
pub(crate) fn duration_batch(records: &[DurationRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + records.len() * 400);
    let mut o = Obj::new(&mut out);
    let list = o.key("value");
    list.push(b'[');
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            list.push(b',');
        }
        duration_record(list, r);
    }
    list.push(b']');
    o.end();
    out
}

fn duration_record(out: &mut Vec<u8>, r: &DurationRecord) {
    let mut o = Obj::new(out);
    o.str("id", &r.id);
    o.str("callId", &r.call_id);
    o.str("direction", &r.direction);
    o.str("tenantId", &r.tenant_id);
    o.str("callerNumber", &r.caller_number);
    o.str("calleeNumber", &r.callee_number);
    o.str("startDateTime", &r.start_date_time);
    if let Some(answer) = &r.answer_date_time {
        o.str("answerDateTime", answer);
    }
    o.str("endDateTime", &r.end_date_time);
    o.u64("durationMs", r.duration_ms);
    o.str("disposition", &r.disposition);
    o.u64("finalSipCode", u64::from(r.final_sip_code));
    o.end();
}

/// Reads a finished call's spool payload in the form [`call_record`] writes (which is
/// serde's: the same fields in the same order, no spaces, strings without escapes).
/// `None` for anything else, which the caller hands to `serde_json`: this never accepts a
/// payload serde would refuse, nor reads one differently (property tests below).
pub(crate) fn read_call_record(b: &[u8]) -> Option<CallRecord> {
    use super::record::{Direction, Disposition, EndReason, SideName};
    let mut r = Reader { b, i: 0 };
    r.lit(b"{")?;
    let id = r.str_field("id")?;
    let call_id = r.str_field("callId")?;
    let direction = named(
        [Direction::Inbound, Direction::Outbound],
        r.str_field("direction")?,
        Direction::as_str,
    )?;
    let tenant_id = r.str_field("tenantId")?;
    let caller_number = r.str_field("callerNumber")?;
    let callee_number = r.str_field("calleeNumber")?;
    let sip_uri = r.str_field("sipUri")?;
    let start_ms = r.u64_field("startMs")?;
    r.key("answerMs")?;
    let answer_ms = if r.b.get(r.i..)?.starts_with(b"null") {
        r.i += 4;
        None
    } else {
        Some(r.u64()?)
    };
    let end_ms = r.u64_field("endMs")?;
    let duration_ms = r.u64_field("durationMs")?;
    let disposition = named(
        [
            Disposition::Answered,
            Disposition::Failed,
            Disposition::Cancelled,
        ],
        r.str_field("disposition")?,
        Disposition::as_str,
    )?;
    let final_status = u16::try_from(r.u64_field("finalStatus")?).ok()?;
    let end_reason = named(EndReason::ALL, r.str_field("endReason")?, EndReason::as_str)?;
    let sbc = r.str_field("sbc")?;
    let side = named(
        [SideName::Microsoft, SideName::Carrier],
        r.str_field("side")?,
        SideName::as_str,
    )?;
    r.lit(b"}")?;
    if r.i != b.len() {
        return None;
    }
    Some(CallRecord {
        id: id.into(),
        call_id: call_id.into(),
        direction,
        tenant_id: tenant_id.into(),
        caller_number: caller_number.into(),
        callee_number: callee_number.into(),
        sip_uri: sip_uri.into(),
        start_ms,
        answer_ms,
        end_ms,
        duration_ms,
        disposition,
        final_status,
        end_reason,
        sbc: sbc.into(),
        side,
    })
}

/// The value of `all` whose name (`as_str`, the writer's) is `name`.
fn named<T: Copy, const N: usize>(
    all: [T; N],
    name: &str,
    as_str: fn(T) -> &'static str,
) -> Option<T> {
    all.into_iter().find(|&v| as_str(v) == name)
}

/// The cursor of [`read_call_record`]: every method is `None` where the canonical form
/// does not continue.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let end = self.i.checked_add(s.len())?;
        (self.b.get(self.i..end)? == s).then(|| self.i = end)
    }

    /// `"name":`, after a comma unless it is the first field.
    fn key(&mut self, name: &str) -> Option<()> {
        if self.i > 1 {
            self.lit(b",")?;
        }
        self.lit(b"\"")?;
        self.lit(name.as_bytes())?;
        self.lit(b"\":")
    }

    fn str_field(&mut self, name: &str) -> Option<&'a str> {
        self.key(name)?;
        self.lit(b"\"")?;
        let rest = self.b.get(self.i..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        let raw = rest.get(..len)?;
        if rest.get(len) != Some(&b'"') || raw.iter().any(|&c| c < 0x20) {
            return None;
        }
        self.i += len + 1;
        std::str::from_utf8(raw).ok()
    }

    fn u64_field(&mut self, name: &str) -> Option<u64> {
        self.key(name)?;
        self.u64()
    }

    /// Digits without a leading zero (but `0`), within `u64`.
    fn u64(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        let digits = rest.get(..len)?;
        if len > 1 && digits.first() == Some(&b'0') {
            return None;
        }
        let v = crate::sip::lex::parse_decimal(digits, u64::MAX)?;
        self.i += len;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cdr::record::tests::sample;
    use crate::cdr::{Direction, Disposition, EndReason, SideName};

    fn any_text() -> impl Strategy<Value = String> {
        // Mostly plain, sometimes with quotes, backslashes, control characters and
        // non-ASCII: every branch of the escaper.
        prop_oneof![
            "[a-zA-Z0-9@.+:;=_-]{0,40}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}é€😀a]{0,12}",
        ]
    }

    prop_compose! {
        fn any_record()(
            id in any_text(), call_id in any_text(), tenant_id in any_text(),
            caller_number in any_text(), callee_number in any_text(), sip_uri in any_text(),
            sbc in any_text(), start_ms in any::<u64>(), answer_ms in any::<Option<u64>>(),
            end_ms in any::<u64>(), duration_ms in any::<u64>(), final_status in any::<u16>(),
            direction in 0..2usize, disposition in 0..3usize, end_reason in 0..9usize,
            side in 0..2usize,
        ) -> CallRecord {
            CallRecord {
                id, call_id, tenant_id, caller_number, callee_number, sip_uri, sbc,
                start_ms, answer_ms, end_ms, duration_ms, final_status,
                direction: [Direction::Inbound, Direction::Outbound][direction],
                disposition: [Disposition::Answered, Disposition::Failed,
                    Disposition::Cancelled][disposition],
                end_reason: EndReason::ALL[end_reason],
                side: [SideName::Microsoft, SideName::Carrier][side],
            }
        }
    }

    proptest! {
        #[test]
        fn records_are_written_as_serde_writes_them(r in any_record()) {
            prop_assert_eq!(r.encode(), serde_json::to_vec(&r).unwrap());
            prop_assert_eq!(CallRecord::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn the_direct_reader_reads_what_serde_reads(
            r in any_record(), at in any::<proptest::sample::Index>(),
            edit in 0..4usize, byte in any::<u8>(),
        ) {
            let canonical = r.encode();
            // Read directly unless a string had to be escaped; read alike either way.
            let direct = read_call_record(&canonical);
            prop_assert_eq!(direct.is_some(), !canonical.contains(&b'\\'));
            prop_assert_eq!(CallRecord::decode(&canonical).unwrap(), r);
            // Damaged or reformatted: the direct reader reads it as serde does, or leaves
            // it to serde.
            let mut b = canonical;
            let i = at.index(b.len() + 1);
            match edit {
                0 => b.insert(i, b' '),
                1 => b.truncate(i),
                2 => b.insert(i, byte),
                _ => if let Some(c) = b.get_mut(i) { *c = byte },
            }
            if let Some(fast) = read_call_record(&b) {
                let serde: CallRecord = serde_json::from_slice(&b).unwrap();
                prop_assert_eq!(fast, serde);
            }
        }

        #[test]
        fn open_calls_are_written_as_serde_writes_them(
            r in any_record(), from_tag in any_text(), to_tag in any_text(),
            session_expires_s in any::<Option<u32>>(),
        ) {
            let c = OpenCall { record: r, from_tag, to_tag, session_expires_s };
            prop_assert_eq!(c.encode(), serde_json::to_vec(&c).unwrap());
            prop_assert_eq!(OpenCall::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn upload_bodies_are_written_as_serde_writes_them(
            records in proptest::collection::vec(any_record(), 0..4),
        ) {
            let value: Vec<DurationRecord> = records.into_iter().map(CallRecord::into_duration).collect();
            let batch = crate::msapi::DurationBatch { value };
            prop_assert_eq!(duration_batch(&batch.value), serde_json::to_vec(&batch).unwrap());
        }
    }

    proptest! {
        #[test]
        fn the_word_test_finds_what_a_byte_loop_finds(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let bytewise = b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            prop_assert_eq!(needs_escape(&b), bytewise);
        }
    }

    #[test]
    fn a_plain_string_is_copied_and_an_escaped_one_matches_serde() {
        for s in [
            "",
            "+14255550100",
            "a\"b",
            "tab\there",
            "\u{1}",
            "back\\slash",
            "é😀",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        let r = sample();
        assert_eq!(r.encode(), serde_json::to_vec(&r).unwrap());
    }

    #[test]
    fn the_direct_reader_leaves_other_forms_to_serde() {
        let r = sample();
        // Pretty-printed, reordered (through a map) and escaped forms all still decode.
        let pretty = serde_json::to_vec_pretty(&r).unwrap();
        assert_eq!(read_call_record(&pretty), None);
        assert_eq!(CallRecord::decode(&pretty).unwrap(), r);
        let mut v = serde_json::to_value(&r).unwrap();
        let map = v.as_object_mut().unwrap();
        let id = map.remove("id").unwrap();
        map.insert("id".into(), id);
        let reordered = serde_json::to_vec(&v).unwrap();
        assert_eq!(read_call_record(&reordered), None);
        assert_eq!(CallRecord::decode(&reordered).unwrap(), r);
        let escaped = r
            .encode()
            .replaced(b"\"sbc\":\"sbc1\"", b"\"sbc\":\"sbc\\u0031\"");
        assert_eq!(read_call_record(&escaped), None);
        assert_eq!(CallRecord::decode(&escaped).unwrap(), r);
        // Leading zeros, overflow and unknown names are refused by both.
        for bad in [
            (
                b"\"startMs\":1795000000000".as_slice(),
                b"\"startMs\":01795000000000".as_slice(),
            ),
            (b"\"finalStatus\":200", b"\"finalStatus\":65536"),
            (
                b"\"endReason\":\"caller_bye\"",
                b"\"endReason\":\"hung_up\"",
            ),
        ] {
            let b = r.encode().replaced(bad.0, bad.1);
            assert_ne!(b, r.encode());
            assert_eq!(read_call_record(&b), None);
            assert!(CallRecord::decode(&b).is_err());
        }
    }

    /// Byte-string replacement for the tests.
    trait Replace {
        fn replaced(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl Replace for Vec<u8> {
        fn replaced(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self
                .windows(from.len())
                .position(|w| w == from)
                .expect("present");
            [&self[..at], to, &self[at + from.len()..]].concat()
        }
    }
}
