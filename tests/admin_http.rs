//! The admin HTTP server on 127.0.0.1 port 0: every endpoint, the bearer token, readiness
//! transitions, the bounds (timeout, body, connections, idle), shutdown, and the metrics
//! catalogue against what `/metrics` serves and what `docs/metrics.md` lists.

// The temporary directories of the tests (`src/testdir.rs`).
#[path = "../src/testdir.rs"]
mod testdir;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ocedge::admin::{self, catalogue, AdminServer, AdminSource, Readiness};
use ocedge::config::{Admin, Dur, Side};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testdir::{temp_dir, TempDir};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-admin-token-0123456789";

/// A source whose readiness and reload result the test sets.
#[derive(Default)]
struct Source {
    ready: AtomicBool,
    reload_ok: AtomicBool,
    reload_sleep_ms: AtomicU32,
    reloads: AtomicU32,
    collects: AtomicU32,
}

impl AdminSource for Source {
    fn ready(&self) -> Readiness {
        if self.ready.load(Ordering::SeqCst) {
            Readiness::Ready
        } else {
            Readiness::NotReady(vec!["number table not loaded".into()])
        }
    }
    fn status(&self) -> Value {
        json!({ "calls_active": 3 })
    }
    fn reload(&self) -> Result<String, String> {
        std::thread::sleep(Duration::from_millis(
            self.reload_sleep_ms.load(Ordering::SeqCst).into(),
        ));
        self.reloads.fetch_add(1, Ordering::SeqCst);
        if self.reload_ok.load(Ordering::SeqCst) {
            Ok("reloaded: 2 SBCs".into())
        } else {
            Err("carrier.sbcs[0].weight: must be at least 1".into())
        }
    }
    fn collect(&self) {
        self.collects.fetch_add(1, Ordering::SeqCst);
    }
}

/// A source with nothing but the defaults: reload unsupported, status not an object.
struct Minimal;

impl AdminSource for Minimal {
    fn ready(&self) -> Readiness {
        Readiness::Ready
    }
    fn status(&self) -> Value {
        json!("fine")
    }
}

struct Running {
    server: AdminServer,
    cancel: CancellationToken,
    base: String,
}

fn loopback() -> Admin {
    Admin {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Admin::default()
    }
}

