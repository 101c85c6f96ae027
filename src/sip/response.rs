//! Responses the edge generates itself (RFC 3261 §8.2.6, §16.3 errors, 100 Trying).
//!
//! A local response is built from the request's header index ([`Headers`]), not a
//! [`super::Message`], so that a request whose start line or body was refused can still be
//! answered when its headers could be indexed ([`super::message::ParseFailure::headers`]).
//!
//! Invariants of every response built here:
//! - the status line is `SIP/2.0 NNN phrase` with `NNN` in 100..=699 and a phrase without
//!   control bytes (an unusable phrase is replaced by [`reason_phrase`]);
//! - every Via line of the request is copied in order with its value verbatim, then From,
//!   To (with a To-tag added when asked and none is present), Call-ID and CSeq, each the
//!   first such line of the request, verbatim; a header the request lacks is left out;
//! - nothing taken from the caller can split a line: extra headers whose name is not a token
//!   or whose value holds a control byte, and a To-tag that is not a token, are left out;
//! - exactly one `Content-Length`, equal to the body length.
//!
//! To-tags come from [`to_tag`]: a keyed hash (SipHash-2-4) of the dialog and transaction
//! identifiers, so a retransmitted request gets the same tag without any state, and the key
//! keeps tags unpredictable to peers. No randomness or clock is used here (sans-IO).

use bytes::Bytes;

use super::headers::{NameAddr, Via};
use super::lex;
use super::message::Headers;
use super::name::HeaderName;
use super::validate::Decision;

/// The reason phrase ocedge writes for a status code (RFC 3261 §21 and later registrations);
/// a class name for codes outside the table.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity Info",
        437 => "Unsupported Credential",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Builds a response to the request whose headers are `req` (see the module invariants).
