//! Contact rewriting toward Microsoft, and its reverse.
//!
//! Microsoft's SIP proxies identify the carrier by the FQDN in the Contact of what it sends
//! them (the SBC FQDN paired in Teams), and send in-dialog requests to that Contact. The
//! carrier's SBCs write their own, usually private, address there. So every Contact of a
//! request or a 1xx/2xx response leaving toward Microsoft is rewritten (a 3xx's Contacts are
//! redirection targets and are left alone): the user part is kept, the host and port
//! become the address this gateway advertises on its Microsoft side, and the original URI
//! travels along, percent-encoded, in one URI parameter ([`ALIAS`]) — the way Kamailio's
//! `add_contact_alias` keeps the original address in `;alias=`. Microsoft echoes the URI as
//! the Request-URI of in-dialog requests (RFC 3261 §12.2.1.1), so when such a request reaches
//! us, [`original`] gives back the SBC's URI, which becomes the Request-URI forwarded to the
//! carrier. No state is kept: a gateway restarted mid-call still routes the call's BYE.
//!
//! The decoded URI is an address like any other the proxy resolves: it must name a
//! configured SBC or an address inside the carrier ACL (no open relay through a forged
//! parameter).

use std::fmt::Write;

use crate::sip::headers::NameAddr;
use crate::sip::uri::{Scheme, Uri};
use crate::transport::Transport;

/// The URI parameter carrying the original Contact URI.
pub const ALIAS: &str = "oc-alias";

/// Longest original URI carried (longer Contacts are left as they are): bounds what a
/// forged parameter can make us decode.
const MAX_URI: usize = 512;

/// Bytes kept as they are in the parameter value (RFC 3261 `paramchar` minus `%`).
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()[]/:&+$".contains(&b)
}

/// The rewritten Contact header value for `contacts` (every value of the message's Contact
/// lines), with `advertise` (`host:port`) as host and `transport` written as the URI's
/// transport parameter. `None` when nothing needs rewriting (no SIP/SIPS Contact) or a URI
/// is too long to carry; the caller then leaves the Contact alone.
pub fn rewrite(contacts: &[NameAddr<'_>], advertise: &str, transport: Transport) -> Option<String> {
    let mut out = String::with_capacity(128);
    let mut changed = false;
    for (i, c) in contacts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if let Some(d) = c.display {
            out.push_str(std::str::from_utf8(d).ok()?);
            out.push(' ');
        }
        out.push('<');
        let uri = &c.uri;
        if matches!(uri.scheme, Scheme::Sip | Scheme::Sips) && uri.raw.len() <= MAX_URI {
            changed = true;
            out.push_str(if uri.scheme == Scheme::Sips {
                "sips:"
            } else {
                "sip:"
            });
            if let Some(user) = uri.user {
                out.push_str(std::str::from_utf8(user).ok()?);
                out.push('@');
            }
            out.push_str(advertise);
            if transport != Transport::Udp {
                let _ = write!(out, ";transport={}", transport.as_str());
            }
            let _ = write!(out, ";{ALIAS}=");
            for &b in uri.raw {
                if plain(b) {
                    out.push(char::from(b));
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        } else {
            out.push_str(std::str::from_utf8(uri.raw).ok()?);
        }
        out.push('>');
        out.push_str(std::str::from_utf8(c.params).ok()?);
    }
    changed.then_some(out)
}

/// The original URI a rewritten Contact carried, if `uri` carries one that decodes to a
/// URI that parses.
pub fn original(uri: &Uri<'_>) -> Option<String> {
    let value = uri.param(ALIAS)??;
    if value.len() > 3 * MAX_URI {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            let n = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(n);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.iter().any(|&b| b <= b' ' || b == 0x7f) || Uri::parse(&out).is_err() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Message;

    fn contacts_of(value: &str) -> String {
        let raw = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContact: {value}\r\nl: 0\r\n\r\n"
        );
        let msg = Message::parse_slice(raw.as_bytes()).unwrap();
        let (c, _) = msg.contacts().unwrap();
        rewrite(&c, "edge.example.com:5061", Transport::Tls).unwrap()
    }

    fn back(rewritten: &str) -> Vec<String> {
        let raw = format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContact: {rewritten}\r\nl: 0\r\n\r\n"
        );
        let msg = Message::parse_slice(raw.as_bytes()).unwrap();
        let (c, _) = msg.contacts().unwrap();
        c.iter().map(|c| original(&c.uri).unwrap()).collect()
    }

    #[test]
    fn rewrites_host_keeps_user_and_header_params_and_carries_the_original() {
        let orig = "sip:+14255550100@10.0.0.5:5060;transport=udp;user=phone";
        let out = contacts_of(&format!(
            "\"Alice\" <{orig}>;expires=60;+sip.instance=\"x\""
        ));
        assert_eq!(
            out,
            "\"Alice\" <sip:+14255550100@edge.example.com:5061;transport=tls;oc-alias=\
             sip:+14255550100%4010.0.0.5:5060%3Btransport%3Dudp%3Buser%3Dphone>\
             ;expires=60;+sip.instance=\"x\""
        );
        assert_eq!(back(&out), [orig]);
    }

    #[test]
    fn round_trips_ipv6_escapes_and_several_values() {
        let a = "sip:%2B1%20x@[2001:db8::5]:5070;maddr=10.1.1.1?Subject=hi";
        let b = "sips:bob@sbc.internal";
        let out = contacts_of(&format!("<{a}>, {b}"));
        assert_eq!(back(&out), [a, b]);
        assert!(out.contains("<sips:bob@edge.example.com:5061;transport=tls;oc-alias="));
    }

    #[test]
    fn leaves_non_sip_contacts_and_refuses_forged_values() {
        let raw = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContact: <tel:+1555>\r\nl: 0\r\n\r\n";
        let msg = Message::parse_slice(raw.as_bytes()).unwrap();
        let (c, _) = msg.contacts().unwrap();
        assert_eq!(rewrite(&c, "e:5061", Transport::Tls), None);
        for bad in [
            "sip:x@e;oc-alias=%0D%0Asip:y@z",
            "sip:x@e;oc-alias=%4",
            "sip:x@e;oc-alias=not%20a%20uri",
            "sip:x@e;oc-alias=sip:y@z%3Bmaddr%3D%25",
            "sip:x@e;oc-alias",
            "sip:x@e",
        ] {
            // Either the URI itself is refused or it carries nothing usable.
            if let Ok(uri) = Uri::parse(bad.as_bytes()) {
                assert_eq!(original(&uri), None, "{bad}");
            }
        }
    }
}
