//! The packaging in `contrib/` and `config/production.example.toml` agree with the code and
//! with each other:
//!
//! - every metric the Grafana dashboard's PromQL names is in the catalogue of
//!   `docs/metrics.md`, with the labels and label values listed there (a histogram through
//!   its `_bucket{le}`, `_sum` and `_count` series), every quality metric has a panel, the
//!   dashboard takes its Prometheus data source from a variable, and its panels do not
//!   overlap;
//! - the systemd unit carries the hardening keys, starts the daemon with the path the example
//!   configuration is installed at, and lets it write everywhere that configuration writes;
//! - `config/production.example.toml` passes every check of `ocedge check-config`. It names
//!   certificates and secrets under `/etc/ocedge/` that exist only on a production host, and
//!   the checker rightly refuses missing ones. So the test rewrites those paths to files it
//!   creates in a temporary directory. (`tests/config_files.rs` loads the file as it is and
//!   accepts those missing files as its only problems.)
//!
//! No network.

// The temporary directories of the tests (`src/testdir.rs`).
#[path = "../src/testdir.rs"]
mod testdir;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use ocedge::config::{Config, Side, Transport};
use testdir::{temp_dir, TempDir};

const UNIT: &str = "contrib/systemd/ocedge.service";
const DASHBOARD: &str = "contrib/grafana/ocedge.json";
const EXAMPLE: &str = "config/production.example.toml";
/// Where the production example's certificates and secrets live.
const ETC: &str = "/etc/ocedge/";
/// Labels Prometheus adds at scrape time; not in the catalogue.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The metric catalogue and the dashboard.

/// One catalogue row: its type and, per label, the listed values (`None`: names from the
/// configuration or another open set).
struct Metric {
    kind: String,
    labels: BTreeMap<String, Option<BTreeSet<String>>>,
}

/// The table between the catalogue markers of `docs/metrics.md`.
fn catalogue() -> BTreeMap<String, Metric> {
    let doc = read("docs/metrics.md");
    let start = doc
        .find("<!-- catalogue:start -->")
        .expect("catalogue start marker");
    let end = doc
        .find("<!-- catalogue:end -->")
        .expect("catalogue end marker");
    let mut out = BTreeMap::new();
    for row in doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `ocedge_"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (name, kind, labels) = (cells[1].trim_matches('`'), cells[2], cells[3]);
        let labels = label_cells(labels)
            .into_iter()
            .map(|l| {
                let (label, values) = l.split_once(':').expect("`label`: values");
                let values: BTreeSet<String> =
                    values.split(',').map(|v| v.trim().to_owned()).collect();
                let fixed = values.iter().all(|v| is_ident(v));
                (
                    label.trim().trim_matches('`').to_owned(),
                    fixed.then_some(values),
                )
            })
            .collect();
        let kind = kind.to_owned();
        out.insert(name.to_owned(), Metric { kind, labels });
    }
    assert!(out.len() > 20, "catalogue not found in docs/metrics.md");
    out
}

/// The `` `label`: values `` parts of a Labels cell, joined by `; `. A description of open
/// values may itself hold `; `: a part starts only where `` `name`: `` does.
fn label_cells(cell: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in cell.split(';').filter(|p| !p.trim().is_empty()) {
        let starts_label = part
            .trim_start()
            .strip_prefix('`')
            .and_then(|r| r.split_once('`'))
            .is_some_and(|(name, rest)| is_ident(name) && rest.starts_with(':'));
        match out.last_mut() {
            Some(last) if !starts_label => {
                last.push(';');
                last.push_str(part);
            }
            _ => {
                assert!(starts_label, "`label`: values in {cell:?}");
                out.push(part.to_owned());
            }
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_ident_byte)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A metric selector in PromQL: the name and its `label op "value"` matchers.
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Every `ocedge_…` selector in `expr`.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = expr[i..].find("ocedge_").map(|p| p + i) {
        let end = at + b[at..].iter().take_while(|c| is_ident_byte(**c)).count();
        i = end;
        if at > 0 && is_ident_byte(b[at - 1]) {
            continue;
        }
        let mut matchers = Vec::new();
        if expr[end..].starts_with('{') {
            let close = end + expr[end..].find('}').expect("unclosed selector");
            for m in expr[end + 1..close].split(',').filter(|m| !m.is_empty()) {
                let label_len = m.bytes().take_while(|c| is_ident_byte(*c)).count();
                let (label, rest) = m.split_at(label_len);
                let op_len = rest.find('"').expect("quoted matcher value");
                let value = rest[op_len..].trim_matches('"');
                matchers.push((label.into(), rest[..op_len].into(), value.into()));
            }
            i = close;
        }
        let name = expr[at..end].to_owned();
        out.push(Selector { name, matchers });
    }
    out
}

/// The labels of every `by (…)` clause in `expr`.
fn by_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices(" by") {
        let Some(rest) = expr[at + 3..].trim_start().strip_prefix('(') else {
            continue;
        };
        let close = rest.find(')').expect("unclosed by clause");
        out.extend(rest[..close].split(',').map(|l| l.trim().to_owned()));
    }
    out
}

