//! The [`CallTracker`]: the policy hooks in, attempts tracked until their final response,
//! admission (503 when a call could not be recorded). Dialogs, timers and recovery are in
//! [`super::dialogs`].

use std::sync::Arc;

use crate::cdr::{record_id, CallRecord, Direction, Disposition, EndReason, UtcMs};
use crate::config::Side;
use crate::proxy::policy::{Policy, Verdict};
use crate::proxy::transaction::{Event, Millis};
use crate::sip::headers::CSeq;
use crate::sip::{Message, Method};
use crate::text_of;

use super::table::{Attempt, Entry, Id, Table};
use super::{Attribute, CdrSink, TrackerConfig, TrackerStats, WallClock};

/// Times every call; see the [module documentation](super). One instance serves every call
/// of the proxy it is installed in.
pub struct CallTracker<P> {
    pub(super) inner: P,
    pub(super) sink: Arc<dyn CdrSink>,
    pub(super) clock: WallClock,
    pub(super) cfg: TrackerConfig,
    pub(super) table: Table,
    pub(super) stats: TrackerStats,
}

/// The identity fields of a message, borrowed from it.
pub(super) struct Ids<'a> {
    pub call_id: &'a [u8],
    pub from_tag: &'a [u8],
    pub to_tag: Option<&'a [u8]>,
    pub cseq: CSeq<'a>,
}

impl<'a> Ids<'a> {
    /// Call-ID, tags and CSeq; `None` when any is unreadable (validation lets no such
    /// request through, and such a response cannot belong to a call we know).
    pub fn of(msg: &'a Message) -> Option<Ids<'a>> {
        Some(Ids {
            call_id: msg.call_id().ok()?,
            from_tag: msg.from_tag_param().ok()?.unwrap_or_default(),
            to_tag: msg.to_tag_param().ok()?,
            cseq: msg.cseq().ok()?,
        })
    }
}

/// The top Via's branch, empty when there is none.
fn branch(msg: &Message) -> &[u8] {
    msg.top_via_branch().ok().flatten().unwrap_or_default()
}

/// True when one of a response's Vias carries `branch`: the one of the request as we
/// received it is on top of a response we built, second in one relayed from downstream
/// (which the policy sees before our Via is popped).
fn has_branch(msg: &Message, branch: &str) -> bool {
    msg.vias().is_ok_and(|vs| {
        vs.iter()
            .any(|v| same(branch, v.branch().unwrap_or_default()))
    })
}

/// [`text_of`], owned: what the tracker stores.
pub(super) fn text(b: &[u8]) -> String {
    text_of(b).into_owned()
}

/// True when a stored field equals a message's bytes (as [`text`] would have stored them).
pub(super) fn same(stored: &str, b: &[u8]) -> bool {
    // Equal bytes answer at once; otherwise compare the text.
    stored.as_bytes() == b || text_of(b) == stored
}

impl<P: Policy + Attribute> CallTracker<P> {
    /// A tracker around `inner`, writing to `sink`, with times mapped through `clock`.
    pub fn new(
        inner: P,
        sink: Arc<dyn CdrSink>,
        clock: WallClock,
        cfg: TrackerConfig,
    ) -> CallTracker<P> {
        CallTracker {
            inner,
            sink,
            clock,
            cfg,
            table: Table::default(),
            stats: TrackerStats::default(),
        }
    }

    /// The wrapped policy.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Counters, with what is held now.
    pub fn stats(&self) -> TrackerStats {
        let mut s = self.stats;
        s.active = self.table.dialogs();
        s.pending = self.table.pending();
        s
    }

    /// Answered calls up now.
    pub fn active(&self) -> usize {
        self.table.dialogs()
    }

    /// The attempt a request or a response to it belongs to.
    pub(super) fn find_attempt(&self, ids: &Ids<'_>) -> Option<Id> {
        self.table.find(ids.call_id, |e| {
            matches!(e, Entry::Attempt(a)
                if a.cseq == ids.cseq.seq && same(&a.from_tag, ids.from_tag))
        })
    }

