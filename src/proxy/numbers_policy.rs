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
    /// Calls let through unchecked because enforcement is off.
    pub unenforced: u64,
}

/// The policy; one per proxy shard, sharing the table.
pub struct NumberPolicy {
    table: NumberTable,
    cfg: Numbers,
    stats: PolicyStats,
}

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
    /// equal a configured emergency number, with or without the default country code.
    fn is_emergency(&self, uri: &Uri<'_>) -> bool {
        let Some(user) = uri.user else {
            return false;
        };
        let user = user.split(|&b| b == b';').next().unwrap_or(user);
        let user = user.strip_prefix(b"+").unwrap_or(user);
        // Only a dialled number is an emergency call: digits and visual separators, nothing
        // else (`sip:room911@…` is not 911).
        if !user
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'(' | b')'))
        {
            return false;
        }
        let digits: String = user
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        if digits.is_empty() {
            return false;
        }
        let cc = self.cfg.default_country_code.as_deref().unwrap_or("");
        self.cfg.emergency.iter().any(|e| {
            digits == *e || (!cc.is_empty() && digits.strip_prefix(cc) == Some(e.as_str()))
        })
    }

    fn reject(&self, status: u16, reason: &str) -> Verdict {
        Verdict::Reject {
            status,
            reason: reason.to_owned(),
        }
    }

    /// carrier → Microsoft: the called number must be assigned.
    fn inbound(&mut self, called: Option<E164>) -> Verdict {
        let Some(called) = called else {
            self.stats.unassigned_called += 1;
            return self.reject(self.cfg.unassigned_status, "Not A Number");
        };
        match self.table.lookup(&called) {
            None => {
                self.stats.unassigned_called += 1;
                self.reject(self.cfg.unassigned_status, "Number Not Assigned")
            }
            Some(a) => {
                self.stats.allowed += 1;
                let uri = a.sip_uri();
                if self.cfg.rewrite_request_uri
                    && !uri.is_empty()
                    && Uri::parse(uri.as_bytes()).is_ok()
                {
                    Verdict::AllowRewrite {
                        request_uri: uri.to_owned(),
                    }
                } else {
                    Verdict::Allow
                }
            }
        }
    }

    /// Microsoft → carrier: the calling number must be assigned, in the caller's tenant.
    fn outbound(&mut self, msg: &Message) -> Verdict {
        let caller = calling_uri_number(msg, self);
        let Some(caller) = caller else {
            self.stats.unassigned_caller += 1;
            return self.reject(self.cfg.forbidden_status, "Calling Number Not Assigned");
        };
        let Some(a) = self.table.lookup(&caller) else {
            self.stats.unassigned_caller += 1;
            return self.reject(self.cfg.forbidden_status, "Calling Number Not Assigned");
        };
        if self.cfg.check_tenant {
            if let Some(tenant) = msg.header_by_name("X-MS-TenantID").next() {
                let tenant = crate::sip::lex::trim(tenant);
                if !tenant.eq_ignore_ascii_case(a.tenant().as_bytes()) {
                    self.stats.tenant_mismatch += 1;
                    return self.reject(self.cfg.forbidden_status, "Tenant Mismatch");
                }
            }
        }
        self.stats.allowed += 1;
        Verdict::Allow
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
        if !self.cfg.enforce {
            self.stats.unenforced += 1;
            return Verdict::Allow;
        }
        if !self.table.is_loaded() {
            self.stats.not_ready += 1;
            return self.reject(503, "Number Table Not Loaded");
        }
        match side {
            Side::Carrier => {
                let n = called.as_ref().and_then(|u| self.number(u));
                self.inbound(n)
            }
            Side::Microsoft => self.outbound(msg),
        }
    }

    fn observe(&mut self, _event: &Event) {}
}
