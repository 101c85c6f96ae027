//! The number policy end to end (issue 4): the real gateway with its embedded API emulator
//! and sync loop, fake SBC and Microsoft proxy user agents on loopback UDP.
//!
//! - carrier → Microsoft: the called number must be assigned (else 404), national formats
//!   are completed with the default country code, and the Request-URI is rewritten to the
//!   number's assigned SIP URI.
//! - Microsoft → carrier: the calling number (P-Asserted-Identity, else From) must be
//!   assigned (else 403), in the tenant `X-MS-TenantID` names (else 403).
//! - Emergency calls always go through; a number removed or added in the emulator takes
//!   effect within a delta interval; with no table new calls get 503; a snapshot serves
//!   when the API is down.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::emulator::EmulatorCtl;
use support::msg::{sdp, tag};
use support::temp_dir;
use support::{
    bounded, callee_uri, dest, ms, Gateway, Incoming, Leg, MsgExt, NumbersSpec, Spec, Ua, WAIT,
};

const TENANT_A: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const TENANT_B: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";
/// A Teams user in tenant A; the SIP URI holds the number.
const ALICE: &str = "+14255550100";
const ALICE_URI: &str = "sip:+14255550100@tenant-a.teams.example.com;user=phone";
/// A Teams user in tenant B; the SIP URI does not hold the number.
const BOB: &str = "+14255550101";
const BOB_URI: &str = "sip:bob@tenant-b.teams.example.com";
/// A Teams user in tenant A who calls out.
const CAROL: &str = "+12065550123";
const CAROL_URI: &str = "sip:+12065550123@tenant-a.teams.example.com;user=phone";
/// Added through the control API during a test.
const DAVE: &str = "+14255550102";
const DAVE_URI: &str = "sip:+14255550102@tenant-b.teams.example.com;user=phone";
/// Never assigned.
const NOBODY: &str = "+14255550199";
/// A PSTN number: the carrier-side caller, or a Teams user's destination.
const PSTN: &str = "+13125550000";

/// The delta interval of [`NumbersSpec::embedded`].
const DELTA: Duration = Duration::from_millis(300);

