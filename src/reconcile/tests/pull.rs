//! The puller against the real emulator (in-process on 127.0.0.1:0): several pages per
//! window, several windows, a restart midway, late records, and an API outage in the middle
//! of a window. Time is virtual; every test is bounded.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{answered, Emu, VirtualClock, T0};
use crate::msapi::{ApiError, BoxFuture, CallRecordsApi, CallRecordsPage};
use crate::reconcile::store::MsStore;
use crate::reconcile::{PullConfig, Puller, ReconcileError, ReconcileStats, Step};
use crate::testdir::temp_dir;

const MIN: u64 = 60_000;

async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("test exceeded its 30 s bound");
}

fn cfg(backfill_min: u64) -> PullConfig {
    PullConfig {
        settle: Duration::from_secs(120),
        max_window: Duration::from_secs(3600),
        reread: Duration::from_secs(600),
        backfill: Duration::from_secs(backfill_min * 60),
        page_retries: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_secs(30),
    }
}

fn open(
    dir: &Path,
    backfill_min: u64,
    api: Arc<dyn CallRecordsApi>,
    clock: &Arc<VirtualClock>,
    stats: &Arc<ReconcileStats>,
) -> Puller {
    Puller::open(dir, cfg(backfill_min), api, clock.clone(), stats.clone())
        .expect("store opens")
        .with_seed(1)
}

/// Every line of every store file, and the distinct ids among them.
fn lines(dir: &Path) -> (usize, usize) {
    let mut ids = std::collections::HashSet::new();
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("records-") {
            continue;
        }
        for line in std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .lines()
        {
            n += 1;
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            ids.insert(v["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    (n, ids.len())
}

#[tokio::test]
async fn every_record_once_across_pages_windows_restarts_and_late_arrivals() {
    bounded(async {
        let emu = Emu::start(3).await;
        // 20 one-minute calls, one every 9 minutes: ends from 10:01 to 12:52.
        let calls: Vec<_> = (0..20)
            .map(|i| answered(&format!("c{i}"), i * 540, MIN, "+14255510000"))
            .collect();
        emu.upload(&calls).await;
        let dir = temp_dir("reconcile-pull-restart");
        let clock = VirtualClock::at(T0 + 185 * MIN);
        let stats = Arc::new(ReconcileStats::default());
        let cancel = CancellationToken::new();
        let mut p = open(&dir, 190, emu.api.clone(), &clock, &stats);
        assert_eq!(p.cursor(), T0 - 5 * MIN, "now − backfill, persisted");
        let mut windows = Vec::new();
        for _ in 0..2 {
            match p.step(&cancel).await.expect("step") {
                Step::Pulled {
                    from_ms,
                    to_ms,
                    pages,
                    ..
                } => {
                    assert!(pages >= 2, "several pages per window");
                    assert!(to_ms - from_ms <= 60 * MIN, "a window is at most 1h");
                    windows.push((from_ms, to_ms));
                }
                other => panic!("{other:?}"),
            }
        }
        drop(p); // restart
        let mut p = open(&dir, 190, emu.api.clone(), &clock, &stats);
        assert_eq!(p.cursor(), windows[1].1, "the cursor survived");
        loop {
            match p.step(&cancel).await.expect("step") {
                Step::Pulled { from_ms, to_ms, .. } => windows.push((from_ms, to_ms)),
                Step::Idle => break,
                Step::Cancelled => panic!("cancelled"),
            }
        }
        assert_eq!(p.cursor(), T0 + 183 * MIN, "now − settle");
        for pair in windows.windows(2) {
            assert_eq!(
                pair[1].0,
                pair[0].1 - 10 * MIN,
                "each window re-reads 10 min: no gap"
            );
        }
        assert_eq!(lines(&dir), (20, 20), "every record stored once");
        let snap = stats.snapshot();
        assert_eq!(snap.records, 20);
        assert!(
            snap.duplicates >= 2,
            "the re-reads saw records again: {snap:?}"
        );
        // Late records: one ending inside the re-read span is caught; an older one is not.
        let late = answered("late", 174 * 60, MIN, "+14255510001"); // ends 12:55
        let too_late = answered("too-late", 150 * 60, MIN, "+14255510002"); // ends 12:31
        emu.upload(&[late, too_late]).await;
        clock.advance(Duration::from_secs(120));
        match p.step(&cancel).await.expect("step") {
            Step::Pulled { new, .. } => assert_eq!(new, 1),
            other => panic!("{other:?}"),
        }
        let store = MsStore::open(&dir).expect("store");
        let ids: Vec<String> = store
            .read(0, u64::MAX)
            .expect("read")
            .records
            .into_iter()
            .map(|r| r.call_id)
            .collect();
        assert!(ids.contains(&"late".to_owned()) && !ids.contains(&"too-late".to_owned()));
        assert_eq!(lines(&dir), (21, 21));
    })
    .await;
}

/// The emulator's call-records endpoint goes down (503, Retry-After 2) after the first
/// page of a window.
struct DownAfterFirstPage {
    emu: Arc<Emu>,
    calls: AtomicUsize,
}

impl CallRecordsApi for DownAfterFirstPage {
    fn call_records<'a>(
        &'a self,
        from: SystemTime,
        to: SystemTime,
        next: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CallRecordsPage, ApiError>> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 1 {
                let outage = json!({"errorRate": 1.0, "errorStatus": 503, "retryAfterSecs": 2,
                                    "pathPrefix": "/v1.0/operatorConnect/callRecords"});
                self.emu.control("/emulator/faults", outage).await;
            }
            self.emu.api.call_records(from, to, next).await
        })
    }
}

