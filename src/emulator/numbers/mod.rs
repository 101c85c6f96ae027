//! The emulator's numbers table, the change log behind deltas, and page building. No I/O:
//! callers pass the time and hold the lock.
//!
//! - `rows`: a `BTreeMap` by number, so a page is a range scan from the last number of the
//!   previous page (`O(log n + top)`), never a copy of the table. Rows are compact (small
//!   strings interned, the usual `sip:{number}@{host};user=phone` URI stored as its host),
//!   about 130 bytes a number.
//! - `log`: the *latest* change of every changed number, keyed by a sequence number. A change
//!   moves the number's entry to the new sequence, so "changes since T" is the range
//!   `(T, now]` with each number once, in its current state. Seeded rows are sequence 0 and
//!   not logged.
//! - Retention: the log holds at most `max_changes` entries; dropping the oldest raises
//!   `floor`, and a delta token below `floor` is gone (410), as is a token older than the
//!   delta-token lifetime or from another epoch (the epoch starts random, so tokens of an
//!   earlier emulator process are refused, and moves on "expire all delta tokens").
//!
//! Tokens are opaque to clients; here they are `.`-separated decimal fields:
//! delta token `epoch.seq.issued`, listing skip token `f.start.top.after-digits`, delta skip
//! token `d.epoch.after.upto.top.issued` (times in Unix seconds).
//!
//! `pages` builds the listing and delta pages, `churn` makes random changes.

mod churn;
mod pages;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use super::seed::NumberSpec;
use crate::sip::number::E164;

/// Why a page cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PageError {
    /// The delta position is no longer (or never was) known: full resync (410).
    Gone(&'static str),
    /// The token is malformed (400).
    BadToken,
}

/// What a page held, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) entries: usize,
    pub(crate) last: bool,
}

/// A stored number.
struct Row {
    tenant: u32,
    usage: u32,
    status: u32,
    caps: u32,
    uri: Uri,
    modified_ms: u64,
    seq: u64,
}

/// A SIP URI, compact in the common case.
enum Uri {
    /// `sip:{number}@{host};user=phone`, host interned.
    Standard(u32),
    Other(Box<str>),
}

/// Small strings stored once (tenants, usages, statuses, hosts, capability sets).
#[derive(Default)]
struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |s| s)
    }
}

/// The numbers table and its change log.
pub(crate) struct Table {
    rows: BTreeMap<E164, Row>,
    log: BTreeMap<u64, E164>,
    /// Removed numbers whose removal is still in the log, with its sequence.
    removed: HashMap<E164, u64>,
    seq: u64,
    floor: u64,
    epoch: u64,
    max_changes: usize,
    /// Largest page, whatever a token says.
    max_page: usize,
    strings: Interner,
    /// Capability sets, interned as `,`-joined text; `caps[i]` is the list.
    caps_index: Interner,
    caps: Vec<Vec<String>>,
}

impl Table {
    /// An empty table keeping at most `max_changes` (at least 1) log entries and serving
    /// pages of at most `max_page` entries.
    pub(crate) fn new(max_changes: usize, max_page: usize, epoch: u64) -> Table {
        Table {
            rows: BTreeMap::new(),
            log: BTreeMap::new(),
            removed: HashMap::new(),
            seq: 0,
            floor: 0,
            epoch,
            max_changes: max_changes.max(1),
            max_page: max_page.max(1),
            strings: Interner::default(),
            caps_index: Interner::default(),
            caps: Vec::new(),
        }
    }

    /// Loads the initial rows (sequence 0, not logged).
    pub(crate) fn seed(&mut self, specs: &[NumberSpec], now: SystemTime) {
        for spec in specs {
            let row = self.row(spec, unix_ms(now), 0);
            self.rows.insert(spec.number, row);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Adds or replaces a number; true when it was new.
    pub(crate) fn upsert(&mut self, spec: &NumberSpec, now: SystemTime) -> bool {
        let previous = match self.rows.get(&spec.number) {
            Some(row) => Some(row.seq),
            None => self.removed.remove(&spec.number),
        };
        let added = !self.rows.contains_key(&spec.number);
        let seq = self.record(spec.number, previous);
        let row = self.row(spec, unix_ms(now), seq);
        self.rows.insert(spec.number, row);
        added
    }

    /// Removes a number; false when it was not there.
    pub(crate) fn remove(&mut self, number: E164) -> bool {
        let Some(row) = self.rows.remove(&number) else {
            return false;
        };
        let seq = self.record(number, Some(row.seq));
        self.removed.insert(number, seq);
        true
    }

    /// Makes every delta token issued so far gone.
    pub(crate) fn expire_delta_tokens(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    fn record(&mut self, number: E164, previous: Option<u64>) -> u64 {
        if let Some(p) = previous {
            self.log.remove(&p);
        }
        self.seq = self.seq.saturating_add(1);
        self.log.insert(self.seq, number);
        while self.log.len() > self.max_changes {
            let Some((s, n)) = self.log.pop_first() else {
                break;
            };
            self.floor = self.floor.max(s);
            if self.removed.get(&n) == Some(&s) {
                self.removed.remove(&n);
            }
        }
        self.seq
    }

    fn row(&mut self, spec: &NumberSpec, modified_ms: u64, seq: u64) -> Row {
        let host = spec
            .sip_uri
            .strip_prefix("sip:")
            .and_then(|r| r.strip_prefix(spec.number.as_str()))
            .and_then(|r| r.strip_prefix('@'))
            .and_then(|r| r.strip_suffix(";user=phone"))
            .filter(|h| !h.contains([';', '@', '?']));
        let uri = match host {
            Some(h) => Uri::Standard(self.strings.intern(h)),
            None => Uri::Other(spec.sip_uri.as_str().into()),
        };
        let joined = spec.capabilities.join(",");
        let caps = self.caps_index.intern(&joined);
        if caps as usize == self.caps.len() {
            self.caps.push(spec.capabilities.clone());
        }
        Row {
            tenant: self.strings.intern(&spec.tenant_id),
            usage: self.strings.intern(&spec.usage),
            status: self.strings.intern(&spec.assignment_status),
            caps,
            uri,
            modified_ms,
            seq,
        }
    }

    /// The stored spec of a number.
    fn spec(&self, number: E164, row: &Row) -> NumberSpec {
        NumberSpec {
            number,
            tenant_id: self.strings.get(row.tenant).to_owned(),
            sip_uri: self.sip_uri(number, row).into_owned(),
            usage: self.strings.get(row.usage).to_owned(),
            assignment_status: self.strings.get(row.status).to_owned(),
            capabilities: self
                .caps
                .get(row.caps as usize)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The number's SIP URI, rebuilt when stored compactly.
    fn sip_uri<'a>(&'a self, number: E164, row: &'a Row) -> Cow<'a, str> {
        match &row.uri {
            Uri::Standard(h) => {
                Cow::Owned(format!("sip:{number}@{};user=phone", self.strings.get(*h)))
            }
            Uri::Other(s) => Cow::Borrowed(s),
        }
    }
}

/// Where a delta read starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeltaPosition<'a> {
    /// `$deltatoken`: the first page of changes.
    Token(&'a str),
    /// `$skiptoken`: a later page.
    Skip(&'a str),
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
