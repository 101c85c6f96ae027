//! [`HttpApi`]: the client of the documented contract (`docs/microsoft-api.md`).
//!
//! - One request per call and no retries: the sync loop and the uploader own retry, backoff
//!   and `Retry-After`; the client only says what happened, as an [`ApiError`].
//! - Every request is bounded by `api.timeout`; redirects are not followed and response
//!   bodies are capped ([`super::response::MAX_RESPONSE_BYTES`]); statuses map to
//!   [`ApiError`] in [`super::response`].
//! - `@odata.nextLink` / `@odata.deltaLink` are followed only when absolute and under the
//!   configured base URL (same scheme, host and port, path below the base path). Every
//!   request carries the bearer token, so following a link elsewhere would hand the token
//!   to whoever wrote the link, and would let one bad response steer the number table.
//! - Plain `http://` is accepted for loopback hosts only (the emulator): the client secret
//!   and tokens never cross a network in clear text.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, RequestBuilder, StatusCode, Url};

use super::response::{clip, decode, read, success, transport, Raw};
use super::token::TokenSource;
use super::wire;
use super::{
    ApiError, BoxFuture, CallRecordsApi, CallRecordsPage, Cursor, DurationRecord, DurationResults,
    DurationsApi, NumbersApi, NumbersPage,
};
use crate::config::Api;

/// Why the client could not be built from `[api]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// `api.base_url` is not usable.
    #[error("api.base_url {url:?}: {reason}")]
    BaseUrl {
        /// The configured value.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `api.tenant` is not one URL path segment.
    #[error("api.tenant {0:?}: must be one non-empty path segment")]
    Tenant(String),
    /// The HTTP client (TLS roots, resolver) could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// The HTTP client of the Microsoft API contract.
pub struct HttpApi {
    client: Client,
    /// Origin and base path, normalised by [`Url`].
    base: Url,
    /// The base path without its trailing `/` (empty for the root).
    base_path: String,
    page_size: u32,
    token: TokenSource,
}

impl std::fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpApi")
            .field("base", &self.base.as_str())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl HttpApi {
    /// Builds the client for `api` with the client secret from [`super::load_secret`].
    ///
    /// `api.base_url` must be a URL: for `"embedded"` the daemon starts the emulator first
    /// and passes [`crate::emulator::RunningEmulator::api_config`]; the embedded emulator
    /// accepts any credentials, so any non-empty secret does when none is configured.
    pub fn new(api: &Api, secret: String) -> Result<HttpApi, SetupError> {
        let base = base_url(&api.base_url).map_err(|reason| SetupError::BaseUrl {
            url: api.base_url.clone(),
            reason,
        })?;
        let tenant = api.tenant.as_str();
        if !tenant_ok(tenant) {
            return Err(SetupError::Tenant(api.tenant.clone()));
        }
        let base_path = base.path().trim_end_matches('/').to_owned();
        let client = Client::builder()
            .use_rustls_tls()
            .timeout(api.timeout.0)
            .connect_timeout(api.timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ocedge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        let mut token_url = base.clone();
        token_url.set_path(&format!("{base_path}/{tenant}{}", wire::TOKEN_PATH));
        let token = TokenSource::new(token_url, api.client_id.clone(), secret, api.scope.clone());
        Ok(HttpApi {
            client,
            base,
            base_path,
            // The contract's servers clamp `$top` anyway; 0 would be a 400.
            page_size: api.page_size.clamp(1, wire::MAX_PAGE_SIZE as u32),
            token,
        })
    }

    /// The base URL requests go to and links must stay under.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Reads one page of the numbers listing or delta (see [`NumbersApi`]).
    pub async fn numbers_page(&self, cursor: Cursor<'_>) -> Result<NumbersPage, ApiError> {
        let url = match cursor {
            Cursor::Start => {
                let mut url = self.endpoint(wire::NUMBERS_PATH);
                url.query_pairs_mut()
                    .append_pair(wire::TOP, &self.page_size.to_string());
                url
            }
            Cursor::Next(link) | Cursor::Delta(link) => self.link(link)?,
        };
        let raw = self
            .send(|t| self.client.get(url.clone()).bearer_auth(t))
            .await?;
        decode(&raw, "numbers page")
    }

    /// Uploads one batch of call durations (see [`DurationsApi`]); the answer must hold one
    /// result per record, in order, else it is a [`ApiError::Decode`].
    pub async fn upload_durations(
        &self,
        records: &[DurationRecord],
    ) -> Result<DurationResults, ApiError> {
        let body = Bytes::from(crate::cdr::duration_batch(records));
        let url = self.endpoint(wire::DURATIONS_PATH);
        let raw = self
            .send(|t| {
                self.client
                    .post(url.clone())
                    .bearer_auth(t)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let results: DurationResults = decode(&raw, "duration results")?;
        let matches = results.value.len() == records.len()
            && results.value.iter().zip(records).all(|(r, b)| r.id == b.id);
        if !matches {
            return Err(ApiError::Decode(format!(
                "duration results: {} results for {} records, or out of order",
                results.value.len(),
                records.len()
            )));
        }
        Ok(results)
    }

    /// Reads one page of Microsoft's call records (see [`CallRecordsApi`]).
    pub async fn call_records(
        &self,
        from: SystemTime,
        to: SystemTime,
        next: Option<&str>,
    ) -> Result<CallRecordsPage, ApiError> {
        let url = match next {
            Some(link) => self.link(link)?,
            None => {
                let mut url = self.endpoint(wire::CALL_RECORDS_PATH);
                url.query_pairs_mut()
                    .append_pair(
                        wire::FROM_DATE_TIME,
                        &humantime::format_rfc3339_millis(from).to_string(),
                    )
                    .append_pair(
                        wire::TO_DATE_TIME,
                        &humantime::format_rfc3339_millis(to).to_string(),
                    )
                    .append_pair(wire::TOP, &self.page_size.to_string());
                url
            }
        };
        let raw = self
            .send(|t| self.client.get(url.clone()).bearer_auth(t))
            .await?;
        decode(&raw, "call records page")
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base_path));
        url
    }

    /// Parses a link from a response and checks it stays under the base URL.
    fn link(&self, link: &str) -> Result<Url, ApiError> {
        let shown = clip(link, 200);
        let url = Url::parse(link)
            .map_err(|_| ApiError::Decode(format!("link {shown:?} is not an absolute URL")))?;
        let same_origin = url.scheme() == self.base.scheme()
            && url.host() == self.base.host()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none();
        let under_base = url
            .path()
            .strip_prefix(self.base_path.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        if same_origin && under_base {
            Ok(url)
        } else {
            Err(ApiError::Decode(format!(
                "link {shown:?} leaves the API base URL {}: not followed",
                self.base
            )))
        }
    }

    /// Sends with the cached token; on a 401 fetches a new token and sends once more.
    async fn send<F>(&self, build: F) -> Result<Raw, ApiError>
    where
        F: Fn(&str) -> RequestBuilder,
    {
        let token = self.token.get(&self.client).await?;
        let raw = read(build(&token).send().await.map_err(transport)?).await?;
        if raw.status != StatusCode::UNAUTHORIZED {
            return success(raw);
        }
        tracing::debug!("api refused the token; fetching a new one");
        self.token.invalidate(&token).await;
        let token: Arc<str> = self.token.get(&self.client).await?;
        success(read(build(&token).send().await.map_err(transport)?).await?)
    }
}

impl NumbersApi for HttpApi {
    fn numbers<'a>(&'a self, cursor: Cursor<'a>) -> BoxFuture<'a, Result<NumbersPage, ApiError>> {
        Box::pin(self.numbers_page(cursor))
    }
}

impl DurationsApi for HttpApi {
    fn upload<'a>(
        &'a self,
        records: &'a [DurationRecord],
    ) -> BoxFuture<'a, Result<DurationResults, ApiError>> {
        Box::pin(self.upload_durations(records))
    }
}

impl CallRecordsApi for HttpApi {
    fn call_records<'a>(
        &'a self,
        from: SystemTime,
        to: SystemTime,
        next: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CallRecordsPage, ApiError>> {
        Box::pin(HttpApi::call_records(self, from, to, next))
    }
}

/// `api.base_url` parsed, or why the client cannot use it: https, or http to a loopback
/// host; no query, fragment or credentials. `ocedge check-config` reports the same.
pub fn base_url(text: &str) -> Result<Url, &'static str> {
    let base = Url::parse(text).map_err(|_| "not an absolute URL")?;
    match base.scheme() {
        "https" => {}
        "http" if is_loopback(&base) => {}
        "http" => return Err("http:// is only allowed to a loopback host"),
        _ => return Err("scheme must be https (or http to loopback)"),
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err("must not carry credentials");
    }
    Ok(base)
}

