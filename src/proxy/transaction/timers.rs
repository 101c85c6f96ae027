//! Time for the transaction layer: the [`Millis`] clock value, the RFC 3261 timer
//! durations ([`Timers`]) and the ordered set of pending deadlines.
//!
//! Invariants of [`Deadlines`]:
//! - the truth is the transactions' timer cells: an entry `(at, tx, slot)` of the heap
//!   counts only while `tx` is live and its `slot` cell holds `at`, so the earliest entry
//!   reported is always the earliest armed cell;
//! - every armed cell has an entry; outdated entries are dropped when they reach the top
//!   and, in bulk, once they outnumber the armed cells.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Add;
use std::time::Duration;

use super::TxId;

/// A point in time: milliseconds since an origin the caller chooses (process start, or zero
/// in a test). The layer never reads a clock; every entry point takes `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The time elapsed since `earlier` (zero when `earlier` is later).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;

    /// Saturating: a huge configured duration means "never", not a wrapped-around instant.
    fn add(self, d: Duration) -> Millis {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(ms))
    }
}

/// RFC 3261 timer base values (§17.1.1.1, table 4) plus the proxy's Timer C (§16.6).
///
/// Every other timer derives from these: A, E and G start at `t1` and double (E and G capped
/// at `t2`); B, F, H, J (unreliable), and RFC 6026's L and M are `64 * t1`; I and K are `t4`
/// on unreliable transports; D is `d`. I, J, K and D are zero on reliable transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
    /// Timer D: how long a client INVITE transaction absorbs retransmitted non-2xx finals on
    /// an unreliable transport ("at least 32 s").
    pub d: Duration,
    /// Timer C: how long a proxied INVITE may stay without a final response after its last
    /// provisional (RFC 3261 §16.6 step 11: more than 3 minutes). On expiry the layer CANCELs
    /// the branch. Values below `64 * t1` act as `64 * t1` while no provisional has arrived,
    /// because Timer B governs the Calling state.
    pub c: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
            c: Duration::from_secs(181),
        }
    }
}

impl Timers {
    /// `64 * T1`: Timers B, F, H, J (unreliable), L and M.
    pub fn t64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The first retransmit interval (A, E, G). At least 1 ms, so that a zero `t1` cannot
    /// make [`super::TransactionLayer::handle_timeout`] loop forever.
    pub(crate) fn first_interval(&self) -> Duration {
        self.t1.max(Duration::from_millis(1))
    }

    /// The interval after `current` for E and G: doubled, capped at T2 (at least 1 ms).
    pub(crate) fn next_capped(&self, current: Duration) -> Duration {
        current
            .saturating_mul(2)
            .min(self.t2)
            .max(Duration::from_millis(1))
    }

    /// Leak guard for a server transaction that the TU never answers (not in RFC 3261):
    /// longer than any legitimate wait of the client transactions behind it, so the guard
    /// only fires when the proxy lost track of the transaction. INVITE: Timer C plus twice
    /// `64 * T1`, restarted by every provisional sent. Non-INVITE: twice `64 * T1`.
    pub(crate) fn server_guard(&self, invite: bool) -> Duration {
        let base = self.t64().saturating_mul(2);
        if invite {
            base.saturating_add(self.c)
        } else {
            base
        }
    }
}

/// Which timer cell of a transaction a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Slot {
    /// A, E or G: send the message again.
    Retransmit = 0,
    /// Every other timer: a state change (B, C, D, F, H, I, J, K, L, M, guards).
    Timeout = 1,
}

/// The two timer cells of one transaction, indexed by [`Slot`].
pub(crate) type Cells = [Option<Millis>; 2];

/// Pending deadlines of keys `K`, earliest first, with lazy removal: the owner keeps the
/// true deadline of each key (a transaction's timer cells, a call entry's deadline), and an
/// entry `(at, key)` counts only while the owner still holds `at` for `key`. Re-arming or
/// clearing therefore costs nothing here; the outdated entry is dropped when it reaches the
/// top. Every lookup of the earliest entry takes the owner's answer (`valid`), so what it
/// returns is always a real deadline.
///
/// A binary heap rather than an ordered set: a new deadline is almost always among the
/// latest, so a push rarely moves, and the heap is one contiguous array instead of a tree
/// of nodes (this runs several times per message, over hundreds of thousands of entries).
/// Outdated entries are bounded: [`DeadlineHeap::compact`] drops them once they outnumber
/// the live ones.
#[derive(Debug)]
pub(crate) struct DeadlineHeap<K: Ord + Copy> {
    heap: RefCell<BinaryHeap<Reverse<(Millis, K)>>>,
    /// The top entry as last confirmed valid, so that asking again costs no lookup. Cleared
    /// when that entry is outdated or popped.
    checked: Cell<Option<(Millis, K)>>,
}

impl<K: Ord + Copy> Default for DeadlineHeap<K> {
    fn default() -> Self {
        DeadlineHeap {
            heap: RefCell::new(BinaryHeap::new()),
            checked: Cell::new(None),
        }
    }
}

