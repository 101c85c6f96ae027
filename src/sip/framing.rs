//! SIP over stream transports (TCP, TLS): cutting one connection's byte stream into messages
//! (RFC 3261 §18.3) and recognising the CRLF keep-alives of RFC 5626 §3.5.1.
//!
//! [`StreamFramer`] does no I/O. The transport appends what it reads ([`StreamFramer::push`],
//! or reads straight into [`StreamFramer::recv_buf`]) and then calls
//! [`StreamFramer::next_frame`] until it returns `Ok(None)`, which means "need more bytes"
//! and never "malformed". An `Err` is fatal: the transport closes the connection.
//!
//! # Invariants
//!
//! - A [`Frame::Message`] is exactly a start line, the headers, the blank line and
//!   Content-Length bytes of body, split off the buffer without copying. Every line of its
//!   head ends in CRLF (a bare CR or LF is fatal: lenient line endings are a request
//!   smuggling vector), every header line is `token *(SP / HTAB) ":" value` with folded
//!   continuation lines, and it has one Content-Length value (repeated identically at most)
//!   within the limits. The body is opaque.
//! - Each byte is scanned once. The head scanner keeps its position between calls and only
//!   looks again at a CR that was the last byte buffered, waiting for its LF. A header line is
//!   parsed once, as soon as the first byte of the next line shows that it is not folded.
//! - Limits are enforced as soon as they are known to be exceeded, never after buffering the
//!   excess: an unterminated head or line as soon as it is longer than its limit, the header
//!   count when a line starts, the body and message size from the head alone.
//! - After an error the framer is poisoned: its buffer is dropped and every later call returns
//!   the same error, so nothing after a framing error (say a second request hidden in a body
//!   whose Content-Length overflowed) is ever read as a message.
//! - `Ok(None)` from `next_frame` implies `room() > 0`: a connection never waits for bytes it
//!   has no room to buffer.
//!
//! # Keep-alives and CRLFs between messages
//!
//! Between messages CRLFs are paired greedily, starting after the previous message: two
//! consecutive CRLFs are a [`Frame::Ping`] (the transport answers with one CRLF), and an
//! unpaired CRLF is a [`Frame::Pong`] (a pong to our ping, or an empty line before a start
//! line, which RFC 3261 §7.5 tells us to ignore). A CRLF that is the last thing buffered is
//! reported as a `Pong` at once, so that a pong is never held back waiting for bytes that
//! may never come; if the next bytes to arrive are another CRLF, the pair is reported as a
//! `Ping`. RFC 5626 clients send `CRLFCRLF` in one write, which is one `Ping`; if TCP splits
//! it, the transport sees `Pong` then `Ping` and still answers exactly once. The number of
//! `Ping`s therefore depends only on the bytes, never on how they were cut into reads. The
//! price: two pongs to our own pings with no message between them read as a ping, and we
//! send one CRLF, which the peer takes as a pong or an empty line; that cannot loop, because
//! a lone CRLF is never answered. `CRLF CR` waits for one more byte. Any other bare CR or LF
//! between messages is fatal.

use bytes::buf::Limit;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::memchr2;

use super::lex::{is_token, parse_content_length, BadLength};
use super::limits::Limits;
use super::name::HeaderName;

/// How much spare capacity [`StreamFramer::recv_buf`] reserves for one read, at most.
const READ_RESERVE: usize = 8 * 1024;

/// What the framer found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message: exactly start line, headers, blank line and Content-Length bytes
    /// of body, split off the connection buffer without copying.
    Message(Bytes),
    /// A double-CRLF keep-alive ping: the transport must answer with a single CRLF pong
    /// (RFC 5626 §3.5.1).
    Ping,
    /// A single CRLF outside a message (a pong to our ping, or a stray CRLF between
    /// messages): nothing to do.
    Pong,
}

