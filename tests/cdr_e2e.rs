//! Call records end to end (`docs/cdr.md`): the real gateway with its embedded emulator
//! between a fake SBC and a fake Microsoft proxy on loopback UDP, whole calls driven through
//! it, and the records checked where they arrive: the emulator's call-durations store, the
//! spool, the export files and the `ocedge cdr` command.
//!
//! Durations are checked against the test's own clock: the test notes the instants just
//! before it sent the 2xx (the BYE) and just after the relayed message arrived, so the
//! gateway's answer→BYE time lies between the two differences (see
//! [`bed::duration_range`]), whatever the machine's load.

mod support;

#[path = "support/cdr.rs"]
mod bed;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ocedge::cdr::export::CSV_HEADER;
use ocedge::cdr::{rfc3339_ms, CallRecord, EndReason};
use ocedge::msapi::wire::DURATIONS_PATH;
use serde_json::{json, Value};

use bed::{
    all_acked, cli, duration_range, exported, id_of, one, spool_calls_up, spool_records, spooled,
    uploaded, Bed, Call, Dir, ALICE, ALICE_URI, CAROL, CAROL_URI, NOBODY, PSTN, TENANT,
};
use support::temp_dir;
use support::{bounded, ms, MsgExt};

/// How long answered calls are held.
const HOLD: Duration = Duration::from_millis(300);

/// Asserts an uploaded record of an answered `call` whose duration must lie in `range`.
fn assert_answered(r: &Value, call: &Call, range: (u64, u64)) {
    let (caller, callee) = call.dir.numbers();
    assert_eq!(r["callId"], call.leg.call_id.as_str(), "{r}");
    assert_eq!(r["direction"], call.dir.as_str(), "{r}");
    assert_eq!(r["tenantId"], TENANT, "{r}");
    assert_eq!(r["callerNumber"], caller, "{r}");
    assert_eq!(r["calleeNumber"], callee, "{r}");
    assert_eq!(r["disposition"], "answered", "{r}");
    assert_eq!(r["finalSipCode"], 200, "{r}");
    let duration = r["durationMs"].as_u64().expect("durationMs");
    assert!(
        (range.0..=range.1).contains(&duration),
        "durationMs {duration} outside the {range:?} ms the test saw: {r}"
    );
    let at = |name: &str| {
        let t = r[name].as_str().unwrap_or_else(|| panic!("no {name}: {r}"));
        humantime::parse_rfc3339(t).unwrap_or_else(|e| panic!("{name} {t:?}: {e}"))
    };
    let span = at("endDateTime").duration_since(at("answerDateTime"));
    assert_eq!(span.ok().map(|d| d.as_millis()), Some(u128::from(duration)));
    assert!(at("startDateTime") <= at("answerDateTime"), "{r}");
    for local in ["endReason", "sbc", "side", "sipUri"] {
        assert!(r.get(local).is_none(), "{local} is not uploaded: {r}");
    }
}

/// Answered calls both ways, hung up once by the caller and once by the callee: one record
/// each, uploaded with the right identity and the duration the test measured; the end
/// reason stays in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_are_uploaded_once_with_their_duration() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("cdr-answered"), "").await;

        let mut inbound = bed.call(Dir::Inbound).await;
        let answered = bed.answer(&mut inbound).await;
        tokio::time::sleep(HOLD).await;
        let ended = bed.caller_bye(&mut inbound).await;
        let in_range = duration_range(answered, ended, 1);

        let mut outbound = bed.call(Dir::Outbound).await;
        let answered = bed.answer(&mut outbound).await;
        tokio::time::sleep(HOLD).await;
        let ended = bed.callee_bye(&outbound).await;
        let out_range = duration_range(answered, ended, 1);

        let records = uploaded(&bed.ctl, 2).await;
        assert_eq!(records.len(), 2, "{records:?}");
        let spool = spool_records(bed.spool());
        assert_eq!(spool.len(), 2, "{spool:?}");
        let cases = [
            (
                &inbound,
                in_range,
                EndReason::CallerBye,
                ALICE_URI,
                "sip.pstnhub.microsoft.com",
            ),
            (
                &outbound,
                out_range,
                EndReason::CalleeBye,
                CAROL_URI,
                "sbc1",
            ),
        ];
        for (call, range, reason, sip_uri, sbc) in cases {
            let r = one(&records, &call.id());
            assert_answered(r, call, range);
            eprintln!(
                "{}: durationMs {} within {range:?}",
                call.dir.as_str(),
                r["durationMs"]
            );
            let s = spooled(&spool, &call.id());
            assert_eq!(s.end_reason, reason, "{s:?}");
            assert_eq!(Some(s.duration_ms), r["durationMs"].as_u64());
            assert_eq!((s.sip_uri.as_str(), s.sbc.as_str()), (sip_uri, sbc));
        }
        let stats = bed.ctl.stats().await;
        let counts = ["accepted", "duplicates", "rejected"].map(|k| stats[k].as_u64());
        assert_eq!(counts, [Some(2), Some(0), Some(0)], "{stats}");
        bed.stop().await;
    })
    .await;
}

