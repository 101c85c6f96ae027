//! [`NumberTable`]: the shared, lock-free number table and its sync status.
//!
//! Readers load the current immutable [`Shards`] through an `ArcSwap` and never wait:
//! writers (the sync loop, one at a time behind a writer mutex readers never touch) build
//! the next value off to the side, from scratch for a full listing ([`NumberTable::install`])
//! or copying only the touched shards for a delta ([`NumberTable::apply_delta`]), and swap
//! it in. The writer, not a reader, frees the value it replaced: it waits (bounded) for the
//! readers that were mid-lookup at the swap to let go first, so no lookup ever pays for
//! freeing a table.
//!
//! Invariant: a failed or partial listing never reaches the table; only a completed one is
//! installed, and `loaded` stays true once any table (snapshot or sync) was installed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::entry::{Capabilities, Change, EntryError, Profile, TenantId};
use super::profiles::{Profiles, Registry};
use super::shards::{key_of, number_of, Op, Shards};
use crate::msapi::NumberEntry;
use crate::sip::number::E164;

/// How many times a writer yields waiting to be the last owner of a replaced table.
const RECLAIM_SPINS: u32 = 2_000;

/// Where the table's current content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The persisted snapshot, loaded at start; no sync has succeeded since.
    Snapshot,
    /// A full listing or delta from the API.
    Sync,
}

/// What readiness checks, metrics and logs need to know about the table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableState {
    /// A table (snapshot or sync) has been installed: lookups are meaningful. False at
    /// start with no snapshot and no API: the gateway is not ready.
    pub loaded: bool,
    /// Where the content came from; `None` before anything was loaded.
    pub source: Option<Source>,
    /// Numbers held.
    pub entries: usize,
    /// Wall-clock time of the last successful sync (or of the snapshot's writing).
    pub last_sync_ok: Option<SystemTime>,
    /// Time since the last successful sync (or since the snapshot was written).
    pub stale_for: Option<Duration>,
    /// The last API error, cleared by the next success.
    pub last_error: Option<String>,
    /// API errors since the last success.
    pub consecutive_errors: u32,
    /// Why the snapshot could not be loaded at start (it was ignored), if it could not.
    pub snapshot_load_error: Option<String>,
    /// Why the last snapshot write failed; cleared by the next successful write.
    pub snapshot_write_error: Option<String>,
    /// API entries skipped as invalid, in total.
    pub skipped_invalid: u64,
    /// Completed full listings.
    pub full_syncs: u64,
    /// Completed delta rounds.
    pub deltas: u64,
}

/// The sync status, written by the sync loop.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) source: Option<Source>,
    pub(crate) last_ok_wall: Option<SystemTime>,
    pub(crate) last_ok: Option<Instant>,
    /// How old the content already was at `last_ok` (a snapshot's age when loaded).
    pub(crate) last_ok_age: Duration,
    pub(crate) last_error: Option<String>,
    pub(crate) consecutive_errors: u32,
    pub(crate) snapshot_load_error: Option<String>,
    pub(crate) snapshot_write_error: Option<String>,
    pub(crate) full_syncs: u64,
    pub(crate) deltas: u64,
}

/// One number's assignment, owned (one reference count, no copy of the strings).
#[derive(Debug, Clone)]
pub struct Assignment {
    number: E164,
    profile: Arc<Profile>,
}

impl Assignment {
    /// The number looked up.
    pub fn number(&self) -> E164 {
        self.number
    }

    /// The tenant (GUID, lowercase).
    pub fn tenant(&self) -> &str {
        self.profile.tenant().as_str()
    }

    /// The tenant, typed.
    pub fn tenant_id(&self) -> TenantId {
        *self.profile.tenant()
    }

    /// The `usage` as the API sent it.
    pub fn usage(&self) -> &str {
        self.profile.usage()
    }

    /// The known capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.profile.capabilities()
    }

    /// True when the API gave a SIP URI for the number.
    pub fn has_sip_uri(&self) -> bool {
        self.profile.has_sip_uri()
    }

    /// The SIP URI calls to the number are routed to, exactly as the API sent it (a valid
    /// `sip:`/`sips:` URI), or empty when it sent none. Allocates: call it when rewriting.
    pub fn sip_uri(&self) -> String {
        let mut s = String::new();
        self.profile.write_sip_uri(&self.number, &mut s);
        s
    }

    /// The shared attributes.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

