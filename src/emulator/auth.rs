//! The emulator's token endpoint (OAuth2 client credentials) and the bearer check on every
//! API request. Tokens are random, kept with their expiry, and enforced: an unknown or
//! expired token gets 401 with `WWW-Authenticate: Bearer error="invalid_token"`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::Shared;
use crate::msapi::wire::{ErrorBody, OAuthError};
use crate::msapi::TokenResponse;

/// Client credentials the token endpoint accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The OAuth2 client id.
    pub client_id: String,
    /// The OAuth2 client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Live access tokens and their expiry.
pub(crate) struct Tokens {
    live: HashMap<String, Instant>,
    lifetime: Duration,
    max: usize,
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration, max: usize) -> Tokens {
        Tokens {
            live: HashMap::new(),
            lifetime,
            max: max.max(1),
        }
    }

    /// A new token and its `expires_in`; makes room by dropping expired tokens, then the
    /// one expiring soonest.
    pub(crate) fn issue(&mut self, now: Instant) -> (String, u64) {
        if self.live.len() >= self.max {
            self.live.retain(|_, exp| *exp > now);
        }
        if self.live.len() >= self.max {
            let soonest = self
                .live
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(t, _)| t.clone());
            if let Some(t) = soonest {
                self.live.remove(&t);
            }
        }
        let token = format!("{:032x}", rand::random::<u128>());
        self.live.insert(token.clone(), now + self.lifetime);
        (token, self.lifetime.as_secs())
    }

    /// True when `token` was issued and has not expired.
    pub(crate) fn valid(&self, token: &str, now: Instant) -> bool {
        self.live.get(token).is_some_and(|exp| *exp > now)
    }

    /// Forgets every token (the next request of each client gets 401).
    pub(crate) fn revoke_all(&mut self) {
        self.live.clear();
    }
}

/// The token request form; every field optional so a missing one gets an OAuth2 error
/// rather than a framework rejection.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = OAuthError {
        error: error.into(),
        error_description: Some(description.into()),
    };
    (status, Json(body)).into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(s): State<Arc<Shared>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let (Some(id), Some(secret)) = (form.client_id, form.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    if form.scope.as_deref().is_none_or(str::is_empty) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope is required",
        );
    }
    let accepted = s
        .cfg
        .credentials
        .as_ref()
        .is_none_or(|c| c.client_id == id && c.client_secret == secret);
    if !accepted {
        s.stats.bump(&s.stats.tokens_refused);
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: unknown client_id or wrong client_secret",
        );
    }
    let (access_token, expires_in) = s.tokens().issue(Instant::now());
    s.stats.bump(&s.stats.tokens_issued);
    Json(TokenResponse {
        token_type: "Bearer".into(),
        expires_in,
        access_token,
    })
    .into_response()
}

/// Checks the bearer token of an API request; the 401 response when it is not good.
#[allow(clippy::result_large_err)] // the Err is the response itself, built once per refusal
pub(crate) fn authorize(s: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .and_then(|_| v.get(7..))
        })
        .map(str::trim);
    let ok = token.is_some_and(|t| s.tokens().valid(t, Instant::now()));
    if ok {
        return Ok(());
    }
    s.stats.bump(&s.stats.unauthorized);
    let message = if token.is_some() {
        "access token is unknown or expired"
    } else {
        "missing bearer token"
    };
    Err((
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        Json(ErrorBody::new("InvalidAuthenticationToken", message)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_are_bounded() {
        let t0 = Instant::now();
        let mut tokens = Tokens::new(Duration::from_secs(10), 2);
        let (a, expires_in) = tokens.issue(t0);
        assert_eq!(expires_in, 10);
        assert!(tokens.valid(&a, t0 + Duration::from_secs(9)));
        assert!(!tokens.valid(&a, t0 + Duration::from_secs(10)));
        assert!(!tokens.valid("nope", t0));
        let (b, _) = tokens.issue(t0 + Duration::from_secs(1));
        let (c, _) = tokens.issue(t0 + Duration::from_secs(2));
        assert!(
            !tokens.valid(&a, t0),
            "the soonest-expiring token makes room"
        );
        assert!(tokens.valid(&b, t0) && tokens.valid(&c, t0));
        tokens.revoke_all();
        assert!(!tokens.valid(&b, t0));
    }
}
