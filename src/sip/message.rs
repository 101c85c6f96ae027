//! The zero-copy message model and its structural parser.
//!
//! A [`Message`] is the received bytes (`bytes::Bytes`, shared, never copied) plus a small
//! index: the start line, one [`Header`] per header line (name and value spans, the name
//! classified once), and the body span. Typed access to header values is lazy (see
//! [`super::headers`]); this module only establishes the structure.
//!
//! Invariants of a parsed message:
//! - every line of the head ends in CRLF; a bare CR or LF is refused (inconsistent line-ending
//!   handling between two parsers is a request-smuggling vector);
//! - every span lies inside `buf`; a header value span may contain folds (CRLF + SP/HTAB),
//!   which the typed parsers treat as whitespace;
//! - at most one distinct Content-Length value, and the body is exactly that long (octets after
//!   it in a datagram are ignored, RFC 4475 dblreq);
//! - the Request-URI parses (any scheme; a non-SIP scheme is the validator's 416, not ours);
//! - every size is within [`Limits`], checked before the work it bounds.

use bytes::Bytes;
use memchr::memchr2;

use super::lex::{self, BadLength};
use super::limits::Limits;
use super::memo::{self, Memo, UriAt};
use super::name::{eq_name, HeaderName};
use super::uri::{Uri, UriError};

/// A byte range inside a message buffer. `u32` offsets keep the index small; [`Limits`]
/// guarantees buffers fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        // Callers only build spans of buffers bounded by `Limits::max_stream_buffer`, which
        // `Limits::check` keeps below 4 GiB; saturate rather than wrap regardless.
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span {
            start: clamp(start),
            end: clamp(end),
        }
    }

    /// The bytes this span covers (empty if it does not fit `buf`).
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// True for an empty span.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Request methods. Extension methods are ordinary: `Other` with the text in the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Message,
    Notify,
    Subscribe,
    Refer,
    Publish,
    Other,
}

impl Method {
    /// Classifies a method token. Methods are case-sensitive (RFC 3261 §7.1).
    pub fn classify(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"MESSAGE" => Method::Message,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// Method class; the exact text is `method_span`.
        method: Method,
        /// Method text.
        method_span: Span,
        /// Request-URI text.
        uri: Span,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// Status code, 100..=699.
        status: u16,
        /// Reason phrase (may be empty, may be any UTF-8).
        reason: Span,
    },
}

/// One header line of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The name as written (no surrounding whitespace).
    pub name: Span,
    /// The value, trimmed; may contain folds.
    pub value: Span,
    /// The whole line from the first byte of the name through its CRLF (for removal).
    pub line: Span,
    /// The classified name.
    pub kind: HeaderName,
}

/// The header index over a buffer. Also what an error response is built from when the start
/// line or body of a request is broken but its headers could be indexed.
#[derive(Debug, Clone)]
pub struct Headers {
    buf: Bytes,
    list: Vec<Header>,
    seen: Seen,
}

/// Known header names (every [`HeaderName`] but `Other`, which is last).
const KNOWN: usize = HeaderName::Other as usize;
const _: () = assert!(KNOWN <= 64, "Seen::more has one bit per known name");

/// Where each known header first appears, built with the index: the typed accessors ask
/// for Call-ID, CSeq, From, To and Via many times per message, and a lookup that refuses
/// duplicates used to walk every line.
#[derive(Debug, Clone)]
struct Seen {
    /// Index of the first line of each known name, plus one; 0 when absent.
    first: [u16; KNOWN],
    /// Bit `k` set when name `k` has more than one line.
    more: u64,
}

impl Seen {
    fn of(list: &[Header]) -> Seen {
        let mut seen = Seen {
            first: [0; KNOWN],
            more: 0,
        };
        for (i, h) in list.iter().enumerate() {
            let k = h.kind as usize;
            let Some(slot) = seen.first.get_mut(k) else {
                continue;
            };
            if *slot == 0 {
                // Lines past u16::MAX (never, with any sane `max_headers`) are found by
                // the walk: `first` stays 0 and `more` is set so that nothing is trusted.
                match u16::try_from(i + 1) {
                    Ok(at) => *slot = at,
                    Err(_) => seen.more |= 1 << k,
                }
            } else {
                seen.more |= 1 << k;
            }
        }
        seen
    }