fn seed() -> [(&'static str, &'static str, &'static str); 3] {
    [
        (ALICE, TENANT_A, ALICE_URI),
        (BOB, TENANT_B, BOB_URI),
        (CAROL, TENANT_A, CAROL_URI),
    ]
}

/// Which side starts a call.
#[derive(Debug, Clone, Copy)]
enum Dir {
    FromCarrier,
    FromMicrosoft,
}

/// A gateway between a fake SBC and a fake Microsoft proxy.
struct Bed {
    sbc: Ua,
    msp: Ua,
    gw: Gateway,
}

impl Bed {
    async fn start(numbers: NumbersSpec) -> Bed {
        let sbc = Ua::udp("127.0.0.1").await;
        let msp = Ua::udp("127.0.0.1").await;
        let gw = gateway(&sbc, &msp, numbers).await;
        Bed { sbc, msp, gw }
    }

    /// Stops the gateway and starts another one between the same peers.
    async fn restart(self, numbers: NumbersSpec) -> Bed {
        let Bed { sbc, msp, gw } = self;
        gw.stop().await;
        let gw = gateway(&sbc, &msp, numbers).await;
        Bed { sbc, msp, gw }
    }

    /// The Microsoft-side and carrier-side listeners.
    fn listeners(&self) -> (SocketAddr, SocketAddr) {
        (self.gw.addr(0), self.gw.addr(1))
    }

    /// A Request-URI for `user` on the listener a call in `dir` arrives at.
    fn uri(&self, dir: Dir, user: &str) -> String {
        let (l_ms, l_c) = self.listeners();
        match dir {
            Dir::FromCarrier => callee_uri(user, l_c),
            Dir::FromMicrosoft => callee_uri(user, l_ms),
        }
    }

    /// Caller, callee and the listener the caller sends to.
    fn parts(&mut self, dir: Dir) -> (&mut Ua, &mut Ua, SocketAddr) {
        let (l_ms, l_c) = self.listeners();
        match dir {
            Dir::FromCarrier => (&mut self.sbc, &mut self.msp, l_c),
            Dir::FromMicrosoft => (&mut self.msp, &mut self.sbc, l_ms),
        }
    }

    /// Sends a new INVITE from `user` (the From user part) to `ruri` with `extra` headers.
    async fn invite(&mut self, dir: Dir, user: &str, ruri: &str, extra: &[(&str, &str)]) -> Leg {
        let (caller, _, to) = self.parts(dir);
        let mut leg = Leg::caller("UDP", caller.local, user, ruri);
        let mut invite = leg.invite(ruri);
        for (name, value) in extra {
            invite = invite.with(name, value);
        }
        caller.send(to, &invite).await;
        leg
    }

    /// The INVITE of `leg` must be answered by the gateway itself with a final response
    /// (returned, after the caller's ACK), and nothing may reach the other side.
    async fn expect_refused(&mut self, dir: Dir, leg: &Leg) -> Incoming {
        let (caller, callee, to) = self.parts(dir);
        let deadline = Instant::now() + WAIT;
        let resp = loop {
            // Provisional responses are skipped; a forwarded INVITE fails at once, saying so.
            match caller.next(ms(20)).await {
                Some(m) if m.code() >= 200 => break m,
                Some(m) => assert!(m.code() >= 100, "expected a response:\n{}", m.dump()),
                None => {}
            }
            if let Some(m) = callee.next(ms(1)).await {
                panic!(
                    "expected a refusal, but the call was forwarded:\n{}",
                    m.dump()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no final response within {WAIT:?}"
            );
        };
        assert!(
            resp.code() >= 300,
            "expected a refusal, got:\n{}",
            resp.dump()
        );
        caller.send(to, &leg.ack_non_2xx(&resp)).await;
        callee
            .expect_nothing(ms(150), "a refused call is not forwarded")
            .await;
        resp
    }

    /// The INVITE must reach the other side (returned as received there).
    async fn expect_forwarded(&mut self, dir: Dir) -> Incoming {
        let (_, callee, _) = self.parts(dir);
        callee.expect_request("INVITE").await
    }

    /// The callee declines the forwarded INVITE (486): the gateway acknowledges it, relays
    /// it, and the caller acknowledges it.
    async fn decline(&mut self, dir: Dir, leg: &Leg, inv: &Incoming) {
        let (caller, callee, to) = self.parts(dir);
        callee.reply(inv, 486, Some(&tag()), None, None).await;
        // The hop-by-hop ACK repeats the INVITE's Request-URI and branch (RFC 3261
        // §17.1.1.3), the rewritten one included.
        let ack = callee.expect_request("ACK").await;
        assert_eq!(ack.ruri(), inv.ruri());
        assert_eq!(ack.top_branch(), inv.top_branch());
        let (_, resp) = caller.expect_final().await;
        assert_eq!(resp.code(), 486, "{}", resp.dump());
        caller.send(to, &leg.ack_non_2xx(&resp)).await;
    }

    /// A new call that the gateway refuses: its final response.
    async fn refused(
        &mut self,
        dir: Dir,
        user: &str,
        ruri: &str,
        extra: &[(&str, &str)],
    ) -> Incoming {
        let leg = self.invite(dir, user, ruri, extra).await;
        self.expect_refused(dir, &leg).await
    }

    /// A new call that the gateway forwards: the INVITE as the other side received it (the
    /// call is then declined, so nothing is left over).
    async fn forwarded(
        &mut self,
        dir: Dir,
        user: &str,
        ruri: &str,
        extra: &[(&str, &str)],
    ) -> Incoming {
        let leg = self.invite(dir, user, ruri, extra).await;
        let inv = self.expect_forwarded(dir).await;
        self.decline(dir, &leg, &inv).await;
        inv
    }

    /// The callee answers the forwarded INVITE 200 and the caller acknowledges it.
    async fn answer(&mut self, dir: Dir, leg: &mut Leg, inv: &Incoming) {
        let (caller, callee, to) = self.parts(dir);
        let contact = format!("<sip:callee@{};transport=udp>", callee.local);
        let body = sdp(callee.local);
        callee
            .reply(inv, 200, Some(&tag()), Some(&contact), Some(&body))
            .await;
        let (_, ok) = caller.expect_final().await;
        assert_eq!(ok.code(), 200, "{}", ok.dump());
        leg.established(&ok);
        caller.send(to, &leg.ack_2xx()).await;
        let ack = callee.expect_request("ACK").await;
        assert_eq!(
            ack.ruri(),
            format!("sip:callee@{};transport=udp", callee.local)
        );
    }

    /// A re-INVITE in the established dialog reaches the callee, is answered 200 and
    /// acknowledged.
    async fn reinvite(&mut self, dir: Dir, leg: &mut Leg) {
        let (caller, callee, to) = self.parts(dir);
        let mut reinvite = leg.in_dialog("INVITE");
        reinvite.body = Some(("application/sdp".into(), sdp(caller.local)));
        caller.send(to, &reinvite).await;
        let inv = callee.expect_request("INVITE").await;
        assert!(inv.to_tag().is_some(), "{}", inv.dump());
        let contact = format!("<sip:callee@{};transport=udp>", callee.local);
        let body = sdp(callee.local);
        callee
            .reply(&inv, 200, None, Some(&contact), Some(&body))
            .await;
        let (_, ok) = caller.expect_final().await;
        assert_eq!(ok.code(), 200, "{}", ok.dump());
        let mut ack = leg.ack_2xx();
        ack.cseq = reinvite.cseq;
        caller.send(to, &ack).await;
        callee.expect_request("ACK").await;
    }

    /// The caller hangs up: the BYE reaches the callee, whose 200 reaches the caller.
    async fn hang_up(&mut self, dir: Dir, leg: &mut Leg) {
        let (caller, callee, to) = self.parts(dir);
        caller.send(to, &leg.in_dialog("BYE")).await;
        let bye = callee.expect_request("BYE").await;
        callee.reply(&bye, 200, None, None, None).await;
        let ok = caller.expect_response(200).await;
        assert_eq!(ok.cseq_method(), "BYE");
    }

    async fn stop(self) {
        self.gw.stop().await;
    }
}

async fn gateway(sbc: &Ua, msp: &Ua, numbers: NumbersSpec) -> Gateway {
    Spec::new(
        vec![dest("sip.pstnhub.microsoft.com", msp.local, "udp", 1)],
        vec![dest("sbc1", sbc.local, "udp", 1)],
    )
    .listen("microsoft", "udp", "127.0.0.1")
    .listen("carrier", "udp", "127.0.0.1")
    .numbers(numbers)
    .start()
    .await
}

/// A gateway enforcing the seeded numbers through its embedded emulator.
async fn embedded(dir: &Path) -> Bed {
    let bed = Bed::start(NumbersSpec::embedded(dir, &seed())).await;
    assert!(
        bed.gw.numbers().is_loaded(),
        "first sync within startup_wait"
    );
    assert_eq!(bed.gw.numbers().len(), seed().len());
    bed
}

/// The response's status and reason phrase.
fn assert_refusal(resp: &Incoming, status: u16, reason: &str) {
    assert_eq!(resp.code(), status, "{}", resp.dump());
    assert_eq!(
        resp.reason()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .as_deref(),
        Some(reason),
        "{}",
        resp.dump()
    );
}

fn e164(n: &str) -> ocedge::sip::number::E164 {
    ocedge::sip::number::E164::parse(n).expect("E.164")
}

/// A call to an assigned number reaches Microsoft at the number's SIP URI and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_called_number_is_routed_to_its_sip_uri() {
    bounded(async {
        let dir = temp_dir("num-assigned");
        let mut bed = embedded(&dir).await;
        let dir_c = Dir::FromCarrier;

        let ruri = bed.uri(dir_c, ALICE);
        let mut call = bed.invite(dir_c, PSTN, &ruri, &[]).await;
        let inv = bed.expect_forwarded(dir_c).await;
        assert_eq!(
            inv.ruri(),
            ALICE_URI,
            "Request-URI rewritten to the assigned SIP URI"
        );
        assert_eq!(
            support::msg::uri_of(&inv.h("To").unwrap_or_default()),
            ruri,
            "To is left as the caller wrote it"
        );
        bed.answer(dir_c, &mut call, &inv).await;
        bed.hang_up(dir_c, &mut call).await;

        // A SIP URI that does not contain the number is used as it is.
        let ruri = bed.uri(dir_c, BOB);
        let inv = bed.forwarded(dir_c, PSTN, &ruri, &[]).await;
        assert_eq!(inv.ruri(), BOB_URI);

        bed.sbc.expect_nothing(ms(100), "calls are over").await;
        bed.stop().await;
    })
    .await;
}

/// CANCEL of a ringing call whose Request-URI was rewritten: the CANCEL toward Microsoft
/// carries the rewritten Request-URI, like the INVITE it cancels (RFC 3261 §9.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_follows_the_rewritten_request_uri() {
    bounded(async {
        let dir = temp_dir("num-cancel");
        let mut bed = embedded(&dir).await;
        let (_, l_c) = bed.listeners();
        let from_c = Dir::FromCarrier;

        let ruri = bed.uri(from_c, BOB);
        let call = bed.invite(from_c, PSTN, &ruri, &[]).await;
        let inv = bed.expect_forwarded(from_c).await;
        assert_eq!(inv.ruri(), BOB_URI);
        let uas_tag = tag();
        bed.msp.reply(&inv, 180, Some(&uas_tag), None, None).await;
        bed.sbc.expect_response(100).await;
        bed.sbc.expect_response(180).await;

        bed.sbc.send(l_c, &call.cancel()).await;
        let cancel_ok = bed.sbc.expect_response(200).await;
        assert_eq!(cancel_ok.cseq_method(), "CANCEL");
        let cancel_in = bed.msp.expect_request("CANCEL").await;
        assert_eq!(
            cancel_in.ruri(),
            BOB_URI,
            "CANCEL Request-URI = the INVITE's"
        );
        assert_eq!(cancel_in.top_branch(), inv.top_branch());
        bed.msp.reply(&cancel_in, 200, None, None, None).await;
        bed.msp.reply(&inv, 487, Some(&uas_tag), None, None).await;
        let ack = bed.msp.expect_request("ACK").await;
        assert_eq!(ack.ruri(), BOB_URI, "ACK Request-URI = the INVITE's");
        let (_, terminated) = bed.sbc.expect_final().await;
        assert_eq!(terminated.code(), 487, "{}", terminated.dump());
        bed.sbc.send(l_c, &call.ack_non_2xx(&terminated)).await;

        bed.stop().await;
    })
    .await;
}

