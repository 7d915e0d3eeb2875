//! Webhook registration at Hostaway: the registrar against the simulator,
//! and the end-to-end flow where the simulator delivers to the service.

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
/// Where the service says Hostaway must deliver (the route in API docs).
const WEBHOOK_PATH: &str = "/api/v1/hostaway/webhooks";
use hostaway_sim::{DatasetSize, DeliverRequest, Faults, Mutation};
use sync_hostaway::hostaway::types::WebhookSpec;
use sync_hostaway::hostaway::{AccountClient, Credentials, HostawayClient, endpoints};
use sync_hostaway::metrics::Metrics;

use crate::accounts::{create_account, get_account, wait_synced};
use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestApp, mirror_diff, sim_config, spawn_with, wait_for};
use crate::webhooks::wait_settled;

const DATASET: DatasetSize = DatasetSize {
    listings: 5,
    reservations: 60,
    conversations: 30,
    messages_per_conversation: 3,
};

async fn app(backend: Backend, public_url: bool) -> TestApp {
    spawn_with(
        backend,
        AppOptions {
            sim: Some(sim_config(DATASET)),
            overrides: &[],
            public_url,
        },
    )
    .await
}

/// Waits for the account's webhook status.
async fn webhook_status(app: &TestApp, account_id: i64, status: &str) -> Value {
    wait_for(
        &format!("webhook status {status}"),
        Duration::from_secs(20),
        || async {
            let account = get_account(app, account_id).await;
            (account["webhook"]["status"] == status && account["webhook"]["rotating"] == false)
                .then_some(account)
        },
    )
    .await
}

/// The registrations the simulator holds for 1001 (with real passwords).
fn registrations(app: &TestApp) -> Vec<Value> {
    app.sim().state().webhooks(1001)
}

/// A client acting as the user in Hostaway's dashboard.
fn dashboard(app: &TestApp) -> AccountClient {
    let settings = crate::helpers::client_settings(app.sim(), &[]);
    let client = HostawayClient::new(
        &settings.hostaway,
        std::sync::Arc::new(Metrics::new()),
        None,
    )
    .unwrap();
    client.account(Credentials {
        account_id: 1001,
        client_secret: SecretString::from("secret".to_string()),
    })
}

async fn deliver_changes(
    app: &TestApp,
    changes: &[hostaway_sim::Change],
) -> Vec<hostaway_sim::DeliveryRecord> {
    app.sim()
        .state()
        .deliver_changes(1001, changes, false)
        .await
}

both_backends!(
    the_first_sync_registers_exactly_one_webhook_that_delivers,
    reconcile_recreates_a_deleted_registration_and_reenables_a_disabled_one,
    soft_delete_disables_reactivation_enables_hard_delete_removes,
    registration_is_retried_through_hostaway_errors,
    without_a_public_url_no_webhook_calls_are_made,
    rotating_credentials_under_a_stream_of_deliveries_loses_none,
    end_to_end_the_mirror_follows_the_simulator_through_webhooks,
);

async fn the_first_sync_registers_exactly_one_webhook_that_delivers(backend: Backend) {
    let app = app(backend, true).await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    let account = webhook_status(&app, 1001, "registered").await;
    let hooks = registrations(&app);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let hook = &hooks[0];
    assert_eq!(hook["url"], app.url(WEBHOOK_PATH));
    assert_eq!(hook["isEnabled"], json!(1));
    assert!(
        hook["login"]
            .as_str()
            .unwrap()
            .starts_with("sync-hostaway-1001")
    );
    let password = hook["password"].as_str().unwrap();
    assert!(password.len() >= 24 && password != "test-webhook-password");
    assert_eq!(account["webhook"]["webhook_id"], hook["id"]);
    assert!(
        !account.to_string().contains(password),
        "the password is never returned"
    );

    // Hostaway delivers with those credentials: accepted and applied.
    let changes = app
        .sim()
        .state()
        .mutate(1001, Mutation::UpdateReservation, 1);
    let records = deliver_changes(&app, &changes).await;
    assert_eq!(
        records[0].attempts.last().unwrap().status,
        Some(200),
        "{records:?}"
    );
    wait_settled(&app.db).await;
    assert_eq!(mirror_diff(&app, 1001).await, None);

    // Wrong credentials are refused (and Hostaway does not retry a 401).
    let records = app
        .sim()
        .state()
        .deliver(DeliverRequest {
            account_id: 1001,
            event: "reservation.updated".into(),
            object: None,
            data: Some(changes[0].data.clone()),
            body: None,
            url: None,
            login: None,
            password: Some("not-the-password".into()),
            asynchronous: false,
        })
        .await;
    assert_eq!(records[0].attempts.len(), 1);
    assert_eq!(records[0].attempts[0].status, Some(401));

    // A restart keeps exactly one registration.
    let mut app = app.restart(&[("webhooks.public_base_url", "public")]).await;
    wait_for(
        "the registrar's reconcile at start",
        Duration::from_secs(20),
        || async {
            let stats = app.sim().state().stats();
            (stats
                .requests
                .get(endpoints::WEBHOOKS_LIST)
                .copied()
                .unwrap_or(0)
                >= 2)
                .then_some(())
        },
    )
    .await;
    webhook_status(&app, 1001, "registered").await;
    assert_eq!(registrations(&app).len(), 1);
    app.stop().await;
}

