//! Who we are on the wire and where a request goes next: the advertised address of each
//! listener, our branch ids, loop detection, and resolution of a next-hop URI to a
//! [`Target`] (RFC 3261 §16.5–16.6, loose routing §16.4).
//!
//! ocedge does no DNS: a next hop is either an IP literal or the name of a configured peer
//! (a Microsoft target or an SBC). That is also the edge's relay rule: an in-dialog request
//! is only ever sent to a configured peer or to an address inside the destination side's
//! ACL, never to an arbitrary address a message names.

use std::net::{IpAddr, SocketAddr};

use crate::config::Side;
use crate::proxy::acl::Acl;
use crate::sip::headers::Via;
use crate::sip::uri::{Host, Scheme, Uri};
use crate::transport::{Target, Transport};

/// Branch prefix of every Via ocedge writes (after the RFC 3261 magic cookie).
pub const BRANCH_PREFIX: &str = "z9hG4bKoc";

/// One listener as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The side whose traffic arrives here.
    pub side: Side,
    /// Its transport.
    pub transport: Transport,
    /// The bound address.
    pub local: SocketAddr,
    /// `host:port` written into Via and Record-Route.
    pub advertise: String,
}

/// A configured peer the proxy may send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Configured name (TLS name for Microsoft targets).
    pub name: String,
    /// Where it is.
    pub target: Target,
    /// Its side.
    pub side: Side,
}

/// Addressing knowledge shared by every request the proxy handles.
#[derive(Debug, Clone)]
pub struct Routing {
    listeners: Vec<ListenerInfo>,
    /// Each listener's advertised host (an address parsed once) and port.
    advertised: Vec<(AdvHost, u16)>,
    peers: Vec<Peer>,
    acl: [Acl; 2],
}

/// An advertised host, parsed once: comparing a URI or Via host with it formats and parses
/// nothing.
#[derive(Debug, Clone)]
enum AdvHost {
    Ip(IpAddr),
    Name(String),
}

impl AdvHost {
    fn of(text: &str) -> AdvHost {
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        match bare.parse() {
            Ok(ip) => AdvHost::Ip(ip),
            Err(_) => AdvHost::Name(bare.to_owned()),
        }
    }

    fn matches(&self, host: &Host<'_>) -> bool {
        match (self, host) {
            (AdvHost::Name(t), Host::Name(n)) => n.eq_ignore_ascii_case(t.as_bytes()),
            (AdvHost::Ip(IpAddr::V4(t)), Host::V4(a)) => t == a,
            (AdvHost::Ip(IpAddr::V6(t)), Host::V6(a)) => t == a,
            _ => false,
        }
    }
}

fn ip_matches(ip: IpAddr, host: &Host<'_>) -> bool {
    match (ip, host) {
        (IpAddr::V4(t), Host::V4(a)) => t == *a,
        (IpAddr::V6(t), Host::V6(a)) => t == *a,
        _ => false,
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Microsoft => 0,
        Side::Carrier => 1,
    }
}

impl Routing {
    /// Builds the routing view; `acl_ms` and `acl_carrier` are the sides' source ACLs.
    pub fn new(
        listeners: Vec<ListenerInfo>,
        peers: Vec<Peer>,
        acl_ms: Acl,
        acl_carrier: Acl,
    ) -> Routing {
        let advertised = listeners
            .iter()
            .map(|l| {
                let (host, port) = split_host_port(&l.advertise);
                (AdvHost::of(host), port)
            })
            .collect();
        Routing {
            listeners,
            advertised,
            peers,
            acl: [acl_ms, acl_carrier],
        }
    }

    /// The same listeners with new peers and ACLs (reload: listeners need a restart).
    pub fn with_peers(&self, peers: Vec<Peer>, acl_ms: Acl, acl_carrier: Acl) -> Routing {
        Routing::new(self.listeners.clone(), peers, acl_ms, acl_carrier)
    }

    /// The listener with index `i`.
    pub fn listener(&self, i: usize) -> Option<&ListenerInfo> {
        self.listeners.get(i)
    }

