//! The Microsoft API emulator: serves the whole contract of `docs/microsoft-api.md` over HTTP
//! for tests, benchmarks and the default configuration (`api.base_url = "embedded"`), and
//! shows what it received.
//!
//! Run it in-process with [`Emulator::start`] (port 0 works; the bound address comes back
//! in [`RunningEmulator`]), on a listener with [`serve`], or as `ocedge emulator` ([`cli`]).
//!
//! - [`seed`]: the CSV seed and the checks every number passes.
//! - `numbers`: the table, its change log and the listing/delta pages.
//! - `durations`: call-duration validation and storage; `records`: the Microsoft-side call
//!   records derived from them; `discrepancy`: drift, dropped and extra records injected
//!   into those, for reconciliation tests against known truth.
//! - `auth`: the token endpoint and bearer checks; `faults`: injected errors, throttling,
//!   latency and dropped connections; `control`: the `/emulator/*` API for tests;
//!   `churn`: random assignment changes over time; `listener`: connections that a fault can
//!   drop.
//!
//! # Limits (bounded memory)
//!
//! | what | bound | default |
//! |---|---|---|
//! | stored call durations | [`EmulatorConfig::max_durations`] (507 beyond) | 1,000,000 |
//! | change log (delta history) | [`EmulatorConfig::max_changes`] (older tokens: 410) | 1,000,000 |
//! | live access tokens | [`EmulatorConfig::max_tokens`] (soonest-expiring evicted) | 10,000 |
//! | records per upload | [`EmulatorConfig::max_batch`] (413 beyond) | 1,000 |
//! | entries per page | [`EmulatorConfig::max_page_size`] (`$top` clamped) | 1,000 |
//! | request body | [`MAX_BODY_BYTES`] (413 beyond) | 16 MiB |
//!
//! The numbers table itself is as large as the seed plus what the control API and churn
//! add (about 130 bytes a number).

pub mod cli;
pub mod seed;

mod api;
mod auth;
mod churn;
mod control;
mod discrepancy;
mod durations;
mod faults;
mod listener;
mod numbers;
pub(crate) mod records;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Api, EmulatorCfg};
use crate::msapi::wire;

pub use auth::Credentials;
pub use control::EmulatorStats;
pub use discrepancy::{Discrepancies, ExtraRecord};
pub use faults::Faults;
pub use seed::{load_seed_csv, parse_seed_csv, NumberSpec, SeedError};

/// The `api.base_url` that asks the daemon to run the emulator in-process.
pub const EMBEDDED_BASE_URL: &str = "embedded";

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default access token lifetime.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Default delta token lifetime.
pub const DEFAULT_DELTA_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Random assignment changes over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnConfig {
    /// Time between rounds of changes.
    pub interval: Duration,
    /// Changes per round (each a removal, a move to another tenant or a new number).
    pub changes: u32,
    /// Seed of the random choices, for repeatable runs; random when `None`.
    pub seed: Option<u64>,
}

/// Everything the emulator is told at start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The numbers it starts with.
    pub seed: Vec<NumberSpec>,
    /// The client credentials the token endpoint accepts; `None` accepts any (the embedded
    /// default, so a fresh machine runs without a secret).
    pub credentials: Option<Credentials>,
    /// Lifetime of an access token (`expires_in`, whole seconds), enforced: an expired
    /// token gets 401.
    pub token_lifetime: Duration,
    /// Most live access tokens.
    pub max_tokens: usize,
    /// Lifetime of a delta token; older ones get 410.
    pub delta_token_lifetime: Duration,
    /// Most change-log entries kept for deltas.
    pub max_changes: usize,
    /// Largest `$top`.
    pub max_page_size: usize,
    /// Most records in one upload.
    pub max_batch: usize,
    /// Most call durations stored.
    pub max_durations: usize,
    /// Random churn, if any.
    pub churn: Option<ChurnConfig>,
    /// Faults active from the start.
    pub faults: Faults,
    /// Discrepancies injected into call records from the start.
    pub discrepancies: Discrepancies,
    /// Base URL written into `@odata.nextLink` / `@odata.deltaLink`; by default
    /// `http://{Host header}` (tests point it elsewhere to check the client refuses).
    pub public_base_url: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: Vec::new(),
            credentials: None,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            max_tokens: 10_000,
            delta_token_lifetime: DEFAULT_DELTA_TOKEN_LIFETIME,
            max_changes: 1_000_000,
            max_page_size: wire::MAX_PAGE_SIZE,
            max_batch: 1000,
            max_durations: 1_000_000,
            churn: None,
            faults: Faults::default(),
            discrepancies: Discrepancies::default(),
            public_base_url: None,
        }
    }
}

impl EmulatorConfig {
    /// The embedded emulator's configuration from `[emulator]`: the seed CSV loaded, any
    /// credentials accepted, everything else at its default.
    pub fn from_config(cfg: &EmulatorCfg) -> Result<EmulatorConfig, SeedError> {
        let seed = match &cfg.seed_csv {
            Some(path) => load_seed_csv(path)?,
            None => Vec::new(),
        };
        Ok(EmulatorConfig {
            seed,
            ..EmulatorConfig::default()
        })
    }
}

