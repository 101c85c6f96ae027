//! Microsoft-side call records with quality data: the `callRecords` half of the contract.
//!
//! Field names follow Microsoft Graph: a [`CallRecord`] carries the `pstnCallLogRow`
//! properties that matter for reconciliation, plus the ocedge extensions `tenantId` and
//! `durationMs` (operators see every tenant's calls; Graph's whole-second `duration` is too
//! coarse for a tolerance below one second), and [`MediaStream`] carries `mediaStream`
//! properties. Graph writes time quantities (jitter, round trip) as ISO 8601 durations
//! (`"PT0.012S"`); so does this contract, and [`iso8601_duration_ms`] reads them.

use serde::{Deserialize, Serialize};

/// One Microsoft-side call record (after Graph `pstnCallLogRow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// Microsoft's id of the record (GUID); unique, stable across pulls.
    pub id: String,
    /// The SIP Call-ID of the call on the operator trunk. Not guaranteed unique (Graph).
    pub call_id: String,
    /// RFC 3339 UTC: when the billed part of the call started (the answer, for answered
    /// calls).
    pub start_date_time: String,
    /// RFC 3339 UTC: when the call ended. Windows of the listing select on this field.
    pub end_date_time: String,
    /// Billed duration in whole seconds, rounded to nearest (Graph `duration`, Int32).
    pub duration: u64,
    /// Extension: billed duration in milliseconds, when the source has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Calling number, E.164.
    #[serde(default)]
    pub caller_number: String,
    /// Called number, E.164.
    #[serde(default)]
    pub callee_number: String,
    /// Graph `callType`: `user_in` (PSTN → Teams user) or `user_out` (Teams user → PSTN);
    /// other Graph values may appear and are kept as is.
    #[serde(default)]
    pub call_type: String,
    /// Graph `callDurationSource`: `operator` when the operator's uploaded duration was used,
    /// `microsoft` otherwise.
    #[serde(default)]
    pub call_duration_source: String,
    /// Extension: the Teams tenant of the call.
    #[serde(default)]
    pub tenant_id: String,
    /// The Teams user (Entra object id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Media streams with quality data (Graph `mediaStream`); empty for unanswered calls.
    #[serde(default)]
    pub media_streams: Vec<MediaStream>,
}

/// One media stream of a call (after Graph `callRecords.mediaStream`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStream {
    /// Stream id, unique within the record.
    #[serde(default)]
    pub stream_id: String,
    /// `callerToCallee` or `calleeToCaller`.
    pub stream_direction: String,
    /// Codec (Graph `audioCodec`: `pcmu`, `pcma`, `g722`, `opus`, `silk`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
    /// Average RFC 3550 jitter, ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_jitter: Option<String>,
    /// Maximum jitter, ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_jitter: Option<String>,
    /// Average packet loss rate, 0.0–1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_packet_loss_rate: Option<f64>,
    /// Maximum packet loss rate, 0.0–1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packet_loss_rate: Option<f64>,
    /// Average network round trip time, ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_round_trip_time: Option<String>,
    /// Maximum network round trip time, ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_round_trip_time: Option<String>,
    /// Average network MOS degradation (how much loss and jitter lowered the MOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_audio_degradation: Option<f64>,
    /// Whether media bypassed Microsoft's media processors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_media_bypassed: Option<bool>,
}

impl MediaStream {
    /// Average jitter in milliseconds, when present and well formed.
    pub fn average_jitter_ms(&self) -> Option<f64> {
        self.average_jitter.as_deref().and_then(iso8601_duration_ms)
    }

    /// Maximum jitter in milliseconds, when present and well formed.
    pub fn max_jitter_ms(&self) -> Option<f64> {
        self.max_jitter.as_deref().and_then(iso8601_duration_ms)
    }

    /// Average round trip time in milliseconds, when present and well formed.
    pub fn average_round_trip_ms(&self) -> Option<f64> {
        self.average_round_trip_time
            .as_deref()
            .and_then(iso8601_duration_ms)
    }
}

