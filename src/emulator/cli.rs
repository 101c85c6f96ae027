//! `ocedge emulator`: the emulator as its own process (crash tests, outage tests, manual
//! runs). Flags set the start state; the control API changes it while running. Stops on
//! SIGINT or SIGTERM after draining open requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use super::{load_seed_csv, ChurnConfig, Credentials, Emulator, EmulatorConfig, Faults};

/// Flags of `ocedge emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// Numbers to start with: CSV `telephone_number,tenant_id,sip_uri,usage`.
    #[arg(long)]
    pub seed_csv: Option<PathBuf>,
    /// OAuth2 client id to accept (with a secret flag); without one any credentials pass.
    #[arg(long, default_value = "ocedge")]
    pub client_id: String,
    /// Environment variable holding the client secret to accept.
    #[arg(long, conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,
    /// File holding the client secret to accept.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Access token lifetime (enforced: expired tokens get 401).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub token_lifetime: Duration,
    /// Delta token lifetime (older tokens get 410).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub delta_token_lifetime: Duration,
    /// Change-log entries kept for deltas (older delta tokens get 410).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_changes: usize,
    /// Call durations stored at most (uploads beyond get 507).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_durations: usize,
    /// Churn: time between rounds of random assignment changes (off when absent).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub churn_interval: Option<Duration>,
    /// Churn: changes per round.
    #[arg(long, default_value_t = 1)]
    pub churn_changes: u32,
    /// Churn: random seed, for repeatable runs.
    #[arg(long)]
    pub churn_seed: Option<u64>,
    /// Fault: share of requests answered with --error-status (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fault: status of injected errors (5xx).
    #[arg(long, default_value_t = 500)]
    pub error_status: u16,
    /// Fault: share of requests answered 429.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Fault: Retry-After seconds on injected 429/503.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Fault: delay before each request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: share of requests whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
}

impl EmulatorArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<EmulatorConfig> {
        let seed = match &self.seed_csv {
            Some(path) => load_seed_csv(path)?,
            None => Vec::new(),
        };
        let secret = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(var), _) => {
                Some(std::env::var(var).with_context(|| format!("--client-secret-env {var}"))?)
            }
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--client-secret-file {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let credentials = secret.map(|s| Credentials {
            client_id: self.client_id.clone(),
            client_secret: s
                .strip_suffix('\n')
                .map_or(s.as_str(), |s| s.strip_suffix('\r').unwrap_or(s))
                .to_owned(),
        });
        if credentials
            .as_ref()
            .is_some_and(|c| c.client_secret.is_empty())
        {
            bail!("the client secret is empty");
        }
        let faults = Faults {
            error_rate: self.error_rate,
            error_status: self.error_status,
            throttle_rate: self.throttle_rate,
            retry_after_secs: Some(self.retry_after),
            latency_ms: self.latency_ms,
            drop_rate: self.drop_rate,
            ..Faults::default()
        };
        faults.check().map_err(anyhow::Error::msg)?;
        Ok(EmulatorConfig {
            seed,
            credentials,
            token_lifetime: self.token_lifetime,
            delta_token_lifetime: self.delta_token_lifetime,
            max_changes: self.max_changes,
            max_durations: self.max_durations,
            churn: self.churn_interval.map(|interval| ChurnConfig {
                interval,
                changes: self.churn_changes,
                seed: self.churn_seed,
            }),
            faults,
            ..EmulatorConfig::default()
        })
    }
}

/// Runs `ocedge emulator` until SIGINT or SIGTERM.
pub fn run(args: EmulatorArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.to_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let running = Emulator::new(cfg)
            .start(args.listen, cancel.clone())
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        println!("ocedge emulator listening on {}", running.base_url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        cancel.cancel();
        running.wait().await.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
