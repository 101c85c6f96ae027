//! Reading responses and mapping them to [`ApiError`]: the status table of
//! `docs/microsoft-api.md` ("Status codes and retry rules") in code.

use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use super::wire::{ErrorBody, OAuthError};
use super::ApiError;

/// Largest response body read; beyond it the response is a [`ApiError::Decode`].
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// `Retry-After` used when a 429/503 carries none (or an HTTP-date, which is not read).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// Largest `Retry-After` believed; a larger value is clamped so one bad header cannot
/// stall the sync for days.
pub const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// A response read whole: status, `Retry-After` seconds, body.
pub(crate) struct Raw {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Vec<u8>,
}

/// Reads a response, refusing bodies over [`MAX_RESPONSE_BYTES`].
pub(crate) async fn read(mut resp: Response) -> Result<Raw, ApiError> {
    let too_big = || ApiError::Decode(format!("response body over {MAX_RESPONSE_BYTES} bytes"));
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_big());
    }
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Raw {
        status,
        retry_after,
        body,
    })
}

pub(crate) fn success(raw: Raw) -> Result<Raw, ApiError> {
    if raw.status.is_success() {
        Ok(raw)
    } else {
        Err(status_error(&raw))
    }
}

pub(crate) fn decode<T: DeserializeOwned>(raw: &Raw, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(&raw.body).map_err(|e| ApiError::Decode(format!("{what}: {e}")))
}

/// Maps an error status to its [`ApiError`].
pub(crate) fn status_error(raw: &Raw) -> ApiError {
    match raw.status.as_u16() {
        401 | 403 => ApiError::Unauthorized(message_of(&raw.body)),
        410 => ApiError::Gone,
        429 | 503 => ApiError::Throttled {
            retry_after_secs: raw
                .retry_after
                .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
                .min(MAX_RETRY_AFTER_SECS),
        },
        status => ApiError::Status {
            status,
            message: message_of(&raw.body),
        },
    }
}

/// The message of an error body: Graph `error.code: error.message`, OAuth2
/// `error: error_description`, else the start of the body as text.
pub(crate) fn message_of(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return clip(&format!("{}: {}", e.error.code, e.error.message), 300);
    }
    if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
        let detail = e.error_description.unwrap_or_default();
        return clip(&format!("{}: {detail}", e.error), 300);
    }
    clip(&String::from_utf8_lossy(body), 300)
}

/// A connection-level failure, with its cause chain (reqwest's own message does not say
/// whether it was a refusal, a reset or a timeout).
pub(crate) fn transport(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Transport(format!("timed out: {e}"));
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::Transport(msg)
}

/// At most `max` characters of `s`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or(s)),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, retry_after: Option<u64>, body: &str) -> Raw {
        Raw {
            status: StatusCode::from_u16(status).expect("status"),
            retry_after,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_errors() {
        assert_eq!(status_error(&raw(410, None, "")), ApiError::Gone);
        assert_eq!(
            status_error(&raw(429, Some(7), "")),
            ApiError::Throttled {
                retry_after_secs: 7
            }
        );
        assert_eq!(
            status_error(&raw(503, None, "")),
            ApiError::Throttled {
                retry_after_secs: DEFAULT_RETRY_AFTER_SECS
            }
        );
        assert_eq!(
            status_error(&raw(429, Some(u64::MAX), "")),
            ApiError::Throttled {
                retry_after_secs: MAX_RETRY_AFTER_SECS
            }
        );
        assert!(matches!(
            status_error(&raw(403, None, "")),
            ApiError::Unauthorized(_)
        ));
        assert_eq!(
            status_error(&raw(
                500,
                None,
                r#"{"error":{"code":"internalError","message":"boom"}}"#
            )),
            ApiError::Status {
                status: 500,
                message: "internalError: boom".into()
            }
        );
    }

    #[test]
    fn error_messages_read_both_body_shapes() {
        assert_eq!(
            message_of(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
            "invalid_client: bad secret"
        );
        assert_eq!(message_of(b"plain text"), "plain text");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
