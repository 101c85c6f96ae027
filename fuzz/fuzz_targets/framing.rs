//! Stream framing with random chunking: the first input byte says how many chunk sizes
//! follow, those bytes are the sizes (cycled), and the rest is the stream, pushed into a
//! `StreamFramer` in those chunks and drained after each push.
//!
//! Checks: every message frame goes through `Message::parse` and, when it parses, is exactly
//! one message; an error is final; the same bytes pushed at once give the same messages,
//! pings and failure; and the concatenated message frames re-frame to themselves.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocedge::sip::framing::{Frame, FramingError, StreamFramer};
use ocedge::sip::message::ParseError;
use ocedge::sip::{Limits, Message};

/// What a connection saw: its message frames, how many pings, and the fatal error if any.
/// Pongs are left out: whether a split `CRLFCRLF` reads as one ping or as pong then ping
/// depends on the cut (module doc of `sip::framing`); the number of pings does not.
#[derive(Debug)]
struct Seen {
    messages: Vec<Bytes>,
    pings: usize,
    error: Option<FramingError>,
}

fn run(chunks: impl Iterator<Item = impl AsRef<[u8]>>, limits: &Limits) -> Seen {
    let mut framer = StreamFramer::new(*limits);
    let mut seen = Seen {
        messages: Vec::new(),
        pings: 0,
        error: None,
    };
    'feed: for chunk in chunks {
        if let Err(e) = framer.push(chunk.as_ref()) {
            seen.error = Some(e);
            break;
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => seen.messages.push(m),
                Ok(Some(Frame::Ping)) => seen.pings += 1,
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => {
                    assert!(framer.room() > 0, "waiting for bytes with no room for them");
                    break;
                }
                Err(e) => {
                    seen.error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    if let Some(e) = seen.error {
        // Poisoned for good: same error, nothing buffered, no room.
        assert_eq!(framer.next_frame(), Err(e));
        assert_eq!(framer.push(b"\r\n\r\n"), Err(e));
        assert_eq!(framer.next_frame(), Err(e));
        assert_eq!((framer.room(), framer.buffered()), (0, 0));
    }
    seen
}

/// A message frame is one whole message: the parser may refuse what the framer does not
/// check (start line, URI, header grammar beyond `name:`), but never its structure.
fn check_frame(frame: &Bytes, limits: &Limits) {
    match Message::parse(frame.clone(), limits) {
        Ok(m) => {
            ocedge_fuzz::check_message(&m, frame, limits);
            assert_eq!(
                m.as_bytes(),
                &frame[..],
                "frame holds more than one message"
            );
            assert!(
                m.content_length().is_some(),
                "framed message without Content-Length"
            );
        }
        Err(f) => assert!(
            !matches!(
                f.error,
                ParseError::Empty
                    | ParseError::Unterminated
                    | ParseError::BadLineEnding
                    | ParseError::BadContentLength(_)
                    | ParseError::BodyTooShort
            ),
            "framer and parser disagree on structure: {:?} for {frame:?}",
            f.error
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(rest.len().min(usize::from(n % 8) + 1));
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![1]
    } else {
        sizes.iter().map(|&b| usize::from(b) + 1).collect()
    };

    let mut cuts = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let end = stream.len().min(at + size);
        cuts.push(&stream[at..end]);
        at = end;
    }
    let chunked = run(cuts.iter(), &limits);
    for m in &chunked.messages {
        check_frame(m, &limits);
    }

    // Which fatal error is reported may depend on the cut (a head over `max_head` is refused
    // as soon as that many bytes are buffered, before a later bad byte is seen), but whether
    // the stream fails, and everything framed before, may not.
    let whole = run(std::iter::once(stream), &limits);
    assert_eq!(
        chunked.messages, whole.messages,
        "messages depend on how the stream was cut"
    );
    assert_eq!(
        chunked.pings, whole.pings,
        "pings depend on how the stream was cut"
    );
    assert_eq!(
        chunked.error.is_some(),
        whole.error.is_some(),
        "{chunked:?} vs {whole:?}"
    );

    let joined: Vec<u8> = chunked
        .messages
        .iter()
        .flat_map(|m| m.iter().copied())
        .collect();
    let again = run(std::iter::once(&joined), &limits);
    assert_eq!(
        again.messages, chunked.messages,
        "message frames do not re-frame to themselves"
    );
    assert_eq!(again.error, None);
});
