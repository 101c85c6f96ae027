//! Semantic checks of a decoded configuration, and per-table collection of decoding errors.

use std::collections::HashSet;
use std::time::Duration;

use super::one_line;
use super::schema::{Config, Probe, Transport};

/// Decodes each top-level table on its own and returns every error, so that one mistake does
/// not hide the next. Lines outside the table being decoded are blanked, not removed, so the
/// decoder's line numbers are those of the real file.
pub(super) fn errors_per_table(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    // The top-level key each line belongs to: `None` before any table header.
    let mut owner: Vec<Option<String>> = Vec::with_capacity(lines.len());
    let mut current: Option<String> = None;
    for line in &lines {
        let t = line.trim_start();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[');
            let key: String = name
                .chars()
                .take_while(|c| !matches!(c, '.' | ']'))
                .collect::<String>()
                .trim()
                .trim_matches('"')
                .to_owned();
            current = Some(key);
        }
        owner.push(current.clone());
    }
    let mut groups: Vec<Option<String>> = Vec::new();
    for o in &owner {
        if !groups.contains(o) {
            groups.push(o.clone());
        }
    }
    let mut errors = Vec::new();
    for g in groups {
        let only: Vec<&str> = lines
            .iter()
            .zip(&owner)
            .map(|(l, o)| if *o == g { *l } else { "" })
            .collect();
        if let Err(e) = toml::from_str::<Config>(&only.join("\n")) {
            errors.push(one_line(&e.to_string()));
        }
    }
    if errors.is_empty() {
        // The tables decode alone but not together (e.g. a key defined twice across them).
        if let Err(e) = toml::from_str::<Config>(text) {
            errors.push(one_line(&e.to_string()));
        }
    }
    errors
}

impl Config {
    /// Every semantic problem, as `key.path: problem`. Empty means the configuration can run.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut err = |path: String, msg: &str| out.push(format!("{path}: {msg}"));
        if let Err(e) = self.limits.check() {
            err("limits".into(), e);
        }
        if self.node.fqdn.is_empty()
            || !self
                .node
                .fqdn
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            err("node.fqdn".into(), "must be a host name");
        }
        let refresh = self.node.dns_refresh.0;
        if !refresh.is_zero() && refresh < Duration::from_secs(1) {
            err("node.dns_refresh".into(), "\"0s\" (off) or at least 1s");
        }
        let t = &self.timers;
        let positive = [
            ("t1", t.t1),
            ("t2", t.t2),
            ("t4", t.t4),
            ("timer_c", t.timer_c),
        ];
        for (k, d) in positive {
            if d.0.is_zero() {
                err(format!("timers.{k}"), "must be positive");
            }
        }
        if t.t2 < t.t1 {
            err("timers.t2".into(), "must not be shorter than t1");
        }
        if t.max_transactions == 0 {
            err("timers.max_transactions".into(), "must be positive");
        }
        let tr = &self.transport;
        if tr.max_connections == 0 || tr.send_queue == 0 {
            err(
                "transport".into(),
                "max_connections and send_queue must be positive",
            );
        }
        for (k, d) in [
            ("handshake_timeout", tr.handshake_timeout),
            ("idle_timeout", tr.idle_timeout),
            ("connect_timeout", tr.connect_timeout),
        ] {
            if d.0.is_zero() {
                err(format!("transport.{k}"), "must be positive");
            }
        }
        for (k, b) in [
            ("flood.source", self.flood.source),
            ("flood.peer", self.flood.peer),
        ] {
            if !(b.rate.is_finite() && b.rate > 0.0 && b.burst.is_finite() && b.burst >= 1.0) {
                err(k.into(), "rate must be positive and burst at least 1");
            }
        }
        if self.flood.max_sources == 0 {
            err("flood.max_sources".into(), "must be positive");
        }
        self.check_listeners(&mut err);
        self.check_sides(&mut err);
        check_admin(&self.admin, &mut err);
        if let Some(api) = &self.api {
            check_api(api, &mut err);
        }
        for (k, status) in [
            ("unassigned_status", self.numbers.unassigned_status),
            ("forbidden_status", self.numbers.forbidden_status),
        ] {
            if !(400..=699).contains(&status) {
                err(
                    format!("numbers.{k}"),
                    "must be a final error status, 400 to 699",
                );
            }
        }
        check_cdr(&self.cdr, &mut err);
        check_reconcile(self, &mut err);
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            err("log.level".into(), &format!("not a log filter: {e}"));
        }
        out
    }

    fn check_listeners(&self, err: &mut impl FnMut(String, &str)) {
        let mut seen = HashSet::new();
        for (i, l) in self.listen.iter().enumerate() {
            // UDP and TCP may share a port; two listeners of one kind may not.
            let kind = if l.transport == Transport::Udp { 0 } else { 1 };
            // Port 0 asks the system for a free port: never a clash.
            if l.addr.port() != 0 && !seen.insert((l.addr, kind)) {
                err(
                    format!("listen[{i}].addr"),
                    "another listener already uses this address",
                );
            }
        }
        for side in ["microsoft", "carrier"] {
            if !self.listen.iter().any(|l| l.side.as_str() == side) {
                err("listen".into(), &format!("no listener for the {side} side"));
            }
        }
        let needs_tls = self.listen.iter().any(|l| l.transport == Transport::Tls)
            || self
                .microsoft
                .as_ref()
                .is_some_and(|m| m.targets.iter().any(|t| t.transport == Transport::Tls))
            || self
                .carrier
                .as_ref()
                .is_some_and(|c| c.sbcs.iter().any(|s| s.transport == Transport::Tls));
        match &self.tls {
            None if needs_tls => err("tls".into(), "required: a listener or peer uses TLS"),
            None => {}
            Some(tls) if tls.generate_dev => {}
            Some(tls) => {
                for (k, p) in [("cert", &tls.cert), ("key", &tls.key), ("ca", &tls.ca)] {
                    if !p.is_file() {
                        err(
                            format!("tls.{k}"),
                            &format!(
                                "{} is not a readable file (ocedge certs dev makes a test set)",
                                p.display()
                            ),
                        );
                    }
                }
            }
        }
    }

    fn check_sides(&self, err: &mut impl FnMut(String, &str)) {
        match &self.microsoft {
            None => err("microsoft".into(), "missing table"),
            Some(m) => {
                if m.targets.is_empty() {
                    err(
                        "microsoft.targets".into(),
                        "at least one target is required",
                    );
                }
                let mut names = HashSet::new();
                for (i, t) in m.targets.iter().enumerate() {
                    if !names.insert(&t.name) {
                        err(format!("microsoft.targets[{i}].name"), "duplicate name");
                    }
                }
                check_probe("microsoft.probe", &m.probe, err);
                check_headers("microsoft.strip_headers", &m.strip_headers, err);
            }
        }
        match &self.carrier {
            None => err("carrier".into(), "missing table"),
            Some(c) => {
                if c.sbcs.is_empty() {
                    err("carrier.sbcs".into(), "at least one SBC is required");
                }
                let mut names = HashSet::new();
                for (i, s) in c.sbcs.iter().enumerate() {
                    if !names.insert(&s.name) {
                        err(format!("carrier.sbcs[{i}].name"), "duplicate name");
                    }
                    if s.weight == 0 {
                        err(format!("carrier.sbcs[{i}].weight"), "must be at least 1");
                    }
                }
                check_probe("carrier.probe", &c.probe, err);
                check_headers("carrier.strip_headers", &c.strip_headers, err);
            }
        }
    }
}

