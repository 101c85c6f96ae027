//! Size limits applied to untrusted SIP input.
//!
//! Every size the parser, the framer and the validator enforce lives in this one struct, so a
//! carrier can tune them in one place (the `[limits]` table of the config) and a reviewer can
//! see every bound at a glance. Checks are done before work proportional to the input: a
//! message over `max_message` is refused from its length alone, a header line over `max_line`
//! when the scanner reaches it, never after a full parse.

use serde::Deserialize;

/// Upper bounds on every size taken from the network.
///
/// Defaults: Microsoft's SIP proxies cap messages at 10 KB; we accept 16 KiB so that an SBC
/// with a large SDP offer (video, many codecs) still gets through, while staying small enough
/// that a flood of maximum-size messages is cheap to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest whole message (start line, headers and body) in bytes.
    pub max_message: usize,
    /// Largest header section (start line and headers, with the blank line) in bytes.
    pub max_head: usize,
    /// Most header lines (a folded line counts once) in one message.
    pub max_headers: usize,
    /// Longest single header line, folding included, in bytes.
    pub max_line: usize,
    /// Longest Request-URI in bytes (URIs in headers are bounded by `max_line`).
    pub max_uri: usize,
    /// Largest body in bytes.
    pub max_body: usize,
    /// Most Via values (across all Via header lines) in one message.
    pub max_vias: usize,
    /// Most bytes buffered for one stream connection while a message is incomplete.
    pub max_stream_buffer: usize,
}

impl Limits {
    /// Defaults a carrier edge would run with; see the type documentation.
    pub const DEFAULT: Limits = Limits {
        max_message: 16 * 1024,
        max_head: 12 * 1024,
        max_headers: 128,
        max_line: 4096,
        max_uri: 2048,
        max_body: 12 * 1024,
        max_vias: 64,
        max_stream_buffer: 64 * 1024,
    };

    /// Checks the limits are consistent with each other; returns the offending rule.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.max_message < 512 {
            return Err("max_message must be at least 512 bytes");
        }
        if self.max_head > self.max_message {
            return Err("max_head must not exceed max_message");
        }
        if self.max_body > self.max_message {
            return Err("max_body must not exceed max_message");
        }
        if self.max_line > self.max_head || self.max_line < 128 {
            return Err("max_line must be between 128 bytes and max_head");
        }
        if self.max_uri > self.max_line {
            return Err("max_uri must not exceed max_line");
        }
        if self.max_headers == 0 || self.max_vias == 0 {
            return Err("max_headers and max_vias must be positive");
        }
        if self.max_stream_buffer < self.max_message {
            return Err("max_stream_buffer must be at least max_message");
        }
        // Spans are stored as u32 offsets.
        if self.max_stream_buffer > u32::MAX as usize {
            return Err("max_stream_buffer must fit in 32 bits");
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        assert_eq!(Limits::default().check(), Ok(()));
    }

    #[test]
    fn inconsistent_limits_are_named() {
        let l = Limits {
            max_body: 1 << 20,
            ..Limits::DEFAULT
        };
        assert_eq!(l.check(), Err("max_body must not exceed max_message"));
        let l = Limits {
            max_stream_buffer: 1024,
            ..Limits::DEFAULT
        };
        assert!(l.check().unwrap_err().contains("max_stream_buffer"));
    }
}
