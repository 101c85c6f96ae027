//! Transaction keys: which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3).
//!
//! A [`Key`] is an owned byte string of length-prefixed fields behind a kind byte, so two
//! keys are equal exactly when every field is equal (no hash collisions to reason about) and
//! fields cannot run into each other.
//!
//! - Server, RFC 3261 (top Via branch starts with `z9hG4bK`): branch, sent-by host
//!   (ASCII-lowercased) and port, and the method, with ACK counted as INVITE so an ACK finds
//!   the INVITE transaction it acknowledges. CANCEL keeps its own method, so it gets its own
//!   transaction; the INVITE it cancels is found by computing the key again as INVITE.
//! - Server, RFC 2543 (no magic cookie): Request-URI, From tag, Call-ID, CSeq number, the
//!   whole top Via value and the method (ACK as INVITE), all compared byte for byte. The To
//!   tag of §17.2.3 is left out: it is absent from the INVITE and present in its ACK, and a
//!   proxy forwards the tag it received rather than remembering it.
//! - Client (§17.1.3): the top Via branch of the response (which is ours) and the CSeq
//!   method.

use crate::sip::headers::HeaderError;
use crate::sip::uri::Host;
use crate::sip::{Message, Method};

/// An exact transaction key (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key(Box<[u8]>);

const SERVER_3261: u8 = 1;
const SERVER_2543: u8 = 2;
const CLIENT: u8 = 3;

/// The key of `kind` over `fields`, written into one allocation of its exact size (so that
/// the boxed slice takes it over without a reallocation).
fn key(kind: u8, fields: &[&[u8]]) -> Key {
    let size = 1 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut v = Vec::with_capacity(size);
    v.push(kind);
    for f in fields {
        // Messages are far below 4 GiB (sip::Limits), so the length always fits.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(f);
    }
    Key(v.into_boxed_slice())
}

/// The raw text of the top Via value (the first item of the first Via line).
pub(crate) fn top_via_raw(msg: &Message) -> Option<&[u8]> {
    msg.top_via_value().ok().filter(|v| !v.is_empty())
}

/// The server transaction key of request `msg`. `as_method` replaces the request's method
/// (CANCEL looks up its INVITE with `Some(b"INVITE")`); ACK always counts as INVITE.
pub(crate) fn server_key(msg: &Message, as_method: Option<&[u8]>) -> Result<Key, HeaderError> {
    let method = match (as_method, msg.method()) {
        (Some(m), _) => m,
        (None, Some(Method::Ack)) => b"INVITE",
        (None, _) => msg
            .method_str()
            .ok_or(HeaderError::Missing("request line"))?,
    };
    let via = msg.top_via()?;
    if let Some(branch) = via.rfc3261_branch() {
        // An address as a marker byte and its octets (no host name starts with a control
        // byte), so the same address written two ways is one key and nothing is formatted.
        let (mut ip, lower);
        let host: &[u8] = match via.host {
            Host::Name(n) => {
                lower = n.to_ascii_lowercase();
                &lower
            }
            Host::V4(a) => {
                ip = [4u8; 17];
                ip[1..5].copy_from_slice(&a.octets());
                &ip[..5]
            }
            Host::V6(a) => {
                ip = [6u8; 17];
                ip[1..].copy_from_slice(&a.octets());
                &ip[..]
            }
            Host::None => &[],
        };
        let port = via.port.map(u16::to_be_bytes);
        let port = port.as_ref().map_or(&[][..], |p| &p[..]);
        return Ok(key(SERVER_3261, &[branch, host, port, method]));
    }
    let from = msg.from_hdr()?;
    let cseq = msg.cseq()?;
    Ok(key(
        SERVER_2543,
        &[
            msg.request_uri_bytes().unwrap_or(&[]),
            from.tag().unwrap_or(&[]),
            msg.call_id()?,
            &cseq.seq.to_be_bytes(),
            top_via_raw(msg).unwrap_or(&[]),
            method,
        ],
    ))
}

