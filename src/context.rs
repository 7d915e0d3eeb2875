//! The shared services every actor and handler uses: settings, database,
//! metrics, cipher, Hostaway client and the account directory, opened once
//! at start-up. Below the actors and the HTTP layer; it knows neither.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::config::{Environment, Settings};
use crate::crypto::Cipher;
use crate::directory::AccountDirectory;
use crate::hostaway::{HostawayClient, HostawayError};
use crate::metrics::Metrics;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] store::StoreError),
    #[error("security.encryption_key: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("Hostaway client: {0}")]
    Hostaway(#[from] HostawayError),
    #[error("webhooks.public_base_url: {0}")]
    PublicUrl(String),
    #[error("could not bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<sea_orm::DbErr> for StartupError {
    fn from(err: sea_orm::DbErr) -> Self {
        StartupError::Database(err.into())
    }
}

/// The services every actor and handler shares.
pub struct Core {
    pub settings: Settings,
    pub db: DatabaseConnection,
    pub metrics: Arc<Metrics>,
    pub cipher: Cipher,
    pub hostaway: HostawayClient,
    pub directory: AccountDirectory,
    /// When `refresh_gauges` last read the database.
    gauges_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Core {
    /// Connects, migrates and loads what the service needs before actors start.
    pub async fn open(settings: Settings) -> Result<Core, StartupError> {
        crate::install_tls_provider();
        check_public_url(&settings)?;
        let db = store::connect(&settings.database).await?;
        if settings.database.auto_migrate {
            store::migrate(&db).await?;
        }
        let cipher = Cipher::from_settings(&settings)?;
        let metrics = Arc::new(Metrics::new());
        let interrupted = store::accounts::reset_interrupted_syncs(&db).await?;
        if interrupted > 0 {
            tracing::warn!(
                accounts = interrupted,
                "syncs interrupted by the last stop are marked failed"
            );
        }
        let directory = AccountDirectory::load(&db, &cipher).await?;
        let vault = store::accounts::TokenVault {
            db: db.clone(),
            cipher: cipher.clone(),
        };
        let hostaway =
            HostawayClient::new(&settings.hostaway, metrics.clone(), Some(Arc::new(vault)))?;
        Ok(Core {
            settings,
            db,
            metrics,
            cipher,
            hostaway,
            directory,
            gauges_refreshed: std::sync::Mutex::new(None),
        })
    }

    /// Named readiness checks; each is `"ok"` or a short reason.
    pub async fn readiness(&self, timeout: Duration) -> BTreeMap<&'static str, String> {
        let mut checks = BTreeMap::new();
        // The database's own error text goes to the log, never to callers.
        let database = match tokio::time::timeout(timeout, store::ping(&self.db)).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: the database did not answer");
                "unreachable".to_string()
            }
            Err(_) => "timed out".to_string(),
        };
        checks.insert("database", database);
        checks
    }

    /// Refreshes gauges that are read at scrape time: the in-memory ones at
    /// every call, the database counts at most every
    /// `telemetry.metrics_refresh_secs` (scrapes never add load of their own).
    pub async fn refresh_gauges(&self) {
        self.metrics
            .accounts_degraded
            .set(self.directory.degraded_count() as i64);
        let every = Duration::from_secs(self.settings.telemetry.metrics_refresh_secs);
        {
            let mut last = self
                .gauges_refreshed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < every) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let _timer = self.metrics.db_timer("inbox_counts");
        if let Ok(counts) = store::accounts::entity_counts(&self.db, None).await {
            let waiting: i64 = counts
                .iter()
                .filter(|(id, _)| self.directory.get(**id).is_some_and(|e| e.degraded))
                .map(|(_, c)| c.pending_events)
                .sum();
            self.metrics.degraded_pending_events.set(waiting);
        }
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

/// Hostaway accepts only https URLs without a port: a warning outside
/// production (local simulators), an error in production.
fn check_public_url(settings: &Settings) -> Result<(), StartupError> {
    let raw = settings.webhooks.public_base_url.trim();
    if raw.is_empty() {
        return Ok(());
    }
    let problem = match url::Url::parse(raw) {
        Err(err) => Some(err.to_string()),
        Ok(url) if url.scheme() != "https" => Some("Hostaway only delivers to https URLs".into()),
        Ok(url) if url.port().is_some() => Some("Hostaway rejects URLs with a port".into()),
        Ok(_) => None,
    };
    match problem {
        Some(problem) if settings.environment == Environment::Production => {
            Err(StartupError::PublicUrl(problem))
        }
        Some(problem) => {
            tracing::warn!(
                url = raw,
                problem,
                "webhooks.public_base_url would be rejected by Hostaway"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, Settings};

    fn settings(environment: Environment, url: &str) -> Settings {
        Settings::load_with(LoadOptions {
            config_dir: Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")),
            environment: Some(environment),
            env_vars: Some(Default::default()),
            overrides: vec![
                ("webhooks.public_base_url".into(), url.into()),
                ("security.encryption_key".into(), Cipher::generate_key()),
                ("admin.api_token".into(), "token".into()),
            ],
        })
        .expect("settings")
    }

    #[test]
    fn a_public_url_hostaway_would_reject_is_an_error_only_in_production() {
        for url in [
            "http://mirror.example.com",
            "https://mirror.example.com:8443",
        ] {
            assert!(check_public_url(&settings(Environment::Development, url)).is_ok());
            let err = check_public_url(&settings(Environment::Production, url)).unwrap_err();
            assert!(
                err.to_string().starts_with("webhooks.public_base_url"),
                "{err}"
            );
        }
        assert!(
            check_public_url(&settings(
                Environment::Production,
                "https://mirror.example.com"
            ))
            .is_ok()
        );
        assert!(check_public_url(&settings(Environment::Production, "")).is_ok());
    }
}
