//! Where the tracker's output goes: the journal entry of each answered call and each
//! finished record. The app implements [`CdrSink`] over the durable spool; tests and the
//! emulator use [`MemorySink`].

use std::sync::{Mutex, MutexGuard};

use crate::cdr::{CallRecord, OpenCall};

/// The sink has no room for a new journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CDR sink full")]
pub struct SinkFull;

/// Takes the tracker's output. Called inline from the proxy task: implementations must not
/// block (the spool's append is one write syscall, fsynced in groups elsewhere).
pub trait CdrSink: Send + Sync {
    /// Journals an answered call that is up, so a restart can finish its record.
    /// `Err(SinkFull)` when there is no room: the call goes on (it is tracked in memory and
    /// still closed); [`CdrSink::is_full`] must then be true until there is room again.
    fn open(&self, call: &OpenCall) -> Result<(), SinkFull>;

    /// Writes a finished record (answered, failed or cancelled). For an answered call this
    /// also closes its journal entry (same id).
    fn close(&self, rec: &CallRecord);

    /// True while new calls must be refused because their records might not fit (the
    /// spool at its cap, keeping its reserve for the records of calls already up).
    fn is_full(&self) -> bool;
}

/// What a [`MemorySink`] holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryLog {
    /// Every journal entry accepted, in order.
    pub opens: Vec<OpenCall>,
    /// Every finished record, in order.
    pub closes: Vec<CallRecord>,
    /// When set, `open` fails and `is_full` is true.
    pub full: bool,
}

/// An in-memory [`CdrSink`] (tests, the emulator): keeps everything, full on demand.
#[derive(Debug, Default)]
pub struct MemorySink {
    log: Mutex<MemoryLog>,
}

impl MemorySink {
    /// An empty sink with room.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// The log (a poisoned lock is taken over: the log is plain data).
    pub fn log(&self) -> MutexGuard<'_, MemoryLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finished records so far.
    pub fn closes(&self) -> Vec<CallRecord> {
        self.log().closes.clone()
    }

    /// Journal entries so far.
    pub fn opens(&self) -> Vec<OpenCall> {
        self.log().opens.clone()
    }

    /// Makes the sink full (or gives it room again).
    pub fn set_full(&self, full: bool) {
        self.log().full = full;
    }
}

impl CdrSink for MemorySink {
    fn open(&self, call: &OpenCall) -> Result<(), SinkFull> {
        let mut log = self.log();
        if log.full {
            return Err(SinkFull);
        }
        log.opens.push(call.clone());
        Ok(())
    }

    fn close(&self, rec: &CallRecord) {
        self.log().closes.push(rec.clone());
    }

    fn is_full(&self) -> bool {
        self.log().full
    }
}