    /// `Some(None)`: the name is absent; `Some(Some(i))`: its only line is `i`; `None`:
    /// several lines (or an `Other` name): walk the list.
    fn only(&self, kind: HeaderName) -> Option<Option<usize>> {
        let k = kind as usize;
        let first = *self.first.get(k)?;
        if self.more & (1 << k) != 0 {
            return None;
        }
        Some((first as usize).checked_sub(1))
    }
}

impl Headers {
    pub(crate) fn new(buf: Bytes, list: Vec<Header>) -> Headers {
        let seen = Seen::of(&list);
        Headers { buf, list, seen }
    }

    /// The value of a known header that has at most one line: `Ok(None)` when absent,
    /// `Err(())` when it has several.
    pub(crate) fn single(&self, kind: HeaderName) -> Result<Option<&[u8]>, ()> {
        match self.seen.only(kind) {
            Some(at) => Ok(at.and_then(|i| self.value_at(i))),
            None => {
                let mut it = self.values(kind);
                let first = it.next();
                match it.next() {
                    Some(_) => Err(()),
                    None => Ok(first),
                }
            }
        }
    }

    /// The value of line `i`.
    fn value_at(&self, i: usize) -> Option<&[u8]> {
        self.list.get(i).map(|h| h.value.of(&self.buf))
    }

    /// The underlying bytes.
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    /// Every header line in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> + '_ {
        self.list.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Values of every line of a known header, in order.
    pub fn values(&self, kind: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.list
            .iter()
            .filter(move |h| h.kind == kind)
            .map(|h| h.value.of(&self.buf))
    }

    /// The first value of a known header.
    pub fn first(&self, kind: HeaderName) -> Option<&[u8]> {
        match self.seen.only(kind) {
            Some(at) => at.and_then(|i| self.value_at(i)),
            None => self.values(kind).next(),
        }
    }

    /// Number of lines of a known header.
    pub fn count(&self, kind: HeaderName) -> usize {
        match self.seen.only(kind) {
            Some(at) => usize::from(at.is_some()),
            None => self.list.iter().filter(|h| h.kind == kind).count(),
        }
    }

    /// Values of every line whose name matches `name` (any case, compact forms included),
    /// e.g. `X-MS-TenantID` or `l`.
    pub fn by_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let kind = HeaderName::classify(name.as_bytes());
        self.list
            .iter()
            .filter(move |h| {
                if kind == HeaderName::Other {
                    h.kind == HeaderName::Other && eq_name(h.name.of(&self.buf), name.as_bytes())
                } else {
                    h.kind == kind
                }
            })
            .map(|h| h.value.of(&self.buf))
    }

    /// The raw bytes of one header line's name.
    pub fn name_of(&self, h: &Header) -> &[u8] {
        h.name.of(&self.buf)
    }

    /// The raw bytes of one header line's value.
    pub fn value_of(&self, h: &Header) -> &[u8] {
        h.value.of(&self.buf)
    }
}

/// A parsed SIP message: bytes plus index. Cheap to clone (the bytes are shared).
#[derive(Debug, Clone)]
pub struct Message {
    start: StartLine,
    headers: Headers,
    /// The body, exactly Content-Length bytes (or the rest of a datagram without one).
    body: Span,
    /// End of the head (index just past the blank line).
    head_end: usize,
    content_length: Option<u32>,
    /// `Limits::max_vias` at parse time, enforced by the lazy Via accessors.
    max_vias: usize,
    /// The Request-URI, From and To once parsed.
    pub(crate) memo: Memo,
}

