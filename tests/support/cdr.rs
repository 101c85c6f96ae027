//! The call-record bed of `tests/cdr_e2e.rs` (included there by path, so the other suites do
//! not compile it): the real gateway with its embedded emulator between a fake SBC and a
//! fake Microsoft proxy, whole calls either way with the instants that bracket when the
//! gateway saw the answer and the hang-up, and readers of the records wherever they end up
//! (the emulator, the spool, the export files, the `ocedge cdr` command).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ocedge::cdr::spool::{Kind, Spool};
use ocedge::cdr::{record_id, CallRecord};
use serde_json::Value;

use crate::support::emulator::EmulatorCtl;
use crate::support::msg::{param, sdp, tag};
use crate::support::{
    callee_uri, dest, ms, Gateway, Incoming, Leg, MsgExt, NumbersSpec, Spec, TempDir, Ua,
};

/// The tenant of both Teams users.
pub const TENANT: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
/// The Teams user PSTN callers call.
pub const ALICE: &str = "+14255550100";
/// Alice's assigned SIP URI.
pub const ALICE_URI: &str = "sip:+14255550100@tenant-a.teams.example.com;user=phone";
/// The Teams user who calls out.
pub const CAROL: &str = "+12065550123";
/// Carol's assigned SIP URI.
pub const CAROL_URI: &str = "sip:+12065550123@tenant-a.teams.example.com;user=phone";
/// Never assigned.
pub const NOBODY: &str = "+14255550199";
/// The PSTN party of every call.
pub const PSTN: &str = "+13125550000";

/// `[cdr]` lines that keep uploads quick: a partial batch waits 100 ms, a failed request is
/// retried after 100–500 ms.
const FAST_UPLOAD: &str =
    "upload = { batch_wait = \"100ms\", backoff_min = \"100ms\", backoff_max = \"500ms\" }\n";

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// PSTN → Teams: the SBC calls Alice.
    Inbound,
    /// Teams → PSTN: Carol calls out through the SBC.
    Outbound,
}

impl Dir {
    /// The record's `direction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::Inbound => "inbound",
            Dir::Outbound => "outbound",
        }
    }

    /// Calling and called number of the calls between the seeded numbers.
    pub fn numbers(self) -> (&'static str, &'static str) {
        match self {
            Dir::Inbound => (PSTN, ALICE),
            Dir::Outbound => (CAROL, PSTN),
        }
    }
}

/// The gateway handled a message after `lo` (taken just before it was sent) and before `hi`
/// (taken just after what it relayed arrived).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Before the message was sent.
    pub lo: Instant,
    /// After its effect arrived.
    pub hi: Instant,
}

/// The range of `durationMs` for a call answered within `answer` and ended within `end`,
/// widened by `slack` ms (1 ms covers the gateway's clock truncating to whole ms at each
/// end; more where the two ends were read from different gateways' clocks).
pub fn duration_range(answer: Window, end: Window, slack: u64) -> (u64, u64) {
    let ms_of = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let min = ms_of(end.lo.saturating_duration_since(answer.hi));
    let max = ms_of(end.hi.saturating_duration_since(answer.lo));
    (min.saturating_sub(slack), max + slack)
}

/// A call the gateway forwarded: the caller's leg, the INVITE as the callee got it, and the
/// tag the callee answers with.
pub struct Call {
    /// Its direction.
    pub dir: Dir,
    /// The caller's side of the dialog.
    pub leg: Leg,
    /// The INVITE as the callee received it.
    pub inv: Incoming,
    /// The callee's To tag.
    pub to_tag: String,
}

impl Call {
    /// The record id the gateway must give this call.
    pub fn id(&self) -> String {
        id_of(&self.leg, &self.to_tag)
    }

    /// Points the caller's route set at `new` listeners instead of `old` (a restarted
    /// gateway binds new ports).
    pub fn reroute(&mut self, old: [SocketAddr; 2], new: [SocketAddr; 2]) {
        for r in &mut self.leg.route_set {
            for (o, n) in old.iter().zip(&new) {
                *r = r.replace(&o.to_string(), &n.to_string());
            }
        }
    }
}

