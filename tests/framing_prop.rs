//! Property tests for `sip::framing`: any valid stream, cut anywhere, frames back into exactly
//! its messages and pings; arbitrary bytes never panic and a framing error is final.

use bytes::BufMut;
use ocedge::sip::framing::{Frame, FramingError, StreamFramer};
use ocedge::sip::Limits;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// One generated message: its bytes, built from varied but always valid parts.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let start = select(vec![
        "INVITE sip:+15551234567@sbc.example.com SIP/2.0",
        "OPTIONS sip:ping@10.0.0.1:5061;transport=tls SIP/2.0",
        "BYE sip:+4930123456@teams.example.net;user=phone SIP/2.0",
        "SIP/2.0 200 OK",
        "SIP/2.0 183 Session Progress",
    ]);
    let name = prop_oneof![
        select(vec![
            "Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Subject"
        ])
        .prop_map(String::from),
        "X-[A-Za-z0-9-]{1,12}",
    ];
    // A value is one or more physical lines: the later ones are folds.
    let value = prop::collection::vec(("[ -~]{0,30}", select(vec![" ", "\t", "   "])), 1..4);
    let header = (name, select(vec!["", " ", "\t "]), value);
    let cl_name = select(vec![
        "Content-Length",
        "content-length",
        "CONTENT-LENGTH",
        "l",
        "L",
    ]);
    let cl_style = (
        cl_name.clone(),
        select(vec!["", " ", "   ", "\t"]),
        select(vec!["", " ", "\r\n ", "\r\n\t  "]),
        select(vec!["", " ", "\t"]),
    );
    (
        start,
        prop::collection::vec(header, 0..12),
        cl_style,
        any::<Index>(),
        prop::option::of(cl_name),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(start, headers, cl, cl_at, dup, body)| {
            let (cl_name, before, after, trailing) = cl;
            let mut lines: Vec<String> = headers
                .into_iter()
                .map(|(name, ws, parts)| {
                    let mut line = format!("{name}{ws}:");
                    for (i, (text, fold)) in parts.iter().enumerate() {
                        if i > 0 {
                            line.push_str("\r\n");
                            line.push_str(fold);
                        }
                        line.push_str(text);
                    }
                    line
                })
                .collect();
            let len = body.len();
            let at = cl_at.index(lines.len() + 1);
            lines.insert(at, format!("{cl_name}{before}:{after}{len}{trailing}"));
            if let Some(name) = dup {
                lines.push(format!("{name}: {len}"));
            }
            let mut m = start.as_bytes().to_vec();
            for line in lines {
                m.extend_from_slice(b"\r\n");
                m.extend_from_slice(line.as_bytes());
            }
            m.extend_from_slice(b"\r\n\r\n");
            m.extend_from_slice(&body);
            m
        })
}

/// A valid stream: messages with 0..6 CRLFs before each and after the last, plus the
/// messages and the number of pings in it (two consecutive CRLFs make one ping).
fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>, usize)> {
    (
        prop::collection::vec((0usize..6, message()), 1..=8),
        0usize..6,
    )
        .prop_map(|(parts, trailing)| {
            let mut bytes = Vec::new();
            let mut pings = trailing / 2;
            let mut messages = Vec::new();
            for (crlfs, m) in parts {
                bytes.extend_from_slice(&b"\r\n".repeat(crlfs));
                pings += crlfs / 2;
                bytes.extend_from_slice(&m);
                messages.push(m);
            }
            bytes.extend_from_slice(&b"\r\n".repeat(trailing));
            (bytes, messages, pings)
        })
}

/// Cuts `bytes` at the given points (any order, duplicates allowed).
fn chunks<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// What a transport saw: messages, pings, and the error that ended the connection, if any.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    messages: Vec<Vec<u8>>,
    pings: usize,
    error: Option<FramingError>,
}

