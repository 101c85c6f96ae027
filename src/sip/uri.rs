//! URIs: a zero-copy parser for `sip:`, `sips:` and `tel:` URIs (RFC 3261 §19.1 and §25.1,
//! RFC 3966, RFC 5118) that also accepts, opaquely, any other well-formed scheme.
//!
//! [`Uri::parse`] checks the whole grammar once and returns spans borrowed from the input, so
//! a [`Uri`] that exists is valid: every `%` in it starts a two-digit hex escape, the host is a
//! well-formed name or address, the port is in `1..=65535`, parameters and headers are
//! well-formed. Nothing is unescaped or allocated while parsing; [`unescape`] decodes a span
//! on demand. The caller enforces `Limits::max_uri` before calling the parser.
//!
//! Choices where the RFC corpora leave room:
//!
//! - The userinfo ends at the **last** `@` in the URI. `@` is legal nowhere else in a SIP URI
//!   (not in host, parameters or headers), while the user part may hold `;`, `?` and `/`
//!   (RFC 4475 semiuri: `sip:user;par=u%40example.net@example.com`; intmeth has a `?` in
//!   the user part). A second unescaped `@` therefore always lands in the user part and is
//!   refused there.
//! - A bracketed IPv6 reference is parsed with [`Ipv6Addr`], which refuses the three-colon
//!   form of the RFC 3261 ABNF bug (`[2001:db8:::192.0.2.1]`, RFC 5118 §4.10): such a URI is
//!   an error, which §4.10 allows.
//! - An IPv6 address without brackets (`sip:2001:db8::10`, RFC 5118 §4.2) is an error: an
//!   unbracketed host part with more than one `:` is refused as a bad host.
//! - Host names follow RFC 3261 strictly: labels of alphanumerics and inner `-`, a top label
//!   starting with a letter, an optional final `.`; a host made only of digits and dots must
//!   be a dotted quad.
//! - Whitespace, control bytes, non-ASCII bytes and `<`, `>`, `"` are refused anywhere, in
//!   every scheme (RFC 4475 ltgtruri, lwsruri, badaspec).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::{parse_decimal, Param};

/// The scheme of a [`Uri`], compared case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:` (RFC 3261).
    Sip,
    /// `sips:` (RFC 3261).
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
    /// Any other syntactically valid scheme; the rest of the URI is kept opaque.
    Other,
}

/// The host of a URI or of a Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A host name as written (case preserved, optional final `.` kept).
    Name(&'a [u8]),
    /// A dotted-quad IPv4 address.
    V4(Ipv4Addr),
    /// A bracketed IPv6 reference, brackets removed.
    V6(Ipv6Addr),
    /// No host: `tel:` and opaque schemes.
    None,
}

/// A parsed URI whose spans borrow from the input. Spans are raw: escapes are not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI as given.
    pub raw: &'a [u8],
    /// The scheme, classified.
    pub scheme: Scheme,
    /// The scheme as written, without the `:`.
    pub scheme_raw: &'a [u8],
    /// SIP: the raw (still escaped) user part, user parameters included. `tel:`: the number,
    /// global (`+...`) or local, visual separators kept.
    pub user: Option<&'a [u8]>,
    /// SIP: the raw password after `user:`; `Some(b"")` for `user:@host`.
    pub password: Option<&'a [u8]>,
    /// SIP: the host; [`Host::None`] for `tel:` and other schemes.
    pub host: Host<'a>,
    /// SIP: the explicit port, if any.
    pub port: Option<u16>,
    /// The raw parameter section starting at its first `;`, or empty. URI parameters for SIP,
    /// tel parameters for `tel:`.
    pub params: &'a [u8],
    /// The raw header section after `?` (the `?` excluded), or empty.
    pub headers: &'a [u8],
}

