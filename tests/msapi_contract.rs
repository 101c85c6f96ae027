//! Contract tests: the HTTP client (`ocedge::msapi::HttpApi`) against the emulator
//! (`ocedge::emulator`), in-process on 127.0.0.1:0, plus one run of `ocedge emulator` as its
//! own process. Every test is bounded in time.

use std::future::Future;
use std::time::{Duration, Instant};

use ocedge::config::{Api, Dur};
use ocedge::emulator::{Credentials, EmulatorConfig, EmulatorStats, NumberSpec, RunningEmulator};
use ocedge::msapi::{
    ApiError, CallRecordsApi, Cursor, DurationBatch, DurationRecord, DurationsApi, HttpApi,
    NumbersApi, NumbersPage,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const TENANT_A: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";
const TENANT_B: &str = "6b65a6a4-8b81-48f6-b38a-088ca65ed389";

/// Runs a test body with an overall bound of 30 s.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("test exceeded its 30 s bound");
}

fn number(i: u32) -> String {
    format!("+1425555{i:04}")
}

fn spec(i: u32, tenant: &str) -> NumberSpec {
    let n = number(i);
    NumberSpec::new(
        &n,
        tenant,
        &format!("sip:{n}@t.example.com;user=phone"),
        "CallingUserAssignment",
    )
    .expect("valid number")
}

/// A running emulator and a plain HTTP client for its control API.
struct Emu {
    running: Option<RunningEmulator>,
    cancel: CancellationToken,
    base: String,
    control: reqwest::Client,
}

impl Emu {
    async fn start(cfg: EmulatorConfig) -> Emu {
        let cancel = CancellationToken::new();
        let running = ocedge::emulator::Emulator::new(cfg)
            .start("127.0.0.1:0".parse().expect("addr"), cancel.clone())
            .await
            .expect("emulator starts");
        Emu {
            base: running.base_url(),
            running: Some(running),
            cancel,
            control: reqwest::Client::new(),
        }
    }

    async fn seeded(n: u32) -> Emu {
        Emu::start(EmulatorConfig {
            seed: (0..n).map(|i| spec(i, TENANT_A)).collect(),
            ..EmulatorConfig::default()
        })
        .await
    }

    /// `[api]` as the daemon builds it for `base_url = "embedded"`.
    fn api(&self) -> Api {
        let embedded: Api = toml::from_str("base_url = \"embedded\"").expect("minimal [api]");
        let mut api = self
            .running
            .as_ref()
            .expect("running")
            .api_config(&embedded);
        assert_eq!(api.base_url, self.base);
        api.page_size = 1000;
        api
    }

    fn client(&self) -> HttpApi {
        HttpApi::new(&self.api(), "secret".into()).expect("client")
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.control
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control request")
    }

    async fn faults(&self, body: Value) {
        let resp = self.post("/emulator/faults", body).await;
        assert_eq!(resp.status(), 200, "faults accepted");
    }

    async fn get(&self, path: &str) -> Value {
        self.control
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("control request")
            .json()
            .await
            .expect("JSON")
    }

