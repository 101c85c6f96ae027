//! Lazy typed access to the headers a proxy and a call timer need.
//!
//! Nothing here is computed at parse time: each accessor parses the value spans of the
//! header index on demand, borrowing from the message buffer (From and To are parsed once
//! and remembered, see [`super::memo`]). Values may contain folds;
//! every grammar here treats CR/LF as whitespace (see [`super::lex`]).
//!
//! [`Message::core`] parses the fields every message must have for transaction matching
//! and call timing (top Via, From, To, Call-ID, CSeq, Max-Forwards) and enforces the rules a
//! proxy cannot forward without: single-value headers appear once, CSeq names the request's
//! method, scalars are in range.

use std::sync::OnceLock;

use super::lex::{self, BadParam};
use super::memo::{self, NameAddrAt, Stored};
use super::message::{Message, Method};
use super::name::HeaderName;
use super::uri::{parse_host_port, Host, Scheme, Uri};

/// Why a header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A required header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A single-value header appears more than once (or holds several values).
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    /// A value does not follow the header's grammar.
    #[error("invalid {header} header: {reason}")]
    Invalid {
        /// Header name.
        header: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// More values than the limits allow.
    #[error("too many {header} values (limit {limit})")]
    TooMany {
        /// Header name.
        header: &'static str,
        /// The limit.
        limit: usize,
    },
}

fn invalid(header: &'static str, reason: &'static str) -> HeaderError {
    HeaderError::Invalid { header, reason }
}

/// One Via value: `SIP/2.0/UDP host:port;branch=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, or an extension).
    pub transport: &'a [u8],
    /// Sent-by host.
    pub host: Host<'a>,
    /// Sent-by port, when present.
    pub port: Option<u16>,
    /// The raw `;…` parameter section (validated).
    pub params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(v: &'a [u8]) -> Result<Via<'a>, HeaderError> {
        const H: &str = "Via";
        let v = lex::trim(v);
        let mut i = 0;
        let mut proto = [&b""[..]; 3];
        for (n, slot) in proto.iter_mut().enumerate() {
            if n > 0 {
                i = lex::skip_lws(v, i);
                if v.get(i) != Some(&b'/') {
                    return Err(invalid(H, "sent-protocol must be name/version/transport"));
                }
                i = lex::skip_lws(v, i + 1);
            }
            let s = i;
            while v.get(i).is_some_and(|&b| lex::is_token(b)) {
                i += 1;
            }
            *slot = v.get(s..i).unwrap_or(&[]);
            if slot.is_empty() {
                return Err(invalid(H, "sent-protocol must be name/version/transport"));
            }
        }
        if !proto[0].eq_ignore_ascii_case(b"SIP") || proto[1] != b"2.0" {
            return Err(invalid(H, "protocol is not SIP/2.0"));
        }
        i = lex::skip_lws(v, i);
        let hs = i;
        while v
            .get(i)
            .is_some_and(|&b| !lex::is_lws(b) && b != b';' && b != b',')
        {
            i += 1;
        }
        let (host, port) =
            parse_host_port(v.get(hs..i).unwrap_or(&[])).map_err(|_| invalid(H, "bad sent-by"))?;
        if matches!(host, Host::None) {
            return Err(invalid(H, "missing sent-by host"));
        }
        let params = v.get(i..).unwrap_or(&[]);
        lex::for_each_param(params, |_| false).map_err(|BadParam| invalid(H, "bad parameter"))?;
        Ok(Via {
            transport: proto[2],
            host,
            port,
            params,
        })
    }

    /// A parameter by name; `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        lex::param(self.params, name).ok().flatten()
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.param("branch").flatten()
    }

    /// The `received` parameter (an IP address, brackets for IPv6 optional).
    pub fn received(&self) -> Option<&'a [u8]> {
        self.param("received").flatten()
    }

    /// The `rport` parameter: `None` absent, `Some(None)` requested (flag), `Some(Some(p))`
    /// filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| {
            v.and_then(|p| lex::parse_decimal(p, u64::from(u16::MAX)))
                .map(|p| p as u16)
        })
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param("maddr").flatten()
    }

    /// The branch, when it is an RFC 3261 one ([`rfc3261_branch`]).
    pub fn rfc3261_branch(&self) -> Option<&'a [u8]> {
        self.branch().and_then(rfc3261_branch)
    }

    /// True when the branch carries the RFC 3261 magic cookie (and more than the cookie).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.rfc3261_branch().is_some()
    }
}

