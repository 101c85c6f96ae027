//! The immutable, sharded map behind [`super::NumberTable`]: number → profile id.
//!
//! A [`Shards`] value never changes once built; writers build a new one and publish it.
//! Numbers are spread over `2^bits` shards by a seeded hash. Each shard is an `Arc<[Slot]>`:
//! an open-addressing table with linear probing at a load of at most 2/3, where a slot is
//! the number's digits packed into a `u64` (0 marks an empty slot: no E.164 number packs to
//! 0) and a `u32` profile id — 16 bytes, plain data. A lookup reads the shard pointer, then
//! one or two cache lines of slots.
//!
//! A delta copies only the shards it touches ([`Shards::apply`]) and edits the copies in
//! place (backward-shift deletion keeps probe chains whole), so 10,000 changes in a
//! 10,000,000-number table copy about 10,000 shards of ~76 numbers, as `memcpy`s. The new
//! value shares every other shard with the old one. The shard count follows the table size
//! (about 64 numbers a shard) and is re-chosen when a table has grown or shrunk fourfold.
//!
//! Every slot written or cleared is counted in [`RefCounts`], so the writer knows which
//! profile ids are still in use.

use std::sync::Arc;

use super::profiles::RefCounts;
use crate::sip::number::E164;

/// Fewest shard bits (16 shards).
const MIN_BITS: u32 = 4;
/// Most shard bits (4M shards: tables up to ~270M numbers keep ~64 a shard).
const MAX_BITS: u32 = 22;
/// Numbers per shard aimed at.
const PER_SHARD: usize = 64;
/// Largest packed number: fifteen nines.
pub(crate) const MAX_KEY: u64 = 999_999_999_999_999;

/// One slot: a packed number and its profile id; `key == 0` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    key: u64,
    id: u32,
}

const EMPTY: Slot = Slot { key: 0, id: 0 };

/// A change to one number: `Some(id)` assigns, `None` removes.
pub(crate) type Op = (u64, Option<u32>);