    /// The source ACL of a side.
    pub fn acl(&self, side: Side) -> &Acl {
        &self.acl[side_index(side)]
    }

    /// The listener used to send to `to` on `side`: same side and transport, else the first
    /// listener of the side.
    pub fn egress(&self, side: Side, transport: Transport) -> Option<&ListenerInfo> {
        self.listeners
            .iter()
            .find(|l| l.side == side && l.transport == transport)
            .or_else(|| self.listeners.iter().find(|l| l.side == side))
    }

    /// Every configured peer.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The configured peer at `addr`, if any.
    pub fn peer_at(&self, addr: SocketAddr) -> Option<&Peer> {
        self.peers.iter().find(|p| p.target.addr == addr)
    }

    /// True when a URI names this gateway (one of our advertised host:ports or bound
    /// addresses): used to recognise our own Route entries.
    pub fn is_us(&self, uri: &Uri<'_>) -> bool {
        self.listeners
            .iter()
            .zip(&self.advertised)
            .any(|(l, (host, port))| {
                let uri_port = uri.port.unwrap_or(default_port(l.transport));
                (host.matches(&uri.host) && uri_port == *port)
                    || (ip_matches(l.local.ip(), &uri.host) && uri_port == l.local.port())
            })
    }

    /// True when a Via was written by this gateway: our branch prefix and one of our
    /// advertised sent-by values. Seeing one on a request we receive is a loop (482).
    pub fn is_our_via(&self, via: &Via<'_>) -> bool {
        let ours = via
            .branch()
            .is_some_and(|b| b.starts_with(BRANCH_PREFIX.as_bytes()));
        ours && self
            .listeners
            .iter()
            .zip(&self.advertised)
            .any(|(l, (host, port))| {
                host.matches(&via.host) && via.port.unwrap_or(default_port(l.transport)) == *port
            })
    }

    /// Resolves the next hop named by `uri` for a request going to `side`: a configured peer
    /// by address or name, or an IP literal inside that side's ACL. `None` when there is no
    /// acceptable route.
    pub fn resolve(&self, uri: &Uri<'_>, side: Side) -> Option<(Target, Option<String>)> {
        if !matches!(uri.scheme, Scheme::Sip | Scheme::Sips) {
            return None;
        }
        let transport = uri_transport(uri);
        match uri.host {
            Host::Name(name) => {
                let peer = self
                    .peers
                    .iter()
                    .find(|p| p.side == side && p.name.as_bytes().eq_ignore_ascii_case(name))?;
                Some((peer.target, Some(peer.name.clone())))
            }
            Host::V4(_) | Host::V6(_) => {
                let ip = match uri.host {
                    Host::V4(a) => IpAddr::V4(a),
                    Host::V6(a) => IpAddr::V6(a),
                    _ => return None,
                };
                let transport = transport.unwrap_or(Transport::Udp);
                let port = uri.port.unwrap_or(default_port(transport));
                self.relay(
                    Target {
                        transport,
                        addr: SocketAddr::new(ip, port),
                    },
                    side,
                )
            }
            Host::None => None,
        }
    }

    /// The relay rule for an address a message names (an IP literal, a flow token): a
    /// configured peer of `side` (as configured, with its TLS name), else an address inside
    /// that side's ACL. `None` otherwise.
    pub fn relay(&self, to: Target, side: Side) -> Option<(Target, Option<String>)> {
        if let Some(p) = self
            .peers
            .iter()
            .find(|p| p.side == side && p.target.addr == to.addr)
        {
            return Some((p.target, Some(p.name.clone())));
        }
        if self.acl(side).is_empty() || !self.acl(side).allows(to.addr.ip()) {
            // An empty ACL allows any source, but is no licence to relay anywhere.
            return None;
        }
        Some((to, None))
    }
}

