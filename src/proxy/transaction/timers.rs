//! Time for the transaction layer: the [`Millis`] clock value, the RFC 3261 timer
//! durations ([`Timers`]) and the ordered set of pending deadlines.
//!
//! Invariants of [`Deadlines`]:
//! - every entry `(at, tx, slot)` mirrors exactly one armed timer cell of a live
//!   transaction: arming a cell removes its previous entry first, so the set never holds a
//!   stale deadline and its first entry is always the earliest real one;
//! - a transaction has at most one entry per [`Slot`], so the set holds at most two entries
//!   per transaction.

use std::collections::BTreeSet;
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

/// Every pending deadline of the layer, ordered by time (see the module invariants).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    set: BTreeSet<(Millis, TxId, Slot)>,
}

impl Deadlines {
    /// Sets (or clears, with `None`) the `slot` cell of transaction `id`, keeping the set in
    /// step with the cell.
    pub(crate) fn arm(&mut self, id: TxId, cells: &mut Cells, slot: Slot, at: Option<Millis>) {
        let cell = &mut cells[slot as usize];
        if let Some(old) = cell.take() {
            self.set.remove(&(old, id, slot));
        }
        if let Some(at) = at {
            self.set.insert((at, id, slot));
            *cell = Some(at);
        }
    }

    /// Clears both cells of a transaction that is going away.
    pub(crate) fn clear(&mut self, id: TxId, cells: &mut Cells) {
        self.arm(id, cells, Slot::Retransmit, None);
        self.arm(id, cells, Slot::Timeout, None);
    }

    /// The earliest deadline.
    pub(crate) fn first(&self) -> Option<Millis> {
        self.set.first().map(|&(at, _, _)| at)
    }

    /// Removes and returns the earliest entry due at `now`. The caller must clear the
    /// matching cell (the entry is already gone from the set).
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(TxId, Slot)> {
        let &(at, id, slot) = self.set.first()?;
        if at > now {
            return None;
        }
        self.set.pop_first();
        Some((id, slot))
    }

    /// Number of pending deadlines.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
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

    #[test]
    fn rearming_replaces_the_old_entry() {
        let mut d = Deadlines::default();
        let a = TxId::Server(ServerId(1));
        let b = TxId::Client(ClientId(2));
        let (mut ca, mut cb): (Cells, Cells) = ([None; 2], [None; 2]);
        d.arm(a, &mut ca, Slot::Timeout, Some(Millis(100)));
        d.arm(b, &mut cb, Slot::Retransmit, Some(Millis(50)));
        assert_eq!(d.first(), Some(Millis(50)));
        d.arm(b, &mut cb, Slot::Retransmit, Some(Millis(150)));
        assert_eq!(d.first(), Some(Millis(100)));
        assert_eq!(d.len(), 2);
        assert_eq!(d.pop_due(Millis(99)), None);
        assert_eq!(d.pop_due(Millis(100)), Some((a, Slot::Timeout)));
        d.clear(b, &mut cb);
        assert_eq!(d.first(), None);
        assert_eq!(cb, [None, None]);
    }
}