/// Why a message was refused by the structural parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A size limit was exceeded: refused with 513 (414 for the Request-URI).
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// Empty input or only whitespace.
    #[error("empty message")]
    Empty,
    /// No blank line ends the header section.
    #[error("header section not terminated")]
    Unterminated,
    /// A bare CR or LF in the head.
    #[error("line not terminated by CRLF")]
    BadLineEnding,
    /// Start line not of the form of a request or response line.
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    /// Request with a SIP version other than 2.0 (505).
    #[error("unsupported SIP version")]
    BadVersion,
    /// Request-URI does not parse.
    #[error("malformed Request-URI: {0}")]
    BadRequestUri(UriError),
    /// Status code not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatus,
    /// A header line without a colon or with a name that is not a token.
    #[error("malformed header line {line}")]
    BadHeaderLine {
        /// 1-based header line number.
        line: usize,
    },
    /// Content-Length negative, not a number, overflowing, or several different values.
    #[error("invalid Content-Length: {0}")]
    BadContentLength(&'static str),
    /// Content-Length larger than the bytes present (RFC 4475 clerr).
    #[error("body shorter than Content-Length")]
    BodyTooShort,
}

impl ParseError {
    /// The status a request with this error is refused with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge { what, .. } if *what == "Request-URI" => 414,
            ParseError::TooLarge { .. } => 513,
            ParseError::BadVersion => 505,
            _ => 400,
        }
    }
}

/// A refused message, with what could still be read of it.
#[derive(Debug, Clone)]
pub struct ParseFailure {
    /// Why it was refused.
    pub error: ParseError,
    /// The start line looked like a request (an error response is due), not a response.
    pub is_request: bool,
    /// The header index, when the header section itself could be read.
    pub headers: Option<Headers>,
}

impl Message {
    /// Parses one message from a datagram or a framed stream message.
    ///
    /// Octets after the Content-Length body are ignored; without Content-Length the body is
    /// the rest of the buffer (allowed on UDP only; the stream framer refuses it earlier).
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<Message, Box<ParseFailure>> {
        let fail = |error, is_request, headers| {
            Box::new(ParseFailure {
                error,
                is_request,
                headers,
            })
        };
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        let lead = buf
            .chunks(2)
            .take_while(|c| *c == b"\r\n")
            .count()
            .saturating_mul(2);
        let rest = buf.get(lead..).unwrap_or(&[]);
        if rest.is_empty() {
            return Err(fail(ParseError::Empty, false, None));
        }
        let is_request = !starts_with_ci(rest, b"SIP/");
        let oversize = buf.len() > limits.max_message;

        let head = match index_head(&buf, lead, limits) {
            Ok(h) => h,
            Err(e) => return Err(fail(e, is_request, None)),
        };
        let headers = Headers::new(buf.clone(), head.list);
        if let Some(line) = head.bad_line {
            return Err(fail(
                ParseError::BadHeaderLine { line },
                is_request,
                Some(headers),
            ));
        }
        if oversize {
            let e = ParseError::TooLarge {
                what: "message",
                limit: limits.max_message,
            };
            return Err(fail(e, is_request, Some(headers)));
        }
        let start = match parse_start_line(head.start_line.of(&buf), head.start_line.start, limits)
        {
            Ok(s) => s,
            Err(e) => return Err(fail(e, is_request, Some(headers))),
        };
        let (body, content_length) = match body_span(&headers, head.end, buf.len(), limits) {
            Ok(b) => b,
            Err(e) => return Err(fail(e, is_request, Some(headers))),
        };
        Ok(Message {
            start,
            headers,
            body,
            head_end: head.end,
            content_length,
            max_vias: limits.max_vias,
            memo: Memo::default(),
        })
    }

    /// Convenience for tests and tools: parses a copy of `bytes` with default limits.
    pub fn parse_slice(bytes: &[u8]) -> Result<Message, Box<ParseFailure>> {
        Message::parse(Bytes::copy_from_slice(bytes), &Limits::DEFAULT)
    }

