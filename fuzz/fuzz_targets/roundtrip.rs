//! Parse → edit → encode → parse. Input: one byte `k`, then `k % 8` operation bytes, then the
//! message. A message that parses is
//! 1. re-parsed from `as_bytes()` (trailing datagram octets dropped): same start line,
//!    headers and body;
//! 2. edited with `sip::edit::Editor` (the operations the bytes choose: push/pop Via and
//!    Route, push Record-Route, decrement Max-Forwards, remove or add headers), and the
//!    output must parse with the expected logical changes: Via, Route and Record-Route counts
//!    and top values, Max-Forwards, exactly one right Content-Length, the same start line and
//!    body, and every header no operation touched unchanged and in order.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocedge::sip::edit::{EditError, Editor};
use ocedge::sip::headers::HeaderError;
use ocedge::sip::lex;
use ocedge::sip::message::StartLine;
use ocedge::sip::name::eq_name;
use ocedge::sip::{HeaderName, Limits, Message};

const VIAS: [&[u8]; 3] = [
    b"SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKfuzz0",
    b"SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKfuzz1;rport",
    b"SIP/2.0/TCP [2001:db8::7];branch=z9hG4bKfuzz2",
];
const ROUTES: [&[u8]; 2] = [
    b"<sip:edge.example.com;lr>",
    b"<sip:[2001:db8::7]:5061;transport=tls;lr>",
];
/// Names for `remove_headers`: touched kinds, compact forms, an extension header.
const REMOVABLE: [&[u8]; 10] = [
    b"Via",
    b"v",
    b"Record-Route",
    b"Route",
    b"Max-Forwards",
    b"Subject",
    b"X-MS-TenantID",
    b"l",
    b"Content-Type",
    b"x-fuzz",
];
const ADDED: &[u8] = b"X-Fuzz";

/// The output may be a little larger than the input (pushed lines, a written Content-Length),
/// so it is re-parsed under limits with room for that; the logic checked is the same.
const ROOMY: Limits = Limits {
    max_message: 32 * 1024,
    max_head: 28 * 1024,
    max_headers: 512,
    max_line: 8 * 1024,
    max_uri: 2048,
    max_body: 12 * 1024,
    max_vias: 256,
    max_stream_buffer: 64 * 1024,
};

/// What the edits should do to one list header (Via, Route, Record-Route): the number of
/// values when known, and the values pushed since the last time the top was unknown.
struct List {
    count: Option<usize>,
    pushed: Vec<&'static [u8]>,
}

impl List {
    fn new<T>(values: Result<Vec<T>, HeaderError>) -> List {
        List {
            count: values.ok().map(|v| v.len()),
            pushed: Vec::new(),
        }
    }

    fn push(&mut self, v: &'static [u8], r: Result<(), EditError>) {
        assert_eq!(r, Ok(()), "pushing a valid value failed");
        self.count = self.count.map(|c| c + 1);
        self.pushed.push(v);
    }

    fn pop(&mut self, r: Result<(), EditError>) {
        match r {
            Ok(()) => {
                assert_ne!(self.count, Some(0), "popped a value from an empty list");
                self.count = self.count.map(|c| c - 1);
                self.pushed.pop();
            }
            Err(EditError::Missing(_)) => {
                assert!(matches!(self.count, Some(0) | None), "pop found no value");
            }
            Err(_) => {
                self.count = None;
                self.pushed.clear();
            }
        }
    }

    fn remove(&mut self) {
        self.count = Some(0);
        self.pushed.clear();
    }

    fn check<T>(&self, what: &str, got: Result<Vec<T>, HeaderError>, top: impl Fn(&T) -> Vec<u8>) {
        let Some(count) = self.count else { return };
        let got = got.unwrap_or_else(|e| panic!("{what} values no longer parse: {e}"));
        assert_eq!(got.len(), count, "{what} count after edits");
        if let (Some(want), Some(first)) = (self.pushed.last(), got.first()) {
            assert_eq!(&top(first)[..], *want, "top {what} after edits");
        }
    }
}