/// The number's digits as an integer (unique: E.164 numbers have no leading zero).
pub(crate) fn key_of(n: &E164) -> u64 {
    n.digits().bytes().fold(0u64, |k, d| {
        k.wrapping_mul(10)
            .wrapping_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// The number a key packs, if it packs one.
pub(crate) fn number_of(key: u64) -> Option<E164> {
    if key == 0 || key > MAX_KEY {
        return None;
    }
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut k = key;
    while k > 0 {
        i -= 1;
        *buf.get_mut(i)? = b'0' + (k % 10) as u8;
        k /= 10;
    }
    i -= 1;
    *buf.get_mut(i)? = b'+';
    E164::parse(std::str::from_utf8(buf.get(i..)?).ok()?).ok()
}

/// A seeded 64-bit finaliser (murmur3's `fmix64`): shard from the high bits, slot from the
/// low 32. Seeded per build so nobody can choose numbers that pile into one shard.
#[inline]
fn mix(key: u64, seed: u64) -> u64 {
    let mut x = key ^ seed;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// First slot to probe for hash `h` in a shard of `len` slots.
#[inline]
fn home(h: u64, len: usize) -> usize {
    (((h & 0xffff_ffff) * len as u64) >> 32) as usize
}

fn bits_for(n: usize) -> u32 {
    let per = (n / PER_SHARD).max(1);
    (usize::BITS - 1 - per.leading_zeros()).clamp(MIN_BITS, MAX_BITS)
}

/// Slots for a shard of `n` numbers: load at most 2/3, and always one empty slot.
fn slots_for(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n + n / 2 + 1
    }
}

/// The immutable sharded map.
#[derive(Debug)]
pub(crate) struct Shards {
    seed: u64,
    bits: u32,
    shards: Box<[Arc<[Slot]>]>,
    len: usize,
}

impl Shards {
    /// An empty map.
    pub(crate) fn empty() -> Shards {
        Shards::build(&[], rand::random(), &mut RefCounts::default())
    }

    /// Builds from `ops` applied in order to an empty map (later ops win).
    pub(crate) fn build(ops: &[Op], seed: u64, refs: &mut RefCounts) -> Shards {
        let bits = bits_for(ops.len());
        let shift = 64 - bits;
        let shard_of = |k: u64| (mix(k, seed) >> shift) as usize;
        // Counting sort of op indices by shard, stable so later ops stay later.
        let mut start = vec![0usize; (1usize << bits) + 1];
        for (k, _) in ops {
            if let Some(c) = start.get_mut(shard_of(*k) + 1) {
                *c += 1;
            }
        }
        for i in 1..start.len() {
            let prev = start.get(i - 1).copied().unwrap_or(0);
            if let Some(c) = start.get_mut(i) {
                *c += prev;
            }
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; ops.len()];
        for (i, (k, _)) in ops.iter().enumerate() {
            if let Some(f) = fill.get_mut(shard_of(*k)) {
                if let Some(o) = order.get_mut(*f) {
                    *o = i as u32;
                }
                *f += 1;
            }
        }
        let empty: Arc<[Slot]> = Arc::new([]);
        let mut ed = Editor::new(seed, refs);
        let mut len = 0;
        let shards = start
            .windows(2)
            .map(|w| {
                let idx = order.get(w[0]..w[1]).unwrap_or(&[]);
                if idx.is_empty() {
                    return Arc::clone(&empty);
                }
                ed.start(&[], slots_for(idx.len()));
                for op in idx.iter().filter_map(|&i| ops.get(i as usize)) {
                    ed.apply(*op);
                }
                len += ed.live;
                ed.finish(&empty)
            })
            .collect();
        Shards {
            seed,
            bits,
            shards,
            len,
        }
    }

    /// Numbers held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Shard count.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The profile id of `key`.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        let h = mix(key, self.seed);
        let slots: &[Slot] = self.shards.get((h >> (64 - self.bits)) as usize)?;
        let mut i = home(h, slots.len());
        for _ in 0..slots.len() {
            let s = slots.get(i)?;
            if s.key == key {
                return Some(s.id);
            }
            if s.key == 0 {
                return None;
            }
            i += 1;
            if i == slots.len() {
                i = 0;
            }
        }
        None
    }

    /// Every number and its profile id, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter())
            .filter(|s| s.key != 0)
            .map(|s| (s.key, s.id))
    }

    /// A new map: this one with `ops` applied in order. Shares every untouched shard.
    pub(crate) fn apply(&self, ops: &[Op], refs: &mut RefCounts) -> Shards {
        let shift = 64 - self.bits;
        let mut by_shard: Vec<(usize, u32)> = ops
            .iter()
            .enumerate()
            .map(|(i, (k, _))| ((mix(*k, self.seed) >> shift) as usize, i as u32))
            .collect();
        by_shard.sort_unstable();
        let empty: Arc<[Slot]> = Arc::new([]);
        let mut shards = self.shards.to_vec();
        let mut len = self.len;
        let mut ed = Editor::new(self.seed, refs);
        for group in by_shard.chunk_by(|a, b| a.0 == b.0) {
            let Some(shard) = group.first().and_then(|g| shards.get_mut(g.0)) else {
                continue;
            };
            ed.start(shard, shard.len());
            len -= ed.live;
            for &(_, i) in group {
                if let Some(op) = ops.get(i as usize) {
                    ed.apply(*op);
                }
            }
            len += ed.live;
            *shard = ed.finish(&empty);
        }
        let next = Shards {
            seed: self.seed,
            bits: self.bits,
            shards: shards.into_boxed_slice(),
            len,
        };
        if bits_for(len).abs_diff(self.bits) >= 2 {
            // Grown or shrunk fourfold: re-shard so shards stay small and few are empty.
            // Counts do not change, so a throwaway counter takes the rebuild's updates.
            let all: Vec<Op> = next.iter().map(|(k, id)| (k, Some(id))).collect();
            return Shards::build(&all, self.seed, &mut RefCounts::default());
        }
        next
    }
}

/// A scratch shard being written: a copy of a published one (or empty), edited in place.
struct Editor<'r> {
    slots: Vec<Slot>,
    live: usize,
    seed: u64,
    refs: &'r mut RefCounts,
}

