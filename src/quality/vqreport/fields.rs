//! The typed fields of a report: the parameter groups of a metrics block, the endpoints and the
//! alert, each a struct of `Option`s made by `fields!` with a case-insensitive setter that reads
//! its values with the parsers of `values`. A refused value leaves the field as it was, so a good
//! earlier value survives a bad duplicate.

use std::net::IpAddr;

use super::time::utc_ms;
use super::values::{
    code, direction, ip_addr, jb_rate, level, mos, on_off, payload_type, percent, r_factor,
    severity, ssrc, text, uint,
};
use crate::cdr::UtcMs;

/// What a group's `set` returns: the parameter's index in the group's `KEYS`, `None` for a name
/// the group does not know, or why the value was refused.
pub(super) type SetResult = Result<Option<usize>, &'static str>;

/// A struct of `Option` fields, one per RFC parameter, and `set`, which fills one by name.
macro_rules! fields {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$fdoc:meta])* $key:literal $field:ident: $ty:ty = $parse:expr;)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: Option<$ty>,)*
        }

        impl $name {
            /// The parameter names of this group as RFC 6035 spells them, in its order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Sets the parameter `key` (ASCII case-insensitive); `value` `None` is unavailable.
            pub(super) fn set(&mut self, key: &str, value: Option<&str>) -> SetResult {
                let mut index = 0;
                $(
                    if key.eq_ignore_ascii_case($key) {
                        self.$field = value.map($parse).transpose()?;
                        return Ok(Some(index));
                    }
                    index += 1;
                )*
                let _ = index;
                Ok(None)
            }
        }
    };
}

fields! {
    /// `LocalAddr`/`RemoteAddr`: where a side's RTP stream comes from.
    Endpoint {
        /// IP: the address (IPv6 with or without brackets).
        "IP" ip: IpAddr = ip_addr;
        /// PORT: the RTP port.
        "PORT" port: u16 = uint;
        /// SSRC: `0x` and hex digits per the RFC; bare hex (the RFC's own example) and bare
        /// decimal (some phones) are read too: digits only are decimal, any `a`–`f` makes hex.
        "SSRC" ssrc: u32 = ssrc;
    }
}

fields! {
    /// The `Type=… Severity=… Dir=…` of a `VQAlertReport`.
    Alert {
        /// Type: the metric that crossed its threshold (`MOSLQ`, `RLQ`, `NLR`, …), as sent.
        "Type" metric: String = text;
        /// Severity: `Warning`, `Critical` or `Clear`.
        "Severity" severity: Severity = severity;
        /// Dir: whether the local or the remote metrics crossed it.
        "Dir" direction: Direction = direction;
    }
}

fields! {
    /// `SessionDesc`: the codec and how it is packetised.
    SessionDesc {
        /// PT: RTP payload type, 0–127.
        "PT" pt: u8 = payload_type;
        /// PD: payload description (`G729`, `PCMU`, …).
        "PD" pd: String = text;
        /// SR: sample rate, Hz.
        "SR" sr: u32 = uint;
        /// FD: frame duration, ms.
        "FD" fd: u16 = uint;
        /// FO: frame size, octets.
        "FO" fo: u16 = uint;
        /// FPP: frames per packet.
        "FPP" fpp: u16 = uint;
        /// PPS: packets per second.
        "PPS" pps: u16 = uint;
        /// FMTP: the SDP format parameters, quotes removed.
        "FMTP" fmtp: String = text;
        /// PLC: loss concealment: 0 unspecified, 1 disabled, 2 enhanced, 3 standard.
        "PLC" plc: u8 = code;
        /// SSUP: silence suppression on (`true`) or off.
        "SSUP" ssup: bool = on_off;
    }
}

fields! {
    /// `JitterBuffer`: the receiver's jitter buffer.
    JitterBuffer {
        /// JBA: adaptation: 0 unknown, 1 reserved, 2 non-adaptive, 3 adaptive.
        "JBA" jba: u8 = code;
        /// JBR: adaptation rate, 0–15.
        "JBR" jbr: u8 = jb_rate;
        /// JBN: nominal delay, ms.
        "JBN" jbn: u32 = uint;
        /// JBM: maximum delay, ms.
        "JBM" jbm: u32 = uint;
        /// JBX: absolute maximum delay, ms.
        "JBX" jbx: u32 = uint;
    }
}

fields! {
    /// `PacketLoss`: packets lost in the network and discarded by the jitter buffer.
    PacketLoss {
        /// NLR: network loss rate, percent.
        "NLR" nlr: f32 = percent;
        /// JDR: jitter buffer discard rate, percent.
        "JDR" jdr: f32 = percent;
    }
}

fields! {
    /// `BurstGapLoss`: loss split into bursts and the gaps between them.
    BurstGapLoss {
        /// BLD: loss density within bursts, percent.
        "BLD" bld: f32 = percent;
        /// BD: mean burst duration, ms.
        "BD" bd: u32 = uint;
        /// GLD: loss density within gaps, percent.
        "GLD" gld: f32 = percent;
        /// GD: mean gap duration, ms.
        "GD" gd: u32 = uint;
        /// GMIN: the gap threshold, packets.
        "GMIN" gmin: u16 = uint;
    }
}

