//! Graceful drain (issue 7): while draining, new calls get 503 with Retry-After and the
//! gateway reports not ready, calls already up go on to their BYE and get their record;
//! the drain ends as soon as no call is left; after `stop` the ports bind again.

mod support;

#[path = "support/cdr.rs"]
#[allow(dead_code, unused_imports)]
mod bed;

use std::time::Duration;

use bed::{spool_records, Bed, Dir};
use support::temp_dir;
use support::{bounded, MsgExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_refuses_new_calls_and_lets_live_ones_finish() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("drain"), "").await;
        let mut up = bed.call(Dir::Inbound).await;
        bed.answer(&mut up).await;

        bed.gw.running().start_drain();
        assert_eq!(bed.gw.running().calls_left(), 1, "the call up is counted");

        // A new call is refused with 503 and Retry-After, and never forwarded.
        let (_, resp) = bed.refused(Dir::Inbound, bed::ALICE).await;
        assert_eq!(resp.code(), 503, "{}", resp.dump());
        assert!(resp.h("Retry-After").is_some(), "{}", resp.dump());

        // The drain does not end while the call is up...
        let left = bed.gw.running().drain(Duration::from_millis(200)).await;
        assert_eq!(left, 1, "the live call holds the drain");
        // ...and ends once it is over.
        bed.caller_bye(&mut up).await;
        let drained = bed.gw.running().drain(Duration::from_secs(5)).await;
        assert_eq!(drained, 0);

        let records = spool_records(bed.spool());
        let ours: Vec<_> = records
            .iter()
            .filter(|r| r.call_id == up.leg.call_id)
            .collect();
        assert_eq!(
            ours.len(),
            1,
            "one record for the drained call: {records:?}"
        );
        assert_eq!(ours[0].disposition.as_str(), "answered");

        let ports = bed.listeners();
        bed.stop().await;
        for addr in ports {
            std::net::UdpSocket::bind(addr).expect("ports bind again after stop");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_times_out_with_the_calls_still_up() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("drain-timeout"), "").await;
        let mut up = bed.call(Dir::Outbound).await;
        bed.answer(&mut up).await;
        let left = bed.gw.running().drain(Duration::from_millis(300)).await;
        assert_eq!(left, 1, "the call still up is reported");
        bed.stop().await;
    })
    .await;
}
