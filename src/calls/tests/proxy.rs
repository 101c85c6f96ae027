//! The tracker installed as the policy of the real [`Proxy`], in simulated time: the hooks
//! are called where the proxy says they are (requests, forwards, responses upstream, the
//! proxy's own answers) and the tracker's timers run through the proxy's.

use std::sync::Arc;

use bytes::Bytes;

use super::{parse, EPOCH};
use crate::calls::{CallTracker, MemorySink, TrackerConfig, WallClock};
use crate::cdr::{Disposition, EndReason};
use crate::proxy::core::{Proxy, Received};
use crate::proxy::policy::AllowAll;
use crate::proxy::testkit::{self, one, udp, vals, Pair, MS_NAME};
use crate::proxy::transaction::Millis;
use crate::sip::Message;
use crate::transport::Target;

const GW_MS: &str = "10.0.0.1:5066";
const GW_CARRIER: &str = "10.0.0.1:5062";

/// One proxy (listener 0: Microsoft side, 1: carrier side), one Microsoft target, one SBC.
struct Gw {
    proxy: Proxy,
    sink: Arc<MemorySink>,
    now: u64,
    ms: Target,
    sbc: Target,
}

impl Gw {
    fn new() -> Gw {
        let (ms, sbc) = (udp("52.112.0.10:5060"), udp("192.0.2.11:5060"));
        let sink = Arc::new(MemorySink::new());
        let tracker = CallTracker::new(
            AllowAll,
            sink.clone(),
            WallClock::new(EPOCH),
            TrackerConfig::default(),
        );
        let pair = Pair {
            listeners: [GW_MS, GW_CARRIER],
            ms,
            sbc,
            acl: ["52.112.0.0/14", "192.0.2.0/24"],
            flood: 1000.0,
            max_transactions: 1000,
        };
        Gw {
            proxy: Proxy::new(testkit::setup(pair, Box::new(tracker))),
            sink,
            now: 0,
            ms,
            sbc,
        }
    }

    /// Runs the proxy's deadlines up to `ms` (the tracker's are among them), then delivers
    /// `text` from `from`; returns what the proxy sent.
    fn send(&mut self, ms: u64, from: Target, text: &str) -> Vec<Message> {
        self.advance(ms);
        let listener = usize::from(from == self.sbc);
        let r = Received {
            msg: parse(text),
            source: from,
            listener,
        };
        self.proxy.handle(Millis(self.now), r);
        self.out()
    }

    fn advance(&mut self, ms: u64) {
        while let Some(Millis(at)) = self.proxy.poll_timeout().filter(|t| t.0 <= ms) {
            self.now = self.now.max(at);
            self.proxy.handle_timeout(Millis(self.now));
        }
        self.now = self.now.max(ms);
        self.out();
    }

    fn out(&mut self) -> Vec<Message> {
        let bytes: Vec<Bytes> = self.proxy.drain_output().map(|o| o.bytes).collect();
        bytes
            .iter()
            .map(|b| parse(&String::from_utf8_lossy(b)))
            .collect()
    }
}

/// The response a UA writes to `req`: Vias and Record-Route copied, To tag added.
fn reply(req: &Message, status: u16, tag: &str, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {status} X\r\n");
    for v in vals(req, "Via") {
        s += &format!("Via: {v}\r\n");
    }
    for rr in vals(req, "Record-Route") {
        s += &format!("Record-Route: {rr}\r\n");
    }
    s += &format!(
        "From: {}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:callee@52.112.0.10:5060;transport=udp>\r\n{extra}Content-Length: 0\r\n\r\n",
        one(req, "From"),
        one(req, "To"),
        one(req, "Call-ID"),
        one(req, "CSeq"),
    );
    s
}

const INVITE: &str = "INVITE sip:+12065550123@10.0.0.1:5062;user=phone SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n\
    From: <sip:+14255550100@192.0.2.11;user=phone>;tag=caller\r\n\
    To: <sip:+12065550123@10.0.0.1;user=phone>\r\nCall-ID: px1\r\nCSeq: 1 INVITE\r\n\
    Contact: <sip:+14255550100@192.0.2.11:5060>\r\nContent-Length: 0\r\n\r\n";

fn cancel() -> String {
    INVITE
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("1 INVITE", "1 CANCEL")
}

/// The caller's ACK for the 2xx, along the route set (Record-Route reversed).
fn ack(answer: &Message) -> String {
    let mut routes = vals(answer, "Record-Route");
    routes.reverse();
    format!(
        "ACK sip:callee@52.112.0.10:5060;transport=udp SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.11:5060;branch=z9hG4bKack1\r\nRoute: {}\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: px1\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        routes.join(", "),
        one(answer, "From"),
        one(answer, "To"),
    )
}