/// `branch` when it carries the RFC 3261 magic cookie `z9hG4bK` and more than the cookie.
pub fn rfc3261_branch(branch: &[u8]) -> Option<&[u8]> {
    (branch.len() > 7 && branch.starts_with(b"z9hG4bK")).then_some(branch)
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route,
/// Record-Route, P-Asserted-Identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written: quotes kept for a quoted string, `None` when absent.
    pub display: Option<&'a [u8]>,
    /// The URI (any scheme).
    pub uri: Uri<'a>,
    /// True when the URI was enclosed in `<>`.
    pub bracketed: bool,
    /// The raw `;…` header-parameter section (validated).
    pub params: &'a [u8],
}

/// The `tag` header parameter of a From/To value: the parameters start after the `>` of a
/// name-addr (a quoted display name skipped) or at the first `;` of an addr-spec.
fn tag_of<'a>(v: &'a [u8], header: &'static str) -> Result<Option<&'a [u8]>, HeaderError> {
    let v = lex::trim(v);
    let bad = || invalid(header, "malformed name-addr");
    let mut i = 0;
    if v.first() == Some(&b'"') {
        i = lex::quoted_end(v, 0).ok_or_else(bad)?;
    }
    let params = match memchr::memchr(b'<', v.get(i..).unwrap_or_default()) {
        Some(open) => {
            let rest = v.get(i + open..).unwrap_or_default();
            let close = memchr::memchr(b'>', rest).ok_or_else(bad)?;
            rest.get(close + 1..).unwrap_or_default()
        }
        None if i > 0 => return Err(bad()),
        None => memchr::memchr(b';', v).map_or(&[][..], |s| v.get(s..).unwrap_or_default()),
    };
    match lex::param(params, "tag") {
        Ok(tag) => Ok(tag.flatten()),
        Err(_) => Err(invalid(header, "malformed parameters")),
    }
}

impl<'a> NameAddr<'a> {
    /// Parses one `name-addr` / `addr-spec` followed by header parameters.
    pub fn parse(v: &'a [u8], header: &'static str) -> Result<NameAddr<'a>, HeaderError> {
        let v = lex::trim(v);
        let (display, uri_raw, rest, bracketed) = if v.first() == Some(&b'"') {
            let end = lex::quoted_end(v, 0).ok_or(invalid(header, "unterminated quote"))?;
            let j = lex::skip_lws(v, end);
            if v.get(j) != Some(&b'<') {
                return Err(invalid(header, "display name without <URI>"));
            }
            let (uri, rest) = angle(v, j, header)?;
            (v.get(..end), uri, rest, true)
        } else if let Some(lt) = v.iter().position(|&b| b == b'<') {
            let name = lex::trim(v.get(..lt).unwrap_or(&[]));
            if !name
                .iter()
                .all(|&b| lex::is_token(b) || lex::is_lws(b) || b >= 0x80)
            {
                return Err(invalid(header, "display name is not tokens"));
            }
            let (uri, rest) = angle(v, lt, header)?;
            ((!name.is_empty()).then_some(name), uri, rest, true)
        } else {
            // addr-spec: parameters after it belong to the header (RFC 3261 §20.10).
            let end = v
                .iter()
                .position(|&b| b == b';' || lex::is_lws(b))
                .unwrap_or(v.len());
            (
                None,
                v.get(..end).unwrap_or(&[]),
                v.get(end..).unwrap_or(&[]),
                false,
            )
        };
        let uri = Uri::parse(uri_raw).map_err(|_| invalid(header, "bad URI"))?;
        lex::for_each_param(rest, |_| false).map_err(|_| invalid(header, "bad parameter"))?;
        Ok(NameAddr {
            display,
            uri,
            bracketed,
            params: rest,
        })
    }

    /// A header parameter by name; `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        lex::param(self.params, name).ok().flatten()
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param("tag").flatten()
    }

    /// The display name without quotes (escapes kept).
    pub fn display_unquoted(&self) -> Option<&'a [u8]> {
        let d = self.display?;
        match d {
            [b'"', inner @ .., b'"'] => Some(inner),
            other => Some(other),
        }
    }
}

