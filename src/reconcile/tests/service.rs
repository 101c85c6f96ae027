//! The daemon task: it reports a window once both sides have settled (Microsoft's pulled
//! past it, ours uploaded), finds exactly the injected discrepancies, keeps its report
//! cursor across restarts, and marks a window our spool no longer covers incomplete.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{answered, failed, Emu, VirtualClock, T0};
use crate::cdr::spool::{key_of, Kind, Spool, SpoolConfig};
use crate::cdr::CallRecord;
use crate::reconcile::{OurSource, Params, PullConfig, Reconciler, ServiceConfig, Step};
use crate::testdir::temp_dir;

const MIN: u64 = 60_000;
const B: &str = "+14255510000";

fn spool_cfg(dir: &Path, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        segment_bytes,
        fsync_interval: Duration::from_millis(20),
        max_bytes: 1 << 30,
        alarm_ratio: 0.9,
    }
}

/// Appends `records` as Close entries to a spool in `dir`; acknowledges them when `ack`.
fn spool(dir: &Path, records: &[CallRecord], ack: bool, segment_bytes: u64) {
    let (s, _) = Spool::open(spool_cfg(dir, segment_bytes)).expect("spool opens");
    let mut last = 0;
    for r in records {
        let payload = r.encode();
        last = s
            .append(&[(Kind::Close, key_of(&r.id), &payload)])
            .expect("append");
    }
    s.sync().expect("sync");
    if ack {
        s.ack(last).expect("ack");
    }
}

fn service(dir: &Path, backfill_min: u64) -> ServiceConfig {
    ServiceConfig {
        dir: dir.join("reconcile"),
        interval: Duration::from_secs(60),
        report_window: Duration::from_secs(3600),
        params: Params::default(),
        pull: PullConfig {
            backfill: Duration::from_secs(backfill_min * 60),
            backoff_min: Duration::from_millis(10),
            ..PullConfig::default()
        },
    }
}

fn ours(dir: &Path) -> OurSource {
    OurSource {
        spool_dir: dir.join("spool"),
        export: None,
    }
}

