//! When a certificate expires: the `notAfter` of an X.509 certificate, read with a minimal
//! DER walk (Certificate → TBSCertificate → Validity), for `/status` and alerts. Panic-free
//! on any input; `None` when the structure is not what RFC 5280 says.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// One DER element: its tag and contents, and what follows it.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let body = b.get(head..head.checked_add(len)?)?;
    Some((tag, body, b.get(head + len..)?))
}

/// `notAfter` of a DER certificate.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    for _ in 0..3 {
        // serialNumber, signature, issuer
        rest = tlv(rest)?.2;
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let after = tlv(validity)?.2; // skip notBefore
    let (tag, time, _) = tlv(after)?;
    parse_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
fn parse_time(tag: u8, t: &[u8]) -> Option<SystemTime> {
    let digits = |s: &[u8]| -> Option<u64> {
        s.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
        })
    };
    let (year, rest) = match tag {
        0x17 if t.len() == 13 => {
            let yy = digits(t.get(..2)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, t.get(2..)?)
        }
        0x18 if t.len() == 15 => (digits(t.get(..4)?)?, t.get(4..)?),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(rest.get(0..2)?)?;
    let day = digits(rest.get(2..4)?)?;
    let (h, m, s) = (
        digits(rest.get(4..6)?)?,
        digits(rest.get(6..8)?)?,
        digits(rest.get(8..10)?)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm), `None` before
/// 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// `notAfter` of the first certificate in a PEM file.
pub fn pem_file_not_after(path: &Path) -> Result<SystemTime, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| format!("{}: no certificate", path.display()))?
        .map_err(|e| format!("{}: {e:?}", path.display()))?;
    not_after(first.as_ref()).ok_or_else(|| format!("{}: unreadable validity", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["ocedge.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 15);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let t = not_after(cert.der()).expect("validity");
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        // 2031-07-15T00:00:00Z
        assert_eq!(secs, 1_941_840_000);
    }

    #[test]
    fn times_in_both_encodings_and_junk() {
        let utc = parse_time(0x17, b"491231235959Z").unwrap();
        assert_eq!(
            utc.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            2_524_607_999
        );
        let gen = parse_time(0x18, b"20500101000000Z").unwrap();
        assert_eq!(
            gen.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            2_524_608_000
        );
        assert!(parse_time(0x17, b"491331235959Z").is_none());
        assert!(parse_time(0x18, b"2050010100000Z").is_none());
        for junk in [
            &b""[..],
            b"\x30",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x30\x02\x30\x00",
        ] {
            assert!(not_after(junk).is_none());
        }
    }
}
