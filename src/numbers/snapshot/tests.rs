//! Snapshot tests: round trips, and files corrupted on purpose (every truncation, every bit
//! flip, other versions, records that pass the checksums but lie).

use std::io::Cursor;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::numbers::shards::MAX_KEY;
use crate::numbers::{NumberTable, Source};
use crate::sip::number::E164;
use crate::testdir::temp_dir;

const T1: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const T2: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";
const LINK: &str = "https://api.example/numbers/delta?$deltatoken=abc";

use crate::numbers::fixtures::entry;

fn sample() -> NumberTable {
    let t = NumberTable::new();
    let mut es = vec![
        entry(
            "+14255550100",
            T1,
            "sip:+14255550100@a.example;user=phone",
            &["InboundCalling"],
        ),
        entry(
            "+14255550101",
            T2,
            "sips:14255550101@b.example",
            &["Vendor-Thing"],
        ),
        entry("+4930123", T1, "sip:reception@c.example", &[]),
        entry(
            "+999999999999999",
            T2,
            "",
            &["InboundCalling", "OutboundCalling"],
        ),
    ];
    for i in 0..20 {
        let n = format!("+1206555{i:04}");
        es.push(entry(
            &n,
            T1,
            &format!("sip:{n}@a.example;user=phone"),
            &["InboundCalling"],
        ));
    }
    t.replace_all(&es, Source::Sync);
    t
}

fn encoded(t: &NumberTable, link: Option<&str>) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    let created = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    encode(&mut c, &t.view(), link, created).unwrap();
    c.into_inner()
}

/// Recomputes both checksums, so a test can plant a lie that only the record checks see.
fn resign(b: &mut [u8]) {
    let body = crc32c::crc32c(&b[HEADER_LEN..]);
    b[48..52].copy_from_slice(&body.to_le_bytes());
    let head = crc32c::crc32c(&b[..52]);
    b[52..56].copy_from_slice(&head.to_le_bytes());
}

fn same_content(a: &NumberTable, b: &NumberTable) {
    assert_eq!(a.len(), b.len());
    for (n, p) in a.view().iter() {
        let q = b.lookup(&n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(q.tenant(), p.tenant().as_str());
        assert_eq!(q.usage(), p.usage());
        assert_eq!(q.capabilities(), p.capabilities());
        assert!(q.profile().capability_names().eq(p.capability_names()));
        let mut uri = String::new();
        p.write_sip_uri(&n, &mut uri);
        assert_eq!(q.sip_uri(), uri);
    }
}

#[test]
fn round_trip() {
    let t = sample();
    let bytes = encoded(&t, Some(LINK));
    let loaded = decode(&bytes).unwrap();
    assert_eq!(loaded.delta_link.as_deref(), Some(LINK));
    assert_eq!(
        loaded.created,
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
    );
    let back = NumberTable::new();
    back.install(loaded.batch, Source::Snapshot);
    same_content(&t, &back);
    let n = E164::parse("+14255550101").unwrap();
    assert_eq!(
        back.lookup(&n).unwrap().sip_uri(),
        "sips:14255550101@b.example"
    );
    // Numbers sharing a profile are written with one profile record.
    let profiles = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
    assert_eq!(profiles, 4);
}

#[test]
fn empty_table_without_link_round_trips() {
    let t = NumberTable::new();
    let bytes = encoded(&t, None);
    assert_eq!(bytes.len(), HEADER_LEN);
    let loaded = decode(&bytes).unwrap();
    assert_eq!(loaded.delta_link, None);
    let back = NumberTable::new();
    back.install(loaded.batch, Source::Snapshot);
    assert!(back.is_empty() && back.is_loaded());
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = encoded(&sample(), Some(LINK));
    for len in 0..bytes.len() {
        match decode(&bytes[..len]) {
            Err(SnapshotError::Truncated { need, have, .. }) => {
                assert_eq!(have, len as u64);
                assert!(need > have, "at {len}");
            }
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
}

#[test]
fn every_bit_flip_is_an_error() {
    let bytes = encoded(&sample(), Some(LINK));
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let e = decode(&b).expect_err("flip accepted");
            let ok = match i {
                0..=7 => matches!(e, SnapshotError::BadMagic),
                8..=9 => matches!(e, SnapshotError::Version { .. }),
                10..=55 => matches!(e, SnapshotError::HeaderChecksum { .. }),
                _ => matches!(e, SnapshotError::BodyChecksum { .. }),
            };
            assert!(ok, "byte {i} bit {bit}: {e}");
        }
    }
}

#[test]
fn other_versions_are_refused_by_name() {
    let mut b = encoded(&sample(), None);
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    resign(&mut b);
    let e = decode(&b).unwrap_err();
    assert!(matches!(e, SnapshotError::Version { found: 2 }), "{e}");
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn extra_bytes_and_lying_records_are_refused() {
    let good = encoded(&sample(), Some(LINK));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        decode(&b),
        Err(SnapshotError::TrailingBytes { extra: 1 })
    ));

    let plant = |at: usize, val: &[u8]| {
        let mut b = good.clone();
        b[at..at + val.len()].copy_from_slice(val);
        resign(&mut b);
        decode(&b).unwrap_err().to_string()
    };
    let last = good.len() - 12;
    let e = plant(last + 8, &99u32.to_le_bytes());
    assert!(e.contains("profile index out of range"), "{e}");
    let e = plant(last, &0u64.to_le_bytes());
    assert!(e.contains("number out of range"), "{e}");
    let e = plant(last, &(MAX_KEY + 1).to_le_bytes());
    assert!(e.contains("number out of range"), "{e}");
    let e = plant(12, &1u32.to_le_bytes());
    assert!(e.contains("unknown flags"), "{e}");
    let e = plant(24, &u64::MAX.to_le_bytes());
    assert!(e.contains("counts exceed the body"), "{e}");
    let e = plant(24, &0u64.to_le_bytes());
    assert!(e.contains("body longer than its records"), "{e}");
    let e = plant(36, &(LINK.len() as u32 + 5000).to_le_bytes());
    assert!(e.contains("corrupt"), "{e}");
    let form_at = HEADER_LEN + LINK.len() + 16;
    let e = plant(form_at, &[7]);
    assert!(e.contains("URI form"), "{e}");
}