async fn start(cfg: Admin, source: Arc<dyn AdminSource>) -> Running {
    let cancel = CancellationToken::new();
    let server = admin::serve(&cfg, source, cancel.clone())
        .await
        .expect("serve");
    let base = format!("http://{}", server.local_addr());
    Running {
        server,
        cancel,
        base,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    (r.status(), r.text().await.unwrap())
}

/// A token file in a fresh directory; the directory lasts as long as the guard.
fn token_file(tag: &str) -> (TempDir, std::path::PathBuf) {
    let dir = temp_dir(&format!("admin-{tag}"));
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    (dir, path)
}

#[tokio::test]
async fn endpoints_answer_and_readiness_follows_the_source() {
    let src = Arc::new(Source::default());
    let r = start(loopback(), src.clone()).await;
    assert_eq!(
        get(&format!("{}/health/live", r.base), None).await,
        (StatusCode::OK, "ok".into())
    );

    let (status, body) = get(&format!("{}/health/ready", r.base), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({ "ready": false, "reasons": ["number table not loaded"] })
    );
    src.ready.store(true, Ordering::SeqCst);
    let (status, body) = get(&format!("{}/health/ready", r.base), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    src.ready.store(false, Ordering::SeqCst);
    let (status, _) = get(&format!("{}/health/ready", r.base), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, body) = get(&format!("{}/status", r.base), None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["calls_active"], 3);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].is_u64(), "{v}");

    let resp = client()
        .get(format!("{}/metrics", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await.unwrap();
    assert!(text.contains("ocedge_build_info{version=\""), "{text}");
    assert_eq!(src.collects.load(Ordering::SeqCst), 1);

    let (status, _) = get(&format!("{}/nope", r.base), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    r.cancel.cancel();
    r.server.wait().await.unwrap();
}

#[tokio::test]
async fn reload_reports_success_failure_and_default() {
    let src = Arc::new(Source::default());
    let r = start(loopback(), src.clone()).await;
    let url = format!("{}/admin/reload", r.base);
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("carrier.sbcs[0].weight"));
    src.reload_ok.store(true, Ordering::SeqCst);
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "reloaded: 2 SBCs\n");
    assert_eq!(src.reloads.load(Ordering::SeqCst), 2);
    let (status, _) = get(&url, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let big = vec![b'x'; 64 * 1024];
    let resp = client().post(&url).body(big).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        src.reloads.load(Ordering::SeqCst),
        2,
        "an oversized request reloaded"
    );

    let m = start(loopback(), Arc::new(Minimal)).await;
    let resp = client()
        .post(format!("{}/admin/reload", m.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.text().await.unwrap().contains("not supported"));
    let (_, body) = get(&format!("{}/status", m.base), None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "fine");
    assert!(v["uptime_seconds"].is_u64(), "{v}");
}

#[tokio::test]
async fn token_guards_everything_but_liveness() {
    let (_tmp, path) = token_file("guard");
    let cfg = Admin {
        token_file: Some(path.clone()),
        ..loopback()
    };
    let r = start(cfg, Arc::new(Minimal)).await;
    assert_eq!(
        get(&format!("{}/health/live", r.base), None).await.0,
        StatusCode::OK
    );
    for route in ["/metrics", "/health/ready", "/status"] {
        let url = format!("{}{route}", r.base);
        let resp = client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{route}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            get(&url, Some("wrong-token-0123456789")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&url, Some(&TOKEN[..TOKEN.len() - 1])).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(&url, Some(TOKEN)).await.0, StatusCode::OK, "{route}");
        let basic = client()
            .get(&url)
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    }
    let url = format!("{}/admin/reload", r.base);
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client()
        .post(&url)
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    // Through the guard: the minimal source's own answer.
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let bad = Admin {
        token_file: Some("/nonexistent/ocedge-token".into()),
        ..loopback()
    };
    let e = admin::serve(&bad, Arc::new(Minimal), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("admin.token_file"), "{e}");
}

#[tokio::test]
async fn slow_requests_idle_and_excess_connections_are_bounded() {
    let src = Arc::new(Source::default());
    src.reload_sleep_ms.store(1500, Ordering::SeqCst);
    let cfg = Admin {
        request_timeout: Dur(Duration::from_millis(300)),
        idle_timeout: Dur(Duration::from_millis(700)),
        max_connections: 1,
        ..loopback()
    };
    let r = start(cfg, src).await;
    let resp = client()
        .post(format!("{}/admin/reload", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A silent connection holds the only slot until the idle timeout closes it.
    let mut silent = tokio::net::TcpStream::connect(r.server.local_addr())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let waited = client()
        .get(format!("{}/health/live", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), async {
        use tokio::io::AsyncReadExt;
        silent.read(&mut buf).await.unwrap_or(0)
    })
    .await
    .expect("idle connection not closed");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn shutdown_releases_the_port() {
    let r = start(loopback(), Arc::new(Minimal)).await;
    let addr = r.server.local_addr();
    assert_eq!(
        get(&format!("{}/health/live", r.base), None).await.0,
        StatusCode::OK
    );
    r.cancel.cancel();
    tokio::time::timeout(admin::DRAIN + Duration::from_secs(2), r.server.wait())
        .await
        .expect("server did not stop")
        .unwrap();
    let again = Admin {
        listen: addr,
        ..Admin::default()
    };
    let r2 = start(again, Arc::new(Minimal)).await;
    assert_eq!(r2.server.local_addr(), addr);
}

#[tokio::test]
async fn metrics_serve_exactly_the_catalogue() {
    use ocedge::admin::{CallMetrics, CdrMetrics, UploadErrorKind};
    use ocedge::cdr::{Disposition, EndReason};
    let r = start(loopback(), Arc::new(Minimal)).await;
    admin::publish_proxy(&Default::default(), 0);
    admin::publish_policy(&Default::default());
    admin::publish_numbers(&ocedge::numbers::NumberTable::new().state());
    admin::publish_transport(&Default::default(), 0);
    admin::publish_dest(Side::Carrier, "sbc1", true);
    admin::publish_dest(Side::Microsoft, "sip.pstnhub.microsoft.com", false);
    admin::publish_calls(&CallMetrics {
        active: 0,
        dispositions: [
            Disposition::Answered,
            Disposition::Failed,
            Disposition::Cancelled,
        ]
        .map(|d| (d, 0))
        .to_vec(),
        end_reasons: EndReason::ALL.map(|e| (e, 0)).to_vec(),
        ..CallMetrics::default()
    });
    admin::publish_cdr(&CdrMetrics {
        upload_errors: UploadErrorKind::ALL.map(|k| (k, 0)).to_vec(),
        ..CdrMetrics::default()
    });
    let sample = ocedge::quality::vqreport::QualitySample {
        jitter_ms: Some(12),
        loss_percent: Some(1.5),
        round_trip_ms: Some(120),
        mos_lq: Some(4.1),
        mos_cq: Some(3.9),
        ..Default::default()
    };
    admin::publish_quality("sbc", "sbc1", &sample);
    admin::publish_quality("microsoft", "microsoft", &sample);
    admin::publish_quality_field_errors(0);
    admin::publish_quality_drop("queue");
    admin::publish_quality_drop("webhook");
    admin::publish_reconcile(&Default::default(), 0);
    let (status, text) = get(&format!("{}/metrics", r.base), None).await;
    assert_eq!(status, StatusCode::OK);
    let a = admin::audit(&text);
    assert!(a.is_clean(), "{a:#?}\n{text}");
    for m in catalogue::CATALOGUE {
        assert!(
            text.contains(&format!("# HELP {} ", m.name)),
            "no help for {}",
            m.name
        );
        assert!(
            text.contains(&format!("# TYPE {} {}", m.name, m.kind.as_str())),
            "{}",
            m.name
        );
    }
}

/// `docs/metrics.md` holds exactly `catalogue::markdown()` between its markers.
/// `OCEDGE_BLESS=1 cargo test --test admin_http` rewrites it.
#[test]
fn docs_list_exactly_the_catalogue() {
    const START: &str = "<!-- catalogue:start -->\n";
    const END: &str = "<!-- catalogue:end -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc.split_once(START).expect("start marker");
    let (table, tail) = rest.split_once(END).expect("end marker");
    let want = catalogue::markdown();
    if table != want && std::env::var_os("OCEDGE_BLESS").is_some() {
        std::fs::write(&path, format!("{head}{START}{want}{END}{tail}")).unwrap();
        return;
    }
    assert_eq!(
        table, want,
        "docs/metrics.md is stale: run with OCEDGE_BLESS=1"
    );
    let rows = table
        .lines()
        .filter(|l| l.starts_with("| `ocedge_"))
        .count();
    assert_eq!(rows, catalogue::CATALOGUE.len());
}
