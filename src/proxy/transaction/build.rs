//! Requests the transaction layer writes itself: the hop-by-hop ACK for a non-2xx final
//! response (RFC 3261 §17.1.1.3) and the CANCEL of a pending INVITE (§9.1). Local responses
//! (100 Trying, 200 to CANCEL, 481) come from [`crate::sip::response::build_response`].
//!
//! Both requests are derived from the INVITE as we sent it, so their single Via is our own
//! top Via with the client transaction's branch, which is how the next hop matches them.
//! Invariants of the output:
//! - the Request-URI, the From and Call-ID values, the CSeq number and every Route value are
//!   those of the INVITE, copied verbatim (values the parser accepted, so they cannot split a
//!   line: a CRLF in a value span is always a fold);
//! - the To is the INVITE's for a CANCEL and the response's (with its tag) for an ACK;
//! - Max-Forwards is 70 and Content-Length is 0; nothing else is copied.

use bytes::Bytes;

use super::key::top_via_raw;
use crate::sip::name::HeaderName;
use crate::sip::Message;

/// The ACK for a non-2xx final `response` to our `invite`; `None` when either lacks a
/// header the ACK needs (we parsed both before, so this does not happen in practice).
pub(crate) fn ack(invite: &Message, response: &Message) -> Option<Bytes> {
    derived(invite, b"ACK", response.header(HeaderName::To)?)
}

/// The CANCEL for our pending `invite`.
pub(crate) fn cancel(invite: &Message) -> Option<Bytes> {
    derived(invite, b"CANCEL", invite.header(HeaderName::To)?)
}

fn derived(invite: &Message, method: &[u8], to: &[u8]) -> Option<Bytes> {
    let ruri = invite.request_uri_bytes()?;
    let via = top_via_raw(invite)?;
    let from = invite.header(HeaderName::From)?;
    let call_id = invite.header(HeaderName::CallId)?;
    let seq = invite.cseq().ok()?.seq;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(ruri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    line(&mut out, b"Via", via);
    for route in invite.headers().values(HeaderName::Route) {
        line(&mut out, b"Route", route);
    }
    line(&mut out, b"Max-Forwards", b"70");
    line(&mut out, b"From", from);
    line(&mut out, b"To", to);
    line(&mut out, b"Call-ID", call_id);
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\n");
    line(&mut out, b"Content-Length", b"0");
    out.extend_from_slice(b"\r\n");
    Some(Bytes::from(out))
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Method;

    const INVITE: &[u8] = b"INVITE sip:+15551234567@sbc1.carrier.net;user=phone SIP/2.0\r\n\
        Via: SIP/2.0/UDP edge.carrier.net;branch=z9hG4bKedge1, SIP/2.0/TLS sip.pstnhub.microsoft.com;branch=z9hG4bKms\r\n\
        Route: <sip:sbc-lb.carrier.net;lr>\r\n\
        Record-Route: <sip:edge.carrier.net;lr>\r\n\
        Max-Forwards: 69\r\n\
        From: \"Alice\" <sip:+15557654321@contoso.com>;tag=a1\r\n\
        To: <sip:+15551234567@carrier.net>\r\n\
        Call-ID: call-1@ms\r\n\
        CSeq: 42 INVITE\r\n\
        Contact: <sip:alice@ms>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    const BUSY: &[u8] = b"SIP/2.0 486 Busy Here\r\n\
        Via: SIP/2.0/UDP edge.carrier.net;branch=z9hG4bKedge1, SIP/2.0/TLS sip.pstnhub.microsoft.com;branch=z9hG4bKms\r\n\
        From: \"Alice\" <sip:+15557654321@contoso.com>;tag=a1\r\n\
        To: <sip:+15551234567@carrier.net>;tag=sbc9\r\n\
        Call-ID: call-1@ms\r\nCSeq: 42 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn ack_is_built_from_the_invite_and_the_response_to() {
        let invite = Message::parse_slice(INVITE).unwrap();
        let busy = Message::parse_slice(BUSY).unwrap();
        let ack = Message::parse(ack(&invite, &busy).unwrap(), &Default::default()).unwrap();
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.request_uri_bytes(), invite.request_uri_bytes());
        let core = ack.core().unwrap();
        assert_eq!(core.via_count, 1);
        assert_eq!(core.via.branch(), Some(&b"z9hG4bKedge1"[..]));
        assert_eq!((core.cseq.seq, core.cseq.method), (42, Method::Ack));
        assert_eq!(core.to.tag(), Some(&b"sbc9"[..]));
        assert_eq!(core.from.tag(), Some(&b"a1"[..]));
        assert_eq!(core.call_id, b"call-1@ms");
        assert_eq!(core.max_forwards, Some(70));
        assert_eq!(ack.routes().unwrap().len(), 1);
        assert!(ack.header(HeaderName::RecordRoute).is_none());
        assert!(ack.header(HeaderName::Contact).is_none());
        assert!(ack.body().is_empty());
    }

    #[test]
    fn cancel_keeps_the_invite_to_and_branch() {
        let invite = Message::parse_slice(INVITE).unwrap();
        let c = Message::parse(cancel(&invite).unwrap(), &Default::default()).unwrap();
        let core = c.core().unwrap();
        assert_eq!(c.method(), Some(Method::Cancel));
        assert_eq!(core.via.branch(), Some(&b"z9hG4bKedge1"[..]));
        assert_eq!((core.cseq.seq, core.cseq.method), (42, Method::Cancel));
        assert_eq!(core.to.tag(), None);
        assert_eq!(c.routes().unwrap().len(), 1);
    }
}