/// True when a header line with `kind` and `name` is one `remove_headers(removed)` removes.
fn matches(kind: HeaderName, name: &[u8], removed: &[u8]) -> bool {
    let rk = HeaderName::classify(removed);
    rk == kind && (rk != HeaderName::Other || eq_name(name, removed))
}

/// Method, Request-URI, status and reason, as text.
type StartText<'a> = (
    Option<&'a [u8]>,
    Option<&'a [u8]>,
    Option<u16>,
    Option<&'a [u8]>,
);

/// Start line, (kind, trimmed value) per header line, body.
type Logical = (StartLine, Vec<(HeaderName, Vec<u8>)>, Vec<u8>);

fn start_of(m: &Message) -> StartText<'_> {
    (
        m.method_str(),
        m.request_uri_bytes(),
        m.status(),
        m.reason(),
    )
}

/// Headers no operation can touch, as (name, value).
fn untouched<'a>(m: &'a Message, removed: &[&[u8]]) -> Vec<(&'a [u8], &'a [u8])> {
    let touched = [
        HeaderName::Via,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
    ];
    m.headers()
        .iter()
        .filter(|h| !touched.contains(&h.kind))
        .filter(|h| {
            let name = m.headers().name_of(h);
            !eq_name(name, ADDED) && !removed.iter().any(|r| matches(h.kind, name, r))
        })
        .map(|h| (m.headers().name_of(h), m.headers().value_of(h)))
        .collect()
}

fn reparse(m: &Message, limits: &Limits) {
    let again = Message::parse(Bytes::copy_from_slice(m.as_bytes()), limits).unwrap_or_else(|f| {
        panic!(
            "as_bytes() of a parsed message does not parse: {:?}",
            f.error
        )
    });
    ocedge_fuzz::check_message(&again, m.as_bytes(), limits);
    let logical = |m: &Message| -> Logical {
        let headers = m.headers().iter();
        let headers = headers.map(|h| (h.kind, lex::trim(m.headers().value_of(h)).to_vec()));
        // Start-line spans are offsets: equal because the new buffer is a prefix of the old.
        (*m.start_line(), headers.collect(), m.body().to_vec())
    };
    assert_eq!(logical(m), logical(&again));
    assert_eq!(m.content_length(), again.content_length());
}