impl<K: Ord + Copy> DeadlineHeap<K> {
    /// Adds the deadline `at` of `key`; the owner now holds `at` for it.
    pub(crate) fn push(&mut self, at: Millis, key: K) {
        let heap = self.heap.get_mut();
        heap.push(Reverse((at, key)));
        if heap.peek() == Some(&Reverse((at, key))) {
            // It became the top and is valid by construction.
            self.checked.set(Some((at, key)));
        }
    }

    /// The owner no longer holds `at` for `key`: the entry may not be reported again.
    pub(crate) fn outdate(&mut self, at: Millis, key: K) {
        if self.checked.get() == Some((at, key)) {
            self.checked.set(None);
        }
    }

    /// The earliest valid entry; outdated entries above it are dropped on the way.
    pub(crate) fn first(&self, valid: impl Fn(Millis, K) -> bool) -> Option<(Millis, K)> {
        let Ok(mut heap) = self.heap.try_borrow_mut() else {
            // Unreachable (no caller re-enters); an early answer only means an early wake.
            return self.heap.try_borrow().ok()?.peek().map(|r| r.0);
        };
        loop {
            let &Reverse(top) = heap.peek()?;
            if self.checked.get() == Some(top) || valid(top.0, top.1) {
                self.checked.set(Some(top));
                return Some(top);
            }
            heap.pop();
        }
    }

    /// Removes and returns the earliest valid entry if it is due at `now`.
    pub(crate) fn pop_due(
        &mut self,
        now: Millis,
        valid: impl Fn(Millis, K) -> bool,
    ) -> Option<(Millis, K)> {
        let top = self.first(valid).filter(|&(at, _)| at <= now)?;
        self.heap.get_mut().pop();
        self.checked.set(None);
        Some(top)
    }

    /// Drops every outdated entry once there are more than `live` plus a margin of them, so
    /// the heap stays within a constant factor of the deadlines really pending.
    pub(crate) fn compact(&mut self, live: usize, valid: impl Fn(Millis, K) -> bool) {
        let heap = self.heap.get_mut();
        if heap.len() > live.saturating_mul(2).saturating_add(1024) {
            heap.retain(|&Reverse((at, key))| valid(at, key));
            self.checked.set(None);
        }
    }

    /// Entries held, outdated ones included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.heap.try_borrow().map_or(0, |h| h.len())
    }
}

/// Whether a heap entry is still armed: its transaction's `slot` cell holds `at`.
fn holds(cell: impl Fn(TxId, Slot) -> Option<Millis>) -> impl Fn(Millis, (TxId, Slot)) -> bool {
    move |at, (id, slot)| cell(id, slot) == Some(at)
}

/// Every pending deadline of the layer: a [`DeadlineHeap`] of `(transaction, slot)` whose
/// truth is the transactions' timer cells.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: DeadlineHeap<(TxId, Slot)>,
    /// Armed cells of live transactions.
    live: usize,
}

impl Deadlines {
    /// Sets (or clears, with `None`) the `slot` cell of transaction `id`, keeping the heap in
    /// step with the cell.
    pub(crate) fn arm(&mut self, id: TxId, cells: &mut Cells, slot: Slot, at: Option<Millis>) {
        let cell = &mut cells[slot as usize];
        if *cell == at {
            return;
        }
        if let Some(old) = cell.take() {
            self.heap.outdate(old, (id, slot));
            self.live = self.live.saturating_sub(1);
        }
        if let Some(at) = at {
            self.heap.push(at, (id, slot));
            self.live = self.live.saturating_add(1);
            *cell = Some(at);
        }
    }

    /// Clears both cells of a transaction that is going away.
    pub(crate) fn clear(&mut self, id: TxId, cells: &mut Cells) {
        self.arm(id, cells, Slot::Retransmit, None);
        self.arm(id, cells, Slot::Timeout, None);
    }

    /// The earliest deadline; `cell` gives the armed value of a transaction's cell (`None`
    /// for a transaction that is gone).
    pub(crate) fn first(&self, cell: impl Fn(TxId, Slot) -> Option<Millis>) -> Option<Millis> {
        self.heap.first(holds(cell)).map(|(at, _)| at)
    }

    /// Removes and returns the earliest entry due at `now`. The caller must clear the
    /// matching cell (through [`Deadlines::fired`]).
    pub(crate) fn pop_due(
        &mut self,
        now: Millis,
        cell: impl Fn(TxId, Slot) -> Option<Millis>,
    ) -> Option<(TxId, Slot)> {
        let (_, key) = self.heap.pop_due(now, holds(cell))?;
        Some(key)
    }

    /// The cell of a popped entry is cleared.
    pub(crate) fn fired(&mut self, cells: &mut Cells, slot: Slot) {
        if cells[slot as usize].take().is_some() {
            self.live = self.live.saturating_sub(1);
        }
    }

