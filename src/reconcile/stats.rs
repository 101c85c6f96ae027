//! Counters of the reconciliation task, for metrics: bumped by the puller and the
//! reporter, read with [`ReconcileStats::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::model::{Class, Counts};

/// Live counters (shared with the task; cheap to bump and to read).
#[derive(Debug, Default)]
pub struct ReconcileStats {
    pub(crate) pages: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) pull_errors: AtomicU64,
    pub(crate) pull_cursor_ms: AtomicU64,
    pub(crate) report_cursor_ms: AtomicU64,
    pub(crate) windows: AtomicU64,
    pub(crate) windows_incomplete: AtomicU64,
    pub(crate) classes: [AtomicU64; 5],
}

/// A copy of the counters at one moment. Class totals count the findings of complete
/// report windows since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcileSnapshot {
    /// Call-records pages read.
    pub pages: u64,
    /// Records appended to the store (new ids).
    pub records: u64,
    /// Records read again (re-reads, retried pages) and dropped as already stored.
    pub duplicates: u64,
    /// Records not stored: times that do not read, or an end outside the window asked for.
    pub rejected: u64,
    /// Failed call-records requests (each retry counts).
    pub pull_errors: u64,
    /// The pull cursor (UTC ms): records of calls that ended before it are stored.
    pub pull_cursor_ms: u64,
    /// The report cursor (UTC ms): windows before it are reported.
    pub report_cursor_ms: u64,
    /// Report windows written.
    pub windows: u64,
    /// Of those, windows our records did not fully cover (not added to the class totals).
    pub windows_incomplete: u64,
    /// [`Class::Matched`] findings.
    pub matched: u64,
    /// [`Class::DurationMismatch`] findings.
    pub duration_mismatch: u64,
    /// [`Class::MissingOurs`] findings.
    pub missing_ours: u64,
    /// [`Class::MissingMicrosoft`] findings.
    pub missing_microsoft: u64,
    /// [`Class::NotBillable`] findings.
    pub not_billable: u64,
}

impl ReconcileSnapshot {
    /// The total of `class`.
    pub fn class(&self, class: Class) -> u64 {
        match class {
            Class::Matched => self.matched,
            Class::DurationMismatch => self.duration_mismatch,
            Class::MissingOurs => self.missing_ours,
            Class::MissingMicrosoft => self.missing_microsoft,
            Class::NotBillable => self.not_billable,
        }
    }
}

impl ReconcileStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> ReconcileSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let class = |c: Class| self.classes.get(index(c)).map_or(0, get);
        ReconcileSnapshot {
            pages: get(&self.pages),
            records: get(&self.records),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            pull_errors: get(&self.pull_errors),
            pull_cursor_ms: get(&self.pull_cursor_ms),
            report_cursor_ms: get(&self.report_cursor_ms),
            windows: get(&self.windows),
            windows_incomplete: get(&self.windows_incomplete),
            matched: class(Class::Matched),
            duration_mismatch: class(Class::DurationMismatch),
            missing_ours: class(Class::MissingOurs),
            missing_microsoft: class(Class::MissingMicrosoft),
            not_billable: class(Class::NotBillable),
        }
    }

    pub(crate) fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(&self, c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }

    /// Adds a complete window's counts to the class totals.
    pub(crate) fn add_counts(&self, counts: &Counts) {
        for class in Class::ALL {
            if let Some(c) = self.classes.get(index(class)) {
                self.add(c, counts.get(class));
            }
        }
    }
}

fn index(c: Class) -> usize {
    Class::ALL.iter().position(|x| *x == c).unwrap_or(0)
}
