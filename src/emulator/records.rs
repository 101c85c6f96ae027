//! The Microsoft-side call record of an accepted duration, with quality data.
//!
//! Everything is derived from the duration record: the record id is a GUID hashed from the
//! duration's id, and the quality figures come from a generator seeded by the same hash, so
//! every pull of the same record gives the same values. [`records_page`] serves a page of a
//! window, with the discrepancies of `super::discrepancy` applied.

use std::ops::Bound;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::discrepancy::Injector;
use super::durations::{validate, Durations, Times};
use crate::cdr::rfc3339_ms;
use crate::msapi::records::format_iso8601_ms;
use crate::msapi::{CallRecord, DurationRecord, MediaStream};

/// FNV-1a, 64 bits, from a chosen offset basis.
pub(crate) fn fnv(data: &[u8], basis: u64) -> u64 {
    data.iter().fold(basis, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A version-4-shaped GUID hashed from `key`.
pub(crate) fn guid(key: &[u8]) -> String {
    let h1 = fnv(key, 0xcbf2_9ce4_8422_2325);
    let h2 = fnv(key, 0x6c62_272e_07bb_0142);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h1 >> 32,
        (h1 >> 16) & 0xffff,
        h1 & 0xfff,
        (h2 >> 48) | 0x8000,
        h2 & 0xffff_ffff_ffff
    )
}

/// Microsoft's record of an accepted duration, quality figures included.
pub(crate) fn call_record(r: &DurationRecord) -> CallRecord {
    let h1 = fnv(r.id.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let h2 = fnv(r.id.as_bytes(), 0x6c62_272e_07bb_0142);
    let times = validate(r).unwrap_or(Times {
        start: 0,
        answer: None,
        end: 0,
    });
    let media_streams = match times.answer {
        Some(_) => quality(h1 ^ h2),
        None => Vec::new(),
    };
    CallRecord {
        id: guid(r.id.as_bytes()),
        call_id: r.call_id.clone(),
        start_date_time: rfc3339_ms(times.answer.unwrap_or(times.start)),
        end_date_time: rfc3339_ms(times.end),
        duration: r.duration_ms.saturating_add(500) / 1000,
        duration_ms: Some(r.duration_ms),
        caller_number: r.caller_number.clone(),
        callee_number: r.callee_number.clone(),
        call_type: if r.direction == "inbound" {
            "user_in"
        } else {
            "user_out"
        }
        .into(),
        call_duration_source: "operator".into(),
        tenant_id: r.tenant_id.clone(),
        user_id: None,
        media_streams,
    }
}

/// The call records of calls that ended in `[from_ms, to_ms)`, after `after` (the
/// `(end, pos)` key of the previous page's last entry), at most `top` of them (one more when
/// the last one is followed by its rate-selected extra); and the key of this page's last
/// entry when more follow. Accepted durations (pos = their index) and explicit extras (pos
/// from `EXTRA_BASE`) are merged in key order; a dropped duration still moves the position,
/// so a page may hold fewer than `top` records, or none, and still have a next page.
pub(crate) fn records_page(
    store: &Durations,
    inj: &Injector,
    window: (u64, u64),
    after: Option<(u64, u64)>,
    top: usize,
) -> (Vec<CallRecord>, Option<(u64, u64)>) {
    let (from_ms, to_ms) = window;
    let lower = after.map_or(Bound::Included((from_ms, 0)), Bound::Excluded);
    let mut durations = store.by_end(lower, to_ms).peekable();
    let mut extras = inj.extras(lower, to_ms).peekable();
    let top = top.max(1);
    let (mut out, mut consumed, mut last) = (Vec::new(), 0usize, None);
    loop {
        let next_d = durations.peek().map(|(k, _)| *k);
        let next_x = extras.peek().map(|(k, _)| **k);
        let take_duration = match (next_d, next_x) {
            (None, None) => return (out, None),
            (Some(d), Some(x)) => d < x,
            (d, _) => d.is_some(),
        };
        if consumed >= top {
            return (out, last);
        }
        if take_duration {
            if let Some((key, r)) = durations.next() {
                out.extend(inj.records_of(r));
                last = Some(key);
            }
        } else if let Some((key, x)) = extras.next() {
            out.push(x.clone());
            last = Some(*key);
        }
        consumed += 1;
    }
}

/// Two streams of plausible, seed-determined quality figures.
pub(crate) fn quality(seed: u64) -> Vec<MediaStream> {
    let mut rng = StdRng::seed_from_u64(seed);
    let codec = *["pcmu", "pcma", "g722", "opus"]
        .choose(&mut rng)
        .unwrap_or(&"pcmu");
    ["callerToCallee", "calleeToCaller"]
        .iter()
        .enumerate()
        .map(|(i, direction)| {
            let jitter = rng.random_range(1.0..30.0f64);
            let loss = rng.random_range(0.0..0.02f64);
            let rtt = rng.random_range(20.0..150.0f64);
            MediaStream {
                stream_id: (i + 1).to_string(),
                stream_direction: (*direction).into(),
                audio_codec: Some(codec.into()),
                average_jitter: Some(format_iso8601_ms(jitter)),
                max_jitter: Some(format_iso8601_ms(jitter * rng.random_range(1.5..3.0))),
                average_packet_loss_rate: Some((loss * 10_000.0).round() / 10_000.0),
                max_packet_loss_rate: Some(
                    ((loss * rng.random_range(1.0..4.0)).min(1.0) * 10_000.0).round() / 10_000.0,
                ),
                average_round_trip_time: Some(format_iso8601_ms(rtt)),
                max_round_trip_time: Some(format_iso8601_ms(rtt * rng.random_range(1.2..2.0))),
                average_audio_degradation: Some(
                    ((loss * 40.0 + jitter / 100.0).min(2.0) * 100.0).round() / 100.0,
                ),
                was_media_bypassed: Some(false),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::emulator::discrepancy::{Discrepancies, EXTRA_BASE};
    use crate::emulator::durations::{time_ms, Verdict};
    use crate::emulator::seed::is_guid;

    /// An answered inbound call: start 10:00:00, answer +2 s, end +62 s.
    pub(crate) fn answered(id: &str) -> DurationRecord {
        DurationRecord {
            id: id.into(),
            call_id: format!("call-{id}"),
            direction: "inbound".into(),
            tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
            caller_number: "+14255550100".into(),
            callee_number: "+14255510000".into(),
            start_date_time: "2024-05-01T10:00:00.000Z".into(),
            answer_date_time: Some("2024-05-01T10:00:02.000Z".into()),
            end_date_time: "2024-05-01T10:01:02.000Z".into(),
            duration_ms: 60_000,
            disposition: "answered".into(),
            final_sip_code: 200,
        }
    }

    /// The same call declined with 486.
    pub(crate) fn failed(id: &str) -> DurationRecord {
        DurationRecord {
            answer_date_time: None,
            duration_ms: 0,
            disposition: "failed".into(),
            final_sip_code: 486,
            ..answered(id)
        }
    }

    #[test]
    fn call_record_mirrors_the_duration() {
        let r = answered("abc");
        let c = call_record(&r);
        assert_eq!(c, call_record(&r), "deterministic");
        assert!(is_guid(&c.id), "{}", c.id);
        assert_eq!(c.call_id, "call-abc");
        assert_eq!(c.start_date_time, "2024-05-01T10:00:02.000Z");
        assert_eq!(c.end_date_time, "2024-05-01T10:01:02.000Z");
        assert_eq!((c.duration, c.duration_ms), (60, Some(60_000)));
        assert_eq!(c.call_type, "user_in");
        assert_eq!(c.call_duration_source, "operator");
        assert_eq!(c.media_streams.len(), 2);
        let s = &c.media_streams[0];
        assert!(s
            .average_jitter_ms()
            .is_some_and(|j| (1.0..=30.0).contains(&j)));
        assert!(s
            .average_round_trip_ms()
            .is_some_and(|r| (20.0..=150.0).contains(&r)));
        assert!(call_record(&failed("f")).media_streams.is_empty());
    }

    #[test]
    fn records_page_by_end_time() {
        let mut store = Durations::new(10);
        // (end, durationMs from the 10:00:02 answer)
        let calls = [
            ("10:01:02", 60_000),
            ("10:05:00", 298_000),
            ("10:03:00", 178_000),
        ];
        for (i, (end, duration_ms)) in calls.into_iter().enumerate() {
            let mut r = answered(&i.to_string());
            r.end_date_time = format!("2024-05-01T{end}.000Z");
            r.duration_ms = duration_ms;
            assert_eq!(store.submit(r), Verdict::Accepted);
        }
        let from = time_ms("f", "2024-05-01T10:00:00.000Z").unwrap_or(0);
        let to = time_ms("t", "2024-05-01T10:05:00.000Z").unwrap_or(0);
        let inj = Injector::new(Discrepancies::default());
        let (page, after) = records_page(&store, &inj, (from, to), None, 1);
        assert_eq!(page[0].call_id, "call-0");
        let (page2, after2) = records_page(&store, &inj, (from, to), after, 1);
        assert_eq!(page2[0].call_id, "call-2", "ordered by end time");
        assert_eq!(after2, None, "10:05:00 is outside [from, to)");
    }

    #[test]
    fn pages_merge_extras_and_skip_drops() {
        let mut store = Durations::new(10);
        for i in 0..4 {
            let mut r = answered(&i.to_string());
            r.end_date_time = format!("2024-05-01T10:01:0{i}.000Z");
            r.duration_ms = 58_000 + i * 1000;
            assert_eq!(store.submit(r), Verdict::Accepted);
        }
        let spec: Discrepancies = serde_json::from_value(serde_json::json!({
            "dropCallIds": ["call-1"],
            "extraRecords": [{"callId": "ghost", "startDateTime": "2024-05-01T10:00:30Z",
                              "endDateTime": "2024-05-01T10:01:01.500Z"}]
        }))
        .unwrap_or_default();
        let inj = Injector::new(spec);
        let mut after = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (page, next) = records_page(&store, &inj, (0, u64::MAX), after, 2);
            seen.extend(page.into_iter().map(|r| r.call_id));
            after = next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["call-0", "ghost", "call-2", "call-3"]);
        assert!(EXTRA_BASE > u64::from(u32::MAX));
    }
}