#[test]
fn files_are_written_atomically_and_read_back() {
    let dir = temp_dir("snap-rw");
    let path = dir.join("sub").join("numbers.snapshot");
    assert!(read(&path).unwrap().is_none(), "no file: no snapshot");
    let t = sample();
    let w = write(&path, &t.view(), Some(LINK), SystemTime::now()).unwrap();
    assert_eq!(w.entries, t.len() as u64);
    assert_eq!(w.bytes, fs::metadata(&path).unwrap().len());
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["numbers.snapshot"], "no temp file left");
    // Overwrite with a smaller table; the reader sees the new one whole.
    let small = NumberTable::new();
    small.replace_all(&[entry("+1555", T1, "", &[])], Source::Sync);
    write(&path, &small.view(), None, SystemTime::now()).unwrap();
    let back = read(&path).unwrap().unwrap();
    assert_eq!(back.delta_link, None);
    let t2 = NumberTable::new();
    t2.install(back.batch, Source::Snapshot);
    same_content(&small, &t2);
}

#[test]
fn write_failures_say_where() {
    let dir = temp_dir("snap-fail");
    let blocker = dir.join("file");
    fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("numbers.snapshot");
    let e = write(&path, &sample().view(), None, SystemTime::now()).unwrap_err();
    assert!(matches!(e, SnapshotError::Io { .. }));
    assert!(e.to_string().contains("numbers.snapshot"), "{e}");
    let long = "x".repeat(MAX_DELTA_LINK + 1);
    let e = write(
        &dir.join("s"),
        &sample().view(),
        Some(&long),
        SystemTime::now(),
    );
    assert!(e.is_err());
    assert!(!dir.join(".s.tmp").exists(), "temp file removed on failure");
}

#[test]
fn unreadable_files_are_io_errors() {
    let dir = temp_dir("snap-dir");
    let e = read(&dir).unwrap_err();
    assert!(matches!(e, SnapshotError::Io { .. }), "{e}");
}
