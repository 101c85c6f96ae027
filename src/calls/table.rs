//! The tracker's state: attempts and dialogs by id, an index by Call-ID (lookups borrow the
//! message's bytes, nothing is allocated), and one deadline per entry in a timer heap
//! (`DeadlineHeap`: the entry's own deadline is the truth, outdated heap entries are
//! dropped when they surface) so the next timer is found without scanning a million calls.

use crate::cdr::OpenCall;
use crate::config::Side;
use crate::proxy::numbers_policy::Attribution;
use crate::proxy::transaction::DeadlineHeap;
use crate::proxy::transaction::Millis;

/// An entry's id, never reused.
pub(super) type Id = u64;

/// An out-of-dialog INVITE until its final response (and, once answered, until no more
/// forked 2xx can come).
#[derive(Debug)]
pub(super) struct Attempt {
    pub from_tag: String,
    pub cseq: u32,
    /// The top Via branch of the INVITE: tells its responses from those to a copy of it
    /// that reached us on another branch (a merged request, RFC 3261 §8.2.2.2).
    pub branch: String,
    pub side: Side,
    pub start: Millis,
    pub who: Attribution,
    /// Last destination it was forwarded to.
    pub sbc: String,
    /// The To tags of the 2xx that passed (a dialog each); once there is one, only further
    /// forks are awaited.
    pub answered_tags: Vec<String>,
    /// The tracker refused it for a full sink: its reject gets no record.
    pub refused_full: bool,
}

impl Attempt {
    /// A 2xx passed.
    pub fn answered(&self) -> bool {
        !self.answered_tags.is_empty()
    }
}

/// RFC 4028 session timer state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    /// The negotiated interval, never below RFC 4028's 90 s.
    pub interval_s: u32,
    /// When the last 2xx to the INVITE or a refresh passed (or the restart, when recovered).
    pub refreshed: Millis,
}

impl Session {
    pub fn expires(&self) -> Millis {
        Millis(
            self.refreshed
                .0
                .saturating_add(u64::from(self.interval_s) * 1000),
        )
    }
}

/// An answered dialog that is up.
#[derive(Debug)]
pub(super) struct Dialog {
    /// The journal entry: the record as of the answer, the tags, the first interval.
    pub open: OpenCall,
    /// The INVITE's CSeq (unknown for a recovered call): a 2xx with it is a retransmission,
    /// never a refresh.
    pub invite_cseq: Option<u32>,
    pub acked: bool,
    /// When an unacknowledged 2xx ends the call.
    pub no_ack_at: Millis,
    pub session: Option<Session>,
    /// The last refresh whose 2xx reset the timer: (sent by the caller, CSeq).
    pub last_refresh: Option<(bool, u32)>,
    /// Answer + maximum duration.
    pub max_at: Millis,
    /// Re-inserted from the journal and not seen alive since.
    pub recovered: bool,
}

/// What the tracker holds.
#[derive(Debug)]
pub(super) enum Entry {
    Attempt(Box<Attempt>),
    Dialog(Box<Dialog>),
}

/// Whether `at` is still the deadline of entry `id`, for the timer heap.
fn deadline_of(
    entries: &crate::FastMap<Id, (String, Millis, Entry)>,
) -> impl Fn(Millis, Id) -> bool + '_ {
    |at, id| entries.get(&id).is_some_and(|(_, d, _)| *d == at)
}

/// Entries, their index by Call-ID and their deadlines.
#[derive(Debug, Default)]
pub(super) struct Table {
    next: Id,
    entries: crate::FastMap<Id, (String, Millis, Entry)>,
    by_call: crate::FastMap<String, Vec<Id>>,
    timers: DeadlineHeap<Id>,
    dialogs: usize,
    pending: usize,
}

impl Table {
    /// Adds an entry of `call_id` due at `deadline`.
    pub fn insert(&mut self, call_id: &str, entry: Entry, deadline: Millis) -> Id {
        self.next += 1;
        let id = self.next;
        self.count(&entry, true);
        self.by_call.entry(call_id.to_owned()).or_default().push(id);
        self.timers.push(deadline, id);
        self.entries
            .insert(id, (call_id.to_owned(), deadline, entry));
        id
    }

    /// Removes an entry, its index slot and its timer.
    pub fn remove(&mut self, id: Id) -> Option<(String, Entry)> {
        let (call_id, deadline, entry) = self.entries.remove(&id)?;
        self.count(&entry, false);
        self.timers.outdate(deadline, id);
        if let Some(ids) = self.by_call.get_mut(&call_id) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_call.remove(&call_id);
            }
        }
        Some((call_id, entry))
    }

    fn count(&mut self, entry: &Entry, add: bool) {
        let n = match entry {
            Entry::Dialog(_) => &mut self.dialogs,
            Entry::Attempt(a) if !a.answered() => &mut self.pending,
            Entry::Attempt(_) => return,
        };
        *n = if add {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
    }

    /// Records a dialog of an attempt (it no longer counts as pending).
    pub fn set_answered(&mut self, id: Id, to_tag: String) {
        if let Some((_, _, Entry::Attempt(a))) = self.entries.get_mut(&id) {
            if !a.answered() {
                self.pending = self.pending.saturating_sub(1);
            }
            a.answered_tags.push(to_tag);
        }
    }

    /// Moves an entry's deadline.
    pub fn set_deadline(&mut self, id: Id, at: Millis) {
        if let Some((_, deadline, _)) = self.entries.get_mut(&id) {
            if *deadline != at {
                self.timers.outdate(*deadline, id);
                *deadline = at;
                self.timers.push(at, id);
            }
        }
    }

    /// The first entry of `call_id` that `pred` accepts.
    pub fn find(&self, call_id: &[u8], pred: impl Fn(&Entry) -> bool) -> Option<Id> {
        // As stored: the text of the Call-ID.
        let call_id = crate::text_of(call_id);
        self.by_call
            .get(call_id.as_ref())?
            .iter()
            .copied()
            .find(|id| self.entries.get(id).is_some_and(|(_, _, e)| pred(e)))
    }

    /// The entry with its Call-ID.
    pub fn get(&self, id: Id) -> Option<(&str, &Entry)> {
        self.entries.get(&id).map(|(c, _, e)| (c.as_str(), e))
    }

    /// The entry, mutably.
    pub fn get_mut(&mut self, id: Id) -> Option<&mut Entry> {
        self.entries.get_mut(&id).map(|(_, _, e)| e)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers
            .first(deadline_of(&self.entries))
            .map(|(at, _)| at)
    }

    /// An entry due at `now`, with its deadline. The timer stays armed: the caller removes
    /// the entry or moves its deadline.
    pub fn due(&mut self, now: Millis) -> Option<(Millis, Id)> {
        let valid = deadline_of(&self.entries);
        self.timers.compact(self.entries.len(), &valid);
        self.timers.first(valid).filter(|&(at, _)| at <= now)
    }

    /// Answered dialogs held.
    pub fn dialogs(&self) -> usize {
        self.dialogs
    }

    /// Attempts without a final response held.
    pub fn pending(&self) -> usize {
        self.pending
    }
}
