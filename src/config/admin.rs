//! `[admin]`: the admin HTTP server (`/metrics`, health, status, reload).
//!
//! The bearer token is never written in the TOML: `token_file` names a file and `token_env`
//! an environment variable; `crate::admin` reads whichever is set when it starts. A listen
//! address other than loopback requires one of them (checked in `check.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::schema::Dur;

/// `[admin]`: where the admin HTTP server listens and who may use it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Run the admin server at all.
    pub enabled: bool,
    /// Address and port; loopback by default. Any other address needs a token.
    pub listen: SocketAddr,
    /// File holding the bearer token (one line; at least 16 characters).
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token (instead of `token_file`).
    pub token_env: Option<String>,
    /// Most admin connections open at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request not answered within this time gets 503.
    pub request_timeout: Dur,
    /// A connection with no bytes read or written for this long is closed; longer than
    /// `request_timeout`, so that a request being answered is never cut.
    pub idle_timeout: Dur,
}

impl Admin {
    /// True when a bearer token is configured (by file or environment variable).
    pub fn has_token(&self) -> bool {
        self.token_file.is_some() || self.token_env.is_some()
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_file: None,
            token_env: None,
            max_connections: 32,
            request_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The shipped configuration with its `[admin]` table replaced by `table`.
    fn with_admin(table: &str) -> Result<Config, String> {
        let base = include_str!("../../config/ocedge.toml");
        let cut = base.find("\n[admin]").unwrap_or(base.len());
        let after = base[cut + 1..]
            .find("\n[")
            .map_or("", |i| &base[cut + 1 + i..]);
        let text = format!("{}\n[admin]\n{table}\n{after}", &base[..cut]);
        Config::parse(&text, "t").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_loopback_without_token() {
        let c = with_admin("").unwrap();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9090");
        assert!(!c.admin.has_token());
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let e = with_admin("listen = \"0.0.0.0:9090\"").unwrap_err();
        assert!(e.contains("admin.listen: not a loopback address"), "{e}");
        let c = with_admin("listen = \"0.0.0.0:9090\"\ntoken_env = \"OCEDGE_ADMIN_TOKEN\"");
        assert!(c.is_ok(), "{c:?}");
        let c = with_admin("listen = \"0.0.0.0:9090\"\nenabled = false");
        assert!(c.is_ok(), "{c:?}");
        let c = with_admin("listen = \"[::1]:9090\"");
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = with_admin("token_file = \"/nonexistent/token\"\ntoken_env = \"X\"").unwrap_err();
        assert!(
            e.contains("admin.token_env: admin.token_file is set too"),
            "{e}"
        );
        assert!(
            e.contains("admin.token_file: /nonexistent/token is not"),
            "{e}"
        );
        let e = with_admin("max_connections = 0\nrequest_timeout = \"0s\"").unwrap_err();
        assert!(e.contains("admin.max_connections: must be positive"), "{e}");
        assert!(e.contains("admin.request_timeout: must be positive"), "{e}");
        let e = with_admin("request_timeout = \"1m\"\nidle_timeout = \"30s\"").unwrap_err();
        assert!(e.contains("admin.idle_timeout: must be longer than"), "{e}");
        let e = with_admin("token = \"secret\"").unwrap_err();
        assert!(e.contains("unknown field `token`"), "{e}");
    }
}
