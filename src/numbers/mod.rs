//! The assigned-numbers table: which numbers Microsoft says are assigned, in which tenant,
//! routed to which SIP URI; kept in sync with the API and persisted across restarts.
//!
//! - [`entry`]: API entries parsed once, at the edge ([`Change`]).
//! - [`attrs`]: what numbers share: [`Profile`] (tenant, usage, capabilities, SIP URI as a
//!   template with the number cut out), [`TenantId`], [`Capabilities`]. `profiles` interns
//!   them and gives each a `u32` id, counted and published copy-on-write.
//! - [`table`]: [`NumberTable`], the lock-free table the proxy looks numbers up in, on the
//!   immutable sharded map of `shards` (number → profile id, copy-on-write per shard);
//!   [`batch`]: a full listing built off to the side; [`state`]: [`TableState`] for
//!   readiness and metrics.
//! - [`snapshot`]: the checksummed, versioned on-disk copy (format in its module doc).
//! - [`sync`]: the loop that loads the snapshot, lists, polls deltas and writes snapshots.
//!
//! Invariants: lookups never wait for a writer; a failed or partial listing never empties
//! or shrinks the table; invalid API entries are skipped and counted, never a panic.
//!
//! For the number policy: `table.lookup(&e164)` gives an [`Assignment`] (`tenant()`,
//! `sip_uri()`, `usage()`, `capabilities()`); `table.is_loaded()` says whether a table is
//! there at all (false: answer new calls 503).

pub mod attrs;
pub mod batch;
pub mod entry;
mod profiles;
mod shards;
pub mod snapshot;
pub mod state;
pub mod sync;
pub mod table;

pub use attrs::{Capabilities, Profile, TenantId};
pub use batch::{Applied, Batch};
pub use entry::{Change, EntryError};
pub use snapshot::SnapshotError;
pub use state::{Source, TableState};
pub use sync::{run, Clock, SyncConfig, Syncer, TokioClock};
pub use table::{Assignment, NumberTable, TableView};

/// Test fixtures shared by the module's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::msapi::NumberEntry;

    /// An assigned entry with the given capabilities.
    pub(crate) fn entry(n: &str, tenant: &str, uri: &str, caps: &[&str]) -> NumberEntry {
        NumberEntry {
            telephone_number: n.into(),
            tenant_id: tenant.into(),
            sip_uri: uri.into(),
            usage: "CallingUserAssignment".into(),
            assignment_status: "assigned".into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            last_modified_date_time: String::new(),
            removed: None,
        }
    }

    /// An assigned entry with inbound and outbound calling.
    pub(crate) fn calling(n: &str, tenant: &str, uri: &str) -> NumberEntry {
        entry(n, tenant, uri, &["InboundCalling", "OutboundCalling"])
    }
}