#[tokio::test]
async fn a_settled_window_is_reported_once_with_exactly_the_injected_discrepancies() {
    let emu = Emu::start(4).await;
    let calls: Vec<CallRecord> = (0..8)
        .map(|i| answered(&format!("s{i}"), 60 + i * 300, 30_000 + i * 1000, B))
        .chain([failed("busy", 100, B)])
        .collect();
    emu.upload(&calls).await;
    emu.control(
        "/emulator/discrepancies",
        json!({"driftByCallId": {"s1": 2500, "s2": 900}, "dropCallIds": ["s3"],
               "extraRecords": [{"callId": "ghost", "callerNumber": "+14255550100",
                                 "calleeNumber": "+14255519999",
                                 "startDateTime": "2024-05-01T10:30:00Z",
                                 "endDateTime": "2024-05-01T10:31:00Z"}]}),
    )
    .await;
    let dir = temp_dir("reconcile-service");
    spool(&dir.join("spool"), &calls, false, 1 << 20);
    let clock = VirtualClock::at(T0 + 72 * MIN);
    let mut r = Reconciler::new(
        service(&dir, 90),
        ours(&dir),
        emu.api.clone(),
        clock.clone(),
    )
    .expect("reconciler");
    assert_eq!(
        r.report_cursor(),
        T0,
        "the first whole window after now − backfill + margin"
    );
    let cancel = CancellationToken::new();
    while r.tick(&cancel).await.expect("tick") != Step::Idle {}
    assert_eq!(r.puller().cursor(), T0 + 70 * MIN, "now − settle");
    assert_eq!(r.report_cursor(), T0, "ours are not uploaded yet: wait");
    // Acknowledge ours (the task only reads the spool: it takes no lock).
    let (s, _) = Spool::open(spool_cfg(&dir.join("spool"), 1 << 20)).expect("spool");
    s.ack(calls.len() as u64).expect("ack");
    drop(s);
    assert!(
        r.report_due().expect("report").is_none(),
        "Microsoft's side is not final yet"
    );
    clock.advance(Duration::from_secs(600));
    while r.tick(&cancel).await.expect("tick") != Step::Idle {}
    assert_eq!(r.report_cursor(), T0 + 60 * MIN, "reported");
    let path = dir.join("reconcile/reports/report-20240501T100000Z-20240501T110000Z.jsonl");
    let text = std::fs::read_to_string(&path).expect("report file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    let summary = &lines[0];
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["complete"], true);
    let counts = &summary["counts"];
    assert_eq!(
        (
            &counts["matched"],
            &counts["durationMismatch"],
            &counts["missingOurs"]
        ),
        (&json!(6), &json!(1), &json!(1)),
        "{summary}"
    );
    assert_eq!(
        (&counts["missingMicrosoft"], &counts["notBillable"]),
        (&json!(1), &json!(1))
    );
    let found: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap_or("").into(),
                f["callId"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("missingOurs", "ghost"),
            ("missingMicrosoft", "s3"),
            ("durationMismatch", "s1")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(lines[3]["diffMs"], 2500);
    let snap = r.stats().snapshot();
    assert_eq!(
        (snap.windows, snap.matched, snap.duration_mismatch),
        (1, 6, 1)
    );
    assert_eq!(
        (
            snap.missing_ours,
            snap.missing_microsoft,
            snap.windows_incomplete
        ),
        (1, 1, 0)
    );
    // A restart keeps the report cursor; the next window is not due.
    drop(r);
    let mut r = Reconciler::new(
        service(&dir, 90),
        ours(&dir),
        emu.api.clone(),
        clock.clone(),
    )
    .expect("reconciler");
    assert_eq!(r.report_cursor(), T0 + 60 * MIN);
    assert!(r.report_due().expect("report").is_none());
}

#[tokio::test]
async fn a_window_our_spool_no_longer_covers_is_marked_incomplete() {
    let emu = Emu::start(100).await;
    let calls: Vec<CallRecord> = (0..60)
        .map(|i| answered(&format!("d{i}"), 60 + i * 50, 10_000, B))
        .collect();
    emu.upload(&calls).await;
    let dir = temp_dir("reconcile-service-gone");
    // Small segments, all acknowledged: the oldest are deleted.
    spool(&dir.join("spool"), &calls, true, 4096);
    let (entries, _) = Spool::read_all(&dir.join("spool")).expect("read");
    assert!(
        entries.iter().map(|e| e.seq).min() > Some(1),
        "segments were deleted"
    );
    let clock = VirtualClock::at(T0 + 90 * MIN);
    let mut r = Reconciler::new(service(&dir, 100), ours(&dir), emu.api.clone(), clock)
        .expect("reconciler");
    while r.tick(&CancellationToken::new()).await.expect("tick") != Step::Idle {}
    assert_eq!(r.report_cursor(), T0 + 60 * MIN);
    let snap = r.stats().snapshot();
    assert_eq!((snap.windows, snap.windows_incomplete), (1, 1));
    assert_eq!(
        snap.missing_ours, 0,
        "an incomplete window is not added to the totals"
    );
}

/// Rate-based injection is a function of the seed: two emulators given the same seed and
/// the same records serve the same discrepancies, through HTTP and paging; another seed
/// serves others.
#[tokio::test]
async fn rate_based_discrepancies_are_repeatable_for_a_seed() {
    use crate::reconcile::{fetch_range, Report};
    let calls: Vec<CallRecord> = (0..200)
        .map(|i| answered(&format!("r{i}"), 10 + i * 15, 20_000 + i * 100, B))
        .collect();
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let emu = Emu::start(30).await;
        emu.upload(&calls).await;
        let rates = json!({"seed": seed, "driftRate": 0.1, "driftMs": 4000,
                           "dropRate": 0.1, "extraRate": 0.1});
        emu.control("/emulator/discrepancies", rates).await;
        let theirs = fetch_range(
            emu.api.as_ref(),
            T0,
            T0 + 120 * MIN,
            Duration::from_secs(1800),
            3,
        )
        .await
        .expect("fetch");
        let r = Report::build((T0, T0 + 60 * MIN), &calls, &theirs, &Params::default(), T0);
        let c = r.counts;
        assert!(
            c.duration_mismatch > 5 && c.missing_microsoft > 5 && c.missing_ours > 5,
            "{c:?}"
        );
        assert_eq!(
            c.matched + c.duration_mismatch + c.missing_microsoft,
            200,
            "{c:?}"
        );
        let found: Vec<String> = r
            .discrepancies()
            .iter()
            .map(|f| format!("{:?} {} {:?}", f.class, f.call_id, f.diff_ms))
            .collect();
        runs.push(found);
    }
    assert_eq!(runs[0], runs[1], "same seed, same discrepancies");
    assert_ne!(runs[0], runs[2], "another seed, other calls");
}

/// Reports never run ahead of the store: a report cursor older than what the store holds
/// (the store was removed, say) skips to the first window the store covers, rather than
/// reporting Microsoft's records of those hours as missing.
#[tokio::test]
async fn a_report_cursor_behind_the_store_skips_ahead() {
    let emu = Emu::start(10).await;
    let dir = temp_dir("reconcile-service-skip");
    let reports = dir.join("reconcile/reports");
    std::fs::create_dir_all(&reports).expect("dir");
    crate::reconcile::store::save_cursor(&reports.join("cursor.json"), T0 - 48 * 60 * MIN)
        .expect("cursor");
    let clock = VirtualClock::at(T0 + 72 * MIN);
    let r =
        Reconciler::new(service(&dir, 90), ours(&dir), emu.api.clone(), clock).expect("reconciler");
    assert_eq!(r.report_cursor(), T0);
    assert_eq!(
        crate::reconcile::store::load_cursor(&reports.join("cursor.json")).ok(),
        Some(Some(T0))
    );
}
