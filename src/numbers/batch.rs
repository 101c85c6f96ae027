//! [`Batch`]: a full listing built off to the side, page by page (or a snapshot read back),
//! before it replaces the table whole; and the parsing of API entries into table changes.

use super::entry::{Change, EntryError};
use super::profiles::Registry;
use super::shards::{key_of, Op};
use crate::msapi::NumberEntry;

/// What [`NumberTable::install`](super::NumberTable::install) and [`NumberTable::apply_delta`](super::NumberTable::apply_delta) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Entries that assigned a number.
    pub assigned: usize,
    /// Entries that removed a number (or were not `assigned`).
    pub removed: usize,
    /// Entries skipped as invalid.
    pub skipped: u64,
    /// Numbers in the table afterwards.
    pub len: usize,
}

/// A full listing being built off to the side (page by page), or a snapshot being read;
/// [`NumberTable::install`](super::NumberTable::install) swaps it in whole.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) registry: Registry,
    pub(crate) applied: Applied,
    last_skip: Option<String>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds one API entry; an invalid one is counted, remembered for the log and skipped.
    pub fn push(&mut self, e: &NumberEntry) -> Result<(), EntryError> {
        let change = Change::from_entry(e);
        match resolve(&mut self.registry, change, &mut self.applied) {
            Ok(op) => {
                self.ops.push(op);
                Ok(())
            }
            Err(err) => {
                self.last_skip = Some(format!("{:?}: {err}", e.telephone_number));
                Err(err)
            }
        }
    }

    /// Adds a page of entries.
    pub fn extend<'a>(&mut self, entries: impl IntoIterator<Item = &'a NumberEntry>) {
        for e in entries {
            let _ = self.push(e);
        }
    }

    /// Entries added so far (assigned + removed + skipped).
    pub fn entries(&self) -> usize {
        self.ops.len() + self.applied.skipped as usize
    }

    /// Counts so far (`len` is not known before install).
    pub fn applied(&self) -> Applied {
        self.applied
    }

    /// The last skipped entry and why, for the log.
    pub fn last_skip(&self) -> Option<&str> {
        self.last_skip.as_deref()
    }

    pub(crate) fn push_op(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub(crate) fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// Parses and interns one change.
pub(crate) fn resolve(
    registry: &mut Registry,
    change: Result<Change<'_>, EntryError>,
    applied: &mut Applied,
) -> Result<Op, EntryError> {
    match change {
        Ok(Change::Assign(n, a)) => match registry.intern(&n, &a) {
            Ok(id) => {
                applied.assigned += 1;
                Ok((key_of(&n), Some(id)))
            }
            Err(e) => {
                applied.skipped += 1;
                Err(e)
            }
        },
        Ok(Change::Remove(n)) => {
            applied.removed += 1;
            Ok((key_of(&n), None))
        }
        Err(e) => {
            applied.skipped += 1;
            Err(e)
        }
    }
}
