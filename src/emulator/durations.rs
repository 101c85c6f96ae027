//! The emulator's side of call durations: validation, idempotent storage, and the
//! Microsoft-side call records derived from what was accepted. No I/O.
//!
//! - An id accepted once is a `duplicate` ever after, whatever the replay carries: the
//!   first accepted version is the one counted. Rejected records are not remembered, so a
//!   corrected record may be sent again under the same id.
//! - At most `max` records are stored (each about 0.5 KB). A batch whose new ids do not fit
//!   is refused whole (507) rather than partly stored or silently dropped, so the uploader
//!   keeps it and the stats show the refusal.
//! - Call records (`super::records`): one per accepted record, generated on read (nothing
//!   extra stored), with the discrepancies of `super::discrepancy` applied. Windows select
//!   on `endDateTime`.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::time::UNIX_EPOCH;

use crate::msapi::DurationRecord;
use crate::sip::number::E164;

/// Longest record id accepted.
pub const MAX_ID_LEN: usize = 256;
/// Largest difference allowed between `durationMs` and `endDateTime − answerDateTime`.
pub const DURATION_SLACK_MS: u64 = 1000;

/// What became of one uploaded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Duplicate,
    Rejected(String),
}

/// Accepted records, their ids, and an index by end time.
pub(crate) struct Durations {
    records: Vec<DurationRecord>,
    ids: HashMap<String, u32>,
    by_end: BTreeSet<(u64, u32)>,
    max: usize,
}

impl Durations {
    pub(crate) fn new(max: usize) -> Durations {
        Durations {
            records: Vec::new(),
            ids: HashMap::new(),
            by_end: BTreeSet::new(),
            max,
        }
    }

    /// How many records of `batch` would need room (distinct ids not yet accepted).
    pub(crate) fn needed<'a>(&self, ids: impl Iterator<Item = &'a str>) -> usize {
        let mut fresh = std::collections::HashSet::new();
        ids.filter(|id| !self.ids.contains_key(*id))
            .filter(|id| fresh.insert(*id))
            .count()
    }

    /// Room left.
    pub(crate) fn room(&self) -> usize {
        self.max.saturating_sub(self.records.len())
    }

    /// Validates and stores one record.
    pub(crate) fn submit(&mut self, rec: DurationRecord) -> Verdict {
        if rec.id.is_empty() || rec.id.len() > MAX_ID_LEN || rec.id.chars().any(char::is_control) {
            return Verdict::Rejected(format!(
                "id must be 1 to {MAX_ID_LEN} bytes without control characters"
            ));
        }
        if self.ids.contains_key(&rec.id) {
            return Verdict::Duplicate;
        }
        let end_ms = match validate(&rec) {
            Ok(t) => t.end,
            Err(reason) => return Verdict::Rejected(reason),
        };
        if self.room() == 0 {
            return Verdict::Rejected("emulator storage full".into());
        }
        let Ok(idx) = u32::try_from(self.records.len()) else {
            return Verdict::Rejected("emulator storage full".into());
        };
        self.ids.insert(rec.id.clone(), idx);
        self.by_end.insert((end_ms, idx));
        self.records.push(rec);
        Verdict::Accepted
    }

    /// Every accepted record, in acceptance order.
    pub(crate) fn all(&self) -> &[DurationRecord] {
        &self.records
    }

    /// Accepted records whose `(end, index)` key is after `lower` and whose end is before
    /// `to_ms`, in key order, with their keys (as `(end, index)` in the page key space of
    /// `super::records::records_page`).
    pub(crate) fn by_end(
        &self,
        lower: Bound<(u64, u64)>,
        to_ms: u64,
    ) -> impl Iterator<Item = ((u64, u64), &DurationRecord)> {
        let lower = match lower {
            Bound::Included((e, p)) => Bound::Included((e, clamp_pos(p))),
            Bound::Excluded((e, p)) => Bound::Excluded((e, clamp_pos(p))),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.by_end
            .range((lower, Bound::Excluded((to_ms, 0))))
            .filter_map(|&(end, i)| Some(((end, u64::from(i)), self.records.get(i as usize)?)))
    }
}

fn clamp_pos(p: u64) -> u32 {
    u32::try_from(p).unwrap_or(u32::MAX)
}

/// Unix milliseconds of a record's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) start: u64,
    pub(crate) answer: Option<u64>,
    pub(crate) end: u64,
}

