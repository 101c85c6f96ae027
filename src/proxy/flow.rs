//! Flow tokens: the Microsoft proxy of a dialog, carried in our own Record-Route.
//!
//! Microsoft's SIP proxies Record-Route and write Contacts with host names
//! (`sip-du-a-us.pstnhub.microsoft.com`, `api-du-b-euwe.pstnhub.microsoft.com:443`), names
//! that are not in the configuration and that this gateway does not look up in DNS. So the
//! Record-Route entry we write facing Microsoft on a dialog-creating request carries, in the
//! [`FLOW`] parameter, the Microsoft proxy of that dialog: where the request came from, or
//! the target we sent it to — the flow-token idea of RFC 5626 §5.3. An in-dialog request
//! toward Microsoft whose next hop (the next Route, else the Request-URI) does not resolve
//! goes to that flow, with its Route set and Request-URI as they are, so Microsoft's proxy
//! routes it by its own Record-Route. The next hop's host name, when it is one, is the TLS
//! name verified if a new connection must be opened.
//!
//! A TCP or TLS flow that Microsoft opened comes from an ephemeral port of theirs, so it is
//! good only while that connection lives; Microsoft's proxies recycle connections during
//! long calls. Such a request therefore also carries a reconnect address
//! ([`crate::proxy::core::Output::reconnect`]): the flow's IP at the next hop's port
//! (default 5061 for TLS, 5060 for TCP), where that proxy listens. The transport uses it
//! when the flow's connection is gone, reusing a live connection to it if there is one.
//! Responses to a request that came over a stream connection do the same when it is gone:
//! the source's IP at the top Via's sent-by port (RFC 3261 §18.2.2), with the sent-by host
//! as TLS name.
//!
//! The token is `TRANSPORT-IP-PORT` (`tls-52.114.1.2-5061`, `udp-[2603:1063::1]-5060`): no
//! state, so a restarted gateway still routes every dialog. It is a next hop like any other:
//! it must name a configured Microsoft target or an address inside the Microsoft ACL, so a
//! forged token cannot make the gateway relay anywhere else.

use std::net::{IpAddr, SocketAddr};

use crate::proxy::route::default_port;
use crate::sip::uri::Host;
use crate::transport::{Target, Transport};

/// The Record-Route URI parameter carrying the flow.
pub const FLOW: &str = "oc-flow";

/// Where a new connection to the peer of the stream flow `flow` goes once the flow's own is
/// gone: the flow's IP at `port` (the port a Via or next hop names), else the transport's
/// default. `None` for UDP, and when that is `flow` itself.
pub fn reconnect(flow: Target, port: Option<u16>) -> Option<SocketAddr> {
    if flow.transport == Transport::Udp {
        return None;
    }
    let addr = SocketAddr::new(flow.addr.ip(), port.unwrap_or(default_port(flow.transport)));
    (addr != flow.addr).then_some(addr)
}

/// `host` as a TLS name to verify, when it is a name.
pub fn tls_name(host: &Host<'_>) -> Option<String> {
    match host {
        Host::Name(n) => std::str::from_utf8(n).ok().map(str::to_owned),
        _ => None,
    }
}

/// The token for `t`.
pub fn encode(t: Target) -> String {
    let mut s = String::with_capacity(56);
    push_token(&mut s, t);
    s
}

/// Appends the token for `t`: `{transport}-{ip}-{port}`, an IPv6 address bracketed.
pub(crate) fn push_token(s: &mut String, t: Target) {
    s.push_str(t.transport.as_str());
    s.push('-');
    super::text::push_ip(s, t.addr.ip());
    s.push('-');
    super::text::push_dec(s, u64::from(t.addr.port()));
}

/// The target a token names; `None` for anything [`encode`] would not write.
pub fn decode(token: &[u8]) -> Option<Target> {
    let s = std::str::from_utf8(token).ok()?;
    let (transport, rest) = s.split_once('-')?;
    let (ip, port) = rest.rsplit_once('-')?;
    let transport = match transport {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return None,
    };
    let ip: IpAddr = match ip.strip_prefix('[') {
        Some(v6) => IpAddr::V6(v6.strip_suffix(']')?.parse().ok()?),
        None => IpAddr::V4(ip.parse().ok()?),
    };
    Some(Target {
        transport,
        addr: SocketAddr::new(ip, port.parse().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(transport: Transport, addr: &str) -> Target {
        Target {
            transport,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn tokens_round_trip_for_every_transport_and_family() {
        for (target, text) in [
            (t(Transport::Tls, "52.114.1.2:5061"), "tls-52.114.1.2-5061"),
            (t(Transport::Udp, "127.0.0.1:5070"), "udp-127.0.0.1-5070"),
            (
                t(Transport::Tcp, "[2603:1063::1]:5060"),
                "tcp-[2603:1063::1]-5060",
            ),
        ] {
            assert_eq!(encode(target), text);
            assert_eq!(decode(text.as_bytes()), Some(target), "{text}");
        }
    }

    #[test]
    fn anything_else_is_no_token() {
        for bad in [
            "",
            "tls",
            "tls-52.114.1.2",
            "sctp-52.114.1.2-5061",
            "TLS-52.114.1.2-5061",
            "tls-52.114.1.2-70000",
            "tls-52.114.1-5061",
            "tls-host.example.com-5061",
            "tls-2603:1063::1-5060",
            "tls-[52.114.1.2]-5061",
            "tls-[2603:1063::1-5060",
            "udp-52.114.1.2-5061-5",
            "udp-52.114.1.2--5061",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(decode(&[0xff, b'-', b'1']), None);
    }
}
