//! Checks shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets stay thin: they turn libFuzzer's bytes into calls of ocedge's library. What
//! several of them assert about a parsed [`Message`] (every typed accessor runs without
//! panicking, and the parser's cheap structural invariants hold) lives here once.
#![forbid(unsafe_code)]

use ocedge::sip::headers::NameAddr;
use ocedge::sip::lex;
use ocedge::sip::message::{Headers, Message, ParseFailure, StartLine};
use ocedge::sip::uri::{unescape, Uri};
use ocedge::sip::{HeaderName, Limits};

/// Every header kind that has its own typed accessor, for `option_tags`.
const OPTION_TAG_HEADERS: [HeaderName; 3] = [
    HeaderName::Require,
    HeaderName::Supported,
    HeaderName::ProxyRequire,
];

/// Calls every typed accessor of `m` and asserts the invariants `Message::parse` documents.
/// `input` is the buffer `m` was parsed from; `limits` the limits it was parsed with.
pub fn check_message(m: &Message, input: &[u8], limits: &Limits) {
    check_structure(m, input, limits);
    check_accessors(m);
}

/// Invariants of what `Message::parse` returns for refused input: the error maps to a reply
/// status, and the header index kept for that reply (see `check_headers`) is sound.
pub fn check_failure(f: &ParseFailure) {
    let _ = f.error.to_string();
    assert!(
        matches!(f.error.status(), 400 | 414 | 505 | 513),
        "status {}",
        f.error.status()
    );
    if let Some(h) = &f.headers {
        check_headers(h);
    }
}

/// A header index is what replies are built from (`sip::response` copies values verbatim),
/// so every value must stay inside its own header line: a CRLF inside a value is a fold,
/// always followed by SP or HTAB (`sip::message` module doc).
pub fn check_headers(headers: &Headers) {
    for h in headers.iter() {
        let value = headers.value_of(h);
        assert!(
            folds_only(value),
            "header value holds a line break that is not a fold: {:?}",
            String::from_utf8_lossy(value)
        );
        assert!(
            h.value.start >= h.line.start && h.value.end <= h.line.end,
            "value outside its line"
        );
    }
}

/// True when every CR or LF in `value` is part of a fold (CRLF followed by SP or HTAB).
pub fn folds_only(value: &[u8]) -> bool {
    value.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => value.get(i + 1) == Some(&b'\n') && matches!(value.get(i + 2), Some(b' ' | b'\t')),
        b'\n' => i > 0 && value.get(i - 1) == Some(&b'\r'),
        _ => true,
    })
}

/// Structural invariants of a parsed message (see `sip::message`'s module doc).
fn check_structure(m: &Message, input: &[u8], limits: &Limits) {
    assert!(
        input.len() <= limits.max_message,
        "oversize message accepted"
    );
    let bytes = m.as_bytes();
    assert!(
        input.starts_with(bytes),
        "as_bytes() is not a prefix of the input"
    );
    assert!(m.head_end() <= bytes.len(), "head ends after the message");
    let body = m.body_span();
    assert_eq!(
        body.start as usize,
        m.head_end(),
        "body does not follow the head"
    );
    assert_eq!(
        body.end as usize,
        bytes.len(),
        "as_bytes() does not end with the body"
    );
    assert!(
        m.body().len() <= limits.max_body,
        "body over max_body accepted"
    );
    if let Some(cl) = m.content_length() {
        assert_eq!(
            m.body().len(),
            cl as usize,
            "body length differs from Content-Length"
        );
    }
    assert!(
        m.headers().len() <= limits.max_headers,
        "too many headers accepted"
    );
    check_headers(m.headers());
    for h in m.headers().iter() {
        let name = m.headers().name_of(h);
        assert!(
            lex::is_token_str(name),
            "header name is not a token: {name:?}"
        );
        assert_eq!(
            HeaderName::classify(name),
            h.kind,
            "header kind misclassified"
        );
        assert_eq!(
            h.line.start, h.name.start,
            "header line does not start with its name"
        );
        assert!(h.name.end < h.value.start, "header value overlaps its name");
        assert!(h.value.end <= h.line.end && (h.line.end as usize) <= m.head_end());
        let value = m.headers().value_of(h);
        assert_eq!(value.len(), h.value.len(), "value span outside the buffer");
        assert!(
            !matches!(value.first(), Some(b' ' | b'\t'))
                && !matches!(value.last(), Some(b' ' | b'\t')),
            "header value not trimmed: {value:?}"
        );
    }
    match *m.start_line() {
        StartLine::Request { uri, .. } => {
            assert!(m.is_request() && m.status().is_none());
            assert!(
                uri.len() <= limits.max_uri,
                "Request-URI over max_uri accepted"
            );
            // The request line checks the URI's shape only; the full grammar is part of
            // `core()`, so a message whose core parses has a Request-URI that parses.
            assert!(
                m.core().is_err() || m.request_uri().is_some(),
                "core accepted a Request-URI that does not parse"
            );
            assert!(m.method_str().is_some_and(lex::is_token_str));
        }
        StartLine::Response { status, .. } => {
            assert!(!m.is_request() && m.method().is_none());
            assert!((100..=699).contains(&status), "status {status} accepted");
            assert!(m.reason().is_some());
        }
    }
}