/// The client transaction key: our branch and the CSeq method.
pub(crate) fn client_key(branch: &[u8], method: &[u8]) -> Key {
    key(CLIENT, &[branch, method])
}

/// The client key a response belongs to; `None` when its top Via has no branch.
pub(crate) fn response_key(msg: &Message) -> Result<Option<Key>, HeaderError> {
    let branch = msg.top_via_branch()?;
    let cseq = msg.cseq()?;
    Ok(branch.map(|b| client_key(b, cseq.method_raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, via: &str, extra: &str) -> Message {
        let s = format!(
            "{method} sip:+15551234567@sbc.example.net SIP/2.0\r\nVia: {via}\r\n\
             From: <sip:+15557654321@example.com>;tag=f1\r\nTo: <sip:+15551234567@example.net>{extra}\r\n\
             Call-ID: k1@example.com\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse_slice(s.as_bytes()).unwrap()
    }

    const VIA: &str = "SIP/2.0/UDP Proxy.Example.com:5060;branch=z9hG4bKabc";

    #[test]
    fn ack_matches_invite_and_cancel_has_its_own() {
        let invite = server_key(&req("INVITE", VIA, ""), None).unwrap();
        let ack = server_key(&req("ACK", VIA, ";tag=t9"), None).unwrap();
        let cancel = req("CANCEL", VIA, "");
        assert_eq!(invite, ack);
        assert_ne!(invite, server_key(&cancel, None).unwrap());
        assert_eq!(invite, server_key(&cancel, Some(b"INVITE")).unwrap());
        let bye = server_key(&req("BYE", VIA, ""), None).unwrap();
        assert_ne!(invite, bye);
    }

    #[test]
    fn sent_by_host_case_and_port_matter_as_rfc_says() {
        let a = server_key(&req("INVITE", VIA, ""), None).unwrap();
        let lower = VIA.to_ascii_lowercase().replace("z9hg4bkabc", "z9hG4bKabc");
        assert_eq!(a, server_key(&req("INVITE", &lower, ""), None).unwrap());
        let other_port = VIA.replace(":5060", ":5070");
        assert_ne!(
            a,
            server_key(&req("INVITE", &other_port, ""), None).unwrap()
        );
        let other_branch = VIA.replace("abc", "abd");
        assert_ne!(
            a,
            server_key(&req("INVITE", &other_branch, ""), None).unwrap()
        );
    }

    #[test]
    fn rfc2543_requests_use_the_legacy_fields() {
        let via = "SIP/2.0/UDP 192.0.2.4;branch=legacy1";
        let invite = server_key(&req("INVITE", via, ""), None).unwrap();
        // The ACK for a non-2xx carries the To tag of the response: still the same key.
        let ack = server_key(&req("ACK", via, ";tag=t9"), None).unwrap();
        assert_eq!(invite, ack);
        let other = req("INVITE", via, "");
        let s = String::from_utf8(other.buf().to_vec()).unwrap();
        let changed = Message::parse_slice(s.replace("k1@", "k2@").as_bytes()).unwrap();
        assert_ne!(invite, server_key(&changed, None).unwrap());
        let no_branch = server_key(&req("INVITE", "SIP/2.0/UDP 192.0.2.4", ""), None).unwrap();
        assert_ne!(invite, no_branch);
    }

    #[test]
    fn response_keys_use_branch_and_cseq_method() {
        let r = Message::parse_slice(
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKx1, SIP/2.0/UDP b;branch=z9hG4bKy\r\n\
              From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            response_key(&r).unwrap(),
            Some(client_key(b"z9hG4bKx1", b"INVITE"))
        );
        assert_ne!(
            client_key(b"z9hG4bKx1", b"INVITE"),
            client_key(b"z9hG4bKx1", b"CANCEL")
        );
        assert_eq!(
            top_via_raw(&r),
            Some(&b"SIP/2.0/UDP a;branch=z9hG4bKx1"[..])
        );
    }
}