/// A call to a number nobody was assigned is answered 404 and never reaches Microsoft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassigned_called_number_gets_404() {
    bounded(async {
        let dir = temp_dir("num-unassigned");
        let mut bed = embedded(&dir).await;
        let (_, l_c) = bed.listeners();
        let from_c = Dir::FromCarrier;

        let ruri = bed.uri(from_c, NOBODY);
        let resp = bed.refused(from_c, PSTN, &ruri, &[]).await;
        assert_refusal(&resp, 404, "Number Not Assigned");

        // National format of the same unassigned number.
        let ruri = format!("sip:4255550199@{l_c}");
        let resp = bed.refused(from_c, PSTN, &ruri, &[]).await;
        assert_refusal(&resp, 404, "Number Not Assigned");

        // Not a number at all.
        let ruri = format!("sip:reception@{l_c}");
        let resp = bed.refused(from_c, PSTN, &ruri, &[]).await;
        assert_eq!(resp.code(), 404, "{}", resp.dump());

        bed.stop().await;
    })
    .await;
}

/// National and other non-E.164 spellings of an assigned number are looked up in E.164
/// with the default country code ("1"), and the To header serves when the Request-URI has
/// no user part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_format_is_completed_with_the_default_country_code() {
    bounded(async {
        let dir = temp_dir("num-national");
        let mut bed = embedded(&dir).await;
        let (_, l_c) = bed.listeners();
        let from_c = Dir::FromCarrier;

        for (ruri, expect) in [
            (format!("sip:4255550100@{l_c}"), ALICE_URI),
            (format!("sip:425-555-0101@{l_c};user=phone"), BOB_URI),
            (format!("sip:0014255550100@{l_c};user=phone"), ALICE_URI),
            ("tel:+1-425-555-0101".to_owned(), BOB_URI),
        ] {
            let inv = bed.forwarded(from_c, PSTN, &ruri, &[]).await;
            assert_eq!(
                inv.ruri(),
                expect,
                "{ruri} looked up as the assigned number"
            );
        }

        // Request-URI without a number: the called number comes from To.
        let mut leg = Leg::caller(
            "UDP",
            bed.sbc.local,
            PSTN,
            "sip:4255550101@carrier.example.com",
        );
        let invite = leg.invite(&format!("sip:{l_c}"));
        bed.sbc.send(l_c, &invite).await;
        let inv = bed.expect_forwarded(from_c).await;
        assert_eq!(inv.ruri(), BOB_URI, "called number taken from To");
        bed.decline(from_c, &leg, &inv).await;

        bed.stop().await;
    })
    .await;
}