/// Why a URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The input, or everything after the scheme of an opaque URI, is empty.
    #[error("empty URI")]
    Empty,
    /// No `:` ends a scheme, or the scheme is empty.
    #[error("URI has no scheme")]
    NoScheme,
    /// The scheme is not `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
    #[error("invalid URI scheme")]
    BadScheme,
    /// The user part is empty or holds a character not allowed there.
    #[error("invalid user part in URI")]
    BadUser,
    /// The password holds a character not allowed there.
    #[error("invalid password in URI")]
    BadPassword,
    /// The host is missing, malformed, or an IPv6 address without brackets.
    #[error("invalid host in URI")]
    BadHost,
    /// The port is empty, not decimal, zero or above 65535.
    #[error("invalid port in URI")]
    BadPort,
    /// A parameter is empty (`;;`), has an empty value or a character not allowed there.
    #[error("invalid URI parameter")]
    BadParam,
    /// The header section is empty or a header lacks `=` or a name.
    #[error("invalid URI header")]
    BadHeader,
    /// A `tel:` number is malformed, or local without a `phone-context`.
    #[error("invalid telephone number in URI")]
    BadNumber,
    /// A `%` not followed by two hex digits.
    #[error("invalid %-escape in URI")]
    BadEscape,
    /// Longer than `Limits::max_uri`; never returned by [`Uri::parse`], which does not know
    /// the limit, but available to callers that check it.
    #[error("URI too long")]
    TooLong,
    /// Space, tab, CR or LF inside the URI.
    #[error("whitespace inside URI")]
    Whitespace,
    /// A control byte, a non-ASCII byte, or one of `<`, `>`, `"`.
    #[error("byte {0:#04x} not allowed in a URI")]
    BadChar(u8),
}

impl<'a> Uri<'a> {
    /// Parses a complete URI; see the module documentation for the accepted grammar.
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        scan(s)?;
        let (scheme_raw, rest) = split_once(s, b':').ok_or(UriError::NoScheme)?;
        if scheme_raw.is_empty() {
            return Err(UriError::NoScheme);
        }
        if !is_scheme(scheme_raw) {
            return Err(UriError::BadScheme);
        }
        let scheme = if scheme_raw.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_raw.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_raw.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw: s,
            scheme,
            scheme_raw,
            user: None,
            password: None,
            host: Host::None,
            port: None,
            params: &[],
            headers: &[],
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(rest, &mut uri)?,
            Scheme::Tel => parse_tel(rest, &mut uri)?,
            Scheme::Other if rest.is_empty() => return Err(UriError::Empty),
            Scheme::Other => {}
        }
        Ok(uri)
    }

    /// The parameters in order, names and values raw (still escaped).
    pub fn params(&self) -> impl Iterator<Item = Param<'a>> {
        params_of(self.params)
    }

    /// Looks a parameter up by name, ASCII case-insensitively and after unescaping the name
    /// (so `;%6C%72` is `lr`, RFC 4475 esc01). `Some(None)` is a flag parameter; the value
    /// is returned raw.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }

    /// True when the `lr` (loose routing) parameter is present, with or without a value.
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// True for the `user=phone` parameter (value compared case-insensitively).
    pub fn user_is_phone(&self) -> bool {
        matches!(self.param("user"), Some(Some(v)) if v.eq_ignore_ascii_case(b"phone"))
    }

    /// The raw value of the `transport` parameter.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param("transport").flatten()
    }

    /// The raw value of the `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param("maddr").flatten()
    }
}

/// Decodes `%HH` escapes; borrows when there are none. A `%` not followed by two hex digits
/// is an error. Decoded bytes may be anything, NUL included (RFC 4475 escnull).
pub fn unescape(s: &[u8]) -> Result<Cow<'_, [u8]>, UriError> {
    if !s.contains(&b'%') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            out.push(escaped(s, i).ok_or(UriError::BadEscape)?);
            i = i.saturating_add(3);
        } else {
            out.push(b);
            i = i.saturating_add(1);
        }
    }
    Ok(Cow::Owned(out))
}

/// Parses `host [":" port]` where host is a name, a dotted quad or a bracketed IPv6
/// reference; the whole input must be consumed. Also used for a Via sent-by.
pub fn parse_host_port(s: &[u8]) -> Result<(Host<'_>, Option<u16>), UriError> {
    if let Some(inner) = s.strip_prefix(b"[") {
        let (v6, tail) = split_once(inner, b']').ok_or(UriError::BadHost)?;
        let addr = std::str::from_utf8(v6)
            .ok()
            .and_then(|t| t.parse::<Ipv6Addr>().ok())
            .ok_or(UriError::BadHost)?;
        let port = match tail {
            [] => None,
            [b':', p @ ..] => Some(parse_port(p)?),
            _ => return Err(UriError::BadHost),
        };
        return Ok((Host::V6(addr), port));
    }
    let (host, port) = match split_once(s, b':') {
        // More than one colon: an IPv6 address without brackets (RFC 5118 §4.2).
        Some((_, p)) if p.contains(&b':') => return Err(UriError::BadHost),
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    Ok((parse_host(host)?, port))
}

/// `sip:`/`sips:` after the scheme: `[userinfo "@"] hostport params ["?" headers]`.
fn parse_sip<'a>(rest: &'a [u8], uri: &mut Uri<'a>) -> Result<(), UriError> {
    let after = match rsplit_once(rest, b'@') {
        Some((userinfo, after)) => {
            let (user, password) = match split_once(userinfo, b':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(UriError::BadUser);
            }
            check(user, USER, UriError::BadUser)?;
            if let Some(p) = password {
                check(p, PASSWORD, UriError::BadPassword)?;
            }
            uri.user = Some(user);
            uri.password = password;
            after
        }
        None => rest,
    };
    let (before, headers) = match split_once(after, b'?') {
        Some((before, headers)) => {
            check_headers(headers)?;
            (before, headers)
        }
        None => (after, &[][..]),
    };
    let (hostport, params) = split_at_first(before, b';');
    check_params(params)?;
    let (host, port) = parse_host_port(hostport)?;
    uri.host = host;
    uri.port = port;
    uri.params = params;
    uri.headers = headers;
    Ok(())
}

