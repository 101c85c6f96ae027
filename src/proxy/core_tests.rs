//! Proxy-core tests in simulated time: no sockets, no clock (quinn-proto's `tests/util.rs`
//! `Pair` style). A [`net::Net`] owns one [`super::core::Proxy`] with two UDP listeners
//! (Microsoft side 10.0.0.1:5066, carrier side 10.0.0.1:5062) and two TCP ones, one
//! Microsoft target and two SBCs of priority 1 and 2, short timers and a recording policy.
//! Tests deliver messages built as text from a peer's address on a listener, advance time
//! from deadline to deadline exactly as the app's loop does (`poll_timeout` then
//! `handle_timeout`), and assert on every message the proxy sent, parsed, per destination.
//!
//! - [`calls`]: calls both ways, Via/Record-Route/Max-Forwards/strip edits, ACK and BYE
//!   loose-routed, OPTIONS to the gateway, in-dialog routing (404, 408).
//! - [`flow`]: in-dialog requests to Microsoft's host names follow our Record-Route's flow.
//! - [`failover`]: SBC choice, failover on 503/408/Timer B, 503 when none is left, Timer C.
//! - [`health`]: call results and OPTIONS probes driving destination health.
//! - [`guards`]: ACL, first look, loops, flood control, overload, policy.
//! - [`cancel`]: CANCEL in every state of the INVITE.
//! - [`lifetime`]: every transaction ends; only probe deadlines remain.

mod msg;
mod net;

mod calls;
mod cancel;
mod failover;
mod flow;
mod guards;
mod health;
mod lifetime;