/// Series Prometheus stores for a histogram (a summary has no `_bucket`).
const HISTOGRAM_SERIES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// A selector's series resolved in the catalogue.
struct Series<'a> {
    /// The catalogue name: a histogram's or summary's, without the series suffix.
    metric: &'a str,
    entry: &'a Metric,
    /// `_bucket`, `_sum`, `_count`, or `""` for a counter's or gauge's own series.
    suffix: &'static str,
}

impl Series<'_> {
    /// The labels a sample of this series carries, scrape labels aside.
    fn labels(&self) -> impl Iterator<Item = String> + '_ {
        let le = (self.suffix == "_bucket").then(|| "le".to_owned());
        self.entry.labels.keys().cloned().chain(le)
    }
}

/// The series a selector names. A histogram's or summary's series (`_bucket`, `_sum`,
/// `_count`) resolve to their base metric; its bare name is no series at all.
fn lookup<'a>(cat: &'a BTreeMap<String, Metric>, name: &str) -> Option<Series<'a>> {
    let split = |suffix: &'static str| {
        let (metric, entry) = cat.get_key_value(name.strip_suffix(suffix)?)?;
        let ok = match entry.kind.as_str() {
            "histogram" => !suffix.is_empty(),
            "summary" => matches!(suffix, "_sum" | "_count"),
            _ => suffix.is_empty(),
        };
        ok.then_some(Series {
            metric,
            entry,
            suffix,
        })
    };
    std::iter::once("").chain(HISTOGRAM_SERIES).find_map(split)
}

/// Whether `value` of an `le` matcher is a bound of `metric`'s buckets.
fn is_bucket_bound(metric: &str, value: &str) -> bool {
    let Ok(le) = value.parse::<f64>() else {
        return false;
    };
    le == f64::INFINITY
        || ocedge::admin::catalogue::buckets(metric).is_some_and(|b| b.contains(&le))
}