impl<'r> Editor<'r> {
    fn new(seed: u64, refs: &'r mut RefCounts) -> Editor<'r> {
        Editor {
            slots: Vec::new(),
            live: 0,
            seed,
            refs,
        }
    }

    /// Starts from a copy of `from` in `cap` slots (`cap` is `from.len()` or `from` is empty).
    fn start(&mut self, from: &[Slot], cap: usize) {
        self.slots.clear();
        self.slots.extend_from_slice(from);
        self.slots.resize(cap, EMPTY);
        self.live = from.iter().filter(|s| s.key != 0).count();
    }

    /// `Ok(index)` of `key`, or `Err(index)` of the empty slot where it would go.
    fn find(&self, key: u64) -> Result<usize, usize> {
        let cap = self.slots.len();
        let mut i = home(mix(key, self.seed), cap);
        for _ in 0..cap {
            match self.slots.get(i) {
                Some(s) if s.key == key => return Ok(i),
                Some(s) if s.key == 0 => return Err(i),
                _ => {}
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        Err(usize::MAX)
    }

    fn apply(&mut self, (key, op): Op) {
        match (self.find(key), op) {
            (Ok(i), Some(id)) => {
                if let Some(s) = self.slots.get_mut(i) {
                    let old = std::mem::replace(&mut s.id, id);
                    self.refs.retain(id);
                    self.refs.release(old);
                }
            }
            (Ok(i), None) => {
                if let Some(old) = self.slots.get(i).map(|s| s.id) {
                    self.delete(i);
                    self.live -= 1;
                    self.refs.release(old);
                }
            }
            (Err(_), Some(id)) => {
                if 3 * (self.live + 1) > 2 * self.slots.len() {
                    self.grow();
                }
                if let Err(i) = self.find(key) {
                    if let Some(s) = self.slots.get_mut(i) {
                        *s = Slot { key, id };
                        self.live += 1;
                        self.refs.retain(id);
                    }
                }
            }
            (Err(_), None) => {}
        }
    }

    /// Rehashes into room for a quarter more.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![EMPTY; slots_for(self.live + 1 + self.live / 4)];
        for s in old.into_iter().filter(|s| s.key != 0) {
            if let Err(i) = self.find(s.key) {
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = s;
                }
            }
        }
    }

    /// Empties slot `i`, moving later members of its probe chain back so none is cut off.
    fn delete(&mut self, mut i: usize) {
        let cap = self.slots.len();
        let mut j = i;
        loop {
            j += 1;
            if j == cap {
                j = 0;
            }
            let Some(&s) = self.slots.get(j) else { break };
            if s.key == 0 || j == i {
                break;
            }
            let k = home(mix(s.key, self.seed), cap);
            // `s` may stay when its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                if let Some(hole) = self.slots.get_mut(i) {
                    *hole = s;
                }
                i = j;
            }
        }
        if let Some(hole) = self.slots.get_mut(i) {
            *hole = EMPTY;
        }
    }

    fn finish(&self, empty: &Arc<[Slot]>) -> Arc<[Slot]> {
        if self.live == 0 {
            Arc::clone(empty)
        } else {
            Arc::from(&self.slots[..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(n: usize) -> RefCounts {
        RefCounts::with_ids(n)
    }

    #[test]
    fn keys_pack_numbers_one_to_one() {
        for s in ["+1", "+14255550100", "+999999999999999", "+100000000000000"] {
            let n = E164::parse(s).unwrap();
            assert_eq!(number_of(key_of(&n)), Some(n));
        }
        assert_eq!(key_of(&E164::parse("+14255550100").unwrap()), 14255550100);
        assert_eq!(number_of(0), None);
        assert_eq!(number_of(MAX_KEY + 1), None);
    }

    #[test]
    fn build_get_apply() {
        let mut r = refs(2);
        let ops: Vec<Op> = (1..=10_000u64).map(|k| (k * 7, Some(0))).collect();
        let m = Shards::build(&ops, 42, &mut r);
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.shard_count(), 128);
        assert_eq!(r.count(0), 10_000);
        assert!((1..=10_000u64).all(|k| m.get(k * 7) == Some(0)));
        assert!((1..=10_000u64).all(|k| m.get(k * 7 + 1).is_none()));

        let n = m.apply(&[(7, Some(1)), (14, None), (3, Some(1)), (5, None)], &mut r);
        assert_eq!(n.len(), 10_000, "one added, one removed");
        assert_eq!((r.count(0), r.count(1)), (9_998, 2));
        assert_eq!((n.get(7), n.get(14), n.get(3)), (Some(1), None, Some(1)));
        assert_eq!(
            (m.get(7), m.get(14), m.get(3)),
            (Some(0), Some(0), None),
            "old untouched"
        );
        let shared = m
            .shards
            .iter()
            .zip(n.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= m.shard_count() - 4, "only touched shards copied");
        assert_eq!(n.iter().count(), 10_000);
    }

    #[test]
    fn later_ops_win_and_removals_keep_chains() {
        let mut r = refs(2);
        let m = Shards::build(
            &[(1, Some(0)), (2, Some(0)), (1, Some(1)), (2, None)],
            7,
            &mut r,
        );
        assert_eq!((m.len(), m.get(1), m.get(2)), (1, Some(1), None));
        assert_eq!((r.count(0), r.count(1)), (0, 1));
        // Deleting from crowded shards (one shard: 16 keys in 16 shards is unlikely, so
        // use many keys) never loses a key that stays.
        let keys: Vec<u64> = (1..=2_000u64).map(|k| k * 1_000_003).collect();
        let mut m = Shards::build(
            &keys.iter().map(|&k| (k, Some(0))).collect::<Vec<_>>(),
            9,
            &mut r,
        );
        for (round, chunk) in keys.chunks(100).enumerate().filter(|(i, _)| i % 2 == 0) {
            m = m.apply(
                &chunk.iter().map(|&k| (k, None)).collect::<Vec<_>>(),
                &mut r,
            );
            for (i, c) in keys.chunks(100).enumerate() {
                let want = i % 2 == 1 || i > round;
                assert!(
                    c.iter().all(|&k| m.get(k).is_some() == want),
                    "round {round}"
                );
            }
        }
        assert_eq!(m.len(), 1_000);
    }

    #[test]
    fn shards_grow_under_inserts() {
        let mut r = refs(1);
        let mut m = Shards::build(&[(1, Some(0))], 3, &mut r);
        for k in 2..=200u64 {
            m = m.apply(&[(k, Some(0))], &mut r);
        }
        assert_eq!(m.len(), 200);
        assert!((1..=200u64).all(|k| m.get(k).is_some()));
        assert_eq!(r.count(0), 200);
    }

    #[test]
    fn resharding_follows_growth_and_shrinkage() {
        let mut r = refs(1);
        let m = Shards::build(&[(1, Some(0))], 1, &mut r);
        assert_eq!(m.shard_count(), 16);
        let add: Vec<Op> = (1..=100_000u64).map(|k| (k, Some(0))).collect();
        let m = m.apply(&add, &mut r);
        assert_eq!(m.len(), 100_000);
        assert_eq!(m.shard_count(), 1 << bits_for(100_000));
        assert!((1..=100_000u64).all(|k| m.get(k).is_some()));
        assert_eq!(r.count(0), 100_000, "re-sharding does not count twice");
        let del: Vec<Op> = (2..=100_000u64).map(|k| (k, None)).collect();
        let m = m.apply(&del, &mut r);
        assert_eq!((m.len(), m.shard_count()), (1, 16));
        assert!(m.get(1).is_some());
        assert_eq!(r.count(0), 1);
    }

    proptest::proptest! {
        /// Random batches of assigns and removals over few keys (long probe chains, many
        /// deletions) agree with a `BTreeMap`, counts included, whatever the batching.
        #[test]
        fn agrees_with_a_model(
            batches in proptest::collection::vec(
                proptest::collection::vec((1u64..300, proptest::option::of(0u32..4)), 0..200),
                1..12,
            ),
            seed: u64,
        ) {
            let mut r = refs(4);
            let mut model = std::collections::BTreeMap::new();
            let mut m = Shards::build(&[], seed, &mut r);
            for ops in &batches {
                m = m.apply(ops, &mut r);
                for &(k, op) in ops {
                    match op {
                        Some(id) => model.insert(k, id),
                        None => model.remove(&k),
                    };
                }
                proptest::prop_assert_eq!(m.len(), model.len());
                for k in 1u64..300 {
                    proptest::prop_assert_eq!(m.get(k), model.get(&k).copied());
                }
                for id in 0..4u32 {
                    let want = model.values().filter(|&&v| v == id).count() as u32;
                    proptest::prop_assert_eq!(r.count(id), want);
                }
            }
        }
    }

    #[test]
    fn empty_map_finds_nothing() {
        let m = Shards::empty();
        assert_eq!(m.len(), 0);
        assert!(m.get(14255550100).is_none());
        assert_eq!(m.iter().count(), 0);
    }
}
