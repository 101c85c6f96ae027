//! The emulator's seed: assigned numbers from a CSV file, and the checks every number entering
//! the emulator passes (seed, control API, churn).
//!
//! The format is deliberately narrow: the header line
//! `telephone_number,tenant_id,sip_uri,usage`, then one number per line, four fields split
//! on `,`, no quoting (no field of this data needs a comma). Blank lines and a UTF-8 byte
//! order mark are ignored; `\r\n` line ends are accepted. Every malformed row is reported
//! with its line number (up to [`MAX_REPORTED`]), and nothing is loaded unless all rows are
//! good.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::sip::number::E164;

/// The required header line.
pub const SEED_HEADER: &str = "telephone_number,tenant_id,sip_uri,usage";
/// Most row errors reported for one file.
pub const MAX_REPORTED: usize = 20;
/// Longest SIP URI accepted.
pub const MAX_SIP_URI: usize = 256;

/// One assigned number as the emulator stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberSpec {
    /// The number.
    pub number: E164,
    /// Teams tenant (GUID, lowercase or uppercase hex).
    pub tenant_id: String,
    /// Where calls to it are routed (`sip:` or `sips:` URI).
    pub sip_uri: String,
    /// `CallingUserAssignment`, `FirstPartyAppAssignment`, `ConferenceAssignment`, …
    pub usage: String,
    /// `assigned` unless set otherwise through the control API.
    pub assignment_status: String,
    /// `InboundCalling`, `OutboundCalling`, …
    pub capabilities: Vec<String>,
}

impl NumberSpec {
    /// Checks and builds an assigned number with the capabilities its usage implies.
    pub fn new(number: &str, tenant_id: &str, sip_uri: &str, usage: &str) -> Result<Self, String> {
        let number =
            E164::parse(number).map_err(|e| format!("telephone number {number:?}: {e}"))?;
        if !is_guid(tenant_id) {
            return Err(format!("tenant id {tenant_id:?} is not a GUID"));
        }
        let uri_ok = (sip_uri.starts_with("sip:") || sip_uri.starts_with("sips:"))
            && sip_uri.len() <= MAX_SIP_URI
            && !sip_uri
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        if !uri_ok {
            return Err(format!(
                "SIP URI {sip_uri:?} is not a sip:/sips: URI of at most {MAX_SIP_URI} bytes"
            ));
        }
        let usage_ok = !usage.is_empty()
            && usage.len() <= 64
            && usage.bytes().all(|b| b.is_ascii_alphanumeric());
        if !usage_ok {
            return Err(format!(
                "usage {usage:?} is not a word of at most 64 letters"
            ));
        }
        Ok(NumberSpec {
            number,
            tenant_id: tenant_id.to_owned(),
            sip_uri: sip_uri.to_owned(),
            usage: usage.to_owned(),
            assignment_status: "assigned".to_owned(),
            capabilities: default_capabilities(usage),
        })
    }
}

/// Capabilities a number of this usage gets unless told otherwise.
pub fn default_capabilities(usage: &str) -> Vec<String> {
    let caps: &[&str] = match usage {
        "ConferenceAssignment" => &["InboundCalling"],
        _ => &["InboundCalling", "OutboundCalling"],
    };
    caps.iter().map(|c| (*c).to_owned()).collect()
}

/// `8-4-4-4-12` hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A malformed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number (the header is line 1).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Why a seed file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// The file could not be read.
    #[error("seed {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Malformed rows; nothing was loaded.
    #[error("seed {}: {}", path.display(), join(errors))]
    Rows {
        /// The file.
        path: PathBuf,
        /// The first [`MAX_REPORTED`] errors (the last one says when more were cut).
        errors: Vec<RowError>,
    },
}

fn join(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads and parses a seed file.
pub fn load_seed_csv(path: &Path) -> Result<Vec<NumberSpec>, SeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_seed_csv(&text).map_err(|errors| SeedError::Rows {
        path: path.to_owned(),
        errors,
    })
}