    async fn stats(&self) -> EmulatorStats {
        serde_json::from_value(self.get("/emulator/stats").await).expect("stats")
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Reads a whole listing or delta from `first`; returns the pages and the deltaLink.
async fn read_all(api: &HttpApi, first: Cursor<'_>) -> (Vec<NumbersPage>, String) {
    let mut pages = vec![api.numbers(first).await.expect("first page")];
    loop {
        let last = pages.last().expect("a page");
        if let Some(delta) = &last.delta_link {
            assert!(last.next_link.is_none(), "a page has one link");
            return (pages.clone(), delta.clone());
        }
        let next = last.next_link.clone().expect("nextLink or deltaLink");
        pages.push(api.numbers(Cursor::Next(&next)).await.expect("next page"));
    }
}

fn numbers_of(pages: &[NumbersPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p.value.iter().map(|e| e.telephone_number.clone()))
        .collect()
}

#[tokio::test]
async fn full_listing_pages_every_number_once() {
    bounded(async {
        let emu = Emu::seeded(2500).await;
        let api = emu.client();
        let (pages, delta) = read_all(&api, Cursor::Start).await;
        assert_eq!(
            pages.iter().map(|p| p.value.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let mut got = numbers_of(&pages);
        got.sort();
        got.dedup();
        assert_eq!(got, (0..2500).map(number).collect::<Vec<_>>());
        let e = &pages[0].value[0];
        assert_eq!(
            (e.tenant_id.as_str(), e.usage.as_str()),
            (TENANT_A, "CallingUserAssignment")
        );
        assert_eq!(e.assignment_status, "assigned");
        assert_eq!(e.capabilities, vec!["InboundCalling", "OutboundCalling"]);
        assert!(e.last_modified_date_time.ends_with('Z'));
        assert!(delta.starts_with(&format!("{}/v1.0/operatorConnect/numbers/delta?", emu.base)));
        let stats = emu.stats().await;
        assert_eq!(
            (stats.number_pages, stats.tokens_issued),
            (3, 1),
            "one token for all pages"
        );
    })
    .await;
}

#[tokio::test]
async fn delta_reports_additions_changes_and_removals() {
    bounded(async {
        let emu = Emu::seeded(10).await;
        let api = emu.client();
        let (_, delta) = read_all(&api, Cursor::Start).await;
        let added = spec(100, TENANT_A);
        let body = json!({"value": [
            {"telephoneNumber": added.number.as_str(), "tenantId": TENANT_A,
             "sipUri": added.sip_uri, "usage": "CallingUserAssignment"},
            {"telephoneNumber": number(3), "tenantId": TENANT_B,
             "sipUri": format!("sip:{}@b.example.com;user=phone", number(3)),
             "usage": "CallingUserAssignment", "capabilities": ["InboundCalling"]},
        ]});
        let resp = emu.post("/emulator/numbers", body).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<Value>().await.expect("JSON"),
            json!({"added": 1, "replaced": 1})
        );
        let del = emu
            .control
            .delete(format!("{}/emulator/numbers/{}", emu.base, number(5)))
            .send()
            .await
            .expect("delete");
        assert_eq!(del.status(), 204);

        let (pages, next_delta) = read_all(&api, Cursor::Delta(&delta)).await;
        let entries: Vec<_> = pages.iter().flat_map(|p| p.value.iter()).collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
        let changed = entries
            .iter()
            .find(|e| e.telephone_number == number(3))
            .expect("changed");
        assert_eq!(changed.tenant_id, TENANT_B);
        assert_eq!(changed.capabilities, vec!["InboundCalling"]);
        assert!(changed.removed.is_none());
        assert!(entries
            .iter()
            .any(|e| e.telephone_number == number(100) && e.removed.is_none()));
        let removed = entries
            .iter()
            .find(|e| e.telephone_number == number(5))
            .expect("removed");
        assert_eq!(
            removed.removed.as_ref().map(|r| r.reason.as_str()),
            Some("deleted")
        );

        let (again, _) = read_all(&api, Cursor::Delta(&next_delta)).await;
        assert!(
            numbers_of(&again).is_empty(),
            "no change since the new deltaLink"
        );
        let bad = emu
            .post(
                "/emulator/numbers",
                json!({"value": [{"telephoneNumber": "123"}]}),
            )
            .await;
        assert_eq!(bad.status(), 400, "control API validates");
    })
    .await;
}

#[tokio::test]
async fn expired_delta_token_is_gone() {
    bounded(async {
        let emu = Emu::seeded(3).await;
        let api = emu.client();
        let (_, delta) = read_all(&api, Cursor::Start).await;
        emu.faults(json!({"expireDeltaTokens": true})).await;
        assert_eq!(
            api.numbers(Cursor::Delta(&delta)).await,
            Err(ApiError::Gone)
        );
        let (_, fresh) = read_all(&api, Cursor::Start).await;
        assert!(
            api.numbers(Cursor::Delta(&fresh)).await.is_ok(),
            "a resync gives a good token"
        );
        assert_eq!(emu.stats().await.gone, 1);
    })
    .await;
}

#[tokio::test]
async fn token_is_cached_and_refreshed_before_expiry() {
    bounded(async {
        let emu = Emu::start(EmulatorConfig {
            token_lifetime: Duration::from_secs(1),
            ..EmulatorConfig::default()
        })
        .await;
        let api = emu.client();
        api.numbers(Cursor::Start).await.expect("first call");
        api.numbers(Cursor::Start).await.expect("second call");
        assert_eq!(emu.stats().await.tokens_issued, 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        api.numbers(Cursor::Start).await.expect("after expiry");
        let stats = emu.stats().await;
        assert_eq!(stats.tokens_issued, 2, "refreshed");
        assert_eq!(
            stats.unauthorized, 0,
            "refreshed before the server refused it"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_token_is_replaced_once() {
    bounded(async {
        let emu = Emu::seeded(1).await;
        let api = emu.client();
        api.numbers(Cursor::Start).await.expect("first call");
        emu.faults(json!({"revokeTokens": true})).await;
        api.numbers(Cursor::Start)
            .await
            .expect("401, new token, success");
        let stats = emu.stats().await;
        assert_eq!((stats.tokens_issued, stats.unauthorized), (2, 1));
        let raw = reqwest::get(format!("{}/v1.0/operatorConnect/numbers", emu.base))
            .await
            .expect("request");
        assert_eq!(raw.status(), 401);
        assert_eq!(
            raw.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(r#"Bearer error="invalid_token""#)
        );
    })
    .await;
}

#[tokio::test]
async fn bad_credentials_are_unauthorized() {
    bounded(async {
        let emu = Emu::start(EmulatorConfig {
            credentials: Some(Credentials {
                client_id: "ocedge".into(),
                client_secret: "right".into(),
            }),
            ..EmulatorConfig::default()
        })
        .await;
        let wrong = HttpApi::new(&emu.api(), "wrong".into()).expect("client");
        match wrong.numbers(Cursor::Start).await {
            Err(ApiError::Unauthorized(msg)) => assert!(msg.contains("invalid_client"), "{msg}"),
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        let right = HttpApi::new(&emu.api(), "right".into()).expect("client");
        assert!(right.numbers(Cursor::Start).await.is_ok());
        let stats = emu.stats().await;
        assert_eq!((stats.tokens_refused, stats.tokens_issued), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn throttling_and_server_errors_map_to_their_errors() {
    bounded(async {
        let emu = Emu::seeded(1).await;
        let api = emu.client();
        api.numbers(Cursor::Start)
            .await
            .expect("token fetched before the storm");
        emu.faults(json!({"throttleRate": 1.0, "retryAfterSecs": 7}))
            .await;
        assert_eq!(
            api.numbers(Cursor::Start).await,
            Err(ApiError::Throttled {
                retry_after_secs: 7
            })
        );
        emu.faults(json!({"throttleRate": 1.0, "retryAfterSecs": null}))
            .await;
        assert_eq!(
            api.numbers(Cursor::Start).await,
            Err(ApiError::Throttled {
                retry_after_secs: 1
            }),
            "no Retry-After: 1 s"
        );
        emu.faults(json!({"errorRate": 1.0, "errorStatus": 503, "retryAfterSecs": 3}))
            .await;
        assert_eq!(
            api.numbers(Cursor::Start).await,
            Err(ApiError::Throttled {
                retry_after_secs: 3
            }),
            "503 is throttling"
        );
        emu.faults(json!({"errorRate": 1.0, "count": 2})).await;
        for _ in 0..2 {
            match api.numbers(Cursor::Start).await {
                Err(ApiError::Status { status: 500, .. }) => {}
                other => panic!("expected Status 500, got {other:?}"),
            }
        }
        assert!(
            api.numbers(Cursor::Start).await.is_ok(),
            "the storm ended after its count"
        );
        assert_eq!(emu.stats().await.faults_injected, 5);
    })
    .await;
}

#[tokio::test]
async fn latency_beyond_the_timeout_and_dropped_connections_are_transport_errors() {
    bounded(async {
        let emu = Emu::seeded(1).await;
        let mut cfg = emu.api();
        cfg.timeout = Dur(Duration::from_millis(200));
        let api = HttpApi::new(&cfg, "s".into()).expect("client");
        api.numbers(Cursor::Start).await.expect("no faults yet");
        emu.faults(json!({"latencyMs": 1000})).await;
        let started = Instant::now();
        assert!(matches!(
            api.numbers(Cursor::Start).await,
            Err(ApiError::Transport(_))
        ));
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the client timeout bounds it"
        );
        emu.faults(json!({"dropRate": 1.0})).await;
        match api.numbers(Cursor::Start).await {
            Err(ApiError::Transport(_)) => {}
            other => panic!("expected Transport, got {other:?}"),
        }
        emu.faults(json!({})).await;
        assert!(api.numbers(Cursor::Start).await.is_ok(), "faults cleared");
    })
    .await;
}

#[tokio::test]
async fn links_to_another_host_are_not_followed() {
    bounded(async {
        let emu = Emu::start(EmulatorConfig {
            seed: (0..3).map(|i| spec(i, TENANT_A)).collect(),
            public_base_url: Some("http://127.0.0.2:9".into()),
            ..EmulatorConfig::default()
        })
        .await;
        let mut cfg = emu.api();
        cfg.page_size = 1;
        let api = HttpApi::new(&cfg, "s".into()).expect("client");
        let first = api.numbers(Cursor::Start).await.expect("first page");
        let next = first.next_link.expect("nextLink");
        assert!(next.starts_with("http://127.0.0.2:9/"));
        match api.numbers(Cursor::Next(&next)).await {
            Err(ApiError::Decode(msg)) => assert!(msg.contains("leaves the API base URL"), "{msg}"),
            other => panic!("expected Decode, got {other:?}"),
        }
        assert!(
            matches!(
                api.numbers(Cursor::Next("/v1.0/operatorConnect/numbers"))
                    .await,
                Err(ApiError::Decode(_))
            ),
            "relative links are refused too"
        );
        assert_eq!(emu.stats().await.number_pages, 1, "nothing was requested");
    })
    .await;
}

fn record(id: &str, answered: bool) -> DurationRecord {
    DurationRecord {
        id: id.into(),
        call_id: format!("call-{id}@sbc"),
        direction: "inbound".into(),
        tenant_id: TENANT_A.into(),
        caller_number: "+14255550100".into(),
        callee_number: number(1),
        start_date_time: "2024-05-01T10:00:00.000Z".into(),
        answer_date_time: answered.then(|| "2024-05-01T10:00:02.000Z".into()),
        end_date_time: "2024-05-01T10:01:02.500Z".into(),
        duration_ms: if answered { 60_500 } else { 0 },
        disposition: if answered { "answered" } else { "cancelled" }.into(),
        final_sip_code: if answered { 200 } else { 487 },
    }
}

fn statuses(results: &ocedge::msapi::DurationResults) -> Vec<&str> {
    results.value.iter().map(|r| r.status.as_str()).collect()
}

#[tokio::test]
async fn durations_are_accepted_once_and_shown() {
    bounded(async {
        let emu = Emu::seeded(0).await;
        let api = emu.client();
        let mut bad = record("c", true);
        bad.duration_ms = 10;
        let first = DurationBatch {
            value: vec![record("a", true), record("b", false), bad],
        };
        let results = api.upload(&first.value).await.expect("upload");
        assert_eq!(statuses(&results), vec!["accepted", "accepted", "rejected"]);
        let reason = results.value[2].reason.as_deref().unwrap_or_default();
        assert!(reason.contains("durationMs"), "{reason}");
        let replay = DurationBatch {
            value: vec![record("a", true), record("d", true)],
        };
        let results = api.upload(&replay.value).await.expect("replay");
        assert_eq!(statuses(&results), vec!["duplicate", "accepted"]);

        let stored = emu.get("/emulator/call-durations").await;
        let ids: Vec<&str> = stored["value"]
            .as_array()
            .expect("value")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b", "d"]);
        let stats = emu.stats().await;
        assert_eq!(
            (
                stats.received,
                stats.accepted,
                stats.duplicates,
                stats.rejected,
                stats.stored_durations
            ),
            (5, 3, 1, 1, 3)
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_batches_are_refused_whole() {
    bounded(async {
        let emu = Emu::start(EmulatorConfig {
            max_batch: 2,
            ..EmulatorConfig::default()
        })
        .await;
        let api = emu.client();
        let batch = DurationBatch {
            value: vec![record("a", true), record("b", true), record("c", true)],
        };
        match api.upload(&batch.value).await {
            Err(ApiError::Status { status: 413, .. }) => {}
            other => panic!("expected Status 413, got {other:?}"),
        }
        let stats = emu.stats().await;
        assert_eq!(
            (
                stats.batches_refused,
                stats.received,
                stats.stored_durations
            ),
            (1, 0, 0)
        );
    })
    .await;
}

#[tokio::test]
async fn call_records_reflect_accepted_durations() {
    bounded(async {
        let emu = Emu::seeded(0).await;
        let mut cfg = emu.api();
        cfg.page_size = 2;
        let api = HttpApi::new(&cfg, "s".into()).expect("client");
        let ids = ["r1", "r2", "r3", "r4", "r5"];
        let mut batch = DurationBatch {
            value: ids.iter().map(|id| record(id, true)).collect(),
        };
        batch.value.push(record("r6", false));
        api.upload(&batch.value).await.expect("upload");
        let from = humantime::parse_rfc3339("2024-05-01T00:00:00Z").expect("time");
        let to = humantime::parse_rfc3339("2024-05-02T00:00:00Z").expect("time");
        let mut records = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = CallRecordsApi::call_records(&api, from, to, next.as_deref())
                .await
                .expect("page");
            pages += 1;
            records.extend(page.value);
            match page.next_link {
                Some(link) => next = Some(link),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut call_ids: Vec<&str> = records.iter().map(|r| r.call_id.as_str()).collect();
        call_ids.sort();
        assert_eq!(
            call_ids,
            vec![
                "call-r1@sbc",
                "call-r2@sbc",
                "call-r3@sbc",
                "call-r4@sbc",
                "call-r5@sbc",
                "call-r6@sbc"
            ]
        );
        let r1 = records
            .iter()
            .find(|r| r.call_id == "call-r1@sbc")
            .expect("r1");
        assert_eq!((r1.duration, r1.duration_ms), (61, Some(60_500)));
        assert_eq!(
            (r1.call_type.as_str(), r1.call_duration_source.as_str()),
            ("user_in", "operator")
        );
        assert_eq!(r1.media_streams.len(), 2);
        assert!(r1
            .media_streams
            .iter()
            .all(|s| s.average_jitter_ms().is_some()));
        let r6 = records
            .iter()
            .find(|r| r.call_id == "call-r6@sbc")
            .expect("r6");
        assert!(
            r6.media_streams.is_empty(),
            "no media for an unanswered call"
        );
        let before = humantime::parse_rfc3339("2024-04-30T00:00:00Z").expect("time");
        let empty = CallRecordsApi::call_records(&api, before, from, None)
            .await
            .expect("empty window");
        assert!(empty.value.is_empty() && empty.next_link.is_none());
    })
    .await;
}

/// Stopping closes the listener and every connection. (Checked with requests rather than by
/// binding the port again: parallel tests' outgoing connections may take the freed number as
/// their local port, which would make a bind fail for reasons unrelated to the emulator.)
#[tokio::test]
async fn emulator_stops_on_cancel_and_closes_its_port() {
    bounded(async {
        let mut emu = Emu::seeded(1).await;
        let running = emu.running.take().expect("running");
        let addr = running.local_addr();
        let api =
            HttpApi::new(&running.api_config(&emu_api_template()), "s".into()).expect("client");
        api.numbers(Cursor::Start)
            .await
            .expect("serving before the stop");
        emu.cancel.cancel();
        running.wait().await.expect("clean stop");
        let fresh = reqwest::get(format!("http://{addr}/emulator/stats")).await;
        assert!(fresh.is_err(), "still serving on {addr}");
        assert!(matches!(
            api.numbers(Cursor::Start).await,
            Err(ApiError::Transport(_))
        ));
    })
    .await;
}

fn emu_api_template() -> Api {
    toml::from_str("base_url = \"embedded\"").expect("minimal [api]")
}

/// `ocedge emulator` as its own process, seeded with the bench's 10,000 numbers.
#[tokio::test]
async fn emulator_subcommand_serves_the_bench_seed() {
    bounded(async {
        use tokio::io::AsyncBufReadExt;
        let seed = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/bench/assigned_numbers.csv"
        );
        if !std::path::Path::new(seed).exists() {
            eprintln!("skipped: {seed} not present");
            return;
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ocedge"))
            .args(["emulator", "--listen", "127.0.0.1:0", "--seed-csv", seed])
            .args(["--client-secret-env", "OCEDGE_TEST_EMU_SECRET"])
            .env("OCEDGE_TEST_EMU_SECRET", "s3cret")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ocedge emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("banner");
        let base = line.trim().rsplit(' ').next().expect("address").to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{line:?}");
        let mut api: Api = toml::from_str(&format!("base_url = {base:?}")).expect("api");
        api.page_size = 1000;
        let client = HttpApi::new(&api, "s3cret".into()).expect("client");
        let mut total = 0;
        let mut page = client.numbers(Cursor::Start).await.expect("first page");
        loop {
            total += page.value.len();
            match page.next_link.take() {
                Some(next) => page = client.numbers(Cursor::Next(&next)).await.expect("page"),
                None => break,
            }
        }
        assert_eq!(total, 10_000);
        let pid = child.id().expect("pid").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(killed.is_ok_and(|s| s.success()));
        let status = child.wait().await.expect("exit");
        assert!(status.success(), "SIGTERM is a clean stop: {status}");
    })
    .await;
}

/// The bench goal, run by hand: `cargo test --release --test msapi_contract -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release with --ignored"]
async fn full_sync_of_a_million_numbers() {
    let seed: Vec<NumberSpec> = (0..1_000_000u32)
        .map(|i| {
            let n = format!("+1425{i:07}");
            let uri = format!("sip:{n}@t{}.example.com;user=phone", i % 50);
            NumberSpec::new(&n, TENANT_A, &uri, "CallingUserAssignment").expect("valid")
        })
        .collect();
    let emu = Emu::start(EmulatorConfig {
        seed,
        ..EmulatorConfig::default()
    })
    .await;
    let api = emu.client();
    let started = Instant::now();
    let (mut count, mut pages) = (0, 1);
    let mut page = api.numbers(Cursor::Start).await.expect("first page");
    while let Some(next) = page.next_link.take() {
        count += page.value.len();
        pages += 1;
        page = api.numbers(Cursor::Next(&next)).await.expect("page");
    }
    count += page.value.len();
    let took = started.elapsed();
    eprintln!("full sync of {count} numbers in {pages} pages: {took:?}");
    assert_eq!(count, 1_000_000);
    assert!(took < Duration::from_secs(20), "{took:?}");
}
