//! Voice-quality reports end to end (issue 6): an RFC 6035 PUBLISH from a configured SBC is
//! answered 200 with a SIP-ETag, parsed, and its sample reaches the JSONL file and the
//! Prometheus histograms (bounded labels); the same report from an address that is no SBC
//! gets 403 and goes nowhere.

mod support;

#[path = "support/cdr.rs"]
#[allow(dead_code, unused_imports)]
mod bed;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bed::Bed;
use serde_json::Value;
use support::msg::{branch, tag};
use support::temp_dir;
use support::{bounded, MsgExt, Ua};

const REPORT: &str = "VQSessionReport: CallTerm\r\n\
CallID: 6dg37f1890463@alice.example.org\r\n\
LocalID: <sip:+14255550100@sbc.example>\r\n\
RemoteID: <sip:+13125550000@pstn.example>\r\n\
OrigID: <sip:+13125550000@pstn.example>\r\n\
LocalAddr: IP=192.0.2.100 PORT=5000 SSRC=0x1a3b5c7d\r\n\
RemoteAddr: IP=198.51.100.150 PORT=5002 SSRC=0x2468abcd\r\n\
LocalMetrics:\r\n\
Timestamps:START=2026-11-26T18:23:43Z STOP=2026-11-26T18:25:43Z\r\n\
SessionDesc:PT=0 PD=PCMU SR=8000 FD=20 FO=20 FPP=1 PPS=50\r\n\
JitterBuffer:JBA=3 JBR=2 JBN=40 JBM=80 JBX=120\r\n\
PacketLoss:NLR=1.5 JDR=0.5\r\n\
Delay:RTD=120 ESD=30 IAJ=12 MAJ=10\r\n\
QualityEst:MOSLQ=4.1 MOSCQ=3.9\r\n\
RemoteMetrics:\r\n\
JitterBuffer:JBA=bogus\r\n";

fn publish(from: SocketAddr, to: SocketAddr) -> String {
    format!(
        "PUBLISH sip:collector@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch={}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sbc@{from}>;tag={}\r\n\
         To: <sip:collector@{to}>\r\n\
         Call-ID: vq-{}@{from}\r\n\
         CSeq: 1 PUBLISH\r\n\
         Event: vq-rtcpxr\r\n\
         Content-Type: application/vq-rtcpxr\r\n\
         Content-Length: {}\r\n\r\n{REPORT}",
        branch(),
        tag(),
        tag(),
        REPORT.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbc_reports_reach_the_sinks_and_strangers_are_refused() {
    bounded(async {
        let dir = temp_dir("quality");
        let files = dir.join("quality");
        let extra = format!("\n[quality]\ndir = {:?}\n", files.display().to_string());
        // `Bed::start` appends `cdr_extra` inside `[cdr]`; a new table after it is fine.
        let mut bed = Bed::start(dir, &extra).await;
        let [_, l_c] = bed.listeners();

        let msg = publish(bed.sbc.local, l_c);
        bed.sbc.send_raw(l_c, msg.as_bytes()).await;
        let ok = bed.sbc.expect_response(200).await;
        assert!(ok.h("SIP-ETag").is_some(), "{}", ok.dump());

        // A stranger (another address, inside the ACL, but no configured SBC).
        let mut stranger = Ua::udp("127.0.0.2").await;
        let msg = publish(stranger.local, l_c);
        stranger.send_raw(l_c, msg.as_bytes()).await;
        stranger.expect_response(403).await;

        // The sample arrives in the JSONL file, once.
        let deadline = Instant::now() + Duration::from_secs(5);
        let lines = loop {
            let lines: Vec<Value> = std::fs::read_dir(&files)
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect();
            if !lines.is_empty() || Instant::now() > deadline {
                break lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(lines.len(), 1, "{lines:?}");
        let s = &lines[0];
        assert_eq!(s["source"], "sbc");
        assert_eq!(s["trunk"], "sbc1");
        assert_eq!(s["callId"], "6dg37f1890463@alice.example.org");
        assert_eq!(s["jitterMs"], 12);
        assert_eq!(s["roundTripMs"], 120);
        assert!((s["mosLq"].as_f64().unwrap() - 4.1).abs() < 1e-6, "{s}");
        assert!(
            (s["lossPercent"].as_f64().unwrap() - 1.5).abs() < 1e-6,
            "{s}"
        );
        assert!(
            s["fieldErrors"].as_u64().unwrap() >= 1,
            "the bogus JBA is counted: {s}"
        );
        assert_eq!(s["startDateTime"], "2026-11-26T18:23:43.000Z");

        let admin = bed.gw.running().admin_addr.expect("admin");
        let text = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        let audit = ocedge::admin::audit(&text);
        assert!(audit.unknown.is_empty(), "{:?}", audit.unknown);
        // The recorder is the process's: other tests' samples may add to these.
        let at_least_one = |prefix: &str| {
            let line = text
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
            let v: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            assert!(v >= 1.0, "{line}");
        };
        at_least_one("ocedge_quality_mos_lq_bucket{source=\"sbc\",trunk=\"sbc1\",le=\"4.2\"}");
        at_least_one("ocedge_quality_reports_total{result=\"refused\"}");
        bed.stop().await;
    })
    .await;
}

/// A minimal HTTP endpoint: answers the first request 503, the rest 200; every body it
/// accepted (200) is sent on `tx`.
async fn webhook_sink(tx: tokio::sync::mpsc::UnboundedSender<Value>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0u32;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let body = loop {
                let Ok(k) = s.read(&mut chunk).await else {
                    break None;
                };
                if k == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let status = if n == 1 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            if n > 1 {
                if let Some(v) = body.and_then(|b| serde_json::from_slice(&b).ok()) {
                    let _ = tx.send(v);
                }
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_every_sample_once_after_a_failure() {
    bounded(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let hook = webhook_sink(tx).await;
        let extra =
            format!("\n[quality.webhook]\nurl = \"http://{hook}/ingest\"\nbatch_size = 10\n");
        let mut bed = Bed::start(temp_dir("quality-hook"), &extra).await;
        let [_, l_c] = bed.listeners();
        for _ in 0..3 {
            let msg = publish(bed.sbc.local, l_c);
            bed.sbc.send_raw(l_c, msg.as_bytes()).await;
            bed.sbc.expect_response(200).await;
        }
        // The first POST gets 503 and is retried; in the end each sample arrived once.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(8);
        while got.len() < 3 && Instant::now() < deadline {
            if let Ok(Some(Value::Array(batch))) =
                tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
            {
                got.extend(batch);
            }
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got
            .iter()
            .all(|s| s["trunk"] == "sbc1" && s["mosLq"].is_number()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "nothing sent twice");
        bed.stop().await;
    })
    .await;
}