/// Runs every lazy typed accessor; asserts the consistency rules between them.
fn check_accessors(m: &Message) {
    let vias = m.vias();
    let top = m.top_via();
    if let Ok(core) = m.core() {
        let vias = vias
            .as_ref()
            .expect("core() accepted Vias that vias() refuses");
        assert_eq!(
            vias.len(),
            core.via_count,
            "Via count differs between core() and vias()"
        );
        assert_eq!(vias.first(), Some(&core.via));
        assert_eq!(
            top.as_ref().ok(),
            Some(&core.via),
            "top_via() differs from core().via"
        );
        assert!(core.via_count >= 1);
        check_name_addr(&core.from);
        check_name_addr(&core.to);
        assert!(!core.call_id.is_empty());
        assert!(core.cseq.seq < 1 << 31);
        if let Some(method) = m.method_str() {
            assert_eq!(core.cseq.method_raw, method);
        }
        let _ = (core.from.tag(), core.to.tag(), core.from.display_unquoted());
    }
    if let Ok(vias) = &vias {
        for v in vias {
            let _ = (
                v.branch(),
                v.received(),
                v.rport(),
                v.maddr(),
                v.is_rfc3261_branch(),
            );
        }
    }
    if let Ok((contacts, _star)) = m.contacts() {
        contacts.iter().for_each(check_name_addr);
    }
    let lists = [m.routes(), m.record_routes(), m.p_asserted_identity()];
    for list in lists.into_iter().flatten() {
        list.iter().for_each(check_name_addr);
    }
    for kind in OPTION_TAG_HEADERS {
        if let Ok(tags) = m.option_tags(kind) {
            assert!(
                tags.iter().all(|t| lex::is_token_str(t)),
                "option tag not a token"
            );
        }
    }
    let _ = (m.session_expires(), m.min_se(), m.content_type(), m.event());
    let _ = (
        m.privacy(),
        m.request_uri_routable(),
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
    );
    let _ = m.header_by_name("X-MS-TenantID").count();
    let _ = m.header_by_name("l").count();
    if let Some(uri) = m.request_uri() {
        check_uri(&uri);
    }
}

fn check_name_addr(n: &NameAddr<'_>) {
    let _ = (n.tag(), n.param("expires"), n.display_unquoted());
    check_uri(&n.uri);
}

/// Invariants of any URI `Uri::parse` accepted (see `sip::uri`'s module doc): every escape
/// decodes, it re-parses to itself, and the accessors run.
pub fn check_uri(uri: &Uri<'_>) {
    assert_eq!(
        Uri::parse(uri.raw).as_ref(),
        Ok(uri),
        "URI does not re-parse to itself"
    );
    for part in [uri.user, uri.password].into_iter().flatten() {
        assert!(
            unescape(part).is_ok(),
            "accepted URI has a bad escape: {part:?}"
        );
    }
    for p in uri.params() {
        assert!(
            unescape(p.name).is_ok(),
            "accepted URI parameter has a bad escape"
        );
        if let Some(v) = p.value {
            assert!(
                unescape(v).is_ok(),
                "accepted URI parameter has a bad escape"
            );
        }
    }
    let _ = (
        uri.has_lr(),
        uri.user_is_phone(),
        uri.transport(),
        uri.maddr(),
        uri.param("user"),
    );
}
