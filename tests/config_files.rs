//! Every file in `config/` and `bench/` loads; an unknown key injected into any of its tables is refused
//! with the key named.
//!
//! `config/production.example.toml` names certificates and secrets under `/etc/ocedge/` that
//! exist only on a production host: here it must pass every check but those files' presence;
//! `tests/packaging.rs` loads it with stand-ins for them.

use std::path::PathBuf;

use ocedge::config::{Config, ConfigError};

/// Every shipped configuration: `config/*.toml` and the benchmark configs `bench/*.toml`.
fn config_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["config", "bench"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn every_shipped_config_loads() {
    for f in config_files() {
        match Config::load(&f) {
            Ok(_) => {}
            Err(ConfigError::Invalid { errors, .. })
                if errors.iter().all(|e| is_production_file_missing(e)) => {}
            Err(e) => panic!("{}: {e}", f.display()),
        }
    }
}

/// A check that failed only because a file of the production host is not on this one.
fn is_production_file_missing(problem: &str) -> bool {
    problem.contains(": /etc/ocedge/") && problem.contains(" is not a readable file")
}

#[test]
fn unknown_key_in_any_table_is_refused() {
    for f in config_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let tables: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with('['))
            .map(|(i, _)| i)
            .collect();
        // The top level, then after every table header.
        for at in std::iter::once(None).chain(tables.into_iter().map(Some)) {
            let mut lines: Vec<&str> = text.lines().collect();
            let pos = at.map_or(0, |i| i + 1);
            lines.insert(pos, "surely_not_a_key = 1");
            let err = Config::parse(&lines.join("\n"), "injected")
                .expect_err("unknown key accepted")
                .to_string();
            assert!(err.contains("surely_not_a_key"), "{}: {err}", f.display());
        }
    }
}
