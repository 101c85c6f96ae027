//! The puller: Microsoft's call records, settled window by settled window, into the store.
//!
//! Each [`Puller::step`] reads the window `[cursor − reread, to)` with
//! `to = min(cursor − reread + max_window, now − settle)` (nothing when `to` is not past the
//! cursor), page by page along `@odata.nextLink`. A page's records not already held are
//! appended to the store (and fsynced) at once, so memory stays at one page; once the last
//! page is in, the cursor moves to `to` and is persisted atomically. So:
//!
//! - **No gap**: the cursor only moves after every page of its window is stored; a failure
//!   or a restart anywhere reads the whole window again.
//! - **No duplicate**: the ids of records ending after `cursor − reread` are held in memory
//!   (loaded from the store at start) and records already held are dropped, whether they
//!   come from the re-read overlap, a retried window or a window read again after a restart.
//! - **Late records**: a record that appears at Microsoft up to `settle + reread` after its
//!   call ended is still pulled; later ones are not (`ocedge reconcile --source api` reads
//!   the API directly).
//!
//! A failed page is retried up to `page_retries` times with backoff (full jitter,
//! `Retry-After` honoured: [`crate::numbers::sync::Backoff`]), then the step fails and the
//! caller waits [`Puller::backoff`] before the next. Records whose times do not read, or
//! that end outside the window asked for, are counted and not stored. Time comes from a
//! [`Clock`], so tests run it in virtual time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

use super::stats::ReconcileStats;
use super::store::MsStore;
use super::{ms, parse_ms, ReconcileError};
use crate::blocking;
use crate::msapi::{ApiError, CallRecord, CallRecordsApi, CallRecordsPage};
use crate::numbers::sync::{Backoff, Clock, TokioClock};

