//! Whole calls through the proxy in both directions: the forward edit (Via, Max-Forwards,
//! double Record-Route, stripped headers), responses relayed with our Via popped, ACK and
//! BYE loose-routed, OPTIONS to the gateway, and in-dialog routing limits.

use super::msg::{
    callee_request, parse, reply, rr, rr_ms, to_tag, top_branch, val, vals, via, Call, Req,
};
use super::net::{Net, Spec, CARRIER_HOST, GW_CARRIER, GW_MS, L_CARRIER, MS, MS_NAME, SBC1, T64};
use crate::config::Side;
use crate::proxy::route::BRANCH_PREFIX;
use crate::transport::Transport;

#[test]
fn carrier_to_microsoft_call_from_invite_to_bye() {
    let mut net = Net::new();
    let call = Call::new(
        "c1",
        SBC1,
        &format!("sip:+14255550100@{GW_CARRIER};user=phone"),
    );
    let invite = call
        .invite
        .clone()
        .line("x-carrier-internal : secret")
        .line("X-Kept: yes")
        .msg();
    net.from(SBC1, invite);

    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "100".into()), (MS, "INVITE".into())]);
    let trying = &out.0[0];
    assert_eq!(trying.side, Some(Side::Carrier));
    assert_eq!(vals(&trying.msg, "Via"), [via(SBC1, "c1")]);
    assert_eq!(to_tag(&trying.msg), None, "no To-tag on 100");

    let fwd = &out.0[1];
    assert_eq!(
        (fwd.side, fwd.tls_name.as_deref()),
        (Some(Side::Microsoft), Some(MS_NAME))
    );
    let m = &fwd.msg;
    assert_eq!(
        m.request_uri_bytes(),
        call.msg().request_uri_bytes(),
        "R-URI kept"
    );
    let v = vals(m, "Via");
    assert_eq!(v.len(), 2);
    assert!(
        v[0].starts_with(&format!("SIP/2.0/UDP {GW_MS};branch={BRANCH_PREFIX}")),
        "{v:?}"
    );
    assert!(v[0].ends_with(";rport"), "{v:?}");
    assert_eq!(v[1], via(SBC1, "c1"));
    assert_eq!(val(m, "Max-Forwards").as_deref(), Some("69"));
    assert_eq!(vals(m, "Record-Route"), [rr_ms(MS), rr(GW_CARRIER)]);
    assert!(vals(m, "X-Carrier-Internal").is_empty(), "stripped");
    assert_eq!(vals(m, "X-Kept"), ["yes"]);
    assert_eq!(val(m, "Call-ID"), val(&call.msg(), "Call-ID"));

    // 180 and 200 come back with our Via popped.
    net.from(MS, reply(m, 180, "ms-tag", MS));
    let ringing = net.take();
    assert_eq!(ringing.all(), [(SBC1, "180".into())]);
    assert_eq!(vals(&ringing.0[0].msg, "Via"), [via(SBC1, "c1")]);
    assert_eq!(ringing.0[0].side, Some(Side::Carrier));
    let ok = reply(m, 200, "ms-tag", MS);
    net.from(MS, ok);
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    let answer = out.0[0].msg.clone();
    assert_eq!(vals(&answer, "Via"), [via(SBC1, "c1")]);
    assert_eq!(vals(&answer, "Record-Route"), [rr_ms(MS), rr(GW_CARRIER)]);

    // The ACK for the 2xx goes statelessly along the route set to the Contact.
    let ack = call.in_dialog("ACK", 1, "c1-ack", &answer).msg();
    assert_eq!(vals(&ack, "Route"), [rr(GW_CARRIER), rr_ms(MS)]);
    net.from(SBC1, ack.clone());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "ACK".into())]);
    let fwd_ack = &out.0[0];
    assert_eq!(fwd_ack.side, Some(Side::Microsoft));
    assert!(
        vals(&fwd_ack.msg, "Route").is_empty(),
        "both our Route entries popped"
    );
    assert_eq!(fwd_ack.msg.request_uri_bytes(), ack.request_uri_bytes());
    assert!(top_branch(&fwd_ack.msg).starts_with(BRANCH_PREFIX));
    assert_eq!(vals(&fwd_ack.msg, "Via")[1], via(SBC1, "c1-ack"));
    assert_eq!(val(&fwd_ack.msg, "Max-Forwards").as_deref(), Some("69"));
    // A retransmitted ACK leaves with the same branch: the next hop sees one ACK.
    net.from(SBC1, ack);
    let again = net.take();
    assert_eq!(again.all(), [(MS, "ACK".into())]);
    assert_eq!(top_branch(&again.0[0].msg), top_branch(&fwd_ack.msg));

    // BYE: loose-routed, our Route entries popped, to the Request-URI (Microsoft's Contact).
    let bye = call.in_dialog("BYE", 2, "c1-bye", &answer).msg();
    net.from(SBC1, bye.clone());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "BYE".into())], "no 100 for a non-INVITE");
    let fwd_bye = &out.0[0].msg;
    assert!(vals(fwd_bye, "Route").is_empty());
    assert!(
        vals(fwd_bye, "Record-Route").is_empty(),
        "in-dialog: no Record-Route"
    );
    assert_eq!(fwd_bye.request_uri_bytes(), bye.request_uri_bytes());
    assert_eq!(vals(fwd_bye, "Via")[1], via(SBC1, "c1-bye"));
    net.from(MS, reply(fwd_bye, 200, "x", MS));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "c1-bye")]);
    assert_eq!(val(&out.0[0].msg, "CSeq").as_deref(), Some("2 BYE"));

    let s = net.proxy.stats();
    assert_eq!((s.forwarded_requests, s.forwarded_responses), (4, 3));
}

