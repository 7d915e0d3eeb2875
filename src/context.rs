//! The shared services every actor and handler uses: settings, database,
//! metrics, cipher, Hostaway client and the account directory, opened once
//! at start-up. Below the actors and the HTTP layer; it knows neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::config::{Environment, Settings};
use crate::crypto::Cipher;
use crate::directory::AccountDirectory;
use crate::hostaway::{HostawayClient, HostawayError};
use crate::metrics::Metrics;
use crate::store;
use crate::store::leases::Lease;
use crate::store::notify::Topic;
use crate::store::write::Fence;

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
    /// The committing actors' own connections (the shared pool on SQLite).
    pub committers: store::Committers,
    pub metrics: Arc<Metrics>,
    pub cipher: Cipher,
    pub hostaway: HostawayClient,
    pub directory: AccountDirectory,
    /// This replica's part in a cluster (`cluster.enabled`); `None`: one
    /// process owns every account.
    pub cluster: Option<Arc<ClusterMember>>,
    /// When `refresh_gauges` last read the database.
    gauges_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Core {
    /// Connects, migrates and loads what the service needs before actors start.
    pub async fn open(settings: Settings) -> Result<Core, StartupError> {
        crate::install_tls_provider();
        check_public_url(&settings)?;
        // A replica frozen inside a transaction must not hold its leases'
        // rows locked for longer than a lease.
        let idle_in_transaction = settings
            .cluster
            .enabled
            .then(|| Duration::from_secs(settings.cluster.lease_secs.get()));
        let db = store::connect_with(&settings.database, idle_in_transaction).await?;
        // The keeper and the listener get connections of their own: a busy
        // pool must not delay a lease renewal, and they must outlive the
        // HTTP workers (whose connections die with their runtimes) to
        // release the leases at shutdown.
        let cluster_db = match settings.cluster.enabled {
            true => {
                let mut own = settings.database.clone();
                own.max_connections = std::num::NonZeroU32::new(3).expect("3 > 0");
                Some(store::connect_with(&own, idle_in_transaction).await?)
            }
            false => None,
        };
        if settings.database.auto_migrate {
            store::migrate(&db).await?;
        }
        let committers = store::Committers::open(
            &settings.database,
            &db,
            idle_in_transaction,
            store::reservation_writers(settings.cluster.enabled),
        )
        .await?;
        let cipher = Cipher::from_settings(&settings)?;
        let metrics = Arc::new(Metrics::new());
        let cluster = cluster_db.map(|own| {
            Arc::new(ClusterMember::new(
                ClusterOptions {
                    replica_id: settings.cluster.replica_id(),
                    lease_secs: settings.cluster.lease_secs.get(),
                    heartbeat_secs: settings.cluster.heartbeat_secs.get(),
                },
                &settings.database.schema,
                own,
            ))
        });
        // In a cluster another replica may be running a sync right now: an
        // interrupted one is run again by the account's next owner instead.
        let interrupted = match cluster {
            None => store::accounts::reset_interrupted_syncs(&db).await?,
            Some(_) => 0,
        };
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
            committers,
            metrics,
            cipher,
            hostaway,
            directory,
            cluster,
            gauges_refreshed: std::sync::Mutex::new(None),
        })
    }

    /// Whether this replica acts for `account_id` now (always, outside a
    /// cluster).
    pub fn owns(&self, account_id: i64) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|member| member.ownership.epoch(account_id).is_some())
    }

    /// The fencing token a write for `account_id` is made under (`None`
    /// outside a cluster).
    pub fn fence(&self, account_id: i64) -> Option<Fence> {
        self.cluster.as_ref().map(|member| member.fence(account_id))
    }

    /// Tells the other replicas about `account_ids` on `topic` (nothing
    /// outside a cluster). A hint: one lost is made up by the periodic scans.
    pub async fn announce(&self, topic: Topic, account_ids: &[i64]) {
        let Some(member) = &self.cluster else {
            return;
        };
        let channel = member.channel(topic);
        if let Err(err) = store::notify::notify_hint(&self.db, channel, account_ids).await {
            tracing::warn!(error = %err, ?topic, "could not notify the other replicas");
        }
    }

    /// The account's row was stored: refresh this replica's directory and
    /// tell the others to refresh theirs.
    pub async fn account_stored(&self, row: &entities::account::Model) {
        self.directory.refresh(row, &self.cipher);
        self.announce(Topic::Accounts, &[row.account_id]).await;
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
        // Only the degraded accounts' pending rows are counted (one
        // statement each, over the pending index), never the mirror tables.
        let mut waiting = 0;
        for account_id in self.directory.degraded_ids() {
            if let Ok(pending) = store::inbox::pending_count(&self.db, account_id).await {
                waiting += pending;
            }
        }
        self.metrics.degraded_pending_events.set(waiting);
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

/// How this replica takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub replica_id: String,
    pub lease_secs: u64,
    pub heartbeat_secs: u64,
}