/// Why a stream can no longer be framed. Every variant is fatal for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// No Content-Length header: it is mandatory on streams (RFC 3261 §18.3).
    #[error("message without Content-Length on a stream transport")]
    MissingContentLength,
    /// A Content-Length with a minus sign.
    #[error("negative Content-Length")]
    NegativeContentLength,
    /// A Content-Length above `u32::MAX`.
    #[error("Content-Length does not fit in 32 bits")]
    ContentLengthOverflow,
    /// A Content-Length that is not one decimal number (empty, letters, a comma list).
    #[error("Content-Length is not a decimal number")]
    BadContentLength,
    /// Several Content-Length headers with different values.
    #[error("several Content-Length headers with different values")]
    ConflictingContentLength,
    /// The header section (start line to blank line) is or will be larger than `limit`.
    #[error("header section larger than {limit} bytes")]
    HeadTooLarge {
        /// `Limits::max_head`.
        limit: usize,
    },
    /// The body alone (`limit` is `Limits::max_body`) or head and body together (`limit` is
    /// `Limits::max_message`) would be larger than `limit`; decided from the head alone.
    #[error("message larger than {limit} bytes")]
    MessageTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// More bytes than `limit` would be buffered for this connection.
    #[error("more than {limit} bytes buffered on one connection")]
    BufferFull {
        /// `Limits::max_stream_buffer`.
        limit: usize,
    },
    /// A line (a header line with its folds) is longer than `limit`, CRLF excluded.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// `Limits::max_line`.
        limit: usize,
    },
    /// More header lines than `limit` (a folded line counts once).
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// `Limits::max_headers`.
        limit: usize,
    },
    /// A bare CR or a bare LF where CRLF is required.
    #[error("bare CR or LF where CRLF is required")]
    BadLineEnding,
    /// A header line that is not `token *(SP / HTAB) ":" value`, or a folded start line.
    #[error("malformed header line")]
    MalformedHeader,
}

/// Frames one stream connection: owns its receive buffer and the scan state.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    state: State,
    poisoned: Option<FramingError>,
    /// Bytes the head scanner has looked at, to prove scanning is incremental.
    #[cfg(test)]
    examined: usize,
}

/// Where the front of the buffer is in the stream grammar.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Between messages. `armed`: the last frame was a `Pong` for a CRLF that may be the
    /// first half of a ping split across reads.
    Gap { armed: bool },
    /// In a head that starts at `buf[0]`.
    Head(HeadScan),
    /// The head is valid; the whole message is the first `len` bytes.
    Body { len: usize },
}

/// What the front of the buffer holds between messages.
enum GapStep {
    /// A keep-alive was consumed.
    Frame(Frame),
    /// Nothing, or a CR whose meaning depends on the next bytes.
    NeedMore,
    /// The first byte of a start line.
    StartLine,
}

/// Incremental state of the head scanner; all offsets are from the start of the buffer.
#[derive(Debug, Clone, Copy)]
struct HeadScan {
    /// Bytes before `pos` have been scanned.
    pos: usize,
    /// Start of the logical line (folds included) being scanned.
    line_start: usize,
    /// Offset of the CR ending the last complete physical line.
    line_end: usize,
    /// `pos` is just after a CRLF: the next byte says fold, new header or blank line.
    at_line_start: bool,
    /// The logical line being scanned is the start line.
    in_start_line: bool,
    /// Header lines begun so far.
    headers: usize,
    /// The Content-Length value, once one has been seen.
    content_length: Option<u32>,
}