/// `tel:` after the scheme (RFC 3966): a global or local number, then tel parameters.
fn parse_tel<'a>(rest: &'a [u8], uri: &mut Uri<'a>) -> Result<(), UriError> {
    let (number, params) = split_at_first(rest, b';');
    let global = match number.strip_prefix(b"+") {
        Some(digits) if is_global_digits(digits) => true,
        Some(_) => return Err(UriError::BadNumber),
        None if is_local_digits(number) => false,
        None => return Err(UriError::BadNumber),
    };
    check_params(params)?;
    uri.user = Some(number);
    uri.params = params;
    let mut context = false;
    for p in uri.params() {
        let pname_ok = p
            .name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
        if !pname_ok {
            return Err(UriError::BadParam);
        }
        if p.name.eq_ignore_ascii_case(b"phone-context") {
            let descriptor_ok = match p.value {
                Some(v) => match v.strip_prefix(b"+") {
                    Some(digits) => is_global_digits(digits),
                    None => is_hostname(v),
                },
                None => false,
            };
            if !descriptor_ok {
                return Err(UriError::BadParam);
            }
            context = true;
        }
    }
    if !global && !context {
        return Err(UriError::BadNumber);
    }
    Ok(())
}

/// Refuses whitespace, controls, non-ASCII and the delimiters that surround a URI.
fn scan(s: &[u8]) -> Result<(), UriError> {
    match s.iter().find(|&&b| CLASS[usize::from(b)] & VISIBLE == 0) {
        None => Ok(()),
        Some(b' ' | b'\t' | b'\r' | b'\n') => Err(UriError::Whitespace),
        Some(&b) => Err(UriError::BadChar(b)),
    }
}

/// Character classes of RFC 3261 §25.1 as bit flags in one table, so that checking a byte
/// is one load and one AND (the URI of every request is checked on the hot path).
const VISIBLE: u8 = 1;
const UNRESERVED: u8 = 2;
const USER: u8 = 4;
const PASSWORD: u8 = 8;
const PARAM: u8 = 16;
const HEADER: u8 = 32;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b >= 0x21 && b < 0x7f && b != b'<' && b != b'>' && b != b'"' {
            c |= VISIBLE;
        }
        let unreserved = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        if unreserved {
            c |= UNRESERVED | USER | PASSWORD | PARAM | HEADER;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            c |= USER;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            c |= PASSWORD;
        }
        if matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            c |= PARAM;
        }
        if matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            c |= HEADER;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(b) if b.is_ascii_alphabetic())
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn is_visual_separator(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b'(' | b')')
}

/// RFC 3966 global-number-digits after the `+`: phonedigits with at least one digit.
fn is_global_digits(d: &[u8]) -> bool {
    d.iter().any(u8::is_ascii_digit)
        && d.iter()
            .all(|&b| b.is_ascii_digit() || is_visual_separator(b))
}

/// RFC 3966 local-number-digits: hex digits, `*`, `#` and separators, at least one non-separator.
fn is_local_digits(d: &[u8]) -> bool {
    let is_digit = |b: u8| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#');
    d.iter().any(|&b| is_digit(b)) && d.iter().all(|&b| is_digit(b) || is_visual_separator(b))
}

/// Checks every byte is in `class` or starts a valid escape.
fn check(s: &[u8], class: u8, err: UriError) -> Result<(), UriError> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if CLASS[usize::from(b)] & class != 0 {
            i = i.saturating_add(1);
        } else if b == b'%' {
            escaped(s, i).ok_or(UriError::BadEscape)?;
            i = i.saturating_add(3);
        } else {
            return Err(err);
        }
    }
    Ok(())
}