/// True when `api.tenant` is one URL path segment (it goes into the token URL).
pub fn tenant_ok(tenant: &str) -> bool {
    !tenant.is_empty() && !tenant.contains(['/', '?', '#', '%'])
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(base: &str) -> Api {
        toml::from_str(&format!("base_url = {base:?}")).expect("minimal [api]")
    }

    fn client(base: &str) -> HttpApi {
        HttpApi::new(&api(base), "s".into()).expect("client")
    }

    #[test]
    fn base_url_rules() {
        assert!(HttpApi::new(&api("https://api.example.com/oc/"), "s".into()).is_ok());
        assert!(HttpApi::new(&api("http://127.0.0.1:8088"), "s".into()).is_ok());
        assert!(HttpApi::new(&api("http://localhost:8088"), "s".into()).is_ok());
        for bad in [
            "embedded",
            "http://api.example.com",
            "ftp://127.0.0.1",
            "https://u:p@api.example.com",
            "https://api.example.com/?x=1",
        ] {
            assert!(HttpApi::new(&api(bad), "s".into()).is_err(), "{bad}");
        }
        let mut a = api("https://api.example.com");
        a.tenant = "a/b".into();
        assert!(matches!(
            HttpApi::new(&a, "s".into()),
            Err(SetupError::Tenant(_))
        ));
    }

    #[test]
    fn links_must_stay_under_the_base() {
        let c = client("https://api.example.com/oc");
        let ok = "https://api.example.com/oc/v1.0/operatorConnect/numbers?$skiptoken=x";
        assert!(c.link(ok).is_ok());
        assert!(c.link("https://api.example.com:443/oc/v1.0/x").is_ok());
        for bad in [
            "/oc/v1.0/operatorConnect/numbers",
            "https://evil.example.com/oc/v1.0/x",
            "https://api.example.com.evil.com/oc/v1.0/x",
            "https://api.example.com@evil.com/oc/v1.0/x",
            "https://x@api.example.com/oc/v1.0/x",
            "http://api.example.com/oc/v1.0/x",
            "https://api.example.com:8443/oc/v1.0/x",
            "https://api.example.com/other/v1.0/x",
            "https://api.example.com/ocx/v1.0/x",
        ] {
            assert!(
                matches!(c.link(bad), Err(ApiError::Decode(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn endpoints_and_token_url_keep_the_base_path() {
        let c = client("https://api.example.com/oc/");
        assert_eq!(
            c.endpoint(wire::NUMBERS_PATH).as_str(),
            "https://api.example.com/oc/v1.0/operatorConnect/numbers"
        );
    }
}