impl StreamFramer {
    /// A framer with an empty buffer, enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            limits,
            state: State::Gap { armed: false },
            poisoned: None,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Appends received bytes. Fails with `BufferFull` (and poisons the framer) if the
    /// buffered bytes would exceed `max_stream_buffer`; the caller closes the connection.
    /// Drain frames with [`next_frame`](Self::next_frame) before pushing more.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if data.len() > self.room() {
            let limit = self.limits.max_stream_buffer;
            return Err(self.poison(FramingError::BufferFull { limit }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// A buffer to read into directly, e.g. `stream.read_buf(&mut framer.recv_buf())` with
    /// tokio: writes land after the buffered bytes and stop at [`room`](Self::room). Check
    /// `room() > 0` first (a full buffer makes a read return 0, which looks like end of
    /// stream); `Ok(None)` from `next_frame` guarantees it. Only append through it.
    pub fn recv_buf(&mut self) -> Limit<&mut BytesMut> {
        let room = self.room();
        self.buf.reserve(room.min(READ_RESERVE));
        (&mut self.buf).limit(room)
    }

    /// How many more bytes may be buffered; 0 once poisoned.
    pub fn room(&self) -> usize {
        if self.poisoned.is_some() {
            return 0;
        }
        self.limits.max_stream_buffer.saturating_sub(self.buf.len())
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete frame, `Ok(None)` when more bytes are needed, `Err` on a
    /// fatal error. After an `Err`, every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        match self.step() {
            Ok(None) if self.buf.len() >= self.limits.max_stream_buffer => {
                let limit = self.limits.max_stream_buffer;
                Err(self.poison(FramingError::BufferFull { limit }))
            }
            Ok(frame) => Ok(frame),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Records a fatal error and drops every buffered byte.
    fn poison(&mut self, e: FramingError) -> FramingError {
        self.poisoned = Some(e);
        self.buf = BytesMut::new();
        self.state = State::Gap { armed: false };
        e
    }

    /// Advances the state machine until it has a frame or needs more bytes.
    fn step(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            match self.state {
                State::Gap { armed } => match self.gap(armed)? {
                    GapStep::Frame(frame) => return Ok(Some(frame)),
                    GapStep::NeedMore => return Ok(None),
                    GapStep::StartLine => self.state = State::Head(HeadScan::new()),
                },
                State::Head(mut scan) => {
                    let mut examined = 0;
                    let scanned = scan.scan(&self.buf, &self.limits, &mut examined);
                    #[cfg(test)]
                    {
                        self.examined = self.examined.saturating_add(examined);
                    }
                    self.state = State::Head(scan);
                    match scanned? {
                        // The head ends after the buffered bytes, if ever (see `scan`).
                        None if self.buf.len() >= self.limits.max_head => {
                            let limit = self.limits.max_head;
                            return Err(FramingError::HeadTooLarge { limit });
                        }
                        None => return Ok(None),
                        Some(head_len) => {
                            self.state = State::Body {
                                len: self.message_len(head_len, scan.content_length)?,
                            }
                        }
                    }
                }
                State::Body { len } => {
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    let message = self.buf.split_to(len).freeze();
                    self.state = State::Gap { armed: false };
                    return Ok(Some(Frame::Message(message)));
                }
            }
        }
    }

    /// Handles CRLFs between messages with the pairing rule of the module doc.
    fn gap(&mut self, armed: bool) -> Result<GapStep, FramingError> {
        let (consumed, frame, armed) = match self.buf.as_ref() {
            [] | [b'\r'] => return Ok(GapStep::NeedMore),
            [b'\r', b'\n', ..] if armed => (2, Frame::Ping, false),
            [b'\r', b'\n', b'\r', b'\n', ..] => (4, Frame::Ping, false),
            [b'\r', b'\n', b'\r'] => return Ok(GapStep::NeedMore),
            [b'\r', b'\n', b'\r', ..] => return Err(FramingError::BadLineEnding),
            [b'\r', b'\n'] => (2, Frame::Pong, true),
            [b'\r', b'\n', ..] => (2, Frame::Pong, false),
            [b'\r', ..] | [b'\n', ..] => return Err(FramingError::BadLineEnding),
            [_, ..] => return Ok(GapStep::StartLine),
        };
        // In bounds: each arm above matched at least `consumed` bytes.
        self.buf.advance(consumed.min(self.buf.len()));
        self.state = State::Gap { armed };
        Ok(GapStep::Frame(frame))
    }

    /// Length of the whole message whose head is `head_len` bytes, checked against limits.
    fn message_len(&self, head_len: usize, cl: Option<u32>) -> Result<usize, FramingError> {
        if head_len > self.limits.max_head {
            let limit = self.limits.max_head;
            return Err(FramingError::HeadTooLarge { limit });
        }
        let cl = cl.ok_or(FramingError::MissingContentLength)?;
        let limit = self.limits.max_message;
        usize::try_from(cl)
            .ok()
            .and_then(|cl| head_len.checked_add(cl))
            .filter(|&len| len <= limit)
            .ok_or(FramingError::MessageTooLarge { limit })
    }
}

impl HeadScan {
    fn new() -> Self {
        HeadScan {
            pos: 0,
            line_start: 0,
            line_end: 0,
            at_line_start: false,
            in_start_line: true,
            headers: 0,
            content_length: None,
        }
    }

    /// Scans `buf` from where the last call stopped. `Ok(Some(len))`: the head is complete
    /// and `len` bytes long, blank line included. `Ok(None)`: more bytes are needed, and the
    /// head, if it ever ends, will be longer than `buf`. Adds the bytes looked at to
    /// `examined`.
    fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        examined: &mut usize,
    ) -> Result<Option<usize>, FramingError> {
        loop {
            if self.at_line_start {
                let Some(&first) = buf.get(self.pos) else {
                    return Ok(None);
                };
                *examined = examined.saturating_add(1);
                match first {
                    b'\r' => {
                        return match buf.get(self.pos.saturating_add(1)) {
                            None => Ok(None),
                            Some(b'\n') => {
                                self.finish_line(buf, limits)?;
                                Ok(Some(self.pos.saturating_add(2)))
                            }
                            Some(_) => Err(FramingError::BadLineEnding),
                        };
                    }
                    // A fold continues the logical line; the start line cannot be folded.
                    b' ' | b'\t' if self.in_start_line => {
                        return Err(FramingError::MalformedHeader)
                    }
                    b' ' | b'\t' => {}
                    _ => {
                        self.finish_line(buf, limits)?;
                        self.in_start_line = false;
                        self.line_start = self.pos;
                        self.headers = self.headers.saturating_add(1);
                        if self.headers > limits.max_headers {
                            let limit = limits.max_headers;
                            return Err(FramingError::TooManyHeaders { limit });
                        }
                    }
                }
                self.at_line_start = false;
            }
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some(offset) = memchr2(b'\r', b'\n', rest) else {
                *examined = examined.saturating_add(rest.len());
                self.pos = buf.len();
                check_line(buf.len().saturating_sub(self.line_start), limits)?;
                return Ok(None);
            };
            *examined = examined.saturating_add(offset.saturating_add(1));
            let cr = self.pos.saturating_add(offset);
            check_line(cr.saturating_sub(self.line_start), limits)?;
            match buf.get(cr..).unwrap_or_default() {
                [b'\r', b'\n', ..] => {
                    self.line_end = cr;
                    self.pos = cr.saturating_add(2);
                    self.at_line_start = true;
                }
                // The LF may be in the next read: look at this CR again then.
                [b'\r'] => {
                    self.pos = cr;
                    return Ok(None);
                }
                _ => return Err(FramingError::BadLineEnding),
            }
        }
    }

    /// Parses the logical line that just ended (unless it is the start line), keeping its
    /// Content-Length.
    fn finish_line(&mut self, buf: &[u8], limits: &Limits) -> Result<(), FramingError> {
        if self.in_start_line {
            return Ok(());
        }
        let line = buf.get(self.line_start..self.line_end).unwrap_or_default();
        let (name, value) = split_header(line)?;
        if HeaderName::classify(name) != HeaderName::ContentLength {
            return Ok(());
        }
        let cl = parse_content_length(value).map_err(|e| match e {
            BadLength::Negative => FramingError::NegativeContentLength,
            BadLength::Overflow => FramingError::ContentLengthOverflow,
            BadLength::NotANumber => FramingError::BadContentLength,
        })?;
        if usize::try_from(cl).map_or(true, |cl| cl > limits.max_body) {
            let limit = limits.max_body;
            return Err(FramingError::MessageTooLarge { limit });
        }
        match self.content_length {
            Some(seen) if seen != cl => Err(FramingError::ConflictingContentLength),
            _ => {
                self.content_length = Some(cl);
                Ok(())
            }
        }
    }
}

/// Refuses a line (CRLF excluded) longer than `max_line`.
fn check_line(len: usize, limits: &Limits) -> Result<(), FramingError> {
    if len > limits.max_line {
        let limit = limits.max_line;
        return Err(FramingError::LineTooLong { limit });
    }
    Ok(())
}

/// Splits a header line into name and value: `token *(SP / HTAB) ":" value`.
fn split_header(line: &[u8]) -> Result<(&[u8], &[u8]), FramingError> {
    let name_len = line.iter().take_while(|&&b| is_token(b)).count();
    let (name, rest) = line.split_at_checked(name_len).unwrap_or((line, &[]));
    let colon = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    match rest.get(colon..).unwrap_or_default() {
        [b':', value @ ..] if !name.is_empty() => Ok((name, value)),
        _ => Err(FramingError::MalformedHeader),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with the given extra header lines (each ending in CRLF) and body.
    fn request(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "OPTIONS sip:+15551234567@sbc.example.com SIP/2.0\r\n\
             Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776\r\n\
             Call-ID: a84b4c76e66710\r\n\
             CSeq: 1 OPTIONS\r\n{headers}\r\n"
        )
        .into_bytes();
        m.extend_from_slice(body);
        m
    }

    /// A request with a correct `Content-Length` line.
    fn with_body(body: &[u8]) -> Vec<u8> {
        request(&format!("Content-Length: {}\r\n", body.len()), body)
    }

    /// Pulls frames until `Ok(None)` or an error, which ends the list.
    fn drain(f: &mut StreamFramer) -> Vec<Result<Frame, FramingError>> {
        let mut out = Vec::new();
        loop {
            match f.next_frame() {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    fn frames(input: &[u8]) -> Vec<Result<Frame, FramingError>> {
        let mut f = StreamFramer::new(Limits::DEFAULT);
        f.push(input).unwrap();
        drain(&mut f)
    }

    fn message(m: &[u8]) -> Result<Frame, FramingError> {
        Ok(Frame::Message(Bytes::copy_from_slice(m)))
    }

    /// Feeds `bad` then a valid message; asserts `want`, and that the valid message never
    /// comes out, even in a later push.
    fn assert_fatal(bad: &[u8], want: FramingError) {
        let mut f = StreamFramer::new(Limits::DEFAULT);
        let good = with_body(b"ok");
        let mut input = bad.to_vec();
        input.extend_from_slice(&good);
        f.push(&input).unwrap();
        assert_eq!(drain(&mut f), vec![Err(want)]);
        assert_eq!(f.push(&good), Err(want));
        assert_eq!(f.next_frame(), Err(want));
        assert_eq!((f.buffered(), f.room()), (0, 0));
    }

    #[test]
    fn pipelined_messages_come_out_in_order() {
        let (a, b, c) = (with_body(b"v=0\r\n"), with_body(b""), with_body(b"xyz"));
        let input = [a.clone(), b.clone(), c.clone()].concat();
        assert_eq!(frames(&input), vec![message(&a), message(&b), message(&c)]);
    }

    #[test]
    fn message_split_byte_by_byte() {
        let m = with_body(b"v=0\nbare LF and \r CR are fine in a body");
        let mut f = StreamFramer::new(Limits::DEFAULT);
        let mut out = Vec::new();
        for b in &m {
            f.push(&[*b]).unwrap();
            out.extend(drain(&mut f));
        }
        assert_eq!(out, vec![message(&m)]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn body_split_across_pushes_waits_for_all_of_it() {
        let m = with_body(b"0123456789");
        let (head, body) = m.split_at(m.len() - 10);
        let mut f = StreamFramer::new(Limits::DEFAULT);
        f.push(head).unwrap();
        f.push(&body[..4]).unwrap();
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&body[4..]).unwrap();
        f.push(b"INV").unwrap();
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(Bytes::from(m)))));
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.buffered(), 3);
    }

    #[test]
    fn keepalive_ping_and_pong() {
        use Frame::{Ping, Pong};
        assert_eq!(frames(b"\r\n\r\n"), vec![Ok(Ping)]);
        assert_eq!(frames(b"\r\n"), vec![Ok(Pong)]);
        assert_eq!(frames(b"\r\n\r\n\r\n"), vec![Ok(Ping), Ok(Pong)]);
        assert_eq!(frames(b"\r\n\r\n\r\n\r\n"), vec![Ok(Ping), Ok(Ping)]);

        // A ping split after its first CRLF: reported as Pong then Ping, answered once.
        let mut f = StreamFramer::new(Limits::DEFAULT);
        f.push(b"\r\n").unwrap();
        assert_eq!(drain(&mut f), vec![Ok(Pong)]);
        f.push(b"\r\n").unwrap();
        assert_eq!(drain(&mut f), vec![Ok(Ping)]);
        // ...and the pairing restarts after it.
        f.push(b"\r\n").unwrap();
        assert_eq!(drain(&mut f), vec![Ok(Pong)]);

        // Split inside the second CRLF: waits for the last byte.
        let mut f = StreamFramer::new(Limits::DEFAULT);
        f.push(b"\r\n\r").unwrap();
        assert_eq!(drain(&mut f), vec![]);
        f.push(b"\n").unwrap();
        assert_eq!(drain(&mut f), vec![Ok(Ping)]);

        // A pong followed by a message is just a pong.
        let m = with_body(b"");
        let mut f = StreamFramer::new(Limits::DEFAULT);
        f.push(b"\r\n").unwrap();
        assert_eq!(drain(&mut f), vec![Ok(Pong)]);
        f.push(&m).unwrap();
        assert_eq!(drain(&mut f), vec![message(&m)]);
    }

    #[test]
    fn crlf_between_messages() {
        let (a, b) = (with_body(b"a"), with_body(b"b"));
        let input = [&a[..], b"\r\n", &b, b"\r\n\r\n\r\n", &a, b"\r\n\r\n"].concat();
        let want = vec![
            message(&a),
            Ok(Frame::Pong),
            message(&b),
            Ok(Frame::Ping),
            Ok(Frame::Pong),
            message(&a),
            Ok(Frame::Ping),
        ];
        assert_eq!(frames(&input), want);
    }

    #[test]
    fn bare_cr_or_lf_outside_a_body_is_fatal() {
        assert_fatal(b"\n", FramingError::BadLineEnding);
        assert_fatal(b"\r\n\rX", FramingError::BadLineEnding);
        let lf_head = String::from_utf8(with_body(b"")).unwrap();
        let lf_head = lf_head.replacen("\r\nCall-ID", "\nCall-ID", 1);
        assert_fatal(lf_head.as_bytes(), FramingError::BadLineEnding);
        assert_fatal(
            b"OPTIONS sip:a SIP/2.0\r\nCSeq: 1\rX: y\r\n\r\n",
            FramingError::BadLineEnding,
        );
        // The blank line itself must be CRLF.
        assert_fatal(
            b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\n",
            FramingError::BadLineEnding,
        );
    }

    #[test]
    fn content_length_missing_negative_overflowing_or_bad_is_fatal() {
        assert_fatal(&request("", b""), FramingError::MissingContentLength);
        assert_fatal(
            &request("Content-Length: -1\r\n", b""),
            FramingError::NegativeContentLength,
        );
        // The classic smuggling attempt: a wrapped length hiding a second message.
        let smuggled = request("Content-Length: 99999999999999999999\r\n", &with_body(b""));
        assert_fatal(&smuggled, FramingError::ContentLengthOverflow);
        assert_fatal(
            &request("Content-Length: 4294967296\r\n", b""),
            FramingError::ContentLengthOverflow,
        );
        assert_fatal(
            &request("Content-Length: 5, 6\r\n", b""),
            FramingError::BadContentLength,
        );
        assert_fatal(&request("l: 0x10\r\n", b""), FramingError::BadContentLength);
        assert_fatal(&request("l:\r\n", b""), FramingError::BadContentLength);
    }

    #[test]
    fn duplicated_content_length_must_agree() {
        let two = request("Content-Length: 2\r\nl: 3\r\n", b"abc");
        assert_fatal(&two, FramingError::ConflictingContentLength);
        let same = request("Content-Length: 3\r\ncontent-length: 003\r\n", b"abc");
        assert_eq!(frames(&same), vec![message(&same)]);
    }

    #[test]
    fn content_length_spellings_and_spacing() {
        for line in [
            "Content-Length   : 4\r\n",
            "Content-Length\t:4\r\n",
            "l: 4\r\n",
            "L:4\r\n",
            "CONTENT-LENGTH: 4   \r\n",
        ] {
            let m = request(line, b"abcd");
            assert_eq!(frames(&m), vec![message(&m)], "{line:?}");
        }
    }

    #[test]
    fn folded_header_lines_continue_the_previous_header() {
        let m = request(
            "Subject: a\r\n  folded\r\n\tsubject\r\nContent-Length:\r\n 4\r\n",
            b"abcd",
        );
        assert_eq!(frames(&m), vec![message(&m)]);
        // A fold directly after the start line has no header to continue.
        assert_fatal(
            b"OPTIONS sip:a SIP/2.0\r\n l: 0\r\n\r\n",
            FramingError::MalformedHeader,
        );
    }

    #[test]
    fn header_lines_must_be_name_colon_value() {
        assert_fatal(
            &request("Bogus line\r\nl: 0\r\n", b""),
            FramingError::MalformedHeader,
        );
        assert_fatal(
            &request(": empty name\r\nl: 0\r\n", b""),
            FramingError::MalformedHeader,
        );
        // No fold between the name and the colon (RFC 3261 HCOLON).
        assert_fatal(
            &request("l\r\n : 0\r\n", b""),
            FramingError::MalformedHeader,
        );
    }

    #[test]
    fn head_over_max_head_is_fatal_before_the_blank_line() {
        let limits = Limits {
            max_head: 1024,
            ..Limits::DEFAULT
        };
        let mut f = StreamFramer::new(limits);
        f.push(b"OPTIONS sip:a SIP/2.0\r\n").unwrap();
        let mut err = None;
        for i in 0..100 {
            f.push(b"X-Pad: 0123456789\r\n").unwrap();
            if let Err(e) = f.next_frame() {
                err = Some((e, i, f.push(b"").is_err()));
                break;
            }
        }
        // 23 + 53 * 19 = 1030 bytes: the first push that reaches the limit.
        let want = (FramingError::HeadTooLarge { limit: 1024 }, 52, true);
        assert_eq!(err, Some(want));
    }

    #[test]
    fn long_lines_and_many_headers_are_fatal_early() {
        let limits = Limits {
            max_line: 200,
            max_headers: 3,
            ..Limits::DEFAULT
        };
        let mut f = StreamFramer::new(limits);
        f.push(b"OPTIONS sip:a SIP/2.0\r\nSubject: ").unwrap();
        f.push(&[b'a'; 150]).unwrap();
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"\r\n ").unwrap();
        f.push(&[b'b'; 60]).unwrap();
        assert_eq!(
            f.next_frame(),
            Err(FramingError::LineTooLong { limit: 200 })
        );

        let mut f = StreamFramer::new(limits);
        f.push(b"OPTIONS sip:a SIP/2.0\r\na: 1\r\nb: 2\r\n c\r\nl: 0\r\nd")
            .unwrap();
        assert_eq!(
            f.next_frame(),
            Err(FramingError::TooManyHeaders { limit: 3 })
        );
    }

