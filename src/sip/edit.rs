//! Forwarding a message by splicing changes into its original bytes.
//!
//! An [`Editor`] borrows a parsed [`Message`] and records edits: lines to remove, values to
//! replace or shorten, lines to insert. [`Editor::finish`] then builds the output in one pass
//! into one buffer sized exactly up front: unchanged segments of the original are copied as
//! they are, replacements inserted between them, in order. Nothing unchanged is parsed again,
//! inserted values are borrowed rather than copied, and a forward costs two allocations: the
//! small edit list and the output.
//!
//! # Composition rules
//!
//! - **Every operation sees the message as left by the operations before it**, not the
//!   original: `push_via` then `pop_via` removes the pushed Via; two `decrement_max_forwards`
//!   subtract two; `add_header` then `remove_headers` of that name removes the added line
//!   too; `remove_headers` then `add_header` keeps the added line.
//! - **An original line carries at most one pending edit**, which later operations update in
//!   place: a value pop moves a "keep from" offset forward inside the value, a value
//!   replacement replaces the previous one, removal is final. Two edits of overlapping spans
//!   therefore cannot be recorded; no operation exposes raw spans.
//! - **New lines are anchored at an original position.** `push_via`, `push_route` and
//!   `push_record_route` insert before the first original line of that header (removed or
//!   not), or at the top of the header section when there is none; several pushes at one
//!   anchor come out last-pushed first, so the last push is the top value. `add_header` and
//!   the lines the editor adds itself (Max-Forwards, Content-Type, Content-Length) go just
//!   before the blank line, in recording order.
//! - Inserted bytes are borrowed for `'m` (no copy) and checked: no CR, LF or other control
//!   byte can reach the output through a value, so an edit can never split a line.
//!
//! # Output invariants
//!
//! - exactly one Content-Length, equal to the body length: the first surviving original line
//!   is kept byte for byte when its value is right (a compact `l: 0` stays `l: 0`), its value
//!   is rewritten otherwise, further ones are dropped, and one is added when none is left (a
//!   UDP message without one must have one before it goes out on TCP);
//! - octets after the body in the input datagram (RFC 4475 dblreq) and CRLFs before the start
//!   line are not copied;
//! - lines no operation touched keep their original bytes: casing, compact names, spacing,
//!   folding.

use bytes::Bytes;

use super::lex;
use super::message::{Header, Message};
use super::name::HeaderName;
use super::uri::Uri;

/// Why an edit was refused. The editor is unchanged after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// There is no value of this header to remove.
    #[error("no {0} header")]
    Missing(&'static str),
    /// Max-Forwards is 0: answer 483 instead of forwarding (RFC 3261 §16.3 step 3).
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// A value in the message cannot be edited as asked: Max-Forwards not a number in
    /// 0..=255, a list with an unbalanced quote or angle bracket.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// Bytes offered for insertion would break the framing or the grammar: a CR, LF or other
    /// control byte, an empty value, a name that is not a token, a URI that does not parse.
    #[error("invalid {0} to insert")]
    Invalid(&'static str),
    /// Content-Length is written by the editor itself (see the module documentation).
    #[error("Content-Length is maintained by the editor")]
    ContentLength,
    /// The operation applies to requests only.
    #[error("not a request")]
    NotARequest,
}

/// New bytes: borrowed text, or a number rendered when the output is written.
#[derive(Debug, Clone, Copy)]
enum Val<'m> {
    Text(&'m [u8]),
    Num(u64),
}

/// The one pending edit of an original header line.
#[derive(Debug, Clone, Copy)]
enum LineOp<'m> {
    /// The whole line, continuation lines included, is dropped.
    Remove,
    /// Leading list items were popped: keep the line up to its value, then the original
    /// bytes from this buffer offset (inside the value) through the CRLF.
    KeepFrom(usize),
    /// The value span is replaced.
    Value(Val<'m>),
}

/// A line the editor inserts: `name: value CRLF` before original line `at` (the header
/// count means "before the blank line").
#[derive(Debug, Clone, Copy)]
struct NewLine<'m> {
    at: usize,
    /// Pushed lines come out before appended ones, the last pushed first.
    push: bool,
    seq: u32,
    live: bool,
    kind: HeaderName,
    name: &'m [u8],
    value: Val<'m>,
}

#[derive(Debug, Clone, Copy)]
enum Edit<'m> {
    Line { idx: usize, op: LineOp<'m> },
    New(NewLine<'m>),
}

impl Edit<'_> {
    /// Output order: at one position, pushed lines (newest first), appended lines (oldest
    /// first), then the original line. Keys are unique.
    fn key(&self) -> (usize, u8, u32) {
        match self {
            Edit::New(n) if n.push => (n.at, 0, u32::MAX - n.seq),
            Edit::New(n) => (n.at, 1, n.seq),
            Edit::Line { idx, .. } => (*idx, 2, 0),
        }
    }
}

/// A line of the message being edited: an original header (by index) or an inserted line
/// (by index into the edit list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Orig(usize),
    New(usize),
}

