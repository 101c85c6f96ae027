//! Lexical helpers shared by every SIP grammar in this crate (RFC 3261 §25.1).
//!
//! All functions work on byte slices and return sub-slices or indexes that are always in
//! bounds; none of them can panic on any input. Header values handed to these helpers may
//! still contain line folding (CRLF followed by SP/HTAB), so "whitespace" here includes CR
//! and LF: the framer guarantees a CRLF inside a value is always a fold.

/// `token` characters (RFC 3261 §25.1) as a lookup table: the parser's innermost test.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// True for `token` characters: alphanumerics and `-.!%*_+`'~`.
#[inline]
pub fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// True when every byte is a token character and there is at least one.
#[inline]
pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// True for linear whitespace inside a (possibly folded) header value.
#[inline]
pub fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Removes leading and trailing linear whitespace.
pub fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_lws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_lws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Index of the first byte at or after `i` that is not linear whitespace (or `s.len()`).
#[inline]
pub fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// Error from [`split_list`]: a quoted string or an angle bracket never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbalanced;

/// Splits a header value on top-level commas: commas inside a quoted string (with `\`
/// escapes) or inside `<...>` do not split. Items are trimmed; empty items are kept so the
/// caller can decide whether they are an error.
pub fn split_list(s: &[u8]) -> Result<Vec<&[u8]>, Unbalanced> {
    let mut out = Vec::new();
    for_each_item(s, |item| out.push(item))?;
    Ok(out)
}

/// Like [`split_list`] without allocating: calls `f` for each trimmed item.
pub fn for_each_item<'a>(s: &'a [u8], mut f: impl FnMut(&'a [u8])) -> Result<(), Unbalanced> {
    // Jumps from one byte that matters to the next (SIMD search) instead of looking at every
    // byte: this runs for every Via, Route, Contact and list header the proxy reads.
    let mut start = 0;
    let mut i = 0;
    while let Some(j) = s
        .get(i..)
        .and_then(|rest| memchr::memchr3(b'"', b'<', b',', rest))
    {
        let at = i + j;
        match s.get(at) {
            Some(b',') => {
                f(trim(s.get(start..at).unwrap_or_default()));
                start = at + 1;
                i = at + 1;
            }
            Some(b'<') => {
                let rest = s.get(at + 1..).unwrap_or_default();
                i = at + 2 + memchr::memchr(b'>', rest).ok_or(Unbalanced)?;
            }
            _ => i = quoted_end(s, at).ok_or(Unbalanced)?,
        }
    }
    f(trim(s.get(start..).unwrap_or(&[])));
    Ok(())
}

/// Finds the end of a quoted string whose opening `"` is at `open`; returns the index just
/// past the closing quote, or `None` when it is never closed.
pub fn quoted_end(s: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Parses a decimal number made only of ASCII digits, refusing overflow of `max`.
pub fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    (v <= max).then_some(v)
}

/// One `;name[=value]` parameter of a header or URI, spans borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name, trimmed, as written.
    pub name: &'a [u8],
    /// Value, trimmed, quotes kept; `None` for a flag parameter.
    pub value: Option<&'a [u8]>,
}

/// Error from [`parse_params`]: an empty parameter (`;;`), a name that is not a token, or an
/// unterminated quoted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadParam;

/// Parses header parameters after a value: `s` starts at the first `;` (or is empty).
/// Whitespace is allowed around `;` and `=` (header parameters, not URI parameters).
pub fn parse_params(s: &[u8]) -> Result<Vec<Param<'_>>, BadParam> {
    let mut out = Vec::new();
    for_each_param(s, |p| {
        out.push(p);
        false
    })?;
    Ok(out)
}

/// Finds one header parameter by case-insensitive name without allocating: `Ok(None)` when
/// absent, `Ok(Some(None))` for a flag parameter. Stops at the first match, so only the
/// parameters before it are validated; use [`parse_params`] to validate all.
pub fn param<'a>(s: &'a [u8], name: &str) -> Result<Option<Option<&'a [u8]>>, BadParam> {
    let mut found = None;
    for_each_param(s, |p| {
        if p.name.eq_ignore_ascii_case(name.as_bytes()) {
            found = Some(p.value);
            return true;
        }
        false
    })?;
    Ok(found)
}