/// Checks a record against the contract's rules (see `docs/microsoft-api.md`).
pub(crate) fn validate(r: &DurationRecord) -> Result<Times, String> {
    if r.call_id.is_empty() || r.call_id.len() > 1024 {
        return Err("callId must be 1 to 1024 bytes".into());
    }
    if r.direction != "inbound" && r.direction != "outbound" {
        return Err(format!(
            "direction {:?} is not inbound or outbound",
            r.direction
        ));
    }
    for (name, n) in [
        ("callerNumber", &r.caller_number),
        ("calleeNumber", &r.callee_number),
    ] {
        if !n.is_empty() && E164::parse(n).is_err() {
            return Err(format!("{name} {n:?} is not E.164"));
        }
    }
    let start = time_ms("startDateTime", &r.start_date_time)?;
    let end = time_ms("endDateTime", &r.end_date_time)?;
    let answer = r
        .answer_date_time
        .as_deref()
        .map(|a| time_ms("answerDateTime", a))
        .transpose()?;
    if end < start {
        return Err("endDateTime is before startDateTime".into());
    }
    match (r.disposition.as_str(), answer) {
        ("answered", None) => Err("an answered call needs answerDateTime".into()),
        ("answered", Some(a)) => {
            if a < start || a > end {
                return Err("answerDateTime is outside startDateTime..endDateTime".into());
            }
            if !(200..300).contains(&r.final_sip_code) {
                return Err(format!(
                    "answered call with finalSipCode {}",
                    r.final_sip_code
                ));
            }
            let measured = end.saturating_sub(a);
            if r.duration_ms.abs_diff(measured) > DURATION_SLACK_MS {
                return Err(format!(
                    "durationMs {} differs from endDateTime - answerDateTime ({measured} ms) by more than {DURATION_SLACK_MS} ms",
                    r.duration_ms
                ));
            }
            Ok(Times { start, answer, end })
        }
        ("failed" | "cancelled", Some(_)) => {
            Err(format!("a {} call has no answerDateTime", r.disposition))
        }
        ("failed" | "cancelled", None) => {
            if r.duration_ms != 0 {
                return Err(format!("a {} call has durationMs 0", r.disposition));
            }
            if !(300..700).contains(&r.final_sip_code) {
                return Err(format!(
                    "{} call with finalSipCode {}",
                    r.disposition, r.final_sip_code
                ));
            }
            Ok(Times { start, answer, end })
        }
        (other, _) => Err(format!(
            "disposition {other:?} is not answered, failed or cancelled"
        )),
    }
}

pub(crate) fn time_ms(name: &str, s: &str) -> Result<u64, String> {
    humantime::parse_rfc3339(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("{name} {s:?} is not an RFC 3339 UTC time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::emulator::records::tests::{answered, failed};

    fn reason(store: &mut Durations, rec: DurationRecord) -> String {
        match store.submit(rec) {
            Verdict::Rejected(why) => why,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accepts_once_then_duplicate() {
        let mut store = Durations::new(10);
        assert_eq!(store.submit(answered("a")), Verdict::Accepted);
        assert_eq!(store.submit(failed("b")), Verdict::Accepted);
        let mut changed = answered("a");
        changed.duration_ms = 59_500;
        assert_eq!(
            store.submit(changed),
            Verdict::Duplicate,
            "first version counts"
        );
        assert_eq!(store.all().len(), 2);
        assert_eq!(store.all()[0].duration_ms, 60_000);
    }

    #[test]
    fn rejects_what_breaks_the_rules() {
        let mut store = Durations::new(10);
        let mut r = answered("");
        assert!(reason(&mut store, r).contains("id"));
        r = answered("x");
        r.duration_ms = 61_001;
        assert!(reason(&mut store, r).contains("durationMs"));
        r = answered("x");
        r.duration_ms = 61_000;
        assert_eq!(store.submit(r), Verdict::Accepted, "within the 1 s slack");
        let cases: Vec<(DurationRecord, &str)> = vec![
            (
                DurationRecord {
                    answer_date_time: None,
                    ..answered("1")
                },
                "answerDateTime",
            ),
            (
                DurationRecord {
                    disposition: "ringing".into(),
                    ..answered("2")
                },
                "disposition",
            ),
            (
                DurationRecord {
                    direction: "up".into(),
                    ..answered("3")
                },
                "direction",
            ),
            (
                DurationRecord {
                    start_date_time: "yesterday".into(),
                    ..answered("4")
                },
                "startDateTime",
            ),
            (
                DurationRecord {
                    end_date_time: "2024-05-01T09:00:00.000Z".into(),
                    ..answered("5")
                },
                "before",
            ),
            (
                DurationRecord {
                    answer_date_time: Some("2024-05-01T11:00:00.000Z".into()),
                    ..answered("6")
                },
                "outside",
            ),
            (
                DurationRecord {
                    final_sip_code: 486,
                    ..answered("7")
                },
                "finalSipCode",
            ),
            (
                DurationRecord {
                    caller_number: "0425".into(),
                    ..answered("8")
                },
                "callerNumber",
            ),
            (
                DurationRecord {
                    call_id: String::new(),
                    ..answered("9")
                },
                "callId",
            ),
            (
                DurationRecord {
                    duration_ms: 5,
                    ..failed("10")
                },
                "durationMs 0",
            ),
            (
                DurationRecord {
                    final_sip_code: 200,
                    ..failed("11")
                },
                "finalSipCode",
            ),
            (
                DurationRecord {
                    answer_date_time: Some("2024-05-01T10:00:02.000Z".into()),
                    ..failed("12")
                },
                "no answerDateTime",
            ),
        ];
        for (rec, expected) in cases {
            let why = reason(&mut store, rec);
            assert!(
                why.contains(expected),
                "{why:?} should mention {expected:?}"
            );
        }
        assert_eq!(store.all().len(), 1, "rejected records are not stored");
    }

    #[test]
    fn storage_is_bounded() {
        let mut store = Durations::new(1);
        assert_eq!(store.needed(["a", "a", "b"].into_iter()), 2);
        assert_eq!(store.submit(answered("a")), Verdict::Accepted);
        assert_eq!(store.room(), 0);
        assert_eq!(store.needed(["a"].into_iter()), 0, "a replay needs no room");
        assert!(matches!(store.submit(answered("b")), Verdict::Rejected(_)));
    }
}
