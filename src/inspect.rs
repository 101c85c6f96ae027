//! `ocedge inspect`: the security team's view of a message.
//!
//! For each message read, one JSON object (one line) says what the parser and the proxy's
//! first look decided. Keys are always present (null when not applicable) so the output can
//! be loaded as a table. On `tcp`, a file is a byte stream that may hold several messages; a
//! fatal framing error ends the stream with one `"action":"close"` line and nothing after it
//! is read, exactly as the daemon would close the connection.

use bytes::Bytes;
use serde::Serialize;

use crate::sip::framing::{Frame, StreamFramer};
use crate::sip::validate::{decide, decide_failure, Decision};
use crate::sip::{Limits, Message};

/// How the bytes of a file are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One file is one datagram, one message.
    Udp,
    /// One file is a byte stream, framed by Content-Length.
    Tcp,
}

/// One line of `inspect` output.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// File name as given (`-` for stdin).
    pub file: String,
    /// `ok` or `error`.
    pub parse: &'static str,
    /// Short reason when `parse` is `error`.
    pub error: Option<String>,
    /// `request` or `response`.
    pub kind: Option<&'static str>,
    /// Request method.
    pub method: Option<String>,
    /// Response status.
    pub status: Option<u16>,
    /// `forward`, `reply`, `drop`, or `close` (tcp framing failure).
    pub action: &'static str,
    /// Status of the reply, when `action` is `reply`.
    pub reply_status: Option<u16>,
    /// Why a reply or drop was decided.
    pub reason: Option<String>,
    /// Call-ID.
    pub call_id: Option<String>,
    /// CSeq number.
    pub cseq: Option<u32>,
    /// From tag.
    pub from_tag: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
    /// Branch of the top Via.
    pub via_branch: Option<String>,
    /// Max-Forwards.
    pub max_forwards: Option<u8>,
    /// Content-Length header value.
    pub content_length: Option<u32>,
    /// Body length in bytes.
    pub body_len: Option<usize>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Inspects one message held in `buf`.
pub fn inspect_message(file: &str, buf: Bytes, limits: &Limits) -> Report {
    let mut r = Report {
        file: file.to_owned(),
        ..Report::default()
    };
    let decision = match Message::parse(buf, limits) {
        Err(f) => {
            r.parse = "error";
            r.error = Some(f.error.to_string());
            r.kind = Some(if f.is_request { "request" } else { "response" });
            decide_failure(&f)
        }
        Ok(m) => {
            r.kind = Some(if m.is_request() {
                "request"
            } else {
                "response"
            });
            r.method = m.method_str().map(text);
            r.status = m.status();
            r.content_length = m.content_length();
            r.body_len = Some(m.body().len());
            match m.core() {
                Ok(c) => {
                    r.parse = "ok";
                    r.call_id = Some(text(c.call_id));
                    r.cseq = Some(c.cseq.seq);
                    r.from_tag = c.from.tag().map(text);
                    r.to_tag = c.to.tag().map(text);
                    r.via_branch = c.via.branch().map(text);
                    r.max_forwards = c.max_forwards;
                }
                Err(e) => {
                    r.parse = "error";
                    r.error = Some(e.to_string());
                    r.call_id = m.call_id().ok().map(text);
                }
            }
            decide(&m)
        }
    };
    r.action = decision.action();
    match decision {
        Decision::Reply { status, reason, .. } => {
            r.reply_status = Some(status);
            r.reason = Some(reason);
        }
        Decision::Drop { reason } => r.reason = Some(reason.to_owned()),
        Decision::Forward => {}
    }
    r
}

/// Inspects a file's bytes under `transport`: one report per message.
pub fn inspect_bytes(
    file: &str,
    data: &[u8],
    transport: Transport,
    limits: &Limits,
) -> Vec<Report> {
    match transport {
        Transport::Udp => vec![inspect_message(file, Bytes::copy_from_slice(data), limits)],
        Transport::Tcp => inspect_stream(file, data, limits),
    }
}

fn inspect_stream(file: &str, data: &[u8], limits: &Limits) -> Vec<Report> {
    let mut out = Vec::new();
    let mut framer = StreamFramer::new(*limits);
    let close = |e: String| Report {
        file: file.to_owned(),
        parse: "error",
        error: Some(e.clone()),
        action: "close",
        reason: Some(e),
        ..Report::default()
    };
    // Feed in bounded chunks, as a socket would, so the buffer limit applies.
    for chunk in data.chunks(4096) {
        if let Err(e) = framer.push(chunk) {
            out.push(close(e.to_string()));
            return out;
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => out.push(inspect_message(file, m, limits)),
                Ok(Some(_keepalive)) => {}
                Ok(None) => break,
                Err(e) => {
                    out.push(close(e.to_string()));
                    return out;
                }
            }
        }
    }
    if framer.buffered() > 0 {
        out.push(close("stream ends inside a message".to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPT: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=f\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 5 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn udp_report_fields() {
        let r = inspect_bytes("x", OPT.as_bytes(), Transport::Udp, &Limits::DEFAULT);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!((r.parse, r.action), ("ok", "forward"));
        assert_eq!(r.method.as_deref(), Some("OPTIONS"));
        assert_eq!(r.cseq, Some(5));
        assert_eq!(r.from_tag.as_deref(), Some("f"));
        assert_eq!(r.via_branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(r.body_len, Some(0));
    }

    #[test]
    fn tcp_stream_stops_at_fatal_framing_error() {
        let smuggle = OPT.replace("Content-Length: 0", "Content-Length: 99999999999999999999");
        let stream = format!("{OPT}{smuggle}{OPT}");
        let r = inspect_bytes("s", stream.as_bytes(), Transport::Tcp, &Limits::DEFAULT);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].action, "forward");
        assert_eq!(r[1].action, "close");
    }
}
