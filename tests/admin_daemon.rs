//! The admin server of the real daemon (issue 7): after a call, `/metrics` serves the
//! catalogue and nothing outside it (`admin::audit`), with the call counted; `/status`
//! reports numbers, calls and the spool; `/health/ready` turns 503 with the reason while
//! draining.

mod support;

#[path = "support/cdr.rs"]
#[allow(dead_code, unused_imports)]
mod bed;

use bed::{all_acked, Bed, Dir};
use serde_json::Value;
use support::bounded;
use support::temp_dir;

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("admin answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_status_and_readiness_of_a_running_gateway() {
    bounded(async {
        let mut bed = Bed::start(temp_dir("admin-daemon"), "").await;
        let admin = bed.gw.running().admin_addr.expect("admin on");
        let base = format!("http://{admin}");

        let (code, body) = get(&format!("{base}/health/ready")).await;
        assert_eq!(code, 200, "{body}");

        let mut call = bed.call(Dir::Inbound).await;
        bed.answer(&mut call).await;
        bed.caller_bye(&mut call).await;
        all_acked(&bed).await;

        let (code, text) = get(&format!("{base}/metrics")).await;
        assert_eq!(code, 200);
        let audit = ocedge::admin::audit(&text);
        assert!(
            audit.unknown.is_empty(),
            "served outside the catalogue: {:?}",
            audit.unknown
        );
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .to_owned()
        };
        assert!(line("ocedge_calls_total{disposition=\"answered\"}").ends_with(" 1"));
        assert!(line("ocedge_calls_ended_total{reason=\"caller_bye\"}").ends_with(" 1"));
        assert!(line("ocedge_cdr_uploaded_total{result=\"accepted\"}").ends_with(" 1"));
        assert!(line("ocedge_calls_active").ends_with(" 0"));
        // Labels are bounded: no Call-ID and no number ever appears.
        assert!(!text.contains(&call.leg.call_id), "a Call-ID in /metrics");
        assert!(!text.contains("+1425"), "a number in /metrics");

        let (code, body) = get(&format!("{base}/status")).await;
        assert_eq!(code, 200);
        let st: Value = serde_json::from_str(&body).expect("status JSON");
        assert_eq!(st["numbers"]["loaded"], true, "{st}");
        assert_eq!(st["proxy"]["calls"]["answered"], 1, "{st}");
        assert_eq!(st["cdr"]["unacked"], 0, "{st}");
        assert!(
            st["version"].is_string() && st["uptime_seconds"].is_u64(),
            "{st}"
        );

        bed.gw.running().start_drain();
        let (code, body) = get(&format!("{base}/health/ready")).await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("draining"), "{body}");
        let (code, _) = get(&format!("{base}/health/live")).await;
        assert_eq!(code, 200, "live while draining");
        bed.stop().await;
    })
    .await;
}