/// A call the callee declines (486), one the gateway refuses (404, unassigned number) and
/// one the caller cancels (487): failed, failed and cancelled records, 0 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_refused_and_cancelled_calls_are_recorded() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("cdr-failed"), "").await;

        let declined = bed.call(Dir::Inbound).await;
        bed.decline(&declined, 486).await;
        let (refused, resp) = bed.refused(Dir::Inbound, NOBODY).await;
        assert_eq!(resp.code(), 404, "{}", resp.dump());
        let refused_id = id_of(&refused, &resp.to_tag().expect("the 404 has our To tag"));
        let cancelled = bed.call(Dir::Outbound).await;
        bed.cancel(&cancelled).await;

        let records = uploaded(&bed.ctl, 3).await;
        assert_eq!(records.len(), 3, "{records:?}");
        let spool = spool_records(bed.spool());
        let fields = |call_id: &str, disposition: &str, status: u16, numbers, tenant: &str| {
            let (caller, callee): (&str, &str) = numbers;
            json!({
                "callId": call_id, "disposition": disposition, "finalSipCode": status,
                "durationMs": 0, "callerNumber": caller, "calleeNumber": callee, "tenantId": tenant,
            })
        };
        let cases = [
            (
                declined.id(),
                fields(&declined.leg.call_id, "failed", 486, (PSTN, ALICE), TENANT),
            ),
            // The unassigned number has no tenant.
            (
                refused_id,
                fields(&refused.call_id, "failed", 404, (PSTN, NOBODY), ""),
            ),
            (
                cancelled.id(),
                fields(
                    &cancelled.leg.call_id,
                    "cancelled",
                    487,
                    (CAROL, PSTN),
                    TENANT,
                ),
            ),
        ];
        for (id, want) in cases {
            let r = one(&records, &id);
            for (k, v) in want.as_object().expect("an object") {
                assert_eq!(&r[k], v, "{k} of {r}");
            }
            assert!(r.get("answerDateTime").is_none(), "{r}");
            let s = spooled(&spool, &id);
            let reason = match s.final_status {
                487 => EndReason::Cancelled,
                _ => EndReason::Rejected,
            };
            assert_eq!((s.end_reason, s.answer_ms), (reason, None), "{s:?}");
        }
        bed.stop().await;
    })
    .await;
}

/// An API outage (connections dropped, then 503 with Retry-After) while calls end: no record
/// arrives during it, every one arrives exactly once after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_made_during_an_api_outage_arrive_once_after_it() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("cdr-outage"), "").await;
        let drop_all = json!({ "dropRate": 1.0, "pathPrefix": DURATIONS_PATH });
        let unavailable = json!({
            "errorRate": 1.0, "errorStatus": 503, "retryAfterSecs": 1, "pathPrefix": DURATIONS_PATH
        });
        bed.ctl.set_faults(drop_all).await;
        let outage = Instant::now();
        let mut ids = Vec::new();
        for (i, dir) in [Dir::Inbound, Dir::Outbound, Dir::Inbound]
            .into_iter()
            .enumerate()
        {
            let mut call = bed.call(dir).await;
            bed.answer(&mut call).await;
            tokio::time::sleep(ms(100)).await;
            if i == 1 {
                bed.callee_bye(&call).await;
            } else {
                bed.caller_bye(&mut call).await;
            }
            ids.push(call.id());
            tokio::time::sleep(ms(300)).await;
        }
        let declined = bed.call(Dir::Outbound).await;
        bed.decline(&declined, 486).await;
        ids.push(declined.id());
        tokio::time::sleep(ms(300)).await;
        assert!(
            bed.ctl.call_durations().await.is_empty(),
            "uploaded through dropped connections"
        );

        bed.ctl.set_faults(unavailable).await;
        let cancelled = bed.call(Dir::Inbound).await;
        bed.cancel(&cancelled).await;
        ids.push(cancelled.id());
        let (refused, resp) = bed.refused(Dir::Inbound, NOBODY).await;
        ids.push(id_of(&refused, &resp.to_tag().expect("To tag")));
        let left = Duration::from_secs(3).saturating_sub(outage.elapsed());
        tokio::time::sleep(left.max(ms(1200))).await;
        assert!(
            bed.ctl.call_durations().await.is_empty(),
            "uploaded through 503s"
        );
        let upload = bed.gw.running().cdr.as_ref().and_then(|c| c.upload.clone());
        let errors = upload.expect("uploading").errors_by_kind();
        let count = |kind: &str| {
            errors
                .iter()
                .find(|(k, _)| k.as_str() == kind)
                .map_or(0, |e| e.1)
        };
        assert!(
            count("transport") > 0 && count("throttled") > 0,
            "{errors:?}"
        );
        assert_eq!(bed.ctl.stat("accepted").await, 0);
        let n = ids.len();
        let (_, status) = cli(bed.spool(), &["status"]).await;
        let held = format!("records:      {n} on disk, {n} pending upload");
        assert!(status.contains(&held), "{status}");

        bed.ctl.set_faults(json!({})).await;
        let records = uploaded(&bed.ctl, ids.len()).await;
        let got: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(got.len(), ids.len(), "{records:?}");
        assert_eq!(
            got.iter().copied().collect::<HashSet<_>>(),
            ids.iter().map(String::as_str).collect()
        );
        let call_ids: HashSet<&str> = records
            .iter()
            .filter_map(|r| r["callId"].as_str())
            .collect();
        assert_eq!(call_ids.len(), ids.len(), "each call once: {records:?}");
        let stats = bed.ctl.stats().await;
        let n = n as u64;
        assert_eq!(stats["accepted"], n, "{stats}");
        assert_eq!(stats["storedDurations"], n, "{stats}");
        assert_eq!(stats["rejected"], 0, "{stats}");
        let (received, dups) = (stats["received"].as_u64(), stats["duplicates"].as_u64());
        assert_eq!(
            received,
            dups.map(|d| d + n),
            "replays only as duplicates: {stats}"
        );
        eprintln!(
            "outage: {n} records, {} duplicates, {errors:?}",
            stats["duplicates"]
        );
        bed.stop().await;
    })
    .await;
}