/// Records edits of one message and writes the edited copy; see the module documentation.
///
/// Inserted values are borrowed, so they must outlive the editor:
///
/// ```
/// # use ocedge::sip::{Message, edit::Editor};
/// let msg = Message::parse_slice(
///     b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n",
/// ).unwrap();
/// let via = b"SIP/2.0/TLS edge.example.com;branch=z9hG4bK2".to_vec();
/// let mut ed = Editor::new(&msg);
/// ed.push_via(&via).unwrap();
/// assert_eq!(ed.decrement_max_forwards(), Ok(70));
/// let out = ed.finish();
/// assert!(out.starts_with(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TLS edge"));
/// ```
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    edits: Vec<Edit<'m>>,
    seq: u32,
    uri: Option<&'m [u8]>,
    body: Option<&'m [u8]>,
}

impl<'m> Editor<'m> {
    /// Starts editing `msg`; nothing is copied until [`Editor::finish`].
    pub fn new(msg: &'m Message) -> Editor<'m> {
        Editor {
            msg,
            edits: Vec::with_capacity(8),
            seq: 0,
            uri: None,
            body: None,
        }
    }

    /// The message being edited (as parsed, without the pending edits).
    pub fn message(&self) -> &'m Message {
        self.msg
    }

    /// Inserts `Via: value` as the new top Via (RFC 3261 §16.6 step 8).
    pub fn push_via(&mut self, value: &'m [u8]) -> Result<(), EditError> {
        self.push(HeaderName::Via, "Via", value)
    }

    /// Removes the top Via value: the first element of a comma-separated Via line, or the
    /// whole line when it holds one value (responses, RFC 3261 §16.7 step 3).
    pub fn pop_via(&mut self) -> Result<(), EditError> {
        self.pop(HeaderName::Via, "Via")
    }

    /// Inserts `Route: value` as the new top Route.
    pub fn push_route(&mut self, value: &'m [u8]) -> Result<(), EditError> {
        self.push(HeaderName::Route, "Route", value)
    }

    /// Removes the top Route value, with the list rule of [`Editor::pop_via`] (loose
    /// routing, when the top Route names this proxy: RFC 3261 §16.4).
    pub fn pop_route(&mut self) -> Result<(), EditError> {
        self.pop(HeaderName::Route, "Route")
    }

    /// Inserts `Record-Route: value` as the new top Record-Route (RFC 3261 §16.6 step 4).
    pub fn push_record_route(&mut self, value: &'m [u8]) -> Result<(), EditError> {
        self.push(HeaderName::RecordRoute, "Record-Route", value)
    }

    /// RFC 3261 §16.6 step 3: adds `Max-Forwards: 70` when absent, otherwise replaces the
    /// first Max-Forwards value `n` by `n - 1`. Returns the value forwarded.
    pub fn decrement_max_forwards(&mut self) -> Result<u8, EditError> {
        let Some(t) = self.first_live(HeaderName::MaxForwards) else {
            self.add(
                self.end(),
                false,
                HeaderName::MaxForwards,
                b"Max-Forwards",
                Val::Num(70),
            );
            return Ok(70);
        };
        let n = match self.current(t) {
            Val::Num(n) => n,
            Val::Text(v) => {
                lex::parse_decimal(lex::trim(v), 255).ok_or(EditError::Malformed("Max-Forwards"))?
            }
        };
        let next = n.checked_sub(1).ok_or(EditError::TooManyHops)?;
        let out = u8::try_from(next).map_err(|_| EditError::Malformed("Max-Forwards"))?;
        self.set_value(t, Val::Num(next));
        Ok(out)
    }

    /// Sets the first Max-Forwards value to `n`, adding the header when absent.
    pub fn set_max_forwards(&mut self, n: u8) {
        self.set_single(
            HeaderName::MaxForwards,
            b"Max-Forwards",
            Val::Num(u64::from(n)),
            false,
        );
    }

    /// Replaces every Contact line by one `Contact: value` where the first one was (added
    /// at the end when there was none).
    pub fn set_contact(&mut self, value: &'m [u8]) -> Result<(), EditError> {
        check_value(value, "Contact", false)?;
        self.set_single(HeaderName::Contact, b"Contact", Val::Text(value), true);
        Ok(())
    }

    /// Replaces the Request-URI (requests only; the URI must parse).
    pub fn set_request_uri(&mut self, uri: &'m [u8]) -> Result<(), EditError> {
        if !self.msg.is_request() {
            return Err(EditError::NotARequest);
        }
        if uri.iter().any(|&b| b <= b' ' || b == 0x7f) || Uri::parse(uri).is_err() {
            return Err(EditError::Invalid("Request-URI"));
        }
        self.uri = Some(uri);
        Ok(())
    }

    /// Removes every line named `name`, compared as SIP does (any case, compact forms equal
    /// to long ones, `l` == `Content-Length`), however the line spaces its colon; lines added
    /// by this editor included. Surrounding whitespace of `name` is ignored. Returns how many
    /// lines were removed. Removing Content-Length only makes [`Editor::finish`] write a
    /// fresh one.
    pub fn remove_headers(&mut self, name: &[u8]) -> usize {
        let name = lex::trim(name);
        if name.is_empty() {
            return 0;
        }
        let kind = HeaderName::classify(name);
        self.remove_matching(None, |k, n| {
            if kind == HeaderName::Other {
                k == HeaderName::Other && n.eq_ignore_ascii_case(name)
            } else {
                k == kind
            }
        })
    }

