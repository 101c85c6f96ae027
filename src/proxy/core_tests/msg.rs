//! SIP messages for the proxy-core tests: requests and responses written as text the way
//! the peers would write them, and accessors reading what the proxy sent.

use crate::sip::headers::Via;
use crate::sip::{HeaderName, Message};
use crate::transport::Target;

/// A request as a peer writes it; [`Req::msg`] parses it.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub method: String,
    pub ruri: String,
    /// Top first.
    pub vias: Vec<String>,
    pub max_forwards: u8,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub routes: Vec<String>,
    /// Extra header lines, written verbatim after CSeq.
    pub extra: Vec<String>,
}

impl Req {
    /// An out-of-dialog request from the peer at `from`, Via branch `z9hG4bK{branch}`.
    pub fn new(method: &str, ruri: &str, from: Target, branch: &str) -> Req {
        Req {
            method: method.into(),
            ruri: ruri.into(),
            vias: vec![via(from, branch)],
            max_forwards: 70,
            from: format!("<sip:+12065550100@{}>;tag=from-{branch}", from.addr.ip()),
            to: format!("<{ruri}>"),
            call_id: format!("call-{branch}@{}", from.addr.ip()),
            cseq: 1,
            routes: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Adds a header line (`"Name: value"`, written as given).
    pub fn line(mut self, line: &str) -> Req {
        self.extra.push(line.into());
        self
    }

    pub fn text(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.ruri);
        for v in &self.vias {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        for r in &self.routes {
            s.push_str(&format!("Route: {r}\r\n"));
        }
        s.push_str(&format!(
            "Max-Forwards: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.max_forwards, self.from, self.to, self.call_id, self.cseq, self.method
        ));
        for l in &self.extra {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    pub fn msg(&self) -> Message {
        parse(self.text().as_bytes())
    }
}

/// One call as its caller sees it: the INVITE, and the CANCEL and in-dialog requests that
/// follow it once the callee's To-tag, Contact and the Record-Route set are known.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub caller: Target,
    pub invite: Req,
}

impl Call {
    /// An INVITE from `caller` to `ruri`, branch `z9hG4bK{id}`, with a Contact.
    pub fn new(id: &str, caller: Target, ruri: &str) -> Call {
        let contact = format!("Contact: <sip:+12065550100@{}>", caller.addr);
        Call {
            caller,
            invite: Req::new("INVITE", ruri, caller, id).line(&contact),
        }
    }

    pub fn msg(&self) -> Message {
        self.invite.msg()
    }

    /// The CANCEL of the INVITE (same branch, §9.1).
    pub fn cancel(&self) -> Message {
        let mut r = self.invite.clone();
        r.method = "CANCEL".into();
        r.extra.clear();
        r.msg()
    }

    /// An in-dialog request of the caller: to the callee's Contact (`remote`), with the
    /// route set the caller learned from `answer` (its Record-Route reversed, §12.1.2) and
    /// the callee's To-tag. ACK keeps the INVITE's CSeq number.
    pub fn in_dialog(&self, method: &str, cseq: u32, branch: &str, answer: &Message) -> Req {
        let mut routes = vals(answer, "Record-Route");
        routes.reverse();
        let remote = contact_uri(answer);
        Req {
            method: method.into(),
            ruri: remote,
            vias: vec![via(self.caller, branch)],
            to: val(answer, "To").expect("To"),
            cseq,
            routes,
            extra: Vec::new(),
            ..self.invite.clone()
        }
    }
}

/// A request of the callee in the dialog `invite` (as the callee received it) created with
/// `answer`: From and To swapped, route set in Record-Route order (§12.1.1), to the caller's
/// Contact.
pub(super) fn callee_request(
    method: &str,
    callee: Target,
    branch: &str,
    invite: &Message,
    answer: &Message,
) -> Req {
    Req {
        method: method.into(),
        ruri: contact_uri(invite),
        vias: vec![via(callee, branch)],
        max_forwards: 70,
        from: val(answer, "To").expect("To"),
        to: val(invite, "From").expect("From"),
        call_id: val(invite, "Call-ID").expect("Call-ID"),
        cseq: 1,
        routes: vals(invite, "Record-Route"),
        extra: Vec::new(),
    }
}

/// The response a peer writes to `req`: every Via and Record-Route copied in order, the
/// To-tag added when the To has none, and a Contact (the peer's address) on 18x and 2xx.
pub(super) fn reply(req: &Message, status: u16, to_tag: &str, peer: Target) -> Message {
    let mut s = format!("SIP/2.0 {status} Whatever\r\n");
    for v in vals(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for rr in vals(req, "Record-Route") {
        s.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    let to = val(req, "To").expect("To");
    let tagged = to.contains(";tag=") || status == 100;
    let to = if tagged {
        to
    } else {
        format!("{to};tag={to_tag}")
    };
    s.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        val(req, "From").expect("From"),
        val(req, "Call-ID").expect("Call-ID"),
        val(req, "CSeq").expect("CSeq"),
    ));
    if (180..300).contains(&status) {
        s.push_str(&format!(
            "Contact: <sip:callee@{};transport={}>\r\n",
            peer.addr,
            peer.transport.as_str()
        ));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    parse(s.as_bytes())
}

/// Our Record-Route entry for the UDP listener `addr`.
pub(super) fn rr(addr: &str) -> String {
    format!("<sip:{addr};transport=udp;lr>")
}

/// Our Microsoft-side entry: [`rr`] of that listener with the dialog's Microsoft proxy as
/// flow token.
pub(super) fn rr_ms(flow: Target) -> String {
    format!(
        "<sip:{};transport=udp;lr;oc-flow={}>",
        super::net::GW_MS,
        crate::proxy::flow::encode(flow)
    )
}

/// `SIP/2.0/{T} addr;branch=z9hG4bK{branch}`.
pub(super) fn via(from: Target, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {};branch=z9hG4bK{branch}",
        from.transport.via_token(),
        from.addr
    )
}

pub(super) fn parse(bytes: &[u8]) -> Message {
    match Message::parse_slice(bytes) {
        Ok(m) => m,
        Err(e) => panic!("{e:?}:\n{}", String::from_utf8_lossy(bytes)),
    }
}

/// Every value of a header, by name, as text.
pub(super) fn vals(m: &Message, name: &str) -> Vec<String> {
    m.header_by_name(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The first value of a header.
pub(super) fn val(m: &Message, name: &str) -> Option<String> {
    vals(m, name).into_iter().next()
}

/// The branch of the top Via.
pub(super) fn top_branch(m: &Message) -> String {
    let v = m.header(HeaderName::Via).expect("Via");
    let v = Via::parse(v).expect("top Via parses");
    String::from_utf8_lossy(v.branch().expect("branch")).into_owned()
}

/// The To-tag.
pub(super) fn to_tag(m: &Message) -> Option<String> {
    let to = m.to_hdr().ok()?;
    to.tag().map(|t| String::from_utf8_lossy(t).into_owned())
}

/// The method, or the status code, as text.
pub(super) fn label(m: &Message) -> String {
    match m.status() {
        Some(s) => s.to_string(),
        None => String::from_utf8_lossy(m.method_str().unwrap_or(b"?")).into_owned(),
    }
}

fn contact_uri(m: &Message) -> String {
    let c = val(m, "Contact").expect("Contact");
    c.trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_string()
}