    /// See [`DeadlineHeap::compact`].
    pub(crate) fn compact(&mut self, cell: impl Fn(TxId, Slot) -> Option<Millis>) {
        self.heap.compact(self.live, holds(cell));
    }

    /// Number of pending deadlines (armed cells).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Entries in the heap, outdated ones included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.heap.held()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientId, ServerId};
    use super::*;

    #[test]
    fn millis_add_saturates() {
        assert_eq!(Millis(5) + Duration::from_millis(7), Millis(12));
        assert_eq!(Millis(u64::MAX - 1) + Duration::MAX, Millis(u64::MAX));
        assert_eq!(Millis(3).since(Millis(10)), Duration::ZERO);
    }

    #[test]
    fn capped_doubling() {
        let t = Timers::default();
        let mut i = t.first_interval();
        let mut seen = vec![i.as_millis()];
        for _ in 0..5 {
            i = t.next_capped(i);
            seen.push(i.as_millis());
        }
        assert_eq!(seen, vec![500, 1000, 2000, 4000, 4000, 4000]);
        let zero = Timers {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            ..t
        };
        assert_eq!(zero.first_interval(), Duration::from_millis(1));
        assert_eq!(zero.next_capped(Duration::ZERO), Duration::from_millis(1));
    }

    /// The cells of two transactions, as the layer's tables hold them.
    fn oracle<'a>(
        a: (TxId, &'a Cells),
        b: (TxId, &'a Cells),
    ) -> impl Fn(TxId, Slot) -> Option<Millis> + 'a {
        move |id, slot| {
            let cells = if id == a.0 {
                a.1
            } else if id == b.0 {
                b.1
            } else {
                return None;
            };
            cells[slot as usize]
        }
    }

    #[test]
    fn rearming_outdates_the_old_entry() {
        let mut d = Deadlines::default();
        let a = TxId::Server(ServerId(1));
        let b = TxId::Client(ClientId(2));
        let (mut ca, mut cb): (Cells, Cells) = ([None; 2], [None; 2]);
        d.arm(a, &mut ca, Slot::Timeout, Some(Millis(100)));
        d.arm(b, &mut cb, Slot::Retransmit, Some(Millis(50)));
        assert_eq!(d.first(oracle((a, &ca), (b, &cb))), Some(Millis(50)));
        d.arm(b, &mut cb, Slot::Retransmit, Some(Millis(150)));
        assert_eq!(d.first(oracle((a, &ca), (b, &cb))), Some(Millis(100)));
        assert_eq!(d.len(), 2);
        assert_eq!(d.pop_due(Millis(99), oracle((a, &ca), (b, &cb))), None);
        assert_eq!(
            d.pop_due(Millis(100), oracle((a, &ca), (b, &cb))),
            Some((a, Slot::Timeout))
        );
        d.fired(&mut ca, Slot::Timeout);
        d.clear(b, &mut cb);
        assert_eq!(cb, [None, None]);
        assert_eq!(d.first(oracle((a, &ca), (b, &cb))), None);
        assert_eq!((d.len(), d.held()), (0, 0));
    }

    #[test]
    fn a_terminated_transaction_never_fires() {
        let mut d = Deadlines::default();
        let a = TxId::Server(ServerId(1));
        let gone = TxId::Server(ServerId(9));
        let (mut ca, mut cg): (Cells, Cells) = ([None; 2], [None; 2]);
        d.arm(gone, &mut cg, Slot::Timeout, Some(Millis(10)));
        d.arm(a, &mut ca, Slot::Timeout, Some(Millis(20)));
        // Terminated: its cells cleared, and the table no longer knows it.
        d.clear(gone, &mut cg);
        let cells = oracle((a, &ca), (a, &ca));
        assert_eq!(d.first(&cells), Some(Millis(20)));
        assert_eq!(d.pop_due(Millis(30), &cells), Some((a, Slot::Timeout)));
        assert_eq!(d.pop_due(Millis(30), &cells), None);
    }

    #[test]
    fn outdated_entries_are_compacted_and_order_is_kept() {
        let mut d = Deadlines::default();
        let a = TxId::Client(ClientId(1));
        let b = TxId::Client(ClientId(2));
        let (mut ca, mut cb): (Cells, Cells) = ([None; 2], [None; 2]);
        // Re-armed 5,000 times: one live deadline, thousands of outdated entries.
        for i in 0..5_000u64 {
            d.arm(a, &mut ca, Slot::Retransmit, Some(Millis(10_000 - i)));
        }
        d.arm(b, &mut cb, Slot::Timeout, Some(Millis(5_001)));
        assert_eq!(d.len(), 2);
        assert!(d.held() > 5_000);
        d.compact(oracle((a, &ca), (b, &cb)));
        assert_eq!(d.held(), 2);
        assert_eq!(d.first(oracle((a, &ca), (b, &cb))), Some(Millis(5_001)));
        let due = d.pop_due(Millis(6_000), oracle((a, &ca), (b, &cb)));
        assert_eq!(due, Some((a, Slot::Retransmit)));
    }
}
