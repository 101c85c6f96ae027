//! Injected discrepancies between the durations the emulator accepted and the Microsoft-side
//! call records it serves, so reconciliation can be tested against known truth.
//!
//! Applied when records are read (nothing is stored per record), so every pull of the same
//! record under the same settings gives the same answer, and changing the settings changes
//! what later pulls see of every record, old ones included. Selection by rate is a hash of
//! `seed` and the record id (not a random draw), so a run is repeatable:
//!
//! - **drop**: the accepted duration gets no Microsoft record (`dropRate`, `dropCallIds`).
//! - **drift**: the record's billed duration (`durationMs`, `duration`) differs from the
//!   accepted one by a number of milliseconds (`driftRate` × `driftMs`, or exactly per call
//!   id with `driftByCallId`); its times are left as they were, as when Microsoft bills a
//!   duration of its own. The result is never below 0.
//! - **extra**: records of calls the operator never reported: `extraRate` adds, after a
//!   selected record, a record with the same parties and times under a new Call-ID
//!   (`extra-<16 hex>@emulator`); `extraRecords` adds records exactly as described.
//!
//! A dropped record is neither drifted nor followed by an extra. Explicit call ids apply to
//! every record (every fork) of that Call-ID.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::durations::time_ms;
use super::records::{call_record, fnv, guid, quality};
use crate::cdr::rfc3339_ms;
use crate::msapi::{CallRecord, DurationRecord};
use crate::sip::number::E164;

/// Most explicit extra records held.
pub const MAX_EXTRA_RECORDS: usize = 100_000;
/// Most explicit call ids (drop plus drift) held.
pub const MAX_CALL_IDS: usize = 100_000;
/// Largest drift, either way (a day).
pub const MAX_DRIFT_MS: i64 = 86_400_000;
/// Position of the first explicit extra in the page key space: durations use their index
/// (below 2^32), extras this plus theirs, so both sort into one order by `(end, pos)`.
pub(crate) const EXTRA_BASE: u64 = 1 << 32;

/// The discrepancies in force (the body of `POST /emulator/discrepancies`; omitted fields
/// take their defaults, so `{}` clears everything).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Discrepancies {
    /// Seed of the rate-based selections.
    pub seed: u64,
    /// Share of records (0.0–1.0) whose duration drifts by `driftMs`.
    pub drift_rate: f64,
    /// Milliseconds added to the billed duration of rate-selected records (negative
    /// subtracts).
    pub drift_ms: i64,
    /// Exact drifts: Call-ID → milliseconds added (wins over the rate).
    pub drift_by_call_id: BTreeMap<String, i64>,
    /// Share of records (0.0–1.0) that get no Microsoft record.
    pub drop_rate: f64,
    /// Call-IDs whose records are dropped.
    pub drop_call_ids: Vec<String>,
    /// Share of records (0.0–1.0) followed by a record of a call never reported.
    pub extra_rate: f64,
    /// Records of calls never reported, served as described.
    pub extra_records: Vec<ExtraRecord>,
}

/// An explicit extra record (`extraRecords`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraRecord {
    /// Its Call-ID.
    pub call_id: String,
    /// Calling number (E.164 or empty).
    #[serde(default)]
    pub caller_number: String,
    /// Called number (E.164 or empty).
    #[serde(default)]
    pub callee_number: String,
    /// RFC 3339 UTC: start of the billed part.
    pub start_date_time: String,
    /// RFC 3339 UTC: the end; windows select on it.
    pub end_date_time: String,
    /// Billed milliseconds; `endDateTime − startDateTime` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Teams tenant.
    #[serde(default)]
    pub tenant_id: String,
    /// `user_in` (default) or `user_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<String>,
}

