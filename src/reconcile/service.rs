//! The daemon's reconciliation task: pull (see [`super::pull`]), then report every window
//! that has settled on both sides, until cancelled.
//!
//! Report windows are `report_window` long and aligned to it (hourly windows start on the
//! hour, UTC). The window `[a, b)` is reported once
//!
//! 1. Microsoft's side is final for it: the pull cursor minus the re-read span is past
//!    `b + edge_margin` (later pulls cannot add records it would use), and
//! 2. our side is: no record ending before `b + edge_margin` is still waiting for the
//!    uploader or the exporter (Microsoft only has the records of durations it was given).
//!
//! Its report is written to `<dir>/reports/` (format in [`super::report`]), then the report
//! cursor (`reports/cursor.json`) moves to `b`; a crash in between writes the same report
//! again. A window our records do not fully cover (the spool deleted them and there are no
//! export files) is written marked incomplete and left out of the class totals. Errors are
//! logged and never stop the task: a failed pull waits its backoff, a failed report is tried
//! again after the next pull.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::model::Params;
use super::ours::OurSource;
use super::pull::{real_clock, wall_ms, PullConfig, Puller, Step};
use super::report::Report;
use super::stats::ReconcileStats;
use super::store::{load_cursor, save_cursor};
use super::{ms, ReconcileError};
use crate::blocking;
use crate::cdr::rfc3339_ms;
use crate::config::Config;
use crate::msapi::CallRecordsApi;
use crate::numbers::sync::Clock;

/// The task's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// `<dir>/ms-records/` and `<dir>/reports/`.
    pub dir: PathBuf,
    /// Time between pulls once caught up.
    pub interval: Duration,
    /// Length of a report window.
    pub report_window: Duration,
    /// How records are matched.
    pub params: Params,
    /// The puller's settings.
    pub pull: PullConfig,
}

impl ServiceConfig {
    /// The settings of `[reconcile]`.
    pub fn from_config(r: &crate::config::Reconcile) -> ServiceConfig {
        ServiceConfig {
            dir: r.dir.clone(),
            interval: r.interval.0,
            report_window: r.report_window.0,
            params: Params::from_config(r),
            pull: PullConfig::from_config(r),
        }
    }
}

/// The reconciliation task; [`Reconciler::run`] drives it.
pub struct Reconciler {
    cfg: ServiceConfig,
    puller: Puller,
    ours: OurSource,
    clock: Arc<dyn Clock>,
    stats: Arc<ReconcileStats>,
    report_cursor: u64,
}

impl Reconciler {
    /// The task `cfg` asks for, over `api`: `None` when `[reconcile]` is disabled.
    pub fn from_config(
        cfg: &Config,
        api: Arc<dyn CallRecordsApi>,
    ) -> Result<Option<Reconciler>, ReconcileError> {
        if !cfg.reconcile.enabled {
            return Ok(None);
        }
        let service = ServiceConfig::from_config(&cfg.reconcile);
        Reconciler::new(service, OurSource::from_config(cfg), api, real_clock()).map(Some)
    }

    /// Opens the store and the report cursor (both created at the first start: the first
    /// report window is the first whole one after `now − backfill + edge_margin`; a report
    /// cursor before what the store holds skips ahead to that window).
    pub fn new(
        cfg: ServiceConfig,
        ours: OurSource,
        api: Arc<dyn CallRecordsApi>,
        clock: Arc<dyn Clock>,
    ) -> Result<Reconciler, ReconcileError> {
        let stats = Arc::new(ReconcileStats::default());
        let puller = Puller::open(
            &cfg.dir.join("ms-records"),
            cfg.pull.clone(),
            api,
            clock.clone(),
            stats.clone(),
        )?;
        let reports = cfg.dir.join("reports");
        std::fs::create_dir_all(&reports).map_err(ReconcileError::io(&reports))?;
        let path = reports.join("cursor.json");
        // The first window whose edge margin the store holds.
        let since = puller.store().covers()?.map_or(0, |(since, _)| since);
        let first = align_up(
            since.saturating_add(cfg.params.edge_margin_ms),
            ms(cfg.report_window),
        );
        let report_cursor = match load_cursor(&path)? {
            Some(c) if c >= first => c,
            found => {
                if let Some(c) = found {
                    tracing::warn!(
                        report_cursor = %rfc3339_ms(c),
                        store_since = %rfc3339_ms(since),
                        "the call-records store begins after the report cursor: skipping ahead"
                    );
                }
                save_cursor(&path, first)?;
                first
            }
        };
        stats.set(&stats.report_cursor_ms, report_cursor);
        Ok(Reconciler {
            cfg,
            puller,
            ours,
            clock,
            stats,
            report_cursor,
        })
    }