/// Microsoft → carrier: the caller must be assigned (P-Asserted-Identity first, else
/// From), in the tenant X-MS-TenantID names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calling_number_and_tenant_are_checked_toward_the_carrier() {
    bounded(async {
        let dir = temp_dir("num-outbound");
        let mut bed = embedded(&dir).await;
        let from_ms = Dir::FromMicrosoft;
        let ruri = bed.uri(from_ms, PSTN);
        let pai = |n: &str| format!("<sip:{n}@tenant-a.teams.example.com;user=phone>");

        // Assigned caller in P-Asserted-Identity (From carries no number): forwarded to
        // the SBC, Request-URI untouched.
        let inv = bed
            .forwarded(
                from_ms,
                "anonymous",
                &ruri,
                &[("P-Asserted-Identity", &pai(CAROL))],
            )
            .await;
        assert_eq!(inv.ruri(), ruri);

        // A tel URI in P-Asserted-Identity, after one without a number.
        let ids = format!("<sip:anonymous@anonymous.invalid>, <tel:{CAROL}>");
        bed.forwarded(
            from_ms,
            "anonymous",
            &ruri,
            &[("P-Asserted-Identity", &ids)],
        )
        .await;

        // Unassigned caller in P-Asserted-Identity: refused even though From is assigned.
        let resp = bed
            .refused(
                from_ms,
                CAROL,
                &ruri,
                &[("P-Asserted-Identity", &pai(NOBODY))],
            )
            .await;
        assert_refusal(&resp, 403, "Calling Number Not Assigned");

        // Another tenant's id: refused.
        let resp = bed
            .refused(
                from_ms,
                CAROL,
                &ruri,
                &[
                    ("P-Asserted-Identity", &pai(CAROL)),
                    ("X-MS-TenantID", TENANT_B),
                ],
            )
            .await;
        assert_refusal(&resp, 403, "Tenant Mismatch");

        // The caller's own tenant (any case): forwarded, the header stripped toward the SBC.
        let upper = TENANT_A.to_ascii_uppercase();
        let inv = bed
            .forwarded(
                from_ms,
                CAROL,
                &ruri,
                &[
                    ("P-Asserted-Identity", &pai(CAROL)),
                    ("X-MS-TenantID", &upper),
                ],
            )
            .await;
        assert_eq!(inv.h("X-MS-TenantID"), None);

        // No P-Asserted-Identity: From decides.
        bed.forwarded(from_ms, CAROL, &ruri, &[("X-MS-TenantID", TENANT_A)])
            .await;
        let resp = bed.refused(from_ms, NOBODY, &ruri, &[]).await;
        assert_refusal(&resp, 403, "Calling Number Not Assigned");
        let resp = bed
            .refused(from_ms, BOB, &ruri, &[("X-MS-TenantID", TENANT_A)])
            .await;
        assert_refusal(&resp, 403, "Tenant Mismatch");

        bed.stop().await;
    })
    .await;
}

