//! Recovery of the durable call-record spool, through its public API and real files, with
//! realistic records: round trips across restarts, torn tails at every offset, bit flips
//! in earlier and last segments, deletion after acknowledgement, re-journaled live calls,
//! a damaged cursor file, `kill -9`, and the CLI's read-only view. (The disk cap, the lock
//! and concurrent appenders are in the unit tests, `src/cdr/spool/tests/`.)

// The temporary directories of the tests (`src/testdir.rs`).
#[path = "../src/testdir.rs"]
mod testdir;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ocedge::cdr::spool::{key_of, Kind, Recovered, Spool, SpoolConfig, SpoolError};
use ocedge::cdr::{record_id, CallRecord, Direction, Disposition, EndReason, OpenCall, SideName};
use testdir::temp_dir;

/// Opens the spool in `cfg.dir`, waiting out a lock held only by a child process of
/// another test: a process spawned from this one holds a copy of every open descriptor
/// (the flock of a spool just dropped here included) until it execs, and the kill -9 test
/// spawns one while the others run.
fn open_spool(cfg: SpoolConfig) -> (Arc<Spool>, Recovered) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Spool::open(cfg.clone()) {
            Err(SpoolError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r.unwrap(),
        }
    }
}

/// Segment size for the tests that count frames: three records of ~500 bytes a segment.
const SEG: u64 = 2000;

fn cfg(dir: &Path, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        segment_bytes,
        fsync_interval: Duration::from_millis(5),
        max_bytes: 1 << 30,
        alarm_ratio: 0.8,
    }
}

/// A realistic finished call (its JSON is ~450 bytes).
fn record(i: u64) -> CallRecord {
    let call_id = format!("{i:016x}-4f1c-9a2e@sbc1.carrier.example");
    CallRecord {
        id: record_id(call_id.as_bytes(), b"1928301774", b"314159", 1),
        call_id,
        direction: Direction::Inbound,
        tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
        caller_number: format!("+1425555{:04}", i % 10_000),
        callee_number: "+14255550199".into(),
        sip_uri: "sip:alice@contoso.com".into(),
        start_ms: 1_795_000_000_000 + i,
        answer_ms: Some(1_795_000_002_500 + i),
        end_ms: 1_795_000_062_750 + i,
        duration_ms: 60_250,
        disposition: Disposition::Answered,
        final_status: 200,
        end_reason: EndReason::CallerBye,
        sbc: "sbc1".into(),
        side: SideName::Carrier,
    }
}

fn open_call(i: u64) -> OpenCall {
    OpenCall {
        record: record(i),
        from_tag: "1928301774".into(),
        to_tag: "314159".into(),
        session_expires_s: Some(1800),
    }
}

fn close(s: &Spool, i: u64) -> u64 {
    let r = record(i);
    s.append(&[(Kind::Close, key_of(&r.id), &r.encode())])
        .unwrap()
}

fn closes(s: &Spool, records: std::ops::Range<u64>) {
    records.for_each(|i| {
        close(s, i);
    });
}

fn open(s: &Spool, i: u64) -> u64 {
    let o = open_call(i);
    s.append(&[(Kind::Open, key_of(&o.record.id), &o.encode())])
        .unwrap()
}

/// The records of the Closes after `after`.
fn records_after(s: &Spool, after: u64) -> Vec<CallRecord> {
    let entries = s.read_closes(after, 10_000).unwrap();
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    entries
        .iter()
        .map(|e| CallRecord::decode(&e.payload).unwrap())
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// The first seq of a segment, from its name.
fn first_seq(seg: &Path) -> u64 {
    let name = seg.file_name().unwrap().to_str().unwrap();
    name["seg-".len()..name.len() - ".log".len()]
        .parse()
        .unwrap()
}

/// A copy of the spool directory's segments and cursor.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap();
        if name != "lock" {
            fs::copy(&p, to.join(name)).unwrap();
        }
    }
}

