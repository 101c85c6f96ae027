//! Calls that never got answered: cancelled, rejected downstream or by the proxy, timed
//! out; and INVITEs that never got any final response.

use super::{Dlg, EPOCH, H};
use crate::cdr::{record_id, Disposition, EndReason};
use crate::config::Side;
use crate::proxy::policy::{AllowAll, Policy, Verdict};
use crate::proxy::transaction::Millis;
use crate::sip::Message;

#[test]
fn cancel_gives_a_cancelled_record() {
    let mut h = H::new();
    let d = Dlg::new("cx");
    h.at(10).start(&d);
    h.at(300)
        .resp(Side::Carrier, &d.resp(180, Some("t"), "1 INVITE", &[]));
    // The CANCEL itself is not shown to the policy; its effect is the INVITE's 487.
    h.at(4_000)
        .resp(Side::Carrier, &d.resp(487, Some("t"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!(r.disposition, Disposition::Cancelled);
    assert_eq!((r.end_reason, r.final_status), (EndReason::Cancelled, 487));
    assert_eq!((r.start_ms, r.end_ms), (EPOCH + 10, EPOCH + 4_000));
    assert_eq!((r.answer_ms, r.duration_ms), (None, 0));
    assert_eq!(r.id, record_id(b"cx", b"cx-ft", b"t", 1));
    let s = h.t.stats();
    assert_eq!((s.cancelled, s.failed, s.pending), (1, 0, 0));
}

#[test]
fn busy_gives_a_failed_record_with_the_status() {
    let mut h = H::new();
    let d = Dlg::new("busy");
    h.at(0).start(&d);
    h.at(800)
        .resp(Side::Carrier, &d.resp(486, Some("b"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!(r.disposition, Disposition::Failed);
    assert_eq!((r.end_reason, r.final_status), (EndReason::Rejected, 486));
    assert_eq!((r.end_ms, r.sbc.as_str()), (EPOCH + 800, "sbc1"));
    assert_eq!(h.t.stats().failed, 1);
    // A late 2xx for an attempt already failed opens nothing.
    h.answer(&d, "b", &[]);
    assert!(h.sink.opens().is_empty());
    assert_eq!(h.t.active(), 0);
}

/// An inner policy refusing every INVITE with 404, as the number policy does for an
/// unassigned number.
struct Refuse404;

impl Policy for Refuse404 {
    fn check(&mut self, _: Millis, _: Side, _: &Message) -> Verdict {
        Verdict::Reject {
            status: 404,
            reason: "Number Not Assigned".into(),
        }
    }
}

impl super::super::Attribute for Refuse404 {
    fn attribute(&self, side: Side, msg: &Message) -> super::super::Attribution {
        super::super::Attribute::attribute(&AllowAll, side, msg)
    }
}

#[test]
fn a_reject_by_the_inner_policy_still_gets_a_record() {
    let mut h = H::with(Refuse404, super::cfg());
    let d = Dlg::new("nf");
    let inv = d.invite(&[]);
    h.at(5).req(Side::Carrier, &inv);
    let v = h.check(Side::Carrier, &inv);
    assert!(matches!(v, Verdict::Reject { status: 404, .. }), "{v:?}");
    // The proxy's reject carries its own To tag.
    h.resp(Side::Carrier, &d.resp(404, Some("gw-tag"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!((r.disposition, r.final_status), (Disposition::Failed, 404));
    assert_eq!(r.id, record_id(b"nf", b"nf-ft", b"gw-tag", 1));
    assert_eq!(r.sbc, "", "never forwarded");
    assert_eq!((r.start_ms, r.end_ms), (EPOCH + 5, EPOCH + 5));
}

#[test]
fn a_reject_without_to_tag_gets_an_empty_one() {
    let mut h = H::new();
    let d = Dlg::new("nt");
    h.start(&d);
    h.resp(Side::Carrier, &d.resp(500, None, "1 INVITE", &[]));
    assert_eq!(h.record().id, record_id(b"nt", b"nt-ft", b"", 1));
}

#[test]
fn timeout_408_ends_as_timeout() {
    let mut h = H::new();
    let d = Dlg::new("to");
    h.at(0).start(&d);
    // Timer C fired in the proxy: its own 408.
    h.at(181_000)
        .resp(Side::Carrier, &d.resp(408, Some("gw"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!(
        (r.disposition, r.end_reason),
        (Disposition::Failed, EndReason::Timeout)
    );
    assert_eq!((r.final_status, r.end_ms), (408, EPOCH + 181_000));
}

#[test]
fn an_invite_without_any_final_response_is_closed_after_the_pending_timeout() {
    let mut h = H::new();
    let d = Dlg::new("lost");
    h.at(0).start(&d);
    // Each provisional response keeps it alive, as it restarts Timer C in the proxy.
    h.at(100_000)
        .resp(Side::Carrier, &d.resp(183, Some("t"), "1 INVITE", &[]));
    let pending = super::cfg().pending_timeout.as_millis() as u64;
    h.at(100_000 + pending - 1);
    assert!(h.records().is_empty());
    assert_eq!(h.t.stats().pending, 1);
    h.at(100_000 + pending);
    let r = h.record();
    assert_eq!((r.end_reason, r.final_status), (EndReason::Timeout, 408));
    assert_eq!(r.end_ms, EPOCH + 100_000 + pending);
    assert_eq!(h.t.stats().pending, 0);
    assert_eq!(h.t.poll_timeout(), None, "nothing left behind");
}

#[test]
fn an_answered_attempt_lingers_only_for_forks() {
    let mut h = H::new();
    let d = Dlg::new("linger");
    h.at(0).start(&d);
    h.at(1_000).answer(&d, "a", &[]);
    h.at(33_001);
    // A 2xx of another fork after 64·T1 is no longer taken as a new dialog.
    h.answer(&d, "late", &[]);
    assert_eq!(h.t.active(), 1);
    assert_eq!(h.t.stats().pending, 0);
}

#[test]
fn a_reject_of_a_merged_copy_does_not_close_the_call() {
    let mut h = H::new();
    let d = Dlg::new("merged");
    h.at(0).start(&d);
    // The same INVITE on another branch (upstream forking) gets 482 from the callee.
    let copy = d.resp(482, Some("u"), "1 INVITE", &[]);
    let text = String::from_utf8_lossy(copy.as_bytes())
        .replace("branch=z9hG4bKmerged-inv", "branch=z9hG4bKother");
    h.at(100).resp(Side::Carrier, &super::parse(&text));
    assert!(h.records().is_empty());
    h.at(1_000).answer(&d, "t", &[]).at(3_000).bye(&d, "t");
    let r = h.record();
    assert_eq!(
        (r.disposition, r.duration_ms),
        (Disposition::Answered, 2_000)
    );
}
