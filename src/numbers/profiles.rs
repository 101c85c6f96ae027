//! Profiles by id: interned by the writer, counted by the slots that use them, and
//! published copy-on-write so every table version resolves its own ids.
//!
//! A table slot holds a `u32` profile id, not a pointer: copying a shard for a delta is then
//! a `memcpy`, with no reference count touched per number. The writer's [`Registry`] keeps
//! how many slots use each id; an id no slot uses after a write is freed and may be reused
//! by a later write. Reuse is safe for readers because each published version carries its
//! own [`Profiles`] (chunks of 256 shared between versions until a writer changes one).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::attrs::{Profile, ProfileKey, Template, TenantId};
use super::entry::{check_sip_uri, Assigned, EntryError};
use crate::sip::number::E164;

const CHUNK_BITS: u32 = 8;
const CHUNK: usize = 1 << CHUNK_BITS;

/// A fixed array, so a lookup goes chunk → entry with no vector header between.
type Chunk = [Option<Arc<Profile>>; CHUNK];

/// The id → profile table of one published version.
#[derive(Debug, Clone, Default)]
pub(crate) struct Profiles {
    chunks: Vec<Arc<Chunk>>,
}

impl Profiles {
    /// The profile with id `id`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&Arc<Profile>> {
        let chunk = self.chunks.get((id >> CHUNK_BITS) as usize)?;
        chunk.get(id as usize & (CHUNK - 1))?.as_ref()
    }

    /// One more than the largest id there is room for.
    pub(crate) fn id_bound(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    fn set(&mut self, id: u32, p: Option<Arc<Profile>>) {
        let c = (id >> CHUNK_BITS) as usize;
        while self.chunks.len() <= c {
            self.chunks.push(Arc::new(std::array::from_fn(|_| None)));
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            if let Some(slot) = Arc::make_mut(chunk).get_mut(id as usize & (CHUNK - 1)) {
                *slot = p;
            }
        }
    }
}

/// A cheap word-at-a-time hash (FxHash's mixing) for interning. Interned keys come from
/// the API and the snapshot, not from callers, so a keyed hash buys nothing here; SipHash
/// was a fifth of a delta's parsing time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
}

type Fast = BuildHasherDefault<FastHasher>;

/// How many slots use each id, and the ids that may have dropped to none.
#[derive(Debug, Default)]
pub(crate) struct RefCounts {
    counts: Vec<u32>,
    released: Vec<u32>,
}

impl RefCounts {
    /// A slot now uses `id`.
    #[inline]
    pub(crate) fn retain(&mut self, id: u32) {
        if let Some(c) = self.counts.get_mut(id as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// A slot no longer uses `id`.
    #[inline]
    pub(crate) fn release(&mut self, id: u32) {
        if let Some(c) = self.counts.get_mut(id as usize) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.released.push(id);
            }
        }
    }

    /// A counter with room for ids below `n` (tests).
    #[cfg(test)]
    pub(crate) fn with_ids(n: usize) -> RefCounts {
        RefCounts {
            counts: vec![0; n],
            released: Vec::new(),
        }
    }

    /// Slots using `id`.
    pub(crate) fn count(&self, id: u32) -> u32 {
        self.counts.get(id as usize).copied().unwrap_or(0)
    }
}

/// The writer's side: interning, counts, free ids, and the table it publishes.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    profiles: Profiles,
    buckets: HashMap<u64, Vec<u32>, Fast>,
    hasher: Fast,
    free: Vec<u32>,
    /// Slot counts; [`super::shards::Shards`] writes keep them current.
    pub(crate) refs: RefCounts,
}

impl Registry {
    /// The id of the profile an assigned entry for `number` has, made if new (after its
    /// SIP URI passed the check).
    pub(crate) fn intern(&mut self, number: &E164, a: &Assigned<'_>) -> Result<u32, EntryError> {
        let key = a.key(number);
        let h = key.hash_with(&self.hasher);
        if let Some(id) = self.find(h, &key) {
            return Ok(id);
        }
        check_sip_uri(a.sip_uri)?;
        Ok(self.insert(h, key))
    }

    /// The id of a profile read back from a snapshot.
    pub(crate) fn intern_parts(
        &mut self,
        tenant: TenantId,
        template: Template<'_>,
        usage: &str,
        names: &[Box<str>],
    ) -> u32 {
        self.intern_key(ProfileKey {
            tenant,
            template,
            usage,
            names,
        })
    }

    fn intern_key<N: AsRef<str>>(&mut self, key: ProfileKey<'_, N>) -> u32 {
        let h = key.hash_with(&self.hasher);
        match self.find(h, &key) {
            Some(id) => id,
            None => self.insert(h, key),
        }
    }

    fn find<N: AsRef<str>>(&self, h: u64, key: &ProfileKey<'_, N>) -> Option<u32> {
        let ids = self.buckets.get(&h)?;
        ids.iter()
            .copied()
            .find(|&id| self.profiles.get(id).is_some_and(|p| key.matches(p)))
    }

