//! Injected faults: latency, server errors, throttling with `Retry-After`, dropped
//! connections, and two one-shot actions (expire every delta token, revoke every access
//! token). They apply to the contract's endpoints (token endpoint included), never to the
//! `/emulator/*` control API, so a test can always switch them off again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::listener::Peer;
use super::Shared;
use crate::msapi::wire::ErrorBody;

/// Longest injected latency.
pub const MAX_LATENCY_MS: u64 = 60_000;

/// The faults in force (the body of `POST /emulator/faults`; omitted fields take their
/// defaults, so `{}` clears everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Share of requests answered with `errorStatus` (0.0–1.0).
    pub error_rate: f64,
    /// The status of injected errors (500–599; 503 carries `Retry-After` like a 429).
    pub error_status: u16,
    /// Share of requests answered 429.
    pub throttle_rate: f64,
    /// `Retry-After` seconds on injected 429/503; `null` sends none.
    pub retry_after_secs: Option<u64>,
    /// Delay before every request is handled, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests whose connection is closed without a response.
    pub drop_rate: f64,
    /// Only requests whose path starts with this are affected.
    pub path_prefix: Option<String>,
    /// Affect only the next `count` matching requests, then clear all faults.
    pub count: Option<u64>,
    /// Action: make every delta token issued so far expire (410).
    #[serde(skip_serializing)]
    pub expire_delta_tokens: bool,
    /// Action: revoke every access token (401 on the next request of each client).
    #[serde(skip_serializing)]
    pub revoke_tokens: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_status: 500,
            throttle_rate: 0.0,
            retry_after_secs: Some(1),
            latency_ms: 0,
            drop_rate: 0.0,
            path_prefix: None,
            count: None,
            expire_delta_tokens: false,
            revoke_tokens: false,
        }
    }
}

impl Faults {
    /// Checks the ranges; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("errorRate", self.error_rate),
            ("throttleRate", self.throttle_rate),
            ("dropRate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} {rate} is not within 0.0..=1.0"));
            }
        }
        if !(500..600).contains(&self.error_status) {
            return Err(format!("errorStatus {} is not 5xx", self.error_status));
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!(
                "latencyMs {} is over {MAX_LATENCY_MS}",
                self.latency_ms
            ));
        }
        Ok(())
    }
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Pass,
    Error(u16, Option<u64>),
    Throttle(Option<u64>),
    Drop,
}

/// The faults in force and their remaining count.
pub(crate) struct FaultState {
    faults: Faults,
}

impl FaultState {
    pub(crate) fn new(faults: Faults) -> FaultState {
        FaultState { faults }
    }

    pub(crate) fn get(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn set(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Latency and decision for a request to `path`.
    pub(crate) fn decide(&mut self, path: &str, rng: &mut impl Rng) -> (Duration, Decision) {
        let f = &mut self.faults;
        if f.path_prefix
            .as_deref()
            .is_some_and(|p| !path.starts_with(p))
        {
            return (Duration::ZERO, Decision::Pass);
        }
        let latency = Duration::from_millis(f.latency_ms);
        let decision = if hit(rng, f.drop_rate) {
            Decision::Drop
        } else if hit(rng, f.error_rate) {
            Decision::Error(f.error_status, f.retry_after_secs)
        } else if hit(rng, f.throttle_rate) {
            Decision::Throttle(f.retry_after_secs)
        } else {
            Decision::Pass
        };
        match &mut f.count {
            Some(0 | 1) => self.faults = Faults::default(),
            Some(n) => *n -= 1,
            None => {}
        }
        (latency, decision)
    }
}

/// True with probability `p` (out-of-range rates act as 0 or 1, NaN as 0).
fn hit(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

/// Middleware: applies the faults in force to contract requests.
pub(crate) async fn inject(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/emulator/") {
        return next.run(req).await;
    }
    let (latency, decision) = s.faults().decide(req.uri().path(), &mut rand::rng());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if decision != Decision::Pass {
        s.stats.bump(&s.stats.faults_injected);
    }
    match decision {
        Decision::Pass => next.run(req).await,
        Decision::Drop => {
            if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>() {
                peer.kill();
            }
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Decision::Error(status, retry_after) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = Json(ErrorBody::new("serviceError", "injected fault"));
            with_retry_after(status, retry_after.filter(|_| status.as_u16() == 503), body)
        }
        Decision::Throttle(retry_after) => {
            let body = Json(ErrorBody::new("tooManyRequests", "injected throttling"));
            with_retry_after(StatusCode::TOO_MANY_REQUESTS, retry_after, body)
        }
    }
}

fn with_retry_after(status: StatusCode, secs: Option<u64>, body: impl IntoResponse) -> Response {
    match secs {
        Some(n) => (status, [(header::RETRY_AFTER, n.to_string())], body).into_response(),
        None => (status, body).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn certain_faults_decide_and_count_down() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut st = FaultState::new(Faults {
            throttle_rate: 1.0,
            retry_after_secs: Some(7),
            count: Some(2),
            path_prefix: Some("/v1.0/".into()),
            ..Faults::default()
        });
        assert_eq!(
            st.decide("/t/oauth2/v2.0/token", &mut rng).1,
            Decision::Pass
        );
        assert_eq!(
            st.decide("/v1.0/x", &mut rng).1,
            Decision::Throttle(Some(7))
        );
        assert_eq!(
            st.decide("/v1.0/x", &mut rng).1,
            Decision::Throttle(Some(7))
        );
        assert_eq!(
            st.decide("/v1.0/x", &mut rng).1,
            Decision::Pass,
            "count spent"
        );
        assert_eq!(st.get(), &Faults::default());
    }

    #[test]
    fn drop_wins_over_errors() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut st = FaultState::new(Faults {
            drop_rate: 1.0,
            error_rate: 1.0,
            latency_ms: 5,
            ..Faults::default()
        });
        assert_eq!(
            st.decide("/v1.0/x", &mut rng),
            (Duration::from_millis(5), Decision::Drop)
        );
    }

    #[test]
    fn ranges_are_checked() {
        assert!(Faults::default().check().is_ok());
        let bad = [
            Faults {
                error_rate: 1.5,
                ..Faults::default()
            },
            Faults {
                drop_rate: -0.1,
                ..Faults::default()
            },
            Faults {
                error_status: 429,
                ..Faults::default()
            },
            Faults {
                latency_ms: MAX_LATENCY_MS + 1,
                ..Faults::default()
            },
        ];
        for f in bad {
            assert!(f.check().is_err(), "{f:?}");
        }
    }
}