/// The record id of the INVITE of `leg` ended with To tag `to_tag` (`docs/cdr.md`).
pub fn id_of(leg: &Leg, to_tag: &str) -> String {
    let inv = leg.invite.as_ref().expect("leg without INVITE");
    let from_tag = param(&inv.from, "tag").unwrap_or_default();
    record_id(
        leg.call_id.as_bytes(),
        from_tag.as_bytes(),
        to_tag.as_bytes(),
        inv.cseq,
    )
}

/// A gateway with the number policy and its embedded emulator between two UDP agents.
pub struct Bed {
    /// The fake carrier SBC.
    pub sbc: Ua,
    /// The fake Microsoft proxy.
    pub msp: Ua,
    /// The gateway.
    pub gw: Gateway,
    /// What it was started from (its spool directory included).
    pub spec: Spec,
    /// Its emulator's control API.
    pub ctl: EmulatorCtl,
    /// The test's directory (seed, snapshot, export files). After `gw`: the gateway stops
    /// (or, when a test fails, is cancelled) before the directory goes.
    pub dir: TempDir,
}

impl Bed {
    /// Starts a gateway whose numbers live in `dir`, with quick uploads and `cdr_extra`
    /// lines in `[cdr]`.
    pub async fn start(dir: TempDir, cdr_extra: &str) -> Bed {
        let sbc = Ua::udp("127.0.0.1").await;
        let msp = Ua::udp("127.0.0.1").await;
        let seed = [(ALICE, TENANT, ALICE_URI), (CAROL, TENANT, CAROL_URI)];
        let mut spec = Spec::new(
            vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
            vec![dest("sbc1", sbc.local, "udp", 1)],
        )
        .listen("microsoft", "udp", "127.0.0.1")
        .listen("carrier", "udp", "127.0.0.1")
        .numbers(NumbersSpec::embedded(&dir, &seed));
        spec.cdr_extra = format!("{FAST_UPLOAD}{cdr_extra}");
        let gw = spec.start().await;
        assert!(gw.numbers().is_loaded(), "first sync within startup_wait");
        let ctl = EmulatorCtl::new(gw.api_base_url());
        Bed {
            sbc,
            msp,
            gw,
            spec,
            ctl,
            dir,
        }
    }

    /// Stops the gateway and starts a new one from the same spec: the same spool and
    /// numbers, new ports and a new emulator; the agents keep their sockets.
    pub async fn restart(self) -> Bed {
        let Bed {
            sbc,
            msp,
            gw,
            spec,
            dir,
            ..
        } = self;
        let old = [gw.addr(0), gw.addr(1)];
        gw.stop().await;
        for addr in old {
            // A stopped gateway holds nothing: neither its ports nor (else the start below
            // fails) its spool.
            std::net::UdpSocket::bind(addr).expect("a stopped gateway's port binds again");
        }
        let gw = spec.start().await;
        let ctl = EmulatorCtl::new(gw.api_base_url());
        Bed {
            sbc,
            msp,
            gw,
            spec,
            ctl,
            dir,
        }
    }

    /// Stops the gateway; the test's directories go with the bed.
    pub async fn stop(self) {
        self.gw.stop().await;
    }

    /// The Microsoft-side and carrier-side listeners.
    pub fn listeners(&self) -> [SocketAddr; 2] {
        [self.gw.addr(0), self.gw.addr(1)]
    }

    /// The spool directory.
    pub fn spool(&self) -> &Path {
        &self.spec.spool_dir
    }

    /// Caller, callee, the caller-side and the callee-side listener of a call in `dir`.
    fn parts(&mut self, dir: Dir) -> (&mut Ua, &mut Ua, SocketAddr, SocketAddr) {
        let [l_ms, l_c] = self.listeners();
        match dir {
            Dir::Inbound => (&mut self.sbc, &mut self.msp, l_c, l_ms),
            Dir::Outbound => (&mut self.msp, &mut self.sbc, l_ms, l_c),
        }
    }