    fn insert<N: AsRef<str>>(&mut self, h: u64, key: ProfileKey<'_, N>) -> u32 {
        let names = key.names.iter().map(|n| n.as_ref().into()).collect();
        let p = Profile::new(key.tenant, key.template, key.usage, names);
        let id = self.free.pop().unwrap_or_else(|| {
            self.refs.counts.push(0);
            (self.refs.counts.len() - 1) as u32
        });
        self.profiles.set(id, Some(Arc::new(p)));
        self.buckets.entry(h).or_default().push(id);
        // A candidate for freeing until a slot uses it.
        self.refs.released.push(id);
        id
    }

    /// Frees the ids released (or made) since the last call that no slot uses.
    pub(crate) fn collect(&mut self) {
        for id in std::mem::take(&mut self.refs.released) {
            if self.refs.count(id) > 0 {
                continue;
            }
            let Some(p) = self.profiles.get(id).cloned() else {
                continue;
            };
            let h = p.key().hash_with(&self.hasher);
            if let Some(ids) = self.buckets.get_mut(&h) {
                ids.retain(|&x| x != id);
                if ids.is_empty() {
                    self.buckets.remove(&h);
                }
            }
            self.profiles.set(id, None);
            self.free.push(id);
        }
    }

    /// The table to publish with the next version (shares unchanged chunks).
    pub(crate) fn published(&self) -> Profiles {
        self.profiles.clone()
    }

    /// Profiles in use or interned.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msapi::NumberEntry;
    use crate::numbers::entry::Change;

    const T: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";

    fn assigned(n: &str, tenant: &str) -> NumberEntry {
        NumberEntry {
            telephone_number: n.into(),
            tenant_id: tenant.into(),
            sip_uri: format!("sip:{n}@t.example;user=phone"),
            usage: "CallingUserAssignment".into(),
            assignment_status: String::new(),
            capabilities: vec!["InboundCalling".into()],
            last_modified_date_time: String::new(),
            removed: None,
        }
    }

    fn intern(r: &mut Registry, e: &NumberEntry) -> u32 {
        match Change::from_entry(e) {
            Ok(Change::Assign(n, a)) => r.intern(&n, &a).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_of_one_tenant_share_an_id() {
        let mut r = Registry::default();
        let ids: Vec<u32> = (0..100)
            .map(|k| intern(&mut r, &assigned(&format!("+1425555{k:04}"), T)))
            .collect();
        assert!(ids.iter().all(|&id| id == ids[0]));
        assert_eq!(r.live(), 1);
        let other = intern(
            &mut r,
            &assigned("+1425", "6b65a6a4-8b81-48f6-b38a-088ca65ed389"),
        );
        assert_ne!(other, ids[0]);
        assert_eq!(
            r.published().get(other).unwrap().tenant().as_str(),
            "6b65a6a4-8b81-48f6-b38a-088ca65ed389"
        );
    }

    #[test]
    fn unused_ids_are_freed_and_reused_without_touching_published_versions() {
        let mut r = Registry::default();
        let a = intern(&mut r, &assigned("+1001", T));
        r.refs.retain(a);
        let b = intern(
            &mut r,
            &assigned("+1002", "6b65a6a4-8b81-48f6-b38a-088ca65ed389"),
        );
        r.collect();
        assert!(r.published().get(a).is_some(), "used: kept");
        assert!(r.published().get(b).is_none(), "never used: freed");
        let old = r.published();
        r.refs.release(a);
        r.collect();
        assert_eq!(r.live(), 0);
        assert!(r.published().get(a).is_none());
        assert!(old.get(a).is_some(), "an older version still resolves it");
        let c = intern(
            &mut r,
            &assigned("+1003", "6b65a6a4-8b81-48f6-b38a-088ca65ed389"),
        );
        assert!(c == a || c == b, "freed ids are reused");
        assert_eq!(old.get(a).unwrap().tenant().as_str(), T);
    }

    #[test]
    fn sip_uris_are_checked_once_per_profile() {
        let mut r = Registry::default();
        let mut e = assigned("+1001", T);
        e.sip_uri = "tel:+1001".into();
        let Ok(Change::Assign(n, a)) = Change::from_entry(&e) else {
            panic!()
        };
        assert_eq!(r.intern(&n, &a), Err(EntryError::SipUri));
        assert_eq!(r.live(), 0, "no profile made for a bad URI");
    }

    #[test]
    fn the_fast_hash_tells_lengths_apart() {
        let h = |parts: &[&str]| {
            let mut s = FastHasher::default();
            for p in parts {
                std::hash::Hash::hash(p, &mut s);
            }
            s.finish()
        };
        assert_ne!(h(&["ab", "c"]), h(&["a", "bc"]));
        assert_ne!(h(&["abcdefgh"]), h(&["abcdefgh\0"]));
        assert_eq!(h(&["sip:+1@x"]), h(&["sip:+1@x"]));
    }

    #[test]
    fn ids_beyond_one_chunk_resolve() {
        let mut r = Registry::default();
        for i in 0..600u32 {
            let t = TenantId::from_bytes(i.to_be_bytes().repeat(4).try_into().unwrap());
            let id = intern(&mut r, &assigned("+1555", t.as_str()));
            assert_eq!(id, i);
            r.refs.retain(id);
        }
        r.collect();
        let p = r.published();
        assert_eq!(p.id_bound(), 768);
        assert!((0..600).all(|i| p.get(i).is_some()));
        assert!(p.get(600).is_none() && p.get(u32::MAX).is_none());
    }
}