#[test]
fn round_trip_and_restart_keep_unacked_records_and_the_cursor() {
    let dir = temp_dir("spoolrec-roundtrip");
    let (s, rec) = open_spool(cfg(dir.path(), 4096));
    assert_eq!((rec.open.len(), rec.unacked, rec.segments), (0, 0, 0));
    let seqs: Vec<u64> = (0..20).map(|i| close(&s, i)).collect();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "seqs start at 1, consecutive"
    );
    open(&s, 100);
    open(&s, 101);
    let all = records_after(&s, 0);
    assert_eq!(all, (0..20).map(record).collect::<Vec<_>>());
    s.ack(10).unwrap();
    s.ack(5).unwrap(); // never backwards
    assert_eq!(s.cursor(), 10);
    assert!(matches!(
        s.ack(99),
        Err(SpoolError::AckBeyondEnd { upto: 99, last: 22 })
    ));
    assert_eq!(s.stats().unacked, 10);
    drop(s);

    let (s, rec) = open_spool(cfg(dir.path(), 4096));
    assert_eq!(s.cursor(), 10);
    assert_eq!((rec.unacked, rec.torn_bytes, rec.corrupt), (10, 0, 0));
    assert_eq!(
        records_after(&s, s.cursor()),
        (10..20).map(record).collect::<Vec<_>>()
    );
    let open_ids: Vec<OpenCall> = rec
        .open
        .iter()
        .map(|e| OpenCall::decode(&e.payload).unwrap())
        .collect();
    assert_eq!(open_ids, vec![open_call(100), open_call(101)]);
    let stats = s.stats();
    assert_eq!(
        (stats.last_seq, stats.durable_seq, stats.open_calls),
        (22, 22, 2)
    );
    assert!(stats.oldest_unacked_ms.is_some());
    assert_eq!(close(&s, 50), 23, "seqs are never reused");
}

#[test]
fn a_torn_tail_at_every_offset_of_the_last_frame_keeps_every_earlier_record() {
    let src = temp_dir("spoolrec-torn-src");
    let (s, _) = open_spool(cfg(src.path(), 1 << 20));
    closes(&s, 0..5);
    drop(s);
    let seg = segments(src.path()).pop().unwrap();
    let bytes = fs::read(&seg).unwrap();
    let last = 41 + record(4).encode().len();
    for keep in 0..last {
        let dir = temp_dir("spoolrec-torn");
        copy_dir(src.path(), dir.path());
        let cut = bytes.len() - last + keep;
        fs::write(dir.join(seg.file_name().unwrap()), &bytes[..cut]).unwrap();
        let (s, rec) = open_spool(cfg(dir.path(), 1 << 20));
        assert_eq!(rec.torn_bytes, keep as u64, "keep {keep}");
        assert_eq!(rec.corrupt, 0);
        assert_eq!(
            records_after(&s, 0),
            (0..4).map(record).collect::<Vec<_>>(),
            "keep {keep}"
        );
        assert_eq!(close(&s, 9), 5, "appending goes on after the cut");
        drop(s);
        let (s, rec) = open_spool(cfg(dir.path(), 1 << 20));
        assert_eq!((rec.torn_bytes, rec.unacked), (0, 5));
        assert_eq!(records_after(&s, 4), vec![record(9)]);
    }
}

