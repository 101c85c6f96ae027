//! The proxy core's own cost per call, without sockets: whole SIPp-like calls (INVITE,
//! 100, 180, 200, ACK, BYE, 200, carrier → Microsoft) through [`Proxy::handle`] in
//! simulated time, with the number policy and the call tracker on (records to a sink that
//! drops them) and without (`AllowAll`). Only the proxy's calls are timed; building the
//! peers' messages is not.
//!
//! ```sh
//! cargo bench --bench proxy
//! # Instructions per call, repeatable on a noisy machine (user space only):
//! OCEDGE_BENCH_CALLS=20000 valgrind --tool=callgrind --toggle-collect='*Proxy::handle*' \
//!     target/release/deps/proxy-*[^.d]
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};

use ocedge::calls::{CallTracker, CdrSink, SinkFull, TrackerConfig, WallClock};
use ocedge::cdr::{CallRecord, OpenCall};
use ocedge::config::Numbers;
use ocedge::msapi::NumberEntry;
use ocedge::numbers::{NumberTable, Source};
use ocedge::proxy::core::{Proxy, Received};
use ocedge::proxy::numbers_policy::NumberPolicy;
use ocedge::proxy::policy::{AllowAll, Policy};
use ocedge::proxy::testkit::{self, one, udp, vals, Pair};
use ocedge::proxy::transaction::Millis;
use ocedge::sip::Message;
use ocedge::transport::Target;

const GW_MS: &str = "127.0.0.1:5066";
const GW_CARRIER: &str = "127.0.0.1:5062";
const CALLED: &str = "+14255510000";

/// Records go nowhere: the spool's cost is measured by `benches/spool.rs`.
struct Drop;

impl CdrSink for Drop {
    fn open(&self, call: &OpenCall) -> Result<(), SinkFull> {
        black_box(call);
        Ok(())
    }
    fn close(&self, rec: &CallRecord) {
        black_box(rec);
    }
    fn is_full(&self) -> bool {
        false
    }
}

struct Gw {
    proxy: Proxy,
    now: u64,
    ms: Target,
    sbc: Target,
    timed: Duration,
}

fn gateway(full: bool) -> Gw {
    let (ms, sbc) = (udp("127.0.0.1:5070"), udp("127.0.0.1:5072"));
    let policy: Box<dyn Policy> = if full {
        let table = NumberTable::new();
        table.replace_all(
            &[NumberEntry {
                telephone_number: CALLED.into(),
                tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
                sip_uri: format!("sip:{CALLED}@tenant00.teams.example.com;user=phone"),
                usage: "CallingUserAssignment".into(),
                assignment_status: "assigned".into(),
                capabilities: vec![],
                last_modified_date_time: String::new(),
                removed: None,
            }],
            Source::Sync,
        );
        Box::new(CallTracker::new(
            NumberPolicy::new(table, Numbers::default()),
            Arc::new(Drop),
            WallClock::new(1_795_000_000_000),
            TrackerConfig::default(),
        ))
    } else {
        Box::new(AllowAll)
    };
    let pair = Pair {
        listeners: [GW_MS, GW_CARRIER],
        ms,
        sbc,
        acl: ["127.0.0.0/8", "127.0.0.0/8"],
        flood: 1e9,
        max_transactions: 1_000_000,
    };
    Gw {
        proxy: Proxy::new(testkit::setup(pair, policy)),
        now: 0,
        ms,
        sbc,
        timed: Duration::ZERO,
    }
}

impl Gw {
    /// Delivers `text` from `from` (timed) and returns what the proxy sent.
    fn deliver(&mut self, from: Target, text: String) -> Vec<Message> {
        let msg = Message::parse(text.into(), &Default::default()).expect("bench message");
        let listener = usize::from(from == self.sbc);
        let t = Instant::now();
        self.proxy.handle(
            Millis(self.now),
            Received {
                msg,
                source: from,
                listener,
            },
        );
        let out: Vec<_> = self.proxy.drain_output().map(|o| o.bytes).collect();
        self.timed += t.elapsed();
        out.into_iter()
            .map(|b| Message::parse(b, &Default::default()).expect("proxy output"))
            .collect()
    }