    /// Sends a new INVITE in `dir` to `callee`, from the direction's calling number.
    pub async fn invite(&mut self, dir: Dir, callee: &str) -> Leg {
        let (caller_no, _) = dir.numbers();
        let (caller, _, to, _) = self.parts(dir);
        let ruri = callee_uri(callee, to);
        let mut leg = Leg::caller("UDP", caller.local, caller_no, &ruri);
        let mut invite = leg.invite(&ruri);
        if dir == Dir::Outbound {
            invite = invite.with("X-MS-TenantID", TENANT);
        }
        caller.send(to, &invite).await;
        leg
    }

    /// A call between the seeded numbers, forwarded to the callee (not answered yet).
    pub async fn call(&mut self, dir: Dir) -> Call {
        let leg = self.invite(dir, dir.numbers().1).await;
        let (caller, callee, _, _) = self.parts(dir);
        let inv = callee.expect_request("INVITE").await;
        caller.expect_response(100).await;
        Call {
            dir,
            leg,
            inv,
            to_tag: tag(),
        }
    }

    /// The callee answers 200 and the caller acknowledges: when the gateway saw the 2xx.
    pub async fn answer(&mut self, call: &mut Call) -> Window {
        let (caller, callee, to, _) = self.parts(call.dir);
        let contact = format!("<sip:callee@{};transport=udp>", callee.local);
        let body = sdp(callee.local);
        let lo = Instant::now();
        callee
            .reply(
                &call.inv,
                200,
                Some(&call.to_tag),
                Some(&contact),
                Some(&body),
            )
            .await;
        let ok = caller.expect_response(200).await;
        let hi = Instant::now();
        call.leg.established(&ok);
        caller.send(to, &call.leg.ack_2xx()).await;
        callee.expect_request("ACK").await;
        Window { lo, hi }
    }

    /// The caller hangs up: when the gateway saw the BYE.
    pub async fn caller_bye(&mut self, call: &mut Call) -> Window {
        let (caller, callee, to, _) = self.parts(call.dir);
        let bye = call.leg.in_dialog("BYE");
        let lo = Instant::now();
        caller.send(to, &bye).await;
        let got = callee.expect_request("BYE").await;
        let hi = Instant::now();
        callee.reply(&got, 200, None, None, None).await;
        let ok = caller.expect_response(200).await;
        assert_eq!(ok.cseq_method(), "BYE", "{}", ok.dump());
        Window { lo, hi }
    }

    /// The callee hangs up (along the Record-Route it received): when the gateway saw the
    /// BYE.
    pub async fn callee_bye(&mut self, call: &Call) -> Window {
        let (caller, callee, _, back) = self.parts(call.dir);
        let mut leg = Leg::callee("UDP", callee.local, &call.inv, &call.to_tag);
        let bye = leg.in_dialog("BYE");
        let lo = Instant::now();
        callee.send(back, &bye).await;
        let got = caller.expect_request("BYE").await;
        let hi = Instant::now();
        caller.reply(&got, 200, None, None, None).await;
        let ok = callee.expect_response(200).await;
        assert_eq!(ok.cseq_method(), "BYE", "{}", ok.dump());
        Window { lo, hi }
    }

    /// The callee refuses the call with `status`; the gateway acknowledges it and relays
    /// it, and the caller acknowledges it.
    pub async fn decline(&mut self, call: &Call, status: u16) {
        let (caller, callee, to, _) = self.parts(call.dir);
        callee
            .reply(&call.inv, status, Some(&call.to_tag), None, None)
            .await;
        callee.expect_request("ACK").await;
        let (_, resp) = caller.expect_final().await;
        assert_eq!(resp.code(), status, "{}", resp.dump());
        caller.send(to, &call.leg.ack_non_2xx(&resp)).await;
    }