/// The transport a URI asks for: `transport=` parameter, or TLS for sips.
fn uri_transport(uri: &Uri<'_>) -> Option<Transport> {
    if uri.scheme == Scheme::Sips {
        return Some(Transport::Tls);
    }
    let t = uri.transport()?;
    if t.eq_ignore_ascii_case(b"udp") {
        Some(Transport::Udp)
    } else if t.eq_ignore_ascii_case(b"tcp") {
        Some(Transport::Tcp)
    } else if t.eq_ignore_ascii_case(b"tls") {
        Some(Transport::Tls)
    } else {
        None
    }
}

/// 5061 for TLS, 5060 otherwise.
pub fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls {
        5061
    } else {
        5060
    }
}

/// Splits an advertised `host:port` (`[v6]:port` allowed).
fn split_host_port(s: &str) -> (&str, u16) {
    if let Some((h, p)) = s.rsplit_once(':') {
        if let Ok(port) = p.parse() {
            if !h.contains(':') || h.starts_with('[') {
                return (h, port);
            }
        }
    }
    (s, 5060)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let l = |side, transport, local: &str, adv: &str| ListenerInfo {
            side,
            transport,
            local: local.parse().unwrap(),
            advertise: adv.into(),
        };
        let peer = |name: &str, addr: &str, side| Peer {
            name: name.into(),
            target: Target {
                transport: Transport::Udp,
                addr: addr.parse().unwrap(),
            },
            side,
        };
        Routing::new(
            vec![
                l(
                    Side::Microsoft,
                    Transport::Udp,
                    "127.0.0.1:5066",
                    "127.0.0.1:5066",
                ),
                l(
                    Side::Carrier,
                    Transport::Udp,
                    "127.0.0.1:5062",
                    "127.0.0.1:5062",
                ),
                l(
                    Side::Microsoft,
                    Transport::Tls,
                    "127.0.0.1:5067",
                    "sbc.example.com:5067",
                ),
            ],
            vec![
                peer(
                    "sip.pstnhub.microsoft.com",
                    "127.0.0.1:5070",
                    Side::Microsoft,
                ),
                peer("sbc1", "10.0.0.5:5060", Side::Carrier),
            ],
            Acl::new(&[]),
            Acl::new(&["10.0.0.0/8".parse().unwrap()]),
        )
    }

    fn uri(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn recognises_our_addresses() {
        let r = routing();
        assert!(r.is_us(&uri("sip:127.0.0.1:5062;lr")));
        assert!(r.is_us(&uri("sip:sbc.example.com:5067;transport=tls;lr")));
        assert!(!r.is_us(&uri("sip:127.0.0.1:5070;lr")));
        let via = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5066;branch=z9hG4bKoc123").unwrap();
        assert!(r.is_our_via(&via));
        let via = Via::parse(b"SIP/2.0/UDP 127.0.0.1:5066;branch=z9hG4bKother").unwrap();
        assert!(!r.is_our_via(&via));
    }

    #[test]
    fn resolves_only_peers_and_acl_addresses() {
        let r = routing();
        let (t, name) = r
            .resolve(&uri("sip:127.0.0.1:5070"), Side::Microsoft)
            .unwrap();
        assert_eq!(t.addr.port(), 5070);
        assert_eq!(name.as_deref(), Some("sip.pstnhub.microsoft.com"));
        let (t, _) = r
            .resolve(&uri("sip:sip.pstnhub.microsoft.com"), Side::Microsoft)
            .unwrap();
        assert_eq!(t.addr.port(), 5070);
        // Inside the carrier ACL: allowed even if not a configured SBC.
        let (t, _) = r
            .resolve(&uri("sip:+1@10.1.2.3:5099;transport=tcp"), Side::Carrier)
            .unwrap();
        assert_eq!((t.transport, t.addr.port()), (Transport::Tcp, 5099));
        // Outside it, or an unknown name, or a side with an empty ACL: no route.
        assert!(r
            .resolve(&uri("sip:192.0.2.1:5060"), Side::Carrier)
            .is_none());
        assert!(r
            .resolve(&uri("sip:evil.example.com"), Side::Carrier)
            .is_none());
        assert!(r
            .resolve(&uri("sip:192.0.2.1:5060"), Side::Microsoft)
            .is_none());
    }
}
