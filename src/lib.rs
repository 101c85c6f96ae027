//! ocedge: a SIP-aware carrier edge gateway for Microsoft Teams Operator Connect.
//!
//! # Layout
//!
//! - [`sip`]: zero-copy SIP parser, URIs and E.164 numbers, stream framing, message editor and
//!   the stateless first look a proxy takes at every message. Pure: no I/O, no clock.
//! - [`transport`]: UDP, TCP and TLS sockets; the `Transport`/`Target` addressing types.
//! - [`proxy`]: the sans-IO proxy core: the RFC 3261 §17 transaction layer, routing,
//!   failover, flood control and the number policy.
//! - [`config`]: the strict TOML configuration (`config/ocedge.toml`).
//! - [`app`]: the daemon: transports and the proxy task wired together, signals.
//! - [`numbers`]: the assigned-numbers table (lock-free lookups), its persisted snapshot
//!   and the sync loop that keeps it current from the API.
//! - [`calls`]: call timing: the sans-IO tracker that turns the proxy's view of every call
//!   into duration records.
//! - [`cdr`]: call detail records, their durable spool, upload and export.
//! - [`quality`]: voice-quality reports (RFC 6035 `vq-rtcpxr`) read tolerantly into samples.
//! - [`msapi`]: the Microsoft API contract: types, the adapter traits, the HTTP client.
//! - [`emulator`]: the Microsoft API emulator (tests, benches, `api.base_url = "embedded"`).
//! - [`admin`]: the admin HTTP server (`/metrics`, health, status, reload) and the metrics
//!   catalogue with the helpers that publish into it.
//! - [`logging`]: the tracing subscriber: human or JSON lines, level reloadable.
//! - [`reconcile`]: Microsoft's call records pulled and matched with ours: classes per
//!   call (matched, duration mismatch, missing on either side), reports per window.
//! - [`inspect`]: the `ocedge inspect` report built on [`sip`].
//! - [`cli`]: the command line; `main.rs` only calls [`cli::run`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;

/// The hash map of the per-message tables (transactions, dialogs, flood buckets): std's
/// `HashMap` with foldhash instead of SipHash, which profiling showed at 2% of the gateway's
/// CPU. The state is seeded at random per process and per map, so keys an attacker chooses
/// (branches, Call-IDs, addresses) cannot be aimed at one bucket without the seed.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Bytes as text: borrowed when they are UTF-8 (checked with `str::from_utf8`, which has a
/// fast path for ASCII; the lossy decoder walks byte by byte), else decoded lossily. For
/// message fields (Call-IDs, tags) and report bodies, which are all but always ASCII.
pub(crate) fn text_of(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// Runs file work that may block (an fsync, reading a large spool) from an async task
/// without stalling the other tasks of a multi-threaded runtime (`block_in_place` hands
/// this worker's queue to another thread); inline on any other runtime. Every fsync made
/// from a task goes through here: one on a worker stalls the UDP receive loops sharing it,
/// delaying every SIP message behind it (measured: 15–110 ms per fsync under disk load,
/// which skewed call durations by as much).
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
pub mod calls;
pub mod cdr;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod inspect;
pub mod logging;
pub mod msapi;
pub mod numbers;
pub mod proxy;
pub mod quality;
pub mod reconcile;
pub mod sip;
#[cfg(test)]
mod testdir;
pub mod transport;
