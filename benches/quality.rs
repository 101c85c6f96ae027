//! RFC 6035 report parsing, per report: the RFC's session report, a vendor phone's and an
//! SBC's (lower-case names, folded lines). SBCs send one such PUBLISH per call, so at
//! 1,000 calls/s this runs 1,000 times a second beside the proxy.
//!
//! ```sh
//! cargo bench --bench quality
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use ocedge::quality::vqreport;

const REPORTS: [(&str, &[u8]); 3] = [
    (
        "rfc6035-session",
        include_bytes!("../fuzz/corpus/vqreport/rfc6035-session"),
    ),
    (
        "vendor-phone-session",
        include_bytes!("../fuzz/corpus/vqreport/vendor-phone-session"),
    ),
    (
        "vendor-sbc-lowercase",
        include_bytes!("../fuzz/corpus/vqreport/vendor-sbc-lowercase"),
    ),
];

fn parse(c: &mut Criterion) {
    for (name, body) in REPORTS {
        c.bench_function(
            &format!("vqreport parse {name} ({} bytes)", body.len()),
            |b| b.iter(|| vqreport::parse(black_box(body))),
        );
    }
}

criterion_group!(benches, parse);
criterion_main!(benches);
