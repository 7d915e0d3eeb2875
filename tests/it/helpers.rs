//! Test harness: a fresh database per test (a temp SQLite file, or a fresh
//! PostgreSQL schema when `TEST_DATABASE_URL` is set) and `spawn_app()`, which
//! starts the real service on port 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::web;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use sync_hostaway::app::{Application, BuildOptions};
use sync_hostaway::config::{Environment, LoadOptions, Settings};
use sync_hostaway::http::AppContext;
use sync_hostaway::store;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod $name { sqlite, postgres }` running `$name(backend)` on each.
/// A test of the PostgreSQL half: compiled in only when `TEST_DATABASE_URL`
/// was set for the build (`build.rs`), otherwise listed as ignored with the
/// reason, never as passed.
#[macro_export]
macro_rules! pg_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[actix_web::test]
        #[cfg_attr(
            not(pg_tests),
            ignore = "PostgreSQL half: TEST_DATABASE_URL was not set when the suite was built"
        )]
        async fn $name() $body
    };
}

#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            $crate::pg_test! {
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )+};
}

/// `TEST_DATABASE_URL`, or `None` (PostgreSQL tests are skipped). Under CI a
/// missing URL is a failure, not a skip.
pub fn pg_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI")
                .map(|v| v == "true" || v == "1")
                .unwrap_or(false)
            {
                panic!("CI requires TEST_DATABASE_URL: the PostgreSQL half of the suite must run");
            }
            None
        }
    }
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostaway")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

/// A database location for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub schema: String,
    _dir: TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                backend,
                url: format!("sqlite://{}/it.db?mode=rwc", dir.path().display()),
                schema: "hostaway".into(),
                _dir: dir,
            },
            Backend::Postgres => {
                let url = pg_url().expect("PostgreSQL tests run only with TEST_DATABASE_URL");
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let schema = format!("it_{secs}_{}", uuid::Uuid::new_v4().simple());
                TestDb {
                    backend,
                    url,
                    schema: schema[..40].to_string(),
                    _dir: dir,
                }
            }
        }
    }

    /// A fresh schema on another PostgreSQL server (the fault suite's own).
    pub fn on_postgres(url: &str) -> TestDb {
        TestDb {
            backend: Backend::Postgres,
            url: url.to_string(),
            schema: "hostaway".into(),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Settings for a service on this database (test environment, no process env).
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let base = [
            ("database.url", self.url.as_str()),
            ("database.schema", self.schema.as_str()),
            ("security.encryption_key", test_key()),
        ];
        test_settings(&base, overrides)
    }

    /// A migrated connection.
    pub async fn connect(&self) -> DatabaseConnection {
        drop_stale_pg_schemas().await;
        let settings = self.settings(&[]);
        let db = store::connect(&settings.database).await.expect("connect");
        store::migrate(&db).await.expect("migrate");
        db
    }
}

impl Drop for TestDb {
    /// Drops the test's PostgreSQL schema (SQLite files go with the temp dir).
    fn drop(&mut self) {
        if self.backend != Backend::Postgres || !self.schema.starts_with("it_") {
            return;
        }
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Its own thread and runtime: this may run inside or outside one.
        // The test's service may still be running on the thread this blocks
        // (the test's actix system), holding a transaction open on the
        // schema's tables, which it cannot finish while blocked: DROP would
        // wait for ever. So DROP waits 2 s at most; then the sessions holding
        // locks in the schema (only this test's service uses it) are ended
        // and DROP tries again.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(db) = Database::connect(url.as_str()).await else {
                    return;
                };
                let drop = format!(
                    "SET client_min_messages = warning; SET lock_timeout = '2s'; \
                     DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                );
                let holders = format!(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                     JOIN pg_class c ON c.oid = l.relation \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = '{schema}' AND l.pid <> pg_backend_pid()"
                );
                for _ in 0..5 {
                    if db.execute_unprepared(&drop).await.is_ok() {
                        break;
                    }
                    let _ = db.execute_unprepared(&holders).await;
                }
                let _ = db.close().await;
            });
        })
        .join();
    }
}

/// A fixed key so every test instance can read what another one wrote.
pub fn test_key() -> &'static str {
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
}

/// Drops PostgreSQL test schemas left by runs more than an hour old.
async fn drop_stale_pg_schemas() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Some(url) = pg_url() else { return };
        let Ok(db) = Database::connect(url.as_str()).await else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'it\\_%'",
            ))
            .await
            .unwrap_or_default();
        for row in rows {
            let Ok(name) = row.try_get_by_index::<String>(0) else {
                continue;
            };
            let created: u64 = name
                .split('_')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if now.saturating_sub(created) > 3600 {
                let _ = db
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .await;
            }
        }
        let _ = db.close().await;
    })
    .await;
}

/// A running service plus what tests need to talk to it.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub ctx: web::Data<AppContext>,
    pub db: DatabaseConnection,
    pub handle: ServerHandle,
    pub test_db: TestDb,
    pub sim: Option<hostaway_sim::Simulator>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn sim(&self) -> &hostaway_sim::Simulator {
        self.sim
            .as_ref()
            .expect("this app was started with a simulator")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }

    /// An admin request with the bearer token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth("test-admin-token")
    }

    /// Posts a webhook body with the global test credentials.
    pub async fn deliver(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/hostaway/webhooks"))
            .basic_auth("hostaway", Some("test-webhook-password"))
            .json(body)
            .send()
            .await
            .expect("delivery reaches the service")
    }

    /// Stops the HTTP server and drains the actors.
    pub async fn stop(&mut self) {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    /// Stops this instance and starts a new one on the same database and
    /// simulator (a service restart).
    pub async fn restart(mut self, overrides: &[(&str, &str)]) -> TestApp {
        self.stop().await;
        let sim = self.sim.take();
        let test_db = self.test_db;
        let address = self.address.trim_start_matches("http://").to_string();
        boot(test_db, sim, overrides, Some(address)).await
    }
}

/// What a test wants started.
#[derive(Default)]
pub struct AppOptions<'a> {
    pub sim: Option<hostaway_sim::SimConfig>,
    pub overrides: &'a [(&'a str, &'a str)],
    /// Register webhooks: point `webhooks.public_base_url` at the service.
    pub public_url: bool,
}

pub fn http_client() -> reqwest::Client {
    sync_hostaway::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below the server's 5 s keep-alive: never reuse a connection the
        // server may be closing at that very moment.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// Starts the service on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(TestDb::new(backend), &[]).await
}

/// Starts the service on `test_db` with config overrides.
pub async fn spawn_app_with(test_db: TestDb, overrides: &[(&str, &str)]) -> TestApp {
    boot(test_db, None, overrides, None).await
}

/// Starts a simulator and the service pointed at it.
pub async fn spawn_with(backend: Backend, options: AppOptions<'_>) -> TestApp {
    let sim = match options.sim {
        Some(config) => Some(start_sim(config).await),
        None => None,
    };
    let mut overrides: Vec<(&str, &str)> = options.overrides.to_vec();
    let public = "public";
    if options.public_url {
        overrides.push(("webhooks.public_base_url", public));
    }
    boot(TestDb::new(backend), sim, &overrides, None).await
}

async fn boot(
    test_db: TestDb,
    sim: Option<hostaway_sim::Simulator>,
    overrides: &[(&str, &str)],
    address: Option<String>,
) -> TestApp {
    drop_stale_pg_schemas().await;
    // A restarted instance keeps its address (Hostaway knows it).
    let listener =
        std::net::TcpListener::bind(address.as_deref().unwrap_or("127.0.0.1:0")).expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let mut all: Vec<(String, String)> = Vec::new();
    if let Some(sim) = &sim {
        all.push(("hostaway.base_url".into(), sim.base_url()));
    }
    for (key, value) in overrides {
        // "public" stands for this instance's own address.
        let value = if *key == "webhooks.public_base_url" && *value == "public" {
            address.clone()
        } else {
            value.to_string()
        };
        all.push((key.to_string(), value));
    }
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let settings = test_db.settings(&refs);
    let app = Application::build_with(
        settings,
        BuildOptions {
            handle_signals: false,
            listener: Some(listener),
        },
    )
    .await
    .expect("service starts");
    let ctx = app.context();
    let handle = app.handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: http_client(),
        db: ctx.db.clone(),
        ctx,
        handle,
        test_db,
        sim,
        running: Some(running),
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A simulator config for tests: account 1001 with secret "secret", limits
/// off, tokens usable at once, fast delivery retries.
pub fn sim_config(dataset: hostaway_sim::DatasetSize) -> hostaway_sim::SimConfig {
    use hostaway_sim::{SimAccount, SimConfig, SimRateLimits};
    let defaults = SimConfig::default();
    SimConfig {
        accounts: vec![SimAccount {
            account_id: 1001,
            client_secret: "secret".into(),
        }],
        dataset,
        rate_limits: SimRateLimits {
            enabled: false,
            ..defaults.rate_limits
        },
        token_ready_delay_ms: 0,
        delivery_retry_base_ms: 20,
        delivery_timeout_ms: 5_000,
        ..defaults
    }
}

pub async fn start_sim(config: hostaway_sim::SimConfig) -> hostaway_sim::Simulator {
    sync_hostaway::install_tls_provider();
    hostaway_sim::Simulator::start(config, 0)
        .await
        .expect("simulator starts")
}

/// Test settings pointing the Hostaway client at `sim` (no database needed).
pub fn client_settings(sim: &hostaway_sim::Simulator, overrides: &[(&str, &str)]) -> Settings {
    let base_url = sim.base_url();
    test_settings(&[("hostaway.base_url", base_url.as_str())], overrides)
}

/// The test environment's settings with `base` then `overrides` applied, the
/// process environment ignored.
pub fn test_settings(base: &[(&str, &str)], overrides: &[(&str, &str)]) -> Settings {
    Settings::load_with(LoadOptions {
        config_dir: Some(config_dir()),
        environment: Some(Environment::Test),
        env_vars: Some(HashMap::new()),
        overrides: base
            .iter()
            .chain(overrides)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .expect("test settings are valid")
}

/// Compares the mirror of `account_id` with the simulator's data: the same
/// listings (live ones), reservations and message threads, payloads equal.
pub async fn mirror_diff(app: &TestApp, account_id: i64) -> Option<String> {
    mirror_diff_on(&app.db, app.sim(), account_id).await
}

/// `mirror_diff` for a mirror in `db` (a service run as processes).
pub async fn mirror_diff_on(
    db: &DatabaseConnection,
    sim: &hostaway_sim::Simulator,
    account_id: i64,
) -> Option<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use std::collections::BTreeMap;
    let truth = sim
        .state()
        .dataset(account_id)
        .expect("account in simulator");
    let listings: BTreeMap<i64, serde_json::Value> = entities::listing::Entity::find()
        .filter(entities::listing::Column::AccountId.eq(account_id))
        .filter(entities::listing::Column::DeletedAt.is_null())
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.id, l.raw_payload))
        .collect();
    let expected: BTreeMap<i64, serde_json::Value> = truth
        .listings
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l.clone()))
        .collect();
    if listings != expected {
        return Some(format!(
            "listings differ: mirror has {} ids, simulator {}",
            listings.len(),
            expected.len()
        ));
    }
    let reservations: BTreeMap<i64, serde_json::Value> = entities::reservation::Entity::find()
        .filter(entities::reservation::Column::AccountId.eq(account_id))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.raw_payload))
        .collect();
    let expected: BTreeMap<i64, serde_json::Value> = truth
        .reservations
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r.clone()))
        .collect();
    if reservations.len() != expected.len() {
        return Some(format!(
            "reservation count differs: mirror {}, simulator {}",
            reservations.len(),
            expected.len()
        ));
    }
    for (id, payload) in &expected {
        if reservations.get(id) != Some(payload) {
            return Some(format!("reservation {id} differs"));
        }
    }
    let threads: BTreeMap<i64, serde_json::Value> = entities::message_thread::Entity::find()
        .filter(entities::message_thread::Column::AccountId.eq(account_id))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.reservation_id, t.raw_messages))
        .collect();
    let mut expected_threads: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for conversation in &truth.conversations {
        let conversation_id = conversation["id"].as_i64().unwrap();
        let reservation_id =
            sync_hostaway::hostaway::decode::id(&conversation["reservationId"]).unwrap();
        let messages = truth
            .messages
            .get(&conversation_id)
            .cloned()
            .unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        expected_threads
            .entry(reservation_id)
            .or_default()
            .extend(messages);
    }
    if threads.len() != expected_threads.len() {
        return Some(format!(
            "thread count differs: mirror {}, simulator {}",
            threads.len(),
            expected_threads.len()
        ));
    }
    for (reservation_id, messages) in expected_threads {
        let expected = sync_hostaway::store::rows::merge_messages(vec![], messages);
        let Some(stored) = threads.get(&reservation_id).and_then(|t| t.as_array()) else {
            return Some(format!("thread of reservation {reservation_id} is missing"));
        };
        if stored.len() != expected.len() {
            return Some(format!(
                "thread of reservation {reservation_id} has {} messages, simulator {}",
                stored.len(),
                expected.len()
            ));
        }
        // A message that arrived by webhook may carry fields the messages
        // endpoint does not (`channelId`): every field Hostaway's API has
        // must match, in the same order.
        for (have, want) in stored.iter().zip(&expected) {
            let want = want.as_object().expect("message object");
            if let Some((key, _)) = want.iter().find(|(k, v)| have.get(k.as_str()) != Some(*v)) {
                return Some(format!(
                    "thread of reservation {reservation_id}: message {} differs in `{key}`",
                    want["id"]
                ));
            }
        }
    }
    None
}

/// The value of one series (`name{labels}`) in Prometheus text, 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}
