//! Criterion benches of the SIP hot paths, with `rsip` 0.4 parsing the same bytes as the
//! in-process baseline. Report ratios from one run (these machines are noisy):
//!
//! ```sh
//! cargo bench --bench sip
//! ```
//!
//! The message is a ~1 KB INVITE as Microsoft's SIP proxy sends it to a carrier SBC
//! (Record-Route, Contact with parameters, P-Asserted-Identity, Session-Expires, SDP).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use ocedge::sip::edit::Editor;
use ocedge::sip::framing::{Frame, StreamFramer};
use ocedge::sip::{HeaderName, Limits, Message};

const INVITE: &[u8] = include_bytes!("data/ms_invite.sip");

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let bytes = Bytes::from_static(INVITE);
    g.bench_function("ocedge", |b| {
        b.iter(|| {
            Message::parse(black_box(bytes.clone()), &Limits::DEFAULT).map(|m| m.headers().len())
        })
    });
    g.bench_function("ocedge+core", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(bytes.clone()), &Limits::DEFAULT).ok()?;
            let core = m.core().ok()?;
            Some(core.cseq.seq)
        })
    });
    g.bench_function("rsip", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(INVITE)).is_ok())
    });
    g.finish();
}

fn typed(c: &mut Criterion) {
    let m = Message::parse(Bytes::from_static(INVITE), &Limits::DEFAULT).unwrap();
    c.bench_function("typed/all_fields", |b| {
        b.iter(|| {
            let m = black_box(&m);
            let core = m.core().ok()?;
            let se = m.session_expires().ok()??;
            let pai = m.p_asserted_identity().ok()?;
            let (contacts, _) = m.contacts().ok()?;
            let rr = m.record_routes().ok()?;
            let ct = m.content_type().ok()??;
            let sup = m.option_tags(HeaderName::Supported).ok()?;
            let tenant = m.header_by_name("X-MS-TenantID").next()?;
            let uri = m.request_uri()?;
            Some(
                core.from.tag()?.len()
                    + se.seconds as usize
                    + pai.len()
                    + contacts.len()
                    + rr.len()
                    + ct.subtype.len()
                    + sup.len()
                    + tenant.len()
                    + uri.user?.len(),
            )
        })
    });
}

fn framing(c: &mut Criterion) {
    // 16 messages back to back, fed in 1460-byte segments as TCP would deliver them.
    let stream: Vec<u8> = INVITE.repeat(16);
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Elements(16));
    g.bench_function("16_messages_1460B_segments", |b| {
        b.iter(|| {
            let mut f = StreamFramer::new(Limits::DEFAULT);
            let mut n = 0;
            for seg in black_box(&stream).chunks(1460) {
                f.push(seg).ok()?;
                while let Some(frame) = f.next_frame().ok()? {
                    if matches!(frame, Frame::Message(_)) {
                        n += 1;
                    }
                }
            }
            Some(n)
        })
    });
    g.finish();
}

fn forward_edit(c: &mut Criterion) {
    // What the proxy does to a request it forwards: push its Via, decrement Max-Forwards,
    // add its Record-Route, pop its own Route if present, strip a configured header.
    let m = Message::parse(Bytes::from_static(INVITE), &Limits::DEFAULT).unwrap();
    c.bench_function("edit/forward", |b| {
        b.iter(|| {
            let mut e = Editor::new(black_box(&m));
            e.push_via(b"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKocedge1a2b3c4d;rport")
                .ok()?;
            e.decrement_max_forwards().ok()?;
            e.push_record_route(b"<sip:192.0.2.10:5062;lr>").ok()?;
            e.remove_headers(b"X-MS-TenantID");
            Some(e.finish().len())
        })
    });
}

criterion_group!(benches, parse, typed, framing, forward_edit);
criterion_main!(benches);
