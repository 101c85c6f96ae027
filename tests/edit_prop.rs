//! Property tests of the message editor (`ocedge::sip::edit`).
//!
//! Messages are generated with the variety real peers produce: compact and oddly cased
//! names, whitespace before the colon, folded lists, Via/Route lists split over several
//! lines, a body with or without Content-Length (and datagram junk after it), CRLFs before
//! the start line. Random sequences of edits are applied both to an [`Editor`] and to a
//! small model of the logical message; the output must parse and match the model. A message
//! without edits must come out byte for byte as it went in (Content-Length aside).

use std::collections::VecDeque;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use ocedge::sip::edit::{EditError, Editor};
use ocedge::sip::lex;
use ocedge::sip::{HeaderName, Limits, Message};

/// A generated message and what the generator knows about it.
#[derive(Debug, Clone)]
struct Gen {
    /// CRLFs before the start line.
    lead: usize,
    /// Start line and header lines, without the blank line.
    head: String,
    has_length: bool,
    body: Vec<u8>,
    /// Octets after the body (only with Content-Length).
    junk: &'static str,
}

impl Gen {
    fn bytes(&self) -> Vec<u8> {
        let mut b = "\r\n".repeat(self.lead).into_bytes();
        b.extend_from_slice(self.head.as_bytes());
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(&self.body);
        b.extend_from_slice(self.junk.as_bytes());
        b
    }
}

const BEFORE_COLON: &[&str] = &[":", ":", " :", "   :", "\t:", " \t:"];
const AFTER_COLON: &[&str] = &[" ", " ", "", "  ", "\t", "\r\n "];
const JOINERS: &[&str] = &[",", ", ", " , ", ",\r\n ", " ,\r\n\t"];

/// (name spelling, separator before and after the colon, list joiners).
type LineSpec = (&'static str, &'static str, &'static str, Vec<&'static str>);

fn list_line(names: &'static [&'static str], max_items: usize) -> impl Strategy<Value = LineSpec> {
    (
        select(names),
        select(BEFORE_COLON),
        select(AFTER_COLON),
        vec(select(JOINERS), 0..max_items),
    )
}

fn assemble(spec: &LineSpec, item: impl Fn(usize) -> String) -> String {
    let (name, pre, post, joins) = spec;
    let mut v = item(0);
    for (k, j) in joins.iter().enumerate() {
        v.push_str(j);
        v.push_str(&item(k + 1));
    }
    format!("{name}{pre}{post}{v}\r\n")
}

fn message() -> impl Strategy<Value = Gen> {
    let lists = (
        vec(list_line(&["Via", "v", "VIA", "via"], 3), 1..4),
        vec(list_line(&["Route", "ROUTE", "route"], 3), 0..3),
        vec(list_line(&["Record-Route", "record-route"], 2), 0..3),
    );
    let others = vec(
        (
            select(
                &[
                    "X-Foo",
                    "x-foo",
                    "X-BAR",
                    "Subject",
                    "s",
                    "User-Agent",
                    "k",
                    "Supported",
                ][..],
            ),
            select(BEFORE_COLON),
            select(AFTER_COLON),
            select(&["a", "hello world", "one\r\n two", "x;y=z", "<sip:q@r>"][..]),
        ),
        0..6,
    );
    let scalars = (
        prop::bool::weighted(0.8),
        option::of((
            select(&["Max-Forwards", "max-forwards", "MAX-FORWARDS"][..]),
            any::<u8>(),
            any::<bool>(),
        )),
        option::of((
            select(&["Content-Length", "content-length", "l", "L"][..]),
            select(BEFORE_COLON),
            any::<bool>(),
        )),
        option::of(select(
            &["Content-Type: application/sdp", "c : text/plain"][..],
        )),
        vec(any::<u8>(), 0..48),
        select(&["", "JUNK", "\r\n\r\nOPTIONS sip:x SIP/2.0"][..]),
        0usize..3,
    );
    (lists, others, scalars).prop_flat_map(|((vias, routes, rrs), others, scalars)| {
        let (request, mf, cl, ct, body, junk, lead) = scalars;
        let mut lines = Vec::new();
        for (n, spec) in vias.iter().enumerate() {
            lines.push(assemble(spec, |k| {
                format!("SIP/2.0/UDP h{n}-{k}.example.com;branch=z9hG4bK{n}x{k}")
            }));
        }
        for (n, spec) in routes.iter().enumerate() {
            lines.push(assemble(spec, |k| format!("<sip:r{n}-{k}.example.com;lr>")));
        }
        for (n, spec) in rrs.iter().enumerate() {
            lines.push(assemble(spec, |k| {
                format!("<sip:rr{n}-{k}.example.com;lr>")
            }));
        }
        for (name, pre, post, value) in &others {
            lines.push(format!("{name}{pre}{post}{value}\r\n"));
        }
        lines.push("From: <sip:a@b.example.com>;tag=f1\r\n".into());
        lines.push("t:<sip:c@d.example.com>\r\n".into());
        lines.push("Call-ID: id1@h\r\n".into());
        if let Some((name, n, zero)) = mf {
            lines.push(format!("{name}: {}{n}\r\n", if zero { "0" } else { "" }));
        }
        if let Some(ct) = ct {
            lines.push(format!("{ct}\r\n"));
        }
        if let Some((name, pre, zero)) = cl {
            let z = if zero { "0" } else { "" };
            lines.push(format!("{name}{pre} {z}{}\r\n", body.len()));
        }
        let start = if request {
            "INVITE sip:+14255550100@gw.example.com SIP/2.0\r\nCSeq: 1 INVITE\r\n"
        } else {
            "SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n"
        };
        let has_length = cl.is_some();
        let junk = if has_length { junk } else { "" };
        Just(lines).prop_shuffle().prop_map(move |lines| Gen {
            lead,
            head: format!("{start}{}", lines.concat()),
            has_length,
            body: body.clone(),
            junk,
        })
    })
}

