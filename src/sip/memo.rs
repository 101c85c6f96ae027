//! Parse once: a message remembers its parsed Request-URI, From and To.
//!
//! Validation, the number policy, the call tracker, transaction matching and forwarding
//! each need these, and each used to parse them again: about half of the URI parses of a
//! call (measured with callgrind on `benches/proxy.rs`). The first accessor parses and
//! stores the result as offsets into the message buffer ([`Uri`] borrows the buffer, so it
//! cannot be stored in the message itself); later ones rebuild the borrowed value from the
//! offsets, which costs a few copies.
//!
//! The answer is the same as parsing again: same bytes, same parser. Slices the parser
//! returns are always inside its input, which is inside the buffer; an empty slice is
//! stored as an empty span (its address carries no meaning).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use super::headers::{HeaderError, NameAddr};
use super::message::Span;
use super::uri::{Host, Scheme, Uri};

/// The memo a [`super::Message`] carries; empty until first asked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memo {
    /// The Request-URI: `Err(())` for a response or one that does not parse.
    pub(crate) request_uri: OnceLock<Result<Stored<UriAt>, ()>>,
    pub(crate) from: OnceLock<Result<Stored<NameAddrAt>, HeaderError>>,
    pub(crate) to: OnceLock<Result<Stored<NameAddrAt>, HeaderError>>,
}

/// A parse result as offsets, or `Elsewhere` when it could not be located in the buffer
/// (impossible for the parsers' results; the accessor then parses again rather than fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored<T> {
    At(T),
    Elsewhere,
}

impl<T> From<Option<T>> for Stored<T> {
    fn from(o: Option<T>) -> Stored<T> {
        o.map_or(Stored::Elsewhere, Stored::At)
    }
}

