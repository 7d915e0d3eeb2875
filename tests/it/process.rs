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
