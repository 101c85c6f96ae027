//! The number policy (issue 4): every new call is checked against the synced table of
//! assigned numbers.
//!
//! - carrier → Microsoft (a PSTN caller calls a Teams user): the called number (Request-URI
//!   user or tel URI, To as fallback), normalised to E.164 with the configured default
//!   country code, must be assigned, else `unassigned_status` (404). The Request-URI is
//!   rewritten to the number's assigned SIP URI when configured.
//! - Microsoft → carrier (a Teams user calls out): the calling number (P-Asserted-Identity,
//!   else From) must be assigned, else `forbidden_status` (403); when `X-MS-TenantID` is
//!   present it must equal the number's tenant, else `forbidden_status`.
//! - Emergency numbers are always let through and counted apart, whatever the table says,
//!   even when no table is loaded.
//! - With no table loaded (no snapshot, API not reached yet) new calls get 503: the gateway
//!   is not ready.
//!
//! Only INVITEs are checked; in-dialog requests never reach a policy. Lookups read the
//! lock-free table and never wait for a sync.

use crate::config::{Numbers, Side};
use crate::numbers::NumberTable;
use crate::proxy::policy::{Policy, Verdict};
use crate::proxy::transaction::{Event, Millis};
use crate::sip::headers::NameAddr;
use crate::sip::number::{e164_from_uri, E164};
use crate::sip::uri::Uri;
use crate::sip::{HeaderName, Message, Method};

/// Every decision, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Calls let through because their number is assigned (and the tenant matches).
    pub allowed: u64,
    /// Calls to an emergency number, always let through.
    pub emergency: u64,
    /// Calls to a number that is not assigned (or not a number).
    pub unassigned_called: u64,
    /// Calls from a number that is not assigned (or not a number).
    pub unassigned_caller: u64,
    /// Calls whose `X-MS-TenantID` differs from the caller number's tenant.
    pub tenant_mismatch: u64,
    /// Calls refused because no table is loaded yet.
    pub not_ready: u64,
    /// Calls the table would refuse, let through because enforcement is off (`allowed`
    /// counts the ones it accepts either way).
    pub unenforced: u64,
}

/// The policy; one per proxy shard, sharing the table.
pub struct NumberPolicy {
    table: NumberTable,
    cfg: Numbers,
    stats: PolicyStats,
}

/// Why the table refuses a call.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnassignedCalled,
    UnassignedCaller,
    TenantMismatch,
    NotReady,
}

