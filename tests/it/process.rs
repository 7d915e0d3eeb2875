//! The `sync-hostaway` binary as a child process, for what only a real
//! process can show: start-up from env vars, SIGKILL, a collector that is
//! down, memory measured from outside.

use std::process::Command;
use std::time::Duration;

pub use test_support::ServiceProcess;

use crate::helpers::{TestDb, config_dir, test_key};

/// Starts the binary on `db` (test environment, any free port unless
/// `SYNC_HOSTAWAY__SERVER__PORT` is in `env`) and waits until it listens.
pub fn start(db: &TestDb, env: &[(&str, &str)]) -> ServiceProcess {
    start_binary(env!("CARGO_BIN_EXE_sync-hostaway").as_ref(), db, env)
}

/// `start` with another build of the binary (the release one).
pub fn start_binary(binary: &std::path::Path, db: &TestDb, env: &[(&str, &str)]) -> ServiceProcess {
    let mut command = Command::new(binary);
    command
        .arg("--config-dir")
        .arg(config_dir())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SYNC_HOSTAWAY_ENV", "test")
        .env("SYNC_HOSTAWAY__DATABASE__URL", &db.url)
        .env("SYNC_HOSTAWAY__DATABASE__SCHEMA", &db.schema)
        .env("SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY", test_key())
        .env("SYNC_HOSTAWAY__TELEMETRY__LOG_FORMAT", "json")
        .env("SYNC_HOSTAWAY__TELEMETRY__LOG_FILTER", "info,sqlx=warn");
    for (key, value) in env {
        command.env(key, value);
    }
    ServiceProcess::start(command, Duration::from_secs(60))
}

/// The binary copied alone into an empty directory: it runs on its built-in
/// settings and `SYNC_HOSTAWAY__…` variables, and serves `/health`.
#[actix_web::test]
async fn the_binary_runs_alone_in_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("sync-hostaway");
    std::fs::copy(env!("CARGO_BIN_EXE_sync-hostaway"), &binary).unwrap();
    let mut command = Command::new(&binary);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("SYNC_HOSTAWAY__SERVER__PORT", "0")
        .env("SYNC_HOSTAWAY__TELEMETRY__LOG_FORMAT", "json");
    let service = ServiceProcess::start(command, Duration::from_secs(60));
    let health = crate::helpers::http_client()
        .get(service.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        dir.path().join("data/sync-hostaway.db").exists(),
        "its SQLite file is beside it"
    );
}
