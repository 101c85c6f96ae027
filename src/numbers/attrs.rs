//! The attributes a number shares with others: tenant, usage, capabilities, and the SIP
//! URI as a template with the number cut out, held in an interned [`Profile`].
//!
//! Everything but the number itself is shared by many numbers: a tenant has thousands of
//! numbers, and their SIP URIs differ only by the number (`sip:+14255550100@t.example;
//! user=phone`). A table slot is then the number packed into a `u64` plus a profile id.
//! Rendering a profile's URI template with the number gives back exactly the URI the API
//! sent.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use super::entry::EntryError;
use crate::sip::number::E164;

/// A Teams tenant id: a GUID, kept as its canonical lowercase text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId([u8; 36]);

impl TenantId {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits in either case).
    pub fn parse(s: &str) -> Result<TenantId, EntryError> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(EntryError::Tenant);
        }
        let mut out = [0u8; 36];
        for (i, (&c, o)) in b.iter().zip(out.iter_mut()).enumerate() {
            *o = match (i, c) {
                (8 | 13 | 18 | 23, b'-') => b'-',
                (8 | 13 | 18 | 23, _) => return Err(EntryError::Tenant),
                (_, c) if c.is_ascii_hexdigit() => c.to_ascii_lowercase(),
                _ => return Err(EntryError::Tenant),
            };
        }
        Ok(TenantId(out))
    }

    /// The canonical text: lowercase, hyphenated.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The 16 bytes the GUID's hex digits spell, in text order.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let nibbles = self.0.iter().filter(|&&c| c != b'-').map(|&c| hex_value(c));
        for (i, v) in nibbles.enumerate() {
            if let Some(o) = out.get_mut(i / 2) {
                *o |= if i % 2 == 0 { v << 4 } else { v };
            }
        }
        out
    }

    /// The inverse of [`TenantId::to_bytes`]; every 16 bytes are a GUID.
    pub fn from_bytes(b: [u8; 16]) -> TenantId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut pos = 0usize;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                pos += 1;
            }
            for nibble in [byte >> 4, byte & 0x0f] {
                if let (Some(o), Some(&h)) = (out.get_mut(pos), HEX.get(usize::from(nibble))) {
                    *o = h;
                }
                pos += 1;
            }
        }
        TenantId(out)
    }
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => 0,
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TenantId").field(&self.as_str()).finish()
    }
}

/// A set of the known `capabilities` names; unknown names set [`Capabilities::OTHER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u16);

impl Capabilities {
    /// `InboundCalling`.
    pub const INBOUND_CALLING: Capabilities = Capabilities(1);
    /// `OutboundCalling`.
    pub const OUTBOUND_CALLING: Capabilities = Capabilities(1 << 1);
    /// `UserAssignment`.
    pub const USER_ASSIGNMENT: Capabilities = Capabilities(1 << 2);
    /// `FirstPartyAppAssignment`.
    pub const FIRST_PARTY_APP_ASSIGNMENT: Capabilities = Capabilities(1 << 3);
    /// `ConferenceAssignment`.
    pub const CONFERENCE_ASSIGNMENT: Capabilities = Capabilities(1 << 4);
    /// At least one name not listed above (the names are kept in [`Profile`]).
    pub const OTHER: Capabilities = Capabilities(1 << 15);

    /// The flag of one name (exact, case-sensitive as the contract spells them).
    pub fn from_name(name: &str) -> Capabilities {
        match name {
            "InboundCalling" => Self::INBOUND_CALLING,
            "OutboundCalling" => Self::OUTBOUND_CALLING,
            "UserAssignment" => Self::USER_ASSIGNMENT,
            "FirstPartyAppAssignment" => Self::FIRST_PARTY_APP_ASSIGNMENT,
            "ConferenceAssignment" => Self::CONFERENCE_ASSIGNMENT,
            _ => Self::OTHER,
        }
    }

    /// True when every flag of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set (the entry listed no capabilities).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn union(names: impl Iterator<Item = impl AsRef<str>>) -> Capabilities {
        Capabilities(names.fold(0, |acc, n| acc | Self::from_name(n.as_ref()).0))
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;

    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// Where the number sits in a SIP URI template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UriForm {
    /// The URI does not contain the number: it is `prefix` alone (also the empty URI).
    Literal = 0,
    /// `prefix` + the number with its `+` + `suffix`.
    Plus = 1,
    /// `prefix` + the number's digits + `suffix`.
    Digits = 2,
}

impl UriForm {
    /// The form of a stored tag byte.
    pub fn from_tag(tag: u8) -> Option<UriForm> {
        [UriForm::Literal, UriForm::Plus, UriForm::Digits]
            .into_iter()
            .find(|f| *f as u8 == tag)
    }
}