fields! {
    /// `Delay`: round trip, end system and jitter figures.
    Delay {
        /// RTD: round-trip delay, ms.
        "RTD" rtd: u32 = uint;
        /// ESD: end system delay, ms.
        "ESD" esd: u32 = uint;
        /// OWD: one-way delay, ms.
        "OWD" owd: u32 = uint;
        /// SOWD: symmetric one-way delay, ms.
        "SOWD" sowd: u32 = uint;
        /// IAJ: interarrival jitter (RFC 3550), ms.
        "IAJ" iaj: u32 = uint;
        /// MAJ: mean absolute jitter (packet delay variation), ms.
        "MAJ" maj: u32 = uint;
    }
}

fields! {
    /// `Signal`: speech, noise and echo levels.
    Signal {
        /// SL: signal level, dBm0 (negative).
        "SL" sl: i16 = level;
        /// NL: noise level, dBm0 (negative).
        "NL" nl: i16 = level;
        /// RERL: residual echo return loss, dB.
        "RERL" rerl: u16 = uint;
    }
}

fields! {
    /// `QualityEst`: R factors and mean opinion scores.
    QualityEst {
        /// RLQ: listening quality R factor, 0–120.
        "RLQ" rlq: u8 = r_factor;
        /// RCQ: conversational quality R factor, 0–120.
        "RCQ" rcq: u8 = r_factor;
        /// EXTRI: external R factor in, 0–120.
        "EXTRI" extri: u8 = r_factor;
        /// EXTRO: external R factor out, 0–120.
        "EXTRO" extro: u8 = r_factor;
        /// MOSLQ: listening quality MOS, 1.0–5.0.
        "MOSLQ" moslq: f32 = mos;
        /// MOSCQ: conversational quality MOS, 1.0–5.0.
        "MOSCQ" moscq: f32 = mos;
        /// QoEEstAlg: the estimation algorithm (`P.564`, …).
        "QoEEstAlg" qoe_est_alg: String = text;
    }
}

/// `Timestamps`: the period the metrics cover. The text is kept as sent; the time in UTC
/// milliseconds is there when it reads as an RFC 3339 date-time (see `time`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timestamps {
    /// START as sent.
    pub start: Option<String>,
    /// STOP as sent.
    pub stop: Option<String>,
    /// START, ms since the Unix epoch, UTC.
    pub start_ms: Option<UtcMs>,
    /// STOP, ms since the Unix epoch, UTC.
    pub stop_ms: Option<UtcMs>,
}

impl Timestamps {
    /// The parameter names, as for the other groups.
    pub const KEYS: &'static [&'static str] = &["START", "STOP"];

    /// Like the other groups' `set`, except that a date-time that does not parse keeps its
    /// text (and is still reported as refused).
    pub(super) fn set(&mut self, key: &str, value: Option<&str>) -> SetResult {
        let (index, text, ms) = if key.eq_ignore_ascii_case("START") {
            (0, &mut self.start, &mut self.start_ms)
        } else if key.eq_ignore_ascii_case("STOP") {
            (1, &mut self.stop, &mut self.stop_ms)
        } else {
            return Ok(None);
        };
        *text = value.map(str::to_owned);
        *ms = value.and_then(utc_ms);
        match (value, *ms) {
            (Some(_), None) => Err("not an RFC 3339 date-time (text kept)"),
            _ => Ok(Some(index)),
        }
    }
}

/// One metrics block (`LocalMetrics:` or `RemoteMetrics:`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// `Timestamps`.
    pub timestamps: Timestamps,
    /// `SessionDesc`.
    pub session_desc: SessionDesc,
    /// `JitterBuffer`.
    pub jitter_buffer: JitterBuffer,
    /// `PacketLoss`.
    pub packet_loss: PacketLoss,
    /// `BurstGapLoss`.
    pub burst_gap_loss: BurstGapLoss,
    /// `Delay`.
    pub delay: Delay,
    /// `Signal`.
    pub signal: Signal,
    /// `QualityEst`.
    pub quality_est: QualityEst,
}

/// The line names of a metrics block, in RFC order; `Metrics::set` takes an index into it.
pub(super) const GROUPS: [&str; 8] = [
    "Timestamps",
    "SessionDesc",
    "JitterBuffer",
    "PacketLoss",
    "BurstGapLoss",
    "Delay",
    "Signal",
    "QualityEst",
];

impl Metrics {
    /// Sets parameter `key` of the group `GROUPS[group]`.
    pub(super) fn set(&mut self, group: usize, key: &str, value: Option<&str>) -> SetResult {
        match group {
            0 => self.timestamps.set(key, value),
            1 => self.session_desc.set(key, value),
            2 => self.jitter_buffer.set(key, value),
            3 => self.packet_loss.set(key, value),
            4 => self.burst_gap_loss.set(key, value),
            5 => self.delay.set(key, value),
            6 => self.signal.set(key, value),
            7 => self.quality_est.set(key, value),
            _ => Ok(None),
        }
    }
}

/// An alert's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `Warning`.
    Warning,
    /// `Critical`.
    Critical,
    /// `Clear`: the metric is back within its threshold.
    Clear,
}

/// Which side's metrics an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `local`: what the reporter received.
    Local,
    /// `remote`: what its peer received.
    Remote,
}
