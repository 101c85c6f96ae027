//! The proxy core (RFC 3261 §16–17), sans-IO: state machines that take parsed messages,
//! events and `now`, and return actions. Sockets, clocks and tasks live in the transport
//! and app loops, never here.
//!
//! - [`transaction`]: the §17 transaction layer (server and client, INVITE and non-INVITE,
//!   timers A–M, CANCEL matching), with observable transaction events.

pub mod transaction;
