//! Repair after a failed fsync.
//!
//! When `fdatasync` fails, Linux may already have marked the pages it could not write as
//! clean: they can be dropped from the cache, and a later fsync of the same file reports
//! success without having written them. Retrying the fsync therefore proves nothing. The
//! spool instead keeps every byte written since the last successful sync in memory
//! (`Inner::pending`) and, after a failure, writes each segment concerned again, whole, to
//! a fresh file that replaces it: the part a sync already made durable read back from the
//! file, the rest from memory. The replacement has the same name, the same frames at the
//! same offsets, so nothing else changes (locations, read positions, the format), and a
//! crash at any point leaves either the old file or the new one under each name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::engine::{lock, Pending, Spool};
use super::segment::{self, io_err};
use super::SpoolError;

/// One segment to write again.
struct Job {
    path: PathBuf,
    /// Its pending parts, by offset.
    parts: Vec<Pending>,
}

impl Spool {
    /// Replaces every segment with unsynced bytes by a fresh, fsynced copy (see the module
    /// documentation). Appends go on meanwhile: the active segment is rotated first when
    /// it has unsynced bytes, so no segment being repaired is written to. Call with
    /// `sync_lock` held.
    pub(super) fn repair(&self) -> Result<(), SpoolError> {
        let jobs = {
            let mut g = lock(&self.inner);
            let active = g.active.first;
            if g.pending.iter().any(|p| p.seg == active) {
                g.rotate()?;
            }
            let active = g.active.first;
            // Bytes of a segment deleted since have nothing left to protect.
            let segs: BTreeSet<u64> = g.segs.keys().copied().collect();
            g.retain_pending(|p| segs.contains(&p.seg));
            let mut jobs: BTreeMap<u64, Job> = BTreeMap::new();
            for p in g.pending.iter().filter(|p| p.seg != active) {
                let Some(seg) = g.segs.get(&p.seg) else {
                    continue;
                };
                jobs.entry(p.seg)
                    .or_insert_with(|| Job {
                        path: seg.path.clone(),
                        parts: Vec::new(),
                    })
                    .parts
                    .push(p.clone());
            }
            jobs
        };
        let mut done = BTreeSet::new();
        let mut settled = BTreeSet::new();
        for (seg, job) in &jobs {
            let tmp = segment::repair_path(&job.path);
            let written = self.rewrite(job, &tmp);
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written?;
            done.insert(*seg);
            settled.extend(job.parts.iter().map(|p| p.id));
        }
        if !done.is_empty() {
            self.sync_dir()?;
        }
        let mut g = lock(&self.inner);
        g.retain_pending(|p| !settled.contains(&p.id));
        g.unsynced.retain(|(seg, _)| !done.contains(seg));
        g.repair_needed = false;
        if !done.is_empty() {
            tracing::warn!(
                segments = done.len(),
                "spool: segments written again after a failed fsync"
            );
        }
        Ok(())
    }

    /// Writes the segment of `job` to `tmp` (the durable prefix from the file, then the
    /// pending parts), fsyncs it and renames it over the segment.
    fn rewrite(&self, job: &Job, tmp: &Path) -> Result<(), SpoolError> {
        let path = &job.path;
        let mut content: Vec<u8> = Vec::new();
        let mut parts: Vec<&Pending> = job.parts.iter().collect();
        parts.sort_by_key(|p| p.at);
        let old = File::open(path).map_err(io_err(path))?;
        for p in parts {
            let at = usize::try_from(p.at)
                .map_err(|_| SpoolError::Corrupt(format!("{}: offset {}", path.display(), p.at)))?;
            if at > content.len() {
                // Durable bytes before this part: read them back.
                let from = content.len();
                content.resize(at, 0);
                let gap = content.get_mut(from..).unwrap_or_default();
                old.read_exact_at(gap, from as u64).map_err(io_err(path))?;
            } else {
                // Right after the previous part (the usual case), or overlapping it (never
                // expected): memory wins.
                content.truncate(at);
            }
            content.extend_from_slice(&p.bytes);
        }
        drop(old);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(io_err(tmp))?;
        file.write_all(&content).map_err(io_err(tmp))?;
        self.fault(|| file.sync_data()).map_err(io_err(tmp))?;
        fs::rename(tmp, path).map_err(io_err(path))
    }
}
