//! Reconciliation end to end, against known truth: our records (a spool and an export file,
//! as the gateway leaves them) and their durations uploaded to the emulator through
//! `msapi::HttpApi`; discrepancies injected into the emulator's call records; the daemon's
//! task pulls and reports; the report finds exactly the injected discrepancies, and
//! `ocedge reconcile` prints the same totals, from the local store and from the API.

// The temporary directories of the tests (`src/testdir.rs`); this suite does without the
// rest of `support`.
#[path = "../src/testdir.rs"]
mod testdir;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ocedge::cdr::export::ExportRow;
use ocedge::cdr::spool::{key_of, Kind, Spool, SpoolConfig};
use ocedge::cdr::{record_id, CallRecord, Direction, Disposition, EndReason, SideName};
use ocedge::config::Api;
use ocedge::emulator::{Emulator, EmulatorConfig};
use ocedge::msapi::{BoxFuture, DurationBatch, DurationsApi, HttpApi};
use ocedge::numbers::sync::Clock;
use ocedge::reconcile::{OurSource, Params, PullConfig, Reconciler, ServiceConfig, Step};
use serde_json::{json, Value};
use testdir::{temp_dir, TempDir};
use tokio_util::sync::CancellationToken;

/// 2024-05-01T10:00:00Z: the window reconciled is this hour.
const T0: u64 = 1_714_557_600_000;
const HOUR: u64 = 3_600_000;
const SECRET_VAR: &str = "OCEDGE_RECONCILE_E2E_SECRET";

/// Wall time stands at T0 + 2 h; waits are short real ones.
struct At(u64);

impl Clock for At {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d.min(Duration::from_millis(20))))
    }
}

/// An answered call `call_id` (fork `tag`), answered `answer_s` seconds into the hour;
/// outbound (Teams → PSTN) when `out`.
fn answered(call_id: &str, tag: &str, answer_s: u64, duration_ms: u64, out: bool) -> CallRecord {
    let answer = T0 + answer_s * 1000;
    let (caller, callee, direction, side) = match out {
        true => (
            "+12065550123",
            "+13125550000",
            Direction::Outbound,
            SideName::Microsoft,
        ),
        false => (
            "+13125550000",
            "+14255550100",
            Direction::Inbound,
            SideName::Carrier,
        ),
    };
    CallRecord {
        id: record_id(call_id.as_bytes(), b"from", tag.as_bytes(), 1),
        call_id: call_id.into(),
        direction,
        tenant_id: "bdd640fb-0667-4ad1-9c80-317fa3b1799d".into(),
        caller_number: caller.into(),
        callee_number: callee.into(),
        sip_uri: "sip:+14255550100@tenant-a.teams.example.com;user=phone".into(),
        start_ms: answer - 3000,
        answer_ms: Some(answer),
        end_ms: answer + duration_ms,
        duration_ms,
        disposition: Disposition::Answered,
        final_status: 200,
        end_reason: EndReason::CallerBye,
        sbc: "sbc1".into(),
        side,
    }
}

/// A call that failed (486) or was cancelled (487) `start_s` seconds into the hour.
fn unanswered(call_id: &str, start_s: u64, disposition: Disposition) -> CallRecord {
    let start = T0 + start_s * 1000;
    let (final_status, end_reason) = match disposition {
        Disposition::Cancelled => (487, EndReason::Cancelled),
        _ => (486, EndReason::Rejected),
    };
    CallRecord {
        answer_ms: None,
        start_ms: start,
        end_ms: start + 4000,
        duration_ms: 0,
        disposition,
        final_status,
        end_reason,
        ..answered(call_id, "", start_s, 0, false)
    }
}

/// Our records of the hour. `lost@sbc` never reached Microsoft (it is not uploaded).
fn our_records() -> Vec<CallRecord> {
    let mut v = Vec::new();
    for i in 0..10 {
        v.push(answered(
            &format!("a{i}@sbc"),
            "t",
            60 + i * 240,
            30_000 + i * 27_000,
            false,
        ));
    }
    for i in 0..3 {
        v.push(answered(
            &format!("o{i}@teams"),
            "t",
            200 + i * 600,
            45_000 + i * 1000,
            true,
        ));
    }
    v.push(answered("fork@sbc", "t1", 1800, 120_000, false));
    v.push(answered("fork@sbc", "t2", 1803, 20_000, false));
    v.push(unanswered("f0@sbc", 900, Disposition::Failed));
    v.push(unanswered("c0@sbc", 1500, Disposition::Cancelled));
    v.push(answered("lost@sbc", "", 2400, 61_000, false));
    // Ends 500 ms before the hour is over: still this window's.
    v.push(answered("edge@sbc", "", 3500, 99_500, false));
    v
}

/// The counts per class the injection must give.
const TOTALS: [(&str, u64); 5] = [
    ("matched", 11),
    ("durationMismatch", 4),
    ("missingOurs", 1),
    ("missingMicrosoft", 2),
    ("notBillable", 2),
];