/// Walks `;name[=value]` parameters, calling `f` for each; `f` returns true to stop early.
pub fn for_each_param<'a>(
    s: &'a [u8],
    mut f: impl FnMut(Param<'a>) -> bool,
) -> Result<(), BadParam> {
    let mut i = skip_lws(s, 0);
    while i < s.len() {
        if s[i] != b';' {
            return Err(BadParam);
        }
        i = skip_lws(s, i + 1);
        let ns = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        let name = &s[ns..i];
        if name.is_empty() {
            return Err(BadParam);
        }
        i = skip_lws(s, i);
        let mut value = None;
        if i < s.len() && s[i] == b'=' {
            i = skip_lws(s, i + 1);
            let vs = i;
            if i < s.len() && s[i] == b'"' {
                i = quoted_end(s, i).ok_or(BadParam)?;
            } else if i < s.len() && s[i] == b'[' {
                // IPv6 reference as a value (Via received, maddr).
                while i < s.len() && s[i] != b']' {
                    i += 1;
                }
                if i == s.len() {
                    return Err(BadParam);
                }
                i += 1;
            } else {
                while i < s.len() && (is_token(s[i]) || s[i] == b':') {
                    i += 1;
                }
            }
            if i == vs {
                return Err(BadParam);
            }
            value = Some(&s[vs..i]);
            i = skip_lws(s, i);
        }
        if f(Param { name, value }) {
            return Ok(());
        }
    }
    Ok(())
}

/// Finds a parameter by case-insensitive name.
pub fn find_param<'a>(params: &[Param<'a>], name: &str) -> Option<Param<'a>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = split_list(br#""a,b" <sip:x@y;p=1,2>, <sip:z>"#).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], b"<sip:z>");
        assert_eq!(split_list(br#""open"#), Err(Unbalanced));
        assert_eq!(split_list(b"a,,b").unwrap(), vec![&b"a"[..], b"", b"b"]);
    }

    #[test]
    fn params_allow_lws_and_reject_empty() {
        let p = parse_params(b" ;  tag    = 1918181833n").unwrap();
        assert_eq!(p[0].name, b"tag");
        assert_eq!(p[0].value, Some(&b"1918181833n"[..]));
        let p = parse_params(b";received=[2001:db8::9:1];rport").unwrap();
        assert_eq!(p[0].value, Some(&b"[2001:db8::9:1]"[..]));
        assert_eq!(p[1].value, None);
        assert_eq!(parse_params(b";;"), Err(BadParam));
        assert_eq!(parse_params(b";a=\"x"), Err(BadParam));
        assert_eq!(parse_params(b";="), Err(BadParam));
    }

    #[test]
    fn decimal_refuses_overflow_and_junk() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"300", 255), None);
        assert_eq!(parse_decimal(b"36893488147419103232", u64::MAX), None);
        assert_eq!(parse_decimal(b"-1", 10), None);
        assert_eq!(parse_decimal(b"", 10), None);
    }
}

/// Why a Content-Length value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLength {
    /// A minus sign: RFC 4475 ncl.
    Negative,
    /// More digits than any body could have.
    Overflow,
    /// Empty, or not made of digits.
    NotANumber,
}

/// Parses a Content-Length value (surrounding whitespace and folding allowed). Values above
/// `u32::MAX` are `Overflow`; the caller compares against its own limit.
pub fn parse_content_length(v: &[u8]) -> Result<u32, BadLength> {
    let v = trim(v);
    if v.first() == Some(&b'-') {
        return Err(BadLength::Negative);
    }
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(BadLength::NotANumber);
    }
    parse_decimal(v, u64::from(u32::MAX))
        .map(|n| n as u32)
        .ok_or(BadLength::Overflow)
}
