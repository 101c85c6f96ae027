//! Call-tracker tests in simulated time: SIP messages written as text the way the peers
//! write them, fed to the policy hooks in the order the proxy calls them, timers run from
//! deadline to deadline exactly as the proxy's loop does, records read from a
//! [`MemorySink`].
//!
//! - [`answered`]: BYE either way, exact durations, forks, retransmissions, missing ACK.
//! - [`failed`]: CANCEL, rejects (downstream and proxy-built), timeouts.
//! - [`timers`]: RFC 4028 session timers and the maximum duration.
//! - [`recovery`]: calls journaled before a restart.
//! - [`limits`]: full sink, `max_calls`, emergency calls, attribution by the number policy.
//! - [`proxy`]: the tracker installed in the real [`crate::proxy::core::Proxy`].

use std::sync::Arc;

use bytes::Bytes;

use super::{CallTracker, MemorySink, TrackerConfig, WallClock};
use crate::cdr::CallRecord;
use crate::config::Side;
use crate::proxy::policy::{AllowAll, Policy, Verdict};
use crate::proxy::transaction::Millis;
use crate::sip::{Limits, Message};

mod answered;
mod failed;
mod limits;
mod proxy;
mod recovery;
mod timers;

/// UTC of the tracker's `Millis(0)`.
pub(super) const EPOCH: u64 = 1_795_000_000_000;
/// The caller and callee of every call unless a test says otherwise.
pub(super) const CALLER: &str = "+14255550100";
pub(super) const CALLEE: &str = "+12065550123";

pub(super) fn parse(text: &str) -> Message {
    match Message::parse(Bytes::from(text.to_owned()), &Limits::DEFAULT) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}:\n{text}"),
    }
}

