//! The sync loop: snapshot at start, full listing, delta polls, snapshots after each sync.
//!
//! 1. Load the snapshot (if any) into the table, so calls are served at once; a snapshot
//!    that cannot be read is logged, reported in [`super::TableState`] and ignored.
//! 2. With a delta link (from the snapshot or the last sync), poll `Cursor::Delta` every
//!    `delta_interval`, following `@odata.nextLink` pages, and apply the round at once.
//!    `Gone` (410: the link expired) drops the link: a full listing follows at once.
//! 3. Without one, list everything (`Cursor::Start`, then `Next`) into a [`Batch`] off to
//!    the side, and install it only when the last page arrived: a failed listing never
//!    empties or shrinks the table.
//! 4. After each successful listing or delta round, write the snapshot (an empty round
//!    rewrites it only when the last write is `snapshot_refresh` old: at 10M numbers a
//!    snapshot is ~120 MB, and an older delta link is still valid or answers 410).
//!
//! Errors never end the loop. A failed page is retried `page_retries` times, then the
//! listing or round starts over. Waits are exponential with full jitter between
//! `backoff_min` and `backoff_max`, at least `Retry-After` when throttled; errors no retry
//! can fix (refused credentials, an unreadable answer) wait `backoff_max` and are logged
//! as errors. Time comes from a [`Clock`], so tests run the loop in virtual time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::snapshot;
use super::table::{Applied, Batch, NumberTable, Source};
use crate::msapi::{ApiError, BoxFuture, Cursor, NumberEntry, NumbersApi, NumbersPage};

/// Longest `Retry-After` honoured (a bogus header must not park the loop for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Where the loop gets time from.
pub trait Clock: Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (snapshot times, `last_sync_ok`).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// The real clock: tokio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// The loop's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Where the snapshot is read at start and written after syncs; `None`: no snapshot.
    pub snapshot: Option<PathBuf>,
    /// Time between delta polls.
    pub delta_interval: Duration,
    /// Shortest wait after an error.
    pub backoff_min: Duration,
    /// Longest wait after an error (and the wait after one no retry can fix).
    pub backoff_max: Duration,
    /// Tries of one page before the listing or delta round starts over.
    pub page_retries: u32,
    /// Most entries one listing or delta round may hold (a bound on memory).
    pub max_entries: usize,
    /// An empty delta round rewrites the snapshot only when the last write is this old.
    pub snapshot_refresh: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            snapshot: None,
            delta_interval: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            page_retries: 5,
            max_entries: 50_000_000,
            snapshot_refresh: Duration::from_secs(300),
        }
    }
}

impl SyncConfig {
    /// The settings of a `[numbers]` table (backoff and limits at their defaults).
    pub fn from_config(n: &crate::config::Numbers) -> SyncConfig {
        SyncConfig {
            snapshot: Some(n.snapshot.clone()),
            delta_interval: n.delta_interval.0,
            ..SyncConfig::default()
        }
    }
}

/// Exponential backoff with full jitter, bounded by `min` and `max`. Pure.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max` (`max` raised to `min` if below).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// After a success: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait after `e`: uniform in `[min, min(max, min·2^attempt)]`; `max` when no
    /// retry can fix `e`; at least `Retry-After` (up to [`MAX_RETRY_AFTER`]) when throttled.
    pub fn next(&mut self, e: &ApiError, rng: &mut impl Rng) -> Duration {
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        if !e.is_retryable() {
            return self.max;
        }
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        let cap = self.min.saturating_mul(factor).min(self.max);
        let (lo, hi) = (self.min.as_millis() as u64, cap.as_millis() as u64);
        let d = Duration::from_millis(rng.random_range(lo..=hi.max(lo)));
        match e {
            ApiError::Throttled { retry_after_secs } => {
                d.max(Duration::from_secs(*retry_after_secs).min(MAX_RETRY_AFTER))
            }
            _ => d,
        }
    }
}

/// Why a step stopped.
enum Stop {
    Cancelled,
    Api(ApiError),
}

/// The sync loop's state; [`Syncer::run`] drives it until cancelled.
pub struct Syncer {
    api: Arc<dyn NumbersApi>,
    table: NumberTable,
    cfg: SyncConfig,
    clock: Arc<dyn Clock>,
    rng: StdRng,
    backoff: Backoff,
    delta_link: Option<String>,
    last_write: Option<Instant>,
}

/// Runs the sync loop with tokio's clock until `cancel` fires. Never returns otherwise.
pub async fn run(
    api: Arc<dyn NumbersApi>,
    table: NumberTable,
    cfg: SyncConfig,
    cancel: CancellationToken,
) {
    Syncer::new(api, table, cfg).run(cancel).await
}

impl Syncer {
    /// A loop over `api` filling `table`.
    pub fn new(api: Arc<dyn NumbersApi>, table: NumberTable, cfg: SyncConfig) -> Syncer {
        Syncer {
            api,
            table,
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            cfg,
            clock: Arc::new(TokioClock),
            rng: StdRng::from_os_rng(),
            delta_link: None,
            last_write: None,
        }
    }