async fn reconcile_recreates_a_deleted_registration_and_reenables_a_disabled_one(backend: Backend) {
    let mut app = app(backend, true).await;
    create_account(&app, 1001, "secret").await;
    webhook_status(&app, 1001, "registered").await;
    let first = registrations(&app)[0]["id"].as_i64().unwrap();

    dashboard(&app).delete_webhook(first).await.unwrap();
    assert!(registrations(&app).is_empty());
    app.admin(Method::POST, "/api/v1/hostaway/accounts/1001/sync")
        .send()
        .await
        .unwrap();
    let recreated = wait_for(
        "the registration to be recreated",
        Duration::from_secs(20),
        || async { registrations(&app).first().cloned() },
    )
    .await;
    assert_ne!(recreated["id"].as_i64().unwrap(), first);
    wait_for(
        "the new webhook id to be stored",
        Duration::from_secs(20),
        || async {
            let account = get_account(&app, 1001).await;
            (account["webhook"]["webhook_id"] == recreated["id"]
                && account["webhook"]["status"] == "registered")
                .then_some(())
        },
    )
    .await;

    let id = recreated["id"].as_i64().unwrap();
    let spec = WebhookSpec {
        is_enabled: 0,
        url: app.url(WEBHOOK_PATH),
        login: recreated["login"].as_str().map(str::to_string),
        password: recreated["password"].as_str().map(str::to_string),
        alerting_email_address: None,
    };
    dashboard(&app).update_webhook(id, &spec).await.unwrap();
    assert_eq!(registrations(&app)[0]["isEnabled"], json!(0));
    app.admin(Method::POST, "/api/v1/hostaway/accounts/1001/sync")
        .send()
        .await
        .unwrap();
    wait_for(
        "the registration to be enabled again",
        Duration::from_secs(20),
        || async { (registrations(&app)[0]["isEnabled"] == json!(1)).then_some(()) },
    )
    .await;
    // Extra copies of our URL are removed; other integrations are left alone.
    let other = WebhookSpec {
        is_enabled: 1,
        url: "https://other-integration.example.com/hook".into(),
        login: None,
        password: None,
        alerting_email_address: None,
    };
    dashboard(&app).create_webhook(&other).await.unwrap();
    dashboard(&app)
        .create_webhook(&WebhookSpec {
            url: app.url(WEBHOOK_PATH),
            ..other.clone()
        })
        .await
        .unwrap();
    app.admin(Method::POST, "/api/v1/hostaway/accounts/1001/sync")
        .send()
        .await
        .unwrap();
    wait_for(
        "the duplicate to be removed",
        Duration::from_secs(20),
        || async {
            let hooks = registrations(&app);
            let ours = hooks
                .iter()
                .filter(|h| h["url"] == app.url(WEBHOOK_PATH))
                .count();
            (ours == 1 && hooks.len() == 2).then_some(())
        },
    )
    .await;
    app.stop().await;
}