    fn new_attempt(&mut self, now: Millis, side: Side, msg: &Message, ids: &Ids<'_>) {
        if self.find_attempt(ids).is_some() {
            return; // the same INVITE again on a new branch: one call
        }
        let attempt = Attempt {
            from_tag: text(ids.from_tag),
            cseq: ids.cseq.seq,
            branch: text(branch(msg)),
            side,
            start: now,
            who: self.inner.attribute(side, msg),
            sbc: String::new(),
            answered_tags: Vec::new(),
            refused_full: false,
        };
        let deadline = now + self.cfg.pending_timeout;
        self.table.insert(
            &text(ids.call_id),
            Entry::Attempt(Box::new(attempt)),
            deadline,
        );
    }

    /// 503 when the call could not be recorded; `None` to let the inner policy decide.
    fn admit(&mut self, side: Side, msg: &Message) -> Option<Verdict> {
        let id = Ids::of(msg).and_then(|ids| self.find_attempt(&ids));
        let attempt = id.and_then(|id| match self.table.get(id) {
            Some((_, Entry::Attempt(a))) => Some(a),
            _ => None,
        });
        let emergency = match attempt {
            Some(a) => a.who.emergency,
            None => self.inner.attribute(side, msg).emergency,
        };
        if emergency {
            return None; // never refused for bookkeeping
        }
        let this = usize::from(attempt.is_some_and(|a| !a.answered()));
        let held = (self.table.dialogs() + self.table.pending()).saturating_sub(this);
        if self.sink.is_full() {
            self.stats.refused_full += 1;
            if let Some(Entry::Attempt(a)) = id.and_then(|id| self.table.get_mut(id)) {
                a.refused_full = true;
            }
            tracing::debug!(side = side.as_str(), "new call refused: CDR sink full");
            return Some(reject("CDR Spool Full"));
        }
        if held >= self.cfg.max_calls {
            self.stats.refused_too_many += 1;
            tracing::debug!(side = side.as_str(), "new call refused: too many calls");
            return Some(reject("Too Many Calls"));
        }
        None
    }

    fn on_invite_response(&mut self, now: Millis, id: Id, status: u16, msg: &Message) {
        let Some(Entry::Attempt(a)) = self.table.get(id).map(|(_, e)| e) else {
            return;
        };
        let answered = a.answered();
        match status {
            100..=199 if !answered => {
                self.table.set_deadline(id, now + self.cfg.pending_timeout);
            }
            200..=299 => self.answer(now, id, status, msg),
            // A final response to a merged copy of the INVITE (482, typically) is not this
            // attempt's: it must not close it.
            300.. if !answered && has_branch(msg, &a.branch) => {
                let to_tag = msg.to_tag_param().ok().flatten().unwrap_or_default();
                self.close_attempt(id, now, status, to_tag);
            }
            _ => {}
        }
    }

    /// The record of an attempt as far as it got: everything but the answer and the end.
    pub(super) fn base_record(
        &self,
        call_id: &str,
        a: &Attempt,
        to_tag: &str,
        status: u16,
    ) -> CallRecord {
        let start = self.clock.utc(a.start);
        CallRecord {
            id: record_id(
                call_id.as_bytes(),
                a.from_tag.as_bytes(),
                to_tag.as_bytes(),
                a.cseq,
            ),
            call_id: call_id.to_owned(),
            direction: Direction::from_side(a.side),
            tenant_id: a.who.tenant_id.clone(),
            caller_number: a.who.caller.clone(),
            callee_number: a.who.callee.clone(),
            sip_uri: a.who.sip_uri.clone(),
            start_ms: start,
            answer_ms: None,
            end_ms: start,
            duration_ms: 0,
            disposition: Disposition::Failed,
            final_status: status,
            end_reason: EndReason::Rejected,
            sbc: a.sbc.clone(),
            side: a.side.into(),
        }
    }

    /// Closes an attempt that ended without an answer at `end`.
    pub(super) fn close_attempt(&mut self, id: Id, end: Millis, status: u16, to_tag: &[u8]) {
        let Some((call_id, Entry::Attempt(a))) = self.table.remove(id) else {
            return;
        };
        if a.refused_full {
            return; // refused for a full sink: see the module documentation
        }
        let (disposition, reason) = match status {
            487 => (Disposition::Cancelled, EndReason::Cancelled),
            408 => (Disposition::Failed, EndReason::Timeout),
            _ => (Disposition::Failed, EndReason::Rejected),
        };
        let mut rec = self.base_record(&call_id, &a, &text(to_tag), status);
        rec.disposition = disposition;
        rec.end_reason = reason;
        rec.end_ms = self.clock.utc(end).max(rec.start_ms);
        match disposition {
            Disposition::Cancelled => self.stats.cancelled += 1,
            _ => self.stats.failed += 1,
        }
        self.finish(&rec);
    }