    /// The whole buffer the message was parsed from.
    pub fn buf(&self) -> &Bytes {
        self.headers.buf()
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// The header index.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method class of a request.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method text of a request (extension methods included).
    pub fn method_str(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { method_span, .. } => Some(method_span.of(self.buf())),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason.of(self.buf())),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI text of a request.
    pub fn request_uri_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri.of(self.buf())),
            StartLine::Response { .. } => None,
        }
    }

    /// The parsed Request-URI of a request; `None` for responses and for a Request-URI that
    /// does not follow the URI grammar (which [`Message::core`] reports as an error).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        let parse = || {
            let bytes = self.request_uri_bytes().ok_or(())?;
            Uri::parse(bytes).map_err(|_| ())
        };
        memo::remember(
            &self.memo.request_uri,
            self.buf(),
            parse,
            UriAt::of,
            UriAt::get,
        )
        .ok()
    }

    /// The span of the Request-URI (for the editor).
    pub fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        self.body.of(self.buf())
    }

    /// The body span.
    pub fn body_span(&self) -> Span {
        self.body
    }

    /// Index just past the blank line that ends the head.
    pub fn head_end(&self) -> usize {
        self.head_end
    }

    /// The Content-Length value, if the message had one.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// The message bytes proper: start line through the end of the body (trailing datagram
    /// octets excluded).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf().get(..self.body.end as usize).unwrap_or(&[])
    }

    /// The Via count limit this message was parsed with.
    pub(crate) fn max_vias(&self) -> usize {
        self.max_vias
    }

    /// Shorthand for `headers().first(kind)`.
    pub fn header(&self, kind: HeaderName) -> Option<&[u8]> {
        self.headers.first(kind)
    }

    /// Values of any header by name, e.g. `msg.header_by_name("X-MS-TenantID")`.
    pub fn header_by_name<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.by_name(name)
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

struct Head {
    start_line: Span,
    list: Vec<Header>,
    /// Index just past the blank line.
    end: usize,
    /// First header line that could not be read (skipped so the rest can still be indexed
    /// for an error response).
    bad_line: Option<usize>,
}

