//! The numbers sync loop against a scripted fake `NumbersApi`, in virtual time: paging,
//! deltas, 410 resync, throttling and 5xx storms, API down at start with and without a
//! snapshot, a corrupted snapshot, a listing that fails midway.
//!
//! The fake answers each call with the next scripted step and records the cursor plus what
//! the table looked like at that moment; when the script runs out it cancels the loop. The
//! clock jumps forward on every sleep and records it, so backoff is checked exactly.

// The temporary directories of the tests (`src/testdir.rs`); this suite does without the
// rest of `support`.
#[path = "../src/testdir.rs"]
mod testdir;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ocedge::msapi::{ApiError, BoxFuture, Cursor, NumberEntry, NumbersApi, NumbersPage, Removed};
use ocedge::numbers::{snapshot, Clock, NumberTable, Source, SyncConfig, Syncer, TableState};
use ocedge::sip::number::E164;
use testdir::{temp_dir, TempDir};
use tokio_util::sync::CancellationToken;

const T1: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const T2: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";
const INTERVAL: Duration = Duration::from_secs(30);
const MIN: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(60);

/// Time that passes only when the loop sleeps.
struct VirtualClock {
    base: Instant,
    elapsed: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    fn new() -> Arc<VirtualClock> {
        Arc::new(VirtualClock {
            base: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        })
    }
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.base + *self.elapsed.lock().unwrap()
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + *self.elapsed.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        *self.elapsed.lock().unwrap() += d;
        self.sleeps.lock().unwrap().push(d);
        Box::pin(tokio::task::yield_now())
    }
}

/// What the fake saw at one call.
#[derive(Debug, Clone)]
struct Call {
    cursor: String,
    state: TableState,
}

struct FakeApi {
    script: Mutex<VecDeque<Result<NumbersPage, ApiError>>>,
    calls: Mutex<Vec<Call>>,
    table: NumberTable,
    clock: Arc<VirtualClock>,
    done: CancellationToken,
}

impl NumbersApi for FakeApi {
    fn numbers<'a>(&'a self, cursor: Cursor<'a>) -> BoxFuture<'a, Result<NumbersPage, ApiError>> {
        let cursor = match cursor {
            Cursor::Start => "start".to_string(),
            Cursor::Next(l) => format!("next:{l}"),
            Cursor::Delta(l) => format!("delta:{l}"),
        };
        let state = self.table.state_at(self.clock.now());
        self.calls.lock().unwrap().push(Call { cursor, state });
        match self.script.lock().unwrap().pop_front() {
            Some(step) => Box::pin(std::future::ready(step)),
            None => {
                self.done.cancel();
                Box::pin(std::future::pending())
            }
        }
    }
}

fn entry(n: &str, tenant: &str) -> NumberEntry {
    NumberEntry {
        telephone_number: n.into(),
        tenant_id: tenant.into(),
        sip_uri: format!("sip:{n}@teams.example;user=phone"),
        usage: "CallingUserAssignment".into(),
        assignment_status: "assigned".into(),
        capabilities: vec!["InboundCalling".into(), "OutboundCalling".into()],
        last_modified_date_time: "2024-01-01T00:00:00Z".into(),
        removed: None,
    }
}

fn removed(n: &str) -> NumberEntry {
    NumberEntry {
        removed: Some(Removed {
            reason: "deleted".into(),
        }),
        ..entry(n, "")
    }
}

fn numbers(range: std::ops::Range<u32>, tenant: &str) -> Vec<NumberEntry> {
    range
        .map(|i| entry(&format!("+1425555{i:04}"), tenant))
        .collect()
}

fn page(
    value: Vec<NumberEntry>,
    next: Option<&str>,
    delta: Option<&str>,
) -> Result<NumbersPage, ApiError> {
    Ok(NumbersPage {
        value,
        next_link: next.map(String::from),
        delta_link: delta.map(String::from),
    })
}

