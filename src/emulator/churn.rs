//! Random assignment churn: every `interval`, `changes` random changes to the numbers table
//! (a removal, a move to another tenant, or a new number), as real tenants do in the Teams
//! admin center. Each change goes through the change log, so deltas report it.

use std::sync::Arc;
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{ChurnConfig, Shared};

/// Runs until `cancel`.
pub(crate) async fn run(s: Arc<Shared>, cfg: ChurnConfig, cancel: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(cfg.seed.unwrap_or_else(rand::random));
    let mut tick = tokio::time::interval(cfg.interval.max(std::time::Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tick.tick().await; // the first tick is immediate; churn starts one interval in
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = SystemTime::now();
        let mut table = s.numbers_mut();
        let made = (0..cfg.changes)
            .filter(|_| table.churn(&mut rng, now))
            .count();
        drop(table);
        s.stats
            .churned
            .fetch_add(made as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(changes = made, "api emulator churn");
    }
}
