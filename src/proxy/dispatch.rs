//! Destination sets with health, as Kamailio's dispatcher keeps them, sans-IO.
//!
//! A [`DestSet`] holds one side's destinations: the carrier's SBCs (priority and weight from
//! the config) or the Microsoft targets (preference by position: priority = index, weight 1).
//! [`DestSet::pick`] chooses where a new call goes; the caller reports what happened with
//! [`DestSet::on_call_result`] and [`DestSet::on_probe_result`], and drives OPTIONS probing
//! with [`DestSet::poll_probe`] / [`DestSet::next_probe_at`]. Nothing here reads a clock.
//!
//! # Selection
//!
//! Among the destinations that are [`DestState::Up`] and not excluded (already tried for
//! this call), the lowest priority value wins; within it, smooth weighted round-robin
//! (nginx's `ngx_http_upstream_get_peer`): every candidate's `current` grows by its weight,
//! the largest is chosen (first in config order on ties) and loses the candidates' total.
//! Over any run of `sum(weights)` picks with an unchanged candidate set each destination is
//! chosen exactly `weight` times, interleaved, with no randomness. A health change or a
//! reload restarts the round.
//!
//! # Health
//!
//! Destinations start Up. A failure (probe: see [`probe_status_ok`]; call: timeout, 408 or
//! 503 as the caller decides) bumps the failure count and clears the success count, a
//! success does the reverse; `failure_threshold` consecutive failures take an Up destination
//! Down, `success_threshold` consecutive successes bring a Down one back. Every transition
//! is returned as a [`HealthChange`] once. Down destinations are still probed, which is how
//! they come back.
//!
//! # Invariants
//!
//! - [`DestId`]s are never reused within a set; a destination keeps its id (and health)
//!   across [`DestSet::update`] when its name and target are unchanged, so a result for an
//!   id from before a reload either lands on the same destination or is ignored.
//! - Every destination has exactly one probe deadline; the first ones are spread evenly over
//!   one interval, and each later one is one interval after the previous, so each
//!   destination is probed once per interval. A caller that polls late gets each overdue
//!   destination once, not once per missed interval.
//! - The interval is at least 1 ms and both thresholds at least 1, whatever the config
//!   says (the config check refuses smaller values), so polling always terminates.

use std::time::Duration;

use super::transaction::{Millis, Target};
use crate::config::{MsTarget, Probe, Sbc};

/// A destination's identity within its [`DestSet`]; never reused there. Ids of different sets
/// may be equal, so callers keep the side next to the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(u32);

/// Whether a destination receives new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestState {
    /// Eligible for [`DestSet::pick`].
    Up,
    /// Skipped by [`DestSet::pick`] until enough probes succeed.
    Down,
}

/// A state transition, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    /// The destination.
    pub id: DestId,
    /// True when it came Up, false when it went Down.
    pub up: bool,
}

/// What the config says about one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSpec {
    /// Name for logs and metrics.
    pub name: String,
    /// Where to send.
    pub target: Target,
    /// Name the peer's TLS certificate must carry, when known.
    pub tls_name: Option<String>,
    /// Lower is preferred.
    pub priority: u32,
    /// Share of picks among destinations of equal priority (0 acts as 1).
    pub weight: u32,
}

impl DestSpec {
    /// The carrier's SBCs, with their configured priority and weight. SBC names are labels,
    /// not certificate names, so `tls_name` is `None`.
    pub fn from_sbcs(sbcs: &[Sbc]) -> Vec<DestSpec> {
        let spec = |s: &Sbc| DestSpec {
            name: s.name.clone(),
            target: Target {
                transport: s.transport,
                addr: s.addr,
            },
            tls_name: None,
            priority: s.priority,
            weight: s.weight,
        };
        sbcs.iter().map(spec).collect()
    }

    /// The Microsoft targets in order of preference (priority = position, weight 1); the
    /// name is also the TLS name (e.g. `sip.pstnhub.microsoft.com`).
    pub fn from_ms_targets(targets: &[MsTarget]) -> Vec<DestSpec> {
        let spec = |(i, t): (usize, &MsTarget)| DestSpec {
            name: t.name.clone(),
            target: Target {
                transport: t.transport,
                addr: t.addr,
            },
            tls_name: Some(t.name.clone()),
            priority: u32::try_from(i).unwrap_or(u32::MAX),
            weight: 1,
        };
        targets.iter().enumerate().map(spec).collect()
    }
}

