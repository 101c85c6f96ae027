//! E.164 telephone numbers (ITU-T E.164) and their extraction from SIP and tel URIs.
//!
//! [`E164`] can only hold a valid number: `+`, then 1 to 15 digits, the first one 1–9. It is
//! stored inline (`Copy`, no allocation) and always displays, serialises and compares as its
//! canonical string, e.g. `+14255550100`. [`E164::parse`] is strict; the lenient reading of
//! what callers put in URIs (visual separators, user parameters, national numbers) lives in
//! [`e164_from_uri`], so every number in the rest of the gateway went through one of the two.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::uri::{find_param, unescape, Scheme, Uri};

/// Most digits an E.164 number has after the `+`.
pub const MAX_DIGITS: usize = 15;

/// Buffer with the `+` in place and room for [`MAX_DIGITS`] digits.
const EMPTY: [u8; MAX_DIGITS + 1] = [b'+', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A valid E.164 number in canonical form (`+` and digits, no separators).
///
/// Invariant: `buf[..len]` is `+` followed by 1..=15 ASCII digits, the first not `0`, and the
/// bytes after `len` are zero, so the derived `Eq` and `Hash` agree with string equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct E164 {
    buf: [u8; MAX_DIGITS + 1],
    len: u8,
}

/// Why a string or URI does not give an E.164 number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    /// The input is empty.
    #[error("empty number")]
    Empty,
    /// The input does not start with `+`.
    #[error("E.164 number must start with '+'")]
    MissingPlus,
    /// Nothing follows the `+`.
    #[error("E.164 number has no digits")]
    NoDigits,
    /// A byte other than a digit follows the `+`.
    #[error("E.164 number may only hold digits after '+'")]
    NotDigit,
    /// More than fifteen digits.
    #[error("E.164 number has more than 15 digits")]
    TooLong,
    /// The country code starts with `0`.
    #[error("E.164 number cannot start with 0 after '+'")]
    LeadingZero,
    /// The URI's number is not `+` and digits (separators aside), and no default country
    /// code allows reading it as a national number.
    #[error("URI user part is not an E.164 number")]
    NotE164,
    /// A SIP URI without a user part.
    #[error("URI has no user part")]
    NoUser,
    /// A scheme other than `sip`, `sips` or `tel`.
    #[error("URI scheme carries no telephone number")]
    UnsupportedScheme,
    /// The default country code is not 1 to 3 digits starting 1–9.
    #[error("invalid default country code")]
    BadCountryCode,
    /// The user part has an invalid `%` escape (only for a hand-built [`Uri`]).
    #[error("invalid %-escape in URI user part")]
    BadEscape,
}

impl E164 {
    /// Parses the canonical form strictly: `+` and 1–15 digits, first digit 1–9.
    pub fn parse(s: &str) -> Result<E164, NumberError> {
        if s.is_empty() {
            return Err(NumberError::Empty);
        }
        let digits = s
            .as_bytes()
            .strip_prefix(b"+")
            .ok_or(NumberError::MissingPlus)?;
        E164::from_digits(&[digits])
    }