/// Every string under an `expr` key, and every variable query, with where it was found.
fn queries(v: &serde_json::Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            let here = map.get("title").and_then(|t| t.as_str()).unwrap_or(at);
            for (k, x) in map {
                match (k.as_str(), x.as_str()) {
                    ("expr" | "definition", Some(q)) => out.push((here.to_owned(), q.to_owned())),
                    _ => queries(x, here, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| queries(x, at, out)),
        _ => {}
    }
}

/// Every panel, rows' nested panels included.
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = todo.pop() {
        if let Some(inner) = p["panels"].as_array() {
            todo.extend(inner);
        }
        out.push(p);
    }
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

#[test]
fn dashboard_queries_use_only_catalogued_metrics_and_labels() {
    let cat = catalogue();
    let dash = dashboard();
    let mut found = Vec::new();
    queries(&dash, "dashboard", &mut found);
    assert!(found.len() > 20, "too few queries: {found:?}");
    let mut used = BTreeSet::new();
    for (panel, expr) in &found {
        let sels = selectors(expr);
        assert!(!sels.is_empty(), "{panel}: no ocedge metric in {expr}");
        let mut known: BTreeSet<String> = SCRAPE_LABELS.iter().map(|l| l.to_string()).collect();
        let mut series = Vec::new();
        for s in &sels {
            let m = lookup(&cat, &s.name)
                .unwrap_or_else(|| panic!("{panel}: {} is not in docs/metrics.md", s.name));
            used.insert(m.metric.to_owned());
            known.extend(m.labels());
            series.push(m.suffix);
            for (label, op, value) in &s.matchers {
                if SCRAPE_LABELS.contains(&label.as_str()) {
                    continue;
                }
                if label == "le" && m.suffix == "_bucket" {
                    assert!(
                        op == "=" && is_bucket_bound(m.metric, value),
                        "{panel}: {}{{le{op}{value:?}}} is not a bucket bound",
                        s.name
                    );
                    continue;
                }
                let values = m
                    .entry
                    .labels
                    .get(label)
                    .unwrap_or_else(|| panic!("{panel}: {} has no label {label:?}", s.name));
                // Regex matchers list alternatives; `$variables` are the viewer's choice.
                let alternatives: Vec<&str> = match op.as_str() {
                    "=~" | "!~" => value.split('|').collect(),
                    _ => vec![value.as_str()],
                };
                for v in alternatives.iter().filter(|v| !v.contains('$')) {
                    if let Some(listed) = values {
                        assert!(listed.contains(*v), "{panel}: {label}={v:?} is not listed");
                    }
                }
            }
        }
        for label in by_labels(expr) {
            assert!(known.contains(&label), "{panel}: by ({label}) in {expr}");
        }
        // A quantile is computed from the buckets, aggregated with their bounds kept.
        if expr.contains("histogram_quantile(") {
            assert!(
                series.iter().all(|s| *s == "_bucket"),
                "{panel}: histogram_quantile over other than _bucket series in {expr}"
            );
            assert!(
                by_labels(expr).iter().any(|l| l == "le"),
                "{panel}: histogram_quantile without by (le, …) in {expr}"
            );
        }
    }
    for quality in cat.keys().filter(|m| m.starts_with("ocedge_quality_")) {
        assert!(
            used.contains(quality),
            "the dashboard does not show {quality}"
        );
    }
    for core in [
        "ocedge_dest_up",
        "ocedge_proxy_rejected_total",
        "ocedge_calls_active",
    ] {
        assert!(used.contains(core), "the dashboard does not show {core}");
    }
}

#[test]
fn dashboard_legends_name_labels_the_query_keeps() {
    let cat = catalogue();
    for p in panels(&dashboard()) {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target with an expr");
            let legend = t["legendFormat"].as_str().unwrap_or("");
            let by = by_labels(expr);
            let aggregated = ["sum(", "max(", "min(", "count(", "avg("]
                .iter()
                .any(|a| expr.starts_with(a));
            let kept: BTreeSet<String> = if !by.is_empty() {
                by.into_iter().collect()
            } else if aggregated {
                BTreeSet::new()
            } else {
                let labels = selectors(expr).into_iter().flat_map(|s| {
                    let m = lookup(&cat, &s.name).expect("catalogued");
                    m.labels().collect::<Vec<_>>()
                });
                labels
                    .chain(SCRAPE_LABELS.iter().map(|l| l.to_string()))
                    .collect()
            };
            for part in legend.split("{{").skip(1) {
                let label = part.split("}}").next().unwrap_or("").trim();
                assert!(
                    kept.contains(label),
                    "{title}: legend {{{{{label}}}}} of {expr}"
                );
            }
        }
    }
}

#[test]
fn dashboard_takes_its_data_source_from_a_variable() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus data source variable");
    let uid = format!("${{{}}}", ds["name"].as_str().unwrap());
    let mut ids = BTreeSet::new();
    for p in panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: duplicate id"
        );
        let targets = p["targets"].as_array().into_iter().flatten();
        for d in std::iter::once(&p["datasource"]).chain(targets.map(|t| &t["datasource"])) {
            if !d.is_null() {
                assert_eq!(d["uid"].as_str(), Some(uid.as_str()), "{title}");
                assert_eq!(d["type"], "prometheus", "{title}");
            }
        }
    }
    // The placeholder that stood for the quality panels is gone with their metrics' arrival
    // (the first test checks each has a panel).
    let placeholder = panels(&dash).into_iter().any(|p| {
        p["type"] == "text"
            && p["options"]["content"]
                .as_str()
                .is_some_and(|c| c.contains("issue 6"))
    });
    let catalogued = catalogue().keys().any(|m| m.contains("quality"));
    assert!(
        placeholder != catalogued,
        "a text panel stands for the quality panels exactly while there are no quality metrics"
    );
}

