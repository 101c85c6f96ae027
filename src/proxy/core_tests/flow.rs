//! In-dialog requests toward Microsoft's host names (its Record-Route and Contacts, which
//! the gateway does not resolve) go to the Microsoft proxy named by the flow token of our
//! own Record-Route entry ([`crate::proxy::flow`]); the token is checked like any next hop.

use super::msg::{callee_request, parse, reply, rr, rr_ms, val, vals, Call, Req};
use super::net::{Net, GW_CARRIER, GW_MS, L_MS_TCP, MS, MS_NAME, SBC1};
use crate::sip::Message;
use crate::transport::{Target, Transport};

/// Microsoft's own Record-Route entry and Contact, as its proxies write them.
const MS_HOST: &str = "sip-du-a-us.pstnhub.microsoft.com";
const MS_RR: &str = "<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=udp;lr>";
const MS_CONTACT: &str = "sip:api-du-b-uswe.pstnhub.microsoft.com:443;x-i=7c1d";

fn udp(addr: &str) -> Target {
    Target {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
    }
}

/// An INVITE from the Microsoft proxy `proxy` with Microsoft's Contact and Record-Route,
/// and its Via's sent-by when not `proxy`'s address.
fn ms_invite(
    proxy: Target,
    branch: &str,
    contact: &str,
    rr: &str,
    sent_by: Option<&str>,
) -> Message {
    let mut req = Req::new(
        "INVITE",
        &format!("sip:+12065550100@{GW_MS};user=phone"),
        proxy,
        branch,
    )
    .line(&format!("Contact: <{contact}>"))
    .line(&format!("Record-Route: {rr}"));
    if let Some(s) = sent_by {
        let t = proxy.transport.via_token();
        req.vias = vec![format!("SIP/2.0/{t} {s};branch=z9hG4bK{branch}")];
    }
    req.msg()
}

/// Microsoft's 200 to `inv`: its Record-Route on top of the ones received, its Contact a
/// host name.
fn ms_answer(inv: &Message) -> Message {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for v in vals(inv, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!("Record-Route: {MS_RR}\r\n"));
    for r in vals(inv, "Record-Route") {
        s.push_str(&format!("Record-Route: {r}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        s.push_str(&format!("{h}: {}\r\n", val(inv, h).unwrap()));
    }
    s.push_str(&format!("To: {};tag=ms\r\n", val(inv, "To").unwrap()));
    s.push_str(&format!(
        "Contact: <{MS_CONTACT}>\r\nContent-Length: 0\r\n\r\n"
    ));
    parse(s.as_bytes())
}

#[test]
fn the_callee_hangs_up_toward_the_microsoft_proxy_that_sent_the_invite() {
    let mut net = Net::new();
    // A Microsoft proxy that is no configured target, inside the Microsoft ACL.
    let proxy = udp("52.112.7.9:5060");
    net.from(proxy, ms_invite(proxy, "mf", MS_CONTACT, MS_RR, None));
    let out = net.take();
    assert_eq!(out.all(), [(proxy, "100".into()), (SBC1, "INVITE".into())]);
    let inv = out.0[1].msg.clone();
    assert_eq!(
        vals(&inv, "Record-Route"),
        [rr(GW_CARRIER), rr_ms(proxy), MS_RR.to_string()],
        "our Microsoft-side entry names the proxy the INVITE came from"
    );
    let ok = reply(&inv, 200, "sbc", SBC1);
    net.from(SBC1, ok.clone());
    assert_eq!(net.take().all(), [(proxy, "200".into())]);

    // The SBC's BYE: Route = our two entries and Microsoft's, R-URI = Microsoft's Contact.
    let bye = callee_request("BYE", SBC1, "sbc-bye", &inv, &ok).msg();
    assert_eq!(bye.request_uri_bytes(), Some(MS_CONTACT.as_bytes()));
    net.from(SBC1, bye);
    let out = net.take();
    assert_eq!(out.all(), [(proxy, "BYE".into())]);
    let fwd = &out.0[0];
    assert_eq!(vals(&fwd.msg, "Route"), [MS_RR], "only our entries popped");
    assert_eq!(fwd.msg.request_uri_bytes(), Some(MS_CONTACT.as_bytes()));
    assert_eq!(
        fwd.tls_name.as_deref(),
        Some(MS_HOST),
        "a new TLS connection would verify Microsoft's name"
    );
    assert_eq!(fwd.reconnect, None, "UDP has no connection to lose");
    net.from(proxy, reply(&fwd.msg, 200, "x", proxy));
    assert_eq!(net.take().all(), [(SBC1, "200".into())]);
    assert_eq!(net.proxy.stats().no_route, 0);
}

#[test]
fn the_caller_acks_and_hangs_up_toward_the_target_it_called() {
    let mut net = Net::new();
    let call = Call::new(
        "cf",
        SBC1,
        &format!("sip:+14255550100@{GW_CARRIER};user=phone"),
    );
    net.from(SBC1, call.msg());
    let out = net.take();
    let inv = out.one(MS, "INVITE").msg.clone();
    assert_eq!(vals(&inv, "Record-Route"), [rr_ms(MS), rr(GW_CARRIER)]);
    net.from(MS, ms_answer(&inv));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    let answer = out.0[0].msg.clone();

    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        let req = call.in_dialog(method, cseq, &format!("cf-{method}"), &answer);
        assert_eq!(req.routes, [rr(GW_CARRIER), rr_ms(MS), MS_RR.to_string()]);
        net.from(SBC1, req.msg());
        let out = net.take();
        assert_eq!(out.all(), [(MS, method.to_string())]);
        assert_eq!(vals(&out.0[0].msg, "Route"), [MS_RR]);
        assert_eq!(
            out.0[0].tls_name.as_deref(),
            Some(MS_NAME),
            "a configured target keeps its own name"
        );
        assert_eq!(out.0[0].reconnect, None);
    }

    // Microsoft did not Record-Route: the Request-URI is its Contact, a name; same flow.
    let mut bye = Req::new("BYE", MS_CONTACT, SBC1, "no-rr");
    bye.to = format!("<{MS_CONTACT}>;tag=ms");
    bye.routes = vec![rr(GW_CARRIER), rr_ms(MS)];
    net.from(SBC1, bye.msg());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "BYE".into())]);
    assert!(vals(&out.0[0].msg, "Route").is_empty());
}

