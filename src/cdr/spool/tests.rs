//! Unit tests of the spool's pieces: frames and the scanner, headers, the cursor file, the
//! key state machine, and behaviour that needs the internals (read positions, cleaning
//! thresholds, tombstones). End-to-end recovery is in `tests/spool_recovery.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::cursor::{self, Loaded};
use super::format::{put_frame, FrameKind, HeaderError, Scan, Scanner, SegHeader, FRAME_MIN};
use super::*;
use crate::testdir::{temp_dir, TempDir};

mod behaviour;
mod repair;

fn cfg(dir: &TempDir, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        fsync_interval: Duration::from_millis(5),
        max_bytes: 1 << 30,
        alarm_ratio: 0.8,
    }
}

/// The payload [`closes`] gives record `i`.
fn close_payload(i: u64) -> Vec<u8> {
    format!("close-{i:04}-{}", "x".repeat(60)).into_bytes()
}

/// Appends a Close for each record in `from..to`, one append each.
fn closes(s: &Spool, from: u64, to: u64) {
    for i in from..to {
        s.append(&[(Kind::Close, key(i), &close_payload(i))])
            .unwrap();
    }
}

/// Waits (at most 5 s) until group commit has made `seq` durable.
fn wait_durable(s: &Spool, seq: u64) {
    let t = std::time::Instant::now();
    while s.stats().durable_seq < seq {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", s.stats());
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k
}

fn frames(n: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    for seq in 1..=n {
        put_frame(
            &mut buf,
            seq,
            1000 + seq,
            FrameKind::Close,
            &key(seq),
            payload,
        );
    }
    buf
}

/// Seqs of the frames and the (lost) counts of the skips the scanner reports.
fn scan_all(buf: &[u8]) -> (Vec<u64>, Vec<u64>, Option<u64>) {
    let (mut seqs, mut skips, mut tail) = (Vec::new(), Vec::new(), None);
    let mut s = Scanner::new(buf, 0, 1, true);
    while let Some(item) = s.next_item() {
        match item {
            Scan::Frame { frame, .. } => seqs.push(frame.seq),
            Scan::Skip { lost, .. } => skips.push(lost),
            Scan::Tail { from } => tail = Some(from),
            Scan::More { .. } => panic!("at_eof scanner asked for more"),
        }
    }
    (seqs, skips, tail)
}

#[test]
fn frames_round_trip_and_every_truncation_is_a_tail() {
    let buf = frames(3, b"{\"id\":\"x\"}");
    let (seqs, skips, tail) = scan_all(&buf);
    assert_eq!((seqs, skips, tail), (vec![1, 2, 3], vec![], None));
    let one = FRAME_MIN + 10;
    for cut in 2 * one + 1..3 * one {
        let (seqs, skips, tail) = scan_all(&buf[..cut]);
        assert_eq!(seqs, vec![1, 2], "cut at {cut}");
        assert!(skips.is_empty());
        assert_eq!(tail, Some(2 * one as u64), "cut at {cut}");
    }
    // Not at the end of the data: the scanner asks for more instead of judging.
    let mut s = Scanner::new(&buf[..one + 5], 0, 1, false);
    assert!(matches!(s.next_item(), Some(Scan::Frame { .. })));
    assert!(matches!(s.next_item(), Some(Scan::More { at, whole: false }) if at == one as u64));
}

#[test]
fn every_bit_flip_loses_only_its_frame() {
    let payload = [b'p'; 20];
    let clean = frames(5, &payload);
    let one = FRAME_MIN + payload.len();
    for byte in one..2 * one {
        for bit in 0..8 {
            let mut buf = clean.clone();
            buf[byte] ^= 1 << bit;
            let (seqs, skips, tail) = scan_all(&buf);
            assert_eq!(seqs, vec![1, 3, 4, 5], "byte {byte} bit {bit}");
            assert_eq!(skips, vec![1], "byte {byte} bit {bit}");
            assert_eq!(tail, None);
        }
    }
}

#[test]
fn an_absurd_length_is_corruption_not_an_allocation() {
    let mut buf = frames(2, b"x");
    buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (seqs, skips, _) = scan_all(&buf);
    assert_eq!((seqs, skips), (vec![2], vec![1]));
    // Zeros (a tail some file systems show after a crash) are a clean tail.
    let mut buf = frames(2, b"x");
    buf.extend_from_slice(&[0; 4096]);
    let (seqs, skips, tail) = scan_all(&buf);
    assert_eq!((seqs, skips), (vec![1, 2], vec![]));
    assert_eq!(tail, Some(2 * (FRAME_MIN as u64 + 1)));
}

#[test]
fn the_crc_is_crc32c_and_the_spool_is_shareable() {
    // The check value docs/spool-format.md quotes.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    fn shareable<T: Send + Sync>() {}
    shareable::<Spool>();
    shareable::<Arc<Spool>>();
}

#[test]
fn segment_headers_check_every_bit() {
    let h = SegHeader {
        first_seq: 42,
        created_ms: 1_795_000_000_000,
        cursor: 17,
    };
    let bytes = h.encode();
    assert_eq!(SegHeader::decode(&bytes), Ok(h));
    assert_eq!(&bytes[..8], b"OCSPOOL1");
    assert_eq!(SegHeader::decode(&bytes[..47]), Err(HeaderError::Short));
    for byte in 0..bytes.len() {
        let mut b = bytes;
        b[byte] ^= 0x10;
        assert!(SegHeader::decode(&b).is_err(), "byte {byte}");
    }
    // A well-formed header of another version is refused as such, not as damage.
    let mut b = bytes;
    b[8] = 2;
    let crc = crc32c::crc32c(&b[..44]);
    b[44..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(SegHeader::decode(&b), Err(HeaderError::Unsupported(2, 0)));
}

#[test]
fn cursor_file_checks_every_bit() {
    let b = cursor::encode(123_456, 99);
    assert_eq!(cursor::decode(&b), Loaded::Valid(123_456));
    assert_eq!(cursor::decode(&b[..35]), Loaded::Corrupt("length"));
    for byte in 0..b.len() {
        for bit in 0..8 {
            let mut c = b;
            c[byte] ^= 1 << bit;
            assert!(
                matches!(cursor::decode(&c), Loaded::Corrupt(_)),
                "byte {byte}"
            );
        }
    }
}

#[test]
fn keys_are_the_ids_bytes_or_a_hash() {
    let id = crate::cdr::record_id(b"a84b4c76e66710", b"1928301774", b"314159", 1);
    let k = key_of(&id);
    assert_eq!(k[..4], [0x39, 0x74, 0x68, 0x55]); // "3974685567d6…"
    assert_eq!(key_of(&id.to_uppercase()), k);
    let other = key_of("not-a-hex-id");
    let digest = ring::digest::digest(&ring::digest::SHA256, b"not-a-hex-id");
    assert_eq!(other[..], digest.as_ref()[..16]);
    // 32 characters that are not all hex digits are hashed too.
    let almost = "g974685567d6d612664d9c721aa4b40d";
    assert_ne!(key_of(almost), k);
    assert_eq!(
        key_of(almost)[..],
        ring::digest::digest(&ring::digest::SHA256, almost.as_bytes()).as_ref()[..16]
    );
}

#[test]
fn re_journaling_writes_runs_of_about_a_mebibyte() {
    use super::clean::{by_bytes, REJOURNAL_BATCH};
    let sizes: Vec<usize> = (0..5000).map(|i| 300 + i % 700).collect();
    let runs = by_bytes(&sizes, |&n| n);
    assert_eq!(runs.concat(), sizes, "every item once, in order");
    assert!(runs.len() > 1);
    for run in &runs {
        let bytes: usize = run.iter().map(|&n| FRAME_MIN + n).sum();
        assert!(bytes < REJOURNAL_BATCH + FRAME_MIN + 1000, "{bytes}");
    }
    assert!(by_bytes(&[] as &[usize], |&n| n).is_empty());
    assert_eq!(by_bytes(&[MAX_PAYLOAD], |&n| n), vec![&[MAX_PAYLOAD][..]]);
}
