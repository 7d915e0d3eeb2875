//! `/health`, `/ready` and `/metrics` on a running service.

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    health_ready_and_metrics_answer,
    ready_reports_503_when_the_database_is_gone
);

async fn health_ready_and_metrics_answer(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );

    let ready = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["actors"], "ok");
    for actor in [
        "ingest",
        "router",
        "registrar",
        "scheduler",
        "listing_writer",
        "reservation_writer",
        "message_thread_writer",
    ] {
        assert_eq!(body["actors"][actor], "ok", "{actor} in {body}");
    }

    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    let text = metrics.text().await.unwrap();
    assert!(text.contains("# TYPE sync_hostaway_inbox_events gauge"));
    assert!(text.contains("sync_hostaway_inbox_events{status=\"pending\"} 0"));
    app.stop().await;
}

async fn ready_reports_503_when_the_database_is_gone(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.db.close_by_ref().await.unwrap();
    let ready = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    assert_eq!(
        body["checks"]["database"], "unreachable",
        "which check failed, never the database's own error text"
    );
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );
    app.stop().await;
}

/// A method a path does not serve: a JSON 405 naming the methods it does.
#[actix_web::test]
async fn a_wrong_method_gets_405_with_allow() {
    let mut app = spawn_app(Backend::Sqlite).await;
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/health", "GET"),
        (reqwest::Method::GET, "/api/v1/hostaway/webhooks", "POST"),
        (
            reqwest::Method::PUT,
            "/api/v1/hostaway/accounts",
            "GET, POST",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/hostaway/accounts/1",
            "GET, PATCH, DELETE",
        ),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
    let missing = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}
