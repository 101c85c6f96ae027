//! Raw parse: any bytes through `Message::parse` as a datagram; on success every typed
//! accessor runs and the parser's structural invariants are checked (`ocedge_fuzz`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocedge::sip::{Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    match Message::parse(Bytes::copy_from_slice(data), &limits) {
        Ok(m) => ocedge_fuzz::check_message(&m, data, &limits),
        Err(f) => ocedge_fuzz::check_failure(&f),
    }
});