#[test]
fn microsoft_to_carrier_call_and_bye_from_the_callee() {
    let mut net = Net::new();
    let call = Call::new("m1", MS, &format!("sip:+12065550100@{GW_MS};user=phone"));
    net.from(MS, call.invite.clone().line("X-MS-Internal: t1").msg());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "100".into()), (SBC1, "INVITE".into())]);
    assert_eq!(out.0[0].side, Some(Side::Microsoft));
    let inv = out.0[1].msg.clone();
    assert_eq!(
        (out.0[1].side, out.0[1].tls_name.as_deref()),
        (Some(Side::Carrier), None)
    );
    assert!(vals(&inv, "Via")[0].starts_with(&format!("SIP/2.0/UDP {GW_CARRIER};branch=")));
    assert_eq!(
        vals(&inv, "Record-Route"),
        [rr(GW_CARRIER), rr_ms(MS)],
        "top faces the callee; the Microsoft-side entry names the caller's proxy"
    );
    assert!(
        vals(&inv, "X-MS-Internal").is_empty(),
        "stripped toward the carrier"
    );

    let ok = reply(&inv, 200, "sbc-tag", SBC1);
    net.from(SBC1, ok.clone());
    assert_eq!(net.take().all(), [(MS, "200".into())]);

    // The callee hangs up: its route set is the Record-Route in order.
    let bye = callee_request("BYE", SBC1, "sbc-bye", &inv, &ok).msg();
    assert_eq!(vals(&bye, "Route"), [rr(GW_CARRIER), rr_ms(MS)]);
    net.from(SBC1, bye);
    let out = net.take();
    assert_eq!(out.all(), [(MS, "BYE".into())]);
    let fwd = &out.0[0];
    assert_eq!(fwd.side, Some(Side::Microsoft));
    assert!(vals(&fwd.msg, "Route").is_empty());
    assert_eq!(
        fwd.msg.request_uri_bytes(),
        Some(format!("sip:+12065550100@{}", MS.addr).as_bytes())
    );
    net.from(MS, reply(&fwd.msg, 200, "x", MS));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "sbc-bye")]);
}

#[test]
fn retransmissions_are_absorbed_and_2xx_retransmissions_relayed() {
    let mut net = Net::new();
    let call = Call::new("rtx", SBC1, "sip:+14255550100@10.0.0.1:5062");
    net.from(SBC1, call.msg());
    let inv = net.take().one(MS, "INVITE").msg.clone();
    // The caller retransmits before anything came back: our 100 again, nothing forwarded.
    net.from(SBC1, call.msg());
    assert_eq!(net.take().all(), [(SBC1, "100".into())]);
    net.from(MS, reply(&inv, 180, "m", MS));
    net.take();
    net.from(SBC1, call.msg());
    assert_eq!(
        net.take().all(),
        [(SBC1, "180".into())],
        "the last provisional"
    );
    // Provisionals are relayed as they come (§16.7 step 5: a proxy cannot tell a
    // retransmitted 180 from a new one); a retransmitted 200 is relayed again (RFC 6026).
    net.from(MS, reply(&inv, 180, "m", MS));
    assert_eq!(net.take().all(), [(SBC1, "180".into())]);
    net.from(MS, reply(&inv, 200, "m", MS));
    net.from(MS, reply(&inv, 200, "m", MS));
    assert_eq!(
        net.take().all(),
        [(SBC1, "200".into()), (SBC1, "200".into())]
    );
    // An INVITE retransmitted after the 2xx is absorbed.
    net.from(SBC1, call.msg());
    assert!(net.take().is_empty());
    assert_eq!(net.proxy.stats().forwarded_requests, 1);
}