/// A call answered before a restart and hung up after it: one record, whose duration runs
/// from the answer seen by the first gateway to the BYE seen by the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_up_across_a_restart_gets_one_record() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("cdr-restart"), "").await;
        let mut call = bed.call(Dir::Inbound).await;
        let answered = bed.answer(&mut call).await;
        assert_eq!(spool_calls_up(bed.spool()), 1, "the answer is journaled");
        let old = bed.listeners();
        tokio::time::sleep(ms(100)).await;

        let mut bed = bed.restart().await;
        tokio::time::sleep(ms(100)).await;
        // The caller's route set names the old gateway's ports: send to the new ones.
        call.reroute(old, bed.listeners());
        let ended = bed.caller_bye(&mut call).await;
        // Answer and end are read from two gateways' clocks, each mapped to UTC at start.
        let range = duration_range(answered, ended, 50);

        let records = uploaded(&bed.ctl, 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_answered(one(&records, &call.id()), &call, range);
        eprintln!(
            "restart: durationMs {} within {range:?}",
            records[0]["durationMs"]
        );
        let spool = spool_records(bed.spool());
        assert_eq!(
            spool.len(),
            1,
            "one record, not a recovered one too: {spool:?}"
        );
        assert_eq!(spool[0].end_reason, EndReason::CallerBye);
        assert_eq!(spool_calls_up(bed.spool()), 0);
        assert_eq!(bed.ctl.stat("received").await, 1);
        bed.stop().await;
    })
    .await;
}

