//! A client of the API emulator's `/emulator/*` control API (docs/microsoft-api.md, "The
//! emulator"): what end-to-end tests use to change the assignments behind a running
//! gateway and read the emulator's counters.

use std::time::Duration;

use serde_json::{json, Value};

/// The control API of one emulator.
pub struct EmulatorCtl {
    base: String,
    http: reqwest::Client,
}

impl EmulatorCtl {
    /// A client of the emulator at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> EmulatorCtl {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("HTTP client");
        EmulatorCtl {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// `POST /emulator/numbers` with one number; panics unless answered 200.
    pub async fn add(&self, number: &str, tenant: &str, sip_uri: &str) -> Value {
        let body = json!({ "value": [{
            "telephoneNumber": number,
            "tenantId": tenant,
            "sipUri": sip_uri,
            "usage": super::gateway::SEED_USAGE,
        }]});
        let r = self
            .http
            .post(format!("{}/emulator/numbers", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST /emulator/numbers");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "POST /emulator/numbers: {text}");
        serde_json::from_str(&text).expect("POST /emulator/numbers answer is JSON")
    }

    /// `DELETE /emulator/numbers/{number}`: the status (204 removed, 404 unknown).
    pub async fn remove(&self, number: &str) -> u16 {
        self.http
            .delete(format!("{}/emulator/numbers/{number}", self.base))
            .send()
            .await
            .expect("DELETE /emulator/numbers/{n}")
            .status()
            .as_u16()
    }

    /// `GET /emulator/stats`.
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/emulator/stats", self.base))
            .send()
            .await
            .expect("GET /emulator/stats")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// `GET /emulator/call-durations`: every distinct record accepted, in acceptance order.
    pub async fn call_durations(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/emulator/call-durations", self.base))
            .send()
            .await
            .expect("GET /emulator/call-durations")
            .json()
            .await
            .expect("call durations are JSON");
        match body["value"].as_array() {
            Some(v) => v.clone(),
            None => panic!("no value array in {body}"),
        }
    }

    /// `POST /emulator/faults` with `faults` (`json!({})` clears them); panics unless
    /// answered 200. The faults now in force.
    pub async fn set_faults(&self, faults: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/emulator/faults", self.base))
            .json(&faults)
            .send()
            .await
            .expect("POST /emulator/faults");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(
            status.as_u16(),
            200,
            "POST /emulator/faults {faults}: {text}"
        );
        serde_json::from_str(&text).expect("POST /emulator/faults answer is JSON")
    }

    /// One counter of `GET /emulator/stats` (camelCase name).
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name:?} in {stats}"))
    }
}