/// The puller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullConfig {
    /// Only calls that ended at least this long ago are pulled.
    pub settle: Duration,
    /// Longest window of one step (the request window, re-read included).
    pub max_window: Duration,
    /// How much before the cursor each step reads again (shorter than `max_window`).
    pub reread: Duration,
    /// Where the first cursor is, before `now`, when the store has none.
    pub backfill: Duration,
    /// Tries of one page before the step fails.
    pub page_retries: u32,
    /// Shortest wait after an error.
    pub backoff_min: Duration,
    /// Longest wait after an error.
    pub backoff_max: Duration,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            settle: Duration::from_secs(120),
            max_window: Duration::from_secs(3600),
            reread: Duration::from_secs(600),
            backfill: Duration::from_secs(3600),
            page_retries: 5,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl PullConfig {
    /// The settings of `[reconcile]` (retries and backoff at their defaults).
    pub fn from_config(r: &crate::config::Reconcile) -> PullConfig {
        PullConfig {
            settle: r.settle.0,
            max_window: r.pull_window.0,
            reread: r.reread.0,
            backfill: r.backfill.0,
            ..PullConfig::default()
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A window was read whole; the cursor is now `to_ms`.
    Pulled {
        /// Start of the window read (UTC ms).
        from_ms: u64,
        /// Its end: the new cursor.
        to_ms: u64,
        /// Records appended.
        new: usize,
        /// Pages read.
        pages: usize,
    },
    /// Nothing has settled past the cursor yet.
    Idle,
    /// Cancelled midway; the cursor did not move.
    Cancelled,
}

/// The puller's state; see the module documentation.
pub struct Puller {
    api: Arc<dyn CallRecordsApi>,
    store: MsStore,
    cfg: PullConfig,
    clock: Arc<dyn Clock>,
    rng: StdRng,
    backoff: Backoff,
    /// Ids held, with their end, for records ending at or after `cursor − reread`.
    seen: HashMap<String, u64>,
    cursor: u64,
    stats: Arc<ReconcileStats>,
    on_record: Option<OnRecord>,
}

/// Called once for every record newly stored (after it is durable): e.g. to forward its
/// quality data.
pub type OnRecord = Arc<dyn Fn(&CallRecord) + Send + Sync>;

impl Puller {
    /// Calls `f` for every record stored from now on (never twice for one id).
    pub fn on_record(&mut self, f: OnRecord) {
        self.on_record = Some(f);
    }

    /// Opens the store in `dir`: its cursor (or `now − backfill`, persisted at once) and the
    /// ids of the span the next step re-reads.
    pub fn open(
        dir: &Path,
        cfg: PullConfig,
        api: Arc<dyn CallRecordsApi>,
        clock: Arc<dyn Clock>,
        stats: Arc<ReconcileStats>,
    ) -> Result<Puller, ReconcileError> {
        let store = MsStore::open(dir)?;
        let cursor = match store.cursor()? {
            Some(c) => c,
            None => {
                let c = wall_ms(clock.as_ref()).saturating_sub(ms(cfg.backfill));
                store.save_cursor(c)?;
                c
            }
        };
        let held = store.read(cursor.saturating_sub(ms(cfg.reread)), u64::MAX)?;
        let seen = held
            .records
            .into_iter()
            .filter_map(|r| Some((parse_ms(&r.end_date_time)?, r.id)))
            .map(|(end, id)| (id, end))
            .collect();
        stats.set(&stats.pull_cursor_ms, cursor);
        Ok(Puller {
            api,
            store,
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            cfg,
            clock,
            rng: StdRng::from_os_rng(),
            seen,
            cursor,
            stats,
            on_record: None,
        })
    }

    /// Seeds the jitter (tests: reproducible waits).
    pub fn with_seed(mut self, seed: u64) -> Puller {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Records of calls that ended before this (UTC ms) are stored.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The settings.
    pub fn config(&self) -> &PullConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &MsStore {
        &self.store
    }

    /// The window the next step reads at `now_ms`, if any has settled.
    pub fn next_window(&self, now_ms: u64) -> Option<(u64, u64)> {
        let from = self.cursor.saturating_sub(ms(self.cfg.reread));
        let horizon = now_ms.saturating_sub(ms(self.cfg.settle));
        let to = from.saturating_add(ms(self.cfg.max_window)).min(horizon);
        (to > self.cursor).then_some((from, to))
    }

    /// How long to wait after a failed step.
    pub fn backoff(&mut self, e: &ReconcileError) -> Duration {
        match e {
            ReconcileError::Api(api) => self.backoff.next(api, &mut self.rng),
            _ => self.cfg.backoff_max,
        }
    }

    /// Reads the next settled window whole, or does nothing; see the module documentation.
    pub async fn step(&mut self, cancel: &CancellationToken) -> Result<Step, ReconcileError> {
        let Some((from, to)) = self.next_window(wall_ms(self.clock.as_ref())) else {
            return Ok(Step::Idle);
        };
        let (mut new, mut pages) = (0, 0);
        let mut next: Option<String> = None;
        loop {
            let Some(page) = self.fetch(from, to, next.as_deref(), cancel).await? else {
                return Ok(Step::Cancelled);
            };
            pages += 1;
            self.stats.add(&self.stats.pages, 1);
            new += blocking(|| self.keep(page.value, from, to))?;
            match page.next_link {
                Some(link) => next = Some(link),
                None => break,
            }
        }
        blocking(|| self.store.save_cursor(to))?;
        self.cursor = to;
        let keep_from = to.saturating_sub(ms(self.cfg.reread));
        self.seen.retain(|_, end| *end >= keep_from);
        self.stats.set(&self.stats.pull_cursor_ms, to);
        tracing::debug!(from = from, to = to, new, pages, "call records pulled");
        Ok(Step::Pulled {
            from_ms: from,
            to_ms: to,
            new,
            pages,
        })
    }

    /// Stores the records of a page not held yet; how many.
    fn keep(
        &mut self,
        records: Vec<CallRecord>,
        from: u64,
        to: u64,
    ) -> Result<usize, ReconcileError> {
        let mut fresh: Vec<(u64, CallRecord)> = Vec::new();
        let mut page_ids = std::collections::HashSet::new();
        for r in records {
            let end = parse_ms(&r.end_date_time).filter(|e| (from..to).contains(e));
            let Some(end) = end.filter(|_| parse_ms(&r.start_date_time).is_some()) else {
                self.stats.add(&self.stats.rejected, 1);
                tracing::warn!(id = %r.id, end = %r.end_date_time, "call record refused: bad times");
                continue;
            };
            if self.seen.contains_key(&r.id) || !page_ids.insert(r.id.clone()) {
                self.stats.add(&self.stats.duplicates, 1);
                continue;
            }
            fresh.push((end, r));
        }
        let refs: Vec<(u64, &CallRecord)> = fresh.iter().map(|(e, r)| (*e, r)).collect();
        self.store.append(&refs)?;
        self.stats.add(&self.stats.records, fresh.len() as u64);
        if let Some(f) = &self.on_record {
            for (_, r) in &fresh {
                f(r);
            }
        }
        let n = fresh.len();
        self.seen.extend(fresh.into_iter().map(|(e, r)| (r.id, e)));
        Ok(n)
    }

    /// One page, retried; `None` when cancelled.
    async fn fetch(
        &mut self,
        from: u64,
        to: u64,
        next: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Option<CallRecordsPage>, ReconcileError> {
        let mut tries = 0u32;
        loop {
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                r = self.api.call_records(time(from), time(to), next) => r,
            };
            let e = match result {
                Ok(page) => {
                    self.backoff.reset();
                    return Ok(Some(page));
                }
                Err(e) => e,
            };
            self.stats.add(&self.stats.pull_errors, 1);
            tries += 1;
            tracing::warn!(error = %e, tries, "call records page failed");
            if !e.is_retryable() || tries >= self.cfg.page_retries {
                return Err(e.into());
            }
            let wait = self.backoff.next(&e, &mut self.rng);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                _ = self.clock.sleep(wait) => {}
            }
        }
    }
}

/// Reads every record ending in `[from_ms, to_ms)` straight from the API, in windows of at
/// most `max_window`, each id once; each page is tried up to `retries` times with backoff.
/// The store and its cursor are not touched (`ocedge reconcile --source api`).
pub async fn fetch_range(
    api: &dyn CallRecordsApi,
    from_ms: u64,
    to_ms: u64,
    max_window: Duration,
    retries: u32,
) -> Result<Vec<CallRecord>, ApiError> {
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut rng = StdRng::from_os_rng();
    let mut at = from_ms;
    while at < to_ms {
        let end = at.saturating_add(ms(max_window).max(1)).min(to_ms);
        let mut next: Option<String> = None;
        loop {
            let mut tries = 0;
            let page = loop {
                match api.call_records(time(at), time(end), next.as_deref()).await {
                    Ok(p) => break p,
                    Err(e) if e.is_retryable() && tries + 1 < retries => {
                        tries += 1;
                        tokio::time::sleep(backoff.next(&e, &mut rng)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            let fresh = page.value.into_iter().filter(|r| ids.insert(r.id.clone()));
            out.extend(fresh);
            match page.next_link {
                Some(link) => next = Some(link),
                None => break,
            }
        }
        at = end;
    }
    Ok(out)
}

/// The clock's wall time in UTC ms.
pub(crate) fn wall_ms(clock: &dyn Clock) -> u64 {
    clock.wall().duration_since(UNIX_EPOCH).map_or(0, ms)
}

fn time(ms: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The real clock.
pub(crate) fn real_clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock)
}
