//! The in-tree SIP test user agent and gateway harness shared by the `proxy_*` integration
//! tests: plain tokio sockets on loopback (UDP, TCP, TLS with rustls/ring), a hand-written
//! message builder, certificates made with rcgen, and a gateway started with
//! `ocedge::app::start` on port 0.
//!
//! Every receive is bounded (see [`ua::WAIT`]) and every test body runs under [`bounded`],
//! so a broken gateway fails a test instead of hanging it. Every file a test writes goes
//! in a [`TempDir`] (`src/testdir.rs`, shared with the unit tests), removed on drop.
#![allow(dead_code)]

pub mod certs;
pub mod emulator;
pub mod gateway;
pub mod msg;
#[path = "../../src/testdir.rs"]
pub mod testdir;
pub mod ua;

use std::future::Future;
use std::time::Duration;

#[allow(unused_imports)]
pub use gateway::{dest, Gateway, NumbersSpec, Spec};
#[allow(unused_imports)]
pub use msg::{Leg, MsgExt, Request};
#[allow(unused_imports)]
pub use testdir::{temp_dir, TempDir};
#[allow(unused_imports)]
pub use ua::{Incoming, StreamServer, Ua, WAIT};

/// Runs a test body with an overall bound of 30 s.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("test exceeded its 30 s bound");
}

/// Shorthand for milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The Request-URI's host part for a gateway listener (`sip:+1…@host:port`).
pub fn callee_uri(number: &str, gw: std::net::SocketAddr) -> String {
    format!("sip:{number}@{gw};user=phone")
}

/// Asserts a Record-Route/Route entry is a loose-routing URI for `hostport` with
/// `transport=`.
pub fn assert_rr(entry: &str, hostport: &str, transport: &str) {
    let uri = msg::uri_of(entry);
    assert!(
        uri.starts_with(&format!("sip:{hostport};"))
            || uri.starts_with(&format!("sip:{hostport}>")),
        "Record-Route {entry:?} does not name {hostport}"
    );
    assert!(uri.contains(";lr"), "Record-Route {entry:?} lacks ;lr");
    assert!(
        uri.to_ascii_lowercase()
            .contains(&format!("transport={transport}")),
        "Record-Route {entry:?} lacks transport={transport}"
    );
}
