//! The daemon's TOML configuration: strict (unknown keys are errors), every field documented,
//! errors reported with their key path and line.
//!
//! Today it holds the SIP size limits; the proxy, API and spool tables join it as those
//! subsystems land. Loading never half-applies: a file either yields a complete, checked
//! [`Config`] or every error found in it.

use std::path::Path;

use serde::Deserialize;

use crate::sip::Limits;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Size limits on SIP input (`[limits]`); every key optional, defaults in [`Limits`].
    #[serde(default)]
    pub limits: Limits,
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Syntax errors, unknown keys, wrong types (the message names the key and line).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// What the TOML decoder reported, with key path and position.
        message: String,
    },
    /// Values that parse but are invalid together, each with its key path.
    #[error("{path}: {}", .errors.join("; "))]
    Invalid {
        /// The file.
        path: String,
        /// `key.path: problem` for every problem found.
        errors: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let errors = config.problems();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                errors,
            })
        }
    }

    /// Every semantic problem, as `key.path: problem`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = self.limits.check() {
            out.push(format!("limits: {e}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let e = Config::parse("[limits]\nmax_mesage = 10\n", "t.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("max_mesage"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        let e = Config::parse("[limitz]\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("limitz"));
    }

    #[test]
    fn partial_limits_keep_defaults_and_are_checked() {
        let c = Config::parse("[limits]\nmax_vias = 8\n", "t").unwrap();
        assert_eq!(c.limits.max_vias, 8);
        assert_eq!(c.limits.max_message, Limits::DEFAULT.max_message);
        let e = Config::parse("[limits]\nmax_body = 99999999\n", "t").unwrap_err();
        assert!(e.to_string().contains("limits: max_body"), "{e}");
        let e = Config::parse("[limits]\nmax_vias = -1\n", "t").unwrap_err();
        assert!(e.to_string().contains("max_vias"), "{e}");
    }
}
