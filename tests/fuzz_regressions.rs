//! Inputs the fuzz targets in `fuzz/` found, minimised, each pinned as a test of the
//! behaviour it broke. Files named here live in `fuzz/regressions/`; a test states the
//! invariant violated, not a particular fix.

use bytes::Bytes;
use ocedge::sip::edit::Editor;
use ocedge::sip::message::Headers;
use ocedge::sip::response::{reply_for, to_tag_for};
use ocedge::sip::validate::{first_look, Decision};
use ocedge::sip::{HeaderName, Limits, Message};

/// Asserts that every line break inside a header value is a fold (CRLF then SP or HTAB), the
/// invariant `sip::message` documents and `sip::response` relies on when it copies values.
fn assert_values_stay_in_their_lines(headers: &Headers) {
    for h in headers.iter() {
        let value = headers.value_of(h);
        for (i, _) in value.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            assert!(
                i > 0
                    && value.get(i - 1) == Some(&b'\r')
                    && matches!(value.get(i + 1), Some(b' ' | b'\t')),
                "{} value holds a line that is not a fold: {:?}",
                String::from_utf8_lossy(headers.name_of(h)),
                String::from_utf8_lossy(value)
            );
        }
    }
}

/// The stateless reply to `request`; panics unless the validator decides to reply.
fn reply(request: &[u8]) -> Bytes {
    let limits = Limits::DEFAULT;
    let (msg, decision) = first_look(Bytes::copy_from_slice(request), &limits);
    assert!(matches!(decision, Decision::Reply { .. }), "{decision:?}");
    let headers = match msg {
        Some(m) => m.headers().clone(),
        None => Message::parse(Bytes::copy_from_slice(request), &limits)
            .unwrap_err()
            .headers
            .expect("a reply decision implies a header index"),
    };
    let tag = to_tag_for(&[7; 16], &headers);
    reply_for(&decision, &headers, tag.as_bytes()).expect("a reply")
}

/// fuzz target `validate` (minimised): `I CRLF V:ue CRLF : CRLF SP q CRLF`. The line `:` is
/// not a header line and is skipped, but the fold after it was attached to the Via before
/// it, so the Via value spanned the skipped line: `ue\r\n:\r\n q`.
#[test]
fn fold_after_a_skipped_header_line_does_not_extend_the_previous_value() {
    let input = include_bytes!("../fuzz/regressions/fold-after-bad-header-line");
    let f = Message::parse(Bytes::from_static(input), &Limits::DEFAULT).unwrap_err();
    let headers = f.headers.expect("headers are indexed for the 400");
    assert_values_stay_in_their_lines(&headers);
}

/// The same bug seen from the wire: a request with a malformed line followed by a fold gets
/// a 400 whose copied CSeq carries the malformed line, so the reply is not a SIP message
/// (ocedge's own parser refuses it) and request bytes outside the copied headers reach it.
#[test]
fn reply_to_a_request_with_a_malformed_folded_line_is_well_formed() {
    let request = b"INVITE sip:+14255550100@gw.example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc\r\n\
From: <sip:+12065550199@sip.pstnhub.microsoft.com>;tag=1\r\n\
To: <sip:+14255550100@gw.example.com>\r\n\
Call-ID: abc@1\r\n\
CSeq: 1 INVITE\r\n\
Not a header line\r\n\
\x20folded: onto it\r\n\
Content-Length: 0\r\n\
\r\n";
    let out = reply(request);
    let parsed = Message::parse(out.clone(), &Limits::DEFAULT).unwrap_or_else(|f| {
        panic!(
            "reply does not parse ({}): {:?}",
            f.error,
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(parsed.status(), Some(400));
    assert_eq!(parsed.header(HeaderName::CSeq), Some(&b"1 INVITE"[..]));
    assert!(
        !out.windows(17).any(|w| w == b"Not a header line"),
        "request line leaked"
    );
}

/// fuzz target `roundtrip`: a datagram that ends right after its start line (no header, no
/// blank line; the parser accepts a head the datagram boundary ends, RFC 4475 baddn). The
/// editor took the head to end in a blank line and cut the start line's CRLF, writing
/// `OPTIONS sip:a@b SIP/2.0Content-Length: 0` — a message that no longer parses.
#[test]
fn editing_a_message_without_headers_keeps_its_start_line() {
    let input = include_bytes!("../fuzz/regressions/edit-no-headers-no-blank-line");
    let msg = Message::parse(Bytes::from_static(input), &Limits::DEFAULT).unwrap();
    let out = Editor::new(&msg).finish();
    let again = Message::parse(out.clone(), &Limits::DEFAULT).unwrap_or_else(|f| {
        panic!(
            "edited message does not parse ({}): {:?}",
            f.error,
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(again.request_uri_bytes(), Some(&b"sip:a@b"[..]));
    assert_eq!(
        &out[..],
        b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    );
}

/// fuzz target `roundtrip` (minimised: ops push_via, decrement_max_forwards,
/// push_record_route on `SIP/2.0 200 OK CRLF`): the same cut CRLF on a response silently
/// moves the pushed Record-Route into the reason phrase (`200 OKRecord-Route: <…>`); the
/// output still parses, with one header less than was pushed.
#[test]
fn pushed_headers_of_a_start_line_only_response_stay_headers() {
    let input = include_bytes!("../fuzz/regressions/edit-response-start-line-only");
    let msg = Message::parse(Bytes::from_static(input), &Limits::DEFAULT).unwrap();
    let via = b"SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKfuzz0";
    let rr = b"<sip:edge.example.com;lr>";
    let mut ed = Editor::new(&msg);
    ed.push_via(via).unwrap();
    assert_eq!(ed.decrement_max_forwards(), Ok(70));
    ed.push_record_route(rr).unwrap();
    let out = ed.finish();
    let again = Message::parse(out.clone(), &Limits::DEFAULT).unwrap();
    assert_eq!(
        again.reason(),
        Some(&b"OK"[..]),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.header(HeaderName::RecordRoute), Some(&rr[..]));
    assert_eq!(again.header(HeaderName::Via), Some(&via[..]));
}