fn with_extra(mut s: String, extra: &[&str]) -> String {
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// One call's identity: Call-ID, the caller's From tag, the numbers.
#[derive(Debug, Clone)]
pub(super) struct Dlg {
    pub call_id: String,
    pub tag: String,
    pub caller: String,
    pub callee: String,
}

impl Dlg {
    pub fn new(call_id: &str) -> Dlg {
        Dlg {
            call_id: call_id.into(),
            tag: format!("{call_id}-ft"),
            caller: CALLER.into(),
            callee: CALLEE.into(),
        }
    }

    fn caller_addr(&self, to_tag: Option<&str>) -> String {
        format!("<sip:{}@192.0.2.11;user=phone>{}", self.caller, tag(to_tag))
    }

    fn callee_addr(&self, to_tag: Option<&str>) -> String {
        format!("<sip:{}@10.9.9.9;user=phone>{}", self.callee, tag(to_tag))
    }

    fn head(&self, line: &str, from: &str, to: &str, cseq: &str, branch: &str) -> String {
        format!(
            "{line}\r\nVia: SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq}\r\n",
            self.call_id
        )
    }

    /// The INVITE (CSeq 1).
    pub fn invite(&self, extra: &[&str]) -> Message {
        let line = format!("INVITE sip:{}@gw;user=phone SIP/2.0", self.callee);
        let (from, to) = (self.caller_addr(Some(&self.tag)), self.callee_addr(None));
        let s = self.head(
            &line,
            &from,
            &to,
            "1 INVITE",
            &format!("{}-inv", self.call_id),
        );
        parse(&with_extra(s, extra))
    }

    /// A response to a caller's request (`cseq` like "1 INVITE"), To tag added if given,
    /// with the request's Via.
    pub fn resp(&self, status: u16, to_tag: Option<&str>, cseq: &str, extra: &[&str]) -> Message {
        let (from, to) = (self.caller_addr(Some(&self.tag)), self.callee_addr(to_tag));
        let branch = match cseq.split_once(' ') {
            Some(("1", "INVITE")) => format!("{}-inv", self.call_id),
            Some((_, method)) => method.to_owned(),
            None => String::new(),
        };
        let s = self.head(&format!("SIP/2.0 {status} X"), &from, &to, cseq, &branch);
        parse(&with_extra(s, extra))
    }

    /// A request of the caller in the dialog with the callee's `to_tag`.
    pub fn caller_req(&self, method: &str, cseq: u32, to_tag: &str, extra: &[&str]) -> Message {
        let line = format!("{method} sip:callee@10.9.9.9 SIP/2.0");
        let (from, to) = (
            self.caller_addr(Some(&self.tag)),
            self.callee_addr(Some(to_tag)),
        );
        let s = self.head(&line, &from, &to, &format!("{cseq} {method}"), method);
        parse(&with_extra(s, extra))
    }

    /// A request of the callee (`to_tag` is its tag) in the dialog.
    pub fn callee_req(&self, method: &str, cseq: u32, to_tag: &str, extra: &[&str]) -> Message {
        let line = format!("{method} sip:caller@192.0.2.11 SIP/2.0");
        let (from, to) = (
            self.callee_addr(Some(to_tag)),
            self.caller_addr(Some(&self.tag)),
        );
        let s = self.head(&line, &from, &to, &format!("{cseq} {method}"), method);
        parse(&with_extra(s, extra))
    }

    /// The caller's 2xx to a callee request.
    pub fn callee_req_ok(&self, method: &str, cseq: u32, to_tag: &str, extra: &[&str]) -> Message {
        let (from, to) = (
            self.callee_addr(Some(to_tag)),
            self.caller_addr(Some(&self.tag)),
        );
        let cseq = format!("{cseq} {method}");
        let s = self.head("SIP/2.0 200 OK", &from, &to, &cseq, method);
        parse(&with_extra(s, extra))
    }
}

fn tag(t: Option<&str>) -> String {
    t.map(|t| format!(";tag={t}")).unwrap_or_default()
}

/// A tracker around a policy, its sink and the simulated clock.
pub(super) struct H<P: Policy + super::Attribute = AllowAll> {
    pub t: CallTracker<P>,
    pub sink: Arc<MemorySink>,
    pub now: u64,
}

pub(super) fn cfg() -> TrackerConfig {
    TrackerConfig {
        max_call_duration: std::time::Duration::from_secs(3600),
        max_calls: 100,
        ..TrackerConfig::default()
    }
}

impl H {
    pub fn new() -> H {
        H::with(AllowAll, cfg())
    }
}

impl<P: Policy + super::Attribute> H<P> {
    pub fn with(inner: P, cfg: TrackerConfig) -> H<P> {
        let sink = Arc::new(MemorySink::new());
        let t = CallTracker::new(inner, sink.clone(), WallClock::new(EPOCH), cfg);
        H { t, sink, now: 0 }
    }

    /// Runs every deadline up to `ms` at its own time, then sets the clock to `ms`.
    pub fn at(&mut self, ms: u64) -> &mut Self {
        assert!(ms >= self.now, "time goes forward");
        while let Some(Millis(due)) = self.t.poll_timeout().filter(|d| d.0 <= ms) {
            self.now = due;
            self.t.handle_timeout(Millis(due));
        }
        self.now = ms;
        self
    }

    pub fn req(&mut self, side: Side, msg: &Message) -> &mut Self {
        self.t.on_request(Millis(self.now), side, msg);
        self
    }

    pub fn check(&mut self, side: Side, msg: &Message) -> Verdict {
        self.t.check(Millis(self.now), side, msg)
    }

    pub fn resp(&mut self, side: Side, msg: &Message) -> &mut Self {
        self.t.on_response(Millis(self.now), side, msg);
        self
    }

    /// A new call from the carrier as the proxy sees it: on_request, check (must let it
    /// through), forward to `sbc1`.
    pub fn start(&mut self, d: &Dlg) -> &mut Self {
        let inv = d.invite(&[]);
        self.req(Side::Carrier, &inv);
        let v = self.check(Side::Carrier, &inv);
        assert!(!matches!(v, Verdict::Reject { .. }), "{v:?}");
        self.t.on_forward(Millis(self.now), &inv, "sbc1");
        self
    }

    /// The 200 with `to_tag` (extra headers given), then the ACK at the same time.
    pub fn answer(&mut self, d: &Dlg, to_tag: &str, extra: &[&str]) -> &mut Self {
        self.resp(Side::Carrier, &d.resp(200, Some(to_tag), "1 INVITE", extra));
        self.req(Side::Carrier, &d.caller_req("ACK", 1, to_tag, &[]))
    }

    /// The caller's BYE.
    pub fn bye(&mut self, d: &Dlg, to_tag: &str) -> &mut Self {
        self.req(Side::Carrier, &d.caller_req("BYE", 2, to_tag, &[]))
    }

    pub fn records(&self) -> Vec<CallRecord> {
        self.sink.closes()
    }

    /// The only record.
    pub fn record(&self) -> CallRecord {
        let r = self.records();
        assert_eq!(r.len(), 1, "{r:#?}");
        r[0].clone()
    }
}

#[test]
fn config_follows_cdr_and_timer_c() {
    let cdr = crate::config::Cdr {
        max_calls: 7,
        max_call_duration: crate::config::Dur(std::time::Duration::from_secs(60)),
        ..crate::config::Cdr::default()
    };
    let c = TrackerConfig::from_config(&cdr);
    assert_eq!((c.max_calls, c.max_call_duration.as_secs()), (7, 60));
    assert_eq!(c.no_ack_timeout.as_secs(), 32);
    assert_eq!(c.pending_timeout.as_secs(), 181 + 32);
    let c = c.with_timer_c(std::time::Duration::from_secs(300));
    assert_eq!(c.pending_timeout.as_secs(), 332);
}

#[test]
fn wall_clock_maps_monotonic_times_both_ways() {
    let c = WallClock::anchored(EPOCH + 5_000, Millis(5_000));
    assert_eq!(c, WallClock::new(EPOCH));
    assert_eq!(c.utc(Millis(1_234)), EPOCH + 1_234);
    assert_eq!(c.millis(EPOCH + 1_234), Millis(1_234));
    assert_eq!(c.millis(EPOCH - 1), Millis(0), "before the epoch");
    assert_eq!(c.utc(Millis(u64::MAX)), u64::MAX, "saturates");
}