fn check_probe(path: &str, p: &Probe, err: &mut impl FnMut(String, &str)) {
    if p.interval.0 < Duration::from_millis(100) {
        err(format!("{path}.interval"), "must be at least 100ms");
    }
    if p.failure_threshold == 0 || p.success_threshold == 0 {
        err(
            path.into(),
            "failure_threshold and success_threshold must be at least 1",
        );
    }
}

fn check_headers(path: &str, names: &[String], err: &mut impl FnMut(String, &str)) {
    for (i, n) in names.iter().enumerate() {
        if !crate::sip::lex::is_token_str(n.as_bytes()) {
            err(format!("{path}[{i}]"), "not a header name");
        }
        let protected = crate::sip::HeaderName::classify(n.as_bytes());
        use crate::sip::HeaderName as H;
        if matches!(
            protected,
            H::Via | H::From | H::To | H::CallId | H::CSeq | H::ContentLength | H::MaxForwards
        ) {
            err(format!("{path}[{i}]"), "this header cannot be stripped");
        }
    }
}

/// What `run` would refuse at start: the URL and tenant the API client is built from, and
/// where the client secret comes from (the embedded emulator needs none).
fn check_api(a: &super::Api, err: &mut impl FnMut(String, &str)) {
    if !crate::msapi::http::tenant_ok(&a.tenant) {
        err(
            "api.tenant".into(),
            "must be one non-empty URL path segment",
        );
    }
    if a.base_url == "embedded" {
        return;
    }
    if let Err(reason) = crate::msapi::http::base_url(&a.base_url) {
        err("api.base_url".into(), reason);
    }
    if a.client_secret_file.is_none() && a.client_secret_env.is_none() {
        err(
            "api".into(),
            "set client_secret_file or client_secret_env (the secret itself never goes in the file)",
        );
    }
    check_secret_source(
        "api",
        ("client_secret_file", a.client_secret_file.as_deref()),
        ("client_secret_env", a.client_secret_env.as_deref()),
        err,
    );
}

/// A secret read from a file or an environment variable (`{table}.{file key}` or
/// `{table}.{env key}`): not both, the file readable, the variable named.
fn check_secret_source(
    table: &str,
    (file_key, file): (&str, Option<&std::path::Path>),
    (env_key, env): (&str, Option<&str>),
    err: &mut impl FnMut(String, &str),
) {
    if file.is_some() && env.is_some() {
        err(
            format!("{table}.{env_key}"),
            &format!("{table}.{file_key} is set too; keep one"),
        );
    }
    if let Some(p) = file.filter(|p| !p.is_file()) {
        err(
            format!("{table}.{file_key}"),
            &format!("{} is not a readable file", p.display()),
        );
    }
    if env.is_some_and(str::is_empty) {
        err(format!("{table}.{env_key}"), "must name a variable");
    }
}