fn n(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

/// A fresh directory and the snapshot path in it; the directory lasts as long as the guard.
fn temp_snapshot(name: &str) -> (TempDir, PathBuf) {
    let dir = temp_dir(&format!("sync-{name}"));
    let path = dir.join("numbers.snapshot");
    (dir, path)
}

struct Run {
    table: NumberTable,
    calls: Vec<Call>,
    clock: Arc<VirtualClock>,
}

impl Run {
    fn cursors(&self) -> Vec<&str> {
        self.calls.iter().map(|c| c.cursor.as_str()).collect()
    }
    fn state(&self) -> TableState {
        self.table.state_at(self.clock.now())
    }
}

/// Runs the loop over `script` until the script is used up.
async fn run_script(
    table: NumberTable,
    snapshot: Option<PathBuf>,
    script: Vec<Result<NumbersPage, ApiError>>,
) -> Run {
    run_script_with(table, snapshot, script, |_| {}).await
}

/// [`run_script`] with settings changed by `tweak`.
async fn run_script_with(
    table: NumberTable,
    snapshot: Option<PathBuf>,
    script: Vec<Result<NumbersPage, ApiError>>,
    tweak: impl FnOnce(&mut SyncConfig),
) -> Run {
    let clock = VirtualClock::new();
    let done = CancellationToken::new();
    let api = Arc::new(FakeApi {
        script: Mutex::new(script.into()),
        calls: Mutex::new(Vec::new()),
        table: table.clone(),
        clock: clock.clone(),
        done: done.clone(),
    });
    let mut cfg = SyncConfig {
        snapshot,
        delta_interval: INTERVAL,
        backoff_min: MIN,
        backoff_max: MAX,
        page_retries: 3,
        ..SyncConfig::default()
    };
    tweak(&mut cfg);
    let syncer = Syncer::new(api.clone(), table.clone(), cfg)
        .with_clock(clock.clone())
        .with_seed(1);
    tokio::time::timeout(Duration::from_secs(60), syncer.run(done))
        .await
        .expect("loop ends when the script does");
    let calls = api.calls.lock().unwrap().clone();
    Run {
        table,
        calls,
        clock,
    }
}

fn storm(n: usize, e: ApiError) -> Vec<Result<NumbersPage, ApiError>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

#[tokio::test]
async fn initial_full_sync_across_pages_then_deltas() {
    let (_tmp, path) = temp_snapshot("full");
    let r = run_script(
        NumberTable::new(),
        Some(path.clone()),
        vec![
            page(numbers(0..100, T1), Some("p2"), None),
            page(numbers(100..200, T2), Some("p3"), None),
            page(numbers(200..250, T1), None, Some("d1")),
            page(vec![], None, Some("d2")),
        ],
    )
    .await;
    assert_eq!(
        r.cursors(),
        ["start", "next:p2", "next:p3", "delta:d1", "delta:d2"]
    );
    assert!(
        !r.calls[2].state.loaded,
        "nothing installed before the last page"
    );
    assert!(r.calls[3].state.loaded);
    assert_eq!(r.table.len(), 250);
    assert_eq!(r.table.lookup(&n("+14255550150")).unwrap().tenant(), T2);
    assert_eq!(
        r.table.lookup(&n("+14255550001")).unwrap().sip_uri(),
        "sip:+14255550001@teams.example;user=phone"
    );
    assert_eq!(
        r.clock.sleeps(),
        [INTERVAL, INTERVAL],
        "a delta poll each interval"
    );
    let s = r.state();
    assert_eq!(
        (s.source, s.full_syncs, s.deltas),
        (Some(Source::Sync), 1, 1)
    );
    assert_eq!(s.stale_for, Some(INTERVAL), "last success one interval ago");
    assert_eq!(s.last_error, None);
    // Written after the full sync; the empty delta round did not rewrite it.
    let snap = snapshot::read(&path).unwrap().unwrap();
    assert_eq!(snap.delta_link.as_deref(), Some("d1"));
}

#[tokio::test]
async fn deltas_add_change_and_remove() {
    let (_tmp, path) = temp_snapshot("delta");
    let r = run_script(
        NumberTable::new(),
        Some(path.clone()),
        vec![
            page(numbers(0..10, T1), None, Some("d1")),
            page(
                vec![entry("+14255550100", T1), removed("+14255550003")],
                Some("dp2"),
                None,
            ),
            page(
                vec![entry("+14255550004", T2), entry("bogus", T1)],
                None,
                Some("d2"),
            ),
        ],
    )
    .await;
    assert_eq!(r.cursors(), ["start", "delta:d1", "next:dp2", "delta:d2"]);
    assert_eq!(r.table.len(), 10);
    assert!(r.table.lookup(&n("+14255550100")).is_some(), "added");
    assert!(r.table.lookup(&n("+14255550003")).is_none(), "removed");
    assert_eq!(
        r.table.lookup(&n("+14255550004")).unwrap().tenant(),
        T2,
        "changed"
    );
    let s = r.state();
    assert_eq!((s.deltas, s.skipped_invalid), (1, 1));
    // A round with changes rewrites the snapshot, with the new link.
    let snap = snapshot::read(&path).unwrap().unwrap();
    assert_eq!(snap.delta_link.as_deref(), Some("d2"));
    let back = NumberTable::new();
    back.install(snap.batch, Source::Snapshot);
    assert!(back.lookup(&n("+14255550003")).is_none());
    assert_eq!(back.len(), 10);
}

#[tokio::test]
async fn gone_triggers_an_immediate_full_resync() {
    let r = run_script(
        NumberTable::new(),
        None,
        vec![
            page(numbers(0..10, T1), None, Some("d1")),
            Err(ApiError::Gone),
            page(numbers(5..12, T2), None, Some("d9")),
        ],
    )
    .await;
    assert_eq!(r.cursors(), ["start", "delta:d1", "start", "delta:d9"]);
    assert_eq!(r.clock.sleeps(), [INTERVAL, INTERVAL], "no backoff for 410");
    assert_eq!(r.table.len(), 7, "the resync replaced the table");
    assert!(r.table.lookup(&n("+14255550000")).is_none());
    assert_eq!(r.table.lookup(&n("+14255550011")).unwrap().tenant(), T2);
    assert_eq!(r.state().full_syncs, 2);
    assert_eq!(r.state().last_error, None, "410 on a delta is not an error");
}

#[tokio::test]
async fn storms_back_off_and_keep_serving() {
    let mut script = vec![page(numbers(0..50, T1), None, Some("d1"))];
    script.extend(storm(
        2,
        ApiError::Throttled {
            retry_after_secs: 90,
        },
    ));
    script.extend(storm(
        7,
        ApiError::Status {
            status: 503,
            message: "busy".into(),
        },
    ));
    script.push(page(vec![entry("+19995550000", T1)], None, Some("d2")));
    let r = run_script(NumberTable::new(), None, script).await;
    // Every call during the storm saw the full table; the last one, the delta applied.
    assert!(r.calls[1..11]
        .iter()
        .all(|c| c.state.loaded && c.state.entries == 50));
    assert_eq!(r.calls[11].state.entries, 51);
    let errors: Vec<u32> = r.calls[1..]
        .iter()
        .map(|c| c.state.consecutive_errors)
        .collect();
    assert_eq!(errors, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
    let stale: Vec<Duration> = r.calls[1..10]
        .iter()
        .map(|c| c.state.stale_for.unwrap())
        .collect();
    assert!(
        stale.windows(2).all(|w| w[0] < w[1]),
        "staleness grows: {stale:?}"
    );
    let sleeps = r.clock.sleeps();
    // interval, then per error: a wait (page retries and round restarts alike).
    assert_eq!(sleeps[0], INTERVAL);
    assert!(sleeps[1] >= Duration::from_secs(90) && sleeps[2] >= Duration::from_secs(90));
    assert!(
        sleeps[3..10].iter().all(|d| *d >= MIN && *d <= MAX),
        "{sleeps:?}"
    );
    assert!(sleeps.len() == 11 && sleeps[10] == INTERVAL, "{sleeps:?}");
    assert_eq!(r.table.len(), 51);
    let s = r.state();
    assert_eq!((s.last_error, s.consecutive_errors), (None, 0));
}

#[tokio::test]
async fn unauthorized_is_retried_slowly_forever() {
    let mut script = vec![page(numbers(0..5, T1), None, Some("d1"))];
    script.extend(storm(4, ApiError::Unauthorized("invalid_client".into())));
    let r = run_script(NumberTable::new(), None, script).await;
    assert_eq!(r.calls.len(), 6);
    assert_eq!(&r.clock.sleeps()[1..], [MAX, MAX, MAX, MAX]);
    let s = r.state();
    assert!(s.last_error.unwrap().contains("invalid_client"));
    assert_eq!((s.consecutive_errors, s.entries), (4, 5));
}

#[tokio::test]
async fn api_down_at_start_without_snapshot_is_not_loaded() {
    let (_tmp, path) = temp_snapshot("none");
    let r = run_script(
        NumberTable::new(),
        Some(path.clone()),
        storm(6, ApiError::Transport("connection refused".into())),
    )
    .await;
    assert!(r.cursors().iter().all(|c| *c == "start"));
    let s = r.state();
    assert!(!s.loaded && s.source.is_none() && s.stale_for.is_none());
    assert_eq!(s.consecutive_errors, 6);
    assert!(s.last_error.unwrap().contains("connection refused"));
    assert!(!path.exists());
}

fn seeded_snapshot(name: &str, link: Option<&str>) -> (TempDir, PathBuf) {
    let (dir, path) = temp_snapshot(name);
    let t = NumberTable::new();
    t.replace_all(&numbers(0..40, T1), Source::Sync);
    let created = UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 600);
    snapshot::write(&path, &t.view(), link, created).unwrap();
    (dir, path)
}

#[tokio::test]
async fn api_down_at_start_serves_the_snapshot_and_tries_its_delta() {
    let (_tmp, path) = seeded_snapshot("down", Some("dsnap"));
    let r = run_script(
        NumberTable::new(),
        Some(path),
        storm(5, ApiError::Transport("timeout".into())),
    )
    .await;
    assert!(r.calls[0].state.loaded, "served before the first call");
    assert_eq!(r.calls[0].state.source, Some(Source::Snapshot));
    assert_eq!(r.calls[0].state.stale_for, Some(Duration::from_secs(600)));
    assert!(r.cursors().iter().all(|c| *c == "delta:dsnap"));
    assert_eq!(r.table.len(), 40);
    assert!(r.table.lookup(&n("+14255550039")).is_some());
}

#[tokio::test]
async fn restart_resumes_with_the_snapshot_delta() {
    let (_tmp, path) = seeded_snapshot("resume", Some("dsnap"));
    let r = run_script(
        NumberTable::new(),
        Some(path),
        vec![page(vec![removed("+14255550000")], None, Some("d2"))],
    )
    .await;
    assert_eq!(r.cursors(), ["delta:dsnap", "delta:d2"]);
    assert_eq!(r.table.len(), 39);
    assert_eq!(r.state().source, Some(Source::Sync));
}

#[tokio::test]
async fn corrupted_snapshot_is_ignored_and_reported() {
    let (_tmp, path) = seeded_snapshot("corrupt", Some("dsnap"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let r = run_script(
        NumberTable::new(),
        Some(path.clone()),
        vec![page(numbers(0..3, T2), None, Some("d1"))],
    )
    .await;
    assert_eq!(
        r.cursors(),
        ["start", "delta:d1"],
        "full sync, not the snapshot's delta"
    );
    assert!(!r.calls[0].state.loaded);
    let why = r.state().snapshot_load_error.unwrap();
    assert!(why.contains("body checksum"), "{why}");
    assert_eq!(r.table.len(), 3);
    // The sync replaced the bad file.
    assert_eq!(snapshot::read(&path).unwrap().unwrap().batch.entries(), 3);
}

#[tokio::test]
async fn a_listing_failing_midway_never_shrinks_the_table() {
    let busy = || {
        Err(ApiError::Status {
            status: 500,
            message: "oops".into(),
        })
    };
    let r = run_script(
        NumberTable::new(),
        None,
        vec![
            page(numbers(0..30, T1), None, Some("d1")),
            Err(ApiError::Gone),
            page(numbers(0..5, T2), Some("p2"), None),
            busy(),
            busy(),
            busy(),
            // Three failures: the listing starts over, then completes.
            page(numbers(0..5, T2), Some("p2"), None),
            page(numbers(5..8, T2), None, Some("d2")),
        ],
    )
    .await;
    assert_eq!(
        r.cursors(),
        [
            "start", "delta:d1", "start", "next:p2", "next:p2", "next:p2", "start", "next:p2",
            "delta:d2"
        ]
    );
    for c in &r.calls[1..8] {
        assert_eq!(c.state.entries, 30, "{}: table kept whole", c.cursor);
    }
    assert_eq!(r.table.lookup(&n("+14255550001")).unwrap().tenant(), T2);
    assert_eq!(r.table.len(), 8);
}

#[tokio::test]
async fn snapshot_write_failure_is_reported_and_the_table_still_updates() {
    let (_tmp, dir) = temp_snapshot("wfail");
    let blocker = dir.with_file_name("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let r = run_script(
        NumberTable::new(),
        Some(blocker.join("numbers.snapshot")),
        vec![page(numbers(0..4, T1), None, Some("d1"))],
    )
    .await;
    assert_eq!(r.table.len(), 4);
    let s = r.state();
    assert!(s.loaded && s.last_error.is_none());
    assert!(s.snapshot_write_error.unwrap().contains("numbers.snapshot"));
}

#[tokio::test]
async fn an_oversized_delta_round_becomes_a_full_listing() {
    let r = run_script_with(
        NumberTable::new(),
        None,
        vec![
            page(numbers(0..10, T1), None, Some("d1")),
            page(numbers(10..20, T1), Some("dp2"), None),
            page(numbers(20..30, T2), None, Some("d2")),
        ],
        |cfg| cfg.max_delta_entries = 15,
    )
    .await;
    assert_eq!(r.cursors(), ["start", "delta:d1", "next:dp2", "start"]);
    assert_eq!(r.table.len(), 10, "the round was not applied in part");
    assert_eq!(r.clock.sleeps(), [INTERVAL], "no backoff before the resync");
}

#[tokio::test]
async fn an_oversized_listing_fails_and_leaves_the_table() {
    let r = run_script_with(
        NumberTable::new(),
        None,
        vec![
            page(numbers(0..10, T1), None, Some("d1")),
            Err(ApiError::Gone),
            page(numbers(0..10, T2), Some("p2"), None),
            page(numbers(10..20, T2), None, Some("d2")),
        ],
        |cfg| cfg.max_entries = 15,
    )
    .await;
    assert_eq!(
        r.cursors(),
        ["start", "delta:d1", "start", "next:p2", "start"]
    );
    assert_eq!(r.table.len(), 10);
    assert_eq!(r.table.lookup(&n("+14255550001")).unwrap().tenant(), T1);
    let s = r.state();
    assert!(s.last_error.unwrap().contains("max_entries"));
}
