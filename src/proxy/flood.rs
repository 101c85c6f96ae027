//! Flood control: per-source token buckets for out-of-dialog requests, sans-IO.
//!
//! [`FloodControl::check`] is asked once per out-of-dialog request with the source address
//! and `now`. A source with a token left is allowed and spends it. The first request that
//! finds the bucket empty gets [`FloodVerdict::RejectFirst`] (the caller answers 503 with
//! `Retry-After`); every later one is [`FloodVerdict::Drop`]ped silently until the bucket
//! has refilled to at least one token, which ends the episode. A steady flooder therefore
//! draws at most one 503 per refilled token: our answers never exceed the configured rate.
//!
//! Configured peers (Microsoft targets, SBCs) use the `flood.peer` bucket; every other
//! address uses `flood.source`. IPv4-mapped IPv6 sources count as the IPv4 address.
//!
//! # Arithmetic
//!
//! Tokens are fixed-point integers in millionths of a token and refill per elapsed
//! millisecond, so tests in simulated time are exact (no float drift) and a clock that goes
//! backwards refills nothing instead of panicking.
//!
//! # Bounds and eviction
//!
//! Peer buckets live in their own map, sized by the configured peer list, and are never
//! evicted: a flood of spoofed sources cannot reset a peer's bucket. Other sources are
//! tracked in a map of at most `max_sources` entries; inserting one more evicts the least
//! recently seen. Recency is kept with a lazy queue: every check stamps the entry with a new
//! generation and pushes `(ip, generation)`; eviction pops from the front, skipping pairs
//! whose generation is no longer the entry's. The queue is compacted (stale pairs dropped,
//! order kept) when it exceeds `2 * tracked + 16`. Between two compactions at least half as
//! many checks as the compaction's cost have happened (the map never shrinks outside
//! [`FloodControl::reconfigure`]), so both eviction and compaction are O(1) amortised.
//!
//! # Invariants
//!
//! - `tracked() <= max_sources` after every call; the recency queue holds at most
//!   `2 * tracked() + 17` pairs.
//! - Every tracked source has exactly one queue pair carrying its current generation.
//! - Every verdict is counted in exactly one of `allowed`, `rejected`, `dropped`.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::transaction::Millis;
use crate::config::{Bucket, Flood};

/// Fixed-point scale: millionths of a token.
const UNIT: u64 = 1_000_000;

/// What to do with one out-of-dialog request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodVerdict {
    /// Within the limit: process the request.
    Allow,
    /// The first request over the limit: answer 503 with this `Retry-After` (seconds).
    RejectFirst {
        /// Seconds for the `Retry-After` header.
        retry_after: u32,
    },
    /// Over the limit and already told: drop silently.
    Drop,
}

/// Counters since start, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FloodStats {
    /// Requests allowed.
    pub allowed: u64,
    /// Requests answered 503 (the first of each excess episode).
    pub rejected: u64,
    /// Requests dropped silently.
    pub dropped: u64,
    /// Tracked sources forgotten to stay within `max_sources`.
    pub evicted: u64,
}

/// A bucket's limits in fixed point.
#[derive(Debug, Clone, Copy)]
struct Limit {
    /// Capacity (burst), at least one token.
    cap: u64,
    /// Refill per millisecond.
    per_ms: u64,
}

impl Limit {
    fn new(b: &Bucket) -> Limit {
        // `as` saturates and maps NaN to 0; the config check refuses such values anyway.
        Limit {
            cap: ((b.burst * UNIT as f64) as u64).max(UNIT),
            per_ms: (b.rate * (UNIT / 1000) as f64).round() as u64,
        }
    }
}

/// One bucket.
#[derive(Debug, Clone, Copy)]
struct State {
    tokens: u64,
    at: Millis,
    /// In an excess episode: the 503 has been sent.
    excess: bool,
}

impl State {
    fn full(limit: Limit, now: Millis) -> State {
        State {
            tokens: limit.cap,
            at: now,
            excess: false,
        }
    }

