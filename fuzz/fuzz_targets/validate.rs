//! The stateless first look: any datagram through `validate::first_look`, then, for a reply
//! decision, the reply `response::reply_for` builds from the request's headers. Checks the
//! decision's rules (only requests other than ACK are answered, with an error status) and
//! that the reply is a well-formed response to the request under our own limits.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocedge::sip::response::{reply_for, to_tag_for};
use ocedge::sip::validate::{first_look, Decision};
use ocedge::sip::{HeaderName, Limits, Message, Method};

const KEY: [u8; 16] = *b"fuzz-to-tag-key!";

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    let (msg, decision) = first_look(Bytes::copy_from_slice(data), &limits);
    if let Some(m) = &msg {
        ocedge_fuzz::check_message(m, data, &limits);
    }
    let _ = decision.action();
    let Decision::Reply {
        status,
        reason,
        unsupported,
    } = &decision
    else {
        return;
    };
    assert!((400..=699).contains(status), "reply with status {status}");
    assert!(!reason.is_empty());
    assert_eq!(
        *status == 420,
        !unsupported.is_empty(),
        "Unsupported only with 420"
    );
    let headers = match &msg {
        Some(m) => {
            assert!(m.is_request(), "a response was answered");
            assert_ne!(m.method(), Some(Method::Ack), "an ACK was answered");
            m.headers().clone()
        }
        // A refused request is answered only when its headers could be indexed.
        None => Message::parse(Bytes::copy_from_slice(data), &limits)
            .expect_err("first_look parsed what parse refuses")
            .headers
            .expect("a reply without a header index"),
    };

    let tag = to_tag_for(&KEY, &headers);
    let reply =
        reply_for(&decision, &headers, tag.as_bytes()).expect("a reply decision gave no reply");
    let r = Message::parse(reply.clone(), &limits).unwrap_or_else(|f| {
        panic!(
            "reply does not parse: {:?}\n{:?}",
            f.error,
            String::from_utf8_lossy(&reply)
        )
    });
    ocedge_fuzz::check_message(&r, &reply, &limits);
    assert_eq!(r.status(), Some(*status));
    assert_eq!(r.as_bytes(), &reply[..], "reply has bytes after its body");
    assert_eq!((r.content_length(), r.body()), (Some(0), &b""[..]));
    assert_eq!(r.headers().count(HeaderName::ContentLength), 1);
    let vias: Vec<&[u8]> = headers.values(HeaderName::Via).collect();
    assert_eq!(
        r.headers().values(HeaderName::Via).collect::<Vec<_>>(),
        vias,
        "Via lines not copied"
    );
    for kind in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        assert_eq!(r.header(kind), headers.first(kind), "{kind:?} not copied");
    }
    if *status == 420 {
        assert!(
            r.header(HeaderName::Unsupported).is_some(),
            "420 without Unsupported"
        );
    }
});
