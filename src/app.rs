//! The composition root: settings → database → actors → HTTP server. The
//! binary and the integration tests both start the service through
//! `Application::build`, so tests run exactly what production runs.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::crypto::Cipher;
use crate::metrics::Metrics;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] store::StoreError),
    #[error("security.encryption_key: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("could not bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// What every handler and actor shares.
pub struct AppContext {
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub metrics: Arc<Metrics>,
    pub cipher: Cipher,
}

impl AppContext {
    /// Named readiness checks; each is `"ok"` or a short reason.
    pub async fn readiness(&self, timeout: Duration) -> BTreeMap<&'static str, String> {
        let mut checks = BTreeMap::new();
        let database = match tokio::time::timeout(timeout, store::ping(&self.db)).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(err)) => format!("unreachable: {err}"),
            Err(_) => "timed out".to_string(),
        };
        checks.insert("database", database);
        checks
    }

    /// Refreshes gauges that are read from the database at scrape time.
    pub async fn refresh_gauges(&self) {
        match store::inbox::counts(&self.db).await {
            Ok(counts) => {
                for status in ["pending", "failed"] {
                    self.metrics
                        .inbox_events
                        .with_label_values(&[status])
                        .set(counts.get(status).copied().unwrap_or(0));
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not read inbox counts for metrics"),
        }
    }
}

/// Options that differ between the binary and in-process test instances.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// Stop gracefully on SIGTERM/SIGINT (the binary); tests stop through the handle.
    pub handle_signals: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            handle_signals: true,
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
        crate::install_tls_provider();
        let db = store::connect(&settings.database).await?;
        if settings.database.auto_migrate {
            store::migrate(&db).await?;
        }
        let cipher = Cipher::from_settings(&settings)?;
        let metrics = Arc::new(Metrics::new());
        let context = web::Data::new(AppContext {
            settings,
            db,
            metrics,
            cipher,
        });

        let settings = &context.settings;
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let body_limit = settings.server.body_limit_bytes;
        let server_context = context.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(server_context.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .configure(crate::http::routes)
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            address: address.to_string(),
            source,
        })?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
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

    /// A handle that stops the HTTP server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (signal or handle), then drains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        tracing::info!("HTTP server stopped");
        result
    }
}
