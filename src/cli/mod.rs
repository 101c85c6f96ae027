//! Command-line interface: subcommands and their glue to the library.

pub mod cdr;
pub mod reconcile;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::inspect::{inspect_bytes, Transport};
use crate::sip::Limits;

/// ocedge: SIP-aware carrier edge gateway for Microsoft Teams Operator Connect.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse SIP messages and print, per message, one JSON line with the parser's verdict and
    /// the proxy's stateless decision.
    Inspect {
        /// How to read each file: one datagram (udp) or a byte stream of messages (tcp).
        #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
        transport: TransportArg,
        /// Take the size limits from this configuration file instead of the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Files to read; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the gateway daemon until SIGTERM or SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "config/ocedge.toml")]
        config: PathBuf,
    },
    /// Development TLS material.
    Certs {
        /// What to generate.
        #[command(subcommand)]
        what: CertsCommand,
    },
    /// Check a configuration file: print every error with its key path and exit non-zero
    /// when there is any.
    CheckConfig {
        /// The file to check.
        #[arg(long, default_value = "config/ocedge.toml")]
        config: PathBuf,
    },
    /// Serve the Microsoft API emulator (the contract of docs/microsoft-api.md) until
    /// SIGTERM or SIGINT.
    Emulator(Box<crate::emulator::cli::EmulatorArgs>),
    /// Show, list and export call records in the spool and the dead-letter file.
    Cdr(cdr::CdrArgs),
    /// Reconcile our call records with Microsoft's for a window: totals per class and the
    /// worst discrepancies.
    Reconcile(reconcile::ReconcileArgs),
}

/// `ocedge certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Generate a development CA and a certificate for FQDN (server and client use) into
    /// DIR: ca.crt, ocedge.crt, ocedge.key. Never for production.
    Dev {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Name the certificate is for (also valid for localhost and loopback addresses).
        #[arg(long, default_value = "localhost")]
        fqdn: String,
    },
}

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// One file, one datagram.
    Udp,
    /// One file, one stream.
    Tcp,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect {
            transport,
            config,
            files,
        } => {
            let limits = match config {
                Some(path) => Config::load(&path)?.limits,
                None => Limits::default(),
            };
            inspect(transport, &limits, &files)
        }
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            crate::logging::init(&cfg.log);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(crate::app::run(cfg, config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs {
            what: CertsCommand::Dev { dir, fqdn },
        } => {
            crate::transport::devcerts::generate(&dir, &fqdn).with_context(|| {
                format!("generating development certificates in {}", dir.display())
            })?;
            println!(
                "wrote {0}/ca.crt {0}/ocedge.crt {0}/ocedge.key for {fqdn}",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => Ok(match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }),
        Command::Emulator(args) => {
            init_tracing();
            crate::emulator::cli::run(*args)
        }
        Command::Cdr(args) => cdr::run(args),
        Command::Reconcile(args) => reconcile::run(args),
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`), `OCEDGE_LOG_FORMAT=json` for JSON.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("OCEDGE_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn inspect(
    transport: TransportArg,
    limits: &Limits,
    files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let transport = match transport {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_read = true;
    for path in files {
        let name = path.display().to_string();
        let data = if name == "-" {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading standard input")
                .map(|_| v)
        } else {
            std::fs::read(path).with_context(|| format!("reading {name}"))
        };
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                eprintln!("ocedge: {e:#}");
                all_read = false;
                continue;
            }
        };
        for report in inspect_bytes(&name, &data, transport, limits) {
            serde_json::to_writer(&mut out, &report)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(if all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
