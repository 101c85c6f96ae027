//! Profiling aid: parses the bench INVITE in a loop (`perf record` / callgrind target).
use bytes::Bytes;
use ocedge::sip::{Limits, Message};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let bytes = Bytes::from_static(include_bytes!("../benches/data/ms_invite.sip"));
    let mut total = 0usize;
    for _ in 0..n {
        if let Ok(m) = Message::parse(std::hint::black_box(bytes.clone()), &Limits::DEFAULT) {
            total += m.headers().len();
        }
    }
    println!("{total}");
}
