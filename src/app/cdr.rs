//! The daemon's call-record pipeline: the spool (opened and recovered at start, fsynced by
//! its group-commit thread), the tracker's sink over it, the uploader and the exporter, and
//! the acknowledgement gate between them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{CdrSink, SinkFull};
use crate::cdr::dead::DeadLetters;
use crate::cdr::export::Exporter;
use crate::cdr::gate::AckGate;
use crate::cdr::spool::{key_of, GroupCommit, Kind, Spool, SpoolConfig, SpoolError};
use crate::cdr::upload::{UploadConfig, UploadStats, Uploader};
use crate::cdr::{CallRecord, OpenCall};
use crate::config::Config;
use crate::msapi::DurationsApi;

/// The running pipeline.
pub struct CdrPipeline {
    /// The spool.
    pub spool: Arc<Spool>,
    /// The tracker's sink.
    pub sink: Arc<SpoolSink>,
    /// Calls journaled as up before the restart, for the tracker.
    pub recovered: Vec<OpenCall>,
    /// The uploader's counters, when uploading.
    pub upload: Option<Arc<UploadStats>>,
    commit: Mutex<Option<GroupCommit>>,
}

impl CdrPipeline {
    /// Makes everything appended durable and stops the group-commit thread (at shutdown,
    /// after the proxy stopped).
    pub fn finish(&self) {
        if let Err(e) = self.sink.flush() {
            tracing::error!(error = %e, "CDR records still held in memory at shutdown");
        }
        let commit = self.commit.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(c) = commit {
            if let Err(e) = c.stop() {
                tracing::error!(error = %e, "final spool sync failed");
            }
        }
    }
}

/// Opens the spool and starts its consumers. `None` when `[cdr] enabled = false`.
pub fn start(
    cfg: &Config,
    api: Option<Arc<dyn DurationsApi>>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Option<CdrPipeline>> {
    if !cfg.cdr.enabled {
        return Ok(None);
    }
    let dir = cfg.cdr.spool_dir.clone();
    let (spool, rec) = Spool::open(SpoolConfig::from_config(&cfg.cdr))
        .with_context(|| format!("opening the CDR spool in {}", dir.display()))?;
    if rec.torn_bytes > 0 || rec.corrupt > 0 {
        tracing::warn!(
            torn_bytes = rec.torn_bytes,
            corrupt = rec.corrupt,
            "CDR spool recovered from damage"
        );
    }
    let recovered: Vec<OpenCall> = rec
        .open
        .iter()
        .filter_map(|e| match OpenCall::decode(&e.payload) {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::error!(seq = e.seq, error = %err, "undecodable journal entry skipped");
                None
            }
        })
        .collect();
    tracing::info!(
        segments = rec.segments,
        pending = rec.unacked,
        calls_up = recovered.len(),
        dir = %dir.display(),
        "CDR spool open"
    );
    let commit = spool.spawn_group_commit();

    // Consumers: the uploader (0) when there is an API and upload is on, the exporter next.
    let api = api.filter(|_| cfg.cdr.upload.enabled);
    let export = cfg.cdr.export.clone();
    let mut starts = Vec::new();
    if api.is_some() {
        starts.push(spool.cursor());
    }
    if let Some(x) = &export {
        let pos = Exporter::recover(&x.dir).with_context(|| {
            format!(
                "rolling back an unfinished export batch in {}",
                x.dir.display()
            )
        })?;
        starts.push(pos);
    }
    let gate = Arc::new(AckGate::new(spool.clone(), &starts));
    let mut wakes = Vec::new();
    let mut upload = None;
    let mut consumer = 0;
    if let Some(api) = api {
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        let up = Uploader::new(
            spool.clone(),
            api,
            UploadConfig::from_config(&cfg.cdr.upload),
            DeadLetters::new(&dir.join("dead-letter.jsonl")),
            gate.clone(),
            consumer,
            wake,
        );
        upload = Some(up.stats());
        tracker.spawn(up.run(cancel.clone()));
        consumer += 1;
    }
    if let Some(x) = export {
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        let ex = Exporter::new(x, spool.clone(), gate.clone(), consumer, wake);
        tracker.spawn(ex.run(cancel.clone()));
        consumer += 1;
    }
    if consumer == 0 {
        tracing::warn!(
            "[cdr]: neither upload nor export is on: records are acknowledged as soon as \
             they are durable (kept only as a crash journal)"
        );
        let spool = spool.clone();
        tracker.spawn(every_second(cancel.clone(), move || auto_ack(&spool)));
    }
    let sink = Arc::new(SpoolSink {
        spool: spool.clone(),
        wakes,
        held: Mutex::new(Vec::new()),
    });
    // Records the spool could not take (a full or failing disk) are retried every second.
    let held = sink.clone();
    tracker.spawn(every_second(cancel.clone(), move || {
        if let Err(e) = held.flush() {
            tracing::error!(error = %e, "CDR spool still failing; records held in memory");
        }
    }));
    Ok(Some(CdrPipeline {
        spool,
        sink,
        recovered,
        upload,
        commit: Mutex::new(Some(commit)),
    }))
}