/// `ocedge cdr` on a live gateway's spool: the call up, then the records, pending and
/// acknowledged, one in full, and the CSV export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdr_command_reads_the_spool() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("cdr-cli"), "").await;
        let spool = bed.spool().to_owned();
        let mut answered = bed.call(Dir::Inbound).await;
        bed.answer(&mut answered).await;
        let (ok, up) = cli(&spool, &["list", "--open"]).await;
        assert!(ok && up.lines().count() == 1, "{up}");
        assert!(
            up.starts_with(&format!("{}  up since ", answered.id())),
            "{up}"
        );
        assert!(up.contains(&format!("{PSTN} -> {}", ALICE)), "{up}");
        let (_, status) = cli(&spool, &["status"]).await;
        assert!(status.contains("calls up:     1\n"), "{status}");

        tokio::time::sleep(ms(50)).await;
        bed.caller_bye(&mut answered).await;
        let declined = bed.call(Dir::Outbound).await;
        bed.decline(&declined, 486).await;
        uploaded(&bed.ctl, 2).await;
        all_acked(&bed).await;

        let (ok, status) = cli(&spool, &["status"]).await;
        assert!(ok, "{status}");
        for line in [
            "records:      2 on disk, 0 pending upload",
            "calls up:     0",
            "dead letters: 0",
        ] {
            assert!(status.contains(line), "no {line:?} in:\n{status}");
        }
        let (_, pending) = cli(&spool, &["list"]).await;
        assert_eq!(pending.lines().count(), 1, "only the header: {pending}");
        let (_, all) = cli(&spool, &["list", "--all"]).await;
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 3, "{all}");
        let spooled_now = spool_records(&spool);
        let (rec, declined_rec) = (
            spooled(&spooled_now, &answered.id()),
            spooled(&spooled_now, &declined.id()),
        );
        assert_eq!(
            (rec.end_reason, declined_rec.final_status),
            (EndReason::CallerBye, 486)
        );
        let row = |r: &CallRecord| {
            let (duration, status) = (r.duration_ms.to_string(), r.final_status.to_string());
            let end = rfc3339_ms(r.end_ms);
            let cols = [
                &r.id,
                &end,
                &duration,
                r.disposition.as_str(),
                &status,
                r.end_reason.as_str(),
            ];
            format!("acked {} {}", cols.join(" "), r.call_id)
        };
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(words(lines[1]), row(&rec));
        assert_eq!(words(lines[2]), row(&declined_rec));

        let (ok, shown) = cli(&spool, &["show", &answered.id()]).await;
        assert!(ok, "{shown}");
        let shown: CallRecord = serde_json::from_str(&shown).expect("show prints the record");
        assert_eq!(shown, rec);
        let (ok, _) = cli(&spool, &["show", "0123456789abcdef0123456789abcdef"]).await;
        assert!(!ok, "an unknown id is an error");

        let (ok, csv) = cli(&spool, &["export", "--format", "csv"]).await;
        assert!(ok, "{csv}");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.first().copied(), Some(CSV_HEADER));
        assert_eq!(rows.len(), 3, "{csv}");
        let cols = |r: &str| r.split(',').map(str::to_owned).collect::<Vec<_>>();
        let (a, d) = (cols(rows[1]), cols(rows[2]));
        let duration = rec.duration_ms.to_string();
        assert_eq!(a[..2], [answered.id(), answered.leg.call_id.clone()]);
        assert_eq!(
            a[10..14],
            [duration.as_str(), "answered", "200", "caller_bye"]
        );
        assert_eq!(d[..2], [declined.id(), declined.leg.call_id.clone()]);
        assert_eq!(d[10..14], ["0", "failed", "486", "rejected"]);
        bed.stop().await;
    })
    .await;
}

/// `[cdr.export]` alongside the upload: every finished record once in the export file, as
/// in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_record_is_exported_once() {
    bounded(async {
        let dir = temp_dir("cdr-export");
        let out = dir.join("export");
        let extra = format!(
            "export = {{ dir = {:?}, format = \"jsonl\" }}\n",
            out.display().to_string()
        );
        let mut bed = Bed::start(dir, &extra).await;
        let mut ids = Vec::new();
        for dir in [Dir::Inbound, Dir::Outbound] {
            let mut call = bed.call(dir).await;
            bed.answer(&mut call).await;
            tokio::time::sleep(ms(50)).await;
            bed.caller_bye(&mut call).await;
            ids.push(call.id());
        }
        let declined = bed.call(Dir::Outbound).await;
        bed.decline(&declined, 486).await;
        let cancelled = bed.call(Dir::Inbound).await;
        bed.cancel(&cancelled).await;
        let (refused, resp) = bed.refused(Dir::Inbound, NOBODY).await;
        ids.extend([
            declined.id(),
            cancelled.id(),
            id_of(&refused, &resp.to_tag().expect("To tag")),
        ]);

        uploaded(&bed.ctl, ids.len()).await;
        all_acked(&bed).await;
        let rows = exported(&out);
        let spool = spool_records(bed.spool());
        assert_eq!(rows.len(), ids.len(), "{rows:?}");
        assert_eq!(spool.len(), ids.len(), "{spool:?}");
        for id in &ids {
            let found: Vec<&Value> = rows.iter().filter(|r| r["id"] == id.as_str()).collect();
            assert_eq!(found.len(), 1, "exported rows of {id}: {rows:?}");
            let (row, rec) = (found[0], spooled(&spool, id));
            assert_eq!(row["callId"], rec.call_id);
            assert_eq!(row["durationMs"], rec.duration_ms);
            assert_eq!(row["disposition"], rec.disposition.as_str());
            assert_eq!(row["finalSipCode"], rec.final_status);
            assert_eq!(row["endReason"], rec.end_reason.as_str());
            assert_eq!(row["sbc"], rec.sbc);
        }
        let cursor = std::fs::read_to_string(out.join("export.cursor")).expect("export.cursor");
        let last = bed
            .gw
            .running()
            .cdr
            .as_ref()
            .map(|c| c.spool.stats().last_seq);
        assert_eq!(
            cursor.trim().parse::<u64>().ok(),
            last,
            "the exporter is at the end"
        );
        bed.stop().await;
    })
    .await;
}
