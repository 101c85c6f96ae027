//! The quality pipeline: RFC 6035 reports accepted by the proxy are queued (bounded),
//! parsed off the proxy's lock (`quality::vqreport`, tolerant), and each sample goes to the
//! sinks: Prometheus histograms (labels: source, trunk), rotating JSONL files, and a
//! webhook (batched, retried with backoff, bounded queue). Samples from Microsoft's call
//! records enter through [`QualityPipeline::submit`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cdr::export::period_file;
use crate::cdr::{now_ms, rfc3339_ms};
use crate::config::{QualityCfg, Webhook};
use crate::proxy::policy::QualityIntake;
use crate::quality::vqreport::{self, QualitySample};

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An SBC's RFC 6035 report.
    Sbc,
    /// Microsoft's call records.
    Microsoft,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Sbc => "sbc",
            Source::Microsoft => "microsoft",
        }
    }
}

/// One sample as the sinks write it (JSONL lines, webhook array items).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleOut {
    /// `sbc` or `microsoft`.
    pub source: &'static str,
    /// The SBC's configured name, or `microsoft`.
    pub trunk: String,
    /// SIP Call-ID: links the sample to its call record.
    pub call_id: Option<String>,
    /// Jitter, ms.
    pub jitter_ms: Option<u32>,
    /// Packet loss, percent.
    pub loss_percent: Option<f32>,
    /// Round trip, ms.
    pub round_trip_ms: Option<u32>,
    /// MOS-LQ.
    pub mos_lq: Option<f32>,
    /// MOS-CQ.
    pub mos_cq: Option<f32>,
    /// Start of the measured period.
    pub start_date_time: Option<String>,
    /// End of the measured period.
    pub stop_date_time: Option<String>,
    /// When ocedge received it.
    pub received_date_time: String,
    /// Fields of the report that did not parse.
    pub field_errors: u32,
}

/// Counters shared with status and tests.
#[derive(Debug, Default)]
pub struct QualityStats {
    /// Samples through the sinks.
    pub samples: AtomicU64,
    /// Reports dropped because the intake queue was full.
    pub dropped_queue: AtomicU64,
    /// Samples dropped from a full webhook queue.
    pub dropped_webhook: AtomicU64,
    /// Samples the webhook accepted (2xx).
    pub webhook_sent: AtomicU64,
}

/// The running pipeline; also the proxy's [`QualityIntake`].
pub struct QualityPipeline {
    tx: mpsc::Sender<Item>,
    /// Counters.
    pub stats: Arc<QualityStats>,
}

enum Item {
    Report {
        sbc: String,
        body: Bytes,
    },
    Sample {
        source: Source,
        trunk: String,
        sample: QualitySample,
    },
}

impl QualityIntake for QualityPipeline {
    fn report(&self, sbc: &str, body: Bytes) {
        let item = Item::Report {
            sbc: sbc.to_owned(),
            body,
        };
        if self.tx.try_send(item).is_err() {
            self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            crate::admin::publish_quality_drop("queue");
        }
    }
}

impl QualityPipeline {
    /// A sample from elsewhere (Microsoft's call records); false when the queue is full.
    pub fn submit(&self, source: Source, trunk: &str, sample: QualitySample) -> bool {
        let ok = self
            .tx
            .try_send(Item::Sample {
                source,
                trunk: trunk.to_owned(),
                sample,
            })
            .is_ok();
        if !ok {
            self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            crate::admin::publish_quality_drop("queue");
        }
        ok
    }
}

/// Starts the pipeline's tasks.
pub fn start(
    cfg: &QualityCfg,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Arc<QualityPipeline>> {
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let stats = Arc::new(QualityStats::default());
    let webhook = match &cfg.webhook {
        Some(w) => {
            let hook = Arc::new(WebhookQueue::new(w)?);
            tracker.spawn(hook.clone().run(cancel.clone(), stats.clone()));
            Some(hook)
        }
        None => None,
    };
    let files = cfg.dir.as_ref().map(|d| Files {
        dir: d.clone(),
        rotate: cfg.rotate.0,
        open: None,
    });
    tracker.spawn(consume(rx, files, webhook, stats.clone(), cancel.clone()));
    Ok(Arc::new(QualityPipeline { tx, stats }))
}

async fn consume(
    mut rx: mpsc::Receiver<Item>,
    mut files: Option<Files>,
    webhook: Option<Arc<WebhookQueue>>,
    stats: Arc<QualityStats>,
    cancel: CancellationToken,
) {
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => return,
            i = rx.recv() => match i { Some(i) => i, None => return },
        };
        let (source, trunk, sample, errors) = match item {
            Item::Report { sbc, body } => {
                let report = vqreport::parse(&body);
                let errors = u32::try_from(report.errors.len()).unwrap_or(u32::MAX);
                crate::admin::publish_quality_field_errors(u64::from(errors));
                (Source::Sbc, sbc, report.summary(), errors)
            }
            Item::Sample {
                source,
                trunk,
                sample,
            } => (source, trunk, sample, 0),
        };
        crate::admin::publish_quality(source.as_str(), &trunk, &sample);
        stats.samples.fetch_add(1, Ordering::Relaxed);
        let out = SampleOut {
            source: source.as_str(),
            trunk,
            call_id: sample.call_id.clone(),
            jitter_ms: sample.jitter_ms,
            loss_percent: sample.loss_percent,
            round_trip_ms: sample.round_trip_ms,
            mos_lq: sample.mos_lq,
            mos_cq: sample.mos_cq,
            start_date_time: sample.start_ms.map(rfc3339_ms),
            stop_date_time: sample.stop_ms.map(rfc3339_ms),
            received_date_time: rfc3339_ms(now_ms()),
            field_errors: errors,
        };
        if let Some(f) = files.as_mut() {
            if let Err(e) = f.write(&out) {
                tracing::error!(error = %e, "quality JSONL write failed");
            }
        }
        if let Some(w) = &webhook {
            w.push(out, &stats);
        }
    }
}

