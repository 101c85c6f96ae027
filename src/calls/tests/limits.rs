//! Admission (a full sink, `max_calls`, emergency calls) and attribution by the number
//! policy.

use super::{Dlg, H};
use crate::cdr::{Disposition, EndReason};
use crate::config::{Numbers, Side};
use crate::numbers::{NumberTable, Source};
use crate::proxy::numbers_policy::NumberPolicy;
use crate::proxy::policy::{AllowAll, Verdict};

fn refused(v: &Verdict, why: &str) -> bool {
    matches!(v, Verdict::Reject { status: 503, reason } if reason == why)
}

#[test]
fn a_full_sink_refuses_new_calls_but_records_the_calls_up() {
    let mut h = H::new();
    let up = Dlg::new("up");
    h.at(0).start(&up);
    h.at(1_000).answer(&up, "t", &[]);
    h.sink.set_full(true);

    let new = Dlg::new("new");
    let inv = new.invite(&[]);
    h.at(2_000).req(Side::Carrier, &inv);
    let v = h.check(Side::Carrier, &inv);
    assert!(refused(&v, "CDR Spool Full"), "{v:?}");
    // The proxy's 503 for it: no record is spent on a call that was never let in.
    h.resp(Side::Carrier, &new.resp(503, Some("gw"), "1 INVITE", &[]));
    assert!(h.records().is_empty());
    assert_eq!(h.t.stats().pending, 0);

    // The call that is up still ends with its record.
    h.at(5_000).bye(&up, "t");
    let r = h.record();
    assert_eq!((r.call_id.as_str(), r.duration_ms), ("up", 4_000));
    assert_eq!(h.t.stats().refused_full, 1);

    // Room again: new calls are let in.
    h.sink.set_full(false);
    h.at(6_000).start(&Dlg::new("later"));
}

#[test]
fn a_call_answered_while_the_sink_is_full_is_still_closed() {
    let mut h = H::new();
    let d = Dlg::new("racing");
    h.at(0).start(&d);
    h.sink.set_full(true);
    h.at(1_000).answer(&d, "t", &[]);
    assert!(h.sink.opens().is_empty());
    assert_eq!(h.t.stats().open_failed, 1);
    h.at(3_000).bye(&d, "t");
    assert_eq!(h.record().duration_ms, 2_000);
}

#[test]
fn max_calls_bounds_what_is_held() {
    let mut cfg = super::cfg();
    cfg.max_calls = 2;
    let mut h = H::with(AllowAll, cfg);
    let (a, b, c) = (Dlg::new("a"), Dlg::new("b"), Dlg::new("c"));
    h.at(0).start(&a);
    h.answer(&a, "t", &[]);
    h.start(&b); // pending: held
    let inv = c.invite(&[]);
    h.req(Side::Carrier, &inv);
    assert!(refused(&h.check(Side::Carrier, &inv), "Too Many Calls"));
    h.resp(Side::Carrier, &c.resp(503, Some("gw"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!(
        (r.call_id.as_str(), r.disposition),
        ("c", Disposition::Failed)
    );
    assert_eq!(r.final_status, 503);
    assert_eq!(h.t.stats().refused_too_many, 1);
    // b fails: room for one more.
    h.resp(Side::Carrier, &b.resp(486, Some("x"), "1 INVITE", &[]));
    h.start(&Dlg::new("d"));
    let s = h.t.stats();
    assert_eq!((s.active, s.pending, s.failed), (1, 1, 2));
}

const TENANT: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const TEAMS: &str = "+14255550100";
const TEAMS_URI: &str = "sip:alice@contoso.com";

fn number_policy() -> NumberPolicy {
    let table = NumberTable::new();
    let entry = crate::numbers::fixtures::calling(TEAMS, TENANT, TEAMS_URI);
    table.replace_all([&entry], Source::Sync);
    let cfg = Numbers {
        default_country_code: Some("1".into()),
        ..Numbers::default()
    };
    NumberPolicy::new(table, cfg)
}

#[test]
fn the_number_policy_attributes_the_teams_side_number() {
    let mut h = H::with(number_policy(), super::cfg());
    // PSTN → Teams: the called number is the Teams user's.
    let inbound = Dlg {
        caller: "3125550000".into(), // national: completed with the country code
        callee: TEAMS.into(),
        ..Dlg::new("in")
    };
    h.at(0).start(&inbound);
    h.answer(&inbound, "t", &[]).bye(&inbound, "t");
    // Teams → PSTN: the calling number is.
    let outbound = Dlg {
        caller: TEAMS.into(),
        callee: "+13125550000".into(),
        ..Dlg::new("out")
    };
    let inv = outbound.invite(&[]);
    h.req(Side::Microsoft, &inv);
    assert_eq!(h.check(Side::Microsoft, &inv), Verdict::Allow);
    h.resp(
        Side::Microsoft,
        &outbound.resp(480, Some("x"), "1 INVITE", &[]),
    );
    let r = h.records();
    assert_eq!(r.len(), 2);
    for rec in &r {
        assert_eq!(
            (rec.tenant_id.as_str(), rec.sip_uri.as_str()),
            (TENANT, TEAMS_URI)
        );
    }
    assert_eq!(r[0].caller_number, "+13125550000");
    assert_eq!(r[0].callee_number, TEAMS);
    assert_eq!(r[1].caller_number, TEAMS);
    assert_eq!(r[1].end_reason, EndReason::Rejected);
}

#[test]
fn unassigned_numbers_get_no_tenant_and_a_404_record() {
    let mut h = H::with(number_policy(), super::cfg());
    let d = Dlg {
        callee: "+14255550199".into(),
        ..Dlg::new("unassigned")
    };
    let inv = d.invite(&[]);
    h.req(Side::Carrier, &inv);
    assert!(matches!(
        h.check(Side::Carrier, &inv),
        Verdict::Reject { status: 404, .. }
    ));
    h.resp(Side::Carrier, &d.resp(404, Some("gw"), "1 INVITE", &[]));
    let r = h.record();
    assert_eq!((r.tenant_id.as_str(), r.sip_uri.as_str()), ("", ""));
    assert_eq!(
        (r.callee_number.as_str(), r.final_status),
        ("+14255550199", 404)
    );
}

#[test]
fn emergency_calls_are_never_refused_for_bookkeeping() {
    let mut h = H::with(number_policy(), super::cfg());
    h.sink.set_full(true);
    let d = Dlg {
        callee: "911".into(),
        ..Dlg::new("sos")
    };
    let inv = d.invite(&[]);
    h.req(Side::Microsoft, &inv);
    assert_eq!(h.check(Side::Microsoft, &inv), Verdict::Allow);
    let normal = Dlg::new("normal");
    let inv = normal.invite(&[]);
    h.req(Side::Microsoft, &inv);
    assert!(refused(&h.check(Side::Microsoft, &inv), "CDR Spool Full"));
}