#[test]
fn non_2xx_final_is_acked_hop_by_hop_and_relayed() {
    let mut net = Net::new();
    let call = Call::new("busy", SBC1, "sip:+14255550100@10.0.0.1:5062");
    net.from(SBC1, call.msg());
    let inv = net.take().one(MS, "INVITE").msg.clone();
    net.from(MS, reply(&inv, 486, "ms-tag", MS));
    let out = net.take();
    assert_eq!(out.all(), [(MS, "ACK".into()), (SBC1, "486".into())]);
    let ack = &out.0[0].msg;
    assert_eq!(
        top_branch(ack),
        top_branch(&inv),
        "hop-by-hop ACK: the INVITE's branch"
    );
    assert_eq!(val(ack, "CSeq").as_deref(), Some("1 ACK"));
    assert_eq!(to_tag(ack).as_deref(), Some("ms-tag"));
    let busy = &out.0[1].msg;
    assert_eq!(vals(busy, "Via"), [via(SBC1, "busy")]);

    // The caller's ACK for the 486 ends our server transaction and goes no further.
    let mut caller_ack = call.invite.clone();
    caller_ack.method = "ACK".into();
    caller_ack.to = val(busy, "To").unwrap();
    net.from(SBC1, caller_ack.msg());
    assert!(net.take().is_empty());
    assert_eq!(
        net.proxy.stats().failovers,
        0,
        "486 is an answer, not a failure"
    );
}

#[test]
fn options_to_the_gateway_is_answered_and_with_a_user_forwarded() {
    let mut net = Net::new();
    let ping = Req::new("OPTIONS", &format!("sip:{GW_CARRIER}"), SBC1, "ping");
    net.from(SBC1, ping.msg());
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    let ok = &out.0[0].msg;
    assert_eq!(
        val(ok, "Allow").as_deref(),
        Some("INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY, MESSAGE")
    );
    assert!(to_tag(ok).is_some());
    assert_eq!(vals(ok, "Via"), [via(SBC1, "ping")]);
    assert!(
        net.seen.lock().unwrap().checks.is_empty(),
        "no policy for our OPTIONS"
    );

    // Our Microsoft-side address works the same from Microsoft.
    net.from(
        MS,
        Req::new("OPTIONS", &format!("sip:{GW_MS}"), MS, "ping2").msg(),
    );
    assert_eq!(net.take().all(), [(MS, "200".into())]);

    // With a user part it is a request for someone behind us: forwarded.
    let uri = format!("sip:+14255550100@{GW_CARRIER}");
    net.from(SBC1, Req::new("OPTIONS", &uri, SBC1, "user").msg());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "OPTIONS".into())]);
    let fwd = &out.0[0].msg;
    assert!(
        vals(fwd, "Record-Route").is_empty(),
        "OPTIONS creates no dialog"
    );
    net.from(MS, reply(fwd, 200, "ms", MS));
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "200".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "user")]);
    assert_eq!(net.seen.lock().unwrap().checks, [(Side::Carrier, uri)]);
}

/// An in-dialog request from the carrier whose next hop is `ruri`, with our two Route
/// entries on top.
fn in_dialog_bye(ruri: &str, branch: &str) -> Req {
    let mut r = Req::new("BYE", ruri, SBC1, branch);
    r.to = format!("<{ruri}>;tag=far");
    r.routes = vec![rr(GW_CARRIER), rr(GW_MS)];
    r
}

