//! `ocedge cdr`: read the spool and the dead-letter file of a gateway, live or stopped
//! (read-only: no lock taken, nothing truncated).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::cdr::dead::DeadLetters;
use crate::cdr::export::{ExportRow, CSV_HEADER};
use crate::cdr::spool::{Kind, Spool};
use crate::cdr::{CallRecord, OpenCall};
use crate::config::Config;

/// `ocedge cdr` arguments.
#[derive(Debug, Args)]
pub struct CdrArgs {
    /// The gateway's configuration file (for `[cdr] spool_dir`).
    #[arg(long, short, default_value = "config/ocedge.toml")]
    pub config: PathBuf,
    /// Read this spool directory instead of the configured one.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// What to show.
    #[command(subcommand)]
    pub what: CdrCommand,
}

/// `ocedge cdr` subcommands.
#[derive(Debug, Subcommand)]
pub enum CdrCommand {
    /// Summary: records on disk and pending upload, the cursor, calls up, undecodable
    /// records, dead letters.
    Status,
    /// One line per record: pending ones (not yet uploaded) by default.
    List {
        /// Include records already acknowledged (still on disk).
        #[arg(long)]
        all: bool,
        /// List the calls journaled as up instead.
        #[arg(long)]
        open: bool,
    },
    /// Print one record in full (JSON) by id.
    Show {
        /// The record id.
        id: String,
    },
    /// Write every record on disk (acknowledged too) as JSONL or CSV to stdout.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Print the dead-letter file (records Microsoft refused, with reasons).
    DeadLetters,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header.
    Csv,
}

/// Runs `ocedge cdr`.
pub fn run(args: CdrArgs) -> anyhow::Result<ExitCode> {
    let dir = match args.spool {
        Some(d) => d,
        None => Config::load(&args.config)?.cdr.spool_dir,
    };
    let dead_path = dir.join("dead-letter.jsonl");
    let (entries, cursor) =
        Spool::read_all(&dir).with_context(|| format!("reading the spool in {}", dir.display()))?;
    let closes = || {
        entries
            .iter()
            .filter(|e| e.kind == Kind::Close)
            .map(|e| (e.seq, CallRecord::decode(&e.payload)))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.what {
        CdrCommand::Status => {
            let total = closes().count();
            let pending = closes().filter(|(s, _)| *s > cursor).count();
            let bad = closes().filter(|(_, r)| r.is_err()).count();
            let open = open_calls(&entries).len();
            let dead = DeadLetters::read(&dead_path)?.len();
            writeln!(out, "spool:        {}", dir.display())?;
            writeln!(
                out,
                "records:      {total} on disk, {pending} pending upload"
            )?;
            writeln!(out, "cursor:       {cursor}")?;
            writeln!(out, "calls up:     {open}")?;
            writeln!(out, "undecodable:  {bad}")?;
            writeln!(out, "dead letters: {dead} ({})", dead_path.display())?;
        }
        CdrCommand::List { open: true, .. } => {
            for c in open_calls(&entries) {
                let r = &c.record;
                writeln!(
                    out,
                    "{}  up since {}  {} -> {}  {}",
                    r.id,
                    crate::cdr::rfc3339_ms(r.answer_ms.unwrap_or(r.start_ms)),
                    r.caller_number,
                    r.callee_number,
                    r.call_id
                )?;
            }
        }
        CdrCommand::List { all, open: false } => {
            writeln!(
                out,
                "{:<6} {:<32} {:<24} {:>10} {:<9} {:>4} {:<12} call-id",
                "state", "id", "end", "ms", "disp", "code", "reason"
            )?;
            for (seq, r) in closes() {
                if !all && seq <= cursor {
                    continue;
                }
                let state = if seq <= cursor { "acked" } else { "pending" };
                match r {
                    Ok(r) => writeln!(
                        out,
                        "{state:<6} {:<32} {:<24} {:>10} {:<9} {:>4} {:<12} {}",
                        r.id,
                        crate::cdr::rfc3339_ms(r.end_ms),
                        r.duration_ms,
                        r.disposition.as_str(),
                        r.final_status,
                        r.end_reason.as_str(),
                        r.call_id
                    )?,
                    Err(e) => writeln!(out, "{state:<6} seq {seq}: undecodable: {e}")?,
                }
            }
        }
        CdrCommand::Show { id } => {
            let found = closes()
                .filter_map(|(_, r)| r.ok())
                .find(|r| r.id == id)
                .map(|r| serde_json::to_string_pretty(&r))
                .or_else(|| {
                    open_calls(&entries)
                        .into_iter()
                        .find(|c| c.record.id == id)
                        .map(|c| serde_json::to_string_pretty(&c))
                });
            match found {
                Some(json) => writeln!(out, "{}", json?)?,
                None => {
                    eprintln!("no record {id} in {}", dir.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        CdrCommand::Export { format } => {
            if format == Format::Csv {
                writeln!(out, "{CSV_HEADER}")?;
            }
            for (_, r) in closes() {
                let Ok(r) = r else { continue };
                let row = ExportRow::of(&r);
                match format {
                    Format::Jsonl => writeln!(out, "{}", row.json())?,
                    Format::Csv => writeln!(out, "{}", row.csv())?,
                }
            }
        }
        CdrCommand::DeadLetters => {
            for line in DeadLetters::read(&dead_path)? {
                match line {
                    Ok(d) => writeln!(out, "{}", serde_json::to_string(&d)?)?,
                    Err(e) => eprintln!("{}: {e}", dead_path.display()),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Journaled calls with no record yet (the last journal entry of each key wins).
fn open_calls(entries: &[crate::cdr::spool::Entry]) -> Vec<OpenCall> {
    let mut open: Vec<([u8; 16], OpenCall)> = Vec::new();
    for e in entries {
        match e.kind {
            Kind::Open => {
                if let Ok(c) = OpenCall::decode(&e.payload) {
                    open.retain(|(k, _)| *k != e.key);
                    open.push((e.key, c));
                }
            }
            Kind::Close => open.retain(|(k, _)| *k != e.key),
        }
    }
    open.into_iter().map(|(_, c)| c).collect()
}