    /// The number as written canonically, with its `+`.
    pub fn as_str(&self) -> &str {
        self.buf
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The digits without the `+`.
    pub fn digits(&self) -> &str {
        self.as_str().get(1..).unwrap_or("")
    }

    /// Builds a number from the concatenation of `parts`, which must be digits only.
    fn from_digits(parts: &[&[u8]]) -> Result<E164, NumberError> {
        let mut buf = EMPTY;
        let mut len = 1usize;
        for &b in parts.iter().flat_map(|p| p.iter()) {
            if !b.is_ascii_digit() {
                return Err(NumberError::NotDigit);
            }
            *buf.get_mut(len).ok_or(NumberError::TooLong)? = b;
            len = len.saturating_add(1);
        }
        match buf.get(1) {
            _ if len == 1 => Err(NumberError::NoDigits),
            Some(b'0') => Err(NumberError::LeadingZero),
            _ => Ok(E164 {
                buf,
                len: u8::try_from(len).map_err(|_| NumberError::TooLong)?,
            }),
        }
    }
}

/// Extracts an E.164 number from a parsed URI.
///
/// - `tel:` — the number (parameters are already separate), visual separators `-.()` dropped.
/// - `sip:`/`sips:` — the unescaped user part up to its first `;` (user parameters other
///   than `phone-context` are ignored), separators dropped; `user=phone` is not required.
///
/// A `+`-prefixed result is taken as is. A local number (digits only) whose
/// `phone-context` is a global number prefix (RFC 3966 §5.1.5: `tel:7042;phone-context=
/// +1-212-555`, or the same as user parameters of a SIP URI) is that prefix followed by the
/// number. Any other number of digits only (a national number, or a local number whose
/// context is a domain) is read only with `default_cc`: a leading `00` is the international
/// prefix and is stripped, otherwise `default_cc` is put in front. Without `default_cc` it is
/// [`NumberError::NotE164`]. National trunk prefixes (a leading `0`, or NANP's `1`) are not
/// stripped: that needs a dial plan, which is the number policy's job.
pub fn e164_from_uri(uri: &Uri<'_>, default_cc: Option<&str>) -> Result<E164, NumberError> {
    let raw = match uri.scheme {
        Scheme::Tel => uri.user.ok_or(NumberError::NoUser)?,
        Scheme::Sip | Scheme::Sips => {
            let user = uri.user.ok_or(NumberError::NoUser)?;
            user.split(|&b| b == b';').next().unwrap_or(user)
        }
        Scheme::Other => return Err(NumberError::UnsupportedScheme),
    };
    let user = unescape(raw).map_err(|_| NumberError::BadEscape)?;
    let (global, body) = match user.strip_prefix(b"+") {
        Some(body) => (true, body),
        None => (false, user.as_ref()),
    };
    // Room for "00" and the longest number; anything longer is too long either way.
    let mut digits = [0u8; MAX_DIGITS + 2];
    let mut n = 0usize;
    for &b in body
        .iter()
        .filter(|&&b| !matches!(b, b'-' | b'.' | b'(' | b')'))
    {
        if !b.is_ascii_digit() {
            return Err(NumberError::NotE164);
        }
        *digits.get_mut(n).ok_or(NumberError::TooLong)? = b;
        n = n.saturating_add(1);
    }
    let digits = digits.get(..n).unwrap_or(&[]);
    if global {
        return E164::from_digits(&[digits]);
    }
    if let Some(prefix) = global_context(uri, raw) {
        if digits.is_empty() {
            return Err(NumberError::NotE164);
        }
        return E164::from_digits(&[&prefix, digits]);
    }
    let cc = default_cc.ok_or(NumberError::NotE164)?;
    if digits.is_empty() {
        return Err(NumberError::NotE164);
    }
    if let Some(international) = digits.strip_prefix(b"00") {
        return E164::from_digits(&[international]);
    }
    let cc_ok = (1..=3).contains(&cc.len())
        && cc.bytes().all(|b| b.is_ascii_digit())
        && !cc.starts_with('0');
    if !cc_ok {
        return Err(NumberError::BadCountryCode);
    }
    E164::from_digits(&[cc.as_bytes(), digits])
}

/// The digits of a `phone-context` that is a global number prefix (`+` then digits and
/// visual separators), from a `tel:` URI's parameters or the user parameters of a SIP URI
/// (`raw` is the user part before its first `;`). `None` for no context or a domain one.
fn global_context(uri: &Uri<'_>, raw: &[u8]) -> Option<Vec<u8>> {
    let params = match uri.scheme {
        Scheme::Tel => uri.params,
        _ => uri.user?.get(raw.len()..)?,
    };
    let value = find_param(params, "phone-context")??;
    let value = unescape(value).ok()?;
    let body = value.strip_prefix(b"+")?;
    let digits: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'-' | b'.' | b'(' | b')'))
        .collect();
    (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then_some(digits)
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("E164").field(&self.as_str()).finish()
    }
}

