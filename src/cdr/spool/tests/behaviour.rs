//! The spool's behaviour through its API and internals: reads resuming, the cleaning
//! threshold, tombstones, group commit, limits, the disk cap, concurrency, the lock.

use std::sync::Arc;

use super::super::engine::lock;
use super::super::*;
use super::{cfg, closes, key, temp_dir, wait_durable};

#[test]
fn oversized_payloads_and_empty_batches_write_nothing() {
    let dir = temp_dir("spool-large");
    let (s, _) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    let big = vec![0u8; MAX_PAYLOAD + 1];
    let batch = [
        (Kind::Close, key(1), &b"ok"[..]),
        (Kind::Close, key(2), &big),
    ];
    assert!(matches!(s.append(&batch), Err(SpoolError::TooLarge { len, .. }) if len == big.len()));
    assert_eq!(s.append(&[]).unwrap(), 1, "the next seq");
    assert_eq!(s.stats().last_seq, 0);
    let max = vec![7u8; MAX_PAYLOAD];
    assert_eq!(s.append(&[(Kind::Close, key(3), &max)]).unwrap(), 1);
    assert_eq!(s.read_closes(0, 1).unwrap()[0].payload, max);
}

#[test]
fn reads_resume_where_they_stopped_and_match_a_full_read() {
    let dir = temp_dir("spool-resume");
    let (s, _) = Spool::open(cfg(&dir, 1024)).unwrap();
    closes(&s, 0, 30);
    s.append(&[(Kind::Open, key(900), b"open")]).unwrap();
    closes(&s, 30, 60);
    assert!(s.stats().segments > 3);
    let (mut after, mut got) = (0, Vec::new());
    loop {
        let batch = s.read_closes(after, 7).unwrap();
        let Some(last) = batch.last() else { break };
        assert!(batch.len() <= 7);
        let pos = *lock(&s.read_pos).last().unwrap();
        assert_eq!(
            (pos.lo, pos.hi),
            (last.seq, last.seq),
            "remembered for the next read"
        );
        after = last.seq;
        got.extend(batch.iter().map(|e| e.seq));
        if got.len() < 40 {
            closes(&s, 1000 + after, 1001 + after); // appends interleave with reads
        }
    }
    let full: Vec<u64> = s
        .read_closes(0, 1000)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(full.len() > 60 + 3, "{}", full.len());
    assert!(!full.contains(&31), "the Open is not a Close");
    assert_eq!(got, full);
    // Opens behind the last Close are read past on the way to the next Close.
    s.append(&[(Kind::Open, key(901), b"open")]).unwrap();
    assert!(s.read_closes(after, 7).unwrap().is_empty());
    let next = s.append(&[(Kind::Close, key(902), b"close")]).unwrap();
    let batch = s.read_closes(after, 7).unwrap();
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![next]);
    assert_eq!(batch[0].payload, b"close");
}

#[test]
fn a_segment_mostly_of_live_calls_is_kept_and_not_copied_over_and_over() {
    let dir = temp_dir("spool-churn");
    let (s, _) = Spool::open(cfg(&dir, 2048)).unwrap();
    let payload = [b'o'; 200];
    for i in 0..40 {
        s.append(&[(Kind::Open, key(i), &payload)]).unwrap();
    }
    closes(&s, 100, 140);
    let segments = s.stats().segments;
    for round in 0..5 {
        s.ack(s.stats().last_seq).unwrap();
        closes(&s, 200 + round, 201 + round);
    }
    let stats = s.stats();
    assert_eq!(stats.open_calls, 40);
    assert!(stats.segments < segments, "the segments of Closes went");
    // No Open was rewritten: each is still the frame first appended (seq i + 1).
    let g = lock(&s.inner);
    for i in 0..40 {
        assert_eq!(g.keys.live[&key(i)].seq, i + 1);
    }
}

#[test]
fn tombstones_keep_a_dead_open_from_coming_back() {
    let dir = temp_dir("spool-tomb");
    let (s, _) = Spool::open(cfg(&dir, 2048)).unwrap();
    let big = [b'L'; 300];
    // Segment A: the Open of K and enough live calls to keep A (over half of it live).
    s.append(&[(Kind::Open, key(7), b"call K")]).unwrap();
    for i in 100..105 {
        s.append(&[(Kind::Open, key(i), &big)]).unwrap();
    }
    let a = lock(&s.inner).active.first;
    // Segment B: K's Close, then enough to move on to segment C.
    lock(&s.inner).rotate().unwrap();
    s.append(&[(Kind::Close, key(7), b"record K")]).unwrap();
    lock(&s.inner).rotate().unwrap();
    s.append(&[(Kind::Close, key(8), b"record 8")]).unwrap();
    s.ack(s.stats().last_seq).unwrap();
    {
        let g = lock(&s.inner);
        assert!(g.segs.contains_key(&a), "A is mostly live: kept");
        assert_eq!(g.segs.len(), 2, "B deleted, A and the active one left");
        assert_eq!(g.keys.dead_len(), 1, "K's dead Open in A is tracked");
    }
    drop(s);
    let (s, rec) = Spool::open(cfg(&dir, 2048)).unwrap();
    let open: Vec<[u8; 16]> = rec.open.iter().map(|e| e.key).collect();
    assert_eq!(
        open,
        (100..105).map(key).collect::<Vec<_>>(),
        "K is not back"
    );
    assert_eq!(s.stats().open_calls, 5);
}

