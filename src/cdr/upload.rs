//! The uploader: gives every finished record in the spool to Microsoft's call-durations
//! API, exactly once as far as Microsoft counts (ids are deterministic, so a replay after a
//! timeout, a crash or a lost answer is answered `duplicate` and never counted twice).
//!
//! Loop: read the Close entries after its position, wait until the batch is full or its
//! oldest record is `batch_wait` old, upload, and act per record: `accepted` and
//! `duplicate` are done; `rejected` goes to the dead-letter file with the reason (fsynced)
//! and is done. Only then does its position move, and the spool's acknowledgement cursor
//! with it (through the [`AckGate`], which waits for the exporter too). A whole-batch error
//! moves nothing: 429/503 wait `Retry-After`, 5xx and transport errors back off with jitter;
//! a 400 or 413 splits the batch, down to the one record that is refused, which is
//! dead-lettered (the contract says a 400 must not be retried unchanged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::dead::DeadLetters;
use super::gate::AckGate;
use super::spool::{Entry, Spool};
use super::{now_ms, CallRecord};
use crate::admin::UploadErrorKind;
use crate::config::CdrUpload;
use crate::msapi::{ApiError, DurationRecord, DurationResults, DurationsApi};
use crate::numbers::sync::Backoff;

/// The API's limit on records per request.
pub const API_MAX_BATCH: usize = 1000;

/// Uploader settings (`[cdr.upload]`).
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Most records per request (1..=1000).
    pub batch_size: usize,
    /// How long a partial batch waits for more records.
    pub batch_wait: Duration,
    /// Backoff bounds after a failed request.
    pub backoff_min: Duration,
    /// See `backoff_min`.
    pub backoff_max: Duration,
}

impl UploadConfig {
    /// From the `[cdr.upload]` table.
    pub fn from_config(c: &CdrUpload) -> UploadConfig {
        UploadConfig {
            batch_size: c.batch_size.clamp(1, API_MAX_BATCH),
            batch_wait: c.batch_wait.0,
            backoff_min: c.backoff_min.0,
            backoff_max: c.backoff_max.0,
        }
    }
}

/// Counters, shared with the admin status and metrics.
#[derive(Debug, Default)]
pub struct UploadStats {
    /// Records Microsoft accepted.
    pub accepted: AtomicU64,
    /// Records Microsoft already had (replays).
    pub duplicate: AtomicU64,
    /// Records refused and dead-lettered.
    pub rejected: AtomicU64,
    /// Requests that failed as a whole, by kind (in [`UploadErrorKind::ALL`] order).
    pub errors: [AtomicU64; 5],
    /// Requests sent.
    pub requests: AtomicU64,
    /// The highest seq done (uploaded or dead-lettered).
    pub position: AtomicU64,
    /// Records waiting for upload (Close entries after `position`, last seen).
    pub queue: AtomicU64,
}