/// Rotating JSONL files.
struct Files {
    dir: std::path::PathBuf,
    rotate: Duration,
    open: Option<(u64, File)>,
}

impl Files {
    fn write(&mut self, out: &SampleOut) -> std::io::Result<()> {
        let (start, name) = period_file("quality", now_ms(), self.rotate, "jsonl");
        if self.open.as_ref().is_none_or(|(s, _)| *s != start) {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(name);
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            self.open = Some((start, f));
        }
        let mut line = serde_json::to_vec(out).map_err(std::io::Error::other)?;
        line.push(b'\n');
        match &mut self.open {
            Some((_, f)) => f.write_all(&line),
            None => Ok(()),
        }
    }
}

/// The webhook's bounded queue and its sender task.
struct WebhookQueue {
    url: String,
    batch: usize,
    cap: usize,
    client: reqwest::Client,
    queue: Mutex<VecDeque<SampleOut>>,
    wake: Notify,
}

impl WebhookQueue {
    fn new(w: &Webhook) -> anyhow::Result<WebhookQueue> {
        Ok(WebhookQueue {
            url: w.url.clone(),
            batch: w.batch_size.max(1),
            cap: w.queue.max(1),
            client: reqwest::Client::builder().timeout(w.timeout.0).build()?,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        })
    }

    fn push(&self, s: SampleOut, stats: &QualityStats) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cap {
            q.pop_front();
            stats.dropped_webhook.fetch_add(1, Ordering::Relaxed);
            crate::admin::publish_quality_drop("webhook");
        }
        q.push_back(s);
        drop(q);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>, cancel: CancellationToken, stats: Arc<QualityStats>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let batch: Vec<SampleOut> = {
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.iter().take(self.batch).cloned().collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            }
            let sent = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.client.post(&self.url).json(&batch).send() => r,
            };
            match sent {
                Ok(r) if r.status().is_success() => {
                    backoff = Duration::from_millis(500);
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    // Only what was sent (the front may have been dropped meanwhile: then
                    // fewer are removed, and a few are sent twice rather than lost).
                    let n = batch.len().min(q.len());
                    q.drain(..n);
                    stats
                        .webhook_sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("HTTP {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(error = %why, retry_in = ?backoff, "quality webhook failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// The quality samples of one of Microsoft's call records: one per media stream, with
/// jitter and round trip from the ISO 8601 durations and loss as a percentage (Graph gives
/// a rate 0–1). Microsoft's records carry no MOS.
pub fn microsoft_samples(r: &crate::msapi::CallRecord) -> Vec<QualitySample> {
    let start = humantime::parse_rfc3339(&r.start_date_time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let stop = humantime::parse_rfc3339(&r.end_date_time)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    r.media_streams
        .iter()
        .map(|m| QualitySample {
            call_id: Some(r.call_id.clone()),
            jitter_ms: m.average_jitter_ms().map(|v| v.round() as u32),
            loss_percent: m.average_packet_loss_rate.map(|v| (v * 100.0) as f32),
            round_trip_ms: m.average_round_trip_ms().map(|v| v.round() as u32),
            start_ms: start,
            stop_ms: stop,
            ..QualitySample::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microsoft_records_become_one_sample_per_media_stream() {
        let ours = crate::cdr::record::tests::sample().to_duration();
        let theirs = crate::emulator::records::call_record(&ours);
        assert!(
            !theirs.media_streams.is_empty(),
            "answered calls carry quality"
        );
        let samples = microsoft_samples(&theirs);
        assert_eq!(samples.len(), theirs.media_streams.len());
        for (s, m) in samples.iter().zip(&theirs.media_streams) {
            assert_eq!(s.call_id.as_deref(), Some(ours.call_id.as_str()));
            assert_eq!(s.jitter_ms, m.average_jitter_ms().map(|v| v.round() as u32));
            assert_eq!(
                s.loss_percent,
                m.average_packet_loss_rate.map(|v| (v * 100.0) as f32)
            );
            assert!(s.mos_lq.is_none(), "Microsoft's records have no MOS");
            assert!(s.start_ms.is_some() && s.stop_ms >= s.start_ms);
        }
    }
}