/// A SIP URI with the number cut out, borrowed from an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template<'a> {
    /// Where the number was.
    pub form: UriForm,
    /// Before the number (the whole URI for [`UriForm::Literal`]).
    pub prefix: &'a str,
    /// After the number.
    pub suffix: &'a str,
}

impl<'a> Template<'a> {
    /// Cuts the first occurrence of `number` (`+` and digits, else digits alone) out of `uri`.
    pub fn cut(uri: &'a str, number: &E164) -> Template<'a> {
        let b = uri.as_bytes();
        let plus = number.as_str().as_bytes();
        let at_plus =
            memchr::memchr_iter(b'+', b).find(|&p| b.get(p..p + plus.len()) == Some(plus));
        let found = match at_plus {
            Some(pos) => Some((UriForm::Plus, pos, plus.len())),
            None => {
                let digits = number.digits().as_bytes();
                memchr::memmem::find(b, digits).map(|pos| (UriForm::Digits, pos, digits.len()))
            }
        };
        if let Some((form, pos, len)) = found {
            if let (Some(prefix), Some(suffix)) = (uri.get(..pos), uri.get(pos + len..)) {
                return Template {
                    form,
                    prefix,
                    suffix,
                };
            }
        }
        Template {
            form: UriForm::Literal,
            prefix: uri,
            suffix: "",
        }
    }
}

/// The attributes a number shares with others of its tenant: interned, immutable.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    tenant: TenantId,
    usage: Box<str>,
    capabilities: Capabilities,
    capability_names: Box<[Box<str>]>,
    form: UriForm,
    prefix: Box<str>,
    suffix: Box<str>,
}

impl Profile {
    /// The tenant the numbers are assigned in.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The `usage` as the API sent it (`CallingUserAssignment`, …; may be empty).
    pub fn usage(&self) -> &str {
        &self.usage
    }

    /// The known capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The `capabilities` names as the API sent them.
    pub fn capability_names(&self) -> impl Iterator<Item = &str> {
        self.capability_names.iter().map(|n| &**n)
    }

    /// The SIP URI template.
    pub fn template(&self) -> Template<'_> {
        Template {
            form: self.form,
            prefix: &self.prefix,
            suffix: &self.suffix,
        }
    }

    /// True when the entry had a SIP URI.
    pub fn has_sip_uri(&self) -> bool {
        !(self.prefix.is_empty() && self.form == UriForm::Literal)
    }

    /// Appends `number`'s SIP URI (empty when the entry had none) to `out`.
    pub fn write_sip_uri(&self, number: &E164, out: &mut String) {
        out.reserve(self.sip_uri_len(number));
        out.push_str(&self.prefix);
        match self.form {
            UriForm::Literal => {}
            UriForm::Plus => out.push_str(number.as_str()),
            UriForm::Digits => out.push_str(number.digits()),
        }
        out.push_str(&self.suffix);
    }

    /// The length of what [`write_sip_uri`](Self::write_sip_uri) writes for `number`.
    fn sip_uri_len(&self, number: &E164) -> usize {
        let middle = match self.form {
            UriForm::Literal => 0,
            UriForm::Plus => number.as_str().len(),
            UriForm::Digits => number.digits().len(),
        };
        self.prefix.len() + middle + self.suffix.len()
    }

    /// A profile of these parts.
    pub(crate) fn new(
        tenant: TenantId,
        t: Template<'_>,
        usage: &str,
        names: Box<[Box<str>]>,
    ) -> Profile {
        Profile {
            tenant,
            usage: usage.into(),
            capabilities: Capabilities::union(names.iter()),
            capability_names: names,
            form: t.form,
            prefix: t.prefix.into(),
            suffix: t.suffix.into(),
        }
    }

    /// The parts that identify it, for interning.
    pub(crate) fn key(&self) -> ProfileKey<'_, Box<str>> {
        ProfileKey {
            tenant: self.tenant,
            template: self.template(),
            usage: &self.usage,
            names: &self.capability_names,
        }
    }
}

/// What makes two profiles equal, borrowed: from a stored profile or from an API entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProfileKey<'a, N> {
    pub(crate) tenant: TenantId,
    pub(crate) template: Template<'a>,
    pub(crate) usage: &'a str,
    pub(crate) names: &'a [N],
}