/// Splits `<uri>rest` with `<` at `lt`.
fn angle<'a>(
    v: &'a [u8],
    lt: usize,
    header: &'static str,
) -> Result<(&'a [u8], &'a [u8]), HeaderError> {
    let after = v.get(lt + 1..).unwrap_or(&[]);
    let gt = after
        .iter()
        .position(|&b| b == b'>')
        .ok_or(invalid(header, "unterminated <"))?;
    Ok((
        after.get(..gt).unwrap_or(&[]),
        after.get(gt + 1..).unwrap_or(&[]),
    ))
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method class.
    pub method: Method,
    /// Method text.
    pub method_raw: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(v: &'a [u8]) -> Result<CSeq<'a>, HeaderError> {
        const H: &str = "CSeq";
        let v = lex::trim(v);
        let split = v
            .iter()
            .position(|&b| lex::is_lws(b))
            .ok_or(invalid(H, "needs a number and a method"))?;
        let num = v.get(..split).unwrap_or(&[]);
        let method = lex::trim(v.get(split..).unwrap_or(&[]));
        let seq = lex::parse_decimal(num, (1 << 31) - 1)
            .ok_or(invalid(H, "sequence number not below 2^31"))?;
        if !lex::is_token_str(method) {
            return Err(invalid(H, "method is not a token"));
        }
        Ok(CSeq {
            seq: seq as u32,
            method: Method::classify(method),
            method_raw: method,
        })
    }
}

/// Session-Expires (RFC 4028): interval and refresher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// Interval in seconds.
    pub seconds: u32,
    /// The `refresher` parameter.
    pub refresher: Option<Refresher>,
}

/// Which side refreshes a session (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller.
    Uac,
    /// The callee.
    Uas,
}

/// Parses `delta-seconds *(; param)` (Session-Expires, Min-SE).
fn delta_seconds<'a>(v: &'a [u8], header: &'static str) -> Result<(u32, &'a [u8]), HeaderError> {
    let v = lex::trim(v);
    let end = v
        .iter()
        .position(|&b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let secs = lex::parse_decimal(v.get(..end).unwrap_or(&[]), u64::from(u32::MAX))
        .ok_or(invalid(header, "not a number of seconds"))?;
    let rest = v.get(end..).unwrap_or(&[]);
    lex::for_each_param(rest, |_| false).map_err(|_| invalid(header, "bad parameter"))?;
    Ok((secs as u32, rest))
}

impl SessionExpires {
    /// Parses a Session-Expires value.
    pub fn parse(v: &[u8]) -> Result<SessionExpires, HeaderError> {
        const H: &str = "Session-Expires";
        let (seconds, params) = delta_seconds(v, H)?;
        let refresher = match lex::param(params, "refresher").ok().flatten().flatten() {
            None => None,
            Some(r) if r.eq_ignore_ascii_case(b"uac") => Some(Refresher::Uac),
            Some(r) if r.eq_ignore_ascii_case(b"uas") => Some(Refresher::Uas),
            Some(_) => return Err(invalid(H, "refresher must be uac or uas")),
        };
        Ok(SessionExpires { seconds, refresher })
    }
}

/// A Content-Type media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// Top-level type, e.g. `application`.
    pub kind: &'a [u8],
    /// Subtype, e.g. `sdp`.
    pub subtype: &'a [u8],
    /// Raw parameters.
    pub params: &'a [u8],
}

impl<'a> MediaType<'a> {
    /// Parses `type "/" subtype *(; param)`.
    pub fn parse(v: &'a [u8]) -> Result<MediaType<'a>, HeaderError> {
        const H: &str = "Content-Type";
        let v = lex::trim(v);
        let slash = v
            .iter()
            .position(|&b| b == b'/')
            .ok_or(invalid(H, "needs type/subtype"))?;
        let kind = lex::trim(v.get(..slash).unwrap_or(&[]));
        let rest = v.get(slash + 1..).unwrap_or(&[]);
        let rest = rest.get(lex::skip_lws(rest, 0)..).unwrap_or(&[]);
        let end = rest
            .iter()
            .position(|&b| !lex::is_token(b))
            .unwrap_or(rest.len());
        let subtype = rest.get(..end).unwrap_or(&[]);
        let params = rest.get(end..).unwrap_or(&[]);
        if !lex::is_token_str(kind) || !lex::is_token_str(subtype) {
            return Err(invalid(H, "type and subtype must be tokens"));
        }
        lex::for_each_param(params, |_| false).map_err(|_| invalid(H, "bad parameter"))?;
        Ok(MediaType {
            kind,
            subtype,
            params,
        })
    }

    /// Case-insensitive comparison with `type/subtype`.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }
}

/// An Event header (RFC 6665): package and parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Event package, e.g. `vq-rtcpxr`.
    pub package: &'a [u8],
    /// Raw parameters (`id` among them).
    pub params: &'a [u8],
}

