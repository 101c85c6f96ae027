//! URIs and numbers: any bytes through `Uri::parse`, then E.164 extraction with and without a
//! default country code, and `E164::parse` on the input as text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocedge::sip::number::{e164_from_uri, NumberError, E164, MAX_DIGITS};
use ocedge::sip::uri::{unescape, Uri};

/// A number that exists is canonical: it re-parses to itself and displays as itself.
fn check_number(n: &E164) {
    let s = n.as_str();
    assert_eq!(E164::parse(s), Ok(*n), "E164 does not re-parse: {s}");
    assert_eq!(n.to_string(), s);
    let digits = n.digits();
    assert!((1..=MAX_DIGITS).contains(&digits.len()) && !digits.starts_with('0'));
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(uri) = Uri::parse(data) {
        ocedge_fuzz::check_uri(&uri);
        if let Some(user) = uri.user {
            assert!(unescape(user).is_ok());
        }
        let national = e164_from_uri(&uri, Some("1"));
        let strict = e164_from_uri(&uri, None);
        // An escape in a parsed URI is always valid, so BadEscape is for hand-built URIs only.
        assert_ne!(national, Err(NumberError::BadEscape));
        assert_ne!(strict, Err(NumberError::BadEscape));
        if let Ok(n) = &strict {
            // A default country code only matters for numbers that are not global.
            assert_eq!(
                national.as_ref(),
                Ok(n),
                "default cc changed a global number"
            );
        }
        for n in [national, strict].iter().flatten() {
            check_number(n);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = E164::parse(text) {
            assert_eq!(n.as_str(), text, "strict parse is not canonical");
            check_number(&n);
        }
    }
});