/// The byte encoded by the `%HH` escape at `i`.
fn escaped(s: &[u8], i: usize) -> Option<u8> {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let hi = hex(*s.get(i.checked_add(1)?)?)?;
    let lo = hex(*s.get(i.checked_add(2)?)?)?;
    Some(hi << 4 | lo)
}

/// `*( ";" name [ "=" value ] )`, names and values non-empty paramchars.
fn check_params(p: &[u8]) -> Result<(), UriError> {
    if p.is_empty() {
        return Ok(());
    }
    let body = p.strip_prefix(b";").ok_or(UriError::BadParam)?;
    for item in body.split(|&b| b == b';') {
        let (name, value) = match split_once(item, b'=') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        if name.is_empty() || value.is_some_and(<[u8]>::is_empty) {
            return Err(UriError::BadParam);
        }
        check(name, PARAM, UriError::BadParam)?;
        if let Some(v) = value {
            check(v, PARAM, UriError::BadParam)?;
        }
    }
    Ok(())
}

/// `hname "=" hvalue *( "&" hname "=" hvalue )`; values may be empty.
fn check_headers(h: &[u8]) -> Result<(), UriError> {
    for item in h.split(|&b| b == b'&') {
        let (name, value) = split_once(item, b'=').ok_or(UriError::BadHeader)?;
        if name.is_empty() {
            return Err(UriError::BadHeader);
        }
        check(name, HEADER, UriError::BadHeader)?;
        check(value, HEADER, UriError::BadHeader)?;
    }
    Ok(())
}

/// The `;name[=value]` items of a parameter section (a URI's parameters, or the user
/// parameters of a SIP user part), names and values raw (still escaped).
pub fn params_of(section: &[u8]) -> impl Iterator<Item = Param<'_>> {
    let body = section.strip_prefix(b";").unwrap_or(section);
    body.split(|&b| b == b';')
        .filter(|item| !item.is_empty())
        .map(|item| match split_once(item, b'=') {
            Some((name, value)) => Param {
                name,
                value: Some(value),
            },
            None => Param {
                name: item,
                value: None,
            },
        })
}

/// A parameter of `section` by name, as [`Uri::param`] looks one up.
pub fn find_param<'a>(section: &'a [u8], name: &str) -> Option<Option<&'a [u8]>> {
    params_of(section)
        .find(|p| unescape(p.name).is_ok_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
        .map(|p| p.value)
}

fn parse_port(p: &[u8]) -> Result<u16, UriError> {
    parse_decimal(p, u64::from(u16::MAX))
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or(UriError::BadPort)
}

fn parse_host(h: &[u8]) -> Result<Host<'_>, UriError> {
    if h.is_empty() {
        return Err(UriError::BadHost);
    }
    if h.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return parse_ipv4(h).map(Host::V4).ok_or(UriError::BadHost);
    }
    if is_hostname(h) {
        Ok(Host::Name(h))
    } else {
        Err(UriError::BadHost)
    }
}

/// RFC 3261 IPv4address: four groups of 1–3 digits, each at most 255 (leading zeros allowed).
fn parse_ipv4(h: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = h.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.len() > 3 {
            return None;
        }
        *octet = u8::try_from(parse_decimal(part, 255)?).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// RFC 3261 hostname: `*( domainlabel "." ) toplabel [ "." ]`.
fn is_hostname(h: &[u8]) -> bool {
    let h = h.strip_suffix(b".").unwrap_or(h);
    let mut last: &[u8] = &[];
    for label in h.split(|&b| b == b'.') {
        let ends_ok = matches!((label.first(), label.last()),
            (Some(a), Some(z)) if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        if !ends_ok
            || !label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return false;
        }
        last = label;
    }
    matches!(last.first(), Some(b) if b.is_ascii_alphabetic())
}

/// Splits around the first `sep`, which is excluded.
fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    memchr::memchr(sep, s).and_then(|i| split_around(s, i))
}

/// Splits around the last `sep`, which is excluded.
fn rsplit_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    memchr::memrchr(sep, s).and_then(|i| split_around(s, i))
}

fn split_around(s: &[u8], i: usize) -> Option<(&[u8], &[u8])> {
    Some((s.get(..i)?, s.get(i.checked_add(1)?..)?))
}

