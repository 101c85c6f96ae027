//! A failed fsync: what it covered is written again from memory to fresh files, so pages
//! the kernel dropped (as Linux may after a write-back error) lose nothing.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::super::engine::lock;
use super::super::*;
use super::{cfg, close_payload, closes, key, temp_dir, wait_durable, TempDir};

/// Segment files and their lengths on disk.
fn segment_lengths(dir: &TempDir) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect();
    v.sort();
    v
}

/// What the kernel may do to pages it failed to write: every byte of every segment past
/// what the last good sync covered (`synced`: path and length then) becomes zero.
fn drop_unsynced_pages(dir: &TempDir, synced: &[(PathBuf, u64)]) -> u64 {
    let mut zeroed = 0;
    for (path, len) in segment_lengths(dir) {
        let durable = synced
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, l)| *l);
        if len > durable {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&vec![0u8; (len - durable) as usize], durable)
                .unwrap();
            zeroed += len - durable;
        }
    }
    zeroed
}

/// Every Close of `0..n` exactly once, in seq order, with its payload.
fn assert_all_closes(entries: &[Entry], n: u64) {
    let closes: Vec<_> = entries.iter().filter(|e| e.kind == Kind::Close).collect();
    assert_eq!(closes.len() as u64, n, "every record once");
    for (i, e) in closes.iter().enumerate() {
        assert_eq!(e.key, key(i as u64));
        assert_eq!(e.payload, close_payload(i as u64));
    }
    assert!(closes.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[test]
fn a_failed_fsync_writes_everything_it_covered_again_and_loses_nothing() {
    let dir = temp_dir("spool-repair");
    // Small segments: the unsynced window spans rotations (whole new segments, and the
    // tail of one that was partly synced).
    let (s, _) = Spool::open(cfg(&dir, 1024)).unwrap();
    closes(&s, 0, 10);
    s.sync().unwrap();
    assert!(
        lock(&s.inner).pending.is_empty(),
        "a good sync lets go of what it covered"
    );
    let synced = segment_lengths(&dir);
    closes(&s, 10, 40);
    s.append(&[(Kind::Open, key(900), b"up")]).unwrap();
    let last = s.stats().last_seq;
    assert!(s.stats().segments >= 3);

    // The fsync fails, and the kernel drops the pages it could not write.
    let zeroed = drop_unsynced_pages(&dir, &synced);
    assert!(zeroed > 2000, "{zeroed} bytes lost from the page cache");
    s.inject_fsync_failures.store(1, Ordering::Release);
    s.sync()
        .expect("the repair makes everything durable after all");
    let st = s.stats();
    assert_eq!(st.fsync_failures, 1);
    assert_eq!(st.durable_seq, last);
    assert!(lock(&s.inner).pending.is_empty());
    assert!(!lock(&s.inner).repair_needed);

    // Readers see every record, at the same seqs, and appends go on.
    let read = s.read_closes(0, 1000).unwrap();
    assert_all_closes(&read, 40);
    closes(&s, 40, 45);
    s.sync().unwrap();
    drop(s);

    let (_, rec) = Spool::open(cfg(&dir, 1024)).unwrap();
    assert_eq!((rec.corrupt, rec.torn_bytes), (0, 0), "{rec:?}");
    assert_eq!(rec.open.len(), 1, "the call journaled as up survives");
    assert_eq!(rec.open[0].payload, b"up");
    let (all, _) = Spool::read_all(dir.path()).unwrap();
    assert_all_closes(&all, 45);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".repair")),
        "no repair copy left: {names:?}"
    );
}