#[test]
fn a_flow_is_a_next_hop_like_any_other() {
    let mut net = Net::new();
    let bye = |branch: &str, ruri: &str, flow_entry: String, more: &[&str]| {
        let mut r = Req::new("BYE", ruri, SBC1, branch);
        r.to = format!("<{ruri}>;tag=far");
        r.routes = vec![rr(GW_CARRIER), flow_entry];
        r.routes.extend(more.iter().map(|s| s.to_string()));
        r.msg()
    };
    // A forged token outside the Microsoft ACL: no relay.
    net.from(
        SBC1,
        bye(
            "forged",
            MS_CONTACT,
            rr_ms(udp("198.18.0.1:5060")),
            &[MS_RR],
        ),
    );
    assert_eq!(net.take().all(), [(SBC1, "404".into())]);
    // A malformed one: the same.
    let bad = format!("<sip:{GW_MS};transport=udp;lr;oc-flow=udp-nowhere-1>");
    net.from(SBC1, bye("bad", MS_CONTACT, bad, &[MS_RR]));
    assert_eq!(net.take().all(), [(SBC1, "404".into())]);
    assert_eq!(net.proxy.stats().no_route, 2);

    // A next hop that resolves wins over the flow.
    let other = udp("52.113.1.1:5060");
    net.from(
        SBC1,
        bye("resolves", &format!("sip:u@{}", other.addr), rr_ms(MS), &[]),
    );
    assert_eq!(net.take().all(), [(other, "BYE".into())]);

    // Toward the carrier, flows are not followed: an unknown carrier host name is refused.
    let mut r = Req::new("BYE", "sip:u@pbx.carrier.example", MS, "to-carrier");
    r.to = "<sip:u@pbx.carrier.example>;tag=far".into();
    r.routes = vec![rr_ms(SBC1), rr(GW_CARRIER)];
    net.from(MS, r.msg());
    assert_eq!(net.take().all(), [(MS, "404".into())]);
}

/// A Microsoft proxy that called over a stream connection from an ephemeral port: the
/// responses and the BYE go to that flow, and should the connection be gone, to the same
/// address at the port of Microsoft's Via and Record-Route (default 5060 for TCP), where
/// that proxy listens.
#[test]
fn a_stream_flow_carries_where_to_reconnect() {
    for (ms_rr, port) in [
        (
            "<sip:sip-du-a-us.pstnhub.microsoft.com:5071;transport=tcp;lr>",
            5071,
        ),
        (
            "<sip:sip-du-a-us.pstnhub.microsoft.com;transport=tcp;lr>",
            5060,
        ),
    ] {
        let mut net = Net::new();
        let proxy = Target {
            transport: Transport::Tcp,
            addr: "52.112.7.9:49152".parse().unwrap(),
        };
        let contact = format!("{MS_CONTACT};transport=tcp");
        // No port in the second case: the transport's default.
        let sent_by = match port {
            5060 => MS_HOST.to_string(),
            p => format!("{MS_HOST}:{p}"),
        };
        let invite = ms_invite(proxy, "mt", &contact, ms_rr, Some(&sent_by));
        net.deliver(L_MS_TCP, proxy, invite);
        let out = net.take();
        assert_eq!(out.all(), [(proxy, "100".into()), (SBC1, "INVITE".into())]);
        // Responses too (RFC 3261 §18.2.2): the source's IP at the Via's sent-by port.
        let back = Some(format!("52.112.7.9:{port}").parse().unwrap());
        assert_eq!(out.0[0].reconnect, back);
        assert_eq!(out.0[0].tls_name.as_deref(), Some(MS_HOST));
        let inv = out.0[1].msg.clone();
        let ok = reply(&inv, 200, "sbc", SBC1);
        net.from(SBC1, ok.clone());
        let out = net.take();
        assert_eq!(out.all(), [(proxy, "200".into())]);
        assert_eq!(out.0[0].reconnect, back);

        let bye = callee_request("BYE", SBC1, "sbc-bye-t", &inv, &ok).msg();
        net.from(SBC1, bye);
        let out = net.take();
        assert_eq!(out.all(), [(proxy, "BYE".into())], "the flow first");
        assert_eq!(out.0[0].reconnect, back, "{ms_rr}");
        assert_eq!(out.0[0].tls_name.as_deref(), Some(MS_HOST));
        // Retransmissions and the ACK of a failure follow the same way: the peer entry
        // lives as long as the transaction.
        net.from(proxy, reply(&out.0[0].msg, 200, "x", proxy));
        assert_eq!(net.take().all(), [(SBC1, "200".into())]);
    }
}