/// The fields every message must carry for a proxy to handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Core<'a> {
    /// Top Via.
    pub via: Via<'a>,
    /// Number of Via values in the message.
    pub via_count: usize,
    /// From.
    pub from: NameAddr<'a>,
    /// To.
    pub to: NameAddr<'a>,
    /// Call-ID.
    pub call_id: &'a [u8],
    /// CSeq.
    pub cseq: CSeq<'a>,
    /// Max-Forwards, when present (a proxy adds 70 when absent).
    pub max_forwards: Option<u8>,
}

impl Message {
    /// Exactly one value of a single-value header, refusing duplicates.
    fn single(&self, kind: HeaderName, name: &'static str) -> Result<Option<&[u8]>, HeaderError> {
        self.headers()
            .single(kind)
            .map_err(|()| HeaderError::Duplicate(name))
    }

    fn required(&self, kind: HeaderName, name: &'static str) -> Result<&[u8], HeaderError> {
        self.single(kind, name)?.ok_or(HeaderError::Missing(name))
    }

    /// Every Via value, top first, across all Via lines.
    pub fn vias(&self) -> Result<Vec<Via<'_>>, HeaderError> {
        let mut out = Vec::new();
        self.for_each_via(|v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    fn for_each_via<'a>(
        &'a self,
        mut f: impl FnMut(Via<'a>) -> Result<(), HeaderError>,
    ) -> Result<usize, HeaderError> {
        let limit = self.max_vias();
        let mut n = 0usize;
        for line in self.headers().values(HeaderName::Via) {
            let mut res = Ok(());
            lex::for_each_item(line, |item| {
                if res.is_err() {
                    return;
                }
                n += 1;
                if n > limit {
                    res = Err(HeaderError::TooMany {
                        header: "Via",
                        limit,
                    });
                    return;
                }
                res = Via::parse(item).and_then(&mut f);
            })
            .map_err(|_| invalid("Via", "unbalanced quote or bracket"))?;
            res?;
        }
        Ok(n)
    }

    /// The top Via value.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        Via::parse(self.top_via_value()?)
    }

    /// The raw text of the top Via value: the first item of the first Via line (empty when
    /// that item is).
    pub(crate) fn top_via_value(&self) -> Result<&[u8], HeaderError> {
        let line = self
            .header(HeaderName::Via)
            .ok_or(HeaderError::Missing("Via"))?;
        let mut first = None;
        lex::for_each_item(line, |item| {
            first.get_or_insert(item);
        })
        .map_err(|_| invalid("Via", "unbalanced quote or bracket"))?;
        Ok(first.unwrap_or_default())
    }

    /// The top Via's `branch` parameter, found without parsing the rest of the Via (the
    /// transaction layer matches responses and starts client transactions by branch alone).
    /// Same answer as `top_via()?.branch()` for every Via that parses; a message acted on
    /// has had its Vias validated by [`crate::sip::validate::decide`].
    pub fn top_via_branch(&self) -> Result<Option<&[u8]>, HeaderError> {
        let first = self.top_via_value()?;
        // Neither the sent-protocol nor the sent-by can hold a `;`.
        let params =
            memchr::memchr(b';', first).map_or(&[][..], |i| first.get(i..).unwrap_or_default());
        lex::param(params, "branch")
            .map(Option::flatten)
            .map_err(|_| invalid("Via", "bad parameter"))
    }

    /// The From header.
    pub fn from_hdr(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.name_addr_once(&self.memo.from, HeaderName::From, "From")
    }