/// What the table says of a new call: the verdict when it accepts it, else why not, with
/// the status and reason phrase of the refusal.
type Decided = Result<Verdict, (Refusal, u16, &'static str)>;

impl NumberPolicy {
    /// A policy over `table` with the `[numbers]` settings.
    pub fn new(table: NumberTable, cfg: Numbers) -> NumberPolicy {
        NumberPolicy {
            table,
            cfg,
            stats: PolicyStats::default(),
        }
    }

    /// Decisions so far.
    pub fn stats(&self) -> PolicyStats {
        self.stats
    }

    fn number(&self, uri: &Uri<'_>) -> Option<E164> {
        e164_from_uri(uri, self.cfg.default_country_code.as_deref()).ok()
    }

    /// True when the URI's user part (or tel number) dials an emergency number: its digits
    /// equal a configured emergency number, with or without the default country code, or,
    /// written in global form (`+`), after any country code (one to three digits: `+1911`,
    /// `+44999`). Matching more than strictly needed only ever lets a call through, which
    /// is the safe side for emergency calls.
    fn is_emergency(&self, uri: &Uri<'_>) -> bool {
        let Some(user) = uri.user else {
            return false;
        };
        let cc = self.cfg.default_country_code.as_deref().unwrap_or("");
        dials_emergency(user, &self.cfg.emergency, cc)
    }

    fn reject(&self, status: u16, reason: &str) -> Verdict {
        Verdict::Reject {
            status,
            reason: reason.to_owned(),
        }
    }

    /// carrier → Microsoft: the called number must be assigned.
    fn inbound(&self, called: Option<E164>) -> Decided {
        let refused = |reason| {
            Err((
                Refusal::UnassignedCalled,
                self.cfg.unassigned_status,
                reason,
            ))
        };
        let Some(called) = called else {
            return refused("Not A Number");
        };
        match self.table.lookup(&called) {
            None => refused("Number Not Assigned"),
            Some(a) => {
                let uri = a.sip_uri();
                if self.cfg.rewrite_request_uri
                    && !uri.is_empty()
                    && Uri::parse(uri.as_bytes()).is_ok()
                {
                    Ok(Verdict::AllowRewrite { request_uri: uri })
                } else {
                    Ok(Verdict::Allow)
                }
            }
        }
    }

    /// Microsoft → carrier: the calling number must be assigned, in the caller's tenant.
    fn outbound(&self, msg: &Message) -> Decided {
        let forbidden = self.cfg.forbidden_status;
        let unassigned = (
            Refusal::UnassignedCaller,
            forbidden,
            "Calling Number Not Assigned",
        );
        let caller = calling_uri_number(msg, self).ok_or(unassigned)?;
        let a = self.table.lookup(&caller).ok_or(unassigned)?;
        if self.cfg.check_tenant {
            if let Some(tenant) = msg.header_by_name("X-MS-TenantID").next() {
                let tenant = crate::sip::lex::trim(tenant);
                if !tenant.eq_ignore_ascii_case(a.tenant().as_bytes()) {
                    return Err((Refusal::TenantMismatch, forbidden, "Tenant Mismatch"));
                }
            }
        }
        Ok(Verdict::Allow)
    }
}

/// The calling number: the first P-Asserted-Identity that yields one, else From.
fn calling_uri_number(msg: &Message, p: &NumberPolicy) -> Option<E164> {
    calling_number(msg, p.cfg.default_country_code.as_deref())
}

/// The calling number of a request as the number policy reads it: the first
/// P-Asserted-Identity that yields an E.164 number, else From, national numbers completed
/// with `default_cc`.
pub fn calling_number(msg: &Message, default_cc: Option<&str>) -> Option<E164> {
    let number = |uri: &Uri<'_>| e164_from_uri(uri, default_cc).ok();
    let pai = msg.p_asserted_identity().unwrap_or_default();
    pai.iter()
        .find_map(|na: &NameAddr<'_>| number(&na.uri))
        .or_else(|| msg.from_hdr().ok().and_then(|f| number(&f.uri)))
}

/// The called number of a request as the number policy reads it: the Request-URI's (the
/// To's when the Request-URI has no user part), national numbers completed with
/// `default_cc`.
pub fn called_number(msg: &Message, default_cc: Option<&str>) -> Option<E164> {
    called_uri(msg).and_then(|u| e164_from_uri(&u, default_cc).ok())
}

/// Who called whom, for a call record (see [`NumberPolicy::attribute`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Calling number, E.164, empty when the request carries none.
    pub caller: String,
    /// Called number, E.164, empty when the request carries none.
    pub callee: String,
    /// Tenant of the Teams-side number's assignment, empty when it is not assigned.
    pub tenant_id: String,
    /// SIP URI of the Teams-side number's assignment, empty when unknown.
    pub sip_uri: String,
    /// The call dials an emergency number (the policy always lets those through).
    pub emergency: bool,
}

impl NumberPolicy {
    /// Who an INVITE received on `side` is from and to, read exactly as [`Policy::check`]
    /// reads it. The Teams-side number is the called one for calls from the carrier and the
    /// calling one for calls from Microsoft; its assignment (if any) gives the tenant and
    /// the SIP URI.
    pub fn attribute(&self, side: Side, msg: &Message) -> Attribution {
        let cc = self.cfg.default_country_code.as_deref();
        let caller = calling_number(msg, cc);
        let callee = called_number(msg, cc);
        let teams = match side {
            Side::Carrier => callee,
            Side::Microsoft => caller,
        };
        let assignment = teams.and_then(|n| self.table.lookup(&n));
        let text = |n: Option<E164>| n.map(|n| n.as_str().to_owned()).unwrap_or_default();
        Attribution {
            caller: text(caller),
            callee: text(callee),
            tenant_id: assignment
                .as_ref()
                .map(|a| a.tenant().to_owned())
                .unwrap_or_default(),
            sip_uri: assignment.map(|a| a.sip_uri()).unwrap_or_default(),
            emergency: called_uri(msg).is_some_and(|u| self.is_emergency(&u)),
        }
    }
}

/// The called URI: the Request-URI, or To when the Request-URI has no number.
fn called_uri(msg: &Message) -> Option<Uri<'_>> {
    let ruri = msg.request_uri()?;
    if ruri.user.is_some() {
        return Some(ruri);
    }
    let to = msg.headers().first(HeaderName::To)?;
    NameAddr::parse(to, "To").ok().map(|t| t.uri)
}

