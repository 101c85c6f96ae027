//! Profiling aid: runs one hot path over the bench INVITE in a loop, for `perf record` or
//! `valgrind --tool=callgrind` (instruction counts are repeatable on a noisy machine).
//!
//! `cargo run --release --example parse_loop -- MODE N` with MODE one of `parse` (ocedge's
//! structural parse), `core` (parse + core headers), `rsip` (the rsip baseline), `edit`
//! (the forward edit on a parsed message).
use bytes::Bytes;
use ocedge::sip::edit::Editor;
use ocedge::sip::{Limits, Message};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "parse".into());
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let raw: &'static [u8] = include_bytes!("../benches/data/ms_invite.sip");
    let bytes = Bytes::from_static(raw);
    let parsed = Message::parse(bytes.clone(), &Limits::DEFAULT).expect("bench INVITE parses");
    let mut total = 0usize;
    for _ in 0..n {
        total += match mode.as_str() {
            "parse" => Message::parse(std::hint::black_box(bytes.clone()), &Limits::DEFAULT)
                .map_or(0, |m| m.headers().len()),
            "core" => Message::parse(std::hint::black_box(bytes.clone()), &Limits::DEFAULT)
                .ok()
                .and_then(|m| m.core().ok().map(|c| c.cseq.seq as usize))
                .unwrap_or(0),
            "rsip" => usize::from(rsip::SipMessage::try_from(std::hint::black_box(raw)).is_ok()),
            "edit" => {
                let mut e = Editor::new(std::hint::black_box(&parsed));
                let _ = e.push_via(b"SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKoc1.1;rport");
                let _ = e.decrement_max_forwards();
                let _ = e.push_record_route(b"<sip:192.0.2.10:5062;lr>");
                e.remove_headers(b"X-MS-TenantID");
                e.finish().len()
            }
            other => panic!("unknown mode {other}"),
        };
    }
    println!("{total}");
}