/// Flips one bit in several bytes of the frame of record `index` (every byte before the
/// payload, every 37th of the payload), `len` bytes at offset `at` of `seg`, and checks
/// that only that record is lost and the cursor stays. `torn`: the frame is the last of
/// the last segment, so the damage is a torn tail.
fn flip_each(src: &Path, seg: &Path, index: u64, at: usize, len: usize, torn: bool) {
    let bytes = fs::read(seg).unwrap();
    let offsets = (0..41).chain((41..len).step_by(37));
    for off in offsets {
        let dir = temp_dir("spoolrec-flip");
        copy_dir(src, dir.path());
        let mut b = bytes.clone();
        b[at + off] ^= 1 << (off % 8);
        fs::write(dir.join(seg.file_name().unwrap()), &b).unwrap();
        let (s, rec) = open_spool(cfg(dir.path(), SEG));
        assert_eq!(
            s.cursor(),
            3,
            "offset {off}: no acknowledged-state regression"
        );
        if torn {
            assert_eq!(
                (rec.corrupt, rec.torn_bytes),
                (0, len as u64),
                "offset {off}"
            );
        } else {
            assert_eq!((rec.corrupt, rec.torn_bytes), (1, 0), "offset {off}");
        }
        let expect: Vec<CallRecord> = (3..12).filter(|i| *i != index).map(record).collect();
        assert_eq!(records_after(&s, s.cursor()), expect, "offset {off}");
    }
}

#[test]
fn bit_flips_lose_only_their_frame_and_never_the_acknowledged_state() {
    let src = temp_dir("spoolrec-flip-src");
    let (s, _) = open_spool(cfg(src.path(), SEG));
    closes(&s, 0..12);
    s.ack(3).unwrap();
    drop(s);
    let segs = segments(src.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let frame = |i: u64| 41 + record(i).encode().len();
    assert!(
        (0..12).all(|i| (400..600).contains(&frame(i))),
        "three frames a segment"
    );
    // Records 0..=2 (seqs 1..=3) were in the first segment, deleted by the ack; the next
    // segment starts with seq 4 (record 3). Its middle frame is record 4.
    assert_eq!(first_seq(&segs[0]), 4, "{segs:?}");
    flip_each(src.path(), &segs[0], 4, 48 + frame(3), frame(4), false);
    // The last segment: its middle frame, then its last frame (a torn tail). Seq q is
    // record q − 1.
    let seg = segs.last().unwrap();
    let first = first_seq(seg);
    assert_eq!((first..=12).count(), 3, "the last segment holds 3 frames");
    let at = |seq: u64| 48 + (first..seq).map(|q| frame(q - 1)).sum::<usize>();
    flip_each(src.path(), seg, first, at(first + 1), frame(first), false);
    flip_each(src.path(), seg, 11, at(12), frame(11), true);
}

#[test]
fn segments_are_deleted_only_once_every_close_in_them_is_acknowledged() {
    let dir = temp_dir("spoolrec-delete");
    let (s, _) = open_spool(cfg(dir.path(), SEG));
    closes(&s, 0..12);
    let before = segments(dir.path());
    assert!(before.len() >= 4);
    // Seq 5 is in the second segment, which also holds seq 6: it must stay.
    s.ack(5).unwrap();
    let after = segments(dir.path());
    assert_eq!(after[..], before[1..], "only the first segment went");
    assert_eq!(
        records_after(&s, 5),
        (5..12).map(record).collect::<Vec<_>>()
    );
    let (entries, cursor) = Spool::read_all(dir.path()).unwrap();
    assert_eq!(cursor, 5);
    assert_eq!(entries.first().unwrap().seq, 4);
    s.ack(12).unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "everything acknowledged: only the active segment"
    );
    assert_eq!(s.stats().unacked, 0);
    drop(s);
    let (s, rec) = open_spool(cfg(dir.path(), SEG));
    assert_eq!((s.cursor(), rec.unacked), (12, 0));
    assert_eq!(close(&s, 99), 13);
}

