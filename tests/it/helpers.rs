//! Test harness: a fresh database per test (a temp SQLite file, or a fresh
//! PostgreSQL schema when `TEST_DATABASE_URL` is set) and `spawn_app()`, which
//! starts the real service on port 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::web;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use sync_hostaway::app::{AppContext, Application, BuildOptions};
use sync_hostaway::config::{Environment, LoadOptions, Settings};
use sync_hostaway::store;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod $name { sqlite, postgres }` running `$name(backend)` on each.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                if $crate::helpers::pg_url().is_some() {
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

    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    /// Settings for a service on this database (test environment, no process env).
    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let mut all = vec![
            ("database.url".to_string(), self.url.clone()),
            ("database.schema".to_string(), self.schema.clone()),
            ("security.encryption_key".to_string(), test_key()),
        ];
        all.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Settings::load_with(LoadOptions {
            config_dir: Some(config_dir()),
            environment: Some(Environment::Test),
            env_vars: Some(HashMap::new()),
            overrides: all,
        })
        .expect("test settings are valid")
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

/// A fixed key so every test instance can read what another one wrote.
pub fn test_key() -> String {
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string()
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
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

pub fn http_client() -> reqwest::Client {
    sync_hostaway::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Starts the service on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(TestDb::new(backend), &[]).await
}

/// Starts the service on `test_db` with config overrides.
pub async fn spawn_app_with(test_db: TestDb, overrides: &[(&str, &str)]) -> TestApp {
    drop_stale_pg_schemas().await;
    let settings = test_db.settings(overrides);
    let app = Application::build_with(
        settings,
        BuildOptions {
            handle_signals: false,
        },
    )
    .await
    .expect("service starts");
    let address = format!("http://{}", app.address());
    let ctx = app.context();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: http_client(),
        db: ctx.db.clone(),
        ctx,
        handle,
        test_db,
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
