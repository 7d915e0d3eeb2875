//! The OpenAPI description: served equal to docs/openapi.json, 3.1, every
//! route the service serves described with exactly its methods, and live
//! answers valid against the schemas it gives for them.

use reqwest::Method;
use serde_json::{Value, json};
use sync_hostaway::http::ROUTES;

use crate::accounts::{app_with_sim, create_account};
use crate::helpers::{Backend, TestApp};

const DATASET: hostaway_sim::DatasetSize = hostaway_sim::DatasetSize {
    listings: 2,
    reservations: 3,
    conversations: 2,
    messages_per_conversation: 1,
};

fn checked_in() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap()
}

/// The validator of `#/components/schemas/{name}` of `doc`.
fn schema(doc: &Value, name: &str) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&root).expect("the schemas compile")
}

/// Validates `instance` against `#/components/schemas/{name}` of `doc`.
fn assert_matches_schema(doc: &Value, name: &str, instance: &Value) {
    let validator = schema(doc, name);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance:#}");
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.admin(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[actix_web::test]
async fn the_description_is_checked_in_covers_every_route_and_matches_the_answers() {
    let mut app = app_with_sim(
        Backend::Sqlite,
        DATASET,
        &[("sync.sync_on_create", "false")],
    )
    .await;
    let served = crate::helpers::http_client()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served = served.text().await.unwrap();
    assert!(
        served == checked_in(),
        "docs/openapi.json is stale: regenerate it with \
         `cargo run -- openapi > docs/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    // Exactly the served routes and methods.
    let described: Vec<(String, Vec<String>)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect();
    let mut routes: Vec<(String, Vec<String>)> = ROUTES
        .iter()
        .map(|(path, allow)| {
            let mut methods: Vec<String> = allow.split(", ").map(str::to_string).collect();
            methods.sort();
            (path.to_string(), methods)
        })
        .collect();
    routes.sort();
    assert_eq!(described, routes);

    // The routing agrees with ROUTES: a method it lists is served, others get 405.
    for (path, allow) in ROUTES {
        let concrete = path.replace("{id}", "999999");
        for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            let response = app
                .admin(Method::from_bytes(method.as_bytes()).unwrap(), &concrete)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let listed = allow.split(", ").any(|m| m == method);
            if listed {
                assert_ne!(response.status(), 405, "{method} {path}");
            } else {
                assert_eq!(response.status(), 405, "{method} {path}");
                assert_eq!(response.headers()["allow"], *allow, "{method} {path}");
            }
        }
    }

    // Live answers against the schemas the description gives for them.
    assert!(
        !schema(&doc, "Account").is_valid(&json!({"account_id": 1})),
        "the check can fail"
    );
    let created = create_account(&app, 1001, "secret").await;
    assert_matches_schema(&doc, "Account", &created);
    let (status, account) = call(&app, Method::GET, "/api/v1/hostaway/accounts/1001", None).await;
    assert_eq!(status, 200);
    assert_matches_schema(&doc, "Account", &account);
    let (_, list) = call(&app, Method::GET, "/api/v1/hostaway/accounts", None).await;
    assert_matches_schema(&doc, "AccountList", &list);
    let (status, finished) = call(
        &app,
        Method::POST,
        "/api/v1/hostaway/accounts/1001/sync?mode=full&wait=true",
        None,
    )
    .await;
    assert_eq!(status, 200, "{finished}");
    assert_matches_schema(&doc, "SyncFinished", &finished);
    let (status, queued) = call(
        &app,
        Method::POST,
        "/api/v1/hostaway/accounts/1001/sync",
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_matches_schema(&doc, "SyncAccepted", &queued);
    let (_, events) = call(&app, Method::GET, "/api/v1/hostaway/webhooks/events", None).await;
    assert_matches_schema(&doc, "EventsPage", &events);
    let (_, cluster) = call(&app, Method::GET, "/api/v1/hostaway/cluster", None).await;
    assert_matches_schema(&doc, "ClusterStatus", &cluster);
    let (_, requeued) = call(
        &app,
        Method::POST,
        "/api/v1/hostaway/accounts/1001/replay-failed",
        None,
    )
    .await;
    assert_matches_schema(&doc, "Requeued", &requeued);
    let (status, ready) = call(&app, Method::GET, "/ready", None).await;
    assert_eq!(status, 200);
    assert_matches_schema(&doc, "Readiness", &ready);
    let (_, health) = call(&app, Method::GET, "/health", None).await;
    assert_matches_schema(&doc, "Health", &health);

    // Errors, and requests: what the schemas refuse the handlers refuse.
    let unknown_field = json!({"account_id": 1002, "client_secret": "s", "colour": 1});
    let (status, error) = call(
        &app,
        Method::POST,
        "/api/v1/hostaway/accounts",
        Some(unknown_field),
    )
    .await;
    assert_eq!(status, 400);
    assert_matches_schema(&doc, "Error", &error);
    let (status, error) = call(
        &app,
        Method::PATCH,
        "/api/v1/hostaway/accounts/1001",
        Some(json!({"ignored_events": ["reservation.updatd"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("reservation.updated"),
        "the known names are listed: {error}"
    );
    let (status, error) = call(&app, Method::GET, "/api/v1/hostaway/accounts/0", None).await;
    assert_eq!(status, 400);
    assert_matches_schema(&doc, "Error", &error);
    let patched = json!({"ignored_events": ["listing.updated"], "customer_id": null});
    let (status, account) = call(
        &app,
        Method::PATCH,
        "/api/v1/hostaway/accounts/1001",
        Some(patched),
    )
    .await;
    assert_eq!(status, 200);
    assert_matches_schema(&doc, "Account", &account);
    app.stop().await;
}
