//! The OAuth2 client secret and the bearer token the client caches.
//!
//! The secret is never in the TOML: `api.client_secret_file` names a file, or
//! `api.client_secret_env` an environment variable. [`load_secret`] reads whichever is set.
//!
//! `TokenSource` fetches a token with the client credentials grant and keeps it until 80%
//! of its `expires_in` has passed, so a token is never used close to its expiry even with
//! clock skew or slow requests; the API answering 401 anyway (revoked, server restarted)
//! drops the cached token and the caller fetches a new one, once. One fetch at a time: the
//! cache is behind an async mutex, so concurrent callers wait for the same fetch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode, Url};

use super::response::{message_of, read, status_error, transport};
use super::{ApiError, TokenResponse};
use crate::config::Api;

/// Share of `expires_in` after which the cached token is replaced.
pub const REFRESH_FRACTION: f64 = 0.8;

/// Why the client secret could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Neither `client_secret_file` nor `client_secret_env` is set.
    #[error(
        "api: set client_secret_file or client_secret_env (the secret is never in the config)"
    )]
    NotConfigured,
    /// Both are set: which one wins would be a guess.
    #[error("api: client_secret_file and client_secret_env are both set; keep one")]
    Ambiguous,
    /// The secret file could not be read.
    #[error("api.client_secret_file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is unset or not Unicode.
    #[error("api.client_secret_env: environment variable {var} is {reason}")]
    Env {
        /// The variable.
        var: String,
        /// `not set` or `not valid Unicode`.
        reason: &'static str,
    },
    /// The secret is empty (after removing the trailing newline).
    #[error("api: the client secret from {from} is empty")]
    Empty {
        /// Where it was read from.
        from: String,
    },
}

/// Reads the client secret from `api.client_secret_file` or `api.client_secret_env`; a
/// trailing newline (`\n` or `\r\n`, as editors and `echo` leave) is removed.
pub fn load_secret(api: &Api) -> Result<String, SecretError> {
    let (raw, from) = match (&api.client_secret_file, &api.client_secret_env) {
        (Some(_), Some(_)) => return Err(SecretError::Ambiguous),
        (None, None) => return Err(SecretError::NotConfigured),
        (Some(path), None) => {
            let raw = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                path: path.clone(),
                source,
            })?;
            (raw, format!("file {}", path.display()))
        }
        (None, Some(var)) => {
            let raw = std::env::var(var).map_err(|e| SecretError::Env {
                var: var.clone(),
                reason: match e {
                    std::env::VarError::NotPresent => "not set",
                    std::env::VarError::NotUnicode(_) => "not valid Unicode",
                },
            })?;
            (raw, format!("environment variable {var}"))
        }
    };
    let secret = raw
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&raw);
    if secret.is_empty() {
        return Err(SecretError::Empty { from });
    }
    Ok(secret.to_owned())
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A token and when to stop using it.
struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

/// Fetches and caches the bearer token (client credentials grant).
pub(crate) struct TokenSource {
    url: Url,
    client_id: String,
    secret: Secret,
    scope: String,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl TokenSource {
    pub(crate) fn new(url: Url, client_id: String, secret: String, scope: String) -> Self {
        TokenSource {
            url,
            client_id,
            secret: Secret(secret),
            scope,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached token, or a fresh one when there is none or it is due for refresh.
    pub(crate) async fn get(&self, http: &Client) -> Result<Arc<str>, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `used` after the API refused it; a newer token fetched meanwhile is kept.
    pub(crate) async fn invalidate(&self, used: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| &*c.token == used) {
            *cached = None;
        }
    }

    async fn fetch(&self, http: &Client) -> Result<Cached, ApiError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.0.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let started = Instant::now();
        let resp = http
            .post(self.url.clone())
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let raw = read(resp).await?;
        if raw.status == StatusCode::BAD_REQUEST {
            // invalid_request / unsupported_grant_type / invalid_scope: the configuration is
            // wrong, which retrying does not fix.
            return Err(ApiError::Unauthorized(message_of(&raw.body)));
        }
        if !raw.status.is_success() {
            return Err(status_error(&raw));
        }
        let answer: TokenResponse = serde_json::from_slice(&raw.body)
            .map_err(|e| ApiError::Decode(format!("token response: {e}")))?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") || answer.access_token.is_empty() {
            return Err(ApiError::Decode(format!(
                "token response: token_type {:?} with {} token",
                answer.token_type,
                if answer.access_token.is_empty() {
                    "an empty"
                } else {
                    "a"
                }
            )));
        }
        let lifetime = Duration::from_secs(answer.expires_in).mul_f64(REFRESH_FRACTION);
        tracing::debug!(expires_in = answer.expires_in, "api token fetched");
        Ok(Cached {
            token: answer.access_token.into(),
            // Counted from before the request: the server's clock started during it.
            refresh_at: started + lifetime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn api() -> Api {
        toml::from_str("base_url = \"http://127.0.0.1:1\"").expect("minimal [api]")
    }

    #[test]
    fn file_secret_loses_one_trailing_newline() {
        let dir = crate::testdir::temp_dir("secret");
        let path = dir.join("secret");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(b"s3cret \r\n").expect("write");
        let mut api = api();
        api.client_secret_file = Some(path.clone());
        assert_eq!(load_secret(&api).expect("secret"), "s3cret ");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(load_secret(&api), Err(SecretError::Empty { .. })));
        api.client_secret_file = Some(dir.join("missing"));
        let err = load_secret(&api).expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn env_secret_and_configuration_errors() {
        let mut api = api();
        assert!(matches!(load_secret(&api), Err(SecretError::NotConfigured)));
        api.client_secret_env = Some("OCEDGE_TEST_SECRET_SURELY_UNSET".into());
        let err = load_secret(&api).expect_err("unset variable");
        assert!(err.to_string().contains("not set"), "{err}");
        api.client_secret_file = Some("x".into());
        assert!(matches!(load_secret(&api), Err(SecretError::Ambiguous)));
        // PATH is set in every test environment; only its presence matters here.
        api.client_secret_file = None;
        api.client_secret_env = Some("PATH".into());
        assert!(load_secret(&api).is_ok());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret("hunter2".into())),
            "Secret(<redacted>)"
        );
    }
}