#[test]
fn in_dialog_request_goes_only_to_a_peer_or_inside_the_acl() {
    let mut net = Net::new();
    // Neither a peer nor inside the Microsoft ACL: no open relay.
    net.from(
        SBC1,
        in_dialog_bye("sip:victim@198.18.0.1:5060", "relay").msg(),
    );
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "404".into())]);
    assert_eq!(vals(&out.0[0].msg, "Via"), [via(SBC1, "relay")]);
    assert_eq!(net.proxy.stats().no_route, 1);
    // An unknown host name is refused the same way (we do no DNS).
    net.from(SBC1, in_dialog_bye("sip:x@evil.example.com", "dns").msg());
    assert_eq!(net.take().all(), [(SBC1, "404".into())]);
    assert_eq!(net.proxy.stats().no_route, 2);

    // Inside the Microsoft ACL but not a configured target: allowed, without a TLS name.
    let other = "52.113.1.1:5060".parse().unwrap();
    net.from(SBC1, in_dialog_bye(&format!("sip:u@{other}"), "acl").msg());
    let out = net.take();
    assert_eq!(out.0.len(), 1);
    assert_eq!((out.0[0].to.addr, out.0[0].label()), (other, "BYE".into()));
    assert_eq!(out.0[0].tls_name, None);
    // A configured peer named by host name resolves to its address.
    net.from(
        SBC1,
        in_dialog_bye(&format!("sip:u@{MS_NAME}"), "name").msg(),
    );
    let out = net.take();
    assert_eq!(out.all(), [(MS, "BYE".into())]);
    assert_eq!(out.0[0].tls_name.as_deref(), Some(MS_NAME));
}

#[test]
fn unanswered_in_dialog_request_gets_408_after_timer_f() {
    let mut net = Net::new();
    net.from(
        SBC1,
        in_dialog_bye(&format!("sip:u@{}", MS.addr), "lost").msg(),
    );
    assert_eq!(net.take().all(), [(MS, "BYE".into())]);
    net.advance(T64 + 100);
    let out = net.take();
    let resent: Vec<u64> = out.to(MS).iter().map(|s| s.at).collect();
    // Timer E: T1, doubling up to T2 (40 ms), until Timer F at 64·T1.
    assert_eq!(
        resent,
        [10, 30, 70, 110, 150, 190, 230, 270, 310, 350, 390, 430, 470, 510, 550, 590, 630]
    );
    let timeout = out.one(SBC1, "408");
    assert_eq!(timeout.at, T64);
    assert_eq!(vals(&timeout.msg, "Via"), [via(SBC1, "lost")]);
    assert_eq!(
        net.proxy.stats().failovers,
        0,
        "in-dialog requests never fail over"
    );
}

#[test]
fn in_dialog_requests_from_plain_carrier_hosts_are_routed_too() {
    // A carrier host that is no configured SBC (e.g. a media server in the ACL) may send
    // in-dialog requests; the response goes back to it on the carrier side.
    let mut net = Net::new();
    let mut bye = in_dialog_bye(&format!("sip:u@{}", MS.addr), "host");
    bye.vias = vec![via(CARRIER_HOST, "host")];
    net.deliver(L_CARRIER, CARRIER_HOST, bye.msg());
    let fwd = net.take().one(MS, "BYE").msg.clone();
    net.from(MS, reply(&fwd, 200, "x", MS));
    let out = net.take();
    assert_eq!(out.all(), [(CARRIER_HOST, "200".into())]);
    assert_eq!(out.0[0].side, Some(Side::Carrier));
}

#[test]
fn transport_change_records_the_listener_each_side_really_uses() {
    // The call arrives over UDP on the carrier side and leaves over TCP toward Microsoft:
    // each Record-Route entry names the listener its side talks to (RFC 3261 §16.6 step 4,
    // RFC 5658 double Record-Route).
    let mut net = Net::with(Spec {
        ms_transport: Transport::Tcp,
        ..Spec::default()
    });
    let ms = net.ms;
    net.from(
        SBC1,
        Call::new("tcp", SBC1, "sip:+14255550100@10.0.0.1:5062").msg(),
    );
    let out = net.take();
    assert_eq!(out.all(), [(SBC1, "100".into()), (ms, "INVITE".into())]);
    let inv = &out.0[1].msg;
    let top = &vals(inv, "Via")[0];
    assert!(
        top.starts_with("SIP/2.0/TCP 10.0.0.1:5067;branch=z9hG4bKoc"),
        "{top}"
    );
    assert!(!top.contains("rport"), "{top}");
    assert_eq!(
        vals(inv, "Record-Route"),
        [
            format!(
                "<sip:10.0.0.1:5067;transport=tcp;lr;oc-flow=tcp-{}-{}>",
                ms.addr.ip(),
                ms.addr.port()
            ),
            rr(GW_CARRIER)
        ]
    );
}

/// What Microsoft sees as our Contact: the user kept, our Microsoft-side address, the
/// SBC's URI carried in `oc-alias`.
fn rewritten(user: &str, orig: &str) -> String {
    let escaped: String = orig
        .bytes()
        .map(|b| match b {
            b'@' => "%40".to_string(),
            b';' => "%3B".to_string(),
            b'=' => "%3D".to_string(),
            _ => char::from(b).to_string(),
        })
        .collect();
    format!("<sip:{user}@{GW_MS};oc-alias={escaped}>")
}

