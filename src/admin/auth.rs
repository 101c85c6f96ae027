//! The admin bearer token: read from `admin.token_file` or `admin.token_env` (never from
//! the TOML itself), and compared in constant time.
//!
//! Only the token's SHA-256 is kept. A presented token is hashed and the two digests are
//! compared without an early exit, so neither the time taken nor the length of what was
//! presented tells an attacker how much of the token it got right.

use std::path::PathBuf;

use ring::digest::{digest, SHA256};

use crate::config::Admin;

/// Shortest token accepted: anything shorter is too easy to guess.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the admin token could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token file could not be read.
    #[error("admin.token_file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is unset or not Unicode.
    #[error("admin.token_env: environment variable {var} is not set (or not Unicode)")]
    Env {
        /// The variable.
        var: String,
    },
    /// The token is shorter than [`MIN_TOKEN_LEN`] (after removing the trailing newline).
    #[error("admin: the token from {from} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// Where it was read from.
        from: String,
    },
    /// Both `token_file` and `token_env` are set.
    #[error("admin: token_file and token_env are both set; keep one")]
    Ambiguous,
}

/// A configured bearer token (only its digest is held).
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token with this secret value.
    pub fn new(secret: &[u8]) -> Token {
        Token {
            digest: sha256(secret),
        }
    }

    /// True when `presented` is the token; constant time in its content and length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let other = sha256(presented);
        let diff = self
            .digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    /// Reads the token configured in `[admin]`: `None` when there is none.
    pub fn load(cfg: &Admin) -> Result<Option<Token>, TokenError> {
        let (raw, from) = match (&cfg.token_file, &cfg.token_env) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err(TokenError::Ambiguous),
            (Some(path), None) => {
                let raw = std::fs::read_to_string(path).map_err(|source| TokenError::File {
                    path: path.clone(),
                    source,
                })?;
                (raw, format!("file {}", path.display()))
            }
            (None, Some(var)) => {
                let raw = std::env::var(var).map_err(|_| TokenError::Env { var: var.clone() })?;
                (raw, format!("environment variable {var}"))
            }
        };
        // Editors and `echo` leave a newline; nothing else is trimmed.
        let secret = raw
            .strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(&raw);
        if secret.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort { from });
        }
        Ok(Some(Token::new(secret.as_bytes())))
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

/// The credentials of an `Authorization` header value: the part after a `Bearer` scheme
/// (matched case-insensitively, RFC 7235 §2.1), or `None` for any other scheme.
pub(super) fn bearer(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let rest = header.get(7..)?;
    let start = rest.iter().position(|&b| b != b' ')?;
    rest.get(start..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_token() {
        let t = Token::new(b"0123456789abcdef");
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcdef0"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn loads_from_file_or_env_and_refuses_short_tokens() {
        let dir = crate::testdir::temp_dir("admin-auth");
        let file = dir.join("token");
        std::fs::write(&file, "a-long-enough-admin-token\r\n").unwrap();
        let mut cfg = Admin {
            token_file: Some(file.clone()),
            ..Admin::default()
        };
        let t = Token::load(&cfg).unwrap().unwrap();
        assert!(t.matches(b"a-long-enough-admin-token"));
        std::fs::write(&file, "short\n").unwrap();
        let e = Token::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("shorter than 16"), "{e}");
        cfg.token_file = Some(dir.join("missing"));
        assert!(matches!(Token::load(&cfg), Err(TokenError::File { .. })));
        cfg.token_file = None;
        // A variable name no other test uses: setting it cannot race another test's read.
        let var = format!("OCEDGE_ADMIN_TEST_TOKEN_{}", std::process::id());
        cfg.token_env = Some(var.clone());
        assert!(matches!(Token::load(&cfg), Err(TokenError::Env { .. })));
        std::env::set_var(&var, "env-token-of-enough-length");
        let t = Token::load(&cfg).unwrap().unwrap();
        assert!(t.matches(b"env-token-of-enough-length"));
        assert!(Token::load(&Admin::default()).unwrap().is_none());
    }
}
