//! The accounts CLI as a child process against a running service: add with
//! a checked secret, list, show, sync with progress, deactivate, delete, and
//! the exit codes scripts rely on.

use std::time::Duration;

use hostaway_sim::{DatasetSize, Faults};
use serde_json::Value;

use crate::accounts::app_with_sim;
use crate::both_backends;
use crate::helpers::{Backend, TestApp, config_dir, test_key};

const DATASET: DatasetSize = DatasetSize {
    listings: 4,
    reservations: 60,
    conversations: 12,
    messages_per_conversation: 2,
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `sync-hostaway ARGS` with the test config and `--url` of `app`.
async fn cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sync-hostaway"));
    command
        .arg("--config-dir")
        .arg(config_dir())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SYNC_HOSTAWAY_ENV", "test")
        .env("SYNC_HOSTAWAY_URL", app.url(""))
        .env("SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY", test_key())
        .env("SYNC_HOSTAWAY__SYNC__PROGRESS_LOG_SECS", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the CLI ends")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

both_backends!(the_accounts_cli_manages_accounts_through_the_running_service);

async fn the_accounts_cli_manages_accounts_through_the_running_service(backend: Backend) {
    let mut app = app_with_sim(
        backend,
        DATASET,
        &[
            ("sync.sync_on_create", "false"),
            ("hostaway.page_size", "10"),
            ("hostaway.concurrency", "1"),
        ],
    )
    .await;

    let added = cli(
        &app,
        &["accounts", "add", "1001", "--secret-env", "SECRET"],
        &[("SECRET", "secret")],
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    assert!(
        added.stdout.contains("account        1001"),
        "{}",
        added.stdout
    );
    assert!(!added.stdout.contains("secret") && !added.stderr.contains("secret"));

    let refused = cli(
        &app,
        &["accounts", "add", "1002", "--secret-env", "SECRET"],
        &[("SECRET", "wrong")],
    )
    .await;
    assert_eq!(
        refused.code, 2,
        "a refused secret is bad input: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("422") && refused.stderr.contains("credentials_refused"),
        "{}",
        refused.stderr
    );
    let missing = cli(&app, &["accounts", "add", "1002"], &[]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("--secret-env"),
        "{}",
        missing.stderr
    );

    let list = cli(&app, &["accounts", "list"], &[]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("ACCOUNT"), "{}", list.stdout);
    assert_eq!(lines.len(), 2, "one account: {}", list.stdout);
    assert!(lines[1].starts_with("1001"), "{}", list.stdout);
    let json = cli(&app, &["accounts", "list", "--json"], &[]).await;
    let parsed: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["accounts"][0]["account_id"], 1001);

    // A sync slow enough to show progress lines on a non-terminal stderr.
    app.sim().state().set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let synced = cli(&app, &["accounts", "sync", "1001", "--full", "--wait"], &[]).await;
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    assert!(
        synced.stdout.contains("full sync of account 1001 finished"),
        "{}",
        synced.stdout
    );
    assert!(
        synced
            .stdout
            .contains("reservations  60 fetched, 60 written"),
        "{}",
        synced.stdout
    );
    assert!(
        synced.stderr.contains("account 1001: phase "),
        "progress lines: {}",
        synced.stderr
    );
    app.sim().state().set_faults(Faults::default());

    let dry = cli(
        &app,
        &["sync", "--account", "1001", "--full", "--dry-run", "--json"],
        &[],
    )
    .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let report: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(report["report"]["dry_run"], true, "{report}");
    assert_eq!(report["report"]["reservations"]["fetched"], 60);

    let unknown = cli(&app, &["accounts", "show", "999"], &[]).await;
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("/api/v1/hostaway/accounts/999") && unknown.stderr.contains("404"),
        "{}",
        unknown.stderr
    );
    let soft = cli(&app, &["accounts", "delete", "1001"], &[]).await;
    assert_eq!(soft.code, 2);
    assert!(soft.stderr.contains("--hard"), "{}", soft.stderr);
    let deactivated = cli(&app, &["accounts", "deactivate", "1001"], &[]).await;
    assert_eq!(deactivated.code, 0, "{}", deactivated.stderr);
    assert!(
        deactivated.stdout.contains("inactive"),
        "{}",
        deactivated.stdout
    );
    let inactive = cli(&app, &["accounts", "sync", "1001"], &[]).await;
    assert_eq!(
        inactive.code, 2,
        "syncing an inactive account is refused: {}",
        inactive.stderr
    );
    let wrong_token = cli(
        &app,
        &["accounts", "list"],
        &[("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "not-the-token")],
    )
    .await;
    assert_eq!(wrong_token.code, 5, "{}", wrong_token.stderr);
    let deleted = cli(&app, &["accounts", "delete", "1001", "--hard"], &[]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let gone = cli(&app, &["accounts", "show", "1001"], &[]).await;
    assert_eq!(gone.code, 3);

    let nowhere = cli(
        &app,
        &["accounts", "list", "--url", "http://127.0.0.1:1"],
        &[],
    )
    .await;
    assert_eq!(nowhere.code, 4, "{}", nowhere.stderr);
    assert_eq!(
        nowhere.stderr.trim(),
        "sync-hostaway: could not reach the service at \
         http://127.0.0.1:1/api/v1/hostaway/accounts: Connection refused (os error 111)"
    );
    app.stop().await;
}
