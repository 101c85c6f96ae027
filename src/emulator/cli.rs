//! `ocedge emulator`: the emulator as its own process (crash tests, outage tests, manual
//! runs). Flags set the start state; the control API changes it while running. Stops on
//! SIGINT or SIGTERM after draining open requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use super::{
    load_seed_csv, ChurnConfig, Credentials, Discrepancies, Emulator, EmulatorConfig, Faults,
};

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
    /// Discrepancies: a JSON file with the body of `POST /emulator/discrepancies`; the
    /// flags below override its fields.
    #[arg(long)]
    pub discrepancies: Option<PathBuf>,
    /// Discrepancies: seed of the rate-based choices.
    #[arg(long)]
    pub discrepancy_seed: Option<u64>,
    /// Discrepancies: share of call records whose billed duration drifts by --drift-ms.
    #[arg(long)]
    pub drift_rate: Option<f64>,
    /// Discrepancies: milliseconds added to drifting records (negative subtracts).
    #[arg(long, allow_negative_numbers = true)]
    pub drift_ms: Option<i64>,
    /// Discrepancies: `CALL_ID=MS`, an exact drift for that Call-ID (repeatable).
    #[arg(long, value_parser = parse_drift)]
    pub drift_call_id: Vec<(String, i64)>,
    /// Discrepancies: share of accepted durations that get no call record.
    #[arg(long)]
    pub drop_record_rate: Option<f64>,
    /// Discrepancies: a Call-ID whose call records are dropped (repeatable).
    #[arg(long)]
    pub drop_call_id: Vec<String>,
    /// Discrepancies: share of call records followed by a record of a call never reported.
    #[arg(long)]
    pub extra_rate: Option<f64>,
}

/// `CALL_ID=MS`, split at the last `=` (a Call-ID may hold one).
fn parse_drift(s: &str) -> Result<(String, i64), String> {
    let (id, ms) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} is not CALL_ID=MS"))?;
    let ms = ms
        .parse()
        .map_err(|_| format!("{ms:?} is not a number of ms"))?;
    Ok((id.to_owned(), ms))
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
        let discrepancies = self.discrepancies()?;
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
            discrepancies,
            ..EmulatorConfig::default()
        })
    }

    /// The discrepancies of `--discrepancies FILE` and the flags, checked.
    fn discrepancies(&self) -> anyhow::Result<Discrepancies> {
        let mut d = match &self.discrepancies {
            Some(path) => {
                let text = std::fs::read(path)
                    .with_context(|| format!("--discrepancies {}", path.display()))?;
                serde_json::from_slice(&text)
                    .with_context(|| format!("--discrepancies {}", path.display()))?
            }
            None => Discrepancies::default(),
        };
        if let Some(seed) = self.discrepancy_seed {
            d.seed = seed;
        }
        d.drift_rate = self.drift_rate.unwrap_or(d.drift_rate);
        d.drift_ms = self.drift_ms.unwrap_or(d.drift_ms);
        d.drop_rate = self.drop_record_rate.unwrap_or(d.drop_rate);
        d.extra_rate = self.extra_rate.unwrap_or(d.extra_rate);
        d.drift_by_call_id
            .extend(self.drift_call_id.iter().cloned());
        d.drop_call_ids.extend(self.drop_call_id.iter().cloned());
        d.check().map_err(anyhow::Error::msg)?;
        Ok(d)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<EmulatorConfig> {
        let cmd = Cmd::try_parse_from(std::iter::once("emulator").chain(args.iter().copied()))?;
        cmd.args.to_config()
    }

    #[test]
    fn discrepancy_flags_and_file_combine() {
        let dir = crate::testdir::temp_dir("disc");
        let file = dir.join("discrepancies.json");
        let body = r#"{"dropCallIds": ["a@x"], "extraRate": 0.5, "seed": 1}"#;
        std::fs::write(&file, body).unwrap();
        let c = config(&[
            "--discrepancies",
            file.to_str().unwrap(),
            "--discrepancy-seed",
            "9",
            "--drift-rate",
            "0.25",
            "--drift-ms",
            "-1500",
            "--drift-call-id",
            "b@x=2000",
            "--drop-call-id",
            "c@x",
        ])
        .unwrap();
        let d = c.discrepancies;
        assert_eq!(
            (d.seed, d.drift_rate, d.drift_ms, d.extra_rate),
            (9, 0.25, -1500, 0.5)
        );
        assert_eq!(d.drop_call_ids, ["a@x", "c@x"]);
        assert_eq!(d.drift_by_call_id.get("b@x"), Some(&2000));
        let e = config(&["--drop-record-rate", "1.5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("dropRate"), "{e}");
        assert!(config(&["--drift-call-id", "nodrift"]).is_err());
    }
}
