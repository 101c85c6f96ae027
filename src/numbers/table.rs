//! [`NumberTable`]: the shared, lock-free number table and its sync status.
//!
//! Readers load the current immutable map (`shards`) through an `ArcSwap` and never wait:
//! writers (the sync loop, one at a time behind a writer mutex readers never touch) build
//! the next value off to the side, from scratch for a full listing ([`NumberTable::install`])
//! or copying only the touched shards for a delta ([`NumberTable::apply_delta`]), and swap
//! it in. The writer, not a reader, frees the value it replaced: it keeps a reference to
//! every replaced value until it is the only holder (readers mid-lookup at the swap, or a
//! [`TableView`], let go), so no lookup ever pays for freeing a table.
//!
//! Invariant: a failed or partial listing never reaches the table; only a completed one is
//! installed, and `loaded` stays true once any table (snapshot or sync) was installed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::attrs::{Capabilities, Profile, TenantId};
use super::batch::{resolve, Applied, Batch};
use super::entry::Change;
use super::profiles::{Profiles, Registry};
use super::shards::{key_of, number_of, Op, Shards};
use super::state::{Source, Status, TableState};
use crate::msapi::NumberEntry;
use crate::sip::number::E164;

/// How long a writer waits for readers to let go of the value it replaced before leaving
/// it for its next write to free.
const RECLAIM_WAIT: Duration = Duration::from_millis(2);

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

/// What only writers touch.
#[derive(Default)]
struct Writer {
    registry: Registry,
    /// Replaced values some reader or view may still hold; freed here once unique.
    retired: Vec<Arc<Current>>,
}

struct Inner {
    current: ArcSwap<Current>,
    writer: Mutex<Writer>,
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
                writer: Mutex::new(Writer::default()),
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
        let next = Current {
            map,
            profiles: registry.published(),
            loaded: true,
        };
        writer.registry = registry;
        self.publish(&mut writer, next);
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
        let registry = &mut writer.registry;
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
        self.publish(&mut writer, next);
        drop(writer);
        self.inner
            .skipped
            .fetch_add(applied.skipped, Ordering::Relaxed);
        applied
    }

    /// Swaps in `next` and retires the replaced value; frees every retired value no reader
    /// or view holds any more, waiting briefly for lookups running at the swap. (A swap
    /// counts the readers that had loaded the old value, so a count of one is exact.)
    fn publish(&self, writer: &mut Writer, next: Current) {
        let old = self.inner.current.swap(Arc::new(next));
        writer.retired.push(old);
        let deadline = Instant::now() + RECLAIM_WAIT;
        loop {
            writer.retired.retain(|v| Arc::strong_count(v) > 1);
            if writer.retired.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::yield_now();
        }
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.inner.status)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