    fn take(&mut self, limit: Limit, now: Millis, retry_after: u32) -> FloodVerdict {
        let elapsed = now.0.saturating_sub(self.at.0);
        let refill = elapsed.saturating_mul(limit.per_ms);
        self.tokens = self.tokens.saturating_add(refill).min(limit.cap);
        self.at = self.at.max(now);
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            self.excess = false;
            FloodVerdict::Allow
        } else if !self.excess {
            self.excess = true;
            FloodVerdict::RejectFirst { retry_after }
        } else {
            FloodVerdict::Drop
        }
    }
}

/// A tracked non-peer source.
#[derive(Debug)]
struct Entry {
    state: State,
    /// Generation of the last check; matches exactly one pair in the recency queue.
    seen: u64,
}

/// Per-source token buckets with a bounded source table.
#[derive(Debug)]
pub struct FloodControl {
    source: Limit,
    peer: Limit,
    retry_after: u32,
    max_sources: usize,
    peers: crate::FastMap<IpAddr, State>,
    sources: crate::FastMap<IpAddr, Entry>,
    recency: VecDeque<(IpAddr, u64)>,
    generation: u64,
    stats: FloodStats,
}

impl FloodControl {
    /// Limits from `cfg`, with `peers` (Microsoft target and SBC addresses) on the peer bucket.
    /// A `max_sources` of 0 acts as 1.
    pub fn new(cfg: &Flood, peers: impl IntoIterator<Item = IpAddr>) -> FloodControl {
        let mut fc = FloodControl {
            source: Limit::new(&cfg.source),
            peer: Limit::new(&cfg.peer),
            retry_after: cfg.retry_after,
            max_sources: cfg.max_sources.max(1),
            peers: crate::FastMap::default(),
            sources: crate::FastMap::default(),
            recency: VecDeque::new(),
            generation: 0,
            stats: FloodStats::default(),
        };
        fc.set_peers(peers);
        fc
    }

    /// Decides on one out-of-dialog request from `source` at `now`, and counts it.
    pub fn check(&mut self, now: Millis, source: IpAddr) -> FloodVerdict {
        let ip = source.to_canonical();
        let verdict = match self.peers.get_mut(&ip) {
            Some(state) => state.take(self.peer, now, self.retry_after),
            None => self.check_source(now, ip),
        };
        match verdict {
            FloodVerdict::Allow => self.stats.allowed += 1,
            FloodVerdict::RejectFirst { .. } => self.stats.rejected += 1,
            FloodVerdict::Drop => self.stats.dropped += 1,
        }
        verdict
    }