/// One destination and its health.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Name for logs and metrics.
    pub name: String,
    /// Where to send.
    pub target: Target,
    /// Name the peer's TLS certificate must carry, when known.
    pub tls_name: Option<String>,
    /// Lower is preferred.
    pub priority: u32,
    /// Share of picks among destinations of equal priority (at least 1).
    pub weight: u32,
    /// Up or Down.
    pub state: DestState,
    /// When `state` last changed (creation time until the first change).
    pub since: Millis,
    id: DestId,
    failures: u32,
    successes: u32,
    current: i64,
    next_probe: Millis,
}

/// A side's destinations, their health and their probe schedule.
#[derive(Debug, Clone)]
pub struct DestSet {
    dests: Vec<Dest>,
    interval: Duration,
    failure_threshold: u32,
    success_threshold: u32,
    next_id: u32,
    /// `probe.enabled`: when false no probe is ever due (health follows call results only).
    probing: bool,
}

/// True when an OPTIONS final response proves a destination alive: 2xx–4xx except 408.
/// 5xx (overload, failure), 6xx, 408 and no answer at all count as failures.
pub fn probe_status_ok(status: u16) -> bool {
    (200..500).contains(&status) && status != 408
}

impl DestSet {
    /// A set from `specs` in config order; all Up, first probes spread over one interval
    /// starting at `now`.
    pub fn new(specs: Vec<DestSpec>, probe: &Probe, now: Millis) -> DestSet {
        let mut set = DestSet {
            dests: Vec::new(),
            interval: Duration::ZERO,
            failure_threshold: 1,
            success_threshold: 1,
            next_id: 0,
            probing: true,
        };
        set.update(specs, probe, now);
        set
    }

    /// The carrier's SBC set.
    pub fn carrier(sbcs: &[Sbc], probe: &Probe, now: Millis) -> DestSet {
        DestSet::new(DestSpec::from_sbcs(sbcs), probe, now)
    }

    /// The Microsoft target set.
    pub fn microsoft(targets: &[MsTarget], probe: &Probe, now: Millis) -> DestSet {
        DestSet::new(DestSpec::from_ms_targets(targets), probe, now)
    }

    /// Replaces the destinations (reload). One whose name and target match an existing one
    /// keeps its id, health and probe deadline (pulled in to one new interval at most) and
    /// takes the new priority, weight and TLS name; new ones start Up with staggered probes.
    pub fn update(&mut self, specs: Vec<DestSpec>, probe: &Probe, now: Millis) {
        self.interval = probe.interval.0.max(Duration::from_millis(1));
        self.probing = probe.enabled;
        self.failure_threshold = probe.failure_threshold.max(1);
        self.success_threshold = probe.success_threshold.max(1);
        let mut old: Vec<Option<Dest>> = std::mem::take(&mut self.dests)
            .into_iter()
            .map(Some)
            .collect();
        let n = specs.len();
        for (i, spec) in specs.into_iter().enumerate() {
            let same = |d: &Option<Dest>| {
                d.as_ref()
                    .is_some_and(|d| d.name == spec.name && d.target == spec.target)
            };
            let dest = match old.iter_mut().find(|d| same(d)).and_then(Option::take) {
                Some(mut d) => {
                    d.tls_name = spec.tls_name;
                    d.priority = spec.priority;
                    d.weight = spec.weight.max(1);
                    d.next_probe = d.next_probe.min(now + self.interval);
                    d
                }
                None => self.fresh(spec, now + self.stagger(i, n), now),
            };
            self.dests.push(dest);
        }
        self.restart_round();
    }

    /// The destination for the next attempt of a call: the lowest priority among Up
    /// destinations not in `exclude`, weighted round-robin within it. `None` when none is
    /// left (the caller answers 503).
    pub fn pick(&mut self, exclude: &[DestId]) -> Option<DestId> {
        let eligible = |d: &Dest| d.state == DestState::Up && !exclude.contains(&d.id);
        let prio = self
            .dests
            .iter()
            .filter(|d| eligible(d))
            .map(|d| d.priority)
            .min()?;
        let mut total = 0i64;
        let mut best: Option<&mut Dest> = None;
        for d in self.dests.iter_mut() {
            if !eligible(d) || d.priority != prio {
                continue;
            }
            d.current = d.current.saturating_add(i64::from(d.weight));
            total = total.saturating_add(i64::from(d.weight));
            if best.as_ref().is_none_or(|b| d.current > b.current) {
                best = Some(d);
            }
        }
        let best = best?;
        best.current = best.current.saturating_sub(total);
        Some(best.id)
    }

