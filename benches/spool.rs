//! Benches of the call-record spool (issue 5 goal in brackets), each beside a baseline
//! timed the same way in the same process:
//!
//! - `durable`: batches of 100 realistic records (~450-byte `CallRecord` JSON) appended
//!   while the group-commit thread fsyncs every 20 ms (the default `fsync_interval`); a
//!   sample's time runs until the last record is fsynced, so records/s include the fsync
//!   cost [≥ 50,000 durable records/s]. Baseline: the same bytes written to a plain file
//!   by one thread with `fdatasync` every 20 ms.
//! - `append`: the same batches without any fsync (what a caller waits for). Baseline:
//!   `write(2)` of the same pre-encoded bytes to a plain file.
//!
//! Every sample starts on a fresh spool in the system temp dir, deleted afterwards.
//!
//! ```sh
//! cargo bench --bench spool -- --warm-up-time 1 --measurement-time 5
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use ocedge::cdr::spool::{key_of, Kind, Spool, SpoolConfig};
use ocedge::cdr::{record_id, CallRecord, Direction, Disposition, EndReason, SideName};

const BATCH: usize = 100;
const FSYNC_INTERVAL: Duration = Duration::from_millis(20);

fn record(i: u64) -> CallRecord {
    let call_id = format!("{i:016x}-4f1c-9a2e-7d3b@sbc1.carrier.example");
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
        sbc: "sbc1-east.carrier.example".into(),
        side: SideName::Carrier,
    }
}

/// Pre-encoded records: (key, payload).
fn payloads(n: u64) -> Vec<([u8; 16], Vec<u8>)> {
    (0..n)
        .map(|i| {
            let r = record(i);
            (key_of(&r.id), r.encode())
        })
        .collect()
}

fn fresh_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "ocedge-bench-spool-{what}-{}-{n}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &Path) -> std::sync::Arc<Spool> {
    let cfg = SpoolConfig {
        dir: dir.to_owned(),
        segment_bytes: 64 << 20,
        fsync_interval: FSYNC_INTERVAL,
        max_bytes: 1 << 40,
        alarm_ratio: 0.8,
    };
    Spool::open(cfg).expect("open spool").0
}

/// Appends `iters` batches; with `durable`, under group commit and until all is fsynced.
fn run_spool(recs: &[([u8; 16], Vec<u8>)], iters: u64, durable: bool) -> Duration {
    let dir = fresh_dir(if durable { "durable" } else { "append" });
    let spool = open(&dir);
    let start = Instant::now();
    let commit = durable.then(|| spool.spawn_group_commit());
    for i in 0..iters {
        let at = (i as usize * BATCH) % (recs.len() - BATCH);
        let batch: Vec<(Kind, [u8; 16], &[u8])> = recs[at..at + BATCH]
            .iter()
            .map(|(k, p)| (Kind::Close, *k, &p[..]))
            .collect();
        spool.append(&batch).expect("append");
    }
    if let Some(c) = commit {
        c.stop().expect("final sync");
        assert_eq!(spool.stats().durable_seq, iters * BATCH as u64);
    }
    let took = start.elapsed();
    drop(spool);
    let _ = fs::remove_dir_all(&dir);
    took
}

/// The baseline: the same bytes to a plain file, `fdatasync` every interval if `durable`.
fn run_file(bytes: &[u8], iters: u64, durable: bool) -> Duration {
    let dir = fresh_dir("file");
    fs::create_dir_all(&dir).expect("dir");
    let mut f = File::create(dir.join("plain")).expect("file");
    let start = Instant::now();
    let mut last_sync = start;
    for _ in 0..iters {
        f.write_all(bytes).expect("write");
        if durable && last_sync.elapsed() >= FSYNC_INTERVAL {
            f.sync_data().expect("fdatasync");
            last_sync = Instant::now();
        }
    }
    if durable {
        f.sync_data().expect("fdatasync");
    }
    let took = start.elapsed();
    drop(f);
    let _ = fs::remove_dir_all(&dir);
    took
}

fn benches(c: &mut Criterion) {
    let recs = payloads(10_000);
    let avg = recs.iter().map(|(_, p)| p.len()).sum::<usize>() / recs.len();
    eprintln!("spool bench: {avg}-byte payloads, batches of {BATCH}");
    // One batch as frames would be on disk (41 bytes of framing each), for the baseline.
    let frame_bytes: Vec<u8> = recs[..BATCH]
        .iter()
        .flat_map(|(_, p)| std::iter::repeat_n(0u8, 41).chain(p.iter().copied()))
        .collect();

    let mut g = c.benchmark_group("durable");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.bench_function("spool_group_commit", |b| {
        b.iter_custom(|iters| run_spool(&recs, iters, true))
    });
    g.bench_function("baseline_file_fdatasync", |b| {
        b.iter_custom(|iters| run_file(&frame_bytes, iters, true))
    });
    g.finish();

    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.bench_function("spool", |b| {
        b.iter_custom(|iters| run_spool(&recs, iters, false))
    });
    g.bench_function("baseline_file_write", |b| {
        b.iter_custom(|iters| run_file(&frame_bytes, iters, false))
    });
    g.finish();
}

criterion_group!(spool, benches);
criterion_main!(spool);