    /// Appends `name: value` at the end of the header section. Content-Length is refused (the
    /// editor maintains it); use [`Editor::set_body`] to change the body.
    pub fn add_header(&mut self, name: &'m [u8], value: &'m [u8]) -> Result<(), EditError> {
        if !lex::is_token_str(name) {
            return Err(EditError::Invalid("header name"));
        }
        let kind = HeaderName::classify(name);
        if kind == HeaderName::ContentLength {
            return Err(EditError::ContentLength);
        }
        check_value(value, "header value", true)?;
        self.add(self.end(), false, kind, name, Val::Text(value));
        Ok(())
    }

    /// Replaces the body. With `Some(content_type)` the first Content-Type value is replaced
    /// (or the header added) and any other Content-Type line removed; with `None` an empty
    /// body loses its Content-Type and a non-empty one keeps the message's. Content-Length
    /// follows the body by construction.
    pub fn set_body(
        &mut self,
        content_type: Option<&'m [u8]>,
        body: &'m [u8],
    ) -> Result<(), EditError> {
        match content_type {
            Some(ct) => {
                check_value(ct, "Content-Type", false)?;
                self.set_single(
                    HeaderName::ContentType,
                    b"Content-Type",
                    Val::Text(ct),
                    true,
                );
            }
            None if body.is_empty() => {
                self.remove_matching(None, |k, _| k == HeaderName::ContentType);
            }
            None => {}
        }
        self.body = Some(body);
        Ok(())
    }

    /// Writes the edited message: one exactly sized allocation, one copy of each kept byte.
    pub fn finish(mut self) -> Bytes {
        let msg = self.msg;
        let body = self.body.unwrap_or_else(|| msg.body());
        let len = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let mut have_length = false;
        for (i, h) in msg.headers().iter().enumerate() {
            if h.kind != HeaderName::ContentLength {
                continue;
            }
            match self.op(i) {
                Some(LineOp::Remove) => {}
                _ if have_length => self.set_op(i, LineOp::Remove),
                op => {
                    have_length = true;
                    let right = lex::parse_content_length(h.value.of(msg.buf()))
                        .is_ok_and(|n| u64::from(n) == len);
                    if op.is_some() || !right {
                        self.set_op(i, LineOp::Value(Val::Num(len)));
                    }
                }
            }
        }
        let fresh = (!have_length).then_some(len);
        self.edits.sort_unstable_by_key(Edit::key);
        let mut total = 0usize;
        self.walk(body, fresh, &mut |s: &[u8]| {
            total = total.saturating_add(s.len())
        });
        let mut out = Vec::with_capacity(total);
        self.walk(body, fresh, &mut |s: &[u8]| out.extend_from_slice(s));
        Bytes::from(out)
    }

    /// Calls `out` with every output segment in order. Edits must be sorted by key.
    fn walk(&self, body: &[u8], fresh_length: Option<u64>, out: &mut impl FnMut(&[u8])) {
        let msg = self.msg;
        let buf: &[u8] = msg.buf();
        let lead = buf
            .chunks(2)
            .take_while(|c| *c == b"\r\n")
            .count()
            .saturating_mul(2);
        let headers = msg.headers();
        // Headers start right after the start line's CRLF. Not `head_end - 2`: a datagram may
        // end after its last line without a blank line (fuzz finding, roundtrip target).
        let start_line_end = buf
            .get(lead..)
            .and_then(|b| memchr::memchr(b'\n', b))
            .map_or(buf.len(), |i| lead + i + 1);
        let head_start = headers
            .iter()
            .next()
            .map_or(start_line_end, |h| h.line.start as usize);
        match (self.uri, msg.request_uri_span()) {
            (Some(uri), Some(span)) => {
                out(slice(buf, lead, span.start as usize));
                out(uri);
                out(slice(buf, span.end as usize, head_start));
            }
            _ => out(slice(buf, lead, head_start)),
        }
        let mut j = 0;
        let mut lines = headers.iter();
        for i in 0..=headers.len() {
            while let Some(Edit::New(n)) = self.edits.get(j) {
                if n.at > i {
                    break;
                }
                if n.live {
                    out(n.name);
                    out(b": ");
                    emit_val(n.value, out);
                    out(b"\r\n");
                }
                j += 1;
            }
            let Some(h) = lines.next() else { break };
            let op = match self.edits.get(j) {
                Some(Edit::Line { idx, op }) if *idx == i => {
                    j += 1;
                    Some(*op)
                }
                _ => None,
            };
            emit_line(buf, h, op, out);
        }
        if let Some(len) = fresh_length {
            out(b"Content-Length: ");
            emit_val(Val::Num(len), out);
            out(b"\r\n");
        }
        out(b"\r\n");
        out(body);
    }

    /// Position meaning "before the blank line".
    fn end(&self) -> usize {
        self.msg.headers().len()
    }

