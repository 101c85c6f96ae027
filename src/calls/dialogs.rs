//! Answered dialogs: the answer (journaled), ACK, refreshes, BYE, the timers that end a
//! call (no ACK, session timer, maximum duration) and recovery from the journal.

use crate::cdr::{Disposition, EndReason, OpenCall};
use crate::proxy::policy::Policy;
use crate::proxy::transaction::Millis;
use crate::sip::{Message, Method};

use super::table::{Dialog, Entry, Id, Session};
use super::tracker::{same, text, Ids};
use super::{Attribute, CallTracker};

/// RFC 4028 §4: no session interval is below 90 s.
const MIN_SESSION_S: u32 = 90;

/// What ends a dialog next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NoAck,
    Session,
    Max,
}

impl Dialog {
    /// The earliest of the dialog's ends (ties: no ACK, then session, then maximum).
    fn next_end(&self) -> (Millis, Why) {
        let no_ack = (!self.acked).then_some((self.no_ack_at, Why::NoAck));
        let session = self.session.map(|s| (s.expires(), Why::Session));
        [no_ack, session, Some((self.max_at, Why::Max))]
            .into_iter()
            .flatten()
            .min_by_key(|&(at, _)| at)
            .unwrap_or((self.max_at, Why::Max))
    }
}