/// What the emulator is told to get wrong.
fn discrepancies() -> Value {
    json!({
        "driftByCallId": {"a2@sbc": 3000, "o1@teams": -1500, "a5@sbc": 800, "fork@sbc": 2000},
        "dropCallIds": ["a7@sbc"],
        "extraRecords": [{"callId": "ghost@ms", "callerNumber": "+13125550000",
                          "calleeNumber": "+14255559999", "startDateTime": "2024-05-01T10:40:00Z",
                          "endDateTime": "2024-05-01T10:43:20Z", "tenantId": "bdd640fb-0667-4ad1-9c80-317fa3b1799d"}]
    })
}

/// `(class, call id, diff)` of the discrepancies the injection must produce, sorted.
fn expected() -> Vec<(String, String, Option<i64>)> {
    let mut v: Vec<(String, String, Option<i64>)> = [
        ("durationMismatch", "a2@sbc", Some(3000)),
        ("durationMismatch", "o1@teams", Some(-1500)),
        ("durationMismatch", "fork@sbc", Some(2000)),
        ("durationMismatch", "fork@sbc", Some(2000)),
        ("missingMicrosoft", "a7@sbc", None),
        ("missingMicrosoft", "lost@sbc", None),
        ("missingOurs", "ghost@ms", None),
    ]
    .into_iter()
    .map(|(c, id, d)| (c.to_owned(), id.to_owned(), d))
    .collect();
    v.sort();
    v
}

/// The `(class, callId, diffMs)` of JSON findings, sorted.
fn found(findings: &[Value]) -> Vec<(String, String, Option<i64>)> {
    let mut v: Vec<_> = findings
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap_or_default().to_owned(),
                f["callId"].as_str().unwrap_or_default().to_owned(),
                f["diffMs"].as_i64(),
            )
        })
        .collect();
    v.sort();
    v
}