    /// The counters, to publish as metrics (take them before spawning [`Reconciler::run`]).
    pub fn stats(&self) -> Arc<ReconcileStats> {
        self.stats.clone()
    }

    /// The puller (its cursor and store).
    pub fn puller(&self) -> &Puller {
        &self.puller
    }

    /// Calls `f` for every Microsoft record newly stored (see [`Puller::on_record`]).
    pub fn on_record(&mut self, f: crate::reconcile::pull::OnRecord) {
        self.puller.on_record(f);
    }

    /// Windows before this (UTC ms) are reported.
    pub fn report_cursor(&self) -> u64 {
        self.report_cursor
    }

    /// Pulls and reports until `cancel` fires. File work (appends, fsyncs, reading the
    /// spool for a report) runs in `block_in_place` on a multi-threaded runtime, so the
    /// task can be spawned beside the others as it is.
    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(
            dir = %self.cfg.dir.display(),
            pull_cursor = %rfc3339_ms(self.puller.cursor()),
            report_cursor = %rfc3339_ms(self.report_cursor),
            "reconciliation started"
        );
        loop {
            let wait = match self.tick(&cancel).await {
                Ok(Step::Cancelled) => return,
                Ok(Step::Pulled { .. }) => Duration::ZERO,
                Ok(Step::Idle) => self.cfg.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "call records pull failed");
                    self.puller.backoff(&e)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = self.clock.sleep(wait) => {}
            }
        }
    }

    /// One round: one pull step, then every report that is due (a report that fails is
    /// logged and tried again next round). The step's result.
    pub async fn tick(&mut self, cancel: &CancellationToken) -> Result<Step, ReconcileError> {
        let step = self.puller.step(cancel).await;
        loop {
            match blocking(|| self.report_due()) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "reconciliation report failed");
                    break;
                }
            }
        }
        step
    }

    /// Reports the next window when both sides have settled for it: the report and the
    /// file it was written to; `None` when it is not time yet.
    pub fn report_due(&mut self) -> Result<Option<(PathBuf, Report)>, ReconcileError> {
        let (a, b) = (
            self.report_cursor,
            self.report_cursor
                .saturating_add(ms(self.cfg.report_window)),
        );
        let margin = self.cfg.params.edge_margin_ms;
        let (lo, hi) = (a.saturating_sub(margin), b.saturating_add(margin));
        let final_ms = self
            .puller
            .cursor()
            .saturating_sub(ms(self.cfg.pull.reread));
        if hi > final_ms {
            return Ok(None);
        }
        let ours = self.ours.load(lo, hi)?;
        if ours.unacked_from_ms.is_some_and(|t| t < hi) {
            tracing::debug!(window = %rfc3339_ms(a), "reconciliation waits for our upload");
            return Ok(None);
        }
        let theirs = self.puller.store().read(lo, hi)?;
        let now = wall_ms(self.clock.as_ref());
        let mut report = Report::build(
            (a, b),
            &ours.records,
            &theirs.records,
            &self.cfg.params,
            now,
        );
        let bad = ours.bad + theirs.bad_lines;
        if bad > 0 {
            report
                .notes
                .push(format!("{bad} unreadable lines or payloads skipped"));
        }
        if ours.covered_from_ms > lo {
            report = report.incomplete(format!(
                "our records are complete only from {}: older ones left the spool; [cdr.export] keeps them",
                rfc3339_ms(ours.covered_from_ms.min(b))
            ));
        }
        let path = report.write(&self.cfg.dir.join("reports"))?;
        save_cursor(&self.cfg.dir.join("reports").join("cursor.json"), b)?;
        self.report_cursor = b;
        let st = &self.stats;
        st.set(&st.report_cursor_ms, b);
        st.add(&st.windows, 1);
        if report.complete {
            st.add_counts(&report.counts);
        } else {
            st.add(&st.windows_incomplete, 1);
        }
        tracing::info!(
            window = %report.from,
            matched = report.counts.matched,
            mismatched = report.counts.duration_mismatch,
            missing_ours = report.counts.missing_ours,
            missing_microsoft = report.counts.missing_microsoft,
            complete = report.complete,
            "reconciliation report written"
        );
        Ok(Some((path, report)))
    }
}

/// `v` rounded up to a multiple of `step` (`step` 0: `v`).
fn align_up(v: u64, step: u64) -> u64 {
    match v.checked_rem(step) {
        Some(0) | None => v,
        Some(r) => v.saturating_add(step - r),
    }
}
