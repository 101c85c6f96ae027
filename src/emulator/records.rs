//! The Microsoft-side call record of an accepted duration, with quality data.
//!
//! Everything is derived from the duration record: the record id is a GUID hashed from the
//! duration's id, and the quality figures come from a generator seeded by the same hash, so
//! every pull of the same record gives the same values.

use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::durations::{validate, Times};
use crate::msapi::records::format_iso8601_ms;
use crate::msapi::{CallRecord, DurationRecord, MediaStream};

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// FNV-1a, 64 bits, from a chosen offset basis.
fn fnv(data: &[u8], basis: u64) -> u64 {
    data.iter().fold(basis, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Microsoft's record of an accepted duration, quality figures included.
pub(crate) fn call_record(r: &DurationRecord) -> CallRecord {
    let h1 = fnv(r.id.as_bytes(), 0xcbf2_9ce4_8422_2325);
    let h2 = fnv(r.id.as_bytes(), 0x6c62_272e_07bb_0142);
    let guid = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        h1 >> 32,
        (h1 >> 16) & 0xffff,
        h1 & 0xfff,
        (h2 >> 48) | 0x8000,
        h2 & 0xffff_ffff_ffff
    );
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
        id: guid,
        call_id: r.call_id.clone(),
        start_date_time: rfc3339(times.answer.unwrap_or(times.start)),
        end_date_time: rfc3339(times.end),
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

/// Two streams of plausible, seed-determined quality figures.
fn quality(seed: u64) -> Vec<MediaStream> {
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
mod tests {
    use super::*;
    use crate::emulator::seed::is_guid;

    fn answered(id: &str) -> DurationRecord {
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

    fn failed(id: &str) -> DurationRecord {
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
}