fn check_admin(a: &super::Admin, err: &mut impl FnMut(String, &str)) {
    // A disabled server listens nowhere: its address needs no token.
    if a.enabled && !a.listen.ip().is_loopback() && !a.has_token() {
        err(
            "admin.listen".into(),
            "not a loopback address: set admin.token_file or admin.token_env",
        );
    }
    check_secret_source(
        "admin",
        ("token_file", a.token_file.as_deref()),
        ("token_env", a.token_env.as_deref()),
        err,
    );
    if a.max_connections == 0 {
        err("admin.max_connections".into(), "must be positive");
    }
    for (k, d) in [
        ("request_timeout", a.request_timeout),
        ("idle_timeout", a.idle_timeout),
    ] {
        if d.0.is_zero() {
            err(format!("admin.{k}"), "must be positive");
        }
    }
    if a.idle_timeout <= a.request_timeout {
        err(
            "admin.idle_timeout".into(),
            "must be longer than admin.request_timeout",
        );
    }
}

/// `[cdr]`: sizes, intervals and the upload batch within what works.
fn check_cdr(c: &super::schema::Cdr, err: &mut impl FnMut(String, &str)) {
    if c.segment_bytes < 64 * 1024 {
        err("cdr.segment_bytes".into(), "must be at least 65536");
    }
    if c.max_bytes < c.segment_bytes.saturating_mul(2) {
        err(
            "cdr.max_bytes".into(),
            "must be at least two segments (2 × segment_bytes)",
        );
    }
    if !(c.alarm_ratio > 0.0 && c.alarm_ratio <= 1.0) {
        err("cdr.alarm_ratio".into(), "must be in (0, 1]");
    }
    if c.fsync_interval.0.is_zero() || c.fsync_interval.0 > std::time::Duration::from_secs(1) {
        err("cdr.fsync_interval".into(), "must be between 1ms and 1s");
    }
    if c.max_call_duration.0 < std::time::Duration::from_secs(60) {
        err("cdr.max_call_duration".into(), "must be at least 1 minute");
    }
    if c.max_calls == 0 {
        err("cdr.max_calls".into(), "must be positive");
    }
    let u = &c.upload;
    if !(1..=1000).contains(&u.batch_size) {
        err(
            "cdr.upload.batch_size".into(),
            "must be between 1 and 1000 (the API's limit)",
        );
    }
    if u.batch_wait.0.is_zero() {
        err("cdr.upload.batch_wait".into(), "must be positive");
    }
    if u.backoff_min.0.is_zero() || u.backoff_max < u.backoff_min {
        err(
            "cdr.upload.backoff_min".into(),
            "must be positive and not longer than backoff_max",
        );
    }
    if let Some(x) = &c.export {
        if x.rotate.0 < std::time::Duration::from_secs(1) {
            err("cdr.export.rotate".into(), "must be at least 1s");
        }
        if x.dir.as_os_str().is_empty() {
            err("cdr.export.dir".into(), "must not be empty");
        }
    }
}

/// `[reconcile]`: windows within what the puller and matcher handle, and what it needs.
fn check_reconcile(c: &Config, err: &mut impl FnMut(String, &str)) {
    use std::time::Duration as D;
    let r = &c.reconcile;
    if r.enabled && c.api.is_none() {
        err(
            "reconcile.enabled".into(),
            "needs [api] to pull records from",
        );
    }
    if r.enabled && !c.cdr.enabled {
        err(
            "reconcile.enabled".into(),
            "needs cdr.enabled (our records)",
        );
    }
    if r.dir.as_os_str().is_empty() {
        err("reconcile.dir".into(), "must not be empty");
    }
    let (sec, min, hour) = (D::from_secs(1), D::from_secs(60), D::from_secs(3600));
    for (k, d, lo, hi) in [
        ("interval", r.interval, sec, hour),
        ("pull_window", r.pull_window, sec, hour),
        ("report_window", r.report_window, min, 24 * hour),
        ("settle", r.settle, D::ZERO, 24 * hour),
        ("reread", r.reread, D::ZERO, 24 * hour),
        ("backfill", r.backfill, D::ZERO, 30 * 24 * hour),
        ("match_window", r.match_window, D::ZERO, 5 * min),
        ("tolerance", r.tolerance, D::ZERO, hour),
    ] {
        if d.0 < lo || d.0 > hi {
            let (lo, hi) = (
                humantime::format_duration(lo),
                humantime::format_duration(hi),
            );
            err(
                format!("reconcile.{k}"),
                &format!("must be between {lo} and {hi}"),
            );
        }
    }
    if r.reread >= r.pull_window {
        err(
            "reconcile.reread".into(),
            "must be shorter than pull_window",
        );
    }
    if r.edge_margin < r.match_window || r.edge_margin > r.report_window {
        err(
            "reconcile.edge_margin".into(),
            "must be at least match_window and at most report_window",
        );
    }
}