#[test]
fn contacts_toward_microsoft_name_the_gateway_and_route_back_to_the_sbc() {
    let mut net = Net::new();
    // Carrier → Microsoft: the INVITE's Contact is rewritten.
    let call = Call::new("ct1", SBC1, &format!("sip:+14255550100@{GW_CARRIER}"));
    net.from(SBC1, call.msg());
    let inv = net.take().one(MS, "INVITE").msg.clone();
    let sbc_contact = format!("sip:+12065550100@{}", SBC1.addr);
    assert_eq!(
        vals(&inv, "Contact"),
        [rewritten("+12065550100", &sbc_contact)]
    );
    net.from(MS, reply(&inv, 200, "ms-tag", MS));
    let answer = net.take().one(SBC1, "200").msg.clone();
    assert_eq!(
        vals(&answer, "Contact"),
        [format!("<sip:callee@{};transport=udp>", MS.addr)],
        "Microsoft's Contact goes to the carrier unchanged"
    );
    // Microsoft hangs up: to our Contact, along the route set. The SBC gets its own URI.
    let bye = callee_request("BYE", MS, "ct1-bye", &inv, &reply(&inv, 200, "ms-tag", MS));
    assert!(bye.ruri.contains("oc-alias="), "{}", bye.ruri);
    net.from(MS, bye.msg());
    let out = net.take();
    let fwd = out.one(SBC1, "BYE");
    assert_eq!(fwd.msg.request_uri_bytes(), Some(sbc_contact.as_bytes()));
    assert!(vals(&fwd.msg, "Route").is_empty());

    // Microsoft → carrier: the SBC's 200 reaches Microsoft with our Contact; Microsoft's
    // ACK and BYE to it reach the SBC at its own Contact.
    let call = Call::new("ct2", MS, &format!("sip:+12065550100@{GW_MS};user=phone"));
    net.from(MS, call.msg());
    let inv = net.take().one(SBC1, "INVITE").msg.clone();
    assert_eq!(
        vals(&inv, "Contact"),
        [format!("<sip:+12065550100@{}>", MS.addr)],
        "Microsoft's Contact goes to the carrier unchanged"
    );
    net.from(SBC1, reply(&inv, 200, "sbc-tag", SBC1));
    let answer = net.take().one(MS, "200").msg.clone();
    let sbc_contact = format!("sip:callee@{};transport=udp", SBC1.addr);
    assert_eq!(
        vals(&answer, "Contact"),
        [rewritten("callee", &sbc_contact)]
    );
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        let req = call.in_dialog(method, cseq, &format!("ct2-{method}"), &answer);
        net.from(MS, req.msg());
        let out = net.take();
        let fwd = out.one(SBC1, method);
        assert_eq!(
            fwd.msg.request_uri_bytes(),
            Some(sbc_contact.as_bytes()),
            "{method}"
        );
    }
}

#[test]
fn a_forged_alias_cannot_relay_outside_the_carrier_acl() {
    let mut net = Net::new();
    let forged = format!("sip:x@{GW_MS};oc-alias=sip:x%40198.51.100.7:5060");
    let mut bye = Req::new("BYE", &forged, MS, "forged");
    bye.to = "<sip:x@y>;tag=t".into();
    net.from(MS, bye.msg());
    let out = net.take();
    assert_eq!(out.all(), [(MS, "404".into())], "no route, never relayed");
}

#[test]
fn redirect_contacts_toward_microsoft_are_left_alone() {
    let mut net = Net::new();
    let call = Call::new("rd1", MS, &format!("sip:+12065550100@{GW_MS};user=phone"));
    net.from(MS, call.msg());
    let inv = net.take().one(SBC1, "INVITE").msg.clone();
    let moved = String::from_utf8_lossy(reply(&inv, 302, "sbc-tag", SBC1).buf()).replace(
        "Content-Length",
        "Contact: <sip:+12065550100@192.0.2.50:5060>\r\nContent-Length",
    );
    net.from(SBC1, parse(moved.as_bytes()));
    let out = net.take();
    let relayed = out.one(MS, "302");
    assert_eq!(
        vals(&relayed.msg, "Contact"),
        ["<sip:+12065550100@192.0.2.50:5060>"],
        "a 3xx Contact is a redirection target, not a dialog's remote target"
    );
}