fn edit(m: &Message, ops: &[u8]) {
    let mut ed = Editor::new(m);
    let mut via = List::new(m.vias());
    let mut route = List::new(m.routes());
    let mut rr = List::new(m.record_routes());
    let mut added = Some(m.header_by_name("X-Fuzz").count());
    // `Some(Some(n))`: the first Max-Forwards is n; `Some(None)`: there is none; `None`:
    // unknown (not a number in 0..=255).
    let mut max_forwards = match m.header(HeaderName::MaxForwards) {
        None => Some(None),
        Some(v) => lex::parse_decimal(lex::trim(v), 255).map(|n| Some(n as u8)),
    };
    let mut removed: Vec<&[u8]> = Vec::new();
    for (i, &op) in ops.iter().enumerate() {
        let arg = usize::from(op >> 3);
        match op & 7 {
            0 => {
                let v = VIAS[arg % VIAS.len()];
                via.push(v, ed.push_via(v));
            }
            1 => via.pop(ed.pop_via()),
            2 => match ed.decrement_max_forwards() {
                Ok(n) => {
                    if let Some(Some(before)) = max_forwards {
                        assert_eq!(n, before - 1, "Max-Forwards decremented wrongly");
                    }
                    if max_forwards == Some(None) {
                        assert_eq!(n, 70, "absent Max-Forwards not set to 70");
                    }
                    max_forwards = Some(Some(n));
                }
                Err(EditError::TooManyHops) => {
                    assert!(matches!(max_forwards, Some(Some(0)) | None));
                }
                Err(_) => max_forwards = None,
            },
            3 => {
                let v = ROUTES[arg % ROUTES.len()];
                rr.push(v, ed.push_record_route(v));
            }
            4 => {
                let name = REMOVABLE[(arg + i) % REMOVABLE.len()];
                ed.remove_headers(name);
                removed.push(name);
                let kind = HeaderName::classify(name);
                match kind {
                    HeaderName::Via => via.remove(),
                    HeaderName::Route => route.remove(),
                    HeaderName::RecordRoute => rr.remove(),
                    HeaderName::MaxForwards => max_forwards = Some(None),
                    _ if eq_name(name, ADDED) => added = Some(0),
                    _ => {}
                }
            }
            5 => {
                let v = ROUTES[arg % ROUTES.len()];
                route.push(v, ed.push_route(v));
            }
            6 => route.pop(ed.pop_route()),
            _ => {
                assert_eq!(ed.add_header(ADDED, b"1"), Ok(()));
                added = added.map(|n| n + 1);
            }
        }
    }
    let out = ed.finish();
    let e = Message::parse(out.clone(), &ROOMY).unwrap_or_else(|f| {
        panic!(
            "edited message does not parse: {:?}\n{:?}",
            f.error,
            String::from_utf8_lossy(&out)
        )
    });
    ocedge_fuzz::check_message(&e, &out, &ROOMY);

    assert_eq!(start_of(&e), start_of(m), "start line changed");
    assert_eq!(e.body(), m.body(), "body changed");
    let lengths: Vec<&[u8]> = e.headers().values(HeaderName::ContentLength).collect();
    assert_eq!(
        lengths.len(),
        1,
        "not exactly one Content-Length: {lengths:?}"
    );
    assert_eq!(e.content_length(), Some(e.body().len() as u32));
    assert_eq!(
        untouched(&e, &removed),
        untouched(m, &removed),
        "untouched headers changed"
    );

    // The top value as written: the first list item of the first line of its kind.
    let first_item = |kind: HeaderName| {
        let mut first = None;
        let _ = lex::for_each_item(e.header(kind).unwrap_or_default(), |item| {
            first.get_or_insert(item.to_vec());
        });
        first.unwrap_or_default()
    };
    via.check("Via", e.vias(), |_| first_item(HeaderName::Via));
    route.check("Route", e.routes(), |_| first_item(HeaderName::Route));
    rr.check("Record-Route", e.record_routes(), |_| {
        first_item(HeaderName::RecordRoute)
    });
    if let Some(n) = added {
        assert_eq!(
            e.header_by_name("X-Fuzz").count(),
            n,
            "X-Fuzz count after edits"
        );
    }
    match max_forwards {
        Some(Some(n)) => {
            let got = e.header(HeaderName::MaxForwards).map(lex::trim);
            let got = got.and_then(|v| lex::parse_decimal(v, 255));
            assert_eq!(got, Some(u64::from(n)), "Max-Forwards after edits");
        }
        Some(None) => assert_eq!(e.header(HeaderName::MaxForwards), None),
        None => {}
    }

    // Without edits, a message with one right Content-Length, no leading CRLFs and a blank
    // line (a datagram may end without one: the editor writes it) comes out byte for byte.
    let bytes = m.as_bytes();
    let single_cl = m.headers().count(HeaderName::ContentLength) == 1;
    let blank_line = bytes
        .get(..m.head_end())
        .is_some_and(|h| h.ends_with(b"\r\n\r\n"));
    if ops.is_empty() && single_cl && blank_line && !bytes.starts_with(b"\r\n") {
        assert_eq!(&out[..], m.as_bytes(), "an unedited message was rewritten");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (ops, msg) = rest.split_at(rest.len().min(usize::from(k % 8)));
    let limits = Limits::DEFAULT;
    let Ok(m) = Message::parse(Bytes::copy_from_slice(msg), &limits) else {
        return;
    };
    reparse(&m, &limits);
    edit(&m, ops);
});