/// The accounts this replica owns, each at its fencing epoch (kept by the
/// `LeaseKeeper`).
#[derive(Debug, Default)]
pub struct Ownership {
    held: RwLock<HashMap<i64, i64>>,
    /// The last round left this replica holding its whole share.
    settled: AtomicBool,
    /// It has held its whole share once since it started (`/ready`).
    joined: AtomicBool,
}

impl Ownership {
    pub fn epoch(&self, account_id: i64) -> Option<i64> {
        self.read().get(&account_id).copied()
    }

    /// The leases held, by account id.
    pub fn leases(&self) -> Vec<Lease> {
        let mut leases: Vec<Lease> = self
            .read()
            .iter()
            .map(|(&account_id, &epoch)| Lease { account_id, epoch })
            .collect();
        leases.sort_by_key(|l| l.account_id);
        leases
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this replica holds its whole share (or knows it has none).
    pub fn settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }

    pub fn set_settled(&self, settled: bool) {
        self.settled.store(settled, Ordering::Relaxed);
        if settled {
            self.joined.store(true, Ordering::Relaxed);
        }
    }

    /// Whether this replica has held its whole share since it started: a
    /// rebalance later (a replica joining or dying) does not make it
    /// unready, or every replica would report unready at once.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i64, i64>> {
        self.held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops `lost` and records `taken` (the keeper's round).
    pub fn apply(&self, lost: &[i64], taken: &[Lease]) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        for id in lost {
            held.remove(id);
        }
        for lease in taken {
            held.insert(lease.account_id, lease.epoch);
        }
    }
}

/// This replica's part in a cluster: who it is, what it owns, and the
/// channels its deployment (database schema) notifies on.
#[derive(Debug)]
pub struct ClusterMember {
    pub options: ClusterOptions,
    pub replica: Arc<str>,
    pub ownership: Arc<Ownership>,
    /// The keeper's, the listener's and the announcer's own small pool.
    pub db: DatabaseConnection,
    channels: [String; 3],
    /// Accounts whose owners are to hear of new inbox rows (at most one
    /// entry per account: bounded by the directory).
    unannounced: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    announce: tokio::sync::Notify,
}

impl ClusterMember {
    pub fn new(options: ClusterOptions, schema: &str, db: DatabaseConnection) -> Self {
        ClusterMember {
            replica: Arc::from(options.replica_id.as_str()),
            options,
            ownership: Arc::default(),
            db,
            unannounced: Default::default(),
            announce: tokio::sync::Notify::new(),
            channels: [Topic::Inbox, Topic::Accounts, Topic::Sync].map(|t| t.channel(schema)),
        }
    }

    /// The channel of `topic` for this deployment.
    pub fn channel(&self, topic: Topic) -> &str {
        match topic {
            Topic::Inbox => &self.channels[0],
            Topic::Accounts => &self.channels[1],
            Topic::Sync => &self.channels[2],
        }
    }

    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// Queues an inbox wake-up for the owners of `account_ids` (their rows
    /// are committed). `announce_loop` sends them, many per statement.
    pub fn announce_inbox(&self, account_ids: impl IntoIterator<Item = i64>) {
        let mut queued = self
            .unannounced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = queued.len();
        queued.extend(account_ids);
        if queued.len() > before {
            self.announce.notify_one();
        }
    }

    /// Sends the queued inbox wake-ups, one statement (one small
    /// transaction) for all accounts queued while the previous one ran:
    /// NOTIFY serialises committing transactions server-wide, so it stays
    /// out of the inbox's own commits. Runs until the task is dropped.
    pub async fn announce_loop(&self, metrics: &Metrics) {
        loop {
            self.announce.notified().await;
            // Under load several inbox batches commit within a moment: one
            // statement (and one notification per listener) for all of them.
            tokio::time::sleep(ANNOUNCE_GATHER).await;
            let ids: Vec<i64> = std::mem::take(
                &mut *self
                    .unannounced
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_iter()
            .collect();
            if ids.is_empty() {
                continue;
            }
            let channel = self.channel(Topic::Inbox);
            let _timer = metrics.db_timer("inbox_notify");
            if let Err(err) = store::notify::notify_hint(&self.db, channel, &ids).await {
                // The owners' periodic catch-up finds the rows.
                tracing::warn!(error = %err, accounts = ids.len(), "could not wake the other replicas");
            }
        }
    }

    /// The token a write for `account_id` carries: the lease held, or
    /// epoch 0 (which no lease has) when none is, so the write is refused.
    pub fn fence(&self, account_id: i64) -> Fence {
        Fence {
            replica: self.replica.clone(),
            lease: Lease {
                account_id,
                epoch: self.ownership.epoch(account_id).unwrap_or(0),
            },
        }
    }
}

/// How long inbox wake-ups gather before they are sent (`announce_loop`).
const ANNOUNCE_GATHER: std::time::Duration = std::time::Duration::from_millis(3);

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
                (
                    "database.url".into(),
                    "postgres://mirror@127.0.0.1:5432/mirror".into(),
                ),
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
