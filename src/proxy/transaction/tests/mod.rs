//! Transaction-layer tests in simulated time: no sockets, no clock. The harness feeds
//! messages built from byte strings, advances time from deadline to deadline exactly as a
//! runtime loop would (`poll_timeout` then `handle_timeout`), and records every action and
//! event with the time it came out.

mod cancel;
mod client;
mod server;

use std::net::SocketAddr;

use bytes::Bytes;

use super::{
    Action, ClientId, Event, Expiry, LayerConfig, Millis, RequestOutcome, ServerId, Target,
    TransactionLayer, Transport, TxEvent, TxId,
};
use crate::sip::response::build_response;
use crate::sip::Message;

/// Microsoft's side: where requests come from.
pub(super) fn ms(transport: Transport) -> Target {
    target(transport, "52.114.14.70:5061")
}

/// The carrier SBC: where we forward to.
pub(super) fn sbc(transport: Transport) -> Target {
    target(transport, "198.51.100.7:5060")
}

fn target(transport: Transport, addr: &str) -> Target {
    Target {
        transport,
        addr: addr.parse::<SocketAddr>().unwrap(),
    }
}

pub(super) fn parse(bytes: &[u8]) -> Message {
    Message::parse_slice(bytes).unwrap()
}

/// Microsoft's Via with branch `z9hG4bKms-{n}`.
pub(super) fn ms_via(n: u32) -> String {
    format!("SIP/2.0/TLS 52.114.14.70:5061;branch=z9hG4bKms-{n}")
}

/// Our Via with branch `z9hG4bKedge-{n}`.
pub(super) fn edge_via(n: u32) -> String {
    format!("SIP/2.0/UDP edge.carrier.net;branch=z9hG4bKedge-{n}")
}

/// A request with the given Vias (top first), CSeq number and optional To-tag.
pub(super) fn request(method: &str, vias: &[String], cseq: u32, to_tag: Option<&str>) -> Message {
    let mut s = format!("{method} sip:+15551234567@sbc.carrier.net;user=phone SIP/2.0\r\n");
    for v in vias {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    s.push_str(&format!(
        "Max-Forwards: 69\r\nFrom: <sip:+15557654321@contoso.com>;tag=ms1\r\n\
         To: <sip:+15551234567@carrier.net>{tag}\r\nCall-ID: call-1@pstnhub\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ));
    parse(s.as_bytes())
}

/// An INVITE as received from Microsoft.
pub(super) fn incoming(method: &str, n: u32) -> Message {
    request(method, &[ms_via(n)], 1, None)
}

/// The same request as we forward it: our Via on top.
pub(super) fn outgoing(method: &str, n: u32) -> Message {
    request(method, &[edge_via(n), ms_via(n)], 1, None)
}

/// A response to `req` as its next hop would write it (every Via copied).
pub(super) fn response(req: &Message, status: u16, to_tag: &str) -> Message {
    let bytes = build_response(
        req.headers(),
        status,
        "",
        Some(to_tag.as_bytes()),
        &[],
        None,
    );
    parse(&bytes)
}

/// A recorded send.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub at: u64,
    pub to: Target,
    pub msg: Message,
}

/// The layer plus a log of everything it output.
pub(super) struct Harness {
    pub layer: TransactionLayer,
    pub now: u64,
    pub sent: Vec<Sent>,
    pub timeouts: Vec<(u64, ClientId, Option<ServerId>, Expiry)>,
    pub terminated: Vec<(u64, TxId)>,
    pub events: Vec<Event>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(LayerConfig::default())
    }

    pub fn with(config: LayerConfig) -> Harness {
        Harness {
            layer: TransactionLayer::new(config),
            now: 0,
            sent: Vec::new(),
            timeouts: Vec::new(),
            terminated: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn t(&self) -> Millis {
        Millis(self.now)
    }

    /// Moves the log out of the layer's queues.
    pub fn drain(&mut self) {
        while let Some(a) = self.layer.poll_action() {
            match a {
                Action::Send { to, bytes } => self.sent.push(Sent {
                    at: self.now,
                    to,
                    msg: Message::parse(bytes, &Default::default()).unwrap(),
                }),
                Action::ClientTimedOut {
                    client,
                    server,
                    expiry,
                } => self.timeouts.push((self.now, client, server, expiry)),
                Action::Terminated(id) => self.terminated.push((self.now, id)),
            }
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push(e);
        }
    }

    /// Advances simulated time to `ms`, firing every deadline on the way at its own time.
    pub fn advance_to(&mut self, ms: u64) {
        while let Some(Millis(at)) = self.layer.poll_timeout() {
            if at > ms {
                break;
            }
            self.now = self.now.max(at);
            self.layer.handle_timeout(Millis(self.now));
            self.drain();
        }
        self.now = ms;
    }

    /// Fires deadlines until none is left; returns the time of the last one.
    pub fn run_out(&mut self) -> u64 {
        for _ in 0..100_000 {
            let Some(Millis(at)) = self.layer.poll_timeout() else {
                return self.now;
            };
            self.advance_to(at);
        }
        panic!("deadlines never ran out");
    }

    pub fn on_request(&mut self, msg: &Message, from: Target) -> RequestOutcome {
        let o = self.layer.on_request(self.t(), msg, from);
        self.drain();
        o
    }

    pub fn on_response(&mut self, msg: &Message) -> super::ResponseOutcome {
        let o = self.layer.on_response(self.t(), msg);
        self.drain();
        o
    }

    pub fn respond(&mut self, id: ServerId, req: &Message, status: u16) {
        let bytes = response(req, status, "edge1").buf().clone();
        self.layer
            .send_response(self.t(), id, bytes, status)
            .unwrap();
        self.drain();
    }

    pub fn forward(&mut self, server: Option<ServerId>, req: Message, to: Target) -> ClientId {
        let id = self.layer.send_request(self.t(), server, req, to).unwrap();
        self.drain();
        id
    }

    /// Sends since (and including) time `from`, as (time, status or method) labels.
    pub fn sends_since(&self, from: u64) -> Vec<(u64, String)> {
        self.sent
            .iter()
            .filter(|s| s.at >= from)
            .map(|s| (s.at, label(&s.msg)))
            .collect()
    }

    /// The events of one transaction, without times.
    pub fn events_of(&self, tx: TxId) -> Vec<TxEvent> {
        self.events
            .iter()
            .filter(|e| e.tx == tx)
            .map(|e| e.kind)
            .collect()
    }

    /// Everything is gone: no transaction, no deadline.
    pub fn assert_empty(&self) {
        assert!(
            self.layer.is_empty(),
            "{} transactions left",
            self.layer.len()
        );
        assert_eq!(self.layer.poll_timeout(), None);
        assert_eq!(self.layer.fx.deadlines.len(), 0);
        assert!(self.layer.server_index.is_empty() && self.layer.client_index.is_empty());
    }
}

/// `"INVITE"`, `"ACK"`, `"180"`, … for a sent message.
pub(super) fn label(m: &Message) -> String {
    match m.status() {
        Some(s) => s.to_string(),
        None => String::from_utf8_lossy(m.method_str().unwrap_or_default()).into_owned(),
    }
}

pub(super) fn bytes_of(m: &Message) -> Bytes {
    m.buf().clone()
}