#[tokio::test]
async fn an_outage_midway_moves_nothing_and_a_restart_resumes_without_duplicates() {
    bounded(async {
        let emu = Arc::new(Emu::start(2).await);
        let calls: Vec<_> = (0..10)
            .map(|i| answered(&format!("o{i}"), i * 120, 30_000, "+14255510000"))
            .collect();
        emu.upload(&calls).await;
        let dir = temp_dir("reconcile-pull-outage");
        let clock = VirtualClock::at(T0 + 40 * MIN);
        let stats = Arc::new(ReconcileStats::default());
        let cancel = CancellationToken::new();
        let flaky = Arc::new(DownAfterFirstPage {
            emu: emu.clone(),
            calls: AtomicUsize::new(0),
        });
        let mut p = open(&dir, 50, flaky, &clock, &stats);
        let start = p.cursor();
        let e = p
            .step(&cancel)
            .await
            .expect_err("the outage fails the step");
        assert!(
            matches!(
                e,
                ReconcileError::Api(ApiError::Throttled {
                    retry_after_secs: 2
                })
            ),
            "{e}"
        );
        assert_eq!(p.cursor(), start, "the cursor did not move");
        assert_eq!(
            MsStore::open(&dir).and_then(|s| s.cursor()).ok().flatten(),
            Some(start)
        );
        assert_eq!(lines(&dir), (2, 2), "the first page is stored");
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 2, "3 tries, 2 waits");
        assert!(
            sleeps.iter().all(|d| *d >= Duration::from_secs(2)),
            "Retry-After honoured: {sleeps:?}"
        );
        assert!(p.backoff(&e) >= Duration::from_secs(2));
        assert_eq!(stats.snapshot().pull_errors, 3);
        drop(p); // restart while the API is down, then it comes back
        emu.control("/emulator/faults", json!({})).await;
        let mut p = open(&dir, 50, emu.api.clone(), &clock, &stats);
        assert_eq!(p.cursor(), start);
        match p.step(&cancel).await.expect("step") {
            Step::Pulled { new, .. } => assert_eq!(new, 8, "the first page is not stored again"),
            other => panic!("{other:?}"),
        }
        assert_eq!(lines(&dir), (10, 10));
        assert!(stats.snapshot().duplicates >= 2);
        cancel.cancel();
        assert_eq!(
            p.step(&cancel).await.ok(),
            Some(Step::Idle),
            "nothing settled yet"
        );
    })
    .await;
}

#[tokio::test]
async fn explicit_extra_records_are_pulled_like_any_other() {
    bounded(async {
        let emu = Emu::start(100).await;
        emu.upload(&[answered("ok", 60, MIN, "+14255510000")]).await;
        let extra = json!({"extraRecords": [{"callId": "ghost", "startDateTime": "2024-05-01T10:03:00Z",
                                             "endDateTime": "2024-05-01T10:04:00Z"}]});
        emu.control("/emulator/discrepancies", extra).await;
        let bad = reqwest::Client::new()
            .post(format!("{}/emulator/discrepancies", emu.base))
            .json(&json!({"dropRate": 3}))
            .send()
            .await
            .expect("control");
        assert_eq!(bad.status(), 400, "refused, and the settings in force are kept");
        let dir = temp_dir("reconcile-pull-extra");
        let clock = VirtualClock::at(T0 + 30 * MIN);
        let stats = Arc::new(ReconcileStats::default());
        let mut p = open(&dir, 40, emu.api.clone(), &clock, &stats);
        match p.step(&CancellationToken::new()).await.expect("step") {
            Step::Pulled { new, .. } => assert_eq!(new, 2, "the extra record is Microsoft's too"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.next_window(T0 + 30 * MIN), None, "caught up");
    })
    .await;
}

/// One page, whatever is asked.
struct Fixed(Vec<crate::msapi::CallRecord>);

impl CallRecordsApi for Fixed {
    fn call_records<'a>(
        &'a self,
        _: SystemTime,
        _: SystemTime,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CallRecordsPage, ApiError>> {
        let page = CallRecordsPage {
            value: self.0.clone(),
            next_link: None,
        };
        Box::pin(async move { Ok(page) })
    }
}

#[tokio::test]
async fn records_with_bad_times_or_outside_the_window_are_refused_and_counted() {
    use super::ms_record;
    let good = ms_record("good", "2024-05-01T10:05:00Z", 1000);
    let mut bad = ms_record("bad", "2024-05-01T10:06:00Z", 1000);
    bad.start_date_time = "yesterday".into();
    let outside = ms_record("outside", "2024-05-02T10:00:00Z", 1000);
    let api = Arc::new(Fixed(vec![good.clone(), bad, outside, good]));
    let dir = temp_dir("reconcile-pull-bad");
    let clock = VirtualClock::at(T0 + 30 * MIN);
    let stats = Arc::new(ReconcileStats::default());
    let mut p = open(&dir, 40, api, &clock, &stats);
    match p.step(&CancellationToken::new()).await.expect("step") {
        Step::Pulled { new, .. } => assert_eq!(new, 1),
        other => panic!("{other:?}"),
    }
    let snap = stats.snapshot();
    assert_eq!((snap.rejected, snap.duplicates, snap.records), (2, 1, 1));
    assert_eq!(lines(&dir), (1, 1));
}