/// Builds the header index of the head starting at `from`. Scans only up to `max_head`
/// bytes, so an oversize message costs no more than a maximal valid head.
fn index_head(buf: &[u8], from: usize, limits: &Limits) -> Result<Head, ParseError> {
    let scan_end = buf.len().min(from.saturating_add(limits.max_head));
    let window = buf.get(..scan_end).unwrap_or(&[]);
    let line_end = |at: usize| -> Result<Option<usize>, ParseError> {
        // Returns the index of the LF ending the line that starts at `at`. One scan finds the
        // first CR or LF: it must be a CR immediately followed by LF.
        let tail = window.get(at..).unwrap_or(&[]);
        match memchr2(b'\r', b'\n', tail) {
            None => Ok(None),
            Some(off) => {
                let cr = at + off;
                match (window.get(cr), window.get(cr + 1)) {
                    (Some(b'\r'), Some(b'\n')) => Ok(Some(cr + 1)),
                    // A CR as the last byte scanned: the LF may be beyond the window.
                    (Some(b'\r'), None) => Ok(None),
                    _ => Err(ParseError::BadLineEnding),
                }
            }
        }
    };
    let unterminated = |buf_len: usize| {
        if buf_len > scan_end {
            ParseError::TooLarge {
                what: "header section",
                limit: limits.max_head,
            }
        } else {
            ParseError::Unterminated
        }
    };

    let Some(lf) = line_end(from)? else {
        return Err(unterminated(buf.len()));
    };
    let start_line = Span::new(from, lf - 1);
    let mut list: Vec<Header> = Vec::with_capacity(24);
    let mut at = lf + 1;
    let mut bad_line = None;
    let mut skipping = false;
    loop {
        let Some(lf) = line_end(at)? else {
            if at == buf.len() {
                // The datagram ends right after a header line's CRLF, without the blank line
                // (RFC 4475 baddn and inv2543 as published): the datagram boundary is the end
                // of the message. The stream framer never delivers such a buffer.
                return Ok(Head {
                    start_line,
                    list,
                    end: at,
                    bad_line,
                });
            }
            return Err(unterminated(buf.len()));
        };
        if lf == at + 1 {
            // Blank line: end of head.
            return Ok(Head {
                start_line,
                list,
                end: lf + 1,
                bad_line,
            });
        }
        let first = window.get(at).copied().unwrap_or(b'\r');
        if (first == b' ' || first == b'\t') && skipping {
            // Continuation of a header line that could not be read: skipped with it, never
            // glued onto the previous good header (whose line span would then cover the bad
            // line, and an error response copying it would be malformed).
        } else if first == b' ' || first == b'\t' {
            // Folded continuation of the previous header.
            let Some(prev) = list.last_mut() else {
                return Err(ParseError::BadHeaderLine { line: 1 });
            };
            let cstart = skip_ws(window, at);
            let cend = trim_end(window, cstart, lf - 1);
            if cend > cstart {
                if prev.value.is_empty() {
                    // The value was empty so far: it starts on this continuation line.
                    prev.value.start = Span::new(cstart, 0).start;
                }
                prev.value.end = Span::new(0, cend).end;
            }
            prev.line.end = Span::new(0, lf + 1).end;
            // Line lengths exclude the final CRLF, as the stream framer counts them.
            if prev.line.len().saturating_sub(2) > limits.max_line {
                return Err(ParseError::TooLarge {
                    what: "header line",
                    limit: limits.max_line,
                });
            }
        } else {
            if list.len() >= limits.max_headers {
                return Err(ParseError::TooLarge {
                    what: "header count",
                    limit: limits.max_headers,
                });
            }
            if lf.saturating_sub(1) - at > limits.max_line {
                return Err(ParseError::TooLarge {
                    what: "header line",
                    limit: limits.max_line,
                });
            }
            skipping = false;
            match header_line(window, at, lf, list.len() + 1) {
                Ok(h) => list.push(h),
                Err(e) => {
                    skipping = true;
                    bad_line.get_or_insert(match e {
                        ParseError::BadHeaderLine { line } => line,
                        _ => list.len() + 1,
                    });
                }
            }
        }
        at = lf + 1;
    }
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while matches!(buf.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// End of `buf[from..end]` with trailing SP/HTAB removed.
fn trim_end(buf: &[u8], from: usize, mut end: usize) -> usize {
    while end > from && matches!(buf.get(end - 1), Some(b' ' | b'\t')) {
        end -= 1;
    }
    end
}

/// Parses `name [WSP] ":" value` for the line `buf[at..=lf]`.
fn header_line(buf: &[u8], at: usize, lf: usize, line_no: usize) -> Result<Header, ParseError> {
    let bad = ParseError::BadHeaderLine { line: line_no };
    let line = buf.get(at..lf).unwrap_or(&[]);
    let i = at
        + line
            .iter()
            .position(|&b| !lex::is_token(b))
            .unwrap_or(line.len());
    if i == at {
        return Err(bad);
    }
    let name = Span::new(at, i);
    let colon = skip_ws(buf, i);
    if buf.get(colon) != Some(&b':') {
        return Err(bad);
    }
    let vstart = skip_ws(buf, colon + 1);
    let vend = trim_end(buf, vstart, lf - 1).max(vstart);
    let kind = HeaderName::classify(name.of(buf));
    Ok(Header {
        name,
        value: Span::new(vstart.min(lf - 1), vend.min(lf - 1).max(vstart.min(lf - 1))),
        line: Span::new(at, lf + 1),
        kind,
    })
}

/// Parses the start line; `offset` is its position in the buffer.
fn parse_start_line(line: &[u8], offset: u32, limits: &Limits) -> Result<StartLine, ParseError> {
    let at = |s: &[u8]| {
        // Position of sub-slice `s` of `line` in the buffer.
        let start = (s.as_ptr() as usize).saturating_sub(line.as_ptr() as usize) + offset as usize;
        Span::new(start, start + s.len())
    };
    if starts_with_ci(line, b"SIP/") {
        return parse_status_line(line, offset);
    }
    // Elements are separated by SP; runs of SP and trailing SP are tolerated (RFC 4475
    // lwsstart and trws are "either"; accepting them costs nothing and harms no one).
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine(
            "request line needs method, URI and version",
        ));
    };
    if !lex::is_token_str(method) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    if !starts_with_ci(version, b"SIP/") {
        return Err(ParseError::BadStartLine("no SIP version"));
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(ParseError::BadVersion);
    }
    if uri.len() > limits.max_uri {
        return Err(ParseError::TooLarge {
            what: "Request-URI",
            limit: limits.max_uri,
        });
    }
    // Structure only: a scheme, and nothing that would make the request line ambiguous
    // (angle brackets, quotes, controls; whitespace already split the line). The full URI
    // grammar is checked lazily by `Message::core` (RFC 5118 ipv6-bad and friends get their
    // 400 there), which every message the proxy handles goes through.
    check_uri_shape(uri).map_err(ParseError::BadRequestUri)?;
    Ok(StartLine::Request {
        method: Method::classify(method),
        method_span: at(method),
        uri: at(uri),
    })
}