/// State shared by the handlers. Locks are never held across an `.await`.
pub(crate) struct Shared {
    pub(crate) cfg: EmulatorConfig,
    pub(crate) numbers: RwLock<numbers::Table>,
    pub(crate) tokens: Mutex<auth::Tokens>,
    pub(crate) durations: RwLock<durations::Durations>,
    pub(crate) faults: Mutex<faults::FaultState>,
    pub(crate) discrepancies: RwLock<discrepancy::Injector>,
    pub(crate) stats: control::Stats,
    pub(crate) local_addr: OnceLock<SocketAddr>,
}

impl Shared {
    pub(crate) fn numbers(&self) -> RwLockReadGuard<'_, numbers::Table> {
        self.numbers.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn numbers_mut(&self) -> RwLockWriteGuard<'_, numbers::Table> {
        self.numbers.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn durations(&self) -> RwLockReadGuard<'_, durations::Durations> {
        self.durations.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn durations_mut(&self) -> RwLockWriteGuard<'_, durations::Durations> {
        self.durations.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, auth::Tokens> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, faults::FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken after `durations()` when both are needed.
    pub(crate) fn discrepancies(&self) -> RwLockReadGuard<'_, discrepancy::Injector> {
        self.discrepancies.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_discrepancies(&self, spec: Discrepancies) {
        let inj = discrepancy::Injector::new(spec);
        *self
            .discrepancies
            .write()
            .unwrap_or_else(|e| e.into_inner()) = inj;
    }
}

/// An emulator, built and not yet serving.
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Emulator {
    /// Builds the state (numbers table from the seed, empty stores).
    pub fn new(mut cfg: EmulatorConfig) -> Emulator {
        let mut table = numbers::Table::new(cfg.max_changes, cfg.max_page_size, rand::random());
        // The table holds the seed compactly; the specs themselves are not kept.
        table.seed(&std::mem::take(&mut cfg.seed), SystemTime::now());
        let shared = Shared {
            numbers: RwLock::new(table),
            tokens: Mutex::new(auth::Tokens::new(cfg.token_lifetime, cfg.max_tokens)),
            durations: RwLock::new(durations::Durations::new(cfg.max_durations)),
            faults: Mutex::new(faults::FaultState::new(cfg.faults.clone())),
            discrepancies: RwLock::new(discrepancy::Injector::new(cfg.discrepancies.clone())),
            stats: control::Stats::default(),
            local_addr: OnceLock::new(),
            cfg,
        };
        Emulator {
            shared: Arc::new(shared),
        }
    }

    /// Serves on `listener` until `cancel`, then drains open requests; churn runs alongside.
    pub async fn serve(
        self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        let _ = self.shared.local_addr.set(addr);
        let stop = cancel.child_token();
        let churn = self
            .shared
            .cfg
            .churn
            .clone()
            .map(|c| tokio::spawn(churn::run(self.shared.clone(), c, stop.clone())));
        tracing::info!(%addr, numbers = self.shared.numbers().len(), "api emulator listening");
        let app =
            router(self.shared.clone()).into_make_service_with_connect_info::<listener::Peer>();
        let result = axum::serve(listener::KillableListener::new(listener), app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        stop.cancel();
        if let Some(task) = churn {
            let _ = task.await;
        }
        result
    }

    /// Starts serving on `listener` in a task.
    pub fn spawn(
        self,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> std::io::Result<RunningEmulator> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(self.serve(listener, cancel));
        Ok(RunningEmulator { addr, task })
    }

    /// Binds `addr` (port 0 picks one) and starts serving in a task.
    pub async fn start(
        self,
        addr: SocketAddr,
        cancel: CancellationToken,
    ) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind(addr).await?;
        self.spawn(listener, cancel)
    }
}

/// Serves `cfg` on `listener` until `cancel`.
pub async fn serve(
    cfg: EmulatorConfig,
    listener: TcpListener,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    Emulator::new(cfg).serve(listener, cancel).await
}

/// A serving emulator.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`: what `api.base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `api` pointed at this emulator (for `api.base_url = "embedded"`).
    pub fn api_config(&self, api: &Api) -> Api {
        Api {
            base_url: self.base_url(),
            ..api.clone()
        }
    }

    /// Waits for the server to stop (after its cancellation token fired).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .map_err(|e| std::io::Error::other(format!("emulator task: {e}")))?
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            &format!("/{{tenant}}{}", wire::TOKEN_PATH),
            post(auth::token),
        )
        .route(wire::NUMBERS_PATH, get(api::numbers))
        .route(wire::NUMBERS_DELTA_PATH, get(api::delta))
        .route(wire::DURATIONS_PATH, post(api::durations))
        .route(wire::CALL_RECORDS_PATH, get(api::call_records))
        .route("/emulator/numbers", post(control::add_numbers))
        .route("/emulator/numbers/{number}", delete(control::remove_number))
        .route(
            "/emulator/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route(
            "/emulator/discrepancies",
            get(control::get_discrepancies).post(control::set_discrepancies),
        )
        .route("/emulator/call-durations", get(control::call_durations))
        .route("/emulator/stats", get(control::stats))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::inject,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}
