//! Benches of the number table (issue 4 goals in brackets):
//!
//! - lookup in a 10,000,000-number table, hit and miss [p99 < 200 ns]: criterion's mean;
//!   each lookup timed alone (p50/p99/p99.9, the clock's own cost shown) and the p99 of
//!   100-lookup batches; all against the baseline of this machine: one random 8-byte read
//!   in a 256 MB array, timed the same ways, and again with the array in 2 MB huge pages
//!   (a lookup cannot beat one cache miss);
//! - resident bytes per number [< 150]: RSS growth while building the table;
//! - a 10,000-change delta applied [< 50 ms, no reader stall]: criterion's mean (parsing
//!   shown apart); a reader thread's lookups, each timed, during applies, alone for as
//!   long, and beside a thread that only burns CPU for as long (the control: on a small
//!   machine the OS preempts the reader for any busy thread);
//! - snapshot of 1,000,000 numbers written and loaded [load well under 1 s];
//! - full sync of 1,000,000 numbers from the emulator over HTTP [< 20 s].
//!
//! ```sh
//! cargo bench --bench numbers                               # everything, ~2.5 min
//! OCEDGE_BENCH_NUMBERS=1000000 cargo bench --bench numbers  # smaller table
//! OCEDGE_BENCH_ONLY=delta,snapshot cargo bench --bench numbers
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use tokio_util::sync::CancellationToken;

use ocedge::config::{Api, Dur};
use ocedge::emulator::{Emulator, EmulatorConfig, NumberSpec};
use ocedge::msapi::{HttpApi, NumberEntry};
use ocedge::numbers::{snapshot, Batch, NumberTable, Source, SyncConfig, Syncer};
use ocedge::sip::number::E164;

/// Numbers per tenant in the generated tables (contiguous blocks, like real ranges).
const PER_TENANT: u64 = 1000;
const DELTA: usize = 10_000;