    #[test]
    fn body_and_message_size_are_decided_from_the_head() {
        let limits = Limits {
            max_message: 1000,
            max_body: 900,
            ..Limits::DEFAULT
        };
        let mut f = StreamFramer::new(limits);
        f.push(&request("Content-Length: 901\r\n", b"")).unwrap();
        assert_eq!(
            f.next_frame(),
            Err(FramingError::MessageTooLarge { limit: 900 })
        );
        let mut f = StreamFramer::new(limits);
        f.push(&request("Content-Length: 900\r\n", b"")).unwrap();
        assert_eq!(
            f.next_frame(),
            Err(FramingError::MessageTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn buffer_full_poisons() {
        let limits = Limits {
            max_stream_buffer: 16 * 1024,
            ..Limits::DEFAULT
        };
        let mut f = StreamFramer::new(limits);
        f.push(b"\r\n").unwrap();
        assert_eq!(f.room(), 16 * 1024 - 2);
        let full = FramingError::BufferFull { limit: 16 * 1024 };
        assert_eq!(f.push(&vec![b'x'; 16 * 1024]), Err(full));
        assert_eq!(f.next_frame(), Err(full));
        assert_eq!(f.push(&with_body(b"")), Err(full));
    }

    #[test]
    fn recv_buf_appends_and_stops_at_room() {
        let limits = Limits {
            max_stream_buffer: 16 * 1024,
            ..Limits::DEFAULT
        };
        let mut f = StreamFramer::new(limits);
        let m = with_body(b"hi");
        f.push(&m[..10]).unwrap();
        let mut target = f.recv_buf();
        assert_eq!(target.remaining_mut(), 16 * 1024 - 10);
        target.put_slice(&m[10..]);
        assert_eq!(drain(&mut f), vec![message(&m)]);
        assert_eq!(f.room(), 16 * 1024);
    }

    #[test]
    fn ten_kilobyte_head_fed_one_byte_at_a_time_is_scanned_once() {
        let mut headers = String::new();
        while headers.len() < 10 * 1024 {
            headers.push_str("X-Padding: ");
            headers.push_str(&"0123456789".repeat(20));
            headers.push_str("\r\n");
        }
        headers.push_str("l: 0\r\n");
        let m = request(&headers, b"");
        let mut f = StreamFramer::new(Limits::DEFAULT);
        let mut out = Vec::new();
        for b in &m {
            f.push(&[*b]).unwrap();
            out.extend(drain(&mut f));
        }
        assert_eq!(out, vec![message(&m)]);
        // Each byte looked at once; CRs and line starts at most once more.
        assert!(f.examined <= 2 * m.len(), "{} for {}", f.examined, m.len());
    }
}