impl FromStr for E164 {
    type Err = NumberError;

    fn from_str(s: &str) -> Result<E164, NumberError> {
        E164::parse(s)
    }
}

impl Ord for E164 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for E164 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<E164, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = E164;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an E.164 number such as \"+14255550100\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<E164, E> {
                E164::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(NumberVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn from_uri(s: &str, cc: Option<&str>) -> Result<E164, NumberError> {
        let uri = Uri::parse(s.as_bytes()).map_err(|e| panic!("{s:?}: {e}"))?;
        e164_from_uri(&uri, cc)
    }

    fn n(s: &str) -> E164 {
        E164::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_only_canonical_numbers() {
        let e = n("+14255550100");
        assert_eq!(e.as_str(), "+14255550100");
        assert_eq!(e.digits(), "14255550100");
        assert_eq!(n("+1").as_str(), "+1");
        assert_eq!(n("+123456789012345").digits().len(), 15);
        assert_eq!(E164::parse(""), Err(NumberError::Empty));
        assert_eq!(E164::parse("14255550100"), Err(NumberError::MissingPlus));
        assert_eq!(E164::parse("+"), Err(NumberError::NoDigits));
        assert_eq!(E164::parse("+0123"), Err(NumberError::LeadingZero));
        assert_eq!(E164::parse("+1234567890123456"), Err(NumberError::TooLong));
        assert_eq!(E164::parse("+1425555O100"), Err(NumberError::NotDigit));
        assert_eq!(E164::parse("+1-425-555-0100"), Err(NumberError::NotDigit));
        assert_eq!(E164::parse("+1425 "), Err(NumberError::NotDigit));
        assert_eq!(E164::parse("++1"), Err(NumberError::NotDigit));
        assert_eq!(E164::parse("+١٢٣"), Err(NumberError::NotDigit));
    }

    #[test]
    fn traits_use_the_canonical_string() {
        let a = n("+14255550100");
        assert_eq!(a.to_string(), "+14255550100");
        assert_eq!(format!("{a:>14}"), "  +14255550100");
        assert_eq!(format!("{a:?}"), "E164(\"+14255550100\")");
        assert_eq!("+14255550100".parse::<E164>(), Ok(a));
        assert_eq!("x".parse::<E164>(), Err(NumberError::MissingPlus));
        assert!(n("+1") < n("+12"));
        assert!(n("+12") < n("+2"));
        let set: HashSet<E164> = [a, n("+14255550100"), n("+4930123")].into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn serde_as_string() {
        let a = n("+4930123");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"+4930123\"");
        assert_eq!(serde_json::from_str::<E164>("\"+4930123\"").unwrap(), a);
        let e = serde_json::from_str::<E164>("\"+0301\"").unwrap_err();
        assert!(e.to_string().contains("cannot start with 0"), "{e}");
        assert!(serde_json::from_str::<E164>("4930123").is_err());
    }

    #[test]
    fn from_sip_uris() {
        let want = Ok(n("+14255550100"));
        assert_eq!(from_uri("sip:+1-425-555-0100@host;user=phone", None), want);
        assert_eq!(from_uri("sip:+14255550100;isub=1@host", None), want);
        assert_eq!(
            from_uri("sip:+14255550100@host", None),
            want,
            "user=phone not needed"
        );
        assert_eq!(from_uri("sips:+1.425.555.0100@host", None), want);
        assert_eq!(
            from_uri("sip:%2B14255550100@host", None),
            want,
            "escaped '+'"
        );
        assert_eq!(
            from_uri("sip:+13035551111@ift.client.example.net;user=phone", None),
            Ok(n("+13035551111"))
        );
        assert_eq!(from_uri("sip:alice@host", None), Err(NumberError::NotE164));
        assert_eq!(
            from_uri("sip:alice@host", Some("1")),
            Err(NumberError::NotE164)
        );
        assert_eq!(from_uri("sip:+1425x@host", None), Err(NumberError::NotE164));
        assert_eq!(from_uri("sip:host", None), Err(NumberError::NoUser));
        assert_eq!(
            from_uri("sip:+0425@host", None),
            Err(NumberError::LeadingZero)
        );
        assert_eq!(
            from_uri("sip:+1234567890123456@host", None),
            Err(NumberError::TooLong)
        );
        assert_eq!(from_uri("sip:+--@host", None), Err(NumberError::NoDigits));
    }

    #[test]
    fn a_global_phone_context_makes_a_local_number_global() {
        assert_eq!(
            from_uri("tel:7042;phone-context=+1-212-555", None),
            Ok(n("+12125557042"))
        );
        assert_eq!(
            from_uri(
                "sip:4255550100;phone-context=+1@host;user=phone",
                Some("49")
            ),
            Ok(n("+14255550100")),
            "the context wins over the default country code"
        );
        assert_eq!(
            from_uri("sip:4255550100;PHONE-CONTEXT=%2B1@host", None),
            Ok(n("+14255550100"))
        );
        // A domain context says nothing about the country: the default applies.
        assert_eq!(
            from_uri("tel:4255550100;phone-context=example.com", Some("1")),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("tel:4255550100;phone-context=example.com", None),
            Err(NumberError::NotE164)
        );
        assert_eq!(
            from_uri("tel:1234567890;phone-context=+123456", None),
            Err(NumberError::TooLong)
        );
    }

    #[test]
    fn national_numbers_need_a_default_country_code() {
        assert_eq!(
            from_uri("sip:4255550100@host", Some("1")),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("sip:425-555-0100@host", Some("1")),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("sip:4255550100@host", None),
            Err(NumberError::NotE164)
        );
        assert_eq!(from_uri("sip:004930123@h", Some("49")), Ok(n("+4930123")));
        assert_eq!(
            from_uri("sip:00-1-425-555-0100@h", Some("49")),
            Ok(n("+14255550100"))
        );
        assert_eq!(from_uri("sip:004930123@h", None), Err(NumberError::NotE164));
        assert_eq!(from_uri("sip:0030123@h", Some("49")), Ok(n("+30123")));
        assert_eq!(
            from_uri("sip:000123@h", Some("49")),
            Err(NumberError::LeadingZero)
        );
        // No dial-plan knowledge: a national trunk prefix is kept.
        assert_eq!(from_uri("sip:030123@h", Some("49")), Ok(n("+49030123")));
        assert_eq!(
            from_uri("sip:4255550100@host", Some("01")),
            Err(NumberError::BadCountryCode)
        );
        assert_eq!(
            from_uri("sip:4255550100@host", Some("1234")),
            Err(NumberError::BadCountryCode)
        );
        assert_eq!(
            from_uri("sip:4255550100@host", Some("")),
            Err(NumberError::BadCountryCode)
        );
        assert_eq!(
            from_uri("sip:4255550100@host", Some("+1")),
            Err(NumberError::BadCountryCode)
        );
        assert_eq!(
            from_uri("sip:12345678901234@host", Some("49")),
            Err(NumberError::TooLong)
        );
        assert_eq!(
            from_uri("sip:--@host", Some("1")),
            Err(NumberError::NotE164)
        );
    }

    #[test]
    fn from_tel_uris() {
        assert_eq!(from_uri("tel:+1(425)555-0100", None), Ok(n("+14255550100")));
        assert_eq!(
            from_uri("tel:+1-425-555-0100;ext=22", None),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("tel:5550100;phone-context=+1-425", None),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("tel:4255550100;phone-context=+1", Some("1")),
            Ok(n("+14255550100"))
        );
        assert_eq!(
            from_uri("tel:*21#;phone-context=+1", Some("1")),
            Err(NumberError::NotE164)
        );
    }

    #[test]
    fn other_schemes_carry_no_number() {
        assert_eq!(
            from_uri("im:+14255550100", None),
            Err(NumberError::UnsupportedScheme)
        );
    }
}
