//! The proxy core (RFC 3261 §16–17), sans-IO: state machines that take parsed messages,
//! events and `now`, and return actions. Sockets, clocks and tasks live in the transport
//! and app loops, never here.
//!
//! - [`transaction`]: the §17 transaction layer (server and client, INVITE and non-INVITE,
//!   timers A–M, CANCEL matching), with observable transaction events.
//! - [`core`]: the §16 proxy: validation, ACL, flood control, policy, routing, forwarding,
//!   failover, OPTIONS probing.
//! - [`route`]: our advertised addresses, loop detection, next-hop resolution.
//! - [`policy`]: the seam for the number policy and call timing; [`numbers_policy`] is the
//!   number policy itself.
//! - [`acl`], [`flood`], [`dispatch`]: source ACLs, per-source token buckets, destination
//!   sets with priority, weight and OPTIONS health.
//! - [`stats`]: the proxy's counters.

pub mod acl;
pub mod contact;
pub mod core;
pub mod dispatch;
pub mod flood;
pub mod flow;
pub mod numbers_policy;
pub mod policy;
pub mod route;
pub mod stats;
#[doc(hidden)]
pub mod testkit;
mod text;
pub mod transaction;

#[cfg(test)]
mod core_tests;
