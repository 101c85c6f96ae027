//! The seam where the number policy (issue 4) and call timing (issue 5) plug into the proxy.
//!
//! A [`Policy`] decides on every new out-of-dialog request before it is forwarded, and
//! observes every transaction event. The proxy owns one per shard and calls it inline, so
//! implementations must be fast and must not block (lookups in a lock-free table, appends
//! to a bounded queue).

use crate::config::Side;
use crate::proxy::transaction::{Event, Millis};
use crate::sip::Message;

/// A policy's decision on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Forward it with this Request-URI (e.g. the number's assigned SIP URI).
    AllowRewrite {
        /// The new Request-URI.
        request_uri: String,
    },
    /// Refuse it with this status and reason phrase.
    Reject {
        /// Status code (4xx–6xx).
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// What a policy reports about itself (metrics, `/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// The number policy's decisions, when there is one.
    pub numbers: Option<crate::proxy::numbers_policy::PolicyStats>,
    /// The call tracker's counters, when calls are timed.
    pub calls: Option<crate::calls::TrackerStats>,
}

/// Decides on requests and observes transactions; see the module documentation.
pub trait Policy: Send {
    /// Called for each new out-of-dialog request received on `side`, after validation, ACL
    /// and flood control, before a destination is chosen.
    fn check(&mut self, now: Millis, side: Side, msg: &Message) -> Verdict;

    /// Called for every transaction event, in order.
    fn observe(&mut self, _event: &Event) {}

    /// Called for every request received on `side` that starts a server transaction (new
    /// or in-dialog; for out-of-dialog ones before [`Policy::check`]) and for every ACK
    /// passed through end to end, after source ACL, validation, loop and flood checks.
    fn on_request(&mut self, _now: Millis, _side: Side, _msg: &Message) {}

    /// Called each time an out-of-dialog request (`msg`, as received) is forwarded to a
    /// destination chosen from a set (the first try and every failover), with its name.
    fn on_forward(&mut self, _now: Millis, _msg: &Message, _dest: &str) {}

    /// Called for every response (100 Trying excepted) sent upstream on a server
    /// transaction whose request came from `side`: relayed from downstream (every 2xx of a
    /// forked INVITE included) or built by the proxy (rejects, 408, 503, 487).
    fn on_response(&mut self, _now: Millis, _side: Side, _response: &Message) {}

    /// When [`Policy::handle_timeout`] must next be called (e.g. session timers).
    fn poll_timeout(&self) -> Option<Millis> {
        None
    }

    /// Runs the policy's timers due at `now`.
    fn handle_timeout(&mut self, _now: Millis) {}

    /// Counters for metrics and status.
    fn report(&self) -> PolicyReport {
        PolicyReport::default()
    }

    /// Takes the reloadable settings of a new configuration (reload).
    fn reconfigure(&mut self, _cfg: &crate::config::Config) {}
}

/// Where RFC 6035 voice-quality reports (PUBLISH, `Event: vq-rtcpxr`) accepted from the
/// configured SBCs go. Called inline by the proxy: implementations queue the body (bounded)
/// and parse it elsewhere.
pub trait QualityIntake: Send + Sync {
    /// The report body sent by the SBC named `sbc`, received at `now`.
    fn report(&self, sbc: &str, body: bytes::Bytes);
}

/// The policy until the number policy lands: allows everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn check(&mut self, _now: Millis, _side: Side, _msg: &Message) -> Verdict {
        Verdict::Allow
    }
}