#[test]
fn dashboard_panels_do_not_overlap() {
    let dash = dashboard();
    // A collapsed row's panels are laid out only when it opens: each row's own set, beside
    // the open panels.
    let top: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    let mut layouts = vec![top];
    for p in &layouts[0].clone() {
        if let Some(inner) = p["panels"].as_array().filter(|i| !i.is_empty()) {
            layouts.push(inner.iter().collect());
        }
    }
    for layout in layouts {
        let mut placed: Vec<(&str, [u64; 4])> = Vec::new();
        for p in layout {
            let title = p["title"].as_str().unwrap_or("?");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_u64()
                    .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
            });
            assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g}");
            for (other, [ox, oy, ow, oh]) in &placed {
                let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
                assert!(apart, "{title} overlaps {other}");
            }
            placed.push((title, [x, y, w, h]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The systemd unit.

/// `(section, key, value)` of every setting, in order (a key may repeat).
fn unit() -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(UNIT).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

/// The values of `key` in `[Service]`.
fn service(key: &str) -> Vec<String> {
    let all = unit()
        .into_iter()
        .filter(|(s, k, _)| s == "Service" && k == key);
    all.map(|(_, _, v)| v).collect()
}

/// The only value of `key` in `[Service]`.
fn service1(key: &str) -> String {
    let v = service(key);
    assert_eq!(v.len(), 1, "{key}: {v:?}");
    v.into_iter().next().unwrap()
}

/// The path after `--config` in an Exec line.
fn config_arg(exec: &str) -> String {
    let mut words = exec.split_whitespace();
    words.find(|w| *w == "--config").expect("--config");
    words.next().expect("a path after --config").to_owned()
}

#[test]
fn unit_is_hardened() {
    let want = [
        ("Type", "simple"),
        ("User", "ocedge"),
        ("Group", "ocedge"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("ReadWritePaths", "/var/lib/ocedge"),
        ("StateDirectory", "ocedge"),
        ("WorkingDirectory", "/var/lib/ocedge"),
        ("LimitNOFILE", "65536"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ];
    for (key, value) in want {
        assert_eq!(service1(key), value, "{key}");
    }
    let reload = service("ExecReload");
    assert_eq!(
        reload.last().map(String::as_str),
        Some("/bin/kill -HUP $MAINPID")
    );
    // SIGTERM lets calls go on for node.drain_timeout, then flushes the spool: systemd must
    // not SIGKILL before, with a margin for the flush.
    let stop = humantime::parse_duration(&service1("TimeoutStopSec")).expect("TimeoutStopSec");
    let example: Config = toml::from_str(&read(EXAMPLE)).expect("the example decodes");
    let drain = example.node.drain_timeout.0;
    assert!(
        stop >= drain + Duration::from_secs(30),
        "TimeoutStopSec {stop:?} leaves no margin over node.drain_timeout {drain:?}"
    );
}

#[test]
fn unit_runs_the_installed_example_and_may_write_where_it_writes() {
    let start = service1("ExecStart");
    let config = config_arg(&start);
    assert_eq!(config, format!("{ETC}ocedge.toml"));
    assert!(start.starts_with("/usr/local/bin/ocedge run "), "{start}");
    for exec in service("ExecReload")
        .iter()
        .filter(|e| e.contains("--config"))
    {
        assert_eq!(config_arg(exec), config, "{exec}");
    }
    // The example says where to install it, and so does the install guide.
    assert!(
        read(EXAMPLE).contains(&config),
        "{EXAMPLE} does not name {config}"
    );
    let guide = read("contrib/README.md");
    for needle in [
        config.as_str(),
        EXAMPLE,
        "/usr/local/bin/ocedge",
        UNIT,
        DASHBOARD,
    ] {
        assert!(
            guide.contains(needle),
            "contrib/README.md does not name {needle}"
        );
    }

    let example: Config = toml::from_str(&read(EXAMPLE)).expect("the example decodes");
    let mut writable: Vec<PathBuf> = service("ReadWritePaths")
        .into_iter()
        .map(PathBuf::from)
        .collect();
    writable.extend(
        service("StateDirectory")
            .iter()
            .map(|d| Path::new("/var/lib").join(d)),
    );
    let export = example.cdr.export.as_ref().expect("[cdr.export]");
    let snapshot_dir = example.numbers.snapshot.parent().unwrap();
    for p in [snapshot_dir, &example.cdr.spool_dir, &export.dir] {
        assert!(p.is_absolute(), "{}", p.display());
        assert!(
            writable.iter().any(|w| p.starts_with(w)),
            "{} is not writable under ProtectSystem=strict",
            p.display()
        );
    }
    let tls = example.tls.as_ref().expect("[tls]");
    let secret = example
        .api
        .as_ref()
        .and_then(|a| a.client_secret_file.as_ref());
    let token = example.admin.token_file.as_ref();
    let read_only = [
        Some(&tls.cert),
        Some(&tls.key),
        Some(&tls.ca),
        secret,
        token,
    ];
    for p in read_only
        .into_iter()
        .map(|p| p.expect("a secret file is named"))
    {
        assert!(p.starts_with(ETC), "{} is not under {ETC}", p.display());
    }
}

// ---------------------------------------------------------------------------------------------
// The production example configuration.

/// A temporary directory standing in for `/etc/ocedge/`, removed on drop.
struct FakeEtc(TempDir);

impl FakeEtc {
    fn new(name: &str) -> FakeEtc {
        FakeEtc(temp_dir(name))
    }

    /// `text` with every quoted `/etc/ocedge/…` path moved here, each file created.
    fn rewrite(&self, text: &str) -> String {
        let quoted = format!("\"{ETC}");
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find(&quoted) {
            let start = at + quoted.len();
            let len = rest[start..].find('"').expect("closing quote");
            let file = self.0.join(&rest[start..start + len]);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "stand-in for a production file, 0123456789abcdef\n").unwrap();
            out.push_str(&rest[..at + 1]);
            out.push_str(&format!("{}/", self.0.display()));
            rest = &rest[start..];
        }
        out.push_str(rest);
        out
    }
}

#[test]
fn production_example_passes_every_check() {
    let etc = FakeEtc::new("packaging");
    let text = etc.rewrite(&read(EXAMPLE));
    let c = Config::parse(&text, EXAMPLE).unwrap_or_else(|e| panic!("{e}"));

    // Microsoft: mutual TLS on 5061 only, their three proxies, their signalling ranges.
    let ms_listeners: Vec<_> = c
        .listen
        .iter()
        .filter(|l| l.side == Side::Microsoft)
        .collect();
    assert!(ms_listeners.iter().all(|l| l.transport == Transport::Tls));
    assert!(ms_listeners.iter().any(|l| l.addr.port() == 5061));
    assert!(!c.tls.as_ref().unwrap().generate_dev);
    let ms = c.microsoft.as_ref().unwrap();
    let proxies = [
        "sip.pstnhub.microsoft.com",
        "sip2.pstnhub.microsoft.com",
        "sip3.pstnhub.microsoft.com",
    ];
    assert_eq!(ms.peer_names, proxies);
    let ranges: Vec<IpNet> = ["52.112.0.0/14", "52.120.0.0/14"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(ms.acl, ranges);
    let names: Vec<&str> = ms.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, proxies);
    for t in &ms.targets {
        assert_eq!(
            (t.transport, t.addr.port()),
            (Transport::Tls, 5061),
            "{}",
            t.name
        );
        assert!(
            allowed(&ms.acl, t.addr),
            "{}: outside microsoft.acl",
            t.name
        );
    }

    // Carrier: several SBCs by priority and weight, each inside the carrier ACL.
    let carrier = c.carrier.as_ref().unwrap();
    let priorities: BTreeSet<u32> = carrier.sbcs.iter().map(|s| s.priority).collect();
    let weights: BTreeSet<u32> = carrier.sbcs.iter().map(|s| s.weight).collect();
    assert!(carrier.sbcs.len() >= 3 && priorities.len() >= 2 && weights.len() >= 2);
    for s in &carrier.sbcs {
        assert!(
            allowed(&carrier.acl, s.addr),
            "{}: outside carrier.acl",
            s.name
        );
    }
    assert!(ms.probe.enabled && carrier.probe.enabled);

    // Secrets by file, state under /var/lib/ocedge, admin on loopback with a token.
    let api = c.api.as_ref().unwrap();
    assert!(api.base_url.starts_with("https://"), "{}", api.base_url);
    assert_eq!(api.client_secret_file, Some(etc.0.join("api.secret")));
    assert_eq!(api.client_secret_env, None);
    assert!(c.admin.listen.ip().is_loopback());
    assert_eq!(c.admin.token_file, Some(etc.0.join("admin.token")));
    let export = c.cdr.export.as_ref().unwrap();
    for p in [&c.numbers.snapshot, &c.cdr.spool_dir, &export.dir] {
        assert!(p.starts_with("/var/lib/ocedge"), "{}", p.display());
    }
    assert!(c.cdr.enabled && c.cdr.upload.enabled && c.numbers.enforce);
}

fn allowed(acl: &[IpNet], addr: SocketAddr) -> bool {
    acl.iter().any(|n| n.contains(&addr.ip()))
}