    /// Counts and writes a finished record.
    pub(super) fn finish(&mut self, rec: &CallRecord) {
        self.stats.count_end(rec.end_reason);
        self.sink.close(rec);
    }

    /// UTC of `now`.
    pub(super) fn utc(&self, now: Millis) -> UtcMs {
        self.clock.utc(now)
    }
}

fn reject(reason: &str) -> Verdict {
    Verdict::Reject {
        status: 503,
        reason: reason.to_owned(),
    }
}

impl<P: Policy + Attribute> Policy for CallTracker<P> {
    fn reconfigure(&mut self, cfg: &crate::config::Config) {
        self.cfg =
            crate::calls::TrackerConfig::from_config(&cfg.cdr).with_timer_c(cfg.timers.timer_c.0);
        self.inner.reconfigure(cfg);
    }

    fn report(&self) -> crate::proxy::policy::PolicyReport {
        crate::proxy::policy::PolicyReport {
            calls: Some(self.stats()),
            ..self.inner.report()
        }
    }

    fn check(&mut self, now: Millis, side: Side, msg: &Message) -> Verdict {
        let new_invite =
            msg.method() == Some(Method::Invite) && msg.to_tag_param().is_ok_and(|t| t.is_none());
        if new_invite {
            if let Some(v) = self.admit(side, msg) {
                return v;
            }
        }
        self.inner.check(now, side, msg)
    }

    fn observe(&mut self, event: &Event) {
        self.inner.observe(event);
    }

    fn on_request(&mut self, now: Millis, side: Side, msg: &Message) {
        if let Some(ids) = Ids::of(msg) {
            match (msg.method(), ids.to_tag) {
                (Some(Method::Invite), None) => self.new_attempt(now, side, msg, &ids),
                (Some(Method::Bye), Some(_)) => self.on_bye(now, &ids),
                (Some(Method::Cancel), _) => {}
                (Some(_), Some(_)) => self.seen_alive(&ids),
                _ => {}
            }
        }
        self.inner.on_request(now, side, msg);
    }

    fn on_forward(&mut self, now: Millis, msg: &Message, dest: &str) {
        if let Some(id) = Ids::of(msg).and_then(|ids| self.find_attempt(&ids)) {
            if let Some(Entry::Attempt(a)) = self.table.get_mut(id) {
                dest.clone_into(&mut a.sbc);
                if !a.answered() {
                    self.table.set_deadline(id, now + self.cfg.pending_timeout);
                }
            }
        }
        self.inner.on_forward(now, msg, dest);
    }

    fn on_response(&mut self, now: Millis, side: Side, msg: &Message) {
        if let (Some(status), Some(ids)) = (msg.status(), Ids::of(msg)) {
            let ok = (200..300).contains(&status);
            match ids.cseq.method {
                Method::Invite => match self.find_attempt(&ids) {
                    Some(id) => self.on_invite_response(now, id, status, msg),
                    None if ok => self.refreshed(now, &ids, msg),
                    None => {}
                },
                Method::Update if ok => self.refreshed(now, &ids, msg),
                _ => {}
            }
        }
        self.inner.on_response(now, side, msg);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        [self.table.next_deadline(), self.inner.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Millis) {
        if self.inner.poll_timeout().is_some_and(|at| at <= now) {
            self.inner.handle_timeout(now);
        }
        self.expire(now);
    }
}

#[cfg(test)]
mod text_tests {
    use super::{same, text};

    #[test]
    fn same_answers_as_comparing_the_lossy_texts() {
        let fields: [&[u8]; 7] = [
            b"a84b4c76e66710",
            b"a84b4c76e66711",
            b"",
            b"\xff\xfe",
            "\u{fffd}\u{fffd}".as_bytes(),
            b"caf\xc3\xa9",
            b"caf\xc3",
        ];
        for stored in fields {
            for b in fields {
                let lossy = String::from_utf8_lossy(stored) == String::from_utf8_lossy(b);
                assert_eq!(same(&text(stored), b), lossy, "{stored:?} {b:?}");
            }
        }
    }
}