/// `scheme ":" 1*char` with visible ASCII only and no `<`, `>` or `"`.
fn check_uri_shape(uri: &[u8]) -> Result<(), UriError> {
    let colon = memchr::memchr(b':', uri).ok_or(UriError::NoScheme)?;
    let scheme = uri.get(..colon).unwrap_or(&[]);
    if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(UriError::BadScheme);
    }
    if colon + 1 >= uri.len() {
        return Err(UriError::Empty);
    }
    match uri.iter().find(|&&b| !URI_CHAR[usize::from(b)]) {
        Some(&b) => Err(UriError::BadChar(b)),
        None => Ok(()),
    }
}

/// Bytes a URI may contain at all: visible ASCII except `<`, `>` and `"`.
static URI_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = !matches!(i as u8, b'<' | b'>' | b'"');
        i += 1;
    }
    t
};

fn parse_status_line(line: &[u8], offset: u32) -> Result<StartLine, ParseError> {
    let version = line.get(..7).unwrap_or(&[]);
    if !version.eq_ignore_ascii_case(b"SIP/2.0") || line.get(7) != Some(&b' ') {
        return Err(ParseError::BadStartLine(
            "status line must start with SIP/2.0",
        ));
    }
    let code = line.get(8..11).unwrap_or(&[]);
    let status = lex::parse_decimal(code, 699)
        .filter(|&s| code.len() == 3 && s >= 100)
        .ok_or(ParseError::BadStatus)?;
    let reason_start = match line.get(11) {
        None => 11,
        Some(b' ') => 12,
        Some(_) => return Err(ParseError::BadStatus),
    };
    // Reason-Phrase (RFC 3261 §25.1) has no control characters but HTAB: a NUL or ESC
    // would be forwarded to parsers downstream that may read it differently.
    let reason = line.get(reason_start..).unwrap_or(&[]);
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(ParseError::BadStatus);
    }
    let start = offset as usize + reason_start.min(line.len());
    Ok(StartLine::Response {
        status: status as u16,
        reason: Span::new(start, offset as usize + line.len()),
    })
}

