//! The SIP core: a zero-copy parser, stream framing, an editor and a stateless validator.
//!
//! No I/O, no clock, no tasks: everything here takes bytes and returns values, so it can be
//! fuzzed and tested without sockets.

pub mod edit;
pub mod framing;
pub mod headers;
pub mod lex;
pub mod limits;
mod memo;
pub mod message;
pub mod name;
pub mod number;
pub mod response;
pub mod uri;
pub mod validate;

pub use limits::Limits;
pub use message::{Message, Method};
pub use name::HeaderName;
