//! The proxy's first, stateless look at a message (RFC 3261 §16.3 request validation, plus
//! what Kamailio's `sanity` module checks).
//!
//! Replies go to the source address of the packet or connection (RFC 3261 §18.2.2 with
//! `received`/`rport`), so even a request whose Via is malformed or missing is answered.
//!
//! Input is the result of [`Message::parse`]; output is a [`Decision`]: forward the message,
//! reply with a status (requests only, never to an ACK), or drop it silently. Number policy,
//! ACLs, loop detection against our own Via and transaction state come later in the proxy.
//!
//! Order of checks (first failure wins), chosen so that the cheapest and most fundamental
//! come first and the status is the most specific one:
//! 1. structural parse errors: 513/414 for sizes, 505 for the version, 400 otherwise;
//! 2. the core headers ([`Message::core`]): 400;
//! 3. Request-URI scheme not sip/sips/tel: 416;
//! 4. Max-Forwards 0: 483;
//! 5. Proxy-Require with any extension (we proxy none): 420 with `Unsupported`;
//! 6. responses whose Via names a broadcast, multicast or unspecified address: dropped (a
//!    response must never be reflected to such an address, RFC 4475 bcast).

use std::net::IpAddr;

use super::headers::{HeaderError, Via};
use super::message::{Message, Method, ParseFailure};
use super::name::HeaderName;
use super::uri::Host;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Pass it to the proxy core.
    Forward,
    /// Answer the request statelessly.
    Reply {
        /// Status code.
        status: u16,
        /// Short reason, used as the reason phrase's detail and in logs.
        reason: String,
        /// Option tags for an `Unsupported` header (420 only).
        unsupported: Vec<String>,
    },
    /// Discard without answering.
    Drop {
        /// Why, for logs and metrics.
        reason: &'static str,
    },
}

impl Decision {
    fn reply(status: u16, reason: impl Into<String>) -> Decision {
        Decision::Reply {
            status,
            reason: reason.into(),
            unsupported: Vec::new(),
        }
    }

    /// The label used in `inspect` output and metrics.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Forward => "forward",
            Decision::Reply { .. } => "reply",
            Decision::Drop { .. } => "drop",
        }
    }
}

/// Decides on a message the parser refused. A request gets an error reply when its headers
/// could be indexed (and it is not an ACK); anything else is dropped.
pub fn decide_failure(f: &ParseFailure) -> Decision {
    if !f.is_request {
        return Decision::Drop {
            reason: "malformed response",
        };
    }
    let Some(h) = &f.headers else {
        return Decision::Drop {
            reason: "malformed request without readable headers",
        };
    };
    // The CSeq's method token is exactly ACK (`1 XACK` is another method, and answered).
    let ack = h.first(HeaderName::CSeq).is_some_and(|c| {
        super::lex::trim(c)
            .rsplit(|&b| super::lex::is_lws(b))
            .next()
            == Some(&b"ACK"[..])
    });
    if ack {
        return Decision::Drop {
            reason: "malformed ACK",
        };
    }
    Decision::reply(f.error.status(), f.error.to_string())
}

/// Decides on a parsed message.
pub fn decide(m: &Message) -> Decision {
    let core = match m.core() {
        Ok(c) => c,
        Err(e) => return on_header_error(m, e),
    };
    if !m.is_request() {
        return match m.vias() {
            Ok(vias) if vias.iter().any(unroutable_via) => Decision::Drop {
                reason: "response Via names a broadcast or multicast address",
            },
            Ok(_) => Decision::Forward,
            Err(_) => Decision::Drop {
                reason: "malformed Via in response",
            },
        };
    }
    let ack = m.method() == Some(Method::Ack);
    if !m.request_uri_routable() {
        if ack {
            return Decision::Drop {
                reason: "ACK with unsupported URI scheme",
            };
        }
        return Decision::reply(416, "Unsupported URI Scheme");
    }
    if core.max_forwards == Some(0) {
        if ack {
            return Decision::Drop {
                reason: "ACK with Max-Forwards 0",
            };
        }
        return Decision::reply(483, "Too Many Hops");
    }
    match m.option_tags(HeaderName::ProxyRequire) {
        Ok(tags) if tags.is_empty() => {}
        Ok(tags) if !ack => {
            return Decision::Reply {
                status: 420,
                reason: "Bad Extension".into(),
                unsupported: tags
                    .iter()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .collect(),
            }
        }
        Ok(_) => {
            return Decision::Drop {
                reason: "ACK with Proxy-Require",
            }
        }
        Err(e) => return on_header_error(m, e),
    }
    Decision::Forward
}

