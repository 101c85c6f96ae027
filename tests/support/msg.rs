//! Building SIP requests and responses as text, and reading received ones.
//!
//! The builders write plain RFC 3261 text by hand (no code from the crate), so the gateway is
//! checked against an independent implementation. Received messages are parsed with the
//! crate's parser (`ocedge::sip::Message::parse`), and [`MsgExt`] reads them as strings.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ocedge::sip::Message;

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh number, unique within the test process.
pub fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A fresh RFC 3261 branch (magic cookie, never the gateway's `z9hG4bKoc` prefix).
pub fn branch() -> String {
    format!("z9hG4bK-t{}", unique())
}

/// A fresh tag.
pub fn tag() -> String {
    format!("tag{}", unique())
}

/// `host:port` for a socket address, with brackets for IPv6.
pub fn hostport(a: SocketAddr) -> String {
    a.to_string()
}

/// A small SDP offer/answer body.
pub fn sdp(addr: SocketAddr) -> String {
    let (ip, kind) = match addr {
        SocketAddr::V4(a) => (a.ip().to_string(), "IP4"),
        SocketAddr::V6(a) => (a.ip().to_string(), "IP6"),
    };
    format!(
        "v=0\r\no=- 1 1 IN {kind} {ip}\r\ns=-\r\nc=IN {kind} {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    )
}

/// A request, as text fields. `to_bytes` writes it with a correct Content-Length.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method token.
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// Via values, top first.
    pub vias: Vec<String>,
    /// Max-Forwards, omitted when `None`.
    pub max_forwards: Option<u32>,
    /// From value (with tag).
    pub from: String,
    /// To value (with tag in a dialog).
    pub to: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method (normally `method`).
    pub cseq_method: String,
    /// Contact value.
    pub contact: Option<String>,
    /// Route values, in order.
    pub routes: Vec<String>,
    /// Other headers, written as given.
    pub extra: Vec<(String, String)>,
    /// Content type and body.
    pub body: Option<(String, String)>,
}

impl Request {
    /// Serialises the request.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = write!(s, "{} {} SIP/2.0\r\n", self.method, self.uri);
        for v in &self.vias {
            let _ = write!(s, "Via: {v}\r\n");
        }
        if let Some(mf) = self.max_forwards {
            let _ = write!(s, "Max-Forwards: {mf}\r\n");
        }
        for r in &self.routes {
            let _ = write!(s, "Route: {r}\r\n");
        }
        let _ = write!(s, "From: {}\r\nTo: {}\r\n", self.from, self.to);
        let _ = write!(
            s,
            "Call-ID: {}\r\nCSeq: {} {}\r\n",
            self.call_id, self.cseq, self.cseq_method
        );
        if let Some(c) = &self.contact {
            let _ = write!(s, "Contact: {c}\r\n");
        }
        for (k, v) in &self.extra {
            let _ = write!(s, "{k}: {v}\r\n");
        }
        match &self.body {
            Some((ctype, body)) => {
                let _ = write!(
                    s,
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        s.into_bytes()
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: &str) -> Request {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The top Via's branch.
    pub fn branch(&self) -> String {
        self.vias
            .first()
            .map(|v| param(v, "branch").unwrap_or_default())
            .unwrap_or_default()
    }
}

/// One side of a call as a user agent sees it: enough to build the requests of a dialog.
#[derive(Debug, Clone)]
pub struct Leg {
    /// Via transport token: `UDP`, `TCP` or `TLS`.
    pub transport: String,
    /// Our address, for Via and Contact.
    pub local: SocketAddr,
    /// Call-ID.
    pub call_id: String,
    /// Our URI and tag (From of our requests).
    pub local_uri: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's URI (To of our requests).
    pub remote_uri: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Our last CSeq number.
    pub cseq: u32,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Option<String>,
    /// Route set for in-dialog requests.
    pub route_set: Vec<String>,
    /// The INVITE we sent (for CANCEL and the ACK of a non-2xx).
    pub invite: Option<Request>,
}

impl Leg {
    /// A new caller leg from `local` over `transport` to `remote_uri`.
    pub fn caller(transport: &str, local: SocketAddr, user: &str, remote_uri: &str) -> Leg {
        Leg {
            transport: transport.into(),
            local,
            call_id: format!("call{}@test", unique()),
            local_uri: format!("sip:{user}@{}", hostport(local)),
            local_tag: tag(),
            remote_uri: remote_uri.into(),
            remote_tag: None,
            cseq: 0,
            remote_target: None,
            route_set: Vec::new(),
            invite: None,
        }
    }

    /// The callee's leg for a received dialog-creating request: route set = Record-Route as
    /// received (RFC 3261 §12.1.1), remote target = the caller's Contact.
    pub fn callee(transport: &str, local: SocketAddr, req: &Message, to_tag: &str) -> Leg {
        Leg {
            transport: transport.into(),
            local,
            call_id: req.h("Call-ID").unwrap_or_default(),
            local_uri: uri_of(&req.h("To").unwrap_or_default()),
            local_tag: to_tag.into(),
            remote_uri: uri_of(&req.h("From").unwrap_or_default()),
            remote_tag: req.h("From").and_then(|f| param(&f, "tag")),
            cseq: 100,
            remote_target: req.h("Contact").map(|c| uri_of(&c)),
            route_set: req.hs("Record-Route"),
            invite: None,
        }
    }

    /// Our Contact value.
    pub fn contact(&self) -> String {
        format!(
            "<sip:ua@{};transport={}>",
            hostport(self.local),
            self.transport.to_lowercase()
        )
    }

    fn via(&self, branch: &str) -> String {
        let rport = if self.transport == "UDP" {
            ";rport"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {};branch={branch}{rport}",
            self.transport,
            hostport(self.local)
        )
    }

    fn header_from(&self) -> String {
        format!("<{}>;tag={}", self.local_uri, self.local_tag)
    }

    fn header_to(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.remote_uri),
            None => format!("<{}>", self.remote_uri),
        }
    }

    /// A new INVITE to `uri` with an SDP offer; remembered for CANCEL/ACK.
    pub fn invite(&mut self, uri: &str) -> Request {
        self.cseq += 1;
        let r = Request {
            method: "INVITE".into(),
            uri: uri.into(),
            vias: vec![self.via(&branch())],
            max_forwards: Some(70),
            from: self.header_from(),
            to: self.header_to(),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            cseq_method: "INVITE".into(),
            contact: Some(self.contact()),
            routes: Vec::new(),
            extra: Vec::new(),
            body: Some(("application/sdp".into(), sdp(self.local))),
        };
        self.invite = Some(r.clone());
        r
    }

    /// CANCEL for our INVITE: same Request-URI, top Via, Call-ID, From, To, CSeq number and
    /// Route (RFC 3261 §9.1).
    pub fn cancel(&self) -> Request {
        let inv = self.invite.clone().expect("cancel before invite");
        Request {
            method: "CANCEL".into(),
            vias: inv.vias.iter().take(1).cloned().collect(),
            cseq_method: "CANCEL".into(),
            contact: None,
            body: None,
            extra: Vec::new(),
            ..inv
        }
    }

    /// ACK for a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3): same branch,
    /// To from the response.
    pub fn ack_non_2xx(&self, resp: &Message) -> Request {
        let inv = self.invite.clone().expect("ack before invite");
        Request {
            method: "ACK".into(),
            vias: inv.vias.iter().take(1).cloned().collect(),
            to: resp.h("To").unwrap_or_default(),
            cseq_method: "ACK".into(),
            contact: None,
            body: None,
            extra: Vec::new(),
            ..inv
        }
    }

    /// Learns the dialog from a 2xx (or 1xx with To tag) to our INVITE: peer tag, remote
    /// target = Contact, route set = Record-Route reversed (RFC 3261 §12.1.2).
    pub fn established(&mut self, resp: &Message) {
        self.remote_tag = resp.h("To").and_then(|t| param(&t, "tag"));
        self.remote_target = resp.h("Contact").map(|c| uri_of(&c));
        let mut rr = resp.hs("Record-Route");
        rr.reverse();
        self.route_set = rr;
    }

    /// An in-dialog request (BYE, INFO, …): new branch, next CSeq, Route = route set,
    /// Request-URI = remote target (loose routing, RFC 3261 §12.2.1.1).
    pub fn in_dialog(&mut self, method: &str) -> Request {
        self.cseq += 1;
        let cseq = self.cseq;
        self.dialog_request(method, cseq)
    }

    /// The ACK for a 2xx: in-dialog, new branch, CSeq number of the INVITE.
    pub fn ack_2xx(&self) -> Request {
        let cseq = self.invite.as_ref().map_or(self.cseq, |i| i.cseq);
        self.dialog_request("ACK", cseq)
    }

    fn dialog_request(&self, method: &str, cseq: u32) -> Request {
        Request {
            method: method.into(),
            uri: self.remote_target.clone().expect("no remote target"),
            vias: vec![self.via(&branch())],
            max_forwards: Some(70),
            from: self.header_from(),
            to: self.header_to(),
            call_id: self.call_id.clone(),
            cseq,
            cseq_method: method.into(),
            contact: (method != "ACK" && method != "BYE").then(|| self.contact()),
            routes: self.route_set.clone(),
            extra: Vec::new(),
            body: None,
        }
    }
}

/// An out-of-dialog OPTIONS from `local` over `transport` to `uri`.
pub fn options(transport: &str, local: SocketAddr, uri: &str) -> Request {
    let mut leg = Leg::caller(transport, local, "probe", uri);
    leg.remote_target = Some(uri.into());
    leg.dialog_request("OPTIONS", 1)
}

/// A response to `req` (RFC 3261 §8.2.6): Via, From, Call-ID, CSeq copied, To copied with
/// `to_tag` added when it has none, Record-Route copied for 1xx/2xx (§12.1.1).
pub fn response(
    req: &Message,
    status: u16,
    to_tag: Option<&str>,
    contact: Option<&str>,
    body: Option<&str>,
) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {status} {}\r\n", reason(status));
    for v in req.header_by_name("Via") {
        let _ = write!(s, "Via: {}\r\n", String::from_utf8_lossy(v));
    }
    if status < 300 {
        for rr in req.header_by_name("Record-Route") {
            let _ = write!(s, "Record-Route: {}\r\n", String::from_utf8_lossy(rr));
        }
    }
    let from = req.h("From").unwrap_or_default();
    let mut to = req.h("To").unwrap_or_default();
    if let (Some(t), None) = (to_tag, param(&to, "tag")) {
        to = format!("{to};tag={t}");
    }
    let _ = write!(s, "From: {from}\r\nTo: {to}\r\n");
    let _ = write!(
        s,
        "Call-ID: {}\r\nCSeq: {}\r\n",
        req.h("Call-ID").unwrap_or_default(),
        req.h("CSeq").unwrap_or_default()
    );
    if let Some(c) = contact {
        let _ = write!(s, "Contact: {c}\r\n");
    }
    match body {
        Some(b) => {
            let _ = write!(
                s,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        408 => "Request Timeout",
        486 => "Busy Here",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// The URI inside a name-addr (`"x" <uri>;p` → `uri`), or the addr-spec before parameters.
pub fn uri_of(v: &str) -> String {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
        _ => v.split(';').next().unwrap_or(v).trim().to_string(),
    }
}

/// A parameter of a header value outside `<>` (`tag`, `branch`, `received`, …);
/// `Some("")` for a flag.
pub fn param(v: &str, name: &str) -> Option<String> {
    let after = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().to_string())
    })
}

/// Splits a header value on commas outside quotes and `<>`.
pub fn split_list(v: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut quoted, mut angle) = (false, false);
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Reading a received message as strings.
pub trait MsgExt {
    /// First value of a header (any case, compact forms too).
    fn h(&self, name: &str) -> Option<String>;
    /// Every value of a header, comma lists split, top first.
    fn hs(&self, name: &str) -> Vec<String>;
    /// Status code of a response; 0 for a request.
    fn code(&self) -> u16;
    /// Method of a request; empty for a response.
    fn method_name(&self) -> String;
    /// Request-URI; empty for a response.
    fn ruri(&self) -> String;
    /// The top Via's branch.
    fn top_branch(&self) -> String;
    /// The CSeq method.
    fn cseq_method(&self) -> String;
    /// The To tag.
    fn to_tag(&self) -> Option<String>;
    /// The body as text.
    fn body_str(&self) -> String;
    /// The whole message as text, for assertion messages.
    fn dump(&self) -> String;
}

impl MsgExt for Message {
    fn h(&self, name: &str) -> Option<String> {
        self.header_by_name(name)
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn hs(&self, name: &str) -> Vec<String> {
        self.header_by_name(name)
            .flat_map(|v| split_list(&String::from_utf8_lossy(v)))
            .collect()
    }

    fn code(&self) -> u16 {
        self.status().unwrap_or(0)
    }

    fn method_name(&self) -> String {
        self.method_str()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default()
    }

    fn ruri(&self) -> String {
        self.request_uri_bytes()
            .map(|u| String::from_utf8_lossy(u).into_owned())
            .unwrap_or_default()
    }

    fn top_branch(&self) -> String {
        self.hs("Via")
            .first()
            .and_then(|v| param(v, "branch"))
            .unwrap_or_default()
    }

    fn cseq_method(&self) -> String {
        self.h("CSeq")
            .and_then(|c| c.split_whitespace().nth(1).map(str::to_string))
            .unwrap_or_default()
    }

    fn to_tag(&self) -> Option<String> {
        self.h("To").and_then(|t| param(&t, "tag"))
    }

    fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    fn dump(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}