/// Determines the body from Content-Length (every value must agree) and the buffer size.
fn body_span(
    headers: &Headers,
    head_end: usize,
    buf_len: usize,
    limits: &Limits,
) -> Result<(Span, Option<u32>), ParseError> {
    let mut cl: Option<u32> = None;
    for v in headers.values(HeaderName::ContentLength) {
        let n = lex::parse_content_length(v).map_err(|e| {
            ParseError::BadContentLength(match e {
                BadLength::Negative => "negative",
                BadLength::Overflow => "overflow",
                BadLength::NotANumber => "not a number",
            })
        })?;
        if cl.is_some_and(|prev| prev != n) {
            return Err(ParseError::BadContentLength("several different values"));
        }
        cl = Some(n);
    }
    let available = buf_len.saturating_sub(head_end);
    let len = match cl {
        Some(n) => n as usize,
        None => available,
    };
    if len > limits.max_body {
        return Err(ParseError::TooLarge {
            what: "body",
            limit: limits.max_body,
        });
    }
    if len > available {
        return Err(ParseError::BodyTooShort);
    }
    Ok((Span::new(head_end, head_end + len), cl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:+14255550100@gw.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12065550199@sip.pstnhub.microsoft.com>;tag=1\r\n\
To: <sip:+14255550100@gw.example.com>\r\n\
Call-ID: abc@1\r\n\
CSeq: 1 INVITE\r\n\
X-MS-TenantID: t1\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    /// The first-line table answers exactly as walking the list does.
    #[test]
    fn header_lookups_agree_with_a_walk_of_the_lines() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    v: SIP/2.0/UDP g;branch=z9hG4bK2\r\nCall-ID: c\r\nX-A: 1\r\nx-a: 2\r\n\
                    Supported: timer\r\nCSeq: 1 OPTIONS\r\ni: d\r\n\r\n";
        let m = Message::parse_slice(text.as_bytes()).unwrap();
        let h = m.headers();
        let walk = |k: HeaderName| h.iter().filter(|l| l.kind == k).collect::<Vec<_>>();
        for k in [
            HeaderName::Via,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::Supported,
            HeaderName::From,
            HeaderName::Other,
        ] {
            let lines = walk(k);
            assert_eq!(h.count(k), lines.len(), "{k:?}");
            assert_eq!(h.first(k), lines.first().map(|l| h.value_of(l)), "{k:?}");
            let single = match lines.len() {
                0 => Ok(None),
                1 => Ok(Some(h.value_of(lines[0]))),
                _ => Err(()),
            };
            assert_eq!(h.single(k), single, "{k:?}");
        }
        assert_eq!(h.first(HeaderName::CallId), Some(&b"c"[..]));
        assert_eq!(
            m.call_id(),
            Err(crate::sip::headers::HeaderError::Duplicate("Call-ID"))
        );
        assert_eq!(m.cseq().unwrap().seq, 1);
    }

    #[test]
    fn parses_structure() {
        let m = Message::parse_slice(INVITE).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(
            m.request_uri_bytes().unwrap(),
            b"sip:+14255550100@gw.example.com;user=phone"
        );
        assert_eq!(m.headers().len(), 8);
        assert_eq!(m.header(HeaderName::CallId), Some(&b"abc@1"[..]));
        assert_eq!(m.header_by_name("x-ms-tenantid").next(), Some(&b"t1"[..]));
        assert_eq!(m.header_by_name("i").next(), Some(&b"abc@1"[..]));
        assert_eq!(m.body(), b"v=0\n");
        assert_eq!(m.content_length(), Some(4));
    }

    #[test]
    fn folded_value_spans_continuation() {
        let msg =
            b"OPTIONS sip:a@b SIP/2.0\r\nSubject: one\r\n two\r\nTO :\r\n sip:x@y\r\nl: 0\r\n\r\n";
        let m = Message::parse_slice(msg).unwrap();
        assert_eq!(m.header(HeaderName::Subject), Some(&b"one\r\n two"[..]));
        assert_eq!(m.header(HeaderName::To), Some(&b"sip:x@y"[..]));
    }

    #[test]
    fn bare_lf_and_missing_colon_are_refused() {
        let e = Message::parse_slice(b"OPTIONS sip:a@b SIP/2.0\nl: 0\r\n\r\n").unwrap_err();
        assert_eq!(e.error, ParseError::BadLineEnding);
        let e = Message::parse_slice(b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n").unwrap_err();
        assert_eq!(e.error, ParseError::BadHeaderLine { line: 1 });
        assert!(e.is_request);
    }

    #[test]
    fn continuation_of_a_bad_line_is_skipped_with_it() {
        // Fuzz finding (validate target): the fold after a bad line was glued onto the
        // previous header, so the 400 built from the salvaged headers did not parse.
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nno colon here\r\n folded: tail\r\nCall-ID: c\r\n\r\n";
        let e = Message::parse_slice(msg).unwrap_err();
        let h = e.headers.unwrap();
        assert_eq!(h.len(), 2);
        let via = h.iter().next().unwrap();
        assert_eq!(
            via.line.of(h.buf()),
            b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        );
        let bytes =
            crate::sip::response::build_response(&h, 400, "Bad Request", Some(b"t"), &[], None);
        assert!(Message::parse(bytes, &Limits::DEFAULT).is_ok());
    }

    #[test]
    fn content_length_rules() {
        let short = b"OPTIONS sip:a@b SIP/2.0\r\nl: 10\r\n\r\nabc";
        assert_eq!(
            Message::parse_slice(short).unwrap_err().error,
            ParseError::BodyTooShort
        );
        let trailing = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcJUNK";
        let m = Message::parse_slice(trailing).unwrap();
        assert_eq!(m.body(), b"abc");
        assert!(m.as_bytes().ends_with(b"abc"));
        let conflict = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(matches!(
            Message::parse_slice(conflict).unwrap_err().error,
            ParseError::BadContentLength(_)
        ));
    }

    #[test]
    fn limits_refuse_before_parsing() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::DEFAULT
        };
        let e = Message::parse(Bytes::copy_from_slice(INVITE), &limits).unwrap_err();
        assert_eq!(e.error.status(), 513);
        let mut big = INVITE.to_vec();
        big.resize(Limits::DEFAULT.max_message + 1, b'x');
        let e = Message::parse(Bytes::from(big), &Limits::DEFAULT).unwrap_err();
        assert_eq!(e.error.status(), 513);
        assert!(e.headers.is_some(), "headers kept for the 513 reply");
    }

    #[test]
    fn line_limit_counts_like_the_framer() {
        // Fuzz review finding: a line of exactly max_line bytes (CRLF excluded) passed the
        // framer and got 513 from the parser.
        let limits = Limits {
            max_line: 128,
            ..Limits::DEFAULT
        };
        let value = "x".repeat(128 - "Subject: ".len());
        let ok = format!("OPTIONS sip:a@b SIP/2.0\r\nSubject: {value}\r\nl: 0\r\n\r\n");
        assert!(Message::parse(Bytes::from(ok.clone()), &limits).is_ok());
        let mut framer = crate::sip::framing::StreamFramer::new(limits);
        framer.push(ok.as_bytes()).unwrap();
        assert!(matches!(
            framer.next_frame(),
            Ok(Some(crate::sip::framing::Frame::Message(_)))
        ));
        let long = ok.replace("Subject: ", "Subject: y");
        let e = Message::parse(Bytes::from(long), &limits).unwrap_err();
        assert_eq!(e.error.status(), 513);
    }

    #[test]
    fn status_lines() {
        let m = Message::parse_slice(b"SIP/2.0 180 Ringing\r\nl:0\r\n\r\n").unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some(&b"Ringing"[..]));
        let m = Message::parse_slice(b"SIP/2.0 100\r\nl:0\r\n\r\n").unwrap();
        assert_eq!(m.reason(), Some(&b""[..]));
        for bad in [
            &b"SIP/2.0 200 O\x00K\r\n\r\n"[..],
            &b"SIP/2.0 4294967301 x\r\n\r\n"[..],
            b"SIP/2.0 099 x\r\n\r\n",
            b"SIP/2.0 1000 x\r\n\r\n",
        ] {
            let e = Message::parse_slice(bad).unwrap_err();
            assert_eq!(e.error, ParseError::BadStatus);
            assert!(!e.is_request);
        }
    }
}