/// Parses seed CSV text; all rows or the errors.
pub fn parse_seed_csv(text: &str) -> Result<Vec<NumberSpec>, Vec<RowError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i.saturating_add(1), l));
    let mut errors = Vec::new();
    match lines.next() {
        Some((_, header)) if header.trim_end() == SEED_HEADER => {}
        Some((line, header)) => errors.push(RowError {
            line,
            reason: format!("header {header:?} is not {SEED_HEADER:?}"),
        }),
        None => errors.push(RowError {
            line: 1,
            reason: format!("empty file: the header {SEED_HEADER:?} is missing"),
        }),
    }
    let mut specs = Vec::new();
    let mut seen: HashMap<E164, usize> = HashMap::new();
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        match parse_row(text) {
            Ok(spec) => match seen.insert(spec.number, line) {
                Some(first) => errors.push(RowError {
                    line,
                    reason: format!("{} already on line {first}", spec.number),
                }),
                None => specs.push(spec),
            },
            Err(reason) => errors.push(RowError { line, reason }),
        }
        if errors.len() > MAX_REPORTED {
            errors.truncate(MAX_REPORTED);
            errors.push(RowError {
                line,
                reason: "more errors not shown".into(),
            });
            return Err(errors);
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

fn parse_row(text: &str) -> Result<NumberSpec, String> {
    let text = text.trim_end_matches('\r');
    if text.contains('"') {
        return Err("quoted fields are not supported".into());
    }
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    match fields[..] {
        [number, tenant, uri, usage] => NumberSpec::new(number, tenant, uri, usage),
        _ => Err(format!("expected 4 fields, found {}", fields.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "bdd640fb-0667-4ad1-9c80-317fa3b1799d";

    fn row(n: &str) -> String {
        format!("{n},{T},sip:{n}@t.example.com;user=phone,CallingUserAssignment")
    }

    #[test]
    fn parses_the_bench_format() {
        let text = format!(
            "\u{feff}{SEED_HEADER}\r\n{}\r\n\n{}\n",
            row("+14255510000"),
            row("+14255510001")
        );
        let specs = parse_seed_csv(&text).expect("valid seed");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].number.as_str(), "+14255510000");
        assert_eq!(specs[0].tenant_id, T);
        assert_eq!(specs[0].assignment_status, "assigned");
        assert_eq!(
            specs[0].capabilities,
            vec!["InboundCalling".to_string(), "OutboundCalling".to_string()]
        );
    }

    #[test]
    fn reports_each_bad_row_with_its_line() {
        let text = [
            SEED_HEADER.to_string(),
            row("+14255510000"),
            row("14255510001"),
            "+14255510002,not-a-guid,sip:x@y,CallingUserAssignment".to_string(),
            format!("+14255510003,{T},http://x,CallingUserAssignment"),
            format!("+14255510004,{T},sip:x@y"),
            format!("+14255510005,{T},\"sip:x@y\",CallingUserAssignment"),
            row("+14255510000"),
            format!("+14255510006,{T},sip:x@y,Calling User"),
        ]
        .join("\n");
        let errors = parse_seed_csv(&text).expect_err("bad rows");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9]);
        assert!(errors[0].reason.contains("start with '+'"), "{}", errors[0]);
        assert!(errors[1].reason.contains("GUID"), "{}", errors[1]);
        assert!(errors[2].reason.contains("SIP URI"), "{}", errors[2]);
        assert!(
            errors[3].reason.contains("expected 4 fields, found 3"),
            "{}",
            errors[3]
        );
        assert!(errors[4].reason.contains("quoted"), "{}", errors[4]);
        assert!(
            errors[5].reason.contains("already on line 2"),
            "{}",
            errors[5]
        );
        assert!(errors[6].reason.contains("usage"), "{}", errors[6]);
    }

    #[test]
    fn header_is_required() {
        let errors = parse_seed_csv("number,tenant\n").expect_err("bad header");
        assert_eq!(errors[0].line, 1);
        assert!(errors[0].reason.contains("header"));
        let errors = parse_seed_csv("").expect_err("empty");
        assert!(errors[0].reason.contains("missing"));
        assert_eq!(parse_seed_csv(&format!("{SEED_HEADER}\n")), Ok(vec![]));
    }

    #[test]
    fn error_count_is_bounded() {
        let mut text = SEED_HEADER.to_string();
        for _ in 0..100 {
            text.push_str("\nbad");
        }
        let errors = parse_seed_csv(&text).expect_err("bad rows");
        assert_eq!(errors.len(), MAX_REPORTED + 1);
        assert!(errors[MAX_REPORTED].reason.contains("more errors"));
    }

    #[test]
    fn load_reports_the_path() {
        let err = load_seed_csv(Path::new("/nonexistent/seed.csv")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/seed.csv"), "{err}");
    }

    #[test]
    fn guid_shape() {
        assert!(is_guid(T));
        assert!(is_guid("BDD640FB-0667-4AD1-9C80-317FA3B1799D"));
        assert!(!is_guid("bdd640fb06674ad19c80317fa3b1799d"));
        assert!(!is_guid("bdd640fb-0667-4ad1-9c80-317fa3b1799"));
        assert!(!is_guid("gdd640fb-0667-4ad1-9c80-317fa3b1799d"));
    }
}