/// Emergency calls from Microsoft go through whatever the caller's assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_calls_go_through_from_an_unassigned_caller() {
    bounded(async {
        let dir = temp_dir("num-emergency");
        let mut bed = embedded(&dir).await;
        let from_ms = Dir::FromMicrosoft;

        for number in ["911", "+1911"] {
            let ruri = bed.uri(from_ms, number);
            let inv = bed.forwarded(from_ms, NOBODY, &ruri, &[]).await;
            assert_eq!(inv.ruri(), ruri, "emergency Request-URI untouched");
        }
        // Even with another tenant's id.
        let ruri = bed.uri(from_ms, "911");
        bed.forwarded(from_ms, CAROL, &ruri, &[("X-MS-TenantID", TENANT_B)])
            .await;
        // The same caller to an ordinary number is refused.
        let ruri = bed.uri(from_ms, PSTN);
        let resp = bed.refused(from_ms, NOBODY, &ruri, &[]).await;
        assert_eq!(resp.code(), 403, "{}", resp.dump());

        bed.stop().await;
    })
    .await;
}

/// Only a dialled emergency number is one: a URI whose user part merely contains the
/// digits of one among letters (`room911`, `a1b1c2`) is an ordinary call, checked like any
/// other — else any URI spelling 911 between letters bypasses the number policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn letters_around_emergency_digits_do_not_make_an_emergency_call() {
    bounded(async {
        let dir = temp_dir("num-emergency-letters");
        let mut bed = embedded(&dir).await;
        let (l_ms, l_c) = bed.listeners();

        for user in ["room911", "a1b1c2"] {
            let ruri = format!("sip:{user}@{l_ms}");
            let resp = bed.refused(Dir::FromMicrosoft, NOBODY, &ruri, &[]).await;
            assert_refusal(&resp, 403, "Calling Number Not Assigned");
            let ruri = format!("sip:{user}@{l_c}");
            let resp = bed.refused(Dir::FromCarrier, PSTN, &ruri, &[]).await;
            assert_eq!(resp.code(), 404, "{}", resp.dump());
        }

        bed.stop().await;
    })
    .await;
}

