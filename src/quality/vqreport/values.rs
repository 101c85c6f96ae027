//! Value parsers and the parameter tokenizer of a report.
//!
//! A value parser gets the text of one value, never empty or `unavailable` (those are `None`
//! before it is called), and returns the typed value or a static reason. Types and ranges follow
//! RFC 6035 §4.6.1 and the RTCP XR VoIP metrics block (RFC 3611 §4.7) it carries: percentages
//! 0–100, MOS 1.0–5.0, R factors 0–120, two-bit codes 0–3.

use std::net::IpAddr;

use super::fields::{Direction, Severity};

/// No value: empty, `-` or `unavailable` (any case).
pub(super) fn unavailable(v: &str) -> bool {
    v.is_empty() || v == "-" || v.eq_ignore_ascii_case("unavailable")
}

const NOT_INTEGER: &str = "not an integer";
const NEGATIVE: &str = "negative value for an unsigned metric";
const OUT_OF_RANGE: &str = "number out of range";

/// Decimal digits only, to `u64`.
fn digits(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() {
        return Err(NOT_INTEGER);
    }
    s.bytes().try_fold(0u64, |n, b| {
        let d = match b {
            b'0'..=b'9' => u64::from(b - b'0'),
            _ => return Err(NOT_INTEGER),
        };
        n.checked_mul(10)
            .and_then(|n| n.checked_add(d))
            .ok_or(OUT_OF_RANGE)
    })
}

/// An unsigned integer, an optional `+` before it.
pub(super) fn uint<T: TryFrom<u64>>(s: &str) -> Result<T, &'static str> {
    if let Some(rest) = s.strip_prefix('-') {
        let numeric = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        return Err(if numeric { NEGATIVE } else { NOT_INTEGER });
    }
    let n = digits(s.strip_prefix('+').unwrap_or(s))?;
    T::try_from(n).map_err(|_| OUT_OF_RANGE)
}

/// An unsigned integer no larger than `max`.
fn bounded(s: &str, max: u8, reason: &'static str) -> Result<u8, &'static str> {
    uint(s).and_then(|n: u8| if n <= max { Ok(n) } else { Err(reason) })
}

pub(super) fn payload_type(s: &str) -> Result<u8, &'static str> {
    bounded(s, 127, "payload type above 127")
}

pub(super) fn code(s: &str) -> Result<u8, &'static str> {
    bounded(s, 3, "code outside 0-3")
}

pub(super) fn jb_rate(s: &str) -> Result<u8, &'static str> {
    bounded(s, 15, "jitter buffer rate outside 0-15")
}

pub(super) fn r_factor(s: &str) -> Result<u8, &'static str> {
    bounded(s, 120, "R factor above 120")
}

/// A signed level in dB, `-` allowed.
pub(super) fn level(s: &str) -> Result<i16, &'static str> {
    let (negative, magnitude) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = i64::try_from(digits(magnitude)?).map_err(|_| OUT_OF_RANGE)?;
    i16::try_from(if negative { -n } else { n }).map_err(|_| OUT_OF_RANGE)
}

/// A finite, non-negative decimal number.
fn number(s: &str) -> Result<f32, &'static str> {
    let x: f32 = s.parse().map_err(|_| "not a number")?;
    if !x.is_finite() {
        Err("not a finite number")
    } else if x < 0.0 {
        Err(NEGATIVE)
    } else {
        Ok(x)
    }
}

pub(super) fn percent(s: &str) -> Result<f32, &'static str> {
    number(s).and_then(|x| {
        if x <= 100.0 {
            Ok(x)
        } else {
            Err("percentage above 100")
        }
    })
}

pub(super) fn mos(s: &str) -> Result<f32, &'static str> {
    let x = number(s)?;
    if (1.0..=5.0).contains(&x) {
        Ok(x)
    } else {
        Err("MOS outside 1.0-5.0")
    }
}

pub(super) fn text(s: &str) -> Result<String, &'static str> {
    Ok(s.to_owned())
}

pub(super) fn on_off(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err("not on or off"),
    }
}

pub(super) fn severity(s: &str) -> Result<Severity, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "warning" => Ok(Severity::Warning),
        "critical" => Ok(Severity::Critical),
        "clear" => Ok(Severity::Clear),
        _ => Err("not Warning, Critical or Clear"),
    }
}

pub(super) fn direction(s: &str) -> Result<Direction, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "local" => Ok(Direction::Local),
        "remote" => Ok(Direction::Remote),
        _ => Err("not local or remote"),
    }
}

pub(super) fn ip_addr(s: &str) -> Result<IpAddr, &'static str> {
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    bare.unwrap_or(s).parse().map_err(|_| "not an IP address")
}

pub(super) fn ssrc(s: &str) -> Result<u32, &'static str> {
    const NOT_SSRC: &str = "not an SSRC (0x and 1-8 hex digits)";
    let prefixed = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
    if prefixed.is_none() && s.bytes().all(|b| b.is_ascii_digit()) {
        return uint(s).map_err(|_| NOT_SSRC);
    }
    let hex = prefixed.unwrap_or(s);
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NOT_SSRC);
    }
    u32::from_str_radix(hex, 16).map_err(|_| NOT_SSRC)
}

