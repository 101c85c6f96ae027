//! The sync loop: snapshot at start, full listing, delta polls, snapshots after each sync.
//!
//! 1. Load the snapshot (if any) into the table, so calls are served at once; a snapshot
//!    that cannot be read is logged, reported in [`super::TableState`] and ignored.
//! 2. With a delta link (from the snapshot or the last sync), poll `Cursor::Delta` every
//!    `delta_interval`, following `@odata.nextLink` pages, and apply the round at once.
//!    `Gone` (410: the link expired) drops the link: a full listing follows at once, as it
//!    does when a round holds more than `max_delta_entries` (a bound on memory).
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

mod persist;
mod time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::batch::Batch;
use super::state::Source;
use super::table::NumberTable;
use crate::msapi::{ApiError, Cursor, NumberEntry, NumbersApi, NumbersPage};

pub use time::{Backoff, Clock, TokioClock, MAX_RETRY_AFTER};

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
    /// Most entries one full listing may hold (a bound on memory: 16 bytes each while
    /// the listing is built); beyond it the listing fails.
    pub max_entries: usize,
    /// Most entries one delta round may hold (a bound on memory: the round is kept as API
    /// entries until it is applied); beyond it a full listing replaces the round.
    pub max_delta_entries: usize,
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
            max_delta_entries: 200_000,
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

/// Why a step stopped.
enum Stop {
    Cancelled,
    Api(ApiError),
    /// The delta round is too large to hold: list everything instead.
    TooLarge,
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
                Err(Stop::TooLarge) if delta => {
                    warn!(
                        max = self.cfg.max_delta_entries,
                        "numbers delta round too large; full resync instead"
                    );
                    self.delta_link = None;
                    continue;
                }
                Err(Stop::Api(e)) => self.backoff.next(&e, &mut self.rng),
                Err(Stop::TooLarge) => {
                    let e = ApiError::Decode(format!(
                        "more than max_entries ({}) in one listing",
                        self.cfg.max_entries
                    ));
                    self.report(&e);
                    self.backoff.next(&e, &mut self.rng)
                }
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

    /// Follows `Next` links from the page `first` reads, calling `take` on each page (which
    /// returns the entries held so far, at most `max`); returns the last page's delta link.
    async fn pages(
        &mut self,
        first: Cursor<'_>,
        cancel: &CancellationToken,
        max: usize,
        mut take: impl FnMut(Vec<NumberEntry>) -> usize,
    ) -> Result<Option<String>, Stop> {
        let mut page = self.fetch(first, cancel).await?;
        loop {
            if take(page.value) > max {
                return Err(Stop::TooLarge);
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
            .pages(Cursor::Start, cancel, self.cfg.max_entries, |value| {
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
            .pages(
                Cursor::Delta(&link),
                cancel,
                self.cfg.max_delta_entries,
                |value| {
                    changes.extend(value);
                    changes.len()
                },
            )
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
}

/// Runs CPU- or disk-heavy work (building a table, a snapshot) off the async workers.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