///
/// `to_tag` is added to the To header unless it already has a tag; pass `None` for 100
/// Trying (RFC 3261 §8.2.6.2). `extra` headers come after CSeq in order; `body` is
/// `(content_type, bytes)`. A 100 Trying copies the request's Timestamp (§8.2.6.1). A
/// status outside 100..=699 is written as 500.
pub fn build_response(
    req: &Headers,
    status: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra: &[(&str, &[u8])],
    body: Option<(&[u8], &[u8])>,
) -> Bytes {
    let status = if (100..=699).contains(&status) {
        status
    } else {
        500
    };
    let reason = if usable_phrase(reason) {
        reason
    } else {
        reason_phrase(status)
    };
    let body_len = body.map_or(0, |(_, b)| b.len());
    let mut out = Vec::with_capacity(req.buf().len().min(2048) + body_len + 128);
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");

    for v in req.values(HeaderName::Via) {
        line(&mut out, b"Via", v);
    }
    if let Some(from) = req.first(HeaderName::From) {
        line(&mut out, b"From", from);
    }
    if let Some(to) = req.first(HeaderName::To) {
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(to);
        let tag = to_tag.filter(|t| lex::is_token_str(t));
        // A To that does not parse is copied as it is: guessing where a tag would go in it
        // could only make it worse.
        let untagged = NameAddr::parse(to, "To").is_ok_and(|n| n.tag().is_none());
        if let (Some(tag), true) = (tag, untagged) {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(call_id) = req.first(HeaderName::CallId) {
        line(&mut out, b"Call-ID", call_id);
    }
    if let Some(cseq) = req.first(HeaderName::CSeq) {
        line(&mut out, b"CSeq", cseq);
    }
    if status == 100 {
        if let Some(ts) = req.by_name("Timestamp").next() {
            line(&mut out, b"Timestamp", ts);
        }
    }
    for (name, value) in extra {
        let name = name.as_bytes();
        let safe = lex::is_token_str(name)
            && HeaderName::classify(name) != HeaderName::ContentLength
            && !value.iter().any(|&b| is_control(b));
        if safe {
            line(&mut out, name, value);
        }
    }
    if let Some((ct, _)) =
        body.filter(|(ct, _)| !ct.is_empty() && !ct.iter().any(|&b| is_control(b)))
    {
        line(&mut out, b"Content-Type", ct);
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body_len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if let Some((_, b)) = body {
        out.extend_from_slice(b);
    }
    Bytes::from(out)
}

/// The stateless reply for a validator decision, or `None` when the decision is not a reply.
///
/// The reason phrase is the decision's reason when it is printable (the validator writes
/// short texts such as `Too Many Hops` or `missing To header`), the table phrase otherwise;
/// a 420 lists the refused option tags in `Unsupported` (RFC 3261 §8.2.2.3). `to_tag` is
/// added to the To header of every final response; see [`to_tag`] for making one.
pub fn reply_for(decision: &Decision, req: &Headers, to_tag: &[u8]) -> Option<Bytes> {
    let Decision::Reply {
        status,
        reason,
        unsupported,
    } = decision
    else {
        return None;
    };
    let mut tags = Vec::new();
    for t in unsupported
        .iter()
        .filter(|t| lex::is_token_str(t.as_bytes()))
    {
        if !tags.is_empty() {
            tags.extend_from_slice(b", ");
        }
        tags.extend_from_slice(t.as_bytes());
    }
    let extra = [("Unsupported", &tags[..])];
    let extra: &[(&str, &[u8])] = if *status == 420 && !tags.is_empty() {
        &extra
    } else {
        &[]
    };
    let tag = (*status > 100).then_some(to_tag);
    Some(build_response(req, *status, reason, tag, extra, None))
}

/// A To-tag made by [`to_tag`]: 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToTag([u8; 16]);

impl ToTag {
    /// The tag text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for ToTag {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A deterministic To-tag for a local response: SipHash-2-4 under `key` (a per-process or
/// per-cluster secret the caller supplies) over the Call-ID, the From tag and the top Via
/// branch. A retransmission of the request therefore gets the same tag, and a peer cannot
/// predict tags without the key. SipHash is implemented here rather than taken from `std`,
/// whose hasher output may change between Rust releases, so that nodes sharing a key agree.
pub fn to_tag(key: &[u8; 16], call_id: &[u8], from_tag: &[u8], branch: &[u8]) -> ToTag {
    let mut h = SipHasher::new(key);
    for field in [call_id, from_tag, branch] {
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        h.write(&(field.len() as u64).to_le_bytes());
        h.write(field);
    }
    let v = h.finish();
    let mut out = [0u8; 16];
    for (i, d) in out.iter_mut().enumerate() {
        let nibble = (v >> (60 - 4 * i)) & 0xf;
        *d = b"0123456789abcdef"
            .get(nibble as usize)
            .copied()
            .unwrap_or(b'0');
    }
    ToTag(out)
}

/// [`to_tag`] with the inputs read from a request's headers; a missing or malformed piece
/// counts as empty, so even a request refused for a bad From gets a stable tag.
pub fn to_tag_for(key: &[u8; 16], req: &Headers) -> ToTag {
    let call_id = req.first(HeaderName::CallId).map_or(&[][..], lex::trim);
    let from_tag = req
        .first(HeaderName::From)
        .and_then(|f| NameAddr::parse(f, "From").ok())
        .and_then(|n| n.tag())
        .unwrap_or(&[]);
    let mut top = None;
    if let Some(line) = req.first(HeaderName::Via) {
        // An unbalanced list leaves `top` empty: the branch then counts as empty.
        let _ = lex::for_each_item(line, |item| {
            top.get_or_insert(item);
        });
    }
    let branch = top
        .and_then(|v| Via::parse(v).ok())
        .and_then(|v| v.branch())
        .unwrap_or(&[]);
    to_tag(key, call_id, from_tag, branch)
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_control(b: u8) -> bool {
    (b < b' ' && b != b'\t') || b == 0x7f
}

fn usable_phrase(reason: &str) -> bool {
    !reason.trim().is_empty() && reason.len() <= 128 && !reason.bytes().any(is_control)
}

/// SipHash-2-4 (Aumasson and Bernstein), streaming, 64-bit output.
struct SipHasher {
    v: [u64; 4],
    tail: u64,
    ntail: u32,
    len: u64,
}

impl SipHasher {
    fn new(key: &[u8; 16]) -> SipHasher {
        let mut k = [0u64; 2];
        for (w, chunk) in k.iter_mut().zip(key.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        SipHasher {
            v: [
                k[0] ^ 0x736f_6d65_7073_6575,
                k[1] ^ 0x646f_7261_6e64_6f6d,
                k[0] ^ 0x6c79_6765_6e65_7261,
                k[1] ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.v;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.round();
        self.v[0] ^= m;
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.tail |= u64::from(b) << (8 * self.ntail);
            self.ntail += 1;
            self.len = self.len.wrapping_add(1);
            if self.ntail == 8 {
                let m = self.tail;
                self.compress(m);
                self.tail = 0;
                self.ntail = 0;
            }
        }
    }

    fn finish(mut self) -> u64 {
        let m = self.tail | ((self.len & 0xff) << 56);
        self.compress(m);
        self.v[2] ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;
    use crate::sip::validate::{decide, decide_failure};

    const REQ: &str = "INVITE sip:+14255550100@gw.example.com SIP/2.0\r\n\
v: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc, SIP/2.0/TLS 10.0.0.1;branch=z9hG4bKdef\r\n\
Via: SIP/2.0/UDP 10.0.0.2;received=10.0.0.3;branch=z9hG4bKghi\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:+12065550199@sip.pstnhub.microsoft.com>;tag=1\r\n\
To: <sip:+14255550100@gw.example.com>\r\n\
Call-ID: abc@1\r\n\
CSeq: 1 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\
\r\n";

    fn req(s: &str) -> Message {
        Message::parse_slice(s.as_bytes()).unwrap()
    }

    fn back(b: &Bytes) -> Message {
        Message::parse(b.clone(), &crate::sip::Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{:?}: {}", e.error, String::from_utf8_lossy(b)))
    }

    #[test]
    fn trying_copies_vias_and_dialog_headers_without_a_tag() {
        let m = req(REQ);
        let out = build_response(m.headers(), 100, reason_phrase(100), None, &[], None);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "SIP/2.0 100 Trying\r\n\
Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc, SIP/2.0/TLS 10.0.0.1;branch=z9hG4bKdef\r\n\
Via: SIP/2.0/UDP 10.0.0.2;received=10.0.0.3;branch=z9hG4bKghi\r\n\
From: \"Alice\" <sip:+12065550199@sip.pstnhub.microsoft.com>;tag=1\r\n\
To: <sip:+14255550100@gw.example.com>\r\n\
Call-ID: abc@1\r\n\
CSeq: 1 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\r\n"
        );
        let r = back(&out);
        assert_eq!(r.vias().unwrap(), m.vias().unwrap());
        assert_eq!(r.core().unwrap().cseq, m.core().unwrap().cseq);
    }

    #[test]
    fn final_response_adds_a_to_tag_once_extra_headers_and_body() {
        let m = req(REQ);
        let extra: &[(&str, &[u8])] = &[
            ("Retry-After", b"30"),
            ("Bad Name", b"x"),
            ("X-Inject", b"a\r\nVia: evil"),
            ("l", b"9"),
        ];
        let out = build_response(
            m.headers(),
            503,
            "Service Unavailable",
            Some(b"t0"),
            extra,
            Some((b"text/plain", b"busy")),
        );
        let r = back(&out);
        assert_eq!(r.status(), Some(503));
        assert_eq!(r.to_hdr().unwrap().tag(), Some(&b"t0"[..]));
        assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"30"[..]));
        assert_eq!(r.header_by_name("X-Inject").count(), 0);
        assert_eq!(r.headers().count(HeaderName::Via), 2);
        assert_eq!(r.headers().count(HeaderName::ContentLength), 1);
        assert_eq!(r.header(HeaderName::ContentType), Some(&b"text/plain"[..]));
        assert_eq!(r.body(), b"busy");
        assert!(
            r.header(HeaderName::Subject).is_none() && r.header(HeaderName::MaxForwards).is_none()
        );

        // A To that already has a tag is copied unchanged; a tag that is not a token is left out.
        let tagged = req(&REQ.replace("gw.example.com>\r\n", "gw.example.com>;tag=x9\r\n"));
        let out = build_response(tagged.headers(), 200, "OK", Some(b"t0"), &[], None);
        assert_eq!(back(&out).to_hdr().unwrap().tag(), Some(&b"x9"[..]));
        let out = build_response(m.headers(), 486, "Busy Here", Some(b"a;b"), &[], None);
        assert_eq!(back(&out).to_hdr().unwrap().tag(), None);
    }

    #[test]
    fn status_and_reason_are_sanitised() {
        let m = req(REQ);
        let out = build_response(m.headers(), 42, "x", None, &[], None);
        assert!(out.starts_with(b"SIP/2.0 500 x\r\n"));
        let out = build_response(m.headers(), 480, "bad\r\nVia: evil", Some(b"t"), &[], None);
        assert!(out.starts_with(b"SIP/2.0 480 Temporarily Unavailable\r\n"));
        assert_eq!(reason_phrase(483), "Too Many Hops");
        assert_eq!(reason_phrase(513), "Message Too Large");
        assert_eq!(reason_phrase(499), "Client Error");
        assert_eq!(reason_phrase(699), "Global Failure");
    }

    #[test]
    fn replies_for_validator_decisions() {
        let m = req(&REQ.replace(
            "Max-Forwards: 70",
            "Max-Forwards: 70\r\nProxy-Require: foo, bar",
        ));
        let out = reply_for(&decide(&m), m.headers(), b"t1").unwrap();
        let r = back(&out);
        assert_eq!(r.status(), Some(420));
        assert_eq!(r.reason(), Some(&b"Bad Extension"[..]));
        assert_eq!(r.header(HeaderName::Unsupported), Some(&b"foo, bar"[..]));
        assert_eq!(r.to_hdr().unwrap().tag(), Some(&b"t1"[..]));
        assert!(reply_for(&decide(&req(REQ)), m.headers(), b"t1").is_none());

        // A request whose start line is broken is still answered from its headers.
        let broken = REQ.replace("SIP/2.0\r\nv:", "SIP/3.0\r\nv:");
        let f = Message::parse_slice(broken.as_bytes()).unwrap_err();
        let h = f.headers.as_ref().unwrap();
        let out = reply_for(&decide_failure(&f), h, b"t1").unwrap();
        let r = back(&out);
        assert_eq!(r.status(), Some(505));
        assert_eq!(r.headers().count(HeaderName::Via), 2);
        assert_eq!(r.call_id(), Ok(&b"abc@1"[..]));
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0u8..15).collect();
        let mut h = SipHasher::new(&key);
        h.write(&msg[..4]);
        h.write(&msg[4..]);
        assert_eq!(h.finish(), 0xa129_ca61_49be_45e5);
        assert_eq!(SipHasher::new(&key).finish(), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn to_tags_are_stable_per_transaction_and_keyed() {
        let key = [7u8; 16];
        let m = req(REQ);
        let t = to_tag_for(&key, m.headers());
        assert_eq!(t, to_tag(&key, b"abc@1", b"1", b"z9hG4bKabc"));
        assert_eq!(
            t,
            to_tag_for(&key, req(REQ).headers()),
            "a retransmission gets the same tag"
        );
        assert!(lex::is_token_str(t.as_bytes()) && t.as_bytes().len() == 16);
        assert_ne!(t, to_tag_for(&[8u8; 16], m.headers()));
        assert_ne!(t, to_tag(&key, b"abc@1", b"1", b"z9hG4bKabd"));
        assert_ne!(
            to_tag(&key, b"ab", b"c", b""),
            to_tag(&key, b"a", b"bc", b"")
        );
        // Without From tag or Via the tag is still defined.
        let bare = req("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: abc@1\r\nl: 0\r\n\r\n");
        assert_eq!(
            to_tag_for(&key, bare.headers()),
            to_tag(&key, b"abc@1", b"", b"")
        );
    }
}