/// Six octets as 12 hex digits, optionally separated by `:`, `-` or `.`.
pub(super) fn mac(s: &str) -> Result<[u8; 6], &'static str> {
    const NOT_MAC: &str = "not a MAC address";
    let mut value = 0u64;
    let mut count = 0;
    for c in s.chars() {
        if let Some(d) = c.to_digit(16) {
            count += 1;
            if count > 12 {
                return Err(NOT_MAC);
            }
            value = (value << 4) | u64::from(d);
        } else if !matches!(c, ':' | '-' | '.') {
            return Err(NOT_MAC);
        }
    }
    if count != 12 {
        return Err(NOT_MAC);
    }
    let b = value.to_be_bytes();
    Ok([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// `KEY=value` pairs of a parameter list; value `None` for a token without `=`.
///
/// Whitespace and commas separate parameters and may stand around `=` (`RTD = 200`); a value
/// may be double-quoted (quotes removed; an unclosed quote runs to the end). After `=` and
/// whitespace, a token that itself holds `=` is the next parameter rather than this one's
/// value, so `IP= PORT=5000` reads as an empty IP and a port.
pub(super) fn params(s: &str) -> Params<'_> {
    Params { rest: s }
}

/// The iterator [`params`] returns.
pub(super) struct Params<'a> {
    rest: &'a str,
}

/// Where a value token that ends at `end` really ends: past a time after one space when the
/// token is a date (`2026-11-26 22:06:00Z`; RFC 3339 §5.6 lets a space stand for `T`).
fn date_time_end(s: &str, end: usize) -> usize {
    let date = s.get(..end).is_some_and(|d| {
        d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            })
    });
    let time = s
        .get(end..)
        .and_then(|t| t.strip_prefix(' '))
        .unwrap_or_default();
    let clock = time.as_bytes();
    let hours = clock
        .get(..2)
        .is_some_and(|h| h.iter().all(u8::is_ascii_digit));
    if date && hours && clock.get(2) == Some(&b':') {
        end + 1 + time.find(is_sep).unwrap_or(time.len())
    } else {
        end
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_sep(c: char) -> bool {
    c.is_ascii_whitespace() || c == ','
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches(is_sep);
        let key_end = s.find(|c| is_sep(c) || c == '=').unwrap_or(s.len());
        let (key, after_key) = s.split_at_checked(key_end).unwrap_or((s, ""));
        self.rest = after_key;
        if s.is_empty() {
            return None;
        }
        let Some(after_eq) = after_key.trim_start_matches(is_space).strip_prefix('=') else {
            return Some((key, None));
        };
        let start = after_eq.trim_start_matches(is_space);
        let (value, rest) = if let Some(quoted) = start.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            let end = start.find(is_sep).unwrap_or(start.len());
            let split = start.split_at_checked(date_time_end(start, end));
            let (token, rest) = split.unwrap_or((start, ""));
            if start.len() != after_eq.len() && token.contains('=') {
                ("", start)
            } else {
                (token, rest)
            }
        };
        self.rest = rest;
        Some((key, Some(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::{mac, params};

    #[test]
    fn parameters_split_the_way_vendors_write_them() {
        let all = |s| params(s).collect::<Vec<_>>();
        assert_eq!(
            all("IP= PORT=5000"),
            [("IP", Some("")), ("PORT", Some("5000"))]
        );
        assert_eq!(
            all("RTD = 200 ,ESD=1"),
            [("RTD", Some("200")), ("ESD", Some("1"))]
        );
        assert_eq!(
            all(r#"FMTP="a=b c" PLC=3"#),
            [("FMTP", Some("a=b c")), ("PLC", Some("3"))]
        );
        assert_eq!(all(r#"FMTP="open"#), [("FMTP", Some("open"))]);
        assert_eq!(all("CallTerm =x"), [("CallTerm", Some("x"))]);
        assert_eq!(
            all("START=2026-11-26 22:06:00Z STOP=2026-11-26 x"),
            [
                ("START", Some("2026-11-26 22:06:00Z")),
                ("STOP", Some("2026-11-26")),
                ("x", None),
            ]
        );
        assert_eq!(all(" =5 bare"), [("", Some("5")), ("bare", None)]);
        assert_eq!(all("  "), []);
    }

    #[test]
    fn addresses_in_their_vendor_forms() {
        assert_eq!(
            mac("00:1F:5b:cc:21:0f"),
            Ok([0x00, 0x1f, 0x5b, 0xcc, 0x21, 0x0f])
        );
        assert_eq!(mac("001f.5bcc.210f"), mac("00-1f-5b-cc-21-0f"));
        assert!(
            mac("00:1f:5b:cc:21").is_err()
                && mac("00:1f:5b:cc:21:0f:00").is_err()
                && mac("g0:1f").is_err()
        );
        let ssrc = |v: &str| {
            crate::quality::vqreport::parse(
                format!("VQSessionReport\nLocalAddr:SSRC={v}").as_bytes(),
            )
            .local_addr
            .ssrc
        };
        assert_eq!(
            (ssrc("0x1"), ssrc("0XFFFFFFFF"), ssrc("ff"), ssrc("255")),
            (Some(1), Some(u32::MAX), Some(255), Some(255))
        );
        assert_eq!(
            (
                ssrc("0x100000000"),
                ssrc("4294967296"),
                ssrc("0x"),
                ssrc("+1")
            ),
            (None, None, None, None)
        );
    }
}