    fn header(&self, i: usize) -> Option<&'m Header> {
        self.msg.headers().iter().nth(i)
    }

    fn op(&self, idx: usize) -> Option<LineOp<'m>> {
        self.edits.iter().find_map(|e| match e {
            Edit::Line { idx: i, op } if *i == idx => Some(*op),
            _ => None,
        })
    }

    /// Records the pending edit of original line `idx`, replacing any earlier one.
    fn set_op(&mut self, idx: usize, op: LineOp<'m>) {
        for e in &mut self.edits {
            if let Edit::Line { idx: i, op: o } = e {
                if *i == idx {
                    *o = op;
                    return;
                }
            }
        }
        self.edits.push(Edit::Line { idx, op });
    }

    fn add(&mut self, at: usize, push: bool, kind: HeaderName, name: &'m [u8], value: Val<'m>) {
        self.seq = self.seq.saturating_add(1);
        self.edits.push(Edit::New(NewLine {
            at,
            push,
            seq: self.seq,
            live: true,
            kind,
            name,
            value,
        }));
    }

    fn push(
        &mut self,
        kind: HeaderName,
        name: &'static str,
        value: &'m [u8],
    ) -> Result<(), EditError> {
        check_value(value, name, false)?;
        let at = self
            .msg
            .headers()
            .iter()
            .position(|h| h.kind == kind)
            .unwrap_or(0);
        self.add(at, true, kind, name.as_bytes(), Val::Text(value));
        Ok(())
    }

    /// The first line of `kind` in output order that is not removed.
    fn first_live(&self, kind: HeaderName) -> Option<Target> {
        let mut best: Option<((usize, u8, u32), Target)> = None;
        for (k, e) in self.edits.iter().enumerate() {
            if let Edit::New(n) = e {
                if n.live && n.kind == kind && best.is_none_or(|(b, _)| e.key() < b) {
                    best = Some((e.key(), Target::New(k)));
                }
            }
        }
        let orig = self
            .msg
            .headers()
            .iter()
            .enumerate()
            .find(|(i, h)| h.kind == kind && !matches!(self.op(*i), Some(LineOp::Remove)));
        if let Some((i, _)) = orig {
            if best.is_none_or(|(b, _)| (i, 2, 0) < b) {
                return Some(Target::Orig(i));
            }
        }
        best.map(|(_, t)| t)
    }

    /// The value of a line as the edits so far leave it.
    fn current(&self, t: Target) -> Val<'m> {
        match t {
            Target::Orig(i) => {
                let buf: &'m [u8] = self.msg.buf();
                let Some(h) = self.header(i) else {
                    return Val::Text(&[]);
                };
                match self.op(i) {
                    Some(LineOp::Value(v)) => v,
                    Some(LineOp::KeepFrom(p)) => Val::Text(slice(buf, p, h.value.end as usize)),
                    _ => Val::Text(h.value.of(buf)),
                }
            }
            Target::New(k) => match self.edits.get(k) {
                Some(Edit::New(n)) => n.value,
                _ => Val::Text(&[]),
            },
        }
    }

    fn set_value(&mut self, t: Target, v: Val<'m>) {
        match t {
            Target::Orig(i) => self.set_op(i, LineOp::Value(v)),
            Target::New(k) => {
                if let Some(Edit::New(n)) = self.edits.get_mut(k) {
                    n.value = v;
                }
            }
        }
    }

    fn remove(&mut self, t: Target) {
        match t {
            Target::Orig(i) => self.set_op(i, LineOp::Remove),
            Target::New(k) => {
                if let Some(Edit::New(n)) = self.edits.get_mut(k) {
                    n.live = false;
                }
            }
        }
    }

    /// Removes the first value of the first live line of `kind`.
    fn pop(&mut self, kind: HeaderName, name: &'static str) -> Result<(), EditError> {
        let t = self.first_live(kind).ok_or(EditError::Missing(name))?;
        let Val::Text(v) = self.current(t) else {
            self.remove(t);
            return Ok(());
        };
        let Some(off) = next_item(v).map_err(|_| EditError::Malformed(name))? else {
            self.remove(t);
            return Ok(());
        };
        let rest = Val::Text(v.get(off..).unwrap_or(&[]));
        match t {
            Target::Orig(i) => match self.op(i) {
                // The value still lies in the original buffer: keep its tail in place.
                None => {
                    let start = self.header(i).map_or(0, |h| h.value.start as usize);
                    self.set_op(i, LineOp::KeepFrom(start.saturating_add(off)));
                }
                Some(LineOp::KeepFrom(p)) => {
                    self.set_op(i, LineOp::KeepFrom(p.saturating_add(off)))
                }
                Some(_) => self.set_op(i, LineOp::Value(rest)),
            },
            Target::New(_) => self.set_value(t, rest),
        }
        Ok(())
    }

    /// Sets the first live line of `kind` to `v` and removes the others, or adds the header.
    fn set_single(&mut self, kind: HeaderName, name: &'static [u8], v: Val<'m>, unique: bool) {
        match self.first_live(kind) {
            Some(t) => {
                self.set_value(t, v);
                if unique {
                    self.remove_matching(Some(t), |k, _| k == kind);
                }
            }
            None => self.add(self.end(), false, kind, name, v),
        }
    }

    /// Removes every live line (original or new) for which `matches(kind, name)` holds,
    /// except `keep`. Returns how many were removed.
    fn remove_matching(
        &mut self,
        keep: Option<Target>,
        matches: impl Fn(HeaderName, &[u8]) -> bool,
    ) -> usize {
        let msg = self.msg;
        let mut count = 0;
        for (i, h) in msg.headers().iter().enumerate() {
            let live = !matches!(self.op(i), Some(LineOp::Remove));
            if live && keep != Some(Target::Orig(i)) && matches(h.kind, msg.headers().name_of(h)) {
                self.set_op(i, LineOp::Remove);
                count += 1;
            }
        }
        for (k, e) in self.edits.iter_mut().enumerate() {
            if let Edit::New(n) = e {
                if n.live && keep != Some(Target::New(k)) && matches(n.kind, n.name) {
                    n.live = false;
                    count += 1;
                }
            }
        }
        count
    }
}

