//! The tracker's counters.

use crate::cdr::EndReason;

/// Where `reason`'s count is kept: its place in [`EndReason::ALL`].
fn slot(reason: EndReason) -> usize {
    EndReason::ALL
        .iter()
        .position(|&r| r == reason)
        .unwrap_or(0)
}

/// What the tracker holds and has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Answered calls up now.
    pub active: usize,
    /// INVITEs waiting for a final response now.
    pub pending: usize,
    /// Dialogs answered (each fork of a call counts).
    pub answered: u64,
    /// Attempts closed as failed (a final 3xx–6xx other than 487, or a timeout).
    pub failed: u64,
    /// Attempts closed as cancelled (487).
    pub cancelled: u64,
    /// Calls re-inserted from the journal after a restart.
    pub recovered: u64,
    /// New calls refused because the sink was full.
    pub refused_full: u64,
    /// New calls refused because `max_calls` calls were held.
    pub refused_too_many: u64,
    /// Answered calls whose journal entry the sink refused (tracked in memory only).
    pub open_failed: u64,
    ended: [u64; EndReason::ALL.len()],
}

impl TrackerStats {
    /// Records closed with `reason`.
    pub fn ended(&self, reason: EndReason) -> u64 {
        self.ended.get(slot(reason)).copied().unwrap_or(0)
    }

    /// Every end reason with its count, for metrics.
    pub fn ended_by_reason(&self) -> impl Iterator<Item = (EndReason, u64)> + '_ {
        EndReason::ALL
            .iter()
            .copied()
            .zip(self.ended.iter().copied())
    }

    /// Counts a record closed with `reason`.
    pub(super) fn count_end(&mut self, reason: EndReason) {
        if let Some(n) = self.ended.get_mut(slot(reason)) {
            *n += 1;
        }
    }
}