#[test]
fn group_commit_makes_appends_durable_and_stop_syncs() {
    let dir = temp_dir("spool-commit");
    let (s, _) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
    let gc = s.spawn_group_commit();
    closes(&s, 0, 10);
    wait_durable(&s, 10);
    closes(&s, 10, 12);
    gc.stop().unwrap();
    assert_eq!(s.stats().durable_seq, 12);
    assert_eq!(Arc::strong_count(&s), 1, "the thread let go of the spool");
}

#[test]
fn an_idle_group_commit_sleeps_until_the_next_append() {
    use std::sync::atomic::Ordering::Relaxed;
    let dir = temp_dir("spool-idle");
    let mut c = cfg(&dir, 1 << 20);
    c.fsync_interval = Duration::from_millis(1);
    let (s, _) = Spool::open(c).unwrap();
    let gc = s.spawn_group_commit();
    closes(&s, 0, 3);
    wait_durable(&s, 3);
    std::thread::sleep(Duration::from_millis(20));
    let before = s.commit.rounds.load(Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let idle = s.commit.rounds.load(Relaxed) - before;
    assert!(
        idle <= 1,
        "{idle} sync rounds in 300 ms idle at a 1 ms interval"
    );
    // An append wakes it: durable without any other sync.
    closes(&s, 3, 5);
    wait_durable(&s, 5);
    assert!(s.commit.rounds.load(Relaxed) > before + idle);
    gc.stop().unwrap();
    assert_eq!(Arc::strong_count(&s), 1, "the thread let go of the spool");
}

/// A ~450-byte payload, like a record's JSON.
fn payload(i: u64) -> Vec<u8> {
    format!("{{\"id\":\"{i:032x}\",\"pad\":\"{}\"}}", "r".repeat(400)).into_bytes()
}

#[test]
fn a_second_open_of_the_same_directory_is_locked() {
    let dir = temp_dir("spool-lock");
    let (s, _) = Spool::open(cfg(&dir, 4096)).unwrap();
    let second = Spool::open(cfg(&dir, 4096));
    assert!(matches!(second, Err(SpoolError::Locked(p)) if p == dir.path()));
    drop(s);
    assert!(
        Spool::open(cfg(&dir, 4096)).is_ok(),
        "released with the spool"
    );
}

#[test]
fn concurrent_appends_get_unique_consecutive_seqs() {
    let dir = temp_dir("spool-threads");
    let (s, _) = Spool::open(cfg(&dir, 64 << 10)).unwrap();
    let gc = s.spawn_group_commit();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..300u64 {
                    let ids: Vec<u64> = (0..1 + i % 3).map(|j| t << 32 | i << 2 | j).collect();
                    let bodies: Vec<Vec<u8>> = ids.iter().map(|&id| payload(id)).collect();
                    let batch: Vec<_> = bodies
                        .iter()
                        .map(|b| (Kind::Close, key(t), &b[..]))
                        .collect();
                    let first = s.append(&batch).unwrap();
                    got.extend((first..).zip(ids));
                }
                got
            })
        })
        .collect();
    let mut all: Vec<(u64, u64)> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    let n = all.len() as u64;
    let seqs: Vec<u64> = all.iter().map(|&(seq, _)| seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "unique and consecutive");
    gc.stop().unwrap();
    assert_eq!(s.stats().durable_seq, n);
    // Every entry is where its append said: batches went in whole, in seq order.
    let read = s.read_closes(0, 100_000).unwrap();
    assert_eq!(read.len(), all.len());
    for (e, &(seq, id)) in read.iter().zip(&all) {
        assert_eq!((e.seq, &e.payload), (seq, &payload(id)));
    }
}

#[test]
fn at_the_disk_cap_opens_are_refused_and_closes_still_written() {
    let dir = temp_dir("spool-cap");
    let mut c = cfg(&dir, 2000);
    c.max_bytes = 5000;
    c.alarm_ratio = 0.5;
    let (s, _) = Spool::open(c).unwrap();
    let close = |i: u64| s.append(&[(Kind::Close, key(i), &payload(i))]).unwrap();
    while s.stats().bytes < 2500 {
        close(1);
    }
    assert!(s.stats().alarm && !s.stats().full);
    while !s.is_full() {
        close(2);
    }
    let stats = s.stats();
    assert!(stats.full && stats.alarm, "{stats:?}");
    let open = payload(7);
    let refused = s.append(&[(Kind::Open, key(7), &open)]);
    assert!(matches!(refused, Err(SpoolError::Full)));
    let last = close(3);
    let mixed = s.append(&[
        (Kind::Open, key(7), &open),
        (Kind::Close, key(4), &payload(4)),
    ]);
    assert!(matches!(mixed, Err(SpoolError::Full)));
    let tail = s.read_closes(last - 1, 10).unwrap();
    let seqs: Vec<u64> = tail.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        vec![last, last + 1],
        "the Close of the mixed batch was written"
    );
    assert_eq!(tail[1].payload, payload(4));
    assert_eq!(s.stats().open_calls, 0, "no Open was journaled");
    s.ack(s.stats().last_seq).unwrap();
    assert!(!s.is_full() && !s.stats().alarm);
    assert!(s.append(&[(Kind::Open, key(7), &open)]).is_ok());
}
