//! `[reconcile]`: pulling Microsoft's call records and reconciling them with ours
//! (`crate::reconcile`, `docs/reconcile.md`). Checked in `check.rs` (`check_reconcile`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::schema::Dur;

/// Longest pull window (one request window of the call-records listing).
pub const MAX_PULL_WINDOW: Duration = Duration::from_secs(3600);

/// `[reconcile]`: where Microsoft's records and the reports are kept, and how records are
/// matched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconcile {
    /// Pull and reconcile at all (needs `[api]` and `cdr.enabled`).
    pub enabled: bool,
    /// Directory of the pulled records (`ms-records/`) and the reports (`reports/`).
    pub dir: PathBuf,
    /// How often the puller looks for a settled window once it has caught up.
    pub interval: Dur,
    /// Records are pulled only for calls that ended at least this long ago (Microsoft's
    /// records appear some time after the call).
    pub settle: Dur,
    /// Longest window of one pull (at most 1h).
    pub pull_window: Dur,
    /// Each pull re-reads this much before its cursor, to catch records that appeared late
    /// (duplicates are dropped by record id).
    pub reread: Dur,
    /// At the very first start, how far back the first pull and the first report begin.
    pub backfill: Dur,
    /// Length of one report window.
    pub report_window: Dur,
    /// Records with no common Call-ID match when their numbers agree and their starts are
    /// at most this far apart.
    pub match_window: Dur,
    /// Durations that differ by more than this are a mismatch.
    pub tolerance: Dur,
    /// Records ending this close outside a report window are still candidates for its
    /// matches (a pair belongs to the window of our record's end).
    pub edge_margin: Dur,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            enabled: false,
            dir: PathBuf::from("var/reconcile"),
            interval: Dur(Duration::from_secs(60)),
            settle: Dur(Duration::from_secs(120)),
            pull_window: Dur(MAX_PULL_WINDOW),
            reread: Dur(Duration::from_secs(600)),
            backfill: Dur(Duration::from_secs(3600)),
            report_window: Dur(Duration::from_secs(3600)),
            match_window: Dur(Duration::from_secs(5)),
            tolerance: Dur(Duration::from_secs(1)),
            edge_margin: Dur(Duration::from_secs(300)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The shipped configuration with its `[reconcile]` table replaced by `table`.
    fn with_reconcile(table: &str) -> Result<Config, String> {
        let base = include_str!("../../config/ocedge.toml");
        let cut = base.find("\n[reconcile]").unwrap_or(base.len());
        let after = base
            .get(cut + 1..)
            .and_then(|rest| rest.find("\n[").map(|i| &rest[i..]))
            .unwrap_or("");
        let text = format!("{}\n[reconcile]\n{table}\n{after}", &base[..cut]);
        Config::parse(&text, "t").map_err(|e| e.to_string())
    }

    #[test]
    fn shipped_table_and_defaults_load() {
        let c = with_reconcile("enabled = true").unwrap();
        assert!(c.reconcile.enabled);
        assert_eq!(c.reconcile.match_window.0.as_secs(), 5);
        assert_eq!(c.reconcile.tolerance.0.as_secs(), 1);
        let shipped = Config::parse(include_str!("../../config/ocedge.toml"), "t").unwrap();
        assert!(shipped.reconcile.enabled);
    }

    #[test]
    fn bad_values_are_named() {
        let e = with_reconcile("enabled = true\npull_window = \"2h\"\nreport_window = \"10s\"")
            .unwrap_err();
        assert!(e.contains("reconcile.pull_window: must be between"), "{e}");
        assert!(
            e.contains("reconcile.report_window: must be between"),
            "{e}"
        );
        let e = with_reconcile("enabled = true\nmatch_window = \"10m\"\nedge_margin = \"1s\"")
            .unwrap_err();
        assert!(e.contains("reconcile.match_window"), "{e}");
        assert!(e.contains("reconcile.edge_margin: must be at least"), "{e}");
        let e = with_reconcile("enabled = true\nwindow = \"1h\"").unwrap_err();
        assert!(e.contains("unknown field `window`"), "{e}");
        let e = with_reconcile("enabled = true\ninterval = \"0s\"\ndir = \"\"").unwrap_err();
        assert!(e.contains("reconcile.interval: must be"), "{e}");
        assert!(e.contains("reconcile.dir: must not be empty"), "{e}");
    }
}