/// A consistent, immutable view of the table at one moment (for many lookups or a walk).
/// Holding it keeps that version's memory alive: keep it short.
#[derive(Debug, Clone)]
pub struct TableView {
    cur: Arc<Current>,
}

impl TableView {
    /// Numbers held.
    pub fn len(&self) -> usize {
        self.cur.map.len()
    }

    /// True when it holds no number.
    pub fn is_empty(&self) -> bool {
        self.cur.map.len() == 0
    }

    /// True when this version was loaded from a snapshot or a sync.
    pub fn is_loaded(&self) -> bool {
        self.cur.loaded
    }

    /// Shards in this version (for reports: about 64 numbers a shard).
    pub fn shard_count(&self) -> usize {
        self.cur.map.shard_count()
    }

    /// The profile of `n`, borrowed: no reference count touched.
    #[inline]
    pub fn get(&self, n: &E164) -> Option<&Profile> {
        self.cur.get(key_of(n)).map(|p| &**p)
    }

    /// Every number and its profile, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (E164, &Profile)> + '_ {
        self.raw()
            .filter_map(|(k, id)| Some((number_of(k)?, &**self.profile(id)?)))
    }

    /// Every packed number and its profile id.
    pub(crate) fn raw(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.cur.map.iter()
    }

    /// The profile with id `id`.
    pub(crate) fn profile(&self, id: u32) -> Option<&Arc<Profile>> {
        self.cur.profiles.get(id)
    }

    /// One more than the largest profile id.
    pub(crate) fn profile_id_bound(&self) -> usize {
        self.cur.profiles.id_bound()
    }
}

/// The published value: the map, its profiles, and whether anything was loaded.
#[derive(Debug)]
struct Current {
    map: Shards,
    profiles: Profiles,
    loaded: bool,
}

impl Current {
    #[inline]
    fn get(&self, key: u64) -> Option<&Arc<Profile>> {
        self.profiles.get(self.map.get(key)?)
    }
}

