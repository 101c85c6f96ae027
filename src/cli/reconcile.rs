//! `ocedge reconcile`: one window's reconciliation, printed as a table, JSON or CSV.
//!
//! Our records come from the spool and the export files (read-only: a running gateway is
//! not disturbed). Microsoft's come from the local store the daemon fills when it is final
//! for the window (`--source auto`, the default), else straight from the API named in the
//! configuration; `--source store` or `--source api` forces one. Reading the API never
//! writes the store or moves its cursor.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::config::{Config, MAX_PULL_WINDOW};
use crate::msapi::token::load_secret;
use crate::msapi::HttpApi;
use crate::reconcile::{
    fetch_range, ms, parse_ms, render, Class, MsStore, OurSource, Params, Report,
};

/// `ocedge reconcile` arguments.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The gateway's configuration file (`[cdr]`, `[api]`, `[reconcile]`).
    #[arg(long, short, default_value = "config/ocedge.toml")]
    pub config: PathBuf,
    /// Start of the window (RFC 3339 UTC, e.g. 2024-05-01T10:00:00Z): calls that ended at
    /// or after it.
    #[arg(long)]
    pub from: String,
    /// End of the window (RFC 3339 UTC, exclusive).
    #[arg(long)]
    pub to: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Where Microsoft's records come from.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    pub source: Source,
    /// Rows of the table's worst list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// List matched and not-billable calls too (JSON and CSV; the table counts them).
    #[arg(long)]
    pub all: bool,
    /// Read this spool directory instead of the configured one.
    #[arg(long)]
    pub spool: Option<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Totals per class and the worst discrepancies, for people.
    Table,
    /// The summary and the findings as one JSON document.
    Json,
    /// One line per finding, with a header.
    Csv,
}

/// Sources of Microsoft's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The local store when it is final for the window, else the API.
    Auto,
    /// The local store only.
    Store,
    /// The API only.
    Api,
}

/// Runs `ocedge reconcile`.
pub fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let from = parse_ms(&args.from)
        .with_context(|| format!("--from {:?} is not RFC 3339 UTC", args.from))?;
    let to =
        parse_ms(&args.to).with_context(|| format!("--to {:?} is not RFC 3339 UTC", args.to))?;
    if to <= from {
        bail!("--to must be after --from");
    }
    let params = Params::from_config(&cfg.reconcile);
    let (lo, hi) = (
        from.saturating_sub(params.edge_margin_ms),
        to.saturating_add(params.edge_margin_ms),
    );
    let mut source = OurSource::from_config(&cfg);
    if let Some(dir) = args.spool.clone() {
        source.spool_dir = dir;
    }
    let ours = source.load(lo, hi).context("reading our records")?;
    let mut notes = vec![format!(
        "ours: spool {}{}",
        source.spool_dir.display(),
        source
            .export
            .as_ref()
            .map_or(String::new(), |(d, _)| format!(
                " and export {}",
                d.display()
            ))
    )];
    let (theirs, from_store) = microsoft_records(&cfg, args.source, lo, hi)?;
    notes.push(if from_store {
        format!(
            "Microsoft's: local store {}",
            cfg.reconcile.dir.join("ms-records").display()
        )
    } else {
        "Microsoft's: read from the API".to_owned()
    });
    if ours.unacked_from_ms.is_some_and(|t| t < hi) {
        notes.push("some of our records are not uploaded yet: Microsoft cannot have them".into());
    }
    let now = crate::cdr::now_ms();
    let mut report = Report::build((from, to), &ours.records, &theirs, &params, now);
    report.notes.extend(notes);
    if ours.covered_from_ms > lo {
        report = report.incomplete(format!(
            "our records are complete only from {}",
            crate::cdr::rfc3339_ms(ours.covered_from_ms.min(to))
        ));
    }
    let classes: Vec<Class> = Class::ALL
        .into_iter()
        .filter(|c| args.all || c.is_discrepancy())
        .collect();
    let findings = report.worst(&classes);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => render::table(&report, &report.discrepancies(), args.top, &mut out)?,
        Format::Json => render::json(&report, &findings, &mut out)?,
        Format::Csv => render::csv(&findings, &mut out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Microsoft's records ending in `[lo, hi)`, and whether they came from the store.
fn microsoft_records(
    cfg: &Config,
    source: Source,
    lo: u64,
    hi: u64,
) -> anyhow::Result<(Vec<crate::msapi::CallRecord>, bool)> {
    let dir = cfg.reconcile.dir.join("ms-records");
    let store = if dir.is_dir() {
        Some(MsStore::open(&dir)?)
    } else {
        None
    };
    // The store answers for the window when it began before it and is final after it.
    let covers = match &store {
        Some(s) => s.covers()?.is_some_and(|(since, cursor)| {
            since <= lo && cursor.saturating_sub(ms(cfg.reconcile.reread.0)) >= hi
        }),
        None => false,
    };
    let use_store = match source {
        Source::Store => true,
        Source::Api => false,
        Source::Auto => covers,
    };
    if use_store {
        let Some(store) = store else {
            bail!("no local store in {}", dir.display());
        };
        if !covers {
            eprintln!("ocedge: the local store does not cover the whole window");
        }
        return Ok((store.read(lo, hi)?.records, true));
    }
    let Some(api) = &cfg.api else {
        bail!("the local store does not cover the window and the configuration has no [api]");
    };
    let mut api = api.clone();
    let secret = if api.base_url == crate::emulator::EMBEDDED_BASE_URL {
        // The daemon's embedded emulator, which accepts any credentials.
        api.base_url = format!("http://{}", cfg.emulator.listen);
        "embedded".to_owned()
    } else {
        load_secret(&api).context("reading the API client secret")?
    };
    let client = HttpApi::new(&api, secret).context("configuring the API client")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let records = rt
        .block_on(fetch_range(&client, lo, hi, MAX_PULL_WINDOW, 5))
        .with_context(|| format!("reading call records from {}", api.base_url))?;
    Ok((records, false))
}