/// The callee's BYE, along the Record-Route of the INVITE it received.
fn callee_bye(invite: &Message, to: &str) -> String {
    format!(
        "BYE sip:+14255550100@192.0.2.11:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 52.112.0.10:5060;branch=z9hG4bKbye1\r\nRoute: {}\r\n\
         Max-Forwards: 70\r\nFrom: {to}\r\nTo: {}\r\nCall-ID: px1\r\nCSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        vals(invite, "Record-Route").join(", "),
        one(invite, "From"),
    )
}

#[test]
fn a_call_through_the_proxy_is_timed_from_invite_to_callee_bye() {
    let mut gw = Gw::new();
    let (ms, sbc) = (gw.ms, gw.sbc);
    let out = gw.send(100, sbc, INVITE);
    let fwd = out.into_iter().find(|m| m.is_request()).expect("forwarded");
    gw.send(500, ms, &reply(&fwd, 180, "ms", ""));
    let se = "Session-Expires: 1800;refresher=uac\r\n";
    let up = gw.send(1_234, ms, &reply(&fwd, 200, "ms", se));
    let answer = up
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    assert_eq!(gw.sink.opens().len(), 1, "journaled at the answer");
    let acked = gw.send(1_300, sbc, &ack(&answer));
    assert_eq!(acked.len(), 1, "ACK forwarded");
    // Past 64·T1: the ACK was seen, the call stays up.
    gw.advance(40_000);
    assert!(gw.sink.closes().is_empty());
    let bye = callee_bye(&fwd, &one(&answer, "To"));
    let sent = gw.send(61_234, ms, &bye);
    assert_eq!(sent.len(), 1, "BYE forwarded");
    let r = gw.sink.closes();
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.end_reason, EndReason::CalleeBye);
    assert_eq!(
        (r.start_ms, r.answer_ms),
        (EPOCH + 100, Some(EPOCH + 1_234))
    );
    assert_eq!(r.duration_ms, 60_000);
    assert_eq!(r.sbc, MS_NAME, "the destination it was forwarded to");
    assert_eq!(r.id, gw.sink.opens()[0].record.id);
}

#[test]
fn a_cancel_through_the_proxy_gives_a_cancelled_record() {
    let mut gw = Gw::new();
    let (ms, sbc) = (gw.ms, gw.sbc);
    let fwd = gw.send(0, sbc, INVITE).into_iter().find(|m| m.is_request());
    let fwd = fwd.expect("forwarded");
    gw.send(200, ms, &reply(&fwd, 180, "ms", ""));
    let out = gw.send(3_000, sbc, &cancel());
    let fwd_cancel = out.into_iter().find(|m| m.is_request()).expect("CANCEL");
    gw.send(3_100, ms, &reply(&fwd_cancel, 200, "ms", ""));
    gw.send(3_100, ms, &reply(&fwd, 487, "ms", ""));
    let r = gw.sink.closes();
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(
        (r[0].disposition, r[0].final_status),
        (Disposition::Cancelled, 487)
    );
    assert_eq!(r[0].end_ms, EPOCH + 3_100);
}

#[test]
fn the_proxy_answers_503_when_the_sink_is_full_and_times_calls_already_up() {
    let mut gw = Gw::new();
    let (ms, sbc) = (gw.ms, gw.sbc);
    let fwd = gw.send(0, sbc, INVITE).into_iter().find(|m| m.is_request());
    let fwd = fwd.expect("forwarded");
    let se = "Session-Expires: 90;refresher=uac\r\n";
    let up = gw.send(1_000, ms, &reply(&fwd, 200, "ms", se));
    let answer = up
        .into_iter()
        .find(|m| m.status() == Some(200))
        .expect("200");
    gw.send(1_100, sbc, &ack(&answer));
    gw.sink.set_full(true);
    let second = INVITE
        .replace("Call-ID: px1", "Call-ID: px2")
        .replace("branch=z9hG4bKinv1", "branch=z9hG4bKinv2");
    let out = gw.send(2_000, sbc, &second);
    let refusal = out.iter().find(|m| m.status() == Some(503)).expect("503");
    assert_eq!(refusal.reason(), Some(&b"CDR Spool Full"[..]));
    assert!(out.iter().all(|m| !m.is_request()), "not forwarded");
    // The first call's session expires unrefreshed: closed by the proxy's timer loop.
    gw.advance(200_000);
    let r = gw.sink.closes();
    assert_eq!(r.len(), 1, "no record for the refused call: {r:#?}");
    assert_eq!(r[0].end_reason, EndReason::SessionTimer);
    assert_eq!(r[0].end_ms, EPOCH + 91_000);
}