    /// Moves the clock on by `ms`, running due timers (timed).
    fn advance(&mut self, ms: u64) {
        let t = Instant::now();
        self.now += ms;
        while let Some(at) = self.proxy.poll_timeout().filter(|t| t.0 <= self.now) {
            self.proxy.handle_timeout(at);
        }
        self.proxy.drain_output().for_each(drop);
        self.timed += t.elapsed();
    }
}

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
    c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A response as SIPp's UAS writes it: Vias and Record-Route copied, To tag, Contact.
fn reply(req: &Message, status: u16, sdp: bool) -> String {
    let mut s = format!("SIP/2.0 {status} OK\r\n");
    for v in vals(req, "Via") {
        s += &format!("Via: {v}\r\n");
    }
    for rr in vals(req, "Record-Route") {
        s += &format!("Record-Route: {rr}\r\n");
    }
    let to = one(req, "To");
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag=uas1")
    };
    let body = if sdp { SDP } else { "" };
    s += &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:127.0.0.1:5070;transport=UDP>\r\n{}Content-Length: {}\r\n\r\n{body}",
        one(req, "From"),
        one(req, "Call-ID"),
        one(req, "CSeq"),
        if sdp {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        },
        body.len(),
    );
    s
}

/// One whole call, as `sipload.py` drives it: SIPp's UAC on the carrier side, its UAS
/// on the Microsoft side.
fn call(gw: &mut Gw, i: u64) {
    let (ms, sbc) = (gw.ms, gw.sbc);
    let call_id = format!("{i}-4242@127.0.0.1");
    let invite = format!(
        "INVITE sip:{CALLED}@127.0.0.1:5062;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-{i}-1-0\r\n\
         From: sipp <sip:+12065550100@127.0.0.1:5072;user=phone>;tag={i}SIPpTag001\r\n\
         To: <sip:{CALLED}@127.0.0.1:5062;user=phone>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:+12065550100@127.0.0.1:5072>\r\n\
         Max-Forwards: 70\r\nSubject: Performance Test\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let out = gw.deliver(sbc, invite);
    let fwd = out.into_iter().find(|m| m.is_request()).expect("forwarded");
    gw.deliver(ms, reply(&fwd, 180, false));
    let up = gw.deliver(ms, reply(&fwd, 200, true));
    let answer = up.first().expect("200 relayed");
    let mut routes = vals(answer, "Record-Route");
    routes.reverse();
    let route = routes.join(", ");
    let (from, to) = (one(answer, "From"), one(answer, "To"));
    let contact = one(answer, "Contact");
    let target = contact.trim_start_matches('<').trim_end_matches('>');
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5072;branch={branch}\r\n\
             Route: {route}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    gw.deliver(sbc, in_dialog("ACK", 1, &format!("z9hG4bK-{i}-5-0")));
    let out = gw.deliver(sbc, in_dialog("BYE", 2, &format!("z9hG4bK-{i}-7-0")));
    let bye = out.iter().find(|m| m.is_request()).expect("BYE forwarded");
    gw.deliver(ms, reply(bye, 200, false));
    // 1,000 calls a second, as the comparison runs.
    gw.advance(1);
}

fn per_call(c: &mut Criterion) {
    for (name, full) in [("allow_all", false), ("numbers_and_tracker", true)] {
        c.bench_function(&format!("proxy_call/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut gw = gateway(full);
                for i in 0..iters {
                    call(&mut gw, i);
                }
                gw.timed
            })
        });
    }
}

/// `OCEDGE_BENCH_CALLS=N`: just run N calls with everything on (for callgrind), no
/// criterion.
fn main() {
    if let Some(n) = std::env::var("OCEDGE_BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let mut gw = gateway(true);
        for i in 0..n {
            call(&mut gw, i);
        }
        println!(
            "{n} calls, {:.2} us per call in the proxy",
            gw.timed.as_secs_f64() * 1e6 / n as f64
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

criterion_group!(benches, per_call);