struct Bed {
    dir: TempDir,
    base: String,
    api: Arc<HttpApi>,
    cancel: CancellationToken,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The emulator, a client with small pages, `records` uploaded, and `discrepancies` in force.
async fn bed(name: &str, records: &[CallRecord], discrepancies: Value) -> Bed {
    let cancel = CancellationToken::new();
    let running = Emulator::new(EmulatorConfig::default())
        .start("127.0.0.1:0".parse().expect("addr"), cancel.clone())
        .await
        .expect("emulator starts");
    let mut cfg: Api =
        toml::from_str(&format!("base_url = \"{}\"", running.base_url())).expect("[api]");
    cfg.page_size = 4;
    let api = Arc::new(HttpApi::new(&cfg, "s".into()).expect("client"));
    let batch = DurationBatch {
        value: records.iter().map(CallRecord::to_duration).collect(),
    };
    let res = api.upload(&batch.value).await.expect("upload");
    assert!(res.value.iter().all(|r| r.status == "accepted"), "{res:?}");
    let resp = reqwest::Client::new()
        .post(format!("{}/emulator/discrepancies", running.base_url()))
        .json(&discrepancies)
        .send()
        .await
        .expect("control");
    assert_eq!(resp.status(), 200);
    let got: Value = reqwest::get(format!("{}/emulator/discrepancies", running.base_url()))
        .await
        .expect("control")
        .json()
        .await
        .expect("JSON");
    let drops = discrepancies
        .get("dropCallIds")
        .cloned()
        .unwrap_or(json!([]));
    assert_eq!(got["dropCallIds"], drops, "GET shows what is in force");
    Bed {
        dir: temp_dir(&format!("reconcile-e2e-{name}")),
        base: running.base_url(),
        api,
        cancel,
    }
}

/// Writes `records` to a spool in `dir` as the gateway would, all acknowledged, and to an
/// export file (the same records twice: readers key on the id).
fn write_ours(dir: &Path, records: &[CallRecord]) {
    let (spool, _) = Spool::open(SpoolConfig {
        dir: dir.join("spool"),
        segment_bytes: 1 << 20,
        fsync_interval: Duration::from_millis(20),
        max_bytes: 1 << 30,
        alarm_ratio: 0.9,
    })
    .expect("spool");
    let payloads: Vec<(String, Vec<u8>)> =
        records.iter().map(|r| (r.id.clone(), r.encode())).collect();
    let batch: Vec<(Kind, [u8; 16], &[u8])> = payloads
        .iter()
        .map(|(id, p)| (Kind::Close, key_of(id), p.as_slice()))
        .collect();
    let first = spool.append(&batch).expect("append");
    spool.sync().expect("sync");
    spool.ack(first + batch.len() as u64 - 1).expect("ack");
    std::fs::create_dir_all(dir.join("export")).expect("export dir");
    let lines: String = records
        .iter()
        .map(|r| ExportRow::of(r).json() + "\n")
        .collect();
    std::fs::write(dir.join("export/cdr-20240501T100000Z.jsonl"), lines).expect("export file");
}

/// The shipped configuration pointed at the bed.
fn config_file(b: &Bed) -> PathBuf {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ocedge.toml"))
        .expect("config");
    let d = b.dir.display();
    let mut text = base;
    for (from, to) in [
        (
            "\nbase_url = \"embedded\"",
            format!("\nbase_url = \"{}\"", b.base),
        ),
        (
            "\nscope =",
            format!("\nclient_secret_env = \"{SECRET_VAR}\"\nscope ="),
        ),
        (
            "spool_dir = \"var/spool\"",
            format!("spool_dir = \"{d}/spool\""),
        ),
        (
            "dir = \"var/reconcile\"",
            format!("dir = \"{d}/reconcile\""),
        ),
        (
            "# [cdr.export]\n# dir = \"var/cdr\"",
            format!("[cdr.export]\ndir = \"{d}/export\""),
        ),
    ] {
        text = text.replace(from, &to);
    }
    assert!(text.contains("[cdr.export]") && text.contains(&format!("{d}/reconcile")));
    let path = b.dir.join("ocedge.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

async fn cli(config: &Path, extra: &[&str]) -> String {
    let window = [
        "--from",
        "2024-05-01T10:00:00Z",
        "--to",
        "2024-05-01T11:00:00Z",
    ];
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocedge"))
        .args(["reconcile", "--config"])
        .arg(config)
        .args(window.iter().chain(extra))
        .env(SECRET_VAR, "anything")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("ocedge runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout.into_owned()
}

/// Multi-threaded, as in the daemon: the task's file work runs in `block_in_place`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_finds_exactly_the_injected_discrepancies() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let ours = our_records();
        let uploaded: Vec<_> = ours
            .iter()
            .filter(|r| r.call_id != "lost@sbc")
            .cloned()
            .collect();
        let b = bed("truth", &uploaded, discrepancies()).await;
        write_ours(&b.dir, &ours);
        // The daemon's task: pull until caught up, report the settled hour.
        let service = ServiceConfig {
            dir: b.dir.join("reconcile"),
            interval: Duration::from_secs(60),
            report_window: Duration::from_secs(3600),
            params: Params::default(),
            pull: PullConfig {
                backfill: Duration::from_secs(3 * 3600),
                ..PullConfig::default()
            },
        };
        let source = OurSource {
            spool_dir: b.dir.join("spool"),
            export: Some((b.dir.join("export"), Duration::from_secs(3600))),
        };
        let mut task = Reconciler::new(service, source, b.api.clone(), Arc::new(At(T0 + 2 * HOUR)))
            .expect("reconciler");
        let cancel = CancellationToken::new();
        while task.tick(&cancel).await.expect("tick") != Step::Idle {}
        assert_eq!(
            task.report_cursor(),
            T0 + HOUR,
            "the hour is reported, the next is not settled"
        );
        let report = b
            .dir
            .join("reconcile/reports/report-20240501T100000Z-20240501T110000Z.jsonl");
        let lines: Vec<Value> = std::fs::read_to_string(&report)
            .expect("report written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines[0]["complete"], true);
        for (class, n) in TOTALS {
            assert_eq!(lines[0]["counts"][class], n, "{class}: {}", lines[0]);
        }
        assert_eq!(found(&lines[1..]), expected(), "exactly the injected ones");
        assert_eq!(
            lines[0]["ourRecords"],
            ours.len(),
            "spool and export: once each"
        );
        let s = task.stats().snapshot();
        let classes = (
            s.matched,
            s.duration_mismatch,
            s.missing_microsoft,
            s.missing_ours,
        );
        assert_eq!(classes, (11, 4, 2, 1), "the counters for metrics");

        // The command: the store covers the hour, so it reads the store.
        let config = config_file(&b);
        let table = cli(&config, &[]).await;
        let count = |class: &str| {
            let line = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(class));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        };
        for (class, n) in TOTALS.into_iter().chain([("discrepancies", 7)]) {
            assert_eq!(count(class), Some(n), "{class} in\n{table}");
        }
        assert!(table.contains("local store"), "{table}");
        let worst: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("worst"))
            .collect();
        assert!(
            worst[2].starts_with("missingMicrosoft") && worst[2].contains("a7@sbc"),
            "{table}"
        );
        assert!(
            worst
                .iter()
                .any(|l| l.contains("+3000") && l.contains("a2@sbc")),
            "{table}"
        );
        let json: Value =
            serde_json::from_str(&cli(&config, &["--format", "json"]).await).expect("JSON");
        assert_eq!(json["counts"], lines[0]["counts"]);
        let findings = json["findings"].as_array().cloned().unwrap_or_default();
        assert_eq!(found(&findings), expected());
        // Straight from the API: the same answer.
        let csv = cli(&config, &["--source", "api", "--format", "csv"]).await;
        assert_eq!(csv.lines().count(), 1 + expected().len(), "{csv}");
        assert!(csv.starts_with("class,matchedBy,callId"));
        let all = cli(&config, &["--source", "api", "--format", "json", "--all"]).await;
        let all: Value = serde_json::from_str(&all).expect("JSON");
        assert_eq!(all["counts"], lines[0]["counts"]);
        assert!(all["notes"].to_string().contains("read from the API"));
        assert_eq!(all["findings"].as_array().map(Vec::len), Some(11 + 7 + 2));
    })
    .await
    .expect("bounded");
}