/// The session timer a 2xx sets up, from `now`; `None` when it carries no Session-Expires.
fn session_of(msg: &Message, now: Millis) -> Option<Session> {
    let se = msg.session_expires().ok().flatten()?;
    Some(Session {
        interval_s: se.seconds.max(MIN_SESSION_S),
        refreshed: now,
    })
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<P: Policy + Attribute> CallTracker<P> {
    /// The dialog a request or response belongs to, and whether its tags are in the
    /// caller's order (From = the INVITE's From) rather than the callee's.
    fn find_dialog(&self, ids: &Ids<'_>) -> Option<(Id, bool)> {
        let to_tag = ids.to_tag?;
        if let Some(id) = self.dialog_by_tags(ids.call_id, ids.from_tag, to_tag) {
            return Some((id, true));
        }
        let id = self.dialog_by_tags(ids.call_id, to_tag, ids.from_tag)?;
        Some((id, false))
    }

    /// The dialog of `call_id` whose INVITE From tag and answer To tag are these.
    fn dialog_by_tags(&self, call_id: &[u8], from_tag: &[u8], to_tag: &[u8]) -> Option<Id> {
        self.table.find(call_id, |e| {
            matches!(e, Entry::Dialog(d)
                if same(&d.open.from_tag, from_tag) && same(&d.open.to_tag, to_tag))
        })
    }

    fn dialog_mut(&mut self, id: Id) -> Option<&mut Dialog> {
        match self.table.get_mut(id) {
            Some(Entry::Dialog(d)) => Some(d),
            _ => None,
        }
    }

    /// Moves the dialog's timer to its next end.
    fn reschedule(&mut self, id: Id) {
        if let Some(Entry::Dialog(d)) = self.table.get(id).map(|(_, e)| e) {
            let (at, _) = d.next_end();
            self.table.set_deadline(id, at);
        }
    }

    /// A 2xx of attempt `id`: a new dialog per To tag, journaled; repeats are ignored.
    pub(super) fn answer(&mut self, now: Millis, id: Id, status: u16, msg: &Message) {
        let to_tag = msg.to_tag_param().ok().flatten().unwrap_or_default();
        let to_tag = text(to_tag);
        let Some((call_id, Entry::Attempt(a))) = self.table.get(id) else {
            return;
        };
        if a.answered_tags.contains(&to_tag) {
            // A retransmitted 2xx, or one more copy from a forking proxy, even after the
            // dialog ended.
            return;
        }
        let mut record = self.base_record(call_id, a, &to_tag, status);
        let answer = self.utc(now);
        record.answer_ms = Some(answer);
        record.end_ms = answer;
        record.disposition = Disposition::Answered;
        // What the journal entry says if nothing ever closes it.
        record.end_reason = EndReason::Recovered;
        let session = session_of(msg, now);
        let dialog = Dialog {
            open: OpenCall {
                record,
                from_tag: a.from_tag.clone(),
                to_tag,
                session_expires_s: session.map(|s| s.interval_s),
            },
            invite_cseq: Some(a.cseq),
            acked: false,
            no_ack_at: now + self.cfg.no_ack_timeout,
            session,
            last_refresh: None,
            max_at: now + self.cfg.max_call_duration,
            recovered: false,
        };
        let call_id = call_id.to_owned();
        self.table.set_answered(id, dialog.open.to_tag.clone());
        self.table.set_deadline(id, now + self.cfg.no_ack_timeout);
        if self.sink.open(&dialog.open).is_err() {
            self.stats.open_failed += 1;
            tracing::warn!("answered call not journaled: CDR sink full");
        }
        self.stats.answered += 1;
        let (at, _) = dialog.next_end();
        self.table
            .insert(&call_id, Entry::Dialog(Box::new(dialog)), at);
    }

    /// A 2xx to an in-dialog INVITE or UPDATE: the session is refreshed (RFC 4028 §10),
    /// with the interval this 2xx negotiated, or none when it carries no Session-Expires.
    /// A changed interval is journaled again (a new `Open` of the same call replaces the
    /// last), so a call recovered after a restart keeps the interval last negotiated.
    pub(super) fn refreshed(&mut self, now: Millis, ids: &Ids<'_>, msg: &Message) {
        let Some((id, by_caller)) = self.find_dialog(ids) else {
            return;
        };
        let seq = ids.cseq.seq;
        let is_invite = ids.cseq.method == Method::Invite;
        let Some(Entry::Dialog(d)) = self.table.get_mut(id) else {
            return;
        };
        if by_caller && is_invite && d.invite_cseq == Some(seq) {
            return; // the answer again, not a refresh
        }
        if d.last_refresh == Some((by_caller, seq)) {
            return; // a retransmitted 2xx of the refresh already counted
        }
        d.last_refresh = Some((by_caller, seq));
        d.recovered = false;
        d.session = session_of(msg, now);
        let interval = d.session.map(|s| s.interval_s);
        if interval != d.open.session_expires_s {
            d.open.session_expires_s = interval;
            if self.sink.open(&d.open).is_err() {
                // The call goes on, timed in memory; a restart would give it the journaled
                // interval.
                self.stats.open_failed += 1;
            }
        }
        self.reschedule(id);
    }

    /// Any in-dialog request but BYE: one from the caller acknowledges the answer; any
    /// shows a recovered call alive.
    pub(super) fn seen_alive(&mut self, ids: &Ids<'_>) {
        let Some((id, by_caller)) = self.find_dialog(ids) else {
            return;
        };
        if let Some(d) = self.dialog_mut(id) {
            d.acked |= by_caller;
            d.recovered = false;
        }
        self.reschedule(id);
    }

    /// A BYE ends its dialog when it arrives; one for a dialog already ended is ignored.
    pub(super) fn on_bye(&mut self, now: Millis, ids: &Ids<'_>) {
        if let Some((id, by_caller)) = self.find_dialog(ids) {
            let reason = if by_caller {
                EndReason::CallerBye
            } else {
                EndReason::CalleeBye
            };
            self.close_dialog(id, self.utc(now), reason);
        }
    }

    /// Closes a dialog ending at `end` (UTC).
    fn close_dialog(&mut self, id: Id, end: u64, reason: EndReason) {
        let Some((_, Entry::Dialog(d))) = self.table.remove(id) else {
            return;
        };
        let mut rec = d.open.record;
        let answer = rec.answer_ms.unwrap_or(rec.start_ms);
        rec.end_ms = end.max(answer);
        rec.duration_ms = rec.end_ms.saturating_sub(answer);
        rec.end_reason = reason;
        self.finish(&rec);
    }

    /// Runs every deadline due at `now`, each ending at its own time.
    pub(super) fn expire(&mut self, now: Millis) {
        while let Some((at, id)) = self.table.due(now) {
            match self.table.get(id).map(|(_, e)| e) {
                Some(Entry::Attempt(a)) if a.answered() => {
                    self.table.remove(id); // no more forks can come
                }
                Some(Entry::Attempt(_)) => self.close_attempt(id, at, 408, b""),
                Some(Entry::Dialog(d)) => {
                    let (_, why) = d.next_end();
                    let answer = d.open.record.answer_ms.unwrap_or(d.open.record.start_ms);
                    let (end, reason) = match why {
                        // Never confirmed: nothing billable.
                        Why::NoAck => (answer, EndReason::NoAck),
                        Why::Session => (self.utc(at), EndReason::SessionTimer),
                        Why::Max => (
                            answer.saturating_add(ms(self.cfg.max_call_duration)),
                            EndReason::MaxDuration,
                        ),
                    };
                    let reason = if d.recovered {
                        EndReason::Recovered
                    } else {
                        reason
                    };
                    self.close_dialog(id, end, reason);
                }
                // Never: `due` reports only entries the table holds.
                None => {}
            }
        }
    }

    /// Re-inserts the calls journaled before a restart (see the module documentation). A
    /// call already held is skipped; one whose maximum duration is past ends at once.
    pub fn recover(&mut self, now: Millis, calls: Vec<OpenCall>) {
        let max = ms(self.cfg.max_call_duration);
        for open in calls {
            let r = &open.record;
            let (from, to) = (open.from_tag.as_bytes(), open.to_tag.as_bytes());
            if self
                .dialog_by_tags(r.call_id.as_bytes(), from, to)
                .is_some()
            {
                continue;
            }
            self.stats.recovered += 1;
            let answer = r.answer_ms.unwrap_or(r.start_ms);
            let max_end = answer.saturating_add(max);
            if max_end <= self.utc(now) {
                let mut rec = open.record;
                rec.end_ms = max_end;
                rec.duration_ms = max_end.saturating_sub(answer);
                rec.end_reason = EndReason::Recovered;
                self.finish(&rec);
                continue;
            }
            let session = open.session_expires_s.map(|s| Session {
                interval_s: s.max(MIN_SESSION_S),
                refreshed: now,
            });
            let call_id = r.call_id.clone();
            let dialog = Dialog {
                open,
                invite_cseq: None,
                acked: true,
                no_ack_at: now,
                session,
                last_refresh: None,
                max_at: self.clock.millis(max_end),
                recovered: true,
            };
            let (at, _) = dialog.next_end();
            self.table
                .insert(&call_id, Entry::Dialog(Box::new(dialog)), at);
        }
    }
}