impl Policy for NumberPolicy {
    fn reconfigure(&mut self, cfg: &crate::config::Config) {
        self.cfg = cfg.numbers.clone();
    }

    fn report(&self) -> crate::proxy::policy::PolicyReport {
        crate::proxy::policy::PolicyReport {
            numbers: Some(self.stats),
            calls: None,
        }
    }

    fn check(&mut self, _now: Millis, side: Side, msg: &Message) -> Verdict {
        if msg.method() != Some(Method::Invite) {
            return Verdict::Allow;
        }
        let called = called_uri(msg);
        if called.as_ref().is_some_and(|u| self.is_emergency(u)) {
            self.stats.emergency += 1;
            tracing::info!(side = side.as_str(), "emergency call let through");
            return Verdict::Allow;
        }
        let decided = if !self.table.is_loaded() {
            Err((Refusal::NotReady, 503, "Number Table Not Loaded"))
        } else {
            match side {
                Side::Carrier => self.inbound(called.as_ref().and_then(|u| self.number(u))),
                Side::Microsoft => self.outbound(msg),
            }
        };
        match decided {
            Ok(verdict) => {
                self.stats.allowed += 1;
                verdict
            }
            // Enforcement off: the table was consulted, the call goes on all the same.
            Err(_) if !self.cfg.enforce => {
                self.stats.unenforced += 1;
                Verdict::Allow
            }
            Err((refusal, status, reason)) => {
                let counter = match refusal {
                    Refusal::UnassignedCalled => &mut self.stats.unassigned_called,
                    Refusal::UnassignedCaller => &mut self.stats.unassigned_caller,
                    Refusal::TenantMismatch => &mut self.stats.tenant_mismatch,
                    Refusal::NotReady => &mut self.stats.not_ready,
                };
                *counter += 1;
                self.reject(status, reason)
            }
        }
    }

    fn observe(&mut self, _event: &Event) {}
}

/// The matching of [`NumberPolicy::is_emergency`] on a URI's user part.
fn dials_emergency(user: &[u8], emergency: &[String], cc: &str) -> bool {
    let Some((global, number)) = dialled(user) else {
        return false;
    };
    // An ordinary number is longer than any match can be: decided without collecting it.
    let digits = number.iter().filter(|b| b.is_ascii_digit()).count();
    digits <= longest_match(emergency, cc) && emergency_match(global, number, emergency, cc)
}

/// A dialled number: digits and visual separators, nothing else (`sip:room911@…` is not
/// 911), URI-user parameters cut off; whether it was in global form (`+`), and the rest.
fn dialled(user: &[u8]) -> Option<(bool, &[u8])> {
    let user = user.split(|&b| b == b';').next().unwrap_or(user);
    let global = user.first() == Some(&b'+');
    let user = user.strip_prefix(b"+").unwrap_or(user);
    user.iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'(' | b')'))
        .then_some((global, user))
}

/// The most digits a number matched by [`emergency_match`] can have: an emergency number
/// after the country code or after up to three digits.
fn longest_match(emergency: &[String], cc: &str) -> usize {
    emergency.iter().map(String::len).max().unwrap_or(0) + cc.len().max(3)
}

