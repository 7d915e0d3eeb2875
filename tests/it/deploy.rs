//! The files in `deploy/`: every metric the Prometheus alert rules and the
//! Grafana dashboard use is one the service exports, once it has done some
//! work (an account synced, a webhook applied). `promtool check rules` and
//! `systemd-analyze verify` run in `.ci/run`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use hostaway_sim::DatasetSize;
use serde_json::Value;

use crate::accounts::{app_with_sim, create_account, wait_synced};
use crate::helpers::{Backend, fixture, wait_for};

fn deploy_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `sync_hostaway_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sync_hostaway_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The metric families a `/metrics` text exports (histograms also as
/// their `_bucket`, `_sum` and `_count` series).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

#[actix_web::test]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let alerts = deploy_file("prometheus/alerts.yml");
    let dashboard = deploy_file("grafana/sync-hostaway.json");
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(
        parsed["panels"].as_array().is_some_and(|p| p.len() >= 8),
        "the dashboard has its panels"
    );
    assert_eq!(
        alerts.matches("runbook_url: docs/operations.md#").count(),
        alerts.matches("- alert: ").count(),
        "every alert links its runbook"
    );
    let operations = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .unwrap();
    for anchor in alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: docs/operations.md#"))
    {
        let heading = operations.lines().any(|l| {
            l.strip_prefix("### ").is_some_and(|h| {
                h.to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                    .collect::<String>()
                    .replace(' ', "-")
                    == anchor
            })
        });
        assert!(heading, "docs/operations.md has no section for #{anchor}");
    }

    // Some work, so that series created on first use exist.
    let app = app_with_sim(
        Backend::Sqlite,
        DatasetSize {
            listings: 2,
            reservations: 3,
            conversations: 1,
            messages_per_conversation: 1,
        },
        &[],
    )
    .await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = serde_json::json!(1001);
    assert_eq!(app.deliver(&body).await.status(), 200);
    let text = wait_for(
        "the webhook applied",
        std::time::Duration::from_secs(10),
        || async {
            let text = app.metrics().await;
            text.contains("sync_hostaway_webhook_received_to_applied_seconds_count")
                .then_some(text)
        },
    )
    .await;
    let exported = exported(&text);
    let used: BTreeSet<String> = metric_names(&alerts)
        .union(&metric_names(&dashboard))
        .cloned()
        .collect();
    assert!(used.len() > 15, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
}