#[derive(Debug, Clone)]
enum Op {
    PushVia(Vec<u8>),
    PopVia,
    PushRoute(Vec<u8>),
    PopRoute,
    PushRecordRoute(Vec<u8>),
    DecrementMaxForwards,
    SetMaxForwards(u8),
    SetRequestUri(&'static str),
    Remove(&'static str),
    Add(&'static str, &'static str),
    SetBody(Option<&'static str>, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    const REMOVE: &[&str] = &[
        "Via",
        "v",
        "VIA",
        "Route",
        "route",
        "Record-Route",
        "Max-Forwards",
        "X-Foo",
        "x-foo",
        "X-BAR",
        "Subject",
        "s",
        "Content-Type",
        "c",
        "l",
        "Content-Length",
        "Call-ID",
        "i",
        "X-None",
        " x-foo ",
    ];
    prop_oneof![
        3 => (0u32..1000).prop_map(|n| Op::PushVia(format!("SIP/2.0/TLS p{n}.example.com;branch=z9hG4bKp{n}").into_bytes())),
        3 => Just(Op::PopVia),
        2 => (0u32..1000).prop_map(|n| Op::PushRoute(format!("<sip:pr{n}.example.com;lr>").into_bytes())),
        2 => Just(Op::PopRoute),
        2 => (0u32..1000).prop_map(|n| Op::PushRecordRoute(format!("<sip:prr{n}.example.com;lr>").into_bytes())),
        2 => Just(Op::DecrementMaxForwards),
        1 => any::<u8>().prop_map(Op::SetMaxForwards),
        1 => select(&["sip:+1@10.0.0.1", "sip:x@y.example.com;transport=tls", "tel:+14255550100", "sip:bad uri"][..]).prop_map(Op::SetRequestUri),
        3 => select(REMOVE).prop_map(Op::Remove),
        3 => (
            select(&["X-Foo", "x-bar", "Subject", "s", "X-New", "Via", "Route", "Content-Length", "l", "Bad Name"][..]),
            select(&["v1", "hello world", "", "bad\r\nX-Injected: y"][..]),
        ).prop_map(|(n, v)| Op::Add(n, v)),
        1 => (option::of(select(&["application/sdp", "text/plain;charset=utf-8"][..])), vec(any::<u8>(), 0..32))
            .prop_map(|(ct, b)| Op::SetBody(ct, b)),
    ]
}

/// The logical message: what the edits are meant to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    start: Vec<u8>,
    vias: VecDeque<Vec<u8>>,
    routes: VecDeque<Vec<u8>>,
    record_routes: VecDeque<Vec<u8>>,
    max_forwards: Vec<u64>,
    content_type: Vec<Vec<u8>>,
    /// Every other line, as (kind, name, whole line bytes).
    others: Vec<(HeaderName, Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fn is_modelled(kind: HeaderName) -> bool {
    matches!(
        kind,
        HeaderName::Via
            | HeaderName::Route
            | HeaderName::RecordRoute
            | HeaderName::MaxForwards
            | HeaderName::ContentType
            | HeaderName::ContentLength
    )
}

fn items(m: &Message, kind: HeaderName) -> VecDeque<Vec<u8>> {
    let mut out = VecDeque::new();
    for v in m.headers().values(kind) {
        lex::for_each_item(v, |i| out.push_back(i.to_vec())).unwrap();
    }
    out
}

fn start_line(m: &Message) -> Vec<u8> {
    match m.request_uri_bytes() {
        Some(uri) => [m.method_str().unwrap(), b" ", uri].concat(),
        None => [
            m.status().unwrap().to_string().as_bytes(),
            b" ",
            m.reason().unwrap(),
        ]
        .concat(),
    }
}

fn model_of(m: &Message) -> Model {
    let h = m.headers();
    Model {
        start: start_line(m),
        vias: items(m, HeaderName::Via),
        routes: items(m, HeaderName::Route),
        record_routes: items(m, HeaderName::RecordRoute),
        max_forwards: h
            .values(HeaderName::MaxForwards)
            .map(|v| lex::parse_decimal(lex::trim(v), 255).unwrap())
            .collect(),
        content_type: h
            .values(HeaderName::ContentType)
            .map(|v| v.to_vec())
            .collect(),
        others: h
            .iter()
            .filter(|x| !is_modelled(x.kind))
            .map(|x| (x.kind, h.name_of(x).to_vec(), x.line.of(h.buf()).to_vec()))
            .collect(),
        body: m.body().to_vec(),
    }
}

fn name_matches(query: &[u8], kind: HeaderName, name: &[u8]) -> bool {
    let q = lex::trim(query);
    match HeaderName::classify(q) {
        HeaderName::Other => kind == HeaderName::Other && name.eq_ignore_ascii_case(q),
        k => k == kind,
    }
}

/// Applies one op to the editor and the model, checking the editor's answer.
fn apply<'m>(ed: &mut Editor<'m>, model: &mut Model, op: &'m Op) -> Result<(), TestCaseError> {
    fn pop(
        list: &mut VecDeque<Vec<u8>>,
        got: Result<(), EditError>,
        name: &'static str,
    ) -> Result<(), TestCaseError> {
        if list.pop_front().is_some() {
            prop_assert_eq!(got, Ok(()));
        } else {
            prop_assert_eq!(got, Err(EditError::Missing(name)));
        }
        Ok(())
    }
    match op {
        Op::PushVia(v) => {
            prop_assert_eq!(ed.push_via(v), Ok(()));
            model.vias.push_front(v.clone());
        }
        Op::PopVia => pop(&mut model.vias, ed.pop_via(), "Via")?,
        Op::PushRoute(v) => {
            prop_assert_eq!(ed.push_route(v), Ok(()));
            model.routes.push_front(v.clone());
        }
        Op::PopRoute => pop(&mut model.routes, ed.pop_route(), "Route")?,
        Op::PushRecordRoute(v) => {
            prop_assert_eq!(ed.push_record_route(v), Ok(()));
            model.record_routes.push_front(v.clone());
        }
        Op::DecrementMaxForwards => {
            let got = ed.decrement_max_forwards();
            match model.max_forwards.first_mut() {
                None => {
                    prop_assert_eq!(got, Ok(70));
                    model.max_forwards.push(70);
                }
                Some(0) => prop_assert_eq!(got, Err(EditError::TooManyHops)),
                Some(n) => {
                    *n -= 1;
                    prop_assert_eq!(got.map(u64::from), Ok(*n));
                }
            }
        }
        Op::SetMaxForwards(n) => {
            ed.set_max_forwards(*n);
            match model.max_forwards.first_mut() {
                None => model.max_forwards.push(u64::from(*n)),
                Some(v) => *v = u64::from(*n),
            }
        }
        Op::SetRequestUri(uri) => {
            let got = ed.set_request_uri(uri.as_bytes());
            if !ed.message().is_request() {
                prop_assert_eq!(got, Err(EditError::NotARequest));
            } else if uri.contains(' ') {
                prop_assert_eq!(got, Err(EditError::Invalid("Request-URI")));
            } else {
                prop_assert_eq!(got, Ok(()));
                model.start = [ed.message().method_str().unwrap(), b" ", uri.as_bytes()].concat();
            }
        }
        Op::Remove(name) => {
            let got = ed.remove_headers(name.as_bytes());
            let name = name.as_bytes();
            match HeaderName::classify(lex::trim(name)) {
                HeaderName::Via => {
                    prop_assert_eq!(got > 0, !model.vias.is_empty());
                    model.vias.clear();
                }
                HeaderName::Route => {
                    prop_assert_eq!(got > 0, !model.routes.is_empty());
                    model.routes.clear();
                }
                HeaderName::RecordRoute => {
                    prop_assert_eq!(got > 0, !model.record_routes.is_empty());
                    model.record_routes.clear();
                }
                HeaderName::MaxForwards => {
                    prop_assert_eq!(got, model.max_forwards.len());
                    model.max_forwards.clear();
                }
                HeaderName::ContentType => {
                    prop_assert_eq!(got, model.content_type.len());
                    model.content_type.clear();
                }
                HeaderName::ContentLength => {}
                _ => {
                    let before = model.others.len();
                    model.others.retain(|(k, n, _)| !name_matches(name, *k, n));
                    prop_assert_eq!(got, before - model.others.len());
                }
            }
        }
        Op::Add(name, value) => {
            let got = ed.add_header(name.as_bytes(), value.as_bytes());
            let kind = HeaderName::classify(name.as_bytes());
            if name.contains(' ') {
                prop_assert_eq!(got, Err(EditError::Invalid("header name")));
            } else if kind == HeaderName::ContentLength {
                prop_assert_eq!(got, Err(EditError::ContentLength));
            } else if value.contains('\n') {
                prop_assert_eq!(got, Err(EditError::Invalid("header value")));
            } else {
                prop_assert_eq!(got, Ok(()));
                let v = value.as_bytes().to_vec();
                match kind {
                    HeaderName::Via => model.vias.push_back(v),
                    HeaderName::Route => model.routes.push_back(v),
                    _ => model.others.push((
                        kind,
                        name.as_bytes().to_vec(),
                        format!("{name}: {value}\r\n").into_bytes(),
                    )),
                }
            }
        }
        Op::SetBody(ct, body) => {
            prop_assert_eq!(ed.set_body(ct.map(str::as_bytes), body), Ok(()));
            match ct {
                Some(ct) => model.content_type = vec![ct.as_bytes().to_vec()],
                None if body.is_empty() => model.content_type.clear(),
                None => {}
            }
            model.body = body.clone();
        }
    }
    Ok(())
}

fn reparse(out: &Bytes) -> Result<Message, TestCaseError> {
    Message::parse(out.clone(), &Limits::DEFAULT).map_err(|e| {
        TestCaseError::fail(format!(
            "output does not parse: {:?}\n{}",
            e.error,
            String::from_utf8_lossy(out)
        ))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_edit_round_trips_byte_for_byte(g in message()) {
        let m = Message::parse_slice(&g.bytes()).unwrap();
        let out = Editor::new(&m).finish();
        let mut expected = g.head.clone().into_bytes();
        if !g.has_length {
            expected.extend_from_slice(format!("Content-Length: {}\r\n", g.body.len()).as_bytes());
        }
        expected.extend_from_slice(b"\r\n");
        expected.extend_from_slice(&g.body);
        prop_assert_eq!(&out[..], &expected[..]);
        let back = reparse(&out)?;
        prop_assert_eq!(model_of(&back), model_of(&m));
    }

    #[test]
    fn edits_match_the_model(g in message(), ops in vec(op(), 0..12)) {
        let m = Message::parse_slice(&g.bytes()).unwrap();
        let mut model = model_of(&m);
        let mut ed = Editor::new(&m);
        for op in &ops {
            apply(&mut ed, &mut model, op)?;
        }
        let out = ed.finish();
        let back = reparse(&out)?;
        let lengths: Vec<_> = back.headers().values(HeaderName::ContentLength).collect();
        prop_assert_eq!(lengths.len(), 1);
        prop_assert_eq!(lex::parse_content_length(lengths[0]).ok(), Some(back.body().len() as u32));
        prop_assert_eq!(model_of(&back), model);
    }
}