/// `OCEDGE_BENCH_ONLY=lookup,delta,snapshot,sync` runs only those parts (the table is
/// built for `lookup` and `delta`).
fn wanted(part: &str) -> bool {
    std::env::var("OCEDGE_BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p == part))
}

fn table_size() -> u64 {
    std::env::var("OCEDGE_BENCH_NUMBERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

/// The i-th generated number: `+1` and ten digits, spread over area codes 200–999.
fn number(i: u64) -> String {
    format!("+1{}", 2_000_000_000 + i * 7)
}

fn tenant(i: u64) -> String {
    let t = i / PER_TENANT;
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        t as u32,
        t.wrapping_mul(2_654_435_761)
    )
}

fn entry(i: u64, tenant_of: u64) -> NumberEntry {
    let n = number(i);
    NumberEntry {
        sip_uri: format!(
            "sip:{n}@tenant{}.teams.example.com;user=phone",
            tenant_of / PER_TENANT
        ),
        telephone_number: n,
        tenant_id: tenant(tenant_of),
        usage: "CallingUserAssignment".into(),
        assignment_status: "assigned".into(),
        capabilities: vec!["InboundCalling".into(), "OutboundCalling".into()],
        last_modified_date_time: String::new(),
        removed: None,
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn build(n: u64) -> NumberTable {
    let table = NumberTable::new();
    let mut batch = Batch::new();
    for i in 0..n {
        let _ = batch.push(&entry(i, i));
    }
    table.install(batch, Source::Sync);
    table
}

/// A cheap, reproducible random sequence (xorshift) so lookups defeat the caches.
fn shuffled(n: u64, count: usize, salt: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ salt;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// Each lookup timed alone; returns (p50, p99, p99.9, max) in ns, clock overhead included.
fn latencies(table: &NumberTable, keys: &[E164]) -> [u64; 4] {
    let mut ns: Vec<u64> = keys
        .iter()
        .map(|k| {
            let t = Instant::now();
            black_box(table.lookup(black_box(k)));
            t.elapsed().as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    [0.5, 0.99, 0.999, 1.0].map(|p| percentile(&ns, p))
}

fn clock_overhead() -> u64 {
    let mut ns: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    percentile(&ns, 0.5)
}

/// The machine's own cost of one random read in a table-sized array (same sizes as the
/// 10M-number table: 256 MB), alone (timed one at a time) and in batches: the floor any
/// design pays, to read lookup figures against.
fn memory_baseline() -> (u64, u64) {
    let words = 32usize << 20;
    let mut v: Vec<u64> = (0..words as u64).collect();
    let idx = shuffled(words as u64, 1 << 20, 9);
    for (i, w) in v.iter_mut().enumerate() {
        *w = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let mut alone: Vec<u64> = idx
        .iter()
        .map(|&i| {
            let t = Instant::now();
            black_box(v.get(black_box(i as usize)).copied());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    alone.sort_unstable();
    let t = Instant::now();
    let sum: u64 = idx
        .iter()
        .map(|&i| v.get(i as usize).copied().unwrap_or(0))
        .fold(0, u64::wrapping_add);
    black_box(sum);
    let batched = t.elapsed().as_nanos() as u64 / idx.len() as u64;
    let p50 = percentile(&alone, 0.5);
    println!(
        "baseline: one random read in 256 MB, timed alone: p50 {p50} ns, p99 {} ns; \
         in a loop: {batched} ns per read",
        percentile(&alone, 0.99)
    );
    huge_page_baseline(&idx);
    (p50, batched)
}

/// The same random reads in 256 MB of anonymous memory backed by 2 MB transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`), which takes TLB misses out of the read: the lowest
/// latency a cold lookup can have on this machine, whatever the table's layout.
fn huge_page_baseline(idx: &[u64]) {
    let bytes = 256usize << 20;
    let Ok(mut map) = memmap2::MmapOptions::new().len(bytes).map_anon() else {
        println!("baseline with huge pages: anonymous map refused");
        return;
    };
    let advised = map.advise(memmap2::Advice::HugePage).is_ok();
    for (i, b) in map.iter_mut().enumerate().step_by(64) {
        *b = i as u8;
    }
    let huge_kb = std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut alone: Vec<u64> = idx
        .iter()
        .map(|&i| {
            let at = (i as usize * 8) % bytes;
            let t = Instant::now();
            black_box(map.get(black_box(at)).copied());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    alone.sort_unstable();
    println!(
        "baseline with huge pages (advised: {advised}, {} MB in huge pages): one random read \
         in 256 MB, timed alone: p50 {} ns, p99 {} ns",
        huge_kb / 1024,
        percentile(&alone, 0.5),
        percentile(&alone, 0.99)
    );
}

fn lookups(c: &mut Criterion) {
    if !wanted("lookup") && !wanted("delta") {
        return;
    }
    let n = table_size();
    let before = rss_bytes();
    let started = Instant::now();
    let table = build(n);
    let built = started.elapsed();
    let after = rss_bytes();
    let view = table.view();
    println!(
        "table: {n} numbers, {} shards, built in {built:.2?}; RSS +{} MB = {:.1} bytes/number",
        view.shard_count(),
        (after - before) >> 20,
        (after - before) as f64 / n as f64
    );
    drop(view);
    if wanted("lookup") {
        lookup_latency(c, &table, n);
    }
    if wanted("delta") {
        delta(c, &table, n);
    }
}

fn lookup_latency(c: &mut Criterion, table: &NumberTable, n: u64) {
    let hits: Vec<E164> = shuffled(n, 1_000_000, 1)
        .into_iter()
        .map(|i| E164::parse(&number(i)).unwrap())
        .collect();
    // Misses: numbers between the generated ones (not a multiple of 7 apart).
    let misses: Vec<E164> = shuffled(n, 1_000_000, 2)
        .into_iter()
        .map(|i| E164::parse(&format!("+1{}", 2_000_000_003 + i * 7)).unwrap())
        .collect();
    assert!(table.lookup(&hits[0]).is_some() && table.lookup(&misses[0]).is_none());
    let (base_alone, _) = memory_baseline();

    let mut g = c.benchmark_group("lookup_10m");
    for (name, keys) in [("hit", &hits), ("miss", &misses)] {
        g.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % keys.len();
                table.lookup(black_box(&keys[i])).is_some()
            })
        });
    }
    g.bench_function("hit_borrowed_view", |b| {
        let view = table.view();
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % hits.len();
            view.get(black_box(&hits[i])).is_some()
        })
    });
    g.finish();

    let overhead = clock_overhead();
    for (name, keys) in [("hit", &hits), ("miss", &misses)] {
        let [p50, p99, p999, max] = latencies(table, keys);
        println!(
            "lookup {name} (each timed alone, clock overhead ~{overhead} ns included): \
             p50 {p50} ns ({:.1}x baseline), p99 {p99} ns, p99.9 {p999} ns, max {max} ns",
            p50 as f64 / base_alone.max(1) as f64
        );
        let mut per: Vec<u64> = keys
            .chunks(100)
            .map(|chunk| {
                let t = Instant::now();
                for k in chunk {
                    black_box(table.lookup(black_box(k)));
                }
                t.elapsed().as_nanos() as u64 / chunk.len() as u64
            })
            .collect();
        per.sort_unstable();
        println!(
            "lookup {name} (batches of 100): p50 {} ns, p99 {} ns per lookup",
            percentile(&per, 0.5),
            percentile(&per, 0.99)
        );
    }
}

/// 10,000 changes: 4,000 new numbers, 4,000 moved to another tenant, 2,000 removed.
fn changes(n: u64, round: u64) -> Vec<NumberEntry> {
    let picks = shuffled(n, DELTA, 100 + round);
    picks
        .iter()
        .enumerate()
        .map(|(j, &i)| match j % 5 {
            0 | 1 => entry(n + round * DELTA as u64 + j as u64, i),
            2 | 3 => entry(i, i + PER_TENANT),
            _ => NumberEntry {
                removed: Some(ocedge::msapi::Removed {
                    reason: "deleted".into(),
                }),
                ..entry(i, i)
            },
        })
        .collect()
}

fn delta(c: &mut Criterion, table: &NumberTable, n: u64) {
    let rounds: Vec<Vec<NumberEntry>> = (0..8).map(|r| changes(n, r)).collect();
    let mut g = c.benchmark_group("delta_10m");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("parse_10k_changes", |b| {
        b.iter(|| {
            let mut batch = Batch::new();
            batch.extend(&rounds[0]);
            batch.entries()
        })
    });
    g.bench_function("apply_10k_changes", |b| {
        let mut r = 0usize;
        b.iter(|| {
            r = (r + 1) % rounds.len();
            table.apply_delta(&rounds[r])
        })
    });
    g.finish();

    // Reader stall: a reader thread's lookups, each timed, during the applies and alone for
    // as long. A reader that waited for a writer would show one slow lookup per apply, as
    // long as the apply; preemption by the OS shows alike in both windows.
    let keys: Vec<E164> = shuffled(n, 1 << 20, 3)
        .into_iter()
        .map(|i| E164::parse(&number(i)).unwrap())
        .collect();
    let keys = Arc::new(keys);
    let reader = |stop: Arc<AtomicBool>| {
        let (table, keys) = (table.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut all = Vec::with_capacity(1 << 22);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i = (i + 1) % keys.len();
                let t = Instant::now();
                black_box(table.lookup(&keys[i]));
                all.push(t.elapsed().as_nanos() as u64);
            }
            all.sort_unstable();
            all
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let during = reader(stop.clone());
    let started = Instant::now();
    let mut times = Vec::new();
    for round in &rounds {
        let t = Instant::now();
        table.apply_delta(round);
        times.push(t.elapsed());
    }
    let window = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = during.join().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let alone = reader(stop.clone());
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let alone = alone.join().unwrap();
    // Control: the reader while another thread only burns CPU, as long (on a small machine
    // the OS preempts the reader for a busy writer whatever it does).
    let stop = Arc::new(AtomicBool::new(false));
    let busy_reader = reader(stop.clone());
    let burner = std::thread::spawn(move || {
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < window {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    });
    burner.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let busy = busy_reader.join().unwrap();
    let worst_apply = times.iter().max().copied().unwrap_or_default();
    let mean_apply = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "delta {DELTA} changes x{} while a reader thread runs: mean {mean_apply:.2?}, worst {worst_apply:.2?}",
        times.len()
    );
    for (name, ns) in [
        ("during applies", &during),
        ("alone, as long", &alone),
        ("beside a CPU burner, as long", &busy),
    ] {
        println!(
            "reader {name}: {} lookups, p99.9 {} ns, p99.99 {} ns, {} over 1 ms, max {:.2?}",
            ns.len(),
            percentile(ns, 0.999),
            percentile(ns, 0.9999),
            ns.iter().filter(|&&x| x > 1_000_000).count(),
            Duration::from_nanos(ns.last().copied().unwrap_or(0)),
        );
    }
}

fn snapshot_1m(_c: &mut Criterion) {
    if !wanted("snapshot") {
        return;
    }
    let table = build(1_000_000);
    let dir = std::env::temp_dir().join(format!("ocedge-bench-{}", std::process::id()));
    let path = dir.join("numbers.snapshot");
    let t = Instant::now();
    let w = snapshot::write(&path, &table.view(), Some("delta-link"), SystemTime::now()).unwrap();
    let write = t.elapsed();
    let mut loads = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let loaded = snapshot::read(&path).unwrap().unwrap();
        let read = t.elapsed();
        let fresh = NumberTable::new();
        fresh.install(loaded.batch, Source::Snapshot);
        loads.push((read, t.elapsed()));
        assert_eq!(fresh.len(), 1_000_000);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "snapshot 1M: {} MB, {} profiles, written (fsync'd) in {write:.2?}; \
         loaded: {}",
        w.bytes >> 20,
        w.profiles,
        loads
            .iter()
            .map(|(r, all)| format!("read+check {r:.2?} / installed {all:.2?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn full_sync_1m(_c: &mut Criterion) {
    if !wanted("sync") {
        return;
    }
    let n = 1_000_000u64;
    let seed: Vec<NumberSpec> = (0..n)
        .map(|i| {
            let e = entry(i, i);
            NumberSpec::new(&e.telephone_number, &e.tenant_id, &e.sip_uri, &e.usage).unwrap()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let emu = Emulator::new(EmulatorConfig {
            seed,
            ..EmulatorConfig::default()
        })
        .start(([127, 0, 0, 1], 0).into(), cancel.clone())
        .await
        .unwrap();
        let api = Api {
            base_url: emu.base_url(),
            tenant: "operator".into(),
            client_id: "ocedge".into(),
            client_secret_file: None,
            client_secret_env: None,
            scope: "https://graph.microsoft.com/.default".into(),
            timeout: Dur(Duration::from_secs(30)),
            page_size: 1000,
        };
        for run in 1..=2 {
            let client = Arc::new(HttpApi::new(&api, "secret".into()).unwrap());
            let table = NumberTable::new();
            let stop = cancel.child_token();
            let t = Instant::now();
            let task = tokio::spawn(
                Syncer::new(client, table.clone(), SyncConfig::default()).run(stop.clone()),
            );
            while !table.is_loaded() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let took = t.elapsed();
            stop.cancel();
            let _ = task.await;
            assert_eq!(table.len() as u64, n);
            println!("full sync of {n} numbers from the emulator over HTTP, run {run}: {took:.2?}");
        }
        cancel.cancel();
        let _ = emu.wait().await;
    });
}

criterion_group!(benches, lookups, snapshot_1m, full_sync_1m);
criterion_main!(benches);