/// What `parse` returns for a slice of `buf`: parsed on the first call and kept in `cell`
/// as offsets (`store`), rebuilt from them after (`load`); parsed again in the impossible
/// case that it lies outside `buf`.
pub(crate) fn remember<'a, T: Copy, V, E: Copy>(
    cell: &OnceLock<Result<Stored<T>, E>>,
    buf: &'a [u8],
    parse: impl Fn() -> Result<V, E>,
    store: impl Fn(&'a [u8], &V) -> Option<T>,
    load: impl Fn(&T, &'a [u8]) -> V,
) -> Result<V, E> {
    match cell.get_or_init(|| parse().map(|v| Stored::from(store(buf, &v)))) {
        Ok(Stored::At(at)) => Ok(load(at, buf)),
        Ok(Stored::Elsewhere) => parse(),
        Err(e) => Err(*e),
    }
}

/// Where `s` lies in `buf`; `None` when it is not inside (never for what the parser
/// returns from a slice of `buf`).
fn span_in(buf: &[u8], s: &[u8]) -> Option<Span> {
    if s.is_empty() {
        return Some(Span::default());
    }
    let start = (s.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(s.len())?;
    (end <= buf.len()).then(|| Span::new(start, end))
}

fn opt_span(buf: &[u8], s: Option<&[u8]>) -> Option<Option<Span>> {
    match s {
        None => Some(None),
        Some(s) => span_in(buf, s).map(Some),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostAt {
    Name(Span),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    None,
}

/// A [`Uri`] as offsets into its message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UriAt {
    raw: Span,
    scheme: Scheme,
    scheme_raw: Span,
    user: Option<Span>,
    password: Option<Span>,
    host: HostAt,
    port: Option<u16>,
    params: Span,
    headers: Span,
}

impl UriAt {
    pub(crate) fn of(buf: &[u8], u: &Uri<'_>) -> Option<UriAt> {
        Some(UriAt {
            raw: span_in(buf, u.raw)?,
            scheme: u.scheme,
            scheme_raw: span_in(buf, u.scheme_raw)?,
            user: opt_span(buf, u.user)?,
            password: opt_span(buf, u.password)?,
            host: match u.host {
                Host::Name(n) => HostAt::Name(span_in(buf, n)?),
                Host::V4(a) => HostAt::V4(a),
                Host::V6(a) => HostAt::V6(a),
                Host::None => HostAt::None,
            },
            port: u.port,
            params: span_in(buf, u.params)?,
            headers: span_in(buf, u.headers)?,
        })
    }

    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> Uri<'a> {
        Uri {
            raw: self.raw.of(buf),
            scheme: self.scheme,
            scheme_raw: self.scheme_raw.of(buf),
            user: self.user.map(|s| s.of(buf)),
            password: self.password.map(|s| s.of(buf)),
            host: match self.host {
                HostAt::Name(s) => Host::Name(s.of(buf)),
                HostAt::V4(a) => Host::V4(a),
                HostAt::V6(a) => Host::V6(a),
                HostAt::None => Host::None,
            },
            port: self.port,
            params: self.params.of(buf),
            headers: self.headers.of(buf),
        }
    }
}

/// A [`NameAddr`] as offsets into its message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NameAddrAt {
    display: Option<Span>,
    uri: UriAt,
    bracketed: bool,
    params: Span,
}

impl NameAddrAt {
    pub(crate) fn of(buf: &[u8], n: &NameAddr<'_>) -> Option<NameAddrAt> {
        Some(NameAddrAt {
            display: opt_span(buf, n.display)?,
            uri: UriAt::of(buf, &n.uri)?,
            bracketed: n.bracketed,
            params: span_in(buf, n.params)?,
        })
    }

    pub(crate) fn get<'a>(&self, buf: &'a [u8]) -> NameAddr<'a> {
        NameAddr {
            display: self.display.map(|s| s.of(buf)),
            uri: self.uri.get(buf),
            bracketed: self.bracketed,
            params: self.params.of(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_uri_reads_back_equal_to_a_fresh_parse() {
        let buf = b"INVITE sip:+1425@[2001:db8::1]:5061;user=phone;lr?h=v SIP/2.0";
        for raw in [
            &buf[7..52],
            b"sip:alice:pw@example.com".as_slice(),
            b"tel:+14255550100;phone-context=x",
            b"sip:10.0.0.1",
            b"urn:service:sos",
        ] {
            let mut owned = b"xx".to_vec();
            owned.extend_from_slice(raw);
            let u = Uri::parse(&owned[2..]).unwrap();
            let at = UriAt::of(&owned, &u).unwrap();
            assert_eq!(at.get(&owned), u, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn a_slice_outside_the_buffer_is_not_stored() {
        let buf = b"sip:a@b".to_vec();
        let other = b"sip:c@d".to_vec();
        let u = Uri::parse(&other).unwrap();
        assert_eq!(UriAt::of(&buf, &u), None);
    }

    #[test]
    fn a_stored_name_addr_reads_back_equal() {
        let buf = b"From: \"Al\" <sip:al@x;transport=tcp>;tag=9".to_vec();
        let n = NameAddr::parse(&buf[6..], "From").unwrap();
        let at = NameAddrAt::of(&buf, &n).unwrap();
        assert_eq!(at.get(&buf), n);
    }

    fn request(ruri: &str, from: &str) -> super::super::Message {
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: {from}\r\n\
             To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        super::super::Message::parse_slice(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_message_answers_the_same_on_every_ask() {
        let m = request("sip:+14255550100@gw;user=phone", "\"A\" <sip:a@h>;tag=1");
        let from = m.from_hdr().unwrap();
        let raw = m.headers().first(super::super::HeaderName::From).unwrap();
        assert_eq!(from, NameAddr::parse(raw, "From").unwrap());
        assert_eq!(m.from_hdr().unwrap(), from);
        let ruri = m.request_uri().unwrap();
        assert_eq!(ruri, Uri::parse(m.request_uri_bytes().unwrap()).unwrap());
        assert_eq!(m.request_uri().unwrap(), ruri);
        assert_eq!(m.to_hdr().unwrap().uri.raw, b"sip:b@h");
        assert!(m.core().is_ok());
    }

    #[test]
    fn a_refused_header_is_refused_on_every_ask() {
        let m = request("sip:b@h", "<sip:a@h;tag=1");
        let first = m.from_hdr().unwrap_err();
        assert_eq!(m.from_hdr().unwrap_err(), first);
        assert!(m.core().is_err());
        let m = request("sip:b@[::1", "<sip:a@h>;tag=1");
        assert_eq!(m.request_uri(), None);
        assert_eq!(m.request_uri(), None);
        assert_eq!(
            m.core().unwrap_err().to_string(),
            "invalid Request-URI header: malformed URI"
        );
    }
}