/// A number removed in the emulator is refused after the next delta, while a call already
/// up on it goes on (in-dialog requests, a re-INVITE included, are not re-checked); a
/// number added is
/// accepted after the next delta. Both arrive by delta, without a full resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_changes_apply_within_a_delta_interval() {
    bounded(async {
        let dir = temp_dir("num-delta");
        let mut bed = embedded(&dir).await;
        let ctl = EmulatorCtl::new(bed.gw.api_base_url());
        let from_c = Dir::FromCarrier;
        let full_listings = ctl.stat("numberPages").await;

        let ruri = bed.uri(from_c, ALICE);
        let mut call = bed.invite(from_c, PSTN, &ruri, &[]).await;
        let inv = bed.expect_forwarded(from_c).await;
        bed.answer(from_c, &mut call, &inv).await;

        assert_eq!(ctl.remove(ALICE).await, 204);
        let removed = Instant::now();
        tokio::time::sleep(2 * DELTA).await;
        let resp = bed.refused(from_c, PSTN, &ruri, &[]).await;
        assert_refusal(&resp, 404, "Number Not Assigned");
        assert!(!bed.gw.numbers().contains(&e164(ALICE)));
        eprintln!("removal refused {:?} after the DELETE", removed.elapsed());
        // In-dialog requests are not re-checked: the call up on the number goes on.
        bed.reinvite(from_c, &mut call).await;
        bed.hang_up(from_c, &mut call).await;

        let ruri = bed.uri(from_c, DAVE);
        let resp = bed.refused(from_c, PSTN, &ruri, &[]).await;
        assert_refusal(&resp, 404, "Number Not Assigned");
        let applied = ctl.add(DAVE, TENANT_B, DAVE_URI).await;
        assert_eq!(applied["added"], 1, "{applied}");
        tokio::time::sleep(2 * DELTA).await;
        let inv = bed.forwarded(from_c, PSTN, &ruri, &[]).await;
        assert_eq!(inv.ruri(), DAVE_URI);

        assert!(
            ctl.stat("deltaPages").await >= 2,
            "the gateway polls deltas"
        );
        assert_eq!(ctl.stat("gone").await, 0);
        assert_eq!(
            ctl.stat("numberPages").await,
            full_listings,
            "changes arrive by delta, not by a full listing"
        );
        bed.stop().await;
    })
    .await;
}