    /// Uses `clock` for waits and timestamps (tests: a virtual clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Syncer {
        self.clock = clock;
        self
    }

    /// Seeds the jitter (tests: reproducible waits).
    pub fn with_seed(mut self, seed: u64) -> Syncer {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.load_snapshot().await;
        loop {
            let delta = self.delta_link.is_some();
            let step = if delta {
                self.delta(&cancel).await
            } else {
                self.full(&cancel).await
            };
            let wait = match step {
                Ok(()) => self.cfg.delta_interval,
                Err(Stop::Cancelled) => return,
                Err(Stop::Api(ApiError::Gone)) if delta => {
                    info!("numbers delta link expired; full resync");
                    self.delta_link = None;
                    continue;
                }
                Err(Stop::Api(e)) => self.backoff.next(&e, &mut self.rng),
            };
            if self.sleep(wait, &cancel).await.is_err() {
                return;
            }
        }
    }

    async fn sleep(&self, d: Duration, cancel: &CancellationToken) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Stop::Cancelled),
            _ = self.clock.sleep(d) => Ok(()),
        }
    }

    /// One page, retried on errors a retry can fix; `Gone` and the rest are returned.
    async fn fetch(
        &mut self,
        cursor: Cursor<'_>,
        cancel: &CancellationToken,
    ) -> Result<NumbersPage, Stop> {
        let mut tries = 0u32;
        loop {
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Stop::Cancelled),
                r = self.api.numbers(cursor) => r,
            };
            let e = match result {
                Ok(page) => {
                    self.backoff.reset();
                    return Ok(page);
                }
                Err(ApiError::Gone) => return Err(Stop::Api(ApiError::Gone)),
                Err(e) => e,
            };
            self.report(&e);
            tries += 1;
            if !e.is_retryable() || tries >= self.cfg.page_retries {
                return Err(Stop::Api(e));
            }
            let wait = self.backoff.next(&e, &mut self.rng);
            self.sleep(wait, cancel).await?;
        }
    }

    /// Follows `Next` links from the page `first` reads, calling `take` on each page; returns
    /// the delta link of the last page.
    async fn pages(
        &mut self,
        first: Cursor<'_>,
        cancel: &CancellationToken,
        mut take: impl FnMut(Vec<NumberEntry>) -> usize,
    ) -> Result<Option<String>, Stop> {
        let mut page = self.fetch(first, cancel).await?;
        loop {
            if take(page.value) > self.cfg.max_entries {
                let e = ApiError::Decode(format!(
                    "more than max_entries ({}) in one listing",
                    self.cfg.max_entries
                ));
                self.report(&e);
                return Err(Stop::Api(e));
            }
            let Some(next) = page.next_link else {
                return Ok(page.delta_link);
            };
            page = self.fetch(Cursor::Next(&next), cancel).await?;
        }
    }

    async fn full(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let mut batch = Batch::new();
        let link = self
            .pages(Cursor::Start, cancel, |value| {
                batch.extend(&value);
                batch.entries()
            })
            .await;
        let link = match link {
            Err(Stop::Api(ApiError::Gone)) => {
                // A listing's own next link expired: start over after a wait.
                self.report(&ApiError::Gone);
                return Err(Stop::Api(ApiError::Gone));
            }
            other => other?,
        };
        if let Some(last) = batch.last_skip() {
            warn!(
                skipped = batch.applied().skipped,
                last, "invalid number entries skipped"
            );
        }
        let table = self.table.clone();
        let applied = off_thread(move || table.install(batch, Source::Sync)).await;
        info!(numbers = applied.len, "numbers full sync installed");
        self.delta_link = link;
        self.succeeded(true);
        self.persist(true).await;
        Ok(())
    }

    async fn delta(&mut self, cancel: &CancellationToken) -> Result<(), Stop> {
        let link = self.delta_link.clone().unwrap_or_default();
        let mut changes: Vec<NumberEntry> = Vec::new();
        let next = self
            .pages(Cursor::Delta(&link), cancel, |value| {
                changes.extend(value);
                changes.len()
            })
            .await?;
        let received = changes.len();
        let table = self.table.clone();
        let applied = off_thread(move || table.apply_delta(&changes)).await;
        if applied.skipped > 0 {
            warn!(skipped = applied.skipped, "invalid number entries skipped");
        }
        debug!(received, numbers = applied.len, "numbers delta applied");
        if next.is_none() {
            warn!("numbers delta round ended without a delta link; keeping the previous one");
        }
        self.delta_link = next.or(Some(link));
        self.succeeded(false);
        self.persist(received > 0).await;
        Ok(())
    }

    fn succeeded(&mut self, full: bool) {
        let mut s = self.table.status();
        s.last_ok = Some(self.clock.now());
        s.last_ok_age = Duration::ZERO;
        s.last_ok_wall = Some(self.clock.wall());
        s.last_error = None;
        s.consecutive_errors = 0;
        s.source = Some(Source::Sync);
        if full {
            s.full_syncs += 1;
        } else {
            s.deltas += 1;
        }
    }

    fn report(&mut self, e: &ApiError) {
        let now = self.clock.now();
        let mut s = self.table.status();
        s.last_error = Some(e.to_string());
        s.consecutive_errors = s.consecutive_errors.saturating_add(1);
        let errors = s.consecutive_errors;
        let stale_secs = s
            .last_ok
            .map(|t| now.saturating_duration_since(t).as_secs());
        drop(s);
        let loaded = self.table.is_loaded();
        if e.is_retryable() {
            warn!(error = %e, errors, stale_secs, loaded, "numbers API call failed; serving the last table");
        } else {
            error!(error = %e, errors, stale_secs, loaded, "numbers API refuses us or answers garbage; needs a person, retrying slowly");
        }
    }

    async fn load_snapshot(&mut self) {
        let Some(path) = self.cfg.snapshot.clone() else {
            return;
        };
        let table = self.table.clone();
        let shown = path.display().to_string();
        let loaded = off_thread(move || {
            let l = snapshot::read(&path)?;
            Ok(l.map(|l| {
                (
                    l.created,
                    l.delta_link,
                    table.install(l.batch, Source::Snapshot),
                )
            }))
        })
        .await;
        match loaded {
            Ok(Some((created, link, applied))) => self.serve_snapshot(created, link, applied),
            Ok(None) => info!(
                path = shown,
                "no numbers snapshot; waiting for the first sync"
            ),
            Err::<_, snapshot::SnapshotError>(e) => {
                warn!(path = shown, error = %e, "numbers snapshot unreadable; ignored, full sync follows");
                self.table.status().snapshot_load_error = Some(e.to_string());
            }
        }
    }

    fn serve_snapshot(&mut self, created: SystemTime, link: Option<String>, applied: Applied) {
        let age = self
            .clock
            .wall()
            .duration_since(created)
            .unwrap_or_default();
        let now = self.clock.now();
        let mut s = self.table.status();
        s.last_ok_wall = Some(created);
        s.last_ok = Some(now);
        s.last_ok_age = age;
        s.source = Some(Source::Snapshot);
        drop(s);
        info!(
            numbers = applied.len,
            age_secs = age.as_secs(),
            delta = link.is_some(),
            "serving numbers from snapshot"
        );
        self.delta_link = link;
    }

    async fn persist(&mut self, changed: bool) {
        let Some(path) = self.cfg.snapshot.clone() else {
            return;
        };
        let now = self.clock.now();
        let fresh = self
            .last_write
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.snapshot_refresh);
        if !changed && fresh {
            return;
        }
        let (view, link, wall) = (
            self.table.view(),
            self.delta_link.clone(),
            self.clock.wall(),
        );
        let written =
            off_thread(move || snapshot::write(&path, &view, link.as_deref(), wall)).await;
        match written {
            Ok(w) => {
                debug!(
                    entries = w.entries,
                    bytes = w.bytes,
                    "numbers snapshot written"
                );
                self.last_write = Some(now);
                self.table.status().snapshot_write_error = None;
            }
            Err(e) => {
                error!(error = %e, "numbers snapshot write failed; the table is current, a restart would load an older one");
                self.table.status().snapshot_write_error = Some(e.to_string());
            }
        }
    }
}