    /// Replaces the peer list (reload). Peers that stay keep their bucket; new peers start
    /// full, dropping any source bucket they had; former peers start over as plain sources.
    /// Buckets start at time zero, so they are full at the next check whatever `now` is.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = IpAddr>) {
        let mut next = crate::FastMap::default();
        for ip in peers.into_iter().map(|ip| ip.to_canonical()) {
            let state = self.peers.get(&ip).copied().unwrap_or_else(|| {
                self.sources.remove(&ip);
                State::full(self.peer, Millis(0))
            });
            next.insert(ip, state);
        }
        self.peers = next;
    }

    /// Applies new limits (reload). Existing buckets keep their tokens, capped at the new
    /// burst on their next check; sources beyond a smaller `max_sources` are evicted now.
    pub fn reconfigure(&mut self, cfg: &Flood) {
        self.source = Limit::new(&cfg.source);
        self.peer = Limit::new(&cfg.peer);
        self.retry_after = cfg.retry_after;
        self.max_sources = cfg.max_sources.max(1);
        while self.sources.len() > self.max_sources {
            self.evict_oldest();
        }
        self.compact();
    }

    /// Counters since start.
    pub fn stats(&self) -> FloodStats {
        self.stats
    }

    /// Non-peer sources currently tracked (at most `max_sources`).
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn check_source(&mut self, now: Millis, ip: IpAddr) -> FloodVerdict {
        self.generation += 1;
        let generation = self.generation;
        if !self.sources.contains_key(&ip) {
            while self.sources.len() >= self.max_sources {
                self.evict_oldest();
            }
        }
        let limit = self.source;
        let entry = self.sources.entry(ip).or_insert_with(|| Entry {
            state: State::full(limit, now),
            seen: 0,
        });
        entry.seen = generation;
        let verdict = entry.state.take(limit, now, self.retry_after);
        self.recency.push_back((ip, generation));
        if self.recency.len() > 2 * self.sources.len() + 16 {
            self.compact();
        }
        verdict
    }

    /// Forgets the least recently seen source.
    fn evict_oldest(&mut self) {
        while let Some((ip, generation)) = self.recency.pop_front() {
            if self.sources.get(&ip).is_some_and(|e| e.seen == generation) {
                self.sources.remove(&ip);
                self.stats.evicted += 1;
                return;
            }
        }
    }

    /// Drops stale pairs from the recency queue, keeping order.
    fn compact(&mut self) {
        let sources = &self.sources;
        self.recency
            .retain(|(ip, g)| sources.get(ip).is_some_and(|e| e.seen == *g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64, burst: f64, max_sources: usize) -> Flood {
        Flood {
            source: Bucket { rate, burst },
            peer: Bucket {
                rate: 100.0,
                burst: 50.0,
            },
            retry_after: 7,
            max_sources,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const REJECT: FloodVerdict = FloodVerdict::RejectFirst { retry_after: 7 };

    #[test]
    fn burst_then_reject_first_then_drops_then_refill() {
        let mut fc = FloodControl::new(&cfg(10.0, 5.0, 100), []);
        let src = ip("203.0.113.5");
        for _ in 0..5 {
            assert_eq!(fc.check(Millis(0), src), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(0), src), REJECT);
        for t in [0, 10, 50, 99] {
            assert_eq!(fc.check(Millis(t), src), FloodVerdict::Drop);
        }
        // 10/s: one token after exactly 100 ms ends the episode.
        assert_eq!(fc.check(Millis(100), src), FloodVerdict::Allow);
        assert_eq!(fc.check(Millis(100), src), REJECT);
        assert_eq!(fc.check(Millis(150), src), FloodVerdict::Drop);
        // A long pause refills to the burst and no further.
        for _ in 0..5 {
            assert_eq!(fc.check(Millis(60_000), src), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(60_000), src), REJECT);
        let s = fc.stats();
        assert_eq!((s.allowed, s.rejected, s.dropped, s.evicted), (11, 3, 5, 0));
    }

    #[test]
    fn steady_flood_draws_503s_at_the_refill_rate_only() {
        let mut fc = FloodControl::new(&cfg(10.0, 5.0, 100), []);
        let src = ip("198.51.100.1");
        // 1000 requests/s for 10 s.
        for t in 0..10_000 {
            fc.check(Millis(t), src);
        }
        let s = fc.stats();
        assert_eq!(
            s.allowed,
            5 + 99,
            "burst plus one per 100 ms after the first"
        );
        assert_eq!(s.rejected, 100);
        assert_eq!(s.allowed + s.rejected + s.dropped, 10_000);
    }

    #[test]
    fn sources_have_independent_buckets() {
        let mut fc = FloodControl::new(&cfg(1.0, 1.0, 100), []);
        assert_eq!(fc.check(Millis(0), ip("192.0.2.1")), FloodVerdict::Allow);
        assert_eq!(fc.check(Millis(0), ip("192.0.2.1")), REJECT);
        assert_eq!(fc.check(Millis(0), ip("192.0.2.2")), FloodVerdict::Allow);
        assert_eq!(fc.check(Millis(0), ip("2001:db8::2")), FloodVerdict::Allow);
    }

    #[test]
    fn peers_use_the_peer_bucket_and_others_the_source_bucket() {
        let peer = ip("52.112.1.1");
        let mut fc = FloodControl::new(&cfg(1.0, 2.0, 100), [peer]);
        let other = ip("203.0.113.9");
        for _ in 0..2 {
            assert_eq!(fc.check(Millis(0), other), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(0), other), REJECT);
        // The peer bucket holds 50, and a mapped source is the same peer.
        for i in 0..50 {
            let src = if i % 2 == 0 {
                peer
            } else {
                ip("::ffff:52.112.1.1")
            };
            assert_eq!(fc.check(Millis(0), src), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(0), peer), REJECT);
        assert_eq!(fc.tracked(), 1, "peers are not in the bounded source table");

        // Reload: `other` becomes a peer with a full peer bucket, the old peer a plain source.
        fc.set_peers([other]);
        for _ in 0..50 {
            assert_eq!(fc.check(Millis(0), other), FloodVerdict::Allow);
        }
        assert_eq!(fc.tracked(), 0);
        for _ in 0..2 {
            assert_eq!(fc.check(Millis(0), peer), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(0), peer), REJECT);
    }

    #[test]
    fn kept_peers_keep_their_bucket_across_set_peers() {
        let peer = ip("192.0.2.10");
        let mut fc = FloodControl::new(&cfg(1.0, 1.0, 10), [peer]);
        for _ in 0..50 {
            fc.check(Millis(0), peer);
        }
        fc.set_peers([peer, ip("192.0.2.11")]);
        assert_eq!(fc.check(Millis(0), peer), REJECT);
        assert_eq!(fc.check(Millis(0), ip("192.0.2.11")), FloodVerdict::Allow);
    }

    #[test]
    fn source_table_never_exceeds_max_sources_and_evicts_least_recent() {
        let max = 100;
        let mut fc = FloodControl::new(&cfg(1.0, 1.0, max), []);
        let flooder = ip("198.51.100.7");
        fc.check(Millis(0), flooder);
        fc.check(Millis(0), flooder); // 503 sent; the flooder is now dropped
        for i in 0..10_000u32 {
            let spoofed = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            assert_eq!(fc.check(Millis(1), spoofed), FloodVerdict::Allow);
            // The flooder stays recent, so it keeps its empty bucket.
            assert_eq!(fc.check(Millis(1), flooder), FloodVerdict::Drop);
            assert!(fc.tracked() <= max);
            assert!(fc.recency.len() <= 2 * fc.tracked() + 17);
        }
        assert_eq!(fc.tracked(), max);
        assert_eq!(fc.stats().evicted, 10_000 - (max as u64 - 1));
        // The first spoofed source was evicted long ago and starts over with a full bucket.
        assert_eq!(fc.check(Millis(1), ip("10.0.0.0")), FloodVerdict::Allow);
    }

    #[test]
    fn reconfigure_shrinks_the_table_and_applies_new_limits() {
        let mut fc = FloodControl::new(&cfg(1.0, 1.0, 50), []);
        for i in 0..50u8 {
            fc.check(Millis(0), IpAddr::from([192, 0, 2, i]));
        }
        fc.reconfigure(&cfg(1.0, 3.0, 10));
        assert_eq!(fc.tracked(), 10);
        assert_eq!(fc.stats().evicted, 40);
        // The ten most recent survive, empty; a new source gets the new burst of 3.
        assert_eq!(fc.check(Millis(0), IpAddr::from([192, 0, 2, 49])), REJECT);
        let fresh = ip("203.0.113.1");
        for _ in 0..3 {
            assert_eq!(fc.check(Millis(0), fresh), FloodVerdict::Allow);
        }
        assert_eq!(fc.check(Millis(0), fresh), REJECT);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let mut fc = FloodControl::new(&cfg(10.0, 1.0, 10), []);
        let src = ip("192.0.2.1");
        assert_eq!(fc.check(Millis(5_000), src), FloodVerdict::Allow);
        assert_eq!(fc.check(Millis(1_000), src), REJECT);
        assert_eq!(fc.check(Millis(5_050), src), FloodVerdict::Drop);
        assert_eq!(fc.check(Millis(5_100), src), FloodVerdict::Allow);
    }
}
