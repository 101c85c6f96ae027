//! Call timing (issue 5), sans-IO: the [`CallTracker`] watches the proxy's policy hooks,
//! times every call and hands finished [`CallRecord`](crate::cdr::CallRecord)s (and the
//! journal entry of every answered call, [`OpenCall`](crate::cdr::OpenCall)) to a
//! [`CdrSink`].
//!
//! The tracker is the proxy's [`Policy`](crate::proxy::policy::Policy): it wraps the number
//! policy (or `AllowAll`), delegates `check` and `observe` to it, and learns about calls
//! from `on_request`, `on_forward` and `on_response`. Its timers run through
//! `poll_timeout`/`handle_timeout`, which the proxy merges into its own.
//!
//! # What a call is
//!
//! - An **attempt** is an out-of-dialog INVITE (Call-ID, From tag, CSeq), from `on_request`
//!   until its final response. Its start is when the INVITE arrived; its `sbc` the last
//!   destination it was forwarded to. A final 3xx–6xx closes it as a failed record (487:
//!   cancelled; 408, the proxy's Timer C answer included: timeout), To tag from that
//!   final response (a proxy-built reject carries ours), else empty. After a 2xx the attempt
//!   lingers `no_ack_timeout` (64·T1, RFC 6026 Timer L) to catch further forked 2xx, then
//!   goes; one that never gets a final response is closed as a 408 timeout
//!   `pending_timeout` after its last activity (Timer C plus margin).
//! - A **dialog** is each distinct To tag a 2xx of the attempt carries: its own record, its
//!   own id ([`crate::cdr::record_id`]), journaled with [`CdrSink::open`] when answered.
//!   It ends at the first of: a BYE from either side (caller's when its From tag is the
//!   INVITE's; the end is when the BYE arrived), the RFC 4028 session expiring (last 2xx to
//!   the INVITE or a re-INVITE/UPDATE refresh, plus the interval it negotiated; a refresh 2xx
//!   without Session-Expires turns the timer off, as the RFC says), the configured maximum
//!   duration after the answer, or a missing ACK.
//! - **No ACK**: a 2xx no ACK confirmed within `no_ack_timeout` (64·T1 = 32 s) means the
//!   caller never learnt of the answer (RFC 3261 §13.3.1.4: the callee then hangs up). The
//!   record is written at that deadline as answered with end = answer, so the billable
//!   duration is 0: nobody talked. Any request of the caller in the dialog counts as its
//!   ACK (the ACK itself may have been lost before reaching us).
//! - Session intervals below RFC 4028's floor of 90 s are read as 90 s, so a bogus header
//!   cannot end a record while the call goes on.
//!
//! # Never lose a record
//!
//! New INVITEs are refused with 503 while the sink reports itself full ("CDR Spool Full")
//! and while `max_calls` calls are held ("Too Many Calls"; answered dialogs plus attempts
//! without a final response): a call is only let in when it can be recorded. Calls already
//! up are never refused anything, and a call answered while the sink is full is still
//! timed and closed. A call the tracker refused for a full sink gets no failed record: the
//! spool is full because records are not being drained, and a flood of refused INVITEs
//! must not grow it further. Every other refusal, the inner policy's included, gets one.
//! Emergency calls are never refused by the tracker.
//!
//! # Recovery
//!
//! [`CallTracker::recover`] re-inserts the calls journaled before a restart: a BYE then
//! closes one with its true duration (the answer time comes from the journal). A
//! session-timed one gets its last negotiated interval (a refresh that changes it journals
//! the call again), counted from the restart. Until any in-dialog message
//! shows it alive, a recovered call ends as `recovered`: at its session expiry, else at
//! answer + maximum duration (at once when that is already past); once seen alive it ends
//! like any other call.
//!
//! # Memory
//!
//! Per call: the Call-ID, tags, numbers and ids as `String`s and a few timestamps, never a
//! message. Attempts go at their final response (answered ones 64·T1 later), dialogs at
//! their end; every entry has exactly one deadline in a timer heap (outdated entries dropped
//! lazily, `proxy::transaction::DeadlineHeap`), so the next timer is found without a scan
//! and nothing outlives its deadline.