#[test]
fn live_calls_survive_segment_deletion_and_a_later_close_ends_them() {
    let dir = temp_dir("spoolrec-rejournal");
    let (s, _) = open_spool(cfg(dir.path(), 2000));
    open(&s, 500);
    closes(&s, 0..8);
    let first_segment = segments(dir.path())[0].clone();
    s.ack(s.stats().last_seq).unwrap();
    assert!(!first_segment.exists(), "deleted once acknowledged");
    assert_eq!(s.stats().open_calls, 1);
    drop(s);
    let (s, rec) = open_spool(cfg(dir.path(), 2000));
    assert_eq!(rec.open.len(), 1);
    assert_eq!(
        OpenCall::decode(&rec.open[0].payload).unwrap(),
        open_call(500)
    );
    assert!(rec.open[0].seq > 9, "re-journaled with a new seq");
    let r = record(500);
    s.append(&[(Kind::Close, key_of(&r.id), &r.encode())])
        .unwrap();
    drop(s);
    let (s, rec) = open_spool(cfg(dir.path(), 2000));
    assert!(rec.open.is_empty(), "{:?}", rec.open);
    assert_eq!(records_after(&s, s.cursor()), vec![record(500)]);
}

#[test]
fn read_all_sees_a_live_spool_and_repairs_nothing() {
    let dir = temp_dir("spoolrec-readall");
    let (s, _) = open_spool(cfg(dir.path(), 1500));
    open(&s, 1);
    closes(&s, 0..6);
    let (entries, cursor) = Spool::read_all(dir.path()).unwrap();
    assert_eq!(cursor, 0);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(entries[0].kind, Kind::Open);
    assert!(entries[1..].iter().all(|e| e.kind == Kind::Close));
    // Half a frame at the end (a write in flight, say): skipped, left alone.
    let seg = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0x55; 30]).unwrap();
    let (entries, _) = Spool::read_all(dir.path()).unwrap();
    assert_eq!(entries.len(), 7);
    assert_eq!(fs::metadata(&seg).unwrap().len(), len + 30);
}

#[test]
fn a_damaged_cursor_file_falls_back_to_what_the_segments_prove() {
    let dir = temp_dir("spoolrec-cursor");
    let (s, _) = open_spool(cfg(dir.path(), SEG));
    closes(&s, 0..12);
    s.ack(7).unwrap();
    drop(s);
    let oldest = first_seq(&segments(dir.path())[0]);
    let mut b = fs::read(dir.join("cursor")).unwrap();
    b[17] ^= 0x40;
    fs::write(dir.join("cursor"), &b).unwrap();
    let (s, _) = open_spool(cfg(dir.path(), SEG));
    assert_eq!(
        s.cursor(),
        oldest - 1,
        "the oldest segment's predecessor was acknowledged"
    );
    assert!(s.cursor() <= 7);
    assert_eq!(records_after(&s, s.cursor()).len() as u64, 12 - s.cursor());
}

/// The child half of `kill_9_loses_nothing_that_was_appended`: appends, says so, and waits
/// to be killed. Does nothing when run by the test harness on its own.
#[test]
fn child_appends_and_waits_to_be_killed() {
    let Ok(dir) = std::env::var("OCEDGE_SPOOL_CHILD_DIR") else {
        return;
    };
    let (s, _) = open_spool(cfg(Path::new(&dir), SEG));
    closes(&s, 0..50);
    open(&s, 77);
    println!("appended {}", s.stats().last_seq);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn kill_9_loses_nothing_that_was_appended() {
    use std::io::BufRead;
    let dir = temp_dir("spoolrec-kill");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appends_and_waits_to_be_killed",
            "--nocapture",
        ])
        .env("OCEDGE_SPOOL_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("appended "))
        .expect("the child appended");
    assert_eq!(line, "appended 51");
    child.kill().unwrap(); // SIGKILL: no destructor, no final sync
    child.wait().unwrap();
    let (s, rec) = open_spool(cfg(dir.path(), SEG));
    assert_eq!((rec.unacked, rec.torn_bytes, rec.corrupt), (50, 0, 0));
    assert_eq!(
        records_after(&s, 0),
        (0..50).map(record).collect::<Vec<_>>()
    );
    assert_eq!(rec.open.len(), 1);
    assert_eq!(
        OpenCall::decode(&rec.open[0].payload).unwrap(),
        open_call(77)
    );
}