#[test]
fn a_repair_that_fails_too_is_retried_and_nothing_counts_as_durable_meanwhile() {
    let dir = temp_dir("spool-repair-retry");
    let (s, _) = Spool::open(cfg(&dir, 1024)).unwrap();
    closes(&s, 0, 5);
    s.sync().unwrap();
    let durable = s.stats().durable_seq;
    let synced = segment_lengths(&dir);
    closes(&s, 5, 25);
    drop_unsynced_pages(&dir, &synced);

    // The fsync fails, then the fsync of each repair copy as well.
    s.inject_fsync_failures.store(3, Ordering::Release);
    assert!(s.sync().is_err());
    assert_eq!(s.stats().durable_seq, durable, "nothing more is durable");
    assert!(lock(&s.inner).repair_needed);
    assert!(
        !lock(&s.inner).pending.is_empty(),
        "the bytes are still held"
    );
    // Appends go on while the disk misbehaves.
    closes(&s, 25, 30);

    // The disk is back: the next sync repairs first.
    s.sync().unwrap();
    assert_eq!(s.stats().durable_seq, s.stats().last_seq);
    assert!(!lock(&s.inner).repair_needed);
    drop(s);
    let (_, rec) = Spool::open(cfg(&dir, 1024)).unwrap();
    assert_eq!((rec.corrupt, rec.torn_bytes), (0, 0), "{rec:?}");
    let (all, _) = Spool::read_all(dir.path()).unwrap();
    assert_all_closes(&all, 30);
}

#[test]
fn group_commit_repairs_on_its_own() {
    let dir = temp_dir("spool-repair-commit");
    let (s, _) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    let commit = s.spawn_group_commit();
    closes(&s, 0, 3);
    s.inject_fsync_failures.store(1, Ordering::Release);
    closes(&s, 3, 6);
    wait_durable(&s, 6);
    assert_eq!(s.stats().durable_seq, 6);
    assert_eq!(s.stats().fsync_failures, 1);
    commit.stop().unwrap();
    drop(s);
    let (all, _) = Spool::read_all(dir.path()).unwrap();
    assert_all_closes(&all, 6);
}

#[test]
fn an_unfinished_repair_copy_is_removed_at_open() {
    let dir = temp_dir("spool-repair-stale");
    let (s, _) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    closes(&s, 0, 4);
    drop(s);
    let stale = dir.join("seg-00000000000000000001.log.repair");
    fs::write(&stale, b"half a copy").unwrap();
    let (s, rec) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    assert!(!stale.exists());
    assert_eq!((rec.corrupt, rec.torn_bytes), (0, 0));
    assert_all_closes(&s.read_closes(0, 100).unwrap(), 4);
}

#[test]
fn while_fsyncs_fail_the_bytes_held_are_bounded_by_refusing_new_calls() {
    let dir = temp_dir("spool-repair-bound");
    let max = 256 << 10;
    let (s, _) = Spool::open(SpoolConfig {
        max_bytes: max,
        ..cfg(&dir, 1 << 20)
    })
    .unwrap();
    s.inject_fsync_failures.store(u32::MAX, Ordering::Release);
    let mut i = 0;
    while !s.is_full() {
        assert!(i < 10_000, "never full");
        s.append(&[(Kind::Open, key(i), &close_payload(i))])
            .unwrap();
        if i % 50 == 0 {
            assert!(s.sync().is_err(), "the disk is broken");
        }
        i += 1;
    }
    assert!(lock(&s.inner).pending_bytes >= max / 4);
    assert!(s.stats().bytes < max, "the disk cap is not what refuses");
    assert!(s.stats().full);
    // A new call is refused; a finished one is still written (and held).
    assert!(matches!(
        s.append(&[(Kind::Open, key(i), b"new")]),
        Err(SpoolError::Full)
    ));
    s.append(&[(Kind::Close, key(0), &close_payload(0))])
        .unwrap();

    // The disk is back: the repair writes everything and calls are taken again.
    s.inject_fsync_failures.store(0, Ordering::Release);
    s.sync().unwrap();
    assert!(!s.is_full());
    assert_eq!(lock(&s.inner).pending_bytes, 0);
    let last = s.stats().last_seq;
    drop(s);
    let (_, rec) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    assert_eq!((rec.corrupt, rec.torn_bytes), (0, 0), "{rec:?}");
    assert_eq!(
        rec.open.len() as u64,
        i - 1,
        "every call journaled, the closed one not"
    );
    assert_eq!(rec.unacked, 1);
    assert_eq!(Spool::read_all(dir.path()).unwrap().0.len() as u64, last);
}