    /// The callee rings, the caller cancels, the callee ends the INVITE with 487.
    pub async fn cancel(&mut self, call: &Call) {
        let (caller, callee, to, _) = self.parts(call.dir);
        callee
            .reply(&call.inv, 180, Some(&call.to_tag), None, None)
            .await;
        caller.expect_response(180).await;
        caller.send(to, &call.leg.cancel()).await;
        let ok = caller.expect_response(200).await;
        assert_eq!(ok.cseq_method(), "CANCEL", "{}", ok.dump());
        let cancel = callee.expect_request("CANCEL").await;
        callee.reply(&cancel, 200, None, None, None).await;
        callee
            .reply(&call.inv, 487, Some(&call.to_tag), None, None)
            .await;
        callee.expect_request("ACK").await;
        let (_, resp) = caller.expect_final().await;
        assert_eq!(resp.code(), 487, "{}", resp.dump());
        caller.send(to, &call.leg.ack_non_2xx(&resp)).await;
    }

    /// A call the gateway refuses itself (nothing reaches the callee): the caller's leg and
    /// the refusal, acknowledged.
    pub async fn refused(&mut self, dir: Dir, callee_no: &str) -> (Leg, Incoming) {
        let leg = self.invite(dir, callee_no).await;
        let (caller, callee, to, _) = self.parts(dir);
        let (_, resp) = caller.expect_final().await;
        caller.send(to, &leg.ack_non_2xx(&resp)).await;
        callee
            .expect_nothing(ms(100), "a refused call is not forwarded")
            .await;
        (leg, resp)
    }
}

/// Waits (at most 10 s) until the emulator holds at least `n` records, then 300 ms more (three
/// upload batch waits) so that a record too many would show; every record it holds.
pub async fn uploaded(ctl: &EmulatorCtl, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = ctl.call_durations().await;
        if got.len() >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the emulator holds {} records, expected {n}: {got:?}",
            got.len()
        );
        tokio::time::sleep(ms(50)).await;
    }
    tokio::time::sleep(ms(300)).await;
    ctl.call_durations().await
}

/// The record with `id` among `records`; panics unless exactly one has it.
pub fn one<'a>(records: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = records.iter().filter(|r| r["id"] == id).collect();
    assert_eq!(found.len(), 1, "records with id {id}: {records:?}");
    found[0]
}

/// Every finished record in the spool, in seq order (read-only, like `ocedge cdr`).
pub fn spool_records(dir: &Path) -> Vec<CallRecord> {
    let (entries, _) = Spool::read_all(dir).expect("read the spool");
    entries
        .iter()
        .filter(|e| e.kind == Kind::Close)
        .map(|e| CallRecord::decode(&e.payload).expect("a decodable record"))
        .collect()
}

/// The spool's record with `id`; panics unless exactly one.
pub fn spooled(records: &[CallRecord], id: &str) -> CallRecord {
    let found: Vec<&CallRecord> = records.iter().filter(|r| r.id == id).collect();
    assert_eq!(found.len(), 1, "spool records with id {id}: {records:?}");
    found[0].clone()
}

/// Journaled calls with no record yet (an Open entry with no later Close of the same key).
pub fn spool_calls_up(dir: &Path) -> usize {
    let (entries, _) = Spool::read_all(dir).expect("read the spool");
    let mut up = Vec::new();
    for e in &entries {
        up.retain(|k| *k != e.key);
        if e.kind == Kind::Open {
            up.push(e.key);
        }
    }
    up.len()
}

/// Runs `ocedge cdr --spool DIR ARGS…` (the built binary): success and standard output.
pub async fn cli(spool: &Path, args: &[&str]) -> (bool, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocedge"))
        .arg("cdr")
        .arg("--spool")
        .arg(spool)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("ocedge cdr took over 10 s")
        .expect("run ocedge cdr");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    if !out.status.success() {
        eprintln!(
            "ocedge cdr {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), stdout)
}

/// Waits (at most 10 s) until every record in the spool is acknowledged.
pub async fn all_acked(bed: &Bed) {
    let spool = &bed.gw.running().cdr.as_ref().expect("[cdr] on").spool;
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.stats().unacked > 0 {
        assert!(
            Instant::now() < deadline,
            "unacknowledged: {:?}",
            spool.stats()
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// Every line of every `cdr-*.jsonl` file in `dir`.
pub fn exported(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("export dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("cdr-") && name.ends_with(".jsonl") {
            let text = std::fs::read_to_string(&path).expect("export file");
            rows.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("JSON line")),
            );
        }
    }
    rows
}
