//! Checks a Prometheus text exposition (a `/metrics` page) against the [catalogue]: every
//! metric served is catalogued with exactly its labels and allowed values, and every
//! catalogued metric and fixed label value is served.
//!
//! The parser reads only what the exporter writes (`name{k="v",…} value` sample lines and
//! `#` comments); it never panics, whatever the input.
//!
//! [catalogue]: super::catalogue

use std::collections::{BTreeMap, BTreeSet};

use super::catalogue::{find, Values, CATALOGUE};

/// One sample line: metric name and labels (the value is not needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Label names and values, in the order written.
    pub labels: Vec<(String, String)>,
}

/// What [`audit`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Served but not allowed: an uncatalogued metric, labels other than the catalogued
    /// ones, a value outside a fixed set, or a line that does not parse.
    pub unknown: Vec<String>,
    /// Catalogued but not served: a metric, or a fixed label value (`name{label="value"}`).
    pub missing: Vec<String>,
}

impl Audit {
    /// True when nothing is unknown or missing.
    pub fn is_clean(&self) -> bool {
        self.unknown.is_empty() && self.missing.is_empty()
    }
}

/// Parses the sample lines of a text exposition; `Err` carries a line that does not parse.
pub fn samples(text: &str) -> Vec<Result<Sample, String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).ok_or_else(|| l.to_owned()))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?.to_owned();
    let mut labels = Vec::new();
    let mut rest = line.get(name_end..)?;
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find("=\"")?;
            let key = rest.get(..eq)?.to_owned();
            let (value, after) = quoted(rest.get(eq + 2..)?)?;
            labels.push((key, value));
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let value = rest.trim();
    (!value.is_empty()).then_some(Sample { name, labels })
}

/// A label value up to its closing quote, unescaped; and what follows the quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, s.get(i + 1..)?)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Checks an exposition against the catalogue.
pub fn audit(text: &str) -> Audit {
    let mut out = Audit::default();
    // Fixed label values served, per metric and label.
    let mut seen: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let mut served: BTreeSet<&str> = BTreeSet::new();
    for sample in samples(text) {
        let s = match sample {
            Ok(s) => s,
            Err(line) => {
                out.unknown.push(format!("unparsable line: {line}"));
                continue;
            }
        };
        // A histogram's series: `_bucket` (with `le`), `_sum`, `_count`.
        let mut s = s;
        if find(&s.name).is_none() {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = s.name.strip_suffix(suffix) {
                    if find(base).is_some_and(|m| m.kind == super::catalogue::Kind::Histogram) {
                        s.name = base.to_owned();
                        if suffix == "_bucket" {
                            s.labels.retain(|(k, _)| k != "le");
                        }
                        break;
                    }
                }
            }
        }
        let Some(m) = find(&s.name) else {
            out.unknown
                .push(format!("{}: not in the catalogue", s.name));
            continue;
        };
        served.insert(m.name);
        let got: BTreeSet<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        let want: BTreeSet<&str> = m.labels.iter().map(|l| l.name).collect();
        if got != want || got.len() != s.labels.len() {
            out.unknown.push(format!(
                "{}: labels {got:?}, catalogue says {want:?}",
                m.name
            ));
            continue;
        }
        for (k, v) in &s.labels {
            let Some(label) = m.labels.iter().find(|l| l.name == k) else {
                continue;
            };
            if let Values::Fixed(allowed) = label.values {
                if allowed.contains(&v.as_str()) {
                    seen.entry((m.name, label.name))
                        .or_default()
                        .insert(v.clone());
                } else {
                    out.unknown.push(format!(
                        "{}{{{k}=\"{v}\"}}: value not in the catalogue",
                        m.name
                    ));
                }
            }
        }
    }
    for m in CATALOGUE {
        if !served.contains(m.name) {
            out.missing.push(m.name.to_owned());
            continue;
        }
        for l in m.labels {
            if let Values::Fixed(allowed) = l.values {
                let got = seen.get(&(m.name, l.name));
                for v in allowed {
                    if !got.is_some_and(|g| g.contains(*v)) {
                        out.missing
                            .push(format!("{}{{{}=\"{v}\"}}", m.name, l.name));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exporter_lines_and_never_panics() {
        let s = samples(
            "# HELP x y\nx_total 3\ny{a=\"1\",b=\"q\\\"\\\\\"} 2.5\n\nbad{a=\"1\" 2\nz{} 1",
        );
        assert_eq!(s[0].as_ref().unwrap().name, "x_total");
        let y = s[1].as_ref().unwrap();
        assert_eq!(
            y.labels,
            vec![("a".into(), "1".into()), ("b".into(), "q\"\\".into())]
        );
        assert!(s[2].is_err());
        assert!(s[3].as_ref().unwrap().labels.is_empty());
        for junk in [
            "{",
            "a{b=\"",
            "a{b=\"\\",
            "a ",
            "a{}",
            "\u{e9}{\u{e9}=\"\u{e9}\"} 1",
        ] {
            let _ = samples(junk);
        }
    }

    #[test]
    fn reports_unknown_and_missing() {
        let text = "ocedge_proxy_dropped_total{reason=\"acl\"} 1\n\
                    ocedge_proxy_dropped_total{reason=\"zzz\"} 1\n\
                    ocedge_dest_up{side=\"carrier\"} 1\n\
                    ocedge_bogus 1\n";
        let a = audit(text);
        assert!(!a.is_clean());
        assert!(
            a.unknown.iter().any(|u| u.contains("reason=\"zzz\"")),
            "{a:?}"
        );
        assert!(
            a.unknown
                .iter()
                .any(|u| u.starts_with("ocedge_dest_up: labels")),
            "{a:?}"
        );
        assert!(
            a.unknown
                .iter()
                .any(|u| u == "ocedge_bogus: not in the catalogue"),
            "{a:?}"
        );
        assert!(a
            .missing
            .contains(&"ocedge_proxy_dropped_total{reason=\"flood\"}".to_owned()));
        assert!(!a
            .missing
            .contains(&"ocedge_proxy_dropped_total{reason=\"acl\"}".to_owned()));
        assert!(a.missing.contains(&"ocedge_calls_active".to_owned()));
    }
}