/// Splits before the first `sep`, which starts the second part; `(s, [])` without one.
fn split_at_first(s: &[u8], sep: u8) -> (&[u8], &[u8]) {
    let i = memchr::memchr(sep, s).unwrap_or(s.len());
    (s.get(..i).unwrap_or(s), s.get(i..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Uri<'_> {
        match Uri::parse(s.as_bytes()) {
            Ok(u) => u,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> UriError {
        match Uri::parse(s.as_bytes()) {
            Ok(u) => panic!("{s:?} should fail, got {u:?}"),
            Err(e) => e,
        }
    }

    fn name(s: &str) -> Host<'_> {
        Host::Name(s.as_bytes())
    }

    #[test]
    fn basic_sip_uri_parts() {
        let u = ok("sip:alice:secret@atlanta.example.com:5061;transport=tcp;lr?a=b&c=d");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.scheme_raw, b"sip");
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!(u.host, name("atlanta.example.com"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, b";transport=tcp;lr");
        assert_eq!(u.headers, b"a=b&c=d");
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.has_lr());
        assert_eq!(u.maddr(), None);
        let names: Vec<_> = u.params().map(|p| p.name).collect();
        assert_eq!(names, vec![&b"transport"[..], b"lr"]);
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let u = ok("SIP:Bob@Biloxi.Example.COM");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.scheme_raw, b"SIP");
        assert_eq!(u.host, name("Biloxi.Example.COM"));
        assert_eq!(ok("SiPs:bob@example.com").scheme, Scheme::Sips);
        assert_eq!(ok("TEL:+1-201-555-0123").scheme, Scheme::Tel);
    }

    #[test]
    fn password_may_be_empty_but_not_the_user() {
        assert_eq!(ok("sip:alice:@example.com").password, Some(&b""[..]));
        assert_eq!(ok("sip:alice@example.com").password, None);
        assert_eq!(err("sip:@example.com"), UriError::BadUser);
        assert_eq!(err("sip::pw@example.com"), UriError::BadUser);
        assert_eq!(err("sip:a:b:c@example.com"), UriError::BadPassword);
        assert_eq!(err("sip:a:b;c@example.com"), UriError::BadPassword);
    }

    #[test]
    fn host_forms() {
        assert_eq!(ok("sip:example.com.").host, name("example.com."));
        assert_eq!(
            ok("sip:fluffy@127.0.0.1:5070").host,
            Host::V4(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(ok("sip:127.0.0.1:5080").port, Some(5080));
        assert_eq!(
            ok("sip:u@010.0.0.1").host,
            Host::V4(Ipv4Addr::new(10, 0, 0, 1))
        );
        for bad in [
            "sip:u@",
            "sip:u@256.1.1.1",
            "sip:u@1.2.3",
            "sip:u@1.2.3.4.5",
            "sip:u@-a.com",
            "sip:u@a-.com",
            "sip:u@a..com",
            "sip:u@example.123",
            "sip:u@under_score.com",
            "sip:u@.",
            "sip:u@[2001:db8::1",
            "sip:u@[2001:db8::1]x",
            "sip:u@[example.com]",
        ] {
            assert_eq!(err(bad), UriError::BadHost, "{bad}");
        }
    }

    #[test]
    fn bare_ipv6_is_an_error() {
        // RFC 5118 §4.2 ipv6-bad.
        assert_eq!(err("sip:2001:db8::10"), UriError::BadHost);
        assert_eq!(err("sip:user@2001:db8::10"), UriError::BadHost);
        assert_eq!(parse_host_port(b"2001:db8::10"), Err(UriError::BadHost));
    }

    #[test]
    fn ipv6_references_and_ports() {
        let v6 = |s: &str| Host::V6(s.parse().unwrap());
        // RFC 5118 §4.1 ipv6-good, §4.3 port-ambiguous, §4.4 port-unambiguous.
        let u = ok("sip:[2001:db8::10]");
        assert_eq!((u.user, u.host, u.port), (None, v6("2001:db8::10"), None));
        let u = ok("sip:[2001:db8::10:5070]");
        assert_eq!((u.host, u.port), (v6("2001:db8::10:5070"), None));
        let u = ok("sip:[2001:db8::10]:5070");
        assert_eq!((u.host, u.port), (v6("2001:db8::10"), Some(5070)));
        // §4.9 IPv4-mapped, §4.10 correct two-colon form.
        assert_eq!(
            ok("sip:ted@[::ffff:192.0.2.2]").host,
            v6("::ffff:192.0.2.2")
        );
        assert_eq!(
            ok("sip:user@[2001:db8::192.0.2.1]").host,
            v6("2001:db8::c000:201")
        );
        // §4.10 three-colon ABNF bug: refused (the RFC allows either outcome).
        assert_eq!(err("sip:user@[2001:db8:::192.0.2.1]"), UriError::BadHost);
    }

    #[test]
    fn ports_must_be_in_range() {
        assert_eq!(ok("sip:h:65535").port, Some(65535));
        assert_eq!(ok("sip:h:1").port, Some(1));
        assert_eq!(err("sip:h:65536"), UriError::BadPort);
        assert_eq!(err("sip:h:0"), UriError::BadPort);
        assert_eq!(err("sip:h:"), UriError::BadPort);
        assert_eq!(err("sip:h:5o60"), UriError::BadPort);
        assert_eq!(err("sip:h:99999999999999999999999"), UriError::BadPort);
        assert_eq!(err("sip:[::1]:65536"), UriError::BadPort);
    }

    #[test]
    fn via_sent_by_host_port() {
        let v6 = |s: &str| Host::V6(s.parse().unwrap());
        assert_eq!(
            parse_host_port(b"[::ffff:192.0.2.10]:19823"),
            Ok((v6("::ffff:192.0.2.10"), Some(19823)))
        );
        assert_eq!(
            parse_host_port(b"[2001:db8::9:1]:6050"),
            Ok((v6("2001:db8::9:1"), Some(6050)))
        );
        assert_eq!(
            parse_host_port(b"saturn.example.com:5060"),
            Ok((Host::Name(b"saturn.example.com"), Some(5060)))
        );
        assert_eq!(
            parse_host_port(b"192.0.2.1"),
            Ok((Host::V4(Ipv4Addr::new(192, 0, 2, 1)), None))
        );
        assert_eq!(parse_host_port(b""), Err(UriError::BadHost));
    }

    #[test]
    fn escapes_are_checked_and_decoded() {
        // RFC 4475 esc01.
        let u = ok("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user, Some(&b"sips%3Auser%40example.com"[..]));
        assert_eq!(u.host, name("example.net"));
        assert_eq!(
            unescape(u.user.unwrap()).unwrap(),
            &b"sips:user@example.com"[..]
        );
        let u = ok("sip:%75se%72@example.com");
        assert_eq!(unescape(u.user.unwrap()).unwrap(), &b"user"[..]);
        let u = ok("sip:I%20have%20spaces@example.net");
        assert_eq!(unescape(u.user.unwrap()).unwrap(), &b"I have spaces"[..]);
        let u = ok("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert!(u.has_lr(), "escaped parameter name matches");
        let v = u.param("name").flatten().unwrap();
        assert_eq!(v, b"v%61lue%25%34%31");
        assert_eq!(unescape(v).unwrap(), &b"value%41"[..]);
        // Borrowed when nothing is escaped.
        assert!(matches!(
            unescape(b"plain").unwrap(),
            Cow::Borrowed(b"plain")
        ));
        for bad in [
            "sip:%Zuser@h",
            "sip:user%4@h",
            "sip:user%@h",
            "sip:u@h;p=%G0",
            "sip:u:%4@h",
        ] {
            assert_eq!(err(bad), UriError::BadEscape, "{bad}");
        }
        assert_eq!(unescape(b"a%4"), Err(UriError::BadEscape));
        assert_eq!(unescape(b"%Z1"), Err(UriError::BadEscape));
    }

    #[test]
    fn escaped_nulls_are_valid() {
        // RFC 4475 escnull.
        let u = ok("sip:null-%00-null@example.com");
        assert_eq!(unescape(u.user.unwrap()).unwrap(), &b"null-\0-null"[..]);
        assert_eq!(
            unescape(ok("sip:%00@host5.example.com").user.unwrap()).unwrap(),
            &b"\0"[..]
        );
        let u = ok("sip:%00%00@host5.example.com");
        assert_eq!(unescape(u.user.unwrap()).unwrap(), &b"\0\0"[..]);
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        // RFC 4475 semiuri.
        let u = ok("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host, name("example.com"));
        assert_eq!(u.params, b"");
        assert_eq!(u.param("par"), None);
        // RFC 4475 intmeth.
        let u = ok("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert_eq!(u.host, name("example.com"));
        assert_eq!(u.headers, b"");
        // Without an '@' a '?' starts the headers.
        assert_eq!(ok("sip:host?x=y").headers, b"x=y");
        // A second '@' ends up in the user part, where it is refused.
        assert_eq!(err("sip:a@b@example.com"), UriError::BadUser);
    }

    #[test]
    fn params_are_validated_and_looked_up() {
        // RFC 4475 wsinv Route, inv2543.
        let u = ok("sip:services.example.com;lr;unknownwith=value;unknown-no-value");
        assert_eq!(u.user, None);
        assert!(u.has_lr());
        assert_eq!(u.param("UNKNOWNWITH"), Some(Some(&b"value"[..])));
        assert_eq!(u.param("unknown-no-value"), Some(None));
        assert_eq!(u.param("absent"), None);
        let u = ok("sip:+13035551111@ift.client.example.net;user=phone");
        assert!(u.user_is_phone());
        assert!(!ok("sip:a@b;user=ip").user_is_phone());
        assert!(!ok("sip:a@b").has_lr());
        let u = ok("sip:UserB@example.com;maddr=ss1.example.com");
        assert_eq!(u.maddr(), Some(&b"ss1.example.com"[..]));
        assert_eq!(
            ok("sip:a@b;maddr=[2001:db8::1]").maddr(),
            Some(&b"[2001:db8::1]"[..])
        );
        for bad in [
            "sip:a@b;;lr",
            "sip:a@b;",
            "sip:a@b;=x",
            "sip:a@b;x=",
            "sip:a@b;x=a=b",
            "sip:a@b;x=a,b",
        ] {
            assert_eq!(err(bad), UriError::BadParam, "{bad}");
        }
        assert_eq!(err("sip:a@b:5060x"), UriError::BadPort);
    }

    #[test]
    fn headers_are_validated() {
        let u = ok("sip:a@b?a=b&c=d");
        assert_eq!(u.headers, b"a=b&c=d");
        assert_eq!(u.params, b"");
        let u = ok("sip:a@b;lr?subject=");
        assert_eq!((u.params, u.headers), (&b";lr"[..], &b"subject="[..]));
        // RFC 4475 escruri, regescrt.
        let u = ok("sip:user@example.com?Route=%3Csip:example.com%3E");
        assert_eq!(u.headers, b"Route=%3Csip:example.com%3E");
        assert_eq!(
            unescape(u.headers).unwrap(),
            &b"Route=<sip:example.com>"[..]
        );
        assert_eq!(
            ok("sip:user@example.com?Route=%3Csip:sip.example.com%3E").host,
            name("example.com")
        );
        for bad in [
            "sip:a@b?",
            "sip:a@b?x",
            "sip:a@b?=y",
            "sip:a@b?a=b&",
            "sip:a@b?a=b;c",
        ] {
            assert_eq!(err(bad), UriError::BadHeader, "{bad}");
        }
    }

    #[test]
    fn whitespace_and_delimiters_are_refused() {
        // RFC 4475 lwsruri, ltgtruri, badaspec.
        assert_eq!(err("sip:user@example.com; lr"), UriError::Whitespace);
        assert_eq!(err(" sip:t.watson@example.org "), UriError::Whitespace);
        assert_eq!(err("sip:a@b\r\n"), UriError::Whitespace);
        assert_eq!(err("<sip:user@example.com>"), UriError::BadChar(b'<'));
        assert_eq!(err("sip:\"a\"@b"), UriError::BadChar(b'"'));
        assert_eq!(err("sip:a@b\0"), UriError::BadChar(0));
        assert_eq!(Uri::parse(b"sip:\xc3\xa9@b"), Err(UriError::BadChar(0xc3)));
        assert_eq!(err("foo:a b"), UriError::Whitespace);
    }

    #[test]
    fn schemes_and_opaque_uris() {
        assert_eq!(err(""), UriError::Empty);
        assert_eq!(err("user@example.com"), UriError::NoScheme);
        assert_eq!(err(":x"), UriError::NoScheme);
        assert_eq!(err("1sip:x"), UriError::BadScheme);
        assert_eq!(err("s_p:x"), UriError::BadScheme);
        assert_eq!(err("foo:"), UriError::Empty);
        assert_eq!(err("sip:"), UriError::BadHost);
        // RFC 4475 unkscm, novelsc, unksm2.
        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "http://www.example.com",
            "name:John_Smith",
            "im:a+b-c.d@x",
        ] {
            let u = ok(s);
            assert_eq!(u.scheme, Scheme::Other, "{s}");
            assert_eq!((u.user, u.host, u.port), (None, Host::None, None));
            assert_eq!((u.params, u.headers), (&b""[..], &b""[..]));
            assert_eq!(u.raw, s.as_bytes());
        }
        assert_eq!(ok("sipx:whatever").scheme, Scheme::Other);
    }

    #[test]
    fn tel_uris() {
        let u = ok("tel:+1-201-555-0123");
        assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
        assert_eq!((u.host, u.port, u.params), (Host::None, None, &b""[..]));
        let u = ok("tel:+1(201)555.0123;ext=22;isub=1234");
        assert_eq!(u.user, Some(&b"+1(201)555.0123"[..]));
        assert_eq!(u.param("ext"), Some(Some(&b"22"[..])));
        let u = ok("tel:7042;phone-context=example.com");
        assert_eq!(u.user, Some(&b"7042"[..]));
        assert_eq!(u.param("phone-context"), Some(Some(&b"example.com"[..])));
        assert_eq!(
            ok("tel:863-1234;phone-context=+1-914-555").user,
            Some(&b"863-1234"[..])
        );
        assert_eq!(ok("tel:*21#;phone-context=+1").user, Some(&b"*21#"[..]));
        assert_eq!(
            err("tel:7042"),
            UriError::BadNumber,
            "local needs a context"
        );
        assert_eq!(err("tel:+"), UriError::BadNumber);
        assert_eq!(err("tel:+--"), UriError::BadNumber);
        assert_eq!(err("tel:+1a"), UriError::BadNumber);
        assert_eq!(err("tel:"), UriError::BadNumber);
        assert_eq!(err("tel:+1;;a"), UriError::BadParam);
        assert_eq!(err("tel:+1;a_b=1"), UriError::BadParam);
        assert_eq!(err("tel:1;phone-context="), UriError::BadParam);
        assert_eq!(err("tel:1;phone-context"), UriError::BadParam);
        assert_eq!(err("tel:1;phone-context=+x"), UriError::BadParam);
        assert_eq!(err("tel:+1?a=b"), UriError::BadNumber);
        assert_eq!(err("tel:+1;a=b?c=d"), UriError::BadParam);
    }

    #[test]
    fn corpus_header_uris_parse() {
        // RFC 4475 longreq: long user, port and long parameter names and values.
        let long = "sip:user@example.com:6000;unknownparam1=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue;longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=shortvalue;verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue";
        let u = ok(long);
        assert_eq!(u.port, Some(6000));
        assert_eq!(u.params().count(), 3);
        let u = ok("sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@host5.example.net");
        assert_eq!(u.user.map(<[u8]>::len), Some(115));
        // RFC 4475 wsinv, cparam, test; RFC 5118 contacts.
        for s in [
            "sip:vivekg@chair-dnrc.example.com;unknownparam",
            "sip:+19725552222@gw1.example.net;unknownparam",
            "sip:alan@jasomi.com",
            "sip:caller@[2001:db8::1]",
            "sip:caller@[2001:db8::9:1]",
            "sip:user@[2001:db8::10]",
            "sip:registrar.example.com",
        ] {
            ok(s);
        }
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z]([a-z0-9-]{0,8}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(s in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Uri::parse(&s);
            let _ = parse_host_port(&s);
            let _ = unescape(&s);
        }

        #[test]
        fn never_panics_on_uri_like_text(s in "(sip|sips|tel|x):[a-z0-9@:;=?&%\\[\\].+-]{0,40}") {
            if let Ok(u) = Uri::parse(s.as_bytes()) {
                let _ = (u.has_lr(), u.transport(), u.user_is_phone(), u.params().count());
            }
        }

        #[test]
        fn sip_parts_round_trip(
            user in "[a-zA-Z0-9_.!~*'()&=+$,?/-]{1,12}(%[0-9A-F]{2})?",
            labels in proptest::collection::vec(label(), 1..4),
            port in 1u16..=65535,
            params in proptest::collection::vec(("[a-z][a-z0-9-]{0,6}", proptest::option::of("[a-zA-Z0-9:+$_.]{1,8}")), 0..4),
        ) {
            let host = labels.join(".");
            let mut p = String::new();
            for (n, v) in &params {
                p.push(';');
                p.push_str(n);
                if let Some(v) = v {
                    p.push('=');
                    p.push_str(v);
                }
            }
            let s = format!("sip:{user}@{host}:{port}{p}");
            let u = Uri::parse(s.as_bytes()).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
            prop_assert_eq!(u.user, Some(user.as_bytes()));
            prop_assert_eq!(u.host, Host::Name(host.as_bytes()));
            prop_assert_eq!(u.port, Some(port));
            prop_assert_eq!(u.params, p.as_bytes());
            prop_assert_eq!(u.params().count(), params.len());
            for (n, v) in &params {
                let found = u.param(n);
                prop_assert!(found.is_some());
                if params.iter().filter(|(m, _)| m == n).count() == 1 {
                    prop_assert_eq!(found, Some(v.as_deref().map(str::as_bytes)));
                }
            }
        }
    }
}
