//! The sync loop's disk side: the snapshot loaded at start and written after syncs.

use std::time::SystemTime;

use tracing::{debug, error, info, warn};

use super::{off_thread, Syncer};
use crate::numbers::batch::Applied;
use crate::numbers::snapshot;
use crate::numbers::state::Source;

impl Syncer {
    pub(super) async fn load_snapshot(&mut self) {
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

    pub(super) async fn persist(&mut self, changed: bool) {
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
