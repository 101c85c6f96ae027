//! The assigned-numbers table: which numbers Microsoft says are assigned, in which tenant,
//! routed to which SIP URI; kept in sync with the API and persisted across restarts.
//!
//! - [`entry`]: API entries parsed once ([`Change`]), the interned per-tenant [`Profile`]
//!   (tenant, usage, capabilities, SIP URI template), [`TenantId`].
//! - [`table`]: [`NumberTable`], the lock-free table the proxy looks numbers up in, and its
//!   [`TableState`] for readiness and metrics. Built on the immutable sharded map in
//!   `shards` (copy-on-write per shard) and the id → profile table in `profiles`.
//! - [`snapshot`]: the checksummed, versioned on-disk copy (format in its module doc).
//! - [`sync`]: the loop that loads the snapshot, lists, polls deltas and writes snapshots.
//!
//! Invariants: lookups never wait for a writer; a failed or partial listing never empties
//! or shrinks the table; invalid API entries are skipped and counted, never a panic.
//!
//! For the number policy: `table.lookup(&e164)` gives an [`Assignment`] (`tenant()`,
//! `sip_uri()`, `usage()`, `capabilities()`); `table.is_loaded()` says whether a table is
//! there at all (false: answer new calls 503).

pub mod entry;
mod profiles;
mod shards;
pub mod snapshot;
pub mod sync;
pub mod table;

pub use entry::{Capabilities, Change, EntryError, Profile, TenantId};
pub use snapshot::SnapshotError;
pub use sync::{run, Clock, SyncConfig, Syncer, TokioClock};
pub use table::{Applied, Assignment, Batch, NumberTable, Source, TableState, TableView};
