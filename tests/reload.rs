//! Reload (issue 7): a new configuration applied to a running gateway moves new calls to
//! the new SBC set and ACLs at once, leaves calls under way alone, names what needs a
//! restart, and a reload that fails (unreadable certificates) changes nothing.

mod support;

#[path = "support/cdr.rs"]
#[allow(dead_code, unused_imports)]
mod bed;

use std::path::PathBuf;

use bed::{Bed, Dir, ALICE, PSTN};
use support::msg::tag;
use support::temp_dir;
use support::{bounded, ms, MsgExt, Ua};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_calls_follow_the_new_sbc_set_and_live_calls_go_on() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("reload-sbc"), "").await;
        // A call up through the first SBC.
        let mut up = bed.call(Dir::Outbound).await;
        bed.answer(&mut up).await;

        // The SBC moves to another address.
        let mut sbc2 = Ua::udp("127.0.0.1").await;
        let mut cfg = bed.gw.cfg.clone();
        if let Some(c) = cfg.carrier.as_mut() {
            c.sbcs[0].addr = sbc2.local;
        }
        let summary = bed.gw.running().reloader.apply(cfg).expect("reload");
        assert_eq!(summary, "configuration reloaded");

        // The live call ends normally (in-dialog requests follow its route set).
        bed.caller_bye(&mut up).await;

        // A new call goes to the new SBC, none to the old one.
        let leg = bed.invite(Dir::Outbound, PSTN).await;
        let inv = sbc2.expect_request("INVITE").await;
        assert_eq!(
            inv.h("Call-ID").as_deref(),
            Some(leg.call_id.as_str()),
            "{}",
            inv.dump()
        );
        bed.sbc
            .expect_nothing(ms(150), "the old SBC gets no new call")
            .await;
        sbc2.reply(&inv, 486, Some(&tag()), None, None).await;
        sbc2.expect_request("ACK").await;
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sbc_named_in_dns_moves_when_its_answer_changes() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("reload-dns"), "").await;
        let sbc2 = Ua::udp("127.0.0.1").await;
        let reloader = bed.gw.running().reloader.clone();
        // As if the file said addr = "sbc.carrier.test:PORT" (resolved to the first SBC).
        let mut cfg = bed.gw.cfg.clone();
        let old = {
            let c = cfg.carrier.as_mut().expect("carrier");
            c.sbcs[0].host = Some("sbc.carrier.test".into());
            c.sbcs[0].addr
        };
        reloader.apply(cfg).expect("reload");
        let same = |_: &str, port: u16| Ok(std::net::SocketAddr::new(old.ip(), port));
        assert_eq!(reloader.refresh_peers_with(same), None, "same answer");

        // The name now points at the second SBC: new calls go there.
        let moved = sbc2.local;
        let summary = reloader
            .refresh_peers_with(|host: &str, _| {
                assert_eq!(host, "sbc.carrier.test");
                Ok(moved)
            })
            .expect("moved");
        assert!(summary.contains(&format!("{old} -> {moved}")), "{summary}");
        let mut sbc2 = sbc2;
        let leg = bed.invite(Dir::Outbound, PSTN).await;
        let inv = sbc2.expect_request("INVITE").await;
        assert_eq!(inv.h("Call-ID").as_deref(), Some(leg.call_id.as_str()));
        bed.sbc.expect_nothing(ms(150), "not the old address").await;
        sbc2.reply(&inv, 486, Some(&tag()), None, None).await;
        sbc2.expect_request("ACK").await;

        // A failed lookup keeps the last address.
        let failed = |_: &str, _: u16| Err("no answer".to_string());
        assert_eq!(reloader.refresh_peers_with(failed), None);
        let leg = bed.invite(Dir::Outbound, PSTN).await;
        let inv = sbc2.expect_request("INVITE").await;
        assert_eq!(inv.h("Call-ID").as_deref(), Some(leg.call_id.as_str()));
        sbc2.reply(&inv, 486, Some(&tag()), None, None).await;
        sbc2.expect_request("ACK").await;
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_changes_apply_to_the_next_request() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("reload-acl"), "").await;
        let original = bed.gw.cfg.clone();
        let mut cfg = original.clone();
        if let Some(c) = cfg.carrier.as_mut() {
            c.acl = vec!["10.0.0.0/8".parse().expect("cidr")];
        }
        bed.gw.running().reloader.apply(cfg).expect("reload");
        bed.invite(Dir::Inbound, ALICE).await;
        bed.sbc
            .expect_nothing(
                ms(300),
                "a source outside the new ACL is dropped unanswered",
            )
            .await;
        bed.msp.expect_nothing(ms(10), "and not forwarded").await;

        // Back to the original ACL: calls flow again.
        bed.gw.running().reloader.apply(original).expect("reload");
        let call = bed.call(Dir::Inbound).await;
        bed.decline(&call, 486).await;
        bed.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_changes_nothing_and_restart_keys_are_named() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("reload-fail"), "").await;
        let original = bed.gw.cfg.clone();

        // Certificates that cannot be read: refused as a whole, the SBC move included.
        let mut broken = original.clone();
        let sbc2 = Ua::udp("127.0.0.1").await;
        if let Some(c) = broken.carrier.as_mut() {
            c.sbcs[0].addr = sbc2.local;
        }
        let missing = PathBuf::from("/nonexistent/ocedge.crt");
        broken.tls = Some(ocedge::config::Tls {
            cert: missing.clone(),
            key: missing.with_extension("key"),
            ca: missing.with_extension("ca"),
            generate_dev: false,
        });
        let err = bed
            .gw
            .running()
            .reloader
            .apply(broken)
            .expect_err("unreadable certificates refuse the reload");
        assert!(err.starts_with("reload refused: TLS"), "{err}");
        let call = bed.call(Dir::Outbound).await; // still the first SBC
        bed.decline(&call, 486).await;

        // Timers need a restart: named, and the rest applied.
        let mut cfg = original.clone();
        cfg.timers.t1 = ocedge::config::Dur(std::time::Duration::from_millis(300));
        let summary = bed.gw.running().reloader.apply(cfg).expect("reload");
        assert!(
            summary.contains("need a restart") && summary.contains("timers"),
            "{summary}"
        );
        drop(sbc2);
        bed.stop().await;
    })
    .await;
}