    /// The To header.
    pub fn to_hdr(&self) -> Result<NameAddr<'_>, HeaderError> {
        self.name_addr_once(&self.memo.to, HeaderName::To, "To")
    }

    /// From or To, parsed on first use and remembered (see [`super::memo`]).
    fn name_addr_once<'a>(
        &'a self,
        cell: &'a OnceLock<Result<Stored<NameAddrAt>, HeaderError>>,
        kind: HeaderName,
        name: &'static str,
    ) -> Result<NameAddr<'a>, HeaderError> {
        memo::remember(
            cell,
            self.buf(),
            || NameAddr::parse(self.required(kind, name)?, name),
            NameAddrAt::of,
            NameAddrAt::get,
        )
    }

    /// The From tag, found without parsing the URI (the hot paths need only the tag; the
    /// whole header was validated by [`Message::core`] before a request is acted on). Same
    /// answer as `from_hdr()?.tag()` for every From that parses.
    pub fn from_tag_param(&self) -> Result<Option<&[u8]>, HeaderError> {
        tag_of(self.required(HeaderName::From, "From")?, "From")
    }

    /// The To tag; see [`Message::from_tag_param`].
    pub fn to_tag_param(&self) -> Result<Option<&[u8]>, HeaderError> {
        tag_of(self.required(HeaderName::To, "To")?, "To")
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&[u8], HeaderError> {
        let v = lex::trim(self.required(HeaderName::CallId, "Call-ID")?);
        if v.is_empty() || v.iter().any(|&b| lex::is_lws(b) || b < 0x21) {
            return Err(invalid("Call-ID", "empty or contains whitespace"));
        }
        Ok(v)
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, HeaderError> {
        CSeq::parse(self.required(HeaderName::CSeq, "CSeq")?)
    }

    /// Max-Forwards, `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        self.single(HeaderName::MaxForwards, "Max-Forwards")?
            .map(|v| {
                lex::parse_decimal(lex::trim(v), 255)
                    .map(|n| n as u8)
                    .ok_or(invalid("Max-Forwards", "not a number in 0..=255"))
            })
            .transpose()
    }

    /// Parses every field of [`Core`] and checks the rules a proxy relies on (see the module
    /// documentation).
    pub fn core(&self) -> Result<Core<'_>, HeaderError> {
        let mut top = None;
        let via_count = self.for_each_via(|v| {
            top.get_or_insert(v);
            Ok(())
        })?;
        let via = top.ok_or(HeaderError::Missing("Via"))?;
        if self.is_request() && self.request_uri().is_none() {
            return Err(invalid("Request-URI", "malformed URI"));
        }
        let cseq = self.cseq()?;
        if let Some(method) = self.method_str() {
            if cseq.method_raw != method {
                return Err(invalid("CSeq", "method differs from the request line"));
            }
        }
        let core = Core {
            via,
            via_count,
            from: self.from_hdr()?,
            to: self.to_hdr()?,
            call_id: self.call_id()?,
            cseq,
            max_forwards: self.max_forwards()?,
        };
        for (kind, name) in [
            (HeaderName::ContentLength, "Content-Length"),
            (HeaderName::ContentType, "Content-Type"),
            (HeaderName::SessionExpires, "Session-Expires"),
            (HeaderName::MinSe, "Min-SE"),
        ] {
            self.single(kind, name)?;
        }
        Ok(core)
    }

    /// Contact values (`*` is returned as an error-free empty list with `star = true`).
    pub fn contacts(&self) -> Result<(Vec<NameAddr<'_>>, bool), HeaderError> {
        let mut star = false;
        let mut out = Vec::new();
        for line in self.headers().values(HeaderName::Contact) {
            if lex::trim(line) == b"*" {
                star = true;
                continue;
            }
            self.name_addr_list(line, "Contact", &mut out)?;
        }
        Ok((out, star))
    }

    fn name_addr_list<'a>(
        &self,
        line: &'a [u8],
        header: &'static str,
        out: &mut Vec<NameAddr<'a>>,
    ) -> Result<(), HeaderError> {
        let mut res = Ok(());
        lex::for_each_item(line, |item| {
            if res.is_ok() {
                match NameAddr::parse(item, header) {
                    Ok(na) => out.push(na),
                    Err(e) => res = Err(e),
                }
            }
        })
        .map_err(|_| invalid(header, "unbalanced quote or bracket"))?;
        res
    }

    /// Every value of a list header of name-addrs (Route, Record-Route,
    /// P-Asserted-Identity), in order.
    pub fn name_addrs(&self, kind: HeaderName) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        let header = kind.canonical().unwrap_or("header");
        let mut out = Vec::new();
        for line in self.headers().values(kind) {
            self.name_addr_list(line, header, &mut out)?;
        }
        Ok(out)
    }

    /// Route values.
    pub fn routes(&self) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.name_addrs(HeaderName::Route)
    }

    /// Record-Route values.
    pub fn record_routes(&self) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// P-Asserted-Identity values (RFC 3325: at most one sip/sips and one tel).
    pub fn p_asserted_identity(&self) -> Result<Vec<NameAddr<'_>>, HeaderError> {
        self.name_addrs(HeaderName::PAssertedIdentity)
    }

    /// Option tags of Require, Supported, Proxy-Require or Unsupported.
    pub fn option_tags(&self, kind: HeaderName) -> Result<Vec<&[u8]>, HeaderError> {
        let header = kind.canonical().unwrap_or("header");
        let mut out = Vec::new();
        for line in self.headers().values(kind) {
            let mut ok = true;
            lex::for_each_item(line, |tag| {
                if lex::is_token_str(tag) {
                    out.push(tag);
                } else if !tag.is_empty() {
                    ok = false;
                }
            })
            .map_err(|_| invalid(header, "unbalanced quote"))?;
            if !ok {
                return Err(invalid(header, "option tag is not a token"));
            }
        }
        Ok(out)
    }

    /// Session-Expires, when present.
    pub fn session_expires(&self) -> Result<Option<SessionExpires>, HeaderError> {
        self.single(HeaderName::SessionExpires, "Session-Expires")?
            .map(SessionExpires::parse)
            .transpose()
    }

    /// Min-SE in seconds, when present.
    pub fn min_se(&self) -> Result<Option<u32>, HeaderError> {
        self.single(HeaderName::MinSe, "Min-SE")?
            .map(|v| delta_seconds(v, "Min-SE").map(|(s, _)| s))
            .transpose()
    }

    /// Content-Type, when present.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, HeaderError> {
        self.single(HeaderName::ContentType, "Content-Type")?
            .map(MediaType::parse)
            .transpose()
    }

    /// Privacy values (RFC 3323: `id`, `header`, `user`, `none`, `critical`, …).
    pub fn privacy(&self) -> Vec<&[u8]> {
        self.headers()
            .values(HeaderName::Privacy)
            .flat_map(|v| v.split(|&b| b == b';' || b == b','))
            .map(lex::trim)
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// The Event header, when present.
    pub fn event(&self) -> Result<Option<Event<'_>>, HeaderError> {
        let Some(v) = self.single(HeaderName::Event, "Event")? else {
            return Ok(None);
        };
        let v = lex::trim(v);
        let end = v.iter().position(|&b| !lex::is_token(b)).unwrap_or(v.len());
        let package = v.get(..end).unwrap_or(&[]);
        let params = v.get(end..).unwrap_or(&[]);
        if package.is_empty() {
            return Err(invalid("Event", "missing event package"));
        }
        lex::for_each_param(params, |_| false).map_err(|_| invalid("Event", "bad parameter"))?;
        Ok(Some(Event { package, params }))
    }

    /// True when the Request-URI is of a scheme a SIP proxy can route (sip, sips, tel).
    pub fn request_uri_routable(&self) -> bool {
        self.request_uri()
            .is_some_and(|u| matches!(u.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn msg(s: &str) -> Message {
        Message::parse_slice(s.as_bytes()).unwrap()
    }

    #[test]
    fn fast_branch_agrees_with_the_full_parse() {
        for v in [
            "SIP/2.0/UDP h;branch=z9hG4bK1",
            "SIP / 2.0 / TCP [2001:db8::1]:5060 ; rport ; BRANCH = z9hG4bK2 ;x=\"a,b\"",
            "SIP/2.0/UDP h:5060, SIP/2.0/UDP g;branch=z9hG4bKlower",
            "SIP/2.0/TLS h;received=[2001:db8::2];branch=z9hG4bK3",
            "SIP/2.0/UDP h;branch",
            "SIP/2.0/UDP h",
        ] {
            let m = msg(&format!(
                "OPTIONS sip:x@y SIP/2.0\r\nVia: {v}\r\nl: 0\r\n\r\n"
            ));
            let full = m.top_via().map(|v| v.branch());
            assert_eq!(m.top_via_branch(), full, "{v}");
        }
    }

    #[test]
    fn fast_tags_agree_with_the_full_parse() {
        for v in [
            "<sip:a@b>;tag=1",
            "\"A <x> ;tag=no\" <sip:a@b;tag=uri-param>;tag=2",
            "\"A \\\" q\" <sip:a@b> ; TAG = 3 ;x",
            "sip:a@b;tag=4",
            "sip:a@b",
            "Bob <sip:+1;npdi@h;user=phone>",
            "<sip:a@b>;tag",
            "<tel:+1555;phone-context=x>;foo=bar;tag=5",
            "  <sip:a@b>  ;tag=6  ",
        ] {
            let m = msg(&format!(
                "OPTIONS sip:x@y SIP/2.0\r\nFrom: {v}\r\nTo: {v}\r\nl: 0\r\n\r\n"
            ));
            let full = m.from_hdr().map(|f| f.tag());
            assert_eq!(m.from_tag_param(), full, "{v}");
            assert_eq!(m.to_tag_param(), m.to_hdr().map(|f| f.tag()), "{v}");
        }
        // Broken ones are refused, never read past.
        for v in ["\"open <sip:a@b>;tag=1", "<sip:a@b;tag=1"] {
            let m = msg(&format!(
                "OPTIONS sip:x@y SIP/2.0\r\nFrom: {v}\r\nl: 0\r\n\r\n"
            ));
            assert!(m.from_tag_param().is_err(), "{v}");
            assert!(m.from_hdr().is_err(), "{v}");
        }
    }

    #[test]
    fn via_with_lws_everywhere() {
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.is_rfc3261_branch());
        let v = Via::parse(
            b"SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bKx;rport;received=[2001:db8::9:255]",
        )
        .unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"[2001:db8::9:255]"[..]));
        assert!(v.is_rfc3261_branch());
        assert!(Via::parse(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(Via::parse(b"SIP/3.0/UDP h").is_err());
        assert!(Via::parse(b"SIP/2.0/UDP").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
            "From",
        )
        .unwrap();
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
        assert_eq!(n.display, Some(&br#""J Rosenberg \\\"""#[..]));
        let n = NameAddr::parse(b"sip:caller@example.net;tag=134161461246", "From").unwrap();
        assert!(!n.bracketed);
        assert_eq!(n.tag(), Some(&b"134161461246"[..]));
        assert!(NameAddr::parse(br#""Mr. J. User <sip:j.user@example.com>"#, "From").is_err());
        assert!(NameAddr::parse(b"Bob <sip:bob@x", "To").is_err());
    }

    #[test]
    fn core_rules() {
        let base = "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 5 INVITE\r\nMax-Forwards: 0068\r\nl: 0\r\n\r\n";
        let m = msg(base);
        let c = m.core().unwrap();
        assert_eq!(c.cseq.seq, 5);
        assert_eq!(c.max_forwards, Some(68));
        assert_eq!(c.from.tag(), Some(&b"1"[..]));
        assert_eq!(c.to.tag(), None);
        let m = msg(&base.replace("CSeq: 5 INVITE", "CSeq: 5 OPTIONS"));
        assert!(matches!(
            m.core(),
            Err(HeaderError::Invalid { header: "CSeq", .. })
        ));
        let m = msg(&base.replace("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"));
        assert_eq!(m.core(), Err(HeaderError::Duplicate("Call-ID")));
        let m = msg(&base.replace("Max-Forwards: 0068", "Max-Forwards: 300"));
        assert!(m.core().is_err());
        let m = msg(&base.replace("CSeq: 5", "CSeq: 2147483648"));
        assert!(m.core().is_err());
        let m = msg(&base.replace("To: <sip:a@b>\r\n", ""));
        assert_eq!(m.core(), Err(HeaderError::Missing("To")));
    }

    #[test]
    fn session_timer_and_lists() {
        let m = msg("UPDATE sip:a@b SIP/2.0\r\nSession-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\nSupported: timer, 100rel\r\nRequire: timer\r\nContent-Type: application/sdp\r\nPrivacy: id;header\r\nEvent: vq-rtcpxr;id=5\r\nl: 0\r\n\r\n");
        assert_eq!(
            m.session_expires().unwrap(),
            Some(SessionExpires {
                seconds: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(m.min_se().unwrap(), Some(90));
        assert_eq!(
            m.option_tags(HeaderName::Supported).unwrap(),
            vec![&b"timer"[..], b"100rel"]
        );
        assert!(m.content_type().unwrap().unwrap().is("application", "SDP"));
        assert_eq!(m.privacy(), vec![&b"id"[..], b"header"]);
        assert_eq!(m.event().unwrap().unwrap().package, b"vq-rtcpxr");
    }
}
