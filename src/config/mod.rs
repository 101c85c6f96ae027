//! The daemon's TOML configuration: strict (unknown keys are errors), every field documented,
//! errors reported with their key path and line.
//!
//! Loading never half-applies: a file either yields a complete, checked [`Config`] or every
//! error found in it. Type errors are collected per top-level table (each table is decoded on
//! its own, with the other lines blanked so that line numbers stay true), then the semantic
//! checks of [`Config::problems`] run on the decoded whole.

mod admin;
mod check;
pub mod peer;
mod reconcile;
mod schema;

use std::path::Path;

pub use schema::*;

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
    /// Syntax errors, unknown keys, wrong types: one message per table, each naming the key
    /// and line.
    #[error("{path}: {}", .errors.join("\n"))]
    Syntax {
        /// The file.
        path: String,
        /// What the TOML decoder reported, with key path and position.
        errors: Vec<String>,
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
        let syntax = |errors| ConfigError::Syntax {
            path: origin.to_owned(),
            errors,
        };
        // Syntax first: nothing else can be said about a file that is not TOML.
        let table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => return Err(syntax(vec![one_line(&e.to_string())])),
        };
        let mut config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(_) => {
                let errors = check::errors_per_table(text);
                return Err(syntax(errors));
            }
        };
        let errors = config.problems();
        if errors.is_empty() {
            peer::fill_hosts(&mut config, &table);
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_owned(),
                errors,
            })
        }
    }
}

/// Folds the TOML decoder's multi-line report (with its source excerpt) into one line:
/// `line 3, column 1: unknown field ...`.
fn one_line(report: &str) -> String {
    let mut lines = report.lines();
    let head = lines.next().unwrap_or_default();
    let position = head
        .trim_start_matches("TOML parse error at ")
        .trim_end_matches(':')
        .to_owned();
    let message = lines
        .filter(|l| !l.trim_start().starts_with('|') && !l.contains(" | "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{position}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Limits;

    /// The shipped default configuration, with `extra` appended.
    fn with(extra: &str) -> String {
        let base = include_str!("../../config/ocedge.toml");
        format!("{base}\n{extra}")
    }

    #[test]
    fn default_config_loads() {
        let c = Config::parse(&with(""), "t").unwrap();
        assert_eq!(c.listen.len(), 5);
        assert_eq!(c.carrier.unwrap().sbcs[0].addr.port(), 5072);
        assert_eq!(c.limits, Limits::DEFAULT);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = with("[node2]\nfqdn = \"x\"\n");
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("node2"), "{e}");
        let line = text.lines().position(|l| l == "[node2]").unwrap() + 1;
        assert!(e.contains(&format!("line {line}")), "{e}");
    }

    #[test]
    fn every_table_reports_its_own_error() {
        let text = "[limits]\nmax_mesage = 10\n[timers]\nt1 = \"fast\"\n";
        let e = Config::parse(text, "t").unwrap_err().to_string();
        assert!(e.contains("max_mesage") && e.contains("line 2"), "{e}");
        assert!(
            e.contains("invalid duration") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn peer_addresses_may_be_names_resolved_at_load() {
        let text = with("").replace("addr = \"127.0.0.1:5070\"", "addr = \"localhost:5070\"");
        let c = Config::parse(&text, "t").unwrap();
        let ms = c.microsoft.unwrap();
        assert_eq!(ms.targets[0].addr, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(
            ms.targets[0].host.as_deref(),
            Some("localhost"),
            "kept for refresh"
        );
        assert_eq!(
            c.carrier.unwrap().sbcs[0].host,
            None,
            "a literal has no name"
        );

        let text = with("").replace(
            "addr = \"127.0.0.1:5072\"",
            "addr = \"sbc1.ocedge.invalid:5072\"",
        );
        let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
        let line = text
            .lines()
            .position(|l| l.contains("sbc1.ocedge.invalid"))
            .unwrap()
            + 1;
        assert!(
            e.contains("cannot resolve \"sbc1.ocedge.invalid\"")
                && e.contains(&format!("line {line}, column 8")),
            "{e}"
        );
    }

    #[test]
    fn semantic_problems_carry_key_paths() {
        let e = Config::parse("[limits]\nmax_body = 99999999\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits: max_body"), "{e}");
        assert!(e.contains("microsoft: missing table"), "{e}");
        assert!(
            e.contains("listen: no listener for the carrier side"),
            "{e}"
        );
        let text = with("").replace("dns_refresh = \"5m\"", "dns_refresh = \"10ms\"");
        let e = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(
            e.contains("node.dns_refresh: \"0s\" (off) or at least 1s"),
            "{e}"
        );
        let text = with("").replace("dns_refresh = \"5m\"", "dns_refresh = \"0s\"");
        assert!(Config::parse(&text, "t").is_ok(), "0s turns it off");
        let text = with("").replace("weight = 1", "weight = 0");
        let e = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(e.contains("carrier.sbcs[0].weight"), "{e}");
        let text = with("").replace(
            "strip_headers = [\"X-MS-TenantID\"]",
            "strip_headers = [\"v\"]",
        );
        let e = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(
            e.contains("carrier.strip_headers[0]: this header cannot be stripped"),
            "{e}"
        );
    }

    #[test]
    fn what_run_would_refuse_is_reported_by_the_check() {
        let problems = |from: &str, to: &str| {
            let text = with("").replacen(from, to, 1);
            assert_ne!(text, with(""), "{from} is in the default config");
            match Config::parse(&text, "t") {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            }
        };
        // The Microsoft API: its URL, tenant and where the secret comes from.
        let api = |url: &str, secret: &str| {
            problems(
                "base_url = \"embedded\"",
                &format!("base_url = \"{url}\"\n{secret}"),
            )
        };
        let e = api("http://api.example.com", "client_secret_env = \"S\"");
        assert!(
            e.contains("api.base_url: http:// is only allowed to a loopback host"),
            "{e}"
        );
        let e = api("https://api.example.com", "");
        assert!(
            e.contains("api: set client_secret_file or client_secret_env"),
            "{e}"
        );
        let e = api(
            "https://api.example.com",
            "client_secret_env = \"S\"\nclient_secret_file = \"/nonexistent/secret\"",
        );
        assert!(
            e.contains("api.client_secret_env: api.client_secret_file is set too"),
            "{e}"
        );
        let e = api(
            "https://api.example.com",
            "client_secret_file = \"/nonexistent/secret\"",
        );
        assert!(
            e.contains("api.client_secret_file: /nonexistent/secret is not a readable file"),
            "{e}"
        );
        assert_eq!(
            api("https://api.example.com", "client_secret_env = \"S\""),
            ""
        );
        assert_eq!(
            api("http://127.0.0.1:8089", "client_secret_env = \"S\""),
            ""
        );
        let e = problems("tenant = \"operator\"", "tenant = \"a/b\"");
        assert!(
            e.contains("api.tenant: must be one non-empty URL path segment"),
            "{e}"
        );
        // The statuses the number policy answers with must be final error statuses.
        for (key, bad) in [
            ("unassigned_status = 404", "200"),
            ("forbidden_status = 403", "99"),
        ] {
            let name = key.split(' ').next().unwrap_or_default();
            let e = problems(key, &format!("{name} = {bad}"));
            assert!(
                e.contains(&format!(
                    "numbers.{name}: must be a final error status, 400 to 699"
                )),
                "{e}"
            );
        }
        assert_eq!(
            problems("unassigned_status = 404", "unassigned_status = 480"),
            ""
        );
    }
}