/// Refuses bytes that could end a line or confuse a reader: CR, LF, NUL and the other
/// control characters except HTAB; and an empty value unless `allow_empty`.
fn check_value(v: &[u8], what: &'static str, allow_empty: bool) -> Result<(), EditError> {
    let control = v.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f);
    if control || (!allow_empty && lex::trim(v).is_empty()) {
        return Err(EditError::Invalid(what));
    }
    Ok(())
}

/// Offset in `v` of the first non-empty list item after the first one, `None` when the
/// first item is the only one.
fn next_item(v: &[u8]) -> Result<Option<usize>, lex::Unbalanced> {
    let mut seen = 0usize;
    let mut next = None;
    lex::for_each_item(v, |item| {
        seen += 1;
        if seen > 1 && next.is_none() && !item.is_empty() {
            // `item` is a sub-slice of `v`; its offset is the distance between the pointers.
            next = Some((item.as_ptr() as usize).saturating_sub(v.as_ptr() as usize));
        }
    })?;
    Ok(next.map(|o| o.min(v.len())))
}

fn slice(buf: &[u8], start: usize, end: usize) -> &[u8] {
    buf.get(start..end).unwrap_or(&[])
}

fn emit_val(v: Val<'_>, out: &mut impl FnMut(&[u8])) {
    match v {
        Val::Text(t) => out(t),
        Val::Num(mut n) => {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            while i > 0 {
                i -= 1;
                if let Some(d) = digits.get_mut(i) {
                    *d = b'0' + (n % 10) as u8;
                }
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            out(digits.get(i..).unwrap_or(&[]));
        }
    }
}

fn emit_line(buf: &[u8], h: &Header, op: Option<LineOp<'_>>, out: &mut impl FnMut(&[u8])) {
    let (line, value) = (h.line, h.value);
    match op {
        None => out(line.of(buf)),
        Some(LineOp::Remove) => {}
        Some(LineOp::KeepFrom(p)) => {
            out(slice(buf, line.start as usize, value.start as usize));
            out(slice(buf, p, line.end as usize));
        }
        Some(LineOp::Value(v)) => {
            out(slice(buf, line.start as usize, value.start as usize));
            emit_val(v, out);
            out(slice(buf, value.end as usize, line.end as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+14255550100@gw.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
Record-Route: <sip:rr1.example.com;lr>\r\n\
Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n\
From: <sip:+12065550199@sip.pstnhub.microsoft.com>;tag=1\r\n\
To: <sip:+14255550100@gw.example.com>\r\n\
Call-ID: abc@1\r\n\
CSeq: 1 INVITE\r\n\
X-MS-TenantID: t1\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn parse(s: &str) -> Message {
        Message::parse_slice(s.as_bytes()).unwrap()
    }

    type Logical = (Vec<u8>, Vec<(HeaderName, Vec<u8>, Vec<u8>)>, Vec<u8>);

    /// Start line, (kind, name for extension headers, trimmed value) per line, body.
    fn logical(m: &Message) -> Logical {
        let start = match m.start_line() {
            crate::sip::message::StartLine::Request { .. } => [
                m.method_str().unwrap(),
                b" ",
                m.request_uri_bytes().unwrap(),
            ]
            .concat(),
            crate::sip::message::StartLine::Response { status, .. } => {
                [status.to_string().as_bytes(), b" ", m.reason().unwrap()].concat()
            }
        };
        let h = m.headers();
        let lines = h
            .iter()
            .map(|x| {
                let name = if x.kind == HeaderName::Other {
                    h.name_of(x).to_ascii_lowercase()
                } else {
                    Vec::new()
                };
                (x.kind, name, lex::trim(h.value_of(x)).to_vec())
            })
            .collect();
        (start, lines, m.body().to_vec())
    }

    /// Applies `f`, checks the output parses, and returns it with its logical form.
    fn edit(m: &Message, f: impl FnOnce(&mut Editor<'_>)) -> (Bytes, Message) {
        let mut ed = Editor::new(m);
        f(&mut ed);
        let out = ed.finish();
        let back = Message::parse(out.clone(), &crate::sip::Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{:?}\n{}", e.error, String::from_utf8_lossy(&out)));
        let lengths: Vec<_> = back.headers().values(HeaderName::ContentLength).collect();
        assert_eq!(lengths.len(), 1, "exactly one Content-Length");
        assert_eq!(
            lex::parse_content_length(lengths[0]).unwrap() as usize,
            back.body().len()
        );
        (out, back)
    }

    fn values(m: &Message, kind: HeaderName) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for v in m.headers().values(kind) {
            lex::for_each_item(v, |i| out.push(i.to_vec())).unwrap();
        }
        out
    }

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn no_edit_copies_the_message_and_drops_what_surrounds_it() {
        let m = parse(INVITE);
        let (out, back) = edit(&m, |_| {});
        assert_eq!(s(&out), INVITE);
        assert_eq!(logical(&back), logical(&m));
        // Leading CRLFs and octets after the body in a datagram are not forwarded.
        let m = parse(&format!("\r\n\r\n{INVITE}EXTRA"));
        assert_eq!(s(&edit(&m, |_| {}).0), INVITE);
    }

    #[test]
    fn push_via_inserts_before_the_first_via_last_push_on_top() {
        let m = parse(&INVITE.replace("Via: SIP", "Subject: x\r\nv  : SIP"));
        let (out, back) = edit(&m, |ed| {
            ed.push_via(b"SIP/2.0/UDP a;branch=z9hG4bK1").unwrap();
            ed.push_via(b"SIP/2.0/UDP b;branch=z9hG4bK2").unwrap();
        });
        assert!(s(&out).contains(
            "Subject: x\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nv  : SIP/2.0/TLS"
        ));
        assert_eq!(back.top_via().unwrap().branch(), Some(&b"z9hG4bK2"[..]));
        assert_eq!(back.vias().unwrap().len(), 3);
    }

    #[test]
    fn pop_via_removes_one_value_of_a_list_or_the_line() {
        let m = parse(&INVITE.replace(
            "Via: SIP/2.0/TLS 52.114.1.1:5061;branch=z9hG4bKabc\r\n",
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1 ,\r\n SIP/2.0/UDP b;branch=z9hG4bK2\r\nv: SIP/2.0/UDP c;branch=z9hG4bK3\r\n",
        ));
        let (out, _) = edit(&m, |ed| ed.pop_via().unwrap());
        assert!(s(&out).contains("Via: SIP/2.0/UDP b;branch=z9hG4bK2\r\nv: SIP/2.0/UDP c"));
        let (out, back) = edit(&m, |ed| {
            ed.pop_via().unwrap();
            ed.pop_via().unwrap();
        });
        assert!(!s(&out).contains("Via:"), "the emptied line is gone");
        assert_eq!(
            values(&back, HeaderName::Via),
            vec![b"SIP/2.0/UDP c;branch=z9hG4bK3".to_vec()]
        );
        let mut ed = Editor::new(&m);
        for _ in 0..3 {
            ed.pop_via().unwrap();
        }
        assert_eq!(ed.pop_via(), Err(EditError::Missing("Via")));
        let out = ed.finish();
        assert!(Message::parse(out, &crate::sip::Limits::DEFAULT)
            .unwrap()
            .header(HeaderName::Via)
            .is_none());
    }

    #[test]
    fn via_push_and_pop_compose_in_either_order() {
        let m = parse(INVITE);
        // A proxy forwarding a response pops its own Via; popping then pushing replaces it.
        let (_, back) = edit(&m, |ed| {
            ed.pop_via().unwrap();
            ed.push_via(b"SIP/2.0/UDP new;branch=z9hG4bKn").unwrap();
        });
        assert_eq!(
            values(&back, HeaderName::Via),
            vec![b"SIP/2.0/UDP new;branch=z9hG4bKn".to_vec()]
        );
        // Pushing then popping undoes the push.
        let (out, back) = edit(&m, |ed| {
            ed.push_via(b"SIP/2.0/UDP new;branch=z9hG4bKn").unwrap();
            ed.pop_via().unwrap();
        });
        assert_eq!(s(&out), INVITE);
        assert_eq!(logical(&back), logical(&m));
    }

    #[test]
    fn max_forwards_rules() {
        let m = parse(&INVITE.replace("Max-Forwards: 70", "max-forwards :  0068 "));
        let (out, _) = edit(&m, |ed| {
            assert_eq!(ed.decrement_max_forwards(), Ok(67));
            assert_eq!(ed.decrement_max_forwards(), Ok(66));
        });
        assert!(
            s(&out).contains("\r\nmax-forwards :  66 \r\n"),
            "name and spacing kept"
        );

        let m = parse(&INVITE.replace("Max-Forwards: 70\r\n", ""));
        let (_, back) = edit(&m, |ed| assert_eq!(ed.decrement_max_forwards(), Ok(70)));
        assert_eq!(back.max_forwards(), Ok(Some(70)));
        let (_, back) = edit(&m, |ed| {
            ed.decrement_max_forwards().unwrap();
            assert_eq!(ed.decrement_max_forwards(), Ok(69));
        });
        assert_eq!(back.max_forwards(), Ok(Some(69)));

        let zero = parse(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 0"));
        let mut ed = Editor::new(&zero);
        assert_eq!(ed.decrement_max_forwards(), Err(EditError::TooManyHops));
        let bad = parse(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 256"));
        let mut ed = Editor::new(&bad);
        assert_eq!(
            ed.decrement_max_forwards(),
            Err(EditError::Malformed("Max-Forwards"))
        );
        ed.set_max_forwards(10);
        assert_eq!(ed.decrement_max_forwards(), Ok(9));
        let out = ed.finish();
        assert!(s(&out).contains("\r\nMax-Forwards: 9\r\n"));
    }

    #[test]
    fn request_uri() {
        let m = parse(INVITE);
        let (out, back) = edit(&m, |ed| {
            ed.set_request_uri(b"sip:+14255550100@10.0.0.5:5060")
                .unwrap()
        });
        assert!(s(&out).starts_with("INVITE sip:+14255550100@10.0.0.5:5060 SIP/2.0\r\nVia: "));
        assert_eq!(logical(&back).1, logical(&m).1);
        let mut ed = Editor::new(&m);
        assert_eq!(
            ed.set_request_uri(b"sip:a@b SIP/2.0\r\nX: y"),
            Err(EditError::Invalid("Request-URI"))
        );
        assert_eq!(
            ed.set_request_uri(b"sip:a@b c"),
            Err(EditError::Invalid("Request-URI"))
        );
        let resp = parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n");
        assert_eq!(
            Editor::new(&resp).set_request_uri(b"sip:a@b"),
            Err(EditError::NotARequest)
        );
    }

    #[test]
    fn record_route_and_route() {
        let m = parse(INVITE);
        let (out, back) = edit(&m, |ed| {
            ed.push_record_route(b"<sip:edge.example.com;lr>").unwrap();
            ed.pop_route().unwrap();
        });
        assert!(s(&out).contains(
            "Max-Forwards: 70\r\nRecord-Route: <sip:edge.example.com;lr>\r\nRecord-Route: <sip:rr1"
        ));
        assert!(s(&out).contains("\r\nRoute: <sip:core.example.com;lr>\r\n"));
        assert_eq!(
            values(&back, HeaderName::Route),
            vec![b"<sip:core.example.com;lr>".to_vec()]
        );
        // Without any Record-Route or Route, pushes go to the top of the header section.
        let bare = parse("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n\r\n");
        let (out, back) = edit(&bare, |ed| {
            ed.push_record_route(b"<sip:rr;lr>").unwrap();
            ed.push_route(b"<sip:r2;lr>").unwrap();
            ed.push_route(b"<sip:r1;lr>").unwrap();
        });
        assert!(s(&out).starts_with("OPTIONS sip:a@b SIP/2.0\r\nRoute: <sip:r1;lr>\r\n"));
        assert_eq!(
            values(&back, HeaderName::Route),
            vec![b"<sip:r1;lr>".to_vec(), b"<sip:r2;lr>".to_vec()]
        );
        assert_eq!(
            values(&back, HeaderName::RecordRoute),
            vec![b"<sip:rr;lr>".to_vec()]
        );
        let mut ed = Editor::new(&bare);
        assert_eq!(ed.pop_route(), Err(EditError::Missing("Route")));
        ed.push_route(b"<sip:r;lr>, <sip:s;lr>").unwrap();
        ed.pop_route().unwrap();
        assert!(s(&ed.finish()).contains("\r\nRoute: <sip:s;lr>\r\n"));
        // A list that cannot be split is not guessed at; the editor is left unchanged.
        let odd = parse(
            "OPTIONS sip:a@b SIP/2.0\r\nRoute: \"open <sip:x;lr>, <sip:y;lr>\r\nl: 0\r\n\r\n",
        );
        let mut ed = Editor::new(&odd);
        assert_eq!(ed.pop_route(), Err(EditError::Malformed("Route")));
        assert_eq!(ed.finish(), odd.as_bytes());
    }

    #[test]
    fn header_stripping_ignores_case_compact_forms_and_spacing() {
        let m = parse(&INVITE.replace(
            "X-MS-TenantID: t1\r\n",
            "X-Secret   : a\r\nx-secret\t: b\r\nX-SECRET:c\r\n d\r\nX-Secretive: keep\r\n",
        ));
        let (out, back) = edit(&m, |ed| assert_eq!(ed.remove_headers(b"X-Secret"), 3));
        assert!(!s(&out).to_ascii_lowercase().contains("x-secret:") && !s(&out).contains(" d\r\n"));
        assert!(s(&out).contains("X-Secretive: keep"));
        assert_eq!(back.header_by_name("x-secret").count(), 0);

        let compact = parse(
            &INVITE
                .replace("Call-ID: abc@1", "i : abc@1")
                .replace("Content-Length: 4", "l  : 4"),
        );
        let (out, back) = edit(&compact, |ed| {
            assert_eq!(ed.remove_headers(b"CALL-ID"), 1);
            assert_eq!(ed.remove_headers(b"Content-Length"), 1);
        });
        assert!(back.header(HeaderName::CallId).is_none());
        assert!(
            s(&out).ends_with("Content-Length: 4\r\n\r\nv=0\n"),
            "the editor writes a fresh one"
        );
        assert_eq!(
            edit(&m, |ed| assert_eq!(ed.remove_headers(b" s "), 0))
                .1
                .headers()
                .len(),
            m.headers().len()
        );
    }

    #[test]
    fn remove_and_add_compose_in_recording_order() {
        let m = parse(INVITE);
        let (_, back) = edit(&m, |ed| {
            assert_eq!(ed.remove_headers(b"x-ms-tenantid"), 1);
            ed.add_header(b"X-MS-TenantID", b"t2").unwrap();
        });
        assert_eq!(
            back.header_by_name("X-MS-TenantID").collect::<Vec<_>>(),
            vec![&b"t2"[..]]
        );
        let (_, back) = edit(&m, |ed| {
            ed.add_header(b"X-Added", b"1").unwrap();
            ed.push_via(b"SIP/2.0/UDP x;branch=z9hG4bKx").unwrap();
            assert_eq!(ed.remove_headers(b"x-added"), 1);
            assert_eq!(ed.remove_headers(b"v"), 2);
            ed.push_via(b"SIP/2.0/UDP y;branch=z9hG4bKy").unwrap();
        });
        assert_eq!(back.header_by_name("X-Added").count(), 0);
        assert_eq!(
            values(&back, HeaderName::Via),
            vec![b"SIP/2.0/UDP y;branch=z9hG4bKy".to_vec()]
        );
    }

    #[test]
    fn add_header_appends_and_refuses_what_would_break_framing() {
        let m = parse(INVITE);
        let (out, back) = edit(&m, |ed| {
            ed.add_header(b"P-Asserted-Identity", b"<tel:+14255550100>")
                .unwrap();
            ed.add_header(b"X-Empty", b"").unwrap();
        });
        assert!(s(&out).contains(
            "Content-Length: 4\r\nP-Asserted-Identity: <tel:+14255550100>\r\nX-Empty: \r\n\r\nv=0"
        ));
        assert_eq!(back.headers().len(), m.headers().len() + 2);
        let mut ed = Editor::new(&m);
        assert_eq!(ed.add_header(b"l", b"0"), Err(EditError::ContentLength));
        assert_eq!(
            ed.add_header(b"X-A", b"1\r\nVia: evil"),
            Err(EditError::Invalid("header value"))
        );
        assert_eq!(
            ed.add_header(b"X A", b"1"),
            Err(EditError::Invalid("header name"))
        );
        assert_eq!(
            ed.add_header(b"X-A:", b"1"),
            Err(EditError::Invalid("header name"))
        );
        assert_eq!(
            ed.push_via(b"SIP/2.0/UDP h\n"),
            Err(EditError::Invalid("Via"))
        );
        assert_eq!(ed.push_route(b"  "), Err(EditError::Invalid("Route")));
        assert_eq!(s(&ed.finish()), INVITE, "refused edits leave no trace");
    }

    #[test]
    fn content_length_is_always_one_and_right() {
        // A UDP message without Content-Length gets one.
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nbody");
        let (out, _) = edit(&m, |_| {});
        assert_eq!(
            s(&out),
            "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 4\r\n\r\nbody"
        );
        // A right compact one is kept byte for byte; duplicates go.
        let m =
            parse("OPTIONS sip:a@b SIP/2.0\r\nl:4\r\nCall-ID: x\r\ncontent-length: 04\r\n\r\nbody");
        let (out, _) = edit(&m, |_| {});
        assert_eq!(
            s(&out),
            "OPTIONS sip:a@b SIP/2.0\r\nl:4\r\nCall-ID: x\r\n\r\nbody"
        );
        // No headers at all.
        let m = parse("OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(
            s(&edit(&m, |_| {}).0),
            "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn set_body_fixes_length_and_type() {
        let m = parse(&INVITE.replace("Content-Length: 4", "l: 4\r\nc: text/plain"));
        let (out, back) = edit(&m, |ed| {
            ed.set_body(Some(b"application/sdp"), b"v=0\r\no=x\r\n")
                .unwrap()
        });
        assert!(s(&out).ends_with("l: 10\r\nc: application/sdp\r\n\r\nv=0\r\no=x\r\n"));
        assert_eq!(back.body(), b"v=0\r\no=x\r\n");
        let (out, back) = edit(&m, |ed| ed.set_body(None, b"").unwrap());
        assert!(s(&out).ends_with("X-MS-TenantID: t1\r\nl: 0\r\n\r\n"));
        assert!(back.header(HeaderName::ContentType).is_none());
        let (_, back) = edit(&parse(INVITE), |ed| {
            ed.set_body(Some(b"application/sdp"), b"v=1\n").unwrap()
        });
        assert_eq!(
            back.header(HeaderName::ContentType),
            Some(&b"application/sdp"[..])
        );
        assert_eq!(back.body(), b"v=1\n");
    }

    #[test]
    fn typical_forward_changes_only_what_it_says() {
        let m = parse(INVITE);
        let (out, back) = edit(&m, |ed| {
            ed.push_via(b"SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKe1")
                .unwrap();
            ed.decrement_max_forwards().unwrap();
            ed.push_record_route(b"<sip:edge.example.com:5061;transport=tls;lr>")
                .unwrap();
            ed.pop_route().unwrap();
            assert_eq!(ed.remove_headers(b"X-MS-TenantID"), 1);
        });
        let (start, before, body) = logical(&m);
        let (start2, after, body2) = logical(&back);
        assert_eq!((start, body), (start2, body2));
        let mut expected = before.clone();
        expected.retain(|(k, n, _)| !(*k == HeaderName::Other && n == b"x-ms-tenantid"));
        expected.insert(
            0,
            (
                HeaderName::Via,
                vec![],
                b"SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKe1".to_vec(),
            ),
        );
        expected[2].2 = b"69".to_vec();
        expected.insert(
            3,
            (
                HeaderName::RecordRoute,
                vec![],
                b"<sip:edge.example.com:5061;transport=tls;lr>".to_vec(),
            ),
        );
        expected[5].2 = b"<sip:core.example.com;lr>".to_vec();
        assert_eq!(after, expected);
        let expected = INVITE
            .replace(
                "Via:",
                "Via: SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKe1\r\nVia:",
            )
            .replace("Max-Forwards: 70", "Max-Forwards: 69")
            .replace(
                "Record-Route:",
                "Record-Route: <sip:edge.example.com:5061;transport=tls;lr>\r\nRecord-Route:",
            )
            .replace("<sip:edge.example.com;lr>, ", "")
            .replace("X-MS-TenantID: t1\r\n", "");
        assert_eq!(s(&out), expected);
    }
}