/// One page of call records.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallRecordsPage {
    /// The records, ordered by `endDateTime` then `id`.
    pub value: Vec<CallRecord>,
    /// URL of the next page of the same window, when there is one.
    #[serde(
        rename = "@odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
}

/// Reads an ISO 8601 duration of the form `P[nD][T[nH][nM][n[.n]S]]` (the form Graph uses)
/// into milliseconds. Years, months and weeks are refused (their length varies), as are
/// negative values and empty designators.
pub fn iso8601_duration_ms(s: &str) -> Option<f64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return None,
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut total = 0.0;
    let mut any = false;
    sum_units(date, &[('D', 86_400_000.0)], &mut total, &mut any)?;
    let time_units = [('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)];
    sum_units(time, &time_units, &mut total, &mut any)?;
    any.then_some(total)
}

/// Adds the `n<unit>` groups of `part`, which must appear in the order of `units` and make
/// up all of `part`.
fn sum_units(part: &str, units: &[(char, f64)], total: &mut f64, any: &mut bool) -> Option<()> {
    let mut part = part;
    for &(unit, ms) in units {
        if let Some((num, after)) = part.split_once(unit) {
            *total += parse_amount(num)? * ms;
            part = after;
            *any = true;
        }
    }
    part.is_empty().then_some(())
}

/// A non-negative decimal number without sign or exponent.
fn parse_amount(num: &str) -> Option<f64> {
    let ok = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().any(|b| b.is_ascii_digit());
    if ok {
        num.parse().ok()
    } else {
        None
    }
}

/// Writes milliseconds as an ISO 8601 duration in seconds with at most millisecond
/// precision: `12.5` → `"PT0.013S"`, `0` → `"PT0S"`. Negative or non-finite values give
/// `"PT0S"`.
pub fn format_iso8601_ms(ms: f64) -> String {
    let ms = if ms.is_finite() && ms > 0.0 { ms } else { 0.0 };
    let text = format!("{:.3}", ms.round() / 1000.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("PT{text}S")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_graph_durations() {
        assert_eq!(iso8601_duration_ms("PT0.015S"), Some(15.0));
        assert_eq!(iso8601_duration_ms("PT1S"), Some(1000.0));
        assert_eq!(iso8601_duration_ms("PT1M2.5S"), Some(62_500.0));
        assert_eq!(iso8601_duration_ms("PT1H"), Some(3_600_000.0));
        assert_eq!(iso8601_duration_ms("P1DT1S"), Some(86_401_000.0));
        assert_eq!(iso8601_duration_ms("P2D"), Some(172_800_000.0));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "", "P", "PT", "T1S", "PT-1S", "PT1", "PT1S2", "P1Y", "PT1.2.3S", "PT.S", "PTS", "P1M",
            "PT1S1M", "pt1s",
        ] {
            assert_eq!(iso8601_duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0.0, 1.0, 12.0, 999.0, 1000.0, 61_234.0] {
            assert_eq!(iso8601_duration_ms(&format_iso8601_ms(ms)), Some(ms));
        }
        assert_eq!(format_iso8601_ms(15.0), "PT0.015S");
        assert_eq!(format_iso8601_ms(2000.0), "PT2S");
        assert_eq!(format_iso8601_ms(-3.0), "PT0S");
        assert_eq!(format_iso8601_ms(f64::NAN), "PT0S");
    }

    #[test]
    fn stream_accessors_read_iso_fields() {
        let s = MediaStream {
            stream_direction: "callerToCallee".into(),
            average_jitter: Some("PT0.012S".into()),
            max_jitter: Some("garbage".into()),
            average_round_trip_time: Some("PT0.08S".into()),
            ..MediaStream::default()
        };
        assert_eq!(s.average_jitter_ms(), Some(12.0));
        assert_eq!(s.max_jitter_ms(), None);
        assert_eq!(s.average_round_trip_ms(), Some(80.0));
    }
}