/// Runs `tick` every second until `cancel`.
async fn every_second(cancel: CancellationToken, mut tick: impl FnMut() + Send) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Acknowledging (a cursor fsync) and retrying held records touch the disk.
        crate::blocking(&mut tick);
    }
}

/// With no consumer: acknowledges what is durable.
fn auto_ack(spool: &Spool) {
    let s = spool.stats();
    if s.durable_seq > s.cursor {
        if let Err(e) = spool.ack(s.durable_seq) {
            tracing::error!(error = %e, "acknowledging CDR records");
        }
    }
}

/// The tracker's sink over the spool. A finished record the spool cannot take (disk error)
/// is held in memory and retried (every append and every second) — never dropped; while any
/// is held, new calls are refused.
pub struct SpoolSink {
    spool: Arc<Spool>,
    wakes: Vec<Arc<Notify>>,
    held: Mutex<Vec<([u8; 16], Vec<u8>)>>,
}

impl SpoolSink {
    /// Records held in memory because the spool refused them.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<([u8; 16], Vec<u8>)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends every held record (one write).
    pub fn flush(&self) -> Result<(), SpoolError> {
        let mut held = self.lock();
        if held.is_empty() {
            return Ok(());
        }
        self.append_closes(&mut held)
    }

    fn append_closes(&self, held: &mut Vec<([u8; 16], Vec<u8>)>) -> Result<(), SpoolError> {
        let batch: Vec<(Kind, [u8; 16], &[u8])> = held
            .iter()
            .map(|(k, p)| (Kind::Close, *k, p.as_slice()))
            .collect();
        match self.spool.append(&batch) {
            // Full refuses Opens only: the Closes were written.
            Ok(_) | Err(SpoolError::Full) => {
                held.clear();
                for w in &self.wakes {
                    w.notify_one();
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl CdrSink for SpoolSink {
    fn open(&self, call: &OpenCall) -> Result<(), SinkFull> {
        let payload = call.encode();
        match self
            .spool
            .append(&[(Kind::Open, key_of(&call.record.id), &payload)])
        {
            Ok(_) => Ok(()),
            Err(SpoolError::Full) => Err(SinkFull),
            Err(e) => {
                tracing::error!(error = %e, "journaling an answered call failed");
                Err(SinkFull)
            }
        }
    }

    fn close(&self, rec: &CallRecord) {
        let mut held = self.lock();
        held.push((key_of(&rec.id), rec.encode()));
        if let Err(e) = self.append_closes(&mut held) {
            tracing::error!(error = %e, held = held.len(), "CDR spool append failed; record held in memory");
        }
    }

    fn is_full(&self) -> bool {
        self.spool.is_full() || !self.lock().is_empty()
    }
}
