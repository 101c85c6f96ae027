//! Which calls are open, where their Open entries are, and which dead Opens still sit in
//! some segment. One state machine fed by appends at run time and by the frames read back
//! at recovery, so both build the same state.
//!
//! The rule recovery applies: for each key, the entry with the highest seq decides; an Open
//! means the call is up, a Close or a Forget (tombstone) that it is not. Deleting a segment
//! must not change that answer for any key, so before a segment goes:
//! - the live Opens in it are re-appended (re-journaled) to the active segment;
//! - for each key whose latest Close/Forget is in it while an older, dead Open of the key
//!   survives in another segment, a Forget is appended (else that Open would come back).

use std::collections::{BTreeMap, HashMap};

use super::format::FrameKind;
use super::segment::Seg;

/// Where the live Open of a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenLoc {
    /// The segment (its first seq).
    pub seg: u64,
    /// Offset of the frame in the segment file.
    pub at: u64,
    /// Bytes of the frame.
    pub len: u32,
    pub seq: u64,
    pub time_ms: u64,
}

/// Dead Opens of one key that are still on disk.
#[derive(Debug, Default)]
struct Dead {
    /// Segments holding them (never the killer's own segment: those go together).
    segs: Vec<u64>,
    /// Segment of the latest Close/Forget of the key; 0 while the key is open again.
    killer: u64,
}

/// The open calls and the dead Opens still on disk.
#[derive(Debug, Default)]
pub(super) struct Keys {
    /// The live Open of each open call.
    pub live: HashMap<[u8; 16], OpenLoc>,
    dead: HashMap<[u8; 16], Dead>,
}

fn add_live(segs: &mut BTreeMap<u64, Seg>, loc: &OpenLoc, add: bool) {
    if let Some(s) = segs.get_mut(&loc.seg) {
        let len = u64::from(loc.len);
        s.live_bytes = if add {
            s.live_bytes + len
        } else {
            s.live_bytes.saturating_sub(len)
        };
    }
}

impl Keys {
    /// Applies one frame, in seq order. `loc` describes the frame (its segment, offset,
    /// length, seq and time), whatever its kind.
    pub(super) fn apply(
        &mut self,
        segs: &mut BTreeMap<u64, Seg>,
        kind: FrameKind,
        key: [u8; 16],
        loc: OpenLoc,
    ) {
        let old = if kind == FrameKind::Open {
            add_live(segs, &loc, true);
            self.live.insert(key, loc)
        } else {
            self.live.remove(&key)
        };
        if let Some(old) = old {
            add_live(segs, &old, false);
            if old.seg != loc.seg {
                let dead = self.dead.entry(key).or_default();
                if !dead.segs.contains(&old.seg) {
                    dead.segs.push(old.seg);
                }
            }
        }
        if let Some(dead) = self.dead.get_mut(&key) {
            dead.killer = if kind == FrameKind::Open { 0 } else { loc.seg };
            dead.segs.retain(|s| *s != loc.seg);
            if dead.segs.is_empty() {
                self.dead.remove(&key);
            }
        }
    }

    /// The live Opens whose frame is in segment `seg`.
    pub(super) fn live_in(&self, seg: u64) -> Vec<([u8; 16], OpenLoc)> {
        let mut v: Vec<_> = self
            .live
            .iter()
            .filter(|(_, loc)| loc.seg == seg)
            .map(|(k, loc)| (*k, *loc))
            .collect();
        v.sort_unstable_by_key(|(_, loc)| loc.seq);
        v
    }

    /// Keys needing a tombstone before segment `seg` is deleted.
    pub(super) fn tombstones_for(&self, seg: u64) -> Vec<[u8; 16]> {
        self.dead
            .iter()
            .filter(|(_, d)| d.killer == seg && d.segs.iter().any(|s| *s != seg))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Segment `seg` is gone: the dead Opens it held no longer matter.
    pub(super) fn drop_segment(&mut self, seg: u64) {
        self.dead.retain(|_, d| {
            d.segs.retain(|s| *s != seg);
            !d.segs.is_empty()
        });
    }

    /// Dead Opens tracked (memory accounting, tests).
    #[cfg(test)]
    pub(super) fn dead_len(&self) -> usize {
        self.dead.len()
    }
}