/// The digits of `number` are one of `emergency`, or one after the default country code
/// `cc`, or (in global form) one after any one to three digits.
fn emergency_match(global: bool, number: &[u8], emergency: &[String], cc: &str) -> bool {
    let digits: String = number
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    !digits.is_empty()
        && emergency.iter().any(|e| {
            let after_any_cc = global
                && digits
                    .strip_suffix(e.as_str())
                    .is_some_and(|cc| (1..=3).contains(&cc.len()));
            digits == *e
                || (!cc.is_empty() && digits.strip_prefix(cc) == Some(e.as_str()))
                || after_any_cc
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numbers::fixtures::calling;
    use crate::numbers::Source;

    const TENANT: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
    const ASSIGNED: &str = "+14255550100";

    fn policy(enforce: bool) -> NumberPolicy {
        let table = NumberTable::new();
        table.replace_all(
            &[calling(
                ASSIGNED,
                TENANT,
                &format!("sip:{ASSIGNED}@t.example;user=phone"),
            )],
            Source::Sync,
        );
        NumberPolicy::new(
            table,
            Numbers {
                enforce,
                ..Numbers::default()
            },
        )
    }

    fn invite(to: &str, from: &str) -> Message {
        Message::parse_slice(
            format!(
                "INVITE sip:{to}@gw SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:{from}@h>;tag=1\r\nTo: <sip:{to}@gw>\r\nCall-ID: c\r\n\
                 CSeq: 1 INVITE\r\nl: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn check(p: &mut NumberPolicy, side: Side, to: &str, from: &str) -> Verdict {
        p.check(Millis(0), side, &invite(to, from))
    }

    #[test]
    fn enforcement_off_looks_up_and_counts_but_refuses_nothing() {
        let mut p = policy(false);
        let v = check(&mut p, Side::Carrier, ASSIGNED, "+12065550100");
        assert!(
            matches!(v, Verdict::AllowRewrite { .. }),
            "an assigned number is still rewritten: {v:?}"
        );
        let v = check(&mut p, Side::Carrier, "+14255550199", "+12065550100");
        assert!(matches!(v, Verdict::Allow), "{v:?}");
        let v = check(&mut p, Side::Microsoft, "+12065550100", "+14255550199");
        assert!(matches!(v, Verdict::Allow), "{v:?}");
        let s = p.stats;
        assert_eq!((s.allowed, s.unenforced), (1, 2));
        assert_eq!(
            (s.unassigned_called, s.unassigned_caller),
            (0, 0),
            "one decision a call"
        );

        let mut p = policy(true);
        let v = check(&mut p, Side::Carrier, "+14255550199", "+12065550100");
        assert!(matches!(v, Verdict::Reject { status: 404, .. }), "{v:?}");
        assert_eq!((p.stats.unassigned_called, p.stats.unenforced), (1, 0));
    }

    proptest::proptest! {
        #[test]
        fn the_length_bound_changes_no_answer(
            random in "[+]?[0-9().;-]{0,14}",
            emergency in proptest::collection::vec("[0-9]{1,4}", 1..4),
            cc in "[0-9]{0,4}",
            (plus, prefix, pick) in (proptest::bool::ANY, "[0-9]{0,5}", 0..4usize),
            built in proptest::bool::ANY,
        ) {
            // Half the cases are built to be near a match: an emergency number after a
            // few digits (or the country code), in global form or not.
            let user = if built {
                let e = &emergency[pick % emergency.len()];
                let prefix = if pick == 3 { cc.clone() } else { prefix };
                format!("{}{prefix}{e}", if plus { "+" } else { "" })
            } else {
                random
            };
            // The answer is the unbounded match's: whatever matches is within the bound.
            let unbounded = dialled(user.as_bytes())
                .is_some_and(|(global, number)| emergency_match(global, number, &emergency, &cc));
            proptest::prop_assert_eq!(dials_emergency(user.as_bytes(), &emergency, &cc), unbounded);
        }
    }

    #[test]
    fn emergency_numbers_in_national_and_global_form_without_a_country_code() {
        let mut p = policy(true);
        for to in [
            "911",
            "+911",
            "+1911",
            "+44999",
            "+61000",
            "1-1-2",
            "tel-ignored",
        ] {
            let v = check(&mut p, Side::Microsoft, to, "+19995550000");
            let want = to != "tel-ignored";
            assert_eq!(matches!(v, Verdict::Allow), want, "{to}: {v:?}");
        }
        // Not emergency: a subscriber number that merely ends in 911, or a national number
        // with digits before the code.
        for to in ["+14255550911", "1911", "+1234567911"] {
            let v = check(&mut p, Side::Microsoft, to, "+19995550000");
            assert!(matches!(v, Verdict::Reject { .. }), "{to}: {v:?}");
        }
        assert_eq!(p.stats.emergency, 6);
    }
}