impl Discrepancies {
    /// Checks rates, sizes and every extra record; the message names the bad field.
    pub fn check(&self) -> Result<(), String> {
        for (name, r) in [
            ("driftRate", self.drift_rate),
            ("dropRate", self.drop_rate),
            ("extraRate", self.extra_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be between 0.0 and 1.0"));
            }
        }
        let drifts = std::iter::once(self.drift_ms).chain(self.drift_by_call_id.values().copied());
        if drifts.into_iter().any(|d| d.abs() > MAX_DRIFT_MS) {
            return Err(format!("drifts are at most {MAX_DRIFT_MS} ms either way"));
        }
        if self.drift_by_call_id.len() + self.drop_call_ids.len() > MAX_CALL_IDS {
            return Err(format!("at most {MAX_CALL_IDS} explicit call ids"));
        }
        if self.extra_records.len() > MAX_EXTRA_RECORDS {
            return Err(format!("at most {MAX_EXTRA_RECORDS} extraRecords"));
        }
        for (i, x) in self.extra_records.iter().enumerate() {
            extra_times(x).map_err(|e| format!("extraRecords[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// Unix milliseconds of an extra record's start and end, checked.
fn extra_times(x: &ExtraRecord) -> Result<(u64, u64), String> {
    if x.call_id.is_empty() || x.call_id.len() > 1024 {
        return Err("callId must be 1 to 1024 bytes".into());
    }
    for (name, n) in [
        ("callerNumber", &x.caller_number),
        ("calleeNumber", &x.callee_number),
    ] {
        if !n.is_empty() && E164::parse(n).is_err() {
            return Err(format!("{name} {n:?} is not E.164"));
        }
    }
    let start = time_ms("startDateTime", &x.start_date_time)?;
    let end = time_ms("endDateTime", &x.end_date_time)?;
    if end < start {
        return Err("endDateTime is before startDateTime".into());
    }
    Ok((start, end))
}

/// The discrepancies compiled for reading: lookups by call id, extras by end time.
pub(crate) struct Injector {
    spec: Discrepancies,
    drops: HashSet<String>,
    extras: BTreeMap<(u64, u64), CallRecord>,
}

impl Injector {
    /// Compiles `spec` (checked with [`Discrepancies::check`] first; an extra whose times
    /// do not read is left out).
    pub(crate) fn new(spec: Discrepancies) -> Injector {
        let drops = spec.drop_call_ids.iter().cloned().collect();
        let mut extras = BTreeMap::new();
        for (i, x) in spec.extra_records.iter().enumerate() {
            if let Ok((start, end)) = extra_times(x) {
                let key = (end, EXTRA_BASE + i as u64);
                extras.insert(key, explicit_extra(spec.seed, i, x, start, end));
            }
        }
        Injector {
            spec,
            drops,
            extras,
        }
    }

    /// The settings in force.
    pub(crate) fn spec(&self) -> &Discrepancies {
        &self.spec
    }

    /// The Microsoft records served for one accepted duration: none when dropped, else its
    /// record (drifted when selected), then an extra when selected.
    pub(crate) fn records_of(&self, r: &DurationRecord) -> Vec<CallRecord> {
        if self.drops.contains(&r.call_id) || self.selected(b"drop", &r.id, self.spec.drop_rate) {
            return Vec::new();
        }
        let mut rec = call_record(r);
        let drift = match self.spec.drift_by_call_id.get(&r.call_id) {
            Some(ms) => *ms,
            None if self.selected(b"drift", &r.id, self.spec.drift_rate) => self.spec.drift_ms,
            None => 0,
        };
        if drift != 0 {
            let ms = r.duration_ms.saturating_add_signed(drift);
            rec.duration_ms = Some(ms);
            rec.duration = ms.saturating_add(500) / 1000;
        }
        let extra = self
            .selected(b"extra", &r.id, self.spec.extra_rate)
            .then(|| derived_extra(&rec, &r.id));
        std::iter::once(rec).chain(extra).collect()
    }

    /// Explicit extras whose `(end, pos)` key is after `lower` and whose end is before
    /// `to_ms`, in order.
    pub(crate) fn extras(
        &self,
        lower: Bound<(u64, u64)>,
        to_ms: u64,
    ) -> impl Iterator<Item = (&(u64, u64), &CallRecord)> {
        self.extras.range((lower, Bound::Excluded((to_ms, 0))))
    }

    /// Whether the record `id` falls in the share `rate` for `salt` under the seed.
    fn selected(&self, salt: &[u8], id: &str, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut key = self.spec.seed.to_le_bytes().to_vec();
        key.extend_from_slice(salt);
        key.push(0);
        key.extend_from_slice(id.as_bytes());
        let h = mix(fnv(&key, 0xcbf2_9ce4_8422_2325));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < rate
    }
}

/// The splitmix64 finalizer: FNV's high bits barely change with the last bytes of a short
/// key, and the selection reads the high bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rate-selected extra after `rec`: same parties and times, a new Call-ID and id.
fn derived_extra(rec: &CallRecord, duration_id: &str) -> CallRecord {
    let key = format!("extra\0{duration_id}");
    let h = fnv(key.as_bytes(), 0xcbf2_9ce4_8422_2325);
    CallRecord {
        id: guid(key.as_bytes()),
        call_id: format!("extra-{h:016x}@emulator"),
        call_duration_source: "microsoft".into(),
        ..rec.clone()
    }
}

/// The record served for `extraRecords[i]`.
fn explicit_extra(seed: u64, i: usize, x: &ExtraRecord, start: u64, end: u64) -> CallRecord {
    let key = format!("explicit\0{seed}\0{i}\0{}\0{start}", x.call_id);
    let ms = x.duration_ms.unwrap_or(end - start);
    let h = fnv(key.as_bytes(), 0x6c62_272e_07bb_0142);
    CallRecord {
        id: guid(key.as_bytes()),
        call_id: x.call_id.clone(),
        start_date_time: rfc3339_ms(start),
        end_date_time: rfc3339_ms(end),
        duration: ms.saturating_add(500) / 1000,
        duration_ms: Some(ms),
        caller_number: x.caller_number.clone(),
        callee_number: x.callee_number.clone(),
        call_type: x.call_type.clone().unwrap_or_else(|| "user_in".into()),
        call_duration_source: "microsoft".into(),
        tenant_id: x.tenant_id.clone(),
        user_id: None,
        media_streams: if ms > 0 { quality(h) } else { Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::records::tests::answered;

    fn injector(spec: Discrepancies) -> Injector {
        assert_eq!(spec.check(), Ok(()));
        Injector::new(spec)
    }

    #[test]
    fn nothing_injected_by_default() {
        let r = answered("a");
        assert_eq!(
            Injector::new(Discrepancies::default()).records_of(&r),
            vec![call_record(&r)]
        );
    }

    #[test]
    fn explicit_call_ids_drop_and_drift() {
        let inj = injector(Discrepancies {
            drop_call_ids: vec!["call-a".into()],
            drift_by_call_id: [
                ("call-b".to_string(), 1500),
                ("call-c".to_string(), -70_000),
            ]
            .into(),
            ..Discrepancies::default()
        });
        assert!(inj.records_of(&answered("a")).is_empty());
        let b = inj.records_of(&answered("b"));
        assert_eq!((b[0].duration_ms, b[0].duration), (Some(61_500), 62));
        assert_eq!(
            b[0].end_date_time,
            call_record(&answered("b")).end_date_time
        );
        let c = inj.records_of(&answered("c"));
        assert_eq!((c[0].duration_ms, c[0].duration), (Some(0), 0), "floored");
    }

    #[test]
    fn rates_are_deterministic_for_a_seed() {
        let spec = |seed| Discrepancies {
            seed,
            drop_rate: 0.3,
            extra_rate: 0.3,
            ..Discrepancies::default()
        };
        let shape = |inj: &Injector| -> Vec<usize> {
            (0..200)
                .map(|i| inj.records_of(&answered(&i.to_string())).len())
                .collect()
        };
        let one = shape(&injector(spec(7)));
        assert_eq!(one, shape(&injector(spec(7))), "same seed, same choices");
        assert_ne!(
            one,
            shape(&injector(spec(8))),
            "another seed, other choices"
        );
        let dropped = one.iter().filter(|n| **n == 0).count();
        let extra = one.iter().filter(|n| **n == 2).count();
        assert!((30..90).contains(&dropped), "{dropped}");
        assert!(
            (20..80).contains(&extra),
            "{extra}: only on records not dropped"
        );
    }

    #[test]
    fn extras_look_like_calls_never_reported() {
        let inj = injector(Discrepancies {
            extra_rate: 1.0,
            extra_records: vec![ExtraRecord {
                call_id: "ghost@x".into(),
                caller_number: "+14255550100".into(),
                callee_number: "+14255510000".into(),
                start_date_time: "2024-05-01T10:00:00Z".into(),
                end_date_time: "2024-05-01T10:00:30.500Z".into(),
                duration_ms: None,
                tenant_id: String::new(),
                call_type: None,
            }],
            ..Discrepancies::default()
        });
        let pair = inj.records_of(&answered("a"));
        assert_eq!(pair.len(), 2);
        assert!(pair[1].call_id.starts_with("extra-") && pair[1].id != pair[0].id);
        assert_eq!(pair[1].duration_ms, pair[0].duration_ms);
        let all: Vec<_> = inj.extras(Bound::Unbounded, u64::MAX).collect();
        assert_eq!(all.len(), 1);
        let x = all[0].1;
        assert_eq!(
            (x.call_id.as_str(), x.duration_ms),
            ("ghost@x", Some(30_500))
        );
        assert_eq!(x.end_date_time, "2024-05-01T10:00:30.500Z");
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |d: Discrepancies| d.check().unwrap_err();
        let e = bad(Discrepancies {
            drop_rate: 2.0,
            ..Discrepancies::default()
        });
        assert!(e.contains("dropRate"), "{e}");
        let x = ExtraRecord {
            call_id: "x".into(),
            caller_number: "12".into(),
            callee_number: String::new(),
            start_date_time: "2024-05-01T10:00:00Z".into(),
            end_date_time: "2024-05-01T10:00:01Z".into(),
            duration_ms: None,
            tenant_id: String::new(),
            call_type: None,
        };
        let e = bad(Discrepancies {
            extra_records: vec![x],
            ..Discrepancies::default()
        });
        assert!(e.contains("extraRecords[0]: callerNumber"), "{e}");
        let e = bad(Discrepancies {
            drift_ms: MAX_DRIFT_MS + 1,
            ..Discrepancies::default()
        });
        assert!(e.contains("drift"), "{e}");
    }
}
