//! The account API: every path, every bad input, 401s, and secrets never
//! returned.

use hostaway_sim::DatasetSize;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestApp, sim_config, spawn_with, wait_for};

const SMALL: DatasetSize = DatasetSize {
    listings: 3,
    reservations: 12,
    conversations: 6,
    messages_per_conversation: 3,
};

pub async fn app_with_sim(
    backend: Backend,
    dataset: DatasetSize,
    overrides: &[(&str, &str)],
) -> TestApp {
    spawn_with(
        backend,
        AppOptions {
            sim: Some(sim_config(dataset)),
            overrides,
            public_url: false,
        },
    )
    .await
}

pub async fn create_account(app: &TestApp, account_id: i64, secret: &str) -> Value {
    let response = app
        .admin(Method::POST, "/api/v1/hostaway/accounts")
        .json(&json!({"account_id": account_id, "client_secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

pub async fn get_account(app: &TestApp, account_id: i64) -> Value {
    let response = app
        .admin(
            Method::GET,
            &format!("/api/v1/hostaway/accounts/{account_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until the account's last sync finished (idle with a last_sync_at).
pub async fn wait_synced(app: &TestApp, account_id: i64) -> Value {
    wait_for(
        "the sync to finish",
        std::time::Duration::from_secs(30),
        || async {
            let account = get_account(app, account_id).await;
            (account["sync_state"] == "idle" && !account["last_sync_at"].is_null())
                .then_some(account)
        },
    )
    .await
}

both_backends!(
    creating_an_account_starts_a_full_sync_and_never_returns_the_secret,
    bad_inputs_get_clear_400s,
    every_admin_path_requires_the_bearer_token,
    unknown_accounts_are_404_and_duplicates_409,
    patch_updates_fields_and_a_new_secret_drops_the_cached_token,
    soft_and_hard_delete,
    sync_endpoint_accepts_modes_and_dry_runs,
    secrets_are_checked_with_hostaway_before_they_are_stored,
);

async fn creating_an_account_starts_a_full_sync_and_never_returns_the_secret(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[]).await;
    let created = create_account(&app, 1001, "secret").await;
    assert_eq!(created["account_id"], 1001);
    assert_eq!(
        created["sync_state"], "syncing",
        "the first sync is under way"
    );
    assert_eq!(
        created["webhook"]["status"], "disabled",
        "no public URL: nothing registers"
    );
    assert_eq!(created["is_active"], true);
    assert_eq!(created["status"], "active");
    assert!(!created.to_string().contains("secret\""), "{created}");
    assert!(created.get("client_secret").is_none());
    let synced = wait_synced(&app, 1001).await;
    assert_eq!(synced["counts"]["listings"], 3);
    assert_eq!(synced["counts"]["reservations"], 12);
    assert_eq!(synced["counts"]["message_threads"], 6);
    assert_eq!(synced["last_error"], Value::Null);
    let listed: Value = app
        .admin(Method::GET, "/api/v1/hostaway/accounts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["accounts"].as_array().unwrap().len(), 1);
    for text in [created.to_string(), synced.to_string(), listed.to_string()] {
        assert!(
            !text.contains("\"secret\""),
            "the secret never appears: {text}"
        );
        assert!(!text.contains("v1:"), "nor its ciphertext: {text}");
    }
    app.stop().await;
}

async fn bad_inputs_get_clear_400s(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[("sync.sync_on_create", "false")]).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"client_secret": "s"}), "account_id is required"),
        (
            json!({"account_id": "1001", "client_secret": "s"}),
            "account_id must be a positive integer",
        ),
        (
            json!({"account_id": -5, "client_secret": "s"}),
            "account_id must be a positive integer",
        ),
        (
            json!({"account_id": 1.5, "client_secret": "s"}),
            "account_id must be a positive integer",
        ),
        (json!({"account_id": 1001}), "client_secret is required"),
        (
            json!({"account_id": 1001, "client_secret": ""}),
            "client_secret must be a non-empty string",
        ),
        (
            json!({"account_id": 1001, "client_secret": 42}),
            "client_secret must be a string",
        ),
        (
            json!({"account_id": 1001, "client_secret": "s", "customer_id": "nope"}),
            "customer_id must be a UUID",
        ),
        (
            json!({"account_id": 1001, "client_secret": "s", "ignored_events": "x"}),
            "ignored_events must be a list",
        ),
        (
            json!({"account_id": 1001, "client_secret": "s", "ignored_events": ["reservation.updatd"]}),
            "ignored_events must be a list of event names (reservation.created, reservation.updated",
        ),
        (
            json!({"account_id": 1001, "client_secret": "s", "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!([1, 2]), "the body must be a JSON object"),
    ];
    for (body, message) in cases {
        let response = app
            .admin(Method::POST, "/api/v1/hostaway/accounts")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
        assert!(error["error"].is_string());
    }
    let response = app
        .admin(Method::POST, "/api/v1/hostaway/accounts")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"is_active": "yes"}))
        .send()
        .await
        .unwrap();
    assert!(response.status() == 400 || response.status() == 404);
    create_account(&app, 1001, "secret").await;
    let response = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"is_active": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    for path in [
        "/api/v1/hostaway/accounts/abc",
        "/api/v1/hostaway/accounts/0",
    ] {
        let response = app.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_path", "{path}: {error}");
    }
    for query in ["mode=sideways", "dry_run=maybe"] {
        let response = app
            .admin(
                Method::POST,
                &format!("/api/v1/hostaway/accounts/1001/sync?{query}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_query", "{query}: {error}");
    }
    use sea_orm::{EntityTrait, PaginatorTrait};
    let count = entities::account::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1, "nothing was stored by the bad requests");
    app.stop().await;
}

async fn every_admin_path_requires_the_bearer_token(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    let paths = [
        (Method::POST, "/api/v1/hostaway/accounts"),
        (Method::GET, "/api/v1/hostaway/accounts"),
        (Method::GET, "/api/v1/hostaway/accounts/1001"),
        (Method::PATCH, "/api/v1/hostaway/accounts/1001"),
        (Method::DELETE, "/api/v1/hostaway/accounts/1001"),
        (Method::POST, "/api/v1/hostaway/accounts/1001/sync"),
        (Method::POST, "/api/v1/hostaway/accounts/1001/replay-failed"),
        (
            Method::POST,
            "/api/v1/hostaway/accounts/1001/rotate-webhook-credentials",
        ),
        (Method::GET, "/api/v1/hostaway/webhooks/events"),
        (Method::POST, "/api/v1/hostaway/webhooks/events/1/replay"),
    ];
    for (method, path) in paths {
        for token in [None, Some("wrong-token"), Some("")] {
            let mut request = app
                .http
                .request(method.clone(), app.url(path))
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    assert_eq!(
        get_account(&app, 1001).await["is_active"],
        true,
        "nothing changed"
    );
    app.stop().await;
}

async fn unknown_accounts_are_404_and_duplicates_409(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[("sync.sync_on_create", "false")]).await;
    for (method, path) in [
        (Method::GET, "/api/v1/hostaway/accounts/4242"),
        (Method::DELETE, "/api/v1/hostaway/accounts/4242"),
        (Method::POST, "/api/v1/hostaway/accounts/4242/sync"),
        (Method::POST, "/api/v1/hostaway/accounts/4242/replay-failed"),
    ] {
        let response = app.admin(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
    }
    let response = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/4242")
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    create_account(&app, 1001, "secret").await;
    let again = app
        .admin(Method::POST, "/api/v1/hostaway/accounts")
        .json(&json!({"account_id": 1001, "client_secret": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let unknown_route = app
        .admin(Method::GET, "/api/v1/nothing-here")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_route.status(), 404);
    let body: Value = unknown_route.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}

async fn patch_updates_fields_and_a_new_secret_drops_the_cached_token(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[]).await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    let tokens_before = app.sim().state().stats().tokens_issued;
    let customer = "5f0c8d9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
    let response = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"customer_id": customer, "client_secret": "secret", "ignored_events": ["message.received"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["customer_id"], customer);
    assert_eq!(body["ignored_events"], json!(["message.received"]));
    let response = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=incremental",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_for(
        "a new token after the secret changed",
        std::time::Duration::from_secs(20),
        || async { (app.sim().state().stats().tokens_issued > tokens_before).then_some(()) },
    )
    .await;
    app.stop().await;
}

async fn soft_and_hard_delete(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[]).await;
    create_account(&app, 1001, "secret").await;
    wait_synced(&app, 1001).await;
    let response = app
        .admin(Method::DELETE, "/api/v1/hostaway/accounts/1001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["is_active"], false);
    assert_eq!(body["status"], "inactive");
    assert_eq!(
        body["counts"]["reservations"], 12,
        "soft delete keeps the data"
    );
    let delivery = app
        .deliver(&json!({"event": "reservation.updated", "accountId": 1001, "data": {"id": 1, "listingMapId": 2}}))
        .await;
    assert_eq!(
        delivery.status(),
        404,
        "webhooks for an inactive account are refused"
    );
    let response = app
        .admin(Method::POST, "/api/v1/hostaway/accounts/1001/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "an inactive account cannot sync");

    let response = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"is_active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(get_account(&app, 1001).await["status"], "active");

    let response = app
        .admin(Method::DELETE, "/api/v1/hostaway/accounts/1001?hard=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .admin(Method::GET, "/api/v1/hostaway/accounts/1001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        entities::reservation::Entity::find()
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        entities::message_thread::Entity::find()
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        entities::listing::Entity::find()
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    app.stop().await;
}

async fn sync_endpoint_accepts_modes_and_dry_runs(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    let response = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=full&dry_run=true",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "accepted", "account_id": 1001, "mode": "full", "dry_run": true})
    );
    wait_for(
        "the dry run to read the conversations",
        std::time::Duration::from_secs(20),
        || async {
            let stats = app.sim().state().stats();
            (stats
                .requests
                .get("GET /v1/conversations/{id}/messages")
                .copied()
                .unwrap_or(0)
                >= 6)
                .then_some(())
        },
    )
    .await;
    let account = get_account(&app, 1001).await;
    assert_eq!(
        account["counts"]["reservations"], 0,
        "a dry run writes nothing"
    );
    assert!(account["last_sync_at"].is_null());
    let response = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=full",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let synced = wait_synced(&app, 1001).await;
    assert_eq!(synced["counts"]["reservations"], 12);
    app.stop().await;
}

async fn secrets_are_checked_with_hostaway_before_they_are_stored(backend: Backend) {
    let mut app = app_with_sim(backend, SMALL, &[("sync.sync_on_create", "false")]).await;
    let post = |body: Value, query: &'static str| {
        let request = app
            .admin(Method::POST, &format!("/api/v1/hostaway/accounts{query}"))
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    // A secret Hostaway refuses: 422, nothing stored.
    let refused = post(json!({"account_id": 1001, "client_secret": "wrong"}), "").await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "credentials_refused", "{body}");
    assert!(
        !body.to_string().contains("wrong"),
        "the secret is not echoed: {body}"
    );
    let missing = app
        .admin(Method::GET, "/api/v1/hostaway/accounts/1001")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404, "nothing was stored");
    create_account(&app, 1001, "secret").await;
    // A new secret is checked too; a refused one leaves the old in place.
    let patch = app
        .admin(Method::PATCH, "/api/v1/hostaway/accounts/1001")
        .json(&json!({"client_secret": "also-wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 422);
    let run = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=full",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 202);
    let synced = wait_synced(&app, 1001).await;
    assert_eq!(
        synced["last_error"],
        Value::Null,
        "the old secret still works"
    );
    // Hostaway unreachable: 503 with the way out, and ?verify=false stores.
    app.sim().stop().await;
    let unreachable = post(json!({"account_id": 1002, "client_secret": "x"}), "").await;
    assert_eq!(unreachable.status(), 503);
    let body: Value = unreachable.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("verify=false"),
        "{body}"
    );
    let stored = post(
        json!({"account_id": 1002, "client_secret": "x"}),
        "?verify=false",
    )
    .await;
    assert_eq!(stored.status(), 201);
    app.stop().await;
}
