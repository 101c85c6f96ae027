//! RFC 3339 date-times (RFC 6035's `START=`/`STOP=`), read leniently, as milliseconds since the
//! Unix epoch, UTC.

use crate::cdr::UtcMs;

/// `date-time` (RFC 3339 §5.6) in UTC ms, or `None`.
///
/// Lenient where reporters are: `t` or a space for `T`, `z` for `Z`, `,` for `.`, an offset with
/// or without its `:` or minutes (`+02:00`, `+0200`, `+02`), no zone at all (read as UTC).
/// Digits of a fraction past milliseconds are dropped; a leap second (`:60`) counts as the first
/// second of the next minute. Years 1970–9999; a time that is before the epoch once its offset
/// is applied is `None`.
pub(super) fn utc_ms(s: &str) -> Option<UtcMs> {
    let mut c = Cursor {
        b: s.trim().as_bytes(),
        i: 0,
    };
    let year = c.digits(4)?;
    c.eat(b"-")?;
    let month = c.digits(2)?;
    c.eat(b"-")?;
    let day = c.digits(2)?;
    c.eat(b"Tt ")?;
    let hour = c.digits(2)?;
    c.eat(b":")?;
    let minute = c.digits(2)?;
    c.eat(b":")?;
    let second = c.digits(2)?;
    let mut millis = 0;
    if c.eat(b".,").is_some() {
        let (start, mut scale) = (c.i, 100);
        while let Some(d) = c.digit() {
            millis += d * scale;
            scale /= 10;
        }
        if c.i == start {
            return None;
        }
    }
    let offset_min = match c.next() {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let h = c.digits(2)?;
            let _ = c.eat(b":");
            let m = if c.at_end() { 0 } else { c.digits(2)? };
            if h > 23 || m > 59 {
                return None;
            }
            let offset = i64::from(h * 60 + m);
            if sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        Some(_) => return None,
    };
    let valid = c.at_end()
        && year >= 1970
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let seconds = i64::from((hour * 60 + minute) * 60 + second);
    let local = days_from_civil(year, month, day) * 86_400_000 + seconds * 1000 + i64::from(millis);
    UtcMs::try_from(local - offset_min * 60_000).ok()
}

/// A read position in the date-time; every read is checked.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.b.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn digit(&mut self) -> Option<u32> {
        let d = char::from(*self.b.get(self.i)?).to_digit(10)?;
        self.i += 1;
        Some(d)
    }

    /// Exactly `n` decimal digits (n ≤ 4, so no overflow).
    fn digits(&mut self, n: usize) -> Option<u32> {
        (0..n).try_fold(0, |v, _| Some(v * 10 + self.digit()?))
    }

    /// One byte out of `any`.
    fn eat(&mut self, any: &[u8]) -> Option<()> {
        let b = *self.b.get(self.i)?;
        any.contains(&b).then(|| self.i += 1)
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::utc_ms;

    #[test]
    fn date_times_read_leniently_to_utc_ms() {
        let base = 1_097_432_623_000;
        for (text, expected) in [
            ("2004-10-10T18:23:43Z", Some(base)),
            ("2004-10-10T18:23:43.2Z", Some(base + 200)),
            ("2004-10-10t18:23:43,123456z", Some(base + 123)),
            ("2004-10-10 18:23:43", Some(base)),
            ("2004-10-10T20:23:43+02:00", Some(base)),
            ("2004-10-10T20:23:43+0200", Some(base)),
            ("2004-10-10T20:23:43+02", Some(base)),
            ("2004-10-10T13:23:43-05:00", Some(base)),
            ("2004-10-10T18:23:60Z", Some(base + 17_000)),
            ("2024-02-29T23:59:59Z", Some(1_709_251_199_000)),
            ("2100-03-01T00:00:00Z", Some(4_107_542_400_000)),
            ("9999-12-31T23:59:59Z", Some(253_402_300_799_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:00+01:00", None),
            ("1969-12-31T23:59:59Z", None),
            ("2023-02-29T00:00:00Z", None),
            ("2004-10-10T18:23:43.Z", None),
            ("2004-10-10T18:23:43Zjunk", None),
            ("2004-10-10T24:00:00Z", None),
            ("2004-10-10T18:23:43+24:00", None),
            ("2004-10-10", None),
            ("", None),
        ] {
            assert_eq!(utc_ms(text), expected, "{text}");
        }
    }
}