mod attribute;
mod dialogs;
mod sink;
mod stats;
mod table;
mod tracker;

pub use attribute::Attribute;
pub use sink::{CdrSink, MemoryLog, MemorySink, SinkFull};
pub use stats::TrackerStats;
pub use tracker::CallTracker;

pub use crate::proxy::numbers_policy::Attribution;

use std::time::Duration;

use crate::cdr::UtcMs;
use crate::proxy::transaction::Millis;

/// Maps the proxy's monotonic [`Millis`] (ms since its epoch) to UTC milliseconds. Built
/// once at start from one reading of the system clock; records never read a clock again, so
/// durations are exact differences of monotonic times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    epoch_utc_ms: UtcMs,
}

impl WallClock {
    /// A clock whose `Millis(0)` is `epoch_utc_ms`.
    pub fn new(epoch_utc_ms: UtcMs) -> WallClock {
        WallClock { epoch_utc_ms }
    }

    /// A clock on which monotonic `at` is UTC `utc_ms` (e.g. `SystemTime::now()` read at
    /// the same moment as the proxy's `now`).
    pub fn anchored(utc_ms: UtcMs, at: Millis) -> WallClock {
        WallClock::new(utc_ms.saturating_sub(at.0))
    }

    /// UTC of the proxy's epoch.
    pub fn epoch_utc_ms(&self) -> UtcMs {
        self.epoch_utc_ms
    }

    /// UTC of a monotonic time.
    pub fn utc(&self, t: Millis) -> UtcMs {
        self.epoch_utc_ms.saturating_add(t.0)
    }

    /// The monotonic time of a UTC time; [`Millis`]`(0)` for anything before the epoch.
    pub fn millis(&self, utc: UtcMs) -> Millis {
        Millis(utc.saturating_sub(self.epoch_utc_ms))
    }
}

/// The tracker's bounds and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// A call still up this long after its answer is ended (`max_duration`).
    pub max_call_duration: Duration,
    /// Most calls held at once (answered dialogs plus attempts without a final response);
    /// beyond it new INVITEs get 503.
    pub max_calls: usize,
    /// How long a 2xx may go unacknowledged (64·T1); also how long an answered attempt
    /// waits for further forked 2xx.
    pub no_ack_timeout: Duration,
    /// How long an attempt without any final response is kept after its last activity
    /// (INVITE, forward, provisional response) before it is closed as a timeout: the
    /// proxy's Timer C plus a margin, so the proxy's own 408 normally closes it first.
    pub pending_timeout: Duration,
}

/// RFC 3261 64·T1 with T1 = 500 ms.
const DEFAULT_NO_ACK: Duration = Duration::from_secs(32);

/// Timer C's default (181 s) plus 64·T1.
const DEFAULT_PENDING: Duration = Duration::from_secs(181 + 32);

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig::from_config(&crate::config::Cdr::default())
    }
}

impl TrackerConfig {
    /// The `[cdr]` settings; the timeouts take their defaults (32 s, 213 s).
    pub fn from_config(cfg: &crate::config::Cdr) -> TrackerConfig {
        TrackerConfig {
            max_call_duration: cfg.max_call_duration.0,
            max_calls: cfg.max_calls,
            no_ack_timeout: DEFAULT_NO_ACK,
            pending_timeout: DEFAULT_PENDING,
        }
    }

    /// Follows the proxy's Timer C (`[timers] timer_c`): an attempt is given up 64·T1
    /// after the proxy would have answered it with 408 itself.
    pub fn with_timer_c(self, timer_c: Duration) -> TrackerConfig {
        TrackerConfig {
            pending_timeout: timer_c.saturating_add(self.no_ack_timeout),
            ..self
        }
    }
}

#[cfg(test)]
mod tests;