/// No snapshot and no API: the gateway is not ready, new calls get 503, emergency calls
/// still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_means_503_except_emergency() {
    bounded(async {
        let dir = temp_dir("num-notready");
        let mut numbers = NumbersSpec::unreachable(&dir);
        numbers.startup_wait = "50ms";
        let started = Instant::now();
        let mut bed = Bed::start(numbers).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "startup_wait is bounded"
        );
        assert!(!bed.gw.numbers().is_loaded());

        let ruri = bed.uri(Dir::FromCarrier, ALICE);
        let resp = bed.refused(Dir::FromCarrier, PSTN, &ruri, &[]).await;
        assert_eq!(resp.code(), 503, "{}", resp.dump());
        let ruri = bed.uri(Dir::FromMicrosoft, PSTN);
        let resp = bed.refused(Dir::FromMicrosoft, CAROL, &ruri, &[]).await;
        assert_eq!(resp.code(), 503, "{}", resp.dump());

        let ruri = bed.uri(Dir::FromMicrosoft, "911");
        let inv = bed.forwarded(Dir::FromMicrosoft, CAROL, &ruri, &[]).await;
        assert_eq!(inv.ruri(), ruri);

        bed.stop().await;
    })
    .await;
}

/// The snapshot written after a sync lets a restarted gateway serve with the API down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_serves_when_the_api_is_down() {
    bounded(async {
        let dir = temp_dir("num-snapshot");
        let numbers = NumbersSpec::embedded(&dir, &seed());
        let snapshot = numbers.snapshot();
        let bed = Bed::start(numbers).await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while !snapshot.exists() {
            assert!(
                Instant::now() < deadline,
                "no snapshot at {}",
                snapshot.display()
            );
            tokio::time::sleep(ms(20)).await;
        }

        let mut bed = bed.restart(NumbersSpec::unreachable(&dir)).await;
        let table = bed.gw.numbers();
        assert!(table.is_loaded(), "table loaded from the snapshot");
        assert_eq!(table.len(), seed().len());

        let ruri = bed.uri(Dir::FromCarrier, ALICE);
        let inv = bed.forwarded(Dir::FromCarrier, PSTN, &ruri, &[]).await;
        assert_eq!(inv.ruri(), ALICE_URI);
        let ruri = bed.uri(Dir::FromMicrosoft, PSTN);
        bed.forwarded(
            Dir::FromMicrosoft,
            CAROL,
            &ruri,
            &[("X-MS-TenantID", TENANT_A)],
        )
        .await;
        let ruri = bed.uri(Dir::FromCarrier, NOBODY);
        let resp = bed.refused(Dir::FromCarrier, PSTN, &ruri, &[]).await;
        assert_refusal(&resp, 404, "Number Not Assigned");

        bed.stop().await;
    })
    .await;
}