impl<N: AsRef<str>> ProfileKey<'_, N> {
    /// A hash of every part (lengths included, so parts cannot run into each other).
    pub(crate) fn hash_with(&self, s: &impl BuildHasher) -> u64 {
        let mut h = s.build_hasher();
        self.tenant.hash(&mut h);
        (self.template.form as u8).hash(&mut h);
        self.template.prefix.hash(&mut h);
        self.template.suffix.hash(&mut h);
        self.usage.hash(&mut h);
        for n in self.names {
            n.as_ref().hash(&mut h);
        }
        h.finish()
    }

    /// True when `p` has exactly these parts.
    pub(crate) fn matches(&self, p: &Profile) -> bool {
        p.tenant == self.tenant
            && p.template() == self.template
            && *p.usage == *self.usage
            && p.capability_names.len() == self.names.len()
            && p.capability_names
                .iter()
                .zip(self.names)
                .all(|(x, y)| **x == *y.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msapi::NumberEntry;
    use crate::numbers::entry::Change;

    const T: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";

    use crate::numbers::fixtures::calling as entry;

    #[test]
    fn tenant_ids_are_guids_kept_lowercase() {
        let t = TenantId::parse("BDD640FB-0667-4AD1-9C80-317FA3B1799D").unwrap();
        assert_eq!(t.as_str(), T);
        assert_eq!(t.to_string(), T);
        assert_eq!(TenantId::from_bytes(t.to_bytes()), t);
        assert_eq!(t.to_bytes()[0], 0xbd);
        assert_eq!(t.to_bytes()[15], 0x9d);
        for bad in [
            "",
            "bdd640fb06674ad19c80317fa3b1799d",
            "{bdd640fb-0667-4ad1-9c80-317fa3b1799d}",
            "bdd640fb-0667-4ad1-9c80-317fa3b1799g",
            "bdd640fb-0667-4ad1-9c80_317fa3b1799d",
            "bdd640fb-0667-4ad1-9c80-317fa3b1799d ",
            "bdd640fb-0667-4ad1-9c8é-317fa3b179",
        ] {
            assert_eq!(TenantId::parse(bad), Err(EntryError::Tenant), "{bad:?}");
        }
    }

    #[test]
    fn every_sixteen_bytes_are_a_tenant() {
        for b in [[0u8; 16], [0xff; 16], *b"0123456789abcdef"] {
            let t = TenantId::from_bytes(b);
            assert_eq!(TenantId::parse(t.as_str()), Ok(t));
            assert_eq!(t.to_bytes(), b);
        }
    }

    #[test]
    fn templates_give_back_the_uri() {
        let n = E164::parse("+14255550100").unwrap();
        for (uri, form) in [
            ("sip:+14255550100@t.example;user=phone", UriForm::Plus),
            ("sip:14255550100@t.example", UriForm::Digits),
            ("sip:alice@contoso.example", UriForm::Literal),
            ("", UriForm::Literal),
        ] {
            let e = entry("+14255550100", T, uri);
            let Ok(Change::Assign(_, a)) = Change::from_entry(&e) else {
                panic!("{uri}")
            };
            let key = a.key(&n);
            assert_eq!(key.template.form, form, "{uri}");
            let names: Box<[Box<str>]> = a.capabilities.iter().map(|c| c.as_str().into()).collect();
            let p = Profile::new(a.tenant, key.template, a.usage, names);
            assert!(key.matches(&p));
            let s = std::hash::RandomState::new();
            assert_eq!(key.hash_with(&s), p.key().hash_with(&s));
            let mut out = String::new();
            p.write_sip_uri(&n, &mut out);
            assert_eq!(out, uri);
            // Written in one allocation of exactly its size.
            assert_eq!(p.sip_uri_len(&n), uri.len());
            assert_eq!(p.has_sip_uri(), !uri.is_empty());
            assert_eq!(p.tenant().as_str(), T);
            assert_eq!(p.usage(), "CallingUserAssignment");
            assert!(p
                .capabilities()
                .contains(Capabilities::INBOUND_CALLING | Capabilities::OUTBOUND_CALLING));
            assert!(!p.capabilities().contains(Capabilities::OTHER));
        }
    }

    #[test]
    fn profile_keys_tell_every_part_apart() {
        let n = E164::parse("+14255550100").unwrap();
        let base = entry("+14255550100", T, "sip:+14255550100@a.example");
        let Ok(Change::Assign(_, a)) = Change::from_entry(&base) else {
            panic!()
        };
        let names: Box<[Box<str>]> = a.capabilities.iter().map(|c| c.as_str().into()).collect();
        let p = Profile::new(a.tenant, a.key(&n).template, a.usage, names);
        let variants: [&dyn Fn(&mut NumberEntry); 5] = [
            &|e| e.tenant_id = "6b65a6a4-8b81-48f6-b38a-088ca65ed389".into(),
            &|e| e.sip_uri = "sip:+14255550100@b.example".into(),
            &|e| e.usage = "ConferenceAssignment".into(),
            &|e| e.capabilities.pop().map(drop).unwrap_or(()),
            &|e| e.capabilities.push("Other".into()),
        ];
        for f in variants {
            let mut e = base.clone();
            f(&mut e);
            let Ok(Change::Assign(_, b)) = Change::from_entry(&e) else {
                panic!()
            };
            assert!(!b.key(&n).matches(&p), "{e:?}");
        }
    }
}