/// Feeds the chunks in order, through `push` or straight into `recv_buf`, draining frames
/// after each; stops at the first error.
fn feed(limits: Limits, chunks: &[&[u8]], direct: bool) -> (Seen, StreamFramer) {
    let mut f = StreamFramer::new(limits);
    let mut seen = Seen::default();
    for chunk in chunks {
        if direct && chunk.len() <= f.room() {
            f.recv_buf().put_slice(chunk);
        } else if let Err(e) = f.push(chunk) {
            seen.error = Some(e);
            return (seen, f);
        }
        loop {
            match f.next_frame() {
                Ok(Some(Frame::Message(m))) => seen.messages.push(m.to_vec()),
                Ok(Some(Frame::Ping)) => seen.pings += 1,
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => break,
                Err(e) => {
                    seen.error = Some(e);
                    return (seen, f);
                }
            }
        }
    }
    (seen, f)
}

/// Small limits, so that random input reaches every limit.
const SMALL: Limits = Limits {
    max_message: 512,
    max_head: 400,
    max_headers: 8,
    max_line: 128,
    max_uri: 128,
    max_body: 256,
    max_vias: 8,
    max_stream_buffer: 1024,
};

/// Bytes that are mostly SIP punctuation, so random input gets past the first line.
fn sipish_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => select(b"\r\n\r\n :\tlL-0123456789Content-Length".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_stream_cut_anywhere_frames_exactly(
        (bytes, messages, pings) in stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
        direct in any::<bool>(),
    ) {
        let (seen, f) = feed(Limits::DEFAULT, &chunks(&bytes, &cuts), direct);
        prop_assert_eq!(seen, Seen { messages, pings, error: None });
        prop_assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn damaged_stream_frames_the_same_whole_or_cut(
        (bytes, _, _) in stream(),
        damage in prop::option::of((any::<Index>(), any::<u8>())),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let mut bytes = bytes;
        if let Some((at, b)) = damage {
            let at = at.index(bytes.len());
            bytes[at] = b;
        }
        let (whole, _) = feed(Limits::DEFAULT, &[&bytes], false);
        let (cut, _) = feed(Limits::DEFAULT, &chunks(&bytes, &cuts), false);
        // An error may be detected at an earlier byte when the input is cut (a limit is
        // checked at the end of every read), but always in the same message.
        prop_assert_eq!(&cut.messages, &whole.messages);
        prop_assert_eq!(cut.error.is_some(), whole.error.is_some());
        if whole.error.is_none() {
            prop_assert_eq!(cut.pings, whole.pings);
        }
    }

    #[test]
    fn random_bytes_never_panic_and_errors_are_final(
        prefix in any::<bool>(),
        input in prop::collection::vec(sipish_bytes(200), 1..8),
        small in any::<bool>(),
    ) {
        let limits = if small { SMALL } else { Limits::DEFAULT };
        let mut f = StreamFramer::new(limits);
        let mut chunks: Vec<&[u8]> = Vec::new();
        if prefix {
            chunks.push(b"INVITE sip:a@b SIP/2.0\r\n");
        }
        chunks.extend(input.iter().map(Vec::as_slice));
        let mut error = None;
        for chunk in &chunks {
            if let Err(e) = f.push(chunk) {
                error = Some(e);
                break;
            }
            loop {
                match f.next_frame() {
                    Ok(Some(Frame::Message(m))) => {
                        prop_assert!(m.len() <= limits.max_message);
                        let head_end = m.windows(4).position(|w| w == b"\r\n\r\n");
                        let head = &m[..head_end.map_or(0, |e| e + 4)];
                        prop_assert!(!head.is_empty() && !head.starts_with(b"\r"));
                        for (i, &b) in head.iter().enumerate() {
                            if b == b'\n' {
                                prop_assert_eq!(head.get(i.wrapping_sub(1)), Some(&b'\r'));
                            }
                            if b == b'\r' {
                                prop_assert_eq!(head.get(i + 1), Some(&b'\n'));
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        prop_assert!(f.room() > 0);
                        break;
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if error.is_some() {
                break;
            }
        }
        if let Some(e) = error {
            // Poisoned: nothing is ever read again, whatever arrives.
            let valid = b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\r\n";
            prop_assert_eq!(f.push(valid), Err(e));
            prop_assert_eq!(f.next_frame(), Err(e));
            prop_assert_eq!(f.next_frame(), Err(e));
            prop_assert_eq!((f.buffered(), f.room()), (0, 0));
        }
    }
}