    /// The destination `id`, which must come from this set's [`DestSet::pick`] or
    /// [`DestSet::poll_probe`] since the last [`DestSet::update`].
    ///
    /// # Panics
    ///
    /// When `id` is unknown; use [`DestSet::get`] for ids that may predate a reload.
    pub fn dest(&self, id: DestId) -> &Dest {
        self.get(id)
            .expect("DestId from another set or removed by reload")
    }

    /// The destination `id`, or `None` if a reload removed it.
    pub fn get(&self, id: DestId) -> Option<&Dest> {
        self.dests.iter().find(|d| d.id == id)
    }

    /// Every destination with its id, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (DestId, &Dest)> {
        self.dests.iter().map(|d| (d.id, d))
    }

    /// Number of destinations.
    pub fn len(&self) -> usize {
        self.dests.len()
    }

    /// True when the set has no destination.
    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }

    /// The next destination whose OPTIONS is due at `now`, earliest first; call until
    /// `None`. Its next probe is scheduled one interval after this one was due.
    pub fn poll_probe(&mut self, now: Millis) -> Option<DestId> {
        if !self.probing {
            return None;
        }
        let interval = self.interval;
        let d = self
            .dests
            .iter_mut()
            .filter(|d| d.next_probe <= now)
            .min_by_key(|d| d.next_probe)?;
        let next = d.next_probe + interval;
        d.next_probe = if next <= now { now + interval } else { next };
        Some(d.id)
    }

    /// When [`DestSet::poll_probe`] next has something; `None` for an empty set.
    pub fn next_probe_at(&self) -> Option<Millis> {
        if !self.probing {
            return None;
        }
        self.dests.iter().map(|d| d.next_probe).min()
    }

    /// Records an OPTIONS outcome (`ok` per [`probe_status_ok`]; a timeout is `false`).
    /// Unknown ids (removed by a reload) are ignored.
    pub fn on_probe_result(&mut self, id: DestId, ok: bool, now: Millis) -> Option<HealthChange> {
        self.record(id, ok, now)
    }

    /// Records the outcome of a real call sent to `id`: `false` for a timeout, 408 or 503,
    /// which count toward taking it Down exactly like a failed probe (Kamailio's
    /// `ds_mark_dst`); `true` for any other final response.
    pub fn on_call_result(&mut self, id: DestId, ok: bool, now: Millis) -> Option<HealthChange> {
        self.record(id, ok, now)
    }

    fn record(&mut self, id: DestId, ok: bool, now: Millis) -> Option<HealthChange> {
        let (fail_at, succeed_at) = (self.failure_threshold, self.success_threshold);
        let d = self.dests.iter_mut().find(|d| d.id == id)?;
        if ok {
            d.failures = 0;
            d.successes = d.successes.saturating_add(1);
        } else {
            d.successes = 0;
            d.failures = d.failures.saturating_add(1);
        }
        let flips = match d.state {
            DestState::Up => !ok && d.failures >= fail_at,
            DestState::Down => ok && d.successes >= succeed_at,
        };
        if !flips {
            return None;
        }
        d.state = if ok { DestState::Up } else { DestState::Down };
        d.since = now;
        self.restart_round();
        Some(HealthChange { id, up: ok })
    }

    fn fresh(&mut self, spec: DestSpec, next_probe: Millis, now: Millis) -> Dest {
        self.next_id += 1;
        Dest {
            name: spec.name,
            target: spec.target,
            tls_name: spec.tls_name,
            priority: spec.priority,
            weight: spec.weight.max(1),
            state: DestState::Up,
            since: now,
            id: DestId(self.next_id),
            failures: 0,
            successes: 0,
            current: 0,
            next_probe,
        }
    }

    /// Offset of the `i`-th of `n` first probes: `i/n` of an interval.
    fn stagger(&self, i: usize, n: usize) -> Duration {
        let ms = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        let (i, n) = (i as u64, n.max(1) as u64);
        Duration::from_millis(ms / n * i)
    }

    fn restart_round(&mut self) {
        self.dests.iter_mut().for_each(|d| d.current = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;
    use crate::transport::Transport;

    const MIN: u64 = 60_000;

    fn probe() -> Probe {
        Probe {
            enabled: true,
            interval: Dur(Duration::from_millis(MIN)),
            failure_threshold: 3,
            success_threshold: 2,
        }
    }

    fn spec(name: &str, octet: u8, priority: u32, weight: u32) -> DestSpec {
        DestSpec {
            name: name.into(),
            target: Target {
                transport: Transport::Udp,
                addr: ([192, 0, 2, octet], 5060).into(),
            },
            tls_name: None,
            priority,
            weight,
        }
    }

    fn set(specs: Vec<DestSpec>) -> (DestSet, Vec<DestId>) {
        let set = DestSet::new(specs, &probe(), Millis(0));
        let ids = set.iter().map(|(id, _)| id).collect();
        (set, ids)
    }

    #[test]
    fn thresholds_take_a_destination_down_and_bring_it_back() {
        let (mut s, ids) = set(vec![spec("a", 1, 1, 1)]);
        let a = ids[0];
        assert_eq!(s.on_probe_result(a, false, Millis(1)), None);
        assert_eq!(
            s.on_probe_result(a, true, Millis(2)),
            None,
            "success resets failures"
        );
        assert_eq!(s.on_probe_result(a, false, Millis(3)), None);
        assert_eq!(s.on_probe_result(a, false, Millis(4)), None);
        let down = Some(HealthChange { id: a, up: false });
        assert_eq!(s.on_probe_result(a, false, Millis(5)), down);
        assert_eq!(
            (s.dest(a).state, s.dest(a).since),
            (DestState::Down, Millis(5))
        );
        assert_eq!(
            s.on_probe_result(a, false, Millis(6)),
            None,
            "reported once"
        );
        assert_eq!(s.on_probe_result(a, true, Millis(7)), None);
        assert_eq!(
            s.on_probe_result(a, false, Millis(8)),
            None,
            "failure resets successes"
        );
        assert_eq!(s.on_probe_result(a, true, Millis(9)), None);
        let up = Some(HealthChange { id: a, up: true });
        assert_eq!(s.on_probe_result(a, true, Millis(10)), up);
        assert_eq!(s.dest(a).state, DestState::Up);
    }

    #[test]
    fn call_failures_count_like_probe_failures() {
        let (mut s, ids) = set(vec![spec("a", 1, 1, 1), spec("b", 2, 1, 1)]);
        for t in 0..2 {
            assert_eq!(s.on_call_result(ids[0], false, Millis(t)), None);
        }
        let change = s.on_call_result(ids[0], false, Millis(2));
        assert_eq!(
            change,
            Some(HealthChange {
                id: ids[0],
                up: false
            })
        );
        for _ in 0..10 {
            assert_eq!(s.pick(&[]), Some(ids[1]));
        }
    }

    #[test]
    fn down_destinations_are_skipped_and_all_down_gives_none() {
        let (mut s, ids) = set(vec![spec("a", 1, 1, 1), spec("b", 2, 2, 1)]);
        for _ in 0..3 {
            s.on_probe_result(ids[0], false, Millis(0));
        }
        assert_eq!(s.pick(&[]), Some(ids[1]));
        for _ in 0..3 {
            s.on_probe_result(ids[1], false, Millis(0));
        }
        assert_eq!(s.pick(&[]), None);
        for _ in 0..2 {
            s.on_probe_result(ids[0], true, Millis(0));
        }
        assert_eq!(s.pick(&[]), Some(ids[0]));
    }

    #[test]
    fn failover_follows_priority_then_runs_out() {
        let (mut s, ids) = set(vec![
            spec("c", 3, 30, 1),
            spec("a", 1, 10, 1),
            spec("b", 2, 20, 9),
        ]);
        let (c, a, b) = (ids[0], ids[1], ids[2]);
        assert_eq!(s.pick(&[]), Some(a));
        assert_eq!(s.pick(&[a]), Some(b));
        assert_eq!(s.pick(&[a, b]), Some(c));
        assert_eq!(s.pick(&[a, b, c]), None);
        assert_eq!(s.pick(&[b]), Some(a), "exclusion is per call");
    }

    #[test]
    fn weights_share_picks_exactly_and_interleaved() {
        let (mut s, ids) = set(vec![
            spec("a", 1, 1, 3),
            spec("b", 2, 1, 1),
            spec("z", 3, 2, 50),
        ]);
        let picks: Vec<DestId> = (0..400).map(|_| s.pick(&[]).unwrap()).collect();
        let count = |id| picks.iter().filter(|&&p| p == id).count();
        assert_eq!((count(ids[0]), count(ids[1]), count(ids[2])), (300, 100, 0));
        for cycle in picks.chunks(4) {
            assert_eq!(cycle, [ids[0], ids[0], ids[1], ids[0]], "smooth, not aaab");
        }
    }

    #[test]
    fn excluded_destination_leaves_its_share_to_the_rest() {
        let (mut s, ids) = set(vec![
            spec("a", 1, 1, 5),
            spec("b", 2, 1, 1),
            spec("c", 3, 1, 1),
        ]);
        let picks: Vec<DestId> = (0..100).map(|_| s.pick(&[ids[0]]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == ids[1]).count(), 50);
        assert!(!picks.contains(&ids[0]));
    }

    #[test]
    fn microsoft_targets_are_tried_in_configured_order() {
        let t = |name: &str, octet| MsTarget {
            name: name.into(),
            addr: ([52, 112, 0, octet], 5061).into(),
            transport: Transport::Tls,
            host: None,
        };
        let targets = [
            t("sip.pstnhub.microsoft.com", 1),
            t("sip2.pstnhub.microsoft.com", 2),
        ];
        let mut s = DestSet::microsoft(&targets, &probe(), Millis(0));
        let first = s.pick(&[]).unwrap();
        assert_eq!(
            s.dest(first).tls_name.as_deref(),
            Some("sip.pstnhub.microsoft.com")
        );
        assert_eq!(
            s.pick(&[]),
            Some(first),
            "no round-robin between preferences"
        );
        let second = s.pick(&[first]).unwrap();
        assert_eq!(s.dest(second).name, "sip2.pstnhub.microsoft.com");
        assert_eq!(s.dest(second).target.transport, Transport::Tls);
    }

    #[test]
    fn disabled_probing_never_fires() {
        let mut p = probe();
        p.enabled = false;
        let mut set = DestSet::new(vec![spec("a", 1, 1, 1)], &p, Millis(0));
        assert_eq!(set.next_probe_at(), None);
        assert_eq!(set.poll_probe(Millis(10 * MIN)), None);
    }

    #[test]
    fn probes_fire_once_per_interval_staggered() {
        let (mut s, ids) = set(vec![
            spec("a", 1, 1, 1),
            spec("b", 2, 1, 1),
            spec("c", 3, 1, 1),
        ]);
        let mut fired: Vec<(u64, DestId)> = Vec::new();
        while let Some(at) = s.next_probe_at().filter(|at| at.0 < 10 * MIN) {
            while let Some(id) = s.poll_probe(at) {
                fired.push((at.0, id));
            }
        }
        assert_eq!(fired.len(), 30);
        for (k, id) in ids.iter().enumerate() {
            let times: Vec<u64> = fired.iter().filter(|f| f.1 == *id).map(|f| f.0).collect();
            let want: Vec<u64> = (0..10).map(|n| k as u64 * MIN / 3 + n * MIN).collect();
            assert_eq!(times, want);
        }
        // A caller that wakes up an hour late probes each destination once, not 60 times.
        let late = Millis(70 * MIN);
        let mut n = 0;
        while s.poll_probe(late).is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(s.next_probe_at(), Some(Millis(71 * MIN)));
    }

    #[test]
    fn update_keeps_health_of_unchanged_destinations() {
        let (mut s, ids) = set(vec![spec("a", 1, 1, 1), spec("b", 2, 1, 1)]);
        for _ in 0..3 {
            s.on_probe_result(ids[0], false, Millis(0));
            s.on_probe_result(ids[1], false, Millis(0));
        }
        let moved_b = spec("b", 9, 1, 1);
        s.update(
            vec![spec("new", 3, 5, 1), moved_b, spec("a", 1, 7, 4)],
            &probe(),
            Millis(1),
        );
        let kept = s.get(ids[0]).unwrap();
        assert_eq!(
            (kept.state, kept.priority, kept.weight),
            (DestState::Down, 7, 4)
        );
        assert!(
            s.get(ids[1]).is_none(),
            "changed target means a new destination"
        );
        assert_eq!(s.on_call_result(ids[1], false, Millis(2)), None);
        let up: Vec<&str> = s
            .iter()
            .filter(|(_, d)| d.state == DestState::Up)
            .map(|(_, d)| d.name.as_str())
            .collect();
        assert_eq!(up, ["new", "b"]);
        assert!(s.iter().all(|(id, _)| id != ids[1]), "ids are never reused");
        // The kept destination still needs two successes to come back.
        assert_eq!(s.on_probe_result(ids[0], true, Millis(3)), None);
        assert!(s.on_probe_result(ids[0], true, Millis(4)).is_some());
    }

    #[test]
    fn probe_status_classification() {
        for ok in [200, 202, 302, 401, 404, 486] {
            assert!(probe_status_ok(ok), "{ok}");
        }
        for bad in [100, 408, 500, 503, 504, 603] {
            assert!(!probe_status_ok(bad), "{bad}");
        }
    }
}