/// What [`NumberTable::install`] and [`NumberTable::apply_delta`] did.
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
/// [`NumberTable::install`] swaps it in whole.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
    registry: Registry,
    applied: Applied,
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
fn resolve(
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

struct Inner {
    current: ArcSwap<Current>,
    writer: Mutex<Registry>,
    status: Mutex<Status>,
    skipped: AtomicU64,
}

/// The number table: a cheap-to-clone handle shared by the proxy shards and the sync loop.
#[derive(Clone)]
pub struct NumberTable {
    inner: Arc<Inner>,
}

impl Default for NumberTable {
    fn default() -> Self {
        NumberTable::new()
    }
}

impl std::fmt::Debug for NumberTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberTable")
            .field("len", &self.len())
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NumberTable {
    /// An empty table, not loaded.
    pub fn new() -> NumberTable {
        NumberTable {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(Current {
                    map: Shards::empty(),
                    profiles: Profiles::default(),
                    loaded: false,
                }),
                writer: Mutex::new(Registry::default()),
                status: Mutex::new(Status::default()),
                skipped: AtomicU64::new(0),
            }),
        }
    }

    /// The assignment of `n`, if it is assigned. Lock-free; never waits for a sync.
    #[inline]
    pub fn lookup(&self, n: &E164) -> Option<Assignment> {
        let cur = self.inner.current.load();
        let profile = Arc::clone(cur.get(key_of(n))?);
        Some(Assignment {
            number: *n,
            profile,
        })
    }

    /// True when `n` is assigned (no reference count touched).
    #[inline]
    pub fn contains(&self, n: &E164) -> bool {
        self.inner.current.load().get(key_of(n)).is_some()
    }

    /// Numbers held.
    pub fn len(&self) -> usize {
        self.inner.current.load().map.len()
    }

    /// True when no number is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once a snapshot or a sync was installed (lock-free: fine per call).
    pub fn is_loaded(&self) -> bool {
        self.inner.current.load().loaded
    }

    /// A consistent view for many lookups or a walk (one reference count).
    pub fn view(&self) -> TableView {
        TableView {
            cur: self.inner.current.load_full(),
        }
    }

    /// The status now (takes a mutex the sync loop holds only briefly: not for every call;
    /// use [`NumberTable::is_loaded`] on the call path).
    pub fn state(&self) -> TableState {
        self.state_at(Instant::now())
    }

    /// The status at `now` (for a caller with its own clock).
    pub fn state_at(&self, now: Instant) -> TableState {
        let cur = self.inner.current.load();
        let s = lock(&self.inner.status);
        TableState {
            loaded: cur.loaded,
            source: s.source,
            entries: cur.map.len(),
            last_sync_ok: s.last_ok_wall,
            stale_for: s
                .last_ok
                .map(|t| now.saturating_duration_since(t) + s.last_ok_age),
            last_error: s.last_error.clone(),
            consecutive_errors: s.consecutive_errors,
            snapshot_load_error: s.snapshot_load_error.clone(),
            snapshot_write_error: s.snapshot_write_error.clone(),
            skipped_invalid: self.inner.skipped.load(Ordering::Relaxed),
            full_syncs: s.full_syncs,
            deltas: s.deltas,
        }
    }

    /// Replaces the whole content with `entries` (a completed full listing).
    pub fn replace_all<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a NumberEntry>,
        source: Source,
    ) -> Applied {
        let mut b = Batch::new();
        b.extend(entries);
        self.install(b, source)
    }

    /// Swaps in a completed batch as the whole content, and marks the table loaded.
    pub fn install(&self, batch: Batch, source: Source) -> Applied {
        let Batch {
            ops,
            mut registry,
            applied,
            ..
        } = batch;
        let mut writer = lock(&self.inner.writer);
        let map = Shards::build(&ops, rand::random(), &mut registry.refs);
        drop(ops);
        registry.collect();
        let applied = Applied {
            len: map.len(),
            ..applied
        };
        self.publish(Current {
            map,
            profiles: registry.published(),
            loaded: true,
        });
        *writer = registry;
        drop(writer);
        self.inner
            .skipped
            .fetch_add(applied.skipped, Ordering::Relaxed);
        lock(&self.inner.status).source = Some(source);
        applied
    }

    /// Applies delta entries in order: assigned ones are inserted or replaced, `@removed`
    /// or not-`assigned` ones removed, invalid ones skipped and counted. Copies only the
    /// shards touched; lookups meanwhile see the previous version.
    pub fn apply_delta<'a>(&self, changes: impl IntoIterator<Item = &'a NumberEntry>) -> Applied {
        let mut writer = lock(&self.inner.writer);
        let registry = &mut *writer;
        let mut applied = Applied::default();
        let ops: Vec<Op> = changes
            .into_iter()
            .filter_map(|e| resolve(registry, Change::from_entry(e), &mut applied).ok())
            .collect();
        let cur = self.inner.current.load_full();
        let map = cur.map.apply(&ops, &mut registry.refs);
        registry.collect();
        applied.len = map.len();
        let next = Current {
            map,
            profiles: registry.published(),
            loaded: cur.loaded,
        };
        drop(cur);
        self.publish(next);
        drop(writer);
        self.inner
            .skipped
            .fetch_add(applied.skipped, Ordering::Relaxed);
        applied
    }

    /// Swaps in `next`, then frees the replaced value here rather than in a reader: waits
    /// (bounded) for lookups that were running at the swap to let go of it first.
    fn publish(&self, next: Current) {
        let mut old = self.inner.current.swap(Arc::new(next));
        for _ in 0..RECLAIM_SPINS {
            match Arc::try_unwrap(old) {
                Ok(cur) => {
                    drop(cur);
                    return;
                }
                Err(still_shared) => {
                    old = still_shared;
                    std::thread::yield_now();
                }
            }
        }
        // A long-lived view (the snapshot writer) still holds it: its holder frees it.
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.inner.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
    const T2: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";

    fn entry(n: &str, tenant: &str) -> NumberEntry {
        NumberEntry {
            telephone_number: n.into(),
            tenant_id: tenant.into(),
            sip_uri: format!("sip:{n}@t.example;user=phone"),
            usage: "CallingUserAssignment".into(),
            assignment_status: "assigned".into(),
            capabilities: vec!["InboundCalling".into()],
            last_modified_date_time: String::new(),
            removed: None,
        }
    }

    fn n(s: &str) -> E164 {
        E164::parse(s).unwrap()
    }

    #[test]
    fn starts_empty_and_not_loaded() {
        let t = NumberTable::new();
        assert!(!t.is_loaded());
        assert!(t.is_empty());
        assert!(t.lookup(&n("+14255550100")).is_none());
        let s = t.state();
        assert!(!s.loaded);
        assert_eq!((s.source, s.entries, s.stale_for), (None, 0, None));
    }

    #[test]
    fn replace_all_then_lookup() {
        let t = NumberTable::new();
        let mut bad = entry("4255550199", T1);
        bad.telephone_number = "4255550199".into();
        let mut unassigned = entry("+14255550102", T1);
        unassigned.assignment_status = "unassigned".into();
        let es = [
            entry("+14255550100", T1),
            entry("+14255550101", T2),
            bad,
            unassigned,
        ];
        let a = t.replace_all(&es, Source::Sync);
        assert_eq!(
            a,
            Applied {
                assigned: 2,
                removed: 1,
                skipped: 1,
                len: 2
            }
        );
        assert!(t.is_loaded());
        let got = t.lookup(&n("+14255550101")).unwrap();
        assert_eq!(got.tenant(), T2);
        assert_eq!(got.sip_uri(), "sip:+14255550101@t.example;user=phone");
        assert_eq!(got.usage(), "CallingUserAssignment");
        assert!(got.capabilities().contains(Capabilities::INBOUND_CALLING));
        assert!(!got.capabilities().contains(Capabilities::OUTBOUND_CALLING));
        assert!(t.lookup(&n("+14255550102")).is_none());
        assert!(t.contains(&n("+14255550100")));
        assert_eq!(t.state().skipped_invalid, 1);
        assert_eq!(t.state().source, Some(Source::Sync));
        let view = t.view();
        let mut all: Vec<String> = view.iter().map(|(n, _)| n.to_string()).collect();
        all.sort();
        assert_eq!(all, ["+14255550100", "+14255550101"]);
    }

    #[test]
    fn deltas_add_change_remove() {
        let t = NumberTable::new();
        t.replace_all(&[entry("+1001", T1), entry("+1002", T1)], Source::Sync);
        let before = t.view();
        let mut gone = entry("+1001", "");
        gone.removed = Some(crate::msapi::Removed {
            reason: "deleted".into(),
        });
        let a = t.apply_delta(&[gone, entry("+1002", T2), entry("+1003", T1), entry("x", T1)]);
        assert_eq!((a.assigned, a.removed, a.skipped, a.len), (2, 1, 1, 2));
        assert!(t.lookup(&n("+1001")).is_none());
        assert_eq!(t.lookup(&n("+1002")).unwrap().tenant(), T2);
        assert_eq!(t.lookup(&n("+1003")).unwrap().tenant(), T1);
        assert_eq!(before.len(), 2, "a view keeps its version");
        assert_eq!(before.get(&n("+1002")).unwrap().tenant().as_str(), T1);
        assert_eq!(t.state().skipped_invalid, 1);
    }

    #[test]
    fn delta_on_unloaded_table_does_not_mark_it_loaded() {
        let t = NumberTable::new();
        t.apply_delta(&[entry("+1001", T1)]);
        assert!(!t.is_loaded());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn readers_run_during_writes() {
        let t = NumberTable::new();
        let es: Vec<_> = (0..20_000)
            .map(|i| entry(&format!("+1425{i:07}"), T1))
            .collect();
        t.replace_all(&es, Source::Sync);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lookups = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = {
            let (t, stop, lookups) = (t.clone(), stop.clone(), lookups.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seen += u64::from(t.lookup(&n("+14250000000")).is_some());
                    lookups.fetch_add(1, Ordering::Relaxed);
                }
                seen
            })
        };
        // On a loaded machine the reader may not have run yet: wait for it, so the writes
        // really overlap reads (and the test cannot fail for scheduling reasons).
        let wait_for_more = |than: u64| {
            while lookups.load(Ordering::Relaxed) <= than {
                std::thread::yield_now();
            }
        };
        wait_for_more(0);
        for i in 0..50 {
            let e = entry(&format!("+1426{i:07}"), T2);
            t.apply_delta(std::slice::from_ref(&e));
        }
        wait_for_more(lookups.load(Ordering::Relaxed));
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(t.len(), 20_050);
    }
}