impl UploadStats {
    /// Failed requests per kind, for metrics.
    pub fn errors_by_kind(&self) -> Vec<(UploadErrorKind, u64)> {
        UploadErrorKind::ALL
            .iter()
            .zip(&self.errors)
            .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What happened to one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Accepted now.
    pub accepted: usize,
    /// Accepted before.
    pub duplicate: usize,
    /// Dead-lettered.
    pub rejected: usize,
}

/// The uploader task; see the module documentation.
pub struct Uploader {
    spool: Arc<Spool>,
    api: Arc<dyn DurationsApi>,
    cfg: UploadConfig,
    dead: DeadLetters,
    gate: Arc<AckGate>,
    consumer: usize,
    wake: Arc<Notify>,
    stats: Arc<UploadStats>,
    backoff: Backoff,
}

impl Uploader {
    /// An uploader reading `spool` from the gate's position of `consumer`.
    pub fn new(
        spool: Arc<Spool>,
        api: Arc<dyn DurationsApi>,
        cfg: UploadConfig,
        dead: DeadLetters,
        gate: Arc<AckGate>,
        consumer: usize,
        wake: Arc<Notify>,
    ) -> Uploader {
        let stats = Arc::new(UploadStats::default());
        stats
            .position
            .store(gate.position(consumer), Ordering::Relaxed);
        Uploader {
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            spool,
            api,
            cfg,
            dead,
            gate,
            consumer,
            wake,
            stats,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<UploadStats> {
        self.stats.clone()
    }

    /// Runs until `cancel`; a batch in flight is finished or abandoned (replayed later).
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let pos = self.stats.position.load(Ordering::Relaxed);
            let entries = match crate::blocking(|| self.spool.read_closes(pos, self.cfg.batch_size))
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the CDR spool");
                    if sleep_or_cancel(&cancel, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            self.stats.queue.store(
                self.spool.stats().last_seq.saturating_sub(pos),
                Ordering::Relaxed,
            );
            if let Some(wait) = self.wait_for_more(&entries) {
                // Nothing yet: wake on the next record. A partial batch: wait for it to age
                // (records arriving meanwhile join it on the re-read).
                let woken = async {
                    if entries.is_empty() {
                        self.wake.notified().await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = woken => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let last = entries.last().map_or(pos, |e| e.seq);
            let done = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.upload_entries(&entries) => r,
            };
            match done {
                Ok(_) => {
                    self.backoff.reset();
                    self.stats.position.store(last, Ordering::Relaxed);
                    if let Err(e) = crate::blocking(|| self.gate.advance(self.consumer, last)) {
                        tracing::error!(error = %e, "acknowledging uploaded records");
                    }
                }
                Err(e) => {
                    let kind = UploadErrorKind::of(&e);
                    if let Some(i) = UploadErrorKind::ALL.iter().position(|k| *k == kind) {
                        self.stats.errors[i].fetch_add(1, Ordering::Relaxed);
                    }
                    let wait = self.backoff.next(&e, &mut rand::rng());
                    tracing::warn!(error = %e, retry_in = ?wait, "call-duration upload failed");
                    if sleep_or_cancel(&cancel, wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// `None` to send now; else how long to wait for more records (nothing to send, or a
    /// partial batch whose oldest record is younger than `batch_wait`).
    fn wait_for_more(&self, entries: &[Entry]) -> Option<Duration> {
        let Some(first) = entries.first() else {
            return Some(self.cfg.batch_wait.max(Duration::from_millis(100)));
        };
        if entries.len() >= self.cfg.batch_size {
            return None;
        }
        let age = now_ms().saturating_sub(first.time_ms);
        let wait = (self.cfg.batch_wait.as_millis() as u64).saturating_sub(age);
        (wait > 0).then(|| Duration::from_millis(wait))
    }

    /// Uploads `entries` (splitting on 400/413), dead-letters refused and undecodable
    /// records. `Ok` when every record is done.
    async fn upload_entries(&self, entries: &[Entry]) -> Result<BatchOutcome, ApiError> {
        let mut out = BatchOutcome::default();
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            match CallRecord::decode(&e.payload) {
                Ok(r) => records.push(r.into_duration()),
                Err(err) => {
                    let raw = String::from_utf8_lossy(&e.payload).into_owned();
                    self.dead_letter_raw(
                        e.seq,
                        &raw,
                        &format!("undecodable spool payload: {err}"),
                    )?;
                    out.rejected += 1;
                }
            }
        }
        // Work list of slices still to send; a 400/413 splits one in two.
        let mut work: Vec<&[DurationRecord]> = vec![&records];
        while let Some(chunk) = work.pop() {
            if chunk.is_empty() {
                continue;
            }
            match self.send(chunk).await {
                Ok(results) => self.apply(chunk, &results, &mut out)?,
                Err(ApiError::Status { status, message }) if matches!(status, 400 | 413) => {
                    if chunk.len() == 1 {
                        let reason = format!("HTTP {status}: {message}");
                        self.dead.append(&chunk[0], &reason).map_err(io_err)?;
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        out.rejected += 1;
                    } else {
                        let (a, b) = chunk.split_at(chunk.len() / 2);
                        // Popped last-in first-out: push the second half first.
                        work.push(b);
                        work.push(a);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn send(&self, chunk: &[DurationRecord]) -> Result<DurationResults, ApiError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let results = self.api.upload(chunk).await?;
        let matches = results.value.len() == chunk.len()
            && results.value.iter().zip(chunk).all(|(r, d)| r.id == d.id);
        if !matches {
            return Err(ApiError::Decode(format!(
                "{} results for {} records, or ids out of order",
                results.value.len(),
                chunk.len()
            )));
        }
        Ok(results)
    }

    fn apply(
        &self,
        chunk: &[DurationRecord],
        results: &DurationResults,
        out: &mut BatchOutcome,
    ) -> Result<(), ApiError> {
        for (r, d) in results.value.iter().zip(chunk) {
            match r.status.as_str() {
                "accepted" => {
                    out.accepted += 1;
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                }
                "duplicate" => {
                    out.duplicate += 1;
                    self.stats.duplicate.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    let reason = match (&r.reason, other) {
                        (Some(reason), "rejected") => reason.clone(),
                        (reason, status) => format!(
                            "status {status:?}: {}",
                            reason.as_deref().unwrap_or("no reason given")
                        ),
                    };
                    tracing::warn!(id = %d.id, %reason, "call-duration record rejected");
                    self.dead.append(d, &reason).map_err(io_err)?;
                    out.rejected += 1;
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    fn dead_letter_raw(&self, seq: u64, raw: &str, reason: &str) -> Result<(), ApiError> {
        tracing::error!(seq, %reason, "dead-lettering a spool record");
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        self.dead.append_raw(raw, reason).map_err(io_err)
    }
}

/// A dead-letter write failure stops the batch (nothing acknowledged): retried later.
fn io_err(e: std::io::Error) -> ApiError {
    ApiError::Transport(format!("writing the dead-letter file: {e}"))
}

/// Sleeps `d`; true when cancelled first.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