async fn soft_delete_disables_reactivation_enables_hard_delete_removes(backend: Backend) {
    let mut app = app(backend, true).await;
    create_account(&app, 1001, "secret").await;
    webhook_status(&app, 1001, "registered").await;

    app.admin(Method::DELETE, "/api/v1/hostaway/accounts/1001")
        .send()
        .await
        .unwrap();
    webhook_status(&app, 1001, "disabled").await;
    assert_eq!(registrations(&app)[0]["isEnabled"], json!(0));
    // Were Hostaway to deliver anyway, the account is refused.
    let changes = app
        .sim()
        .state()
        .mutate(1001, Mutation::UpdateReservation, 1);
    let records = app
        .sim()
        .state()
        .deliver(DeliverRequest {
            account_id: 1001,
            event: "reservation.updated".into(),
            object: None,
            data: Some(changes[0].data.clone()),
            body: None,
            url: Some(app.url(WEBHOOK_PATH)),
            login: None,
            password: None,
            asynchronous: false,
        })
        .await;
    assert_eq!(records[0].attempts[0].status, Some(404));

    app.admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"is_active": true}))
        .send()
        .await
        .unwrap();
    wait_for(
        "the registration to be enabled",
        Duration::from_secs(20),
        || async { (registrations(&app)[0]["isEnabled"] == json!(1)).then_some(()) },
    )
    .await;
    webhook_status(&app, 1001, "registered").await;

    let response = app
        .admin(Method::DELETE, "/api/v1/hostaway/accounts/1001?hard=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        registrations(&app).is_empty(),
        "deleted at Hostaway before the data"
    );
    app.stop().await;
}

async fn registration_is_retried_through_hostaway_errors(backend: Backend) {
    let mut app = app(backend, true).await;
    app.sim().state().set_faults(Faults {
        error_burst: 5,
        path_contains: Some("unifiedWebhooks".into()),
        ..Faults::default()
    });
    create_account(&app, 1001, "secret").await;
    let synced = wait_synced(&app, 1001).await;
    assert_eq!(
        synced["last_error"],
        Value::Null,
        "registration trouble never fails a sync"
    );
    webhook_status(&app, 1001, "registered").await;
    assert_eq!(registrations(&app).len(), 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "sync_hostaway_webhook_registrations_total{operation=\"create\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

async fn without_a_public_url_no_webhook_calls_are_made(backend: Backend) {
    let mut app = app(backend, false).await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    webhook_status(&app, 1001, "disabled").await;
    let stats = app.sim().state().stats();
    let webhook_calls: u64 = stats
        .requests
        .iter()
        .filter(|(route, _)| route.contains("unifiedWebhooks"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(webhook_calls, 0, "{:?}", stats.requests);
    app.stop().await;
}

async fn rotating_credentials_under_a_stream_of_deliveries_loses_none(backend: Backend) {
    let mut app = app(backend, true).await;
    create_account(&app, 1001, "secret").await;
    webhook_status(&app, 1001, "registered").await;
    let old_login = registrations(&app)[0]["login"].clone();

    let state = app.sim().state();
    let stream = actix_web::rt::spawn(async move {
        let mut records = Vec::new();
        for _ in 0..40 {
            let changes = state.mutate(1001, Mutation::UpdateReservation, 1);
            records.extend(state.deliver_changes(1001, &changes, false).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        records
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/rotate-webhook-credentials",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let records = stream.await.unwrap();
    webhook_status(&app, 1001, "registered").await;
    assert_ne!(
        registrations(&app)[0]["login"],
        old_login,
        "Hostaway has the new credentials"
    );
    assert_eq!(records.len(), 40);
    for record in &records {
        assert!(
            record.delivered,
            "a delivery was refused during rotation: {record:?}"
        );
        assert_eq!(
            record.attempts.len(),
            1,
            "and none needed a retry: {record:?}"
        );
    }
    wait_settled(&app.db).await;
    assert_eq!(mirror_diff(&app, 1001).await, None);
    app.stop().await;
}

async fn end_to_end_the_mirror_follows_the_simulator_through_webhooks(backend: Backend) {
    let mut app = app(backend, true).await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    webhook_status(&app, 1001, "registered").await;
    let state = app.sim().state();
    state.reset_stats();
    let mut changes = state.mutate(1001, Mutation::UpdateReservation, 40);
    changes.extend(state.mutate(1001, Mutation::CancelReservation, 5));
    changes.extend(state.mutate(1001, Mutation::NewReservation, 5));
    changes.extend(state.mutate(1001, Mutation::NewMessage, 50));
    assert_eq!(changes.len(), 100);
    let records = state.deliver_changes(1001, &changes, false).await;
    assert!(
        records.iter().all(|r| r.delivered),
        "every delivery accepted"
    );
    wait_settled(&app.db).await;
    assert_eq!(
        mirror_diff(&app, 1001).await,
        None,
        "the mirror equals the simulator"
    );
    let stats = state.stats();
    assert_eq!(
        stats.total, 0,
        "no API call was needed: {:?}",
        stats.requests
    );
    app.stop().await;
}
