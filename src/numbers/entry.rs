//! API entries parsed once, at the edge: what each does to the table ([`Change`]).
//!
//! An invalid `telephoneNumber` or `tenantId`, or a field over its limit, makes
//! [`Change::from_entry`] fail; a `sipUri` that is not a SIP URI fails when its profile is
//! made (once per distinct profile, not per number). The caller skips and counts the
//! entry. Nothing here panics on API data.

use super::attrs::{ProfileKey, Template, TenantId};
use crate::msapi::NumberEntry;
use crate::sip::number::{NumberError, E164};
use crate::sip::uri::{Scheme, Uri};

/// Longest `sipUri` accepted, in bytes.
pub const MAX_SIP_URI: usize = 1024;
/// Longest `usage` accepted, in bytes.
pub const MAX_USAGE: usize = 128;
/// Most `capabilities` accepted on one entry.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability name accepted, in bytes.
pub const MAX_CAPABILITY: usize = 64;

/// Why an API entry was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// `telephoneNumber` is not a canonical E.164 number.
    #[error("invalid telephoneNumber: {0}")]
    Number(#[from] NumberError),
    /// `tenantId` is not a GUID.
    #[error("tenantId is not a GUID")]
    Tenant,
    /// `sipUri` is not empty and not a `sip:`/`sips:` URI.
    #[error("sipUri is not a SIP URI")]
    SipUri,
    /// A field is longer than its limit, or has too many items.
    #[error("{0} over its limit")]
    TooLong(&'static str),
}

/// Checks a SIP URI: empty, or a `sip:`/`sips:` URI the SIP parser accepts. Run once per
/// distinct profile, not per number: numbers sharing a template differ only in digits
/// where digits already stood.
pub(crate) fn check_sip_uri(uri: &str) -> Result<(), EntryError> {
    if uri.is_empty() {
        return Ok(());
    }
    match Uri::parse(uri.as_bytes()) {
        Ok(u) if matches!(u.scheme, Scheme::Sip | Scheme::Sips) => Ok(()),
        _ => Err(EntryError::SipUri),
    }
}

/// What an assigned entry says besides its number, borrowed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned<'a> {
    /// The tenant.
    pub tenant: TenantId,
    /// The SIP URI, at most [`MAX_SIP_URI`] bytes; checked to be a `sip:`/`sips:` URI (or
    /// empty) when the number's profile is made.
    pub sip_uri: &'a str,
    /// The usage.
    pub usage: &'a str,
    /// The capability names.
    pub capabilities: &'a [String],
}

impl Assigned<'_> {
    /// The parts of `number`'s profile.
    pub(crate) fn key(&self, number: &E164) -> ProfileKey<'_, String> {
        ProfileKey {
            tenant: self.tenant,
            template: Template::cut(self.sip_uri, number),
            usage: self.usage,
            names: self.capabilities,
        }
    }
}

/// An API entry, parsed: what it does to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The number is assigned with these attributes (insert or replace).
    Assign(E164, Assigned<'a>),
    /// The number is not (or no longer) assigned: `@removed`, or a status other than
    /// `assigned`.
    Remove(E164),
}

impl<'a> Change<'a> {
    /// Reads one entry. Only `assignmentStatus` `assigned` (any case) or empty assigns.
    /// The SIP URI's syntax is checked later, once per distinct profile.
    pub fn from_entry(e: &'a NumberEntry) -> Result<Change<'a>, EntryError> {
        let number = E164::parse(&e.telephone_number)?;
        let assigned =
            e.assignment_status.is_empty() || e.assignment_status.eq_ignore_ascii_case("assigned");
        if e.removed.is_some() || !assigned {
            return Ok(Change::Remove(number));
        }
        let tenant = TenantId::parse(&e.tenant_id)?;
        if e.sip_uri.len() > MAX_SIP_URI {
            return Err(EntryError::TooLong("sipUri"));
        }
        if e.usage.len() > MAX_USAGE {
            return Err(EntryError::TooLong("usage"));
        }
        if e.capabilities.len() > MAX_CAPABILITIES
            || e.capabilities.iter().any(|c| c.len() > MAX_CAPABILITY)
        {
            return Err(EntryError::TooLong("capabilities"));
        }
        Ok(Change::Assign(
            number,
            Assigned {
                tenant,
                sip_uri: &e.sip_uri,
                usage: &e.usage,
                capabilities: &e.capabilities,
            },
        ))
    }

    /// The number the change is about.
    pub fn number(&self) -> E164 {
        match self {
            Change::Assign(n, _) | Change::Remove(n) => *n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";

    use crate::numbers::fixtures::calling as entry;

    #[test]
    fn entries_are_classified() {
        let mut e = entry("+14255550100", T, "sip:+14255550100@t.example");
        assert!(matches!(Change::from_entry(&e), Ok(Change::Assign(..))));
        e.assignment_status = String::new();
        assert!(matches!(Change::from_entry(&e), Ok(Change::Assign(..))));
        e.assignment_status = "Assigned".into();
        assert!(matches!(Change::from_entry(&e), Ok(Change::Assign(..))));
        e.assignment_status = "unassigned".into();
        assert!(matches!(Change::from_entry(&e), Ok(Change::Remove(_))));
        e.assignment_status = "assigned".into();
        e.removed = Some(crate::msapi::Removed {
            reason: "deleted".into(),
        });
        assert!(matches!(Change::from_entry(&e), Ok(Change::Remove(_))));
        // A removal needs only a valid number.
        e.tenant_id = "junk".into();
        assert!(matches!(Change::from_entry(&e), Ok(Change::Remove(_))));

        let bad = |f: &dyn Fn(&mut NumberEntry)| {
            let mut e = entry("+14255550100", T, "sip:+14255550100@t.example");
            f(&mut e);
            Change::from_entry(&e).unwrap_err()
        };
        assert_eq!(
            bad(&|e| e.telephone_number = "4255550100".into()),
            EntryError::Number(NumberError::MissingPlus)
        );
        assert_eq!(bad(&|e| e.tenant_id = String::new()), EntryError::Tenant);
        assert_eq!(check_sip_uri("tel:+1425"), Err(EntryError::SipUri));
        assert_eq!(check_sip_uri("sip:a b@c"), Err(EntryError::SipUri));
        assert_eq!(check_sip_uri("http://x"), Err(EntryError::SipUri));
        assert_eq!(check_sip_uri("sips:+1425@c;user=phone"), Ok(()));
        assert_eq!(check_sip_uri(""), Ok(()));
        assert_eq!(
            bad(&|e| e.sip_uri = format!("sip:{}@x", "a".repeat(MAX_SIP_URI))),
            EntryError::TooLong("sipUri")
        );
        assert_eq!(
            bad(&|e| e.usage = "u".repeat(MAX_USAGE + 1)),
            EntryError::TooLong("usage")
        );
        assert_eq!(
            bad(&|e| e.capabilities = vec![String::new(); MAX_CAPABILITIES + 1]),
            EntryError::TooLong("capabilities")
        );
    }
}
