//! A Hostaway API simulator for tests, benchmarks and laptop demos: the `/v1`
//! endpoints the mirror uses (as Hostaway documents them), generated deterministic data, rate
//! limits, fault injection, and webhook delivery driven by `/_sim` controls.
//!
//! In-process use:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use hostaway_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), 0).await?;
//! let base = sim.base_url(); // http://127.0.0.1:PORT/v1
//! # let _ = base;
//! sim.stop().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod api;
mod behaviour;
mod config;
mod control;
mod dataset;
mod delivery;
mod envelope;
mod faults;
mod gateway;
mod limits;
mod mutation;
mod paging;
mod state;
mod stats;
mod tokens;
mod vocab;
mod webhooks;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpServer, web};

pub use behaviour::{
    ActivityFormat, ActivityScope, Behaviour, ConversationOrder, CountMode, CursorMode,
    MessageOrder, PasswordMasking, ReservationTimestamps, RetryAfter, TokenError, WebhookEnvelope,
};
pub use config::{DatasetSize, SimAccount, SimConfig, SimLimit, SimRateLimits};
pub use dataset::{AccountData, ids};
pub use delivery::{DeliverRequest, DeliveryAttempt, DeliveryRecord};
pub use envelope::RATE_LIMIT_MESSAGE;
pub use faults::Faults;
pub use mutation::{Change, Mutation};
pub use state::SimState;
pub use stats::SimStats;

use envelope::Fail;

/// Installs rustls' ring crypto provider for the simulator's HTTPS-capable
/// clients (webhook delivery). Idempotent; a provider already installed by
/// the host process is kept.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Largest request body accepted (webhook deliveries can carry big objects).
const BODY_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// A running simulator. Dropping it leaves the server running until the
/// runtime ends; call `stop` to shut it down.
pub struct Simulator {
    address: SocketAddr,
    state: Arc<SimState>,
    handle: ServerHandle,
}

impl Simulator {
    /// Binds 127.0.0.1:`port` (0 = any free port) and serves on the current
    /// runtime (spawned); returns once bound. Fails with `InvalidInput` for a
    /// config `SimConfig::validate` rejects.
    pub async fn start(config: SimConfig, port: u16) -> io::Result<Simulator> {
        Simulator::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
    }

    /// Like `start`, on any address (the binary's `--host`).
    pub async fn start_on(config: SimConfig, address: SocketAddr) -> io::Result<Simulator> {
        config
            .validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        crate::install_tls_provider();
        let state = Arc::new(SimState::new(config)?);
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT_BYTES))
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|_, _| Fail::not_found("Not found").into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    Fail::bad_request(format!("Invalid query: {err}")).into()
                }))
                .configure(routes)
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "hostaway simulator stopped with an error");
            }
        });
        tracing::info!(%address, "hostaway simulator listening");
        Ok(Simulator {
            address,
            state,
            handle,
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the Hostaway base URL to give a client.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.root_url())
    }

    /// `http://127.0.0.1:PORT`, for the `/_sim` control API.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> Arc<SimState> {
        self.state.clone()
    }

    /// Stops serving at once (in-flight requests, even hanging ones, are dropped).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// Every route: `/v1`, `/_sim`, and a fail-envelope 404 elsewhere.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(api::routes)
        .configure(control::routes)
        .default_service(web::to(|request: HttpRequest| async move {
            Err::<actix_web::HttpResponse, Fail>(Fail::not_found(format!(
                "No route {}",
                request.path()
            )))
        }));
}

#[cfg(test)]
mod tests;
