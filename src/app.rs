//! The composition root: settings → database → account directory → Hostaway
//! client → actor system → HTTP server. The binary and the integration tests
//! start the service through `Application::build`, so tests run exactly what
//! production runs.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::actors::ActorSystem;
use crate::actors::registrar::EnsureAll;
use crate::actors::router::StartAll;
use crate::config::Settings;
use crate::context::Core;
pub use crate::context::StartupError;
use crate::http::AppContext;
use crate::http::tracing::SemConvRootSpan;

/// Options that differ between the binary and in-process test instances.
#[derive(Debug)]
pub struct BuildOptions {
    /// Stop gracefully on SIGTERM/SIGINT (the binary); tests stop through the handle.
    pub handle_signals: bool,
    /// Serve on this already bound listener instead of `server.host:port`
    /// (lets a caller know the address before the service starts).
    pub listener: Option<TcpListener>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            handle_signals: true,
            listener: None,
        }
    }
}

/// A built, bound, not yet running service.
pub struct Application {
    address: SocketAddr,
    server: Server,
    context: web::Data<AppContext>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Application::build_with(settings, BuildOptions::default()).await
    }

    pub async fn build_with(
        settings: Settings,
        options: BuildOptions,
    ) -> Result<Self, StartupError> {
        let core = Arc::new(Core::open(settings).await?);
        // Bound before any actor starts: a port in use ends the start here,
        // with nothing to stop (the cluster's listener task, once started,
        // must be stopped inside the runtime).
        let address = format!(
            "{}:{}",
            core.settings.server.host, core.settings.server.port
        );
        let bind_error = |source| StartupError::Bind {
            address: address.clone(),
            source,
        };
        let listener = match options.listener {
            Some(listener) => listener,
            None => TcpListener::bind(&address).map_err(bind_error)?,
        };
        let scheduled = core.settings.sync.scheduled;
        let actors = ActorSystem::start(core.clone(), scheduled);
        // Actors for every active account; pending inbox rows are re-dispatched.
        let started = actors.router.send(StartAll).await.unwrap_or(0);
        actors.registrar.do_send(EnsureAll);
        tracing::info!(accounts = started, "account actors started");
        let bodies = crate::http::webhooks::BodyBudget::new(&core.settings.server);
        let context = web::Data::new(AppContext {
            core,
            actors,
            bodies,
        });

        let settings = &context.settings;
        let address = listener.local_addr().map_err(bind_error)?;
        let server_context = context.clone();
        let mut server = HttpServer::new(move || {
            // Called on each worker's thread.
            let ingest = server_context.actors.worker_ingest(&server_context.core);
            App::new()
                .wrap(TracingLogger::<SemConvRootSpan>::new())
                .app_data(server_context.clone())
                .app_data(crate::http::WorkerIngest(ingest))
                .configure(crate::http::routes)
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            address: address.to_string(),
            source,
        })?;
        server = server.workers(http_workers(settings.server.workers));
        if !options.handle_signals {
            server = server.disable_signals();
        }
        let server = server.run();
        tracing::info!(%address, environment = %context.settings.environment, "listening");
        Ok(Application {
            address,
            server,
            context,
        })
    }

    /// The bound address (useful with `server.port = 0`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn context(&self) -> web::Data<AppContext> {
        self.context.clone()
    }

    /// A handle that stops the HTTP server (and then the actors).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (signal or handle), then drains the actors.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("HTTP server stopped; draining actors");
        self.context.actors.stop().await;
        tracing::info!("stopped");
        result
    }
}

/// HTTP worker threads: `server.workers`, or for 0 one per two cores (at
/// least one). Parsing a delivery is a small share of an event's work;
/// the database, the account actors and the writers need the other cores,
/// and on two cores one worker (which then also runs the inbox committer:
/// `ActorSystem::worker_ingest`) answered as many deliveries as two, with a
/// third of the p99 (docs/PERFORMANCE.md).
pub fn http_workers(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        n => n,
    }
}