fn on_header_error(m: &Message, e: HeaderError) -> Decision {
    // A malformed or missing Via still gets an answer: replies go to the packet's source
    // (RFC 4475 badinv01 and test.dat expect a 400), with whatever Via lines there are.
    if !m.is_request() {
        return Decision::Drop {
            reason: "malformed response headers",
        };
    }
    if m.method() == Some(Method::Ack) {
        return Decision::Drop {
            reason: "malformed ACK",
        };
    }
    Decision::reply(400, e.to_string())
}

/// True when a Via's sent-by (or received) is an address no response may be sent to.
fn unroutable_via(v: &Via<'_>) -> bool {
    let bad = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast() || a.is_unspecified(),
        IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
    };
    let sent_by = match v.host {
        Host::V4(a) => bad(IpAddr::V4(a)),
        Host::V6(a) => bad(IpAddr::V6(a)),
        _ => false,
    };
    let received = v
        .received()
        .and_then(|r| {
            let r = r.strip_prefix(b"[").unwrap_or(r);
            let r = r.strip_suffix(b"]").unwrap_or(r);
            std::str::from_utf8(r).ok()?.parse::<IpAddr>().ok()
        })
        .is_some_and(bad);
    sent_by || received
}

/// Parses and decides in one step (what `ocedge inspect` and the fuzzer call).
pub fn first_look(buf: bytes::Bytes, limits: &super::Limits) -> (Option<Message>, Decision) {
    match Message::parse(buf, limits) {
        Ok(m) => {
            let d = decide(&m);
            (Some(m), d)
        }
        Err(f) => (None, decide_failure(&f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(s: &str) -> Decision {
        first_look(
            bytes::Bytes::copy_from_slice(s.as_bytes()),
            &super::super::Limits::DEFAULT,
        )
        .1
    }

    const OK: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 5 OPTIONS\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n";

    fn status(d: &Decision) -> Option<u16> {
        match d {
            Decision::Reply { status, .. } => Some(*status),
            _ => None,
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(look(OK), Decision::Forward);
        assert_eq!(
            status(&look(&OK.replace("Max-Forwards: 70", "Max-Forwards: 0"))),
            Some(483)
        );
        assert_eq!(
            status(&look(&OK.replace("sip:a@b SIP", "mailto:a@b SIP"))),
            Some(416)
        );
        assert_eq!(
            status(&look(&OK.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"))),
            Some(505)
        );
        assert_eq!(
            status(&look(&OK.replace("From: <sip:x@y>;tag=1\r\n", ""))),
            Some(400)
        );
        match look(&OK.replace("l: 0", "Proxy-Require: foo, bar\r\nl: 0")) {
            Decision::Reply {
                status: 420,
                unsupported,
                ..
            } => assert_eq!(unsupported, vec!["foo", "bar"]),
            other => panic!("{other:?}"),
        }
        // Errors in an ACK are never answered; a request without Via is, to its source.
        let ack = OK
            .replace("OPTIONS", "ACK")
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
        assert!(matches!(look(&ack), Decision::Drop { .. }));
        let novia = OK.replace("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n", "");
        assert_eq!(status(&look(&novia)), Some(400));
    }

    #[test]
    fn a_request_that_does_not_parse_is_answered_unless_it_is_an_ack() {
        // The body is shorter than Content-Length: the parser refuses it, headers indexed.
        let cut = OK.replace("l: 0", "l: 9");
        assert!(Message::parse_slice(cut.as_bytes()).is_err());
        assert_eq!(status(&look(&cut)), Some(400));
        for cseq in ["5 ACK", "5\tACK", "5 ACK "] {
            let ack = cut.replace("5 OPTIONS", cseq);
            assert!(matches!(look(&ack), Decision::Drop { .. }), "{cseq:?}");
        }
        // A method that merely ends in ACK is not ACK.
        let xack = cut.replace("5 OPTIONS", "5 XACK");
        assert_eq!(status(&look(&xack)), Some(400));
    }
}