/// Runs CPU- or disk-heavy work (building a table, a snapshot) off the async workers.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(min, max);
        let mut r = rng();
        let e = ApiError::Transport("reset".into());
        for attempt in 0..40u32 {
            let d = b.next(&e, &mut r);
            let cap = min.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
            assert!(d >= min && d <= cap.min(max), "attempt {attempt}: {d:?}");
        }
        // Full jitter: late waits spread over the whole range.
        let late: Vec<_> = (0..200).map(|_| b.next(&e, &mut r)).collect();
        assert!(late.iter().any(|d| *d < Duration::from_secs(20)));
        assert!(late.iter().any(|d| *d > Duration::from_secs(40)));
        b.reset();
        assert!(b.next(&e, &mut r) <= Duration::from_secs(1));
    }

    #[test]
    fn throttling_waits_at_least_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut r = rng();
        let t = ApiError::Throttled {
            retry_after_secs: 30,
        };
        assert!((0..10).all(|_| b.next(&t, &mut r) >= Duration::from_secs(30)));
        let huge = ApiError::Throttled {
            retry_after_secs: u64::MAX,
        };
        assert_eq!(b.next(&huge, &mut r), MAX_RETRY_AFTER);
    }

    #[test]
    fn hopeless_errors_wait_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut r = rng();
        for e in [
            ApiError::Unauthorized("no".into()),
            ApiError::Decode("x".into()),
        ] {
            assert_eq!(b.next(&e, &mut r), Duration::from_secs(60));
        }
        let mut inverted = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        let d = inverted.next(&ApiError::Transport("x".into()), &mut r);
        assert_eq!(d, Duration::from_secs(5), "max is raised to min");
    }
}
