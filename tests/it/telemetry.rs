//! Observability: an in-process OTLP receiver captures exported spans and a
//! capture writer keeps every log line, for the whole test binary (the
//! tracing subscriber is process-wide). Tests find their own spans by ids
//! only they use.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sync_hostaway::config::{Environment, LoadOptions, Settings};
use sync_hostaway::telemetry::Telemetry;
pub use test_support::CapturedSpan;
use test_support::OtlpReceiver;
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::{
    AppOptions, Backend, TestApp, config_dir, fixture, sim_config, spawn_with, wait_for,
};
use crate::webhooks::wait_settled;

/// What the process-wide telemetry captured.
pub struct Capture {
    receiver: OtlpReceiver,
    logs: Arc<Mutex<Vec<u8>>>,
    telemetry: Telemetry,
}

impl Capture {
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.receiver.spans()
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap()).into_owned()
    }

    /// Exports what is queued, then waits for `find` to see it.
    pub async fn wait_spans<T>(
        &self,
        what: &str,
        find: impl Fn(&[CapturedSpan]) -> Option<T>,
    ) -> T {
        wait_for(what, Duration::from_secs(20), || async {
            self.telemetry.flush().await;
            find(&self.spans())
        })
        .await
    }
}

/// Starts (once) the OTLP receiver on its own thread and installs the global
/// subscriber exporting to it, with JSON logs into a buffer.
pub fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let receiver = OtlpReceiver::start();
        let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
        let settings = Settings::load_with(LoadOptions {
            config_dir: Some(config_dir()),
            environment: Some(Environment::Test),
            env_vars: Some(HashMap::new()),
            overrides: vec![
                ("telemetry.otlp_endpoint".into(), receiver.endpoint()),
                (
                    "telemetry.log_filter".into(),
                    "info,sqlx=warn,actix_server=warn".into(),
                ),
                ("telemetry.log_format".into(), "json".into()),
            ],
        })
        .expect("settings");
        let writer = BufferWriter(logs.clone());
        let telemetry = sync_hostaway::telemetry::init_with_writer(
            &settings.telemetry,
            Environment::Test,
            writer,
        )
        .expect("telemetry installs");
        Capture {
            receiver,
            logs,
            telemetry,
        }
    })
}

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Distinctive secrets, so a scan cannot mistake ordinary words for them.
const CLIENT_SECRET: &str = "Cl1ent-S3cret-7f9a2d";
const WEBHOOK_PASSWORD: &str = "W3bhook-Pa55-c81e";
const ADMIN_TOKEN: &str = "Adm1n-T0ken-44b0";

async fn traced_app(account_id: i64, overrides: &[(&str, &str)]) -> TestApp {
    capture();
    let mut config = sim_config(hostaway_sim::DatasetSize {
        listings: 2,
        reservations: 6,
        conversations: 3,
        messages_per_conversation: 2,
    });
    config.accounts = vec![hostaway_sim::SimAccount {
        account_id,
        client_secret: CLIENT_SECRET.into(),
    }];
    let mut all = vec![
        ("webhooks.password", WEBHOOK_PASSWORD),
        ("admin.api_token", ADMIN_TOKEN),
        ("sync.sync_on_create", "false"),
    ];
    all.extend_from_slice(overrides);
    spawn_with(
        Backend::Sqlite,
        AppOptions {
            sim: Some(config),
            overrides: &all,
            public_url: true,
        },
    )
    .await
}

async fn add_account(app: &TestApp, account_id: i64) {
    let response = app
        .http
        .post(app.url("/api/v1/hostaway/accounts"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"account_id": account_id, "client_secret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

fn reservation_body(account_id: i64, reservation_id: i64) -> Value {
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = json!(account_id);
    body["data"]["id"] = json!(reservation_id);
    body["data"]["hostawayReservationId"] = json!(reservation_id);
    body
}

async fn deliver(app: &TestApp, body: &Value, traceparent: Option<&str>) -> Value {
    let mut request = app
        .http
        .post(app.url("/api/v1/hostaway/webhooks"))
        .basic_auth("hostaway", Some(WEBHOOK_PASSWORD))
        .json(body);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn in_trace(spans: &[CapturedSpan], trace_id: &str) -> Vec<CapturedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

fn parent_of<'a>(spans: &'a [CapturedSpan], span: &CapturedSpan) -> Option<&'a CapturedSpan> {
    let parent = span.parent_span_id.as_deref()?;
    spans.iter().find(|s| s.span_id == parent)
}

/// The chain of span names from `span` up to the root.
fn ancestry(spans: &[CapturedSpan], span: &CapturedSpan) -> Vec<String> {
    let mut names = vec![span.name.clone()];
    let mut current = span;
    while let Some(parent) = parent_of(spans, current) {
        names.push(parent.name.clone());
        current = parent;
    }
    names
}

#[actix_web::test]
async fn a_webhook_is_one_trace_from_http_through_the_actors_to_sql() {
    let account_id = 880_001;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    let accepted = deliver(&app, &reservation_body(account_id, 42), None).await;
    let event_id = accepted["event_id"].as_i64().unwrap().to_string();
    wait_settled(&app.db).await;
    let capture = capture();
    let apply = capture
        .wait_spans("the apply span", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == "account.apply"
                        && s.attr("inbox.event_id") == Some(event_id.as_str())
                        && s.attr("hostaway.account_id") == Some(account_id.to_string().as_str())
                })
                .cloned()
        })
        .await;
    let trace = capture
        .wait_spans("the writer and SQL spans", |spans| {
            let trace = in_trace(spans, &apply.trace_id);
            let has_sql = trace.iter().any(|s| s.name.starts_with("sea_orm."));
            let has_writer = trace.iter().any(|s| s.name == "writer.upsert");
            (has_sql && has_writer).then_some(trace)
        })
        .await;
    let names: BTreeSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "POST /api/v1/hostaway/webhooks",
        "inbox.append",
        "inbox.commit",
        "account.apply",
        "writer.upsert",
    ] {
        assert!(names.contains(expected), "missing {expected} in {names:?}");
    }
    assert!(trace.len() >= 5);
    let actors: BTreeSet<&str> = trace.iter().filter_map(|s| s.attr("actor")).collect();
    assert!(
        actors.contains("ingest") && actors.contains("reservation_writer"),
        "{actors:?}"
    );
    // Parent links: writer ← apply ← append ← HTTP.
    let writer = trace.iter().find(|s| s.name == "writer.upsert").unwrap();
    assert_eq!(
        ancestry(&trace, writer),
        vec![
            "writer.upsert",
            "account.apply",
            "inbox.append",
            "POST /api/v1/hostaway/webhooks"
        ]
    );
    let sql = trace
        .iter()
        .find(|s| s.name.starts_with("sea_orm."))
        .unwrap();
    assert!(ancestry(&trace, sql).ends_with(&["POST /api/v1/hostaway/webhooks".to_string()]));
    let root = trace
        .iter()
        .find(|s| s.name == "POST /api/v1/hostaway/webhooks")
        .unwrap();
    assert_eq!(root.attr("http.request.method"), Some("POST"));
    assert_eq!(root.attr("http.route"), Some("/api/v1/hostaway/webhooks"));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));
    assert_eq!(
        root.attr("hostaway.account_id"),
        Some(account_id.to_string().as_str())
    );
    assert_eq!(root.attr("hostaway.event"), Some("reservation.updated"));
    assert_eq!(
        root.resource.get("service.name").map(String::as_str),
        Some("sync-hostaway")
    );
    assert_eq!(
        root.resource
            .get("deployment.environment")
            .map(String::as_str),
        Some("test")
    );
    assert!(root.resource.contains_key("service.version"));
    assert_eq!(apply.attr("hostaway.event"), Some("reservation.updated"));
    // JSON logs of the request carry its trace id.
    app.stop().await;
}

#[actix_web::test]
async fn an_incoming_traceparent_becomes_the_parent() {
    let account_id = 880_002;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    deliver(
        &app,
        &reservation_body(account_id, 43),
        Some(&format!("00-{trace_id}-{parent}-01")),
    )
    .await;
    let root = capture()
        .wait_spans("the request span", |spans| {
            spans
                .iter()
                .find(|s| s.trace_id == trace_id && s.name == "POST /api/v1/hostaway/webhooks")
                .cloned()
        })
        .await;
    assert_eq!(root.parent_span_id.as_deref(), Some(parent));

    // A log line written while the request is handled carries its trace
    // and span ids (an event type the service does not handle is logged
    // as stored-but-ignored inside the request span).
    let other_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let ignored = json!({"event": "task.created", "accountId": account_id, "data": {"id": 5}});
    deliver(
        &app,
        &ignored,
        Some(&format!("00-{other_trace}-{parent}-01")),
    )
    .await;
    let line = wait_for("the log line", Duration::from_secs(10), || async {
        capture().logs().lines().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            (value["message"] == "webhook stored as ignored"
                && value["account_id"] == json!(account_id))
            .then_some(value)
        })
    })
    .await;
    assert_eq!(line["trace_id"], json!(other_trace), "{line}");
    let request = capture()
        .wait_spans("the second request span", |spans| {
            spans
                .iter()
                .find(|s| s.trace_id == other_trace && s.name == "POST /api/v1/hostaway/webhooks")
                .cloned()
        })
        .await;
    assert_eq!(line["span_id"], json!(request.span_id), "{line}");
    app.stop().await;
}

#[actix_web::test]
async fn an_event_replayed_after_a_restart_links_to_its_original_trace() {
    let account_id = 880_003;
    let app = traced_app(
        account_id,
        &[
            ("faults.fail_on_reservation_ids", "4646"),
            ("webhooks.max_attempts", "1"),
        ],
    )
    .await;
    add_account(&app, account_id).await;
    let accepted = deliver(&app, &reservation_body(account_id, 4646), None).await;
    let event_id = accepted["event_id"].as_i64().unwrap();
    let capture = capture();
    let original = capture
        .wait_spans("the request span", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == "POST /api/v1/hostaway/webhooks"
                        && s.attr("inbox.event_id") == Some(event_id.to_string().as_str())
                        && s.attr("hostaway.account_id") == Some(account_id.to_string().as_str())
                })
                .cloned()
        })
        .await;
    wait_settled(&app.db).await;
    let mut app = app
        .restart(&[
            ("webhooks.password", WEBHOOK_PASSWORD),
            ("admin.api_token", ADMIN_TOKEN),
            ("sync.sync_on_create", "false"),
            ("webhooks.public_base_url", "public"),
        ])
        .await;
    let response = app
        .http
        .post(app.url(&format!(
            "/api/v1/hostaway/webhooks/events/{event_id}/replay"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_settled(&app.db).await;
    let applies = capture
        .wait_spans("the successful apply after the replay", |spans| {
            let applies: Vec<CapturedSpan> = spans
                .iter()
                .filter(|s| {
                    s.name == "account.apply"
                        && s.attr("inbox.event_id") == Some(event_id.to_string().as_str())
                        && s.attr("hostaway.account_id") == Some(account_id.to_string().as_str())
                })
                .cloned()
                .collect();
            (applies.len() >= 2).then_some(applies)
        })
        .await;
    assert!(
        applies.iter().all(|s| s.trace_id == original.trace_id),
        "every attempt, before and after the restart, is in the delivery's trace: {:?} vs {:?}",
        applies
            .iter()
            .map(|s| (&s.trace_id, &s.parent_span_id))
            .collect::<Vec<_>>(),
        original.trace_id
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_sync_is_one_trace_with_a_span_per_hostaway_request() {
    let account_id = 880_004;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    crate::sync::run_sync(&app, account_id, sync_hostaway::sync::SyncMode::Full).await;
    let capture = capture();
    let (root, trace) = capture
        .wait_spans("the sync trace", |spans| {
            let root = spans
                .iter()
                .find(|s| {
                    s.name == "sync.run"
                        && s.attr("hostaway.account_id") == Some(account_id.to_string().as_str())
                })?
                .clone();
            let trace = in_trace(spans, &root.trace_id);
            trace
                .iter()
                .any(|s| s.name == "writer.upsert")
                .then_some((root, trace))
        })
        .await;
    assert_eq!(
        root.parent_span_id, None,
        "a sync run is a trace of its own"
    );
    let requests: Vec<&CapturedSpan> = trace
        .iter()
        .filter(|s| s.attr("url.template").is_some_and(|t| t.contains("/v1/")))
        .collect();
    assert!(
        requests.len() >= 6,
        "listings, reservations, conversations, 3 × messages"
    );
    for request in &requests {
        assert!(request.attr("http.request.method").is_some());
        assert_eq!(request.attr("http.response.status_code"), Some("200"));
        assert!(request.attr("hostaway.attempt").is_some());
    }
    let fetches: BTreeSet<&str> = trace
        .iter()
        .filter(|s| s.name.starts_with("sync.fetch"))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(fetches.len(), 4, "{fetches:?}");
    app.stop().await;
}

/// `POST .../sync` answers 202 while the sync may wait behind another: its
/// request span must end (and be exported) when the response is sent, not
/// when the queued sync starts; the sync still joins the request's trace.
#[actix_web::test]
async fn a_queued_sync_does_not_hold_its_request_span_open() {
    let account_id = 880_006;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    // Slow Hostaway down: the first sync runs for seconds.
    app.sim().state().set_faults(hostaway_sim::Faults {
        latency_ms: 500,
        ..hostaway_sim::Faults::default()
    });
    let queued_trace = "5a1e0000000000000000000000880007";
    let route = format!("/api/v1/hostaway/accounts/{account_id}/sync");
    let first_trace = "5a1e0000000000000000000000880006";
    for (trace, mode) in [(first_trace, "full"), (queued_trace, "incremental")] {
        let response = app
            .http
            .post(app.url(&format!("{route}?mode={mode}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let capture = capture();
    let request_name = "POST /api/v1/hostaway/accounts/{id}/sync";
    let account = account_id.to_string();
    // A sync run is a trace of its own, linked to the request that asked.
    let run = |spans: &[CapturedSpan], mode: &str| {
        spans.iter().any(|s| {
            s.name == "sync.run"
                && s.attr("hostaway.account_id") == Some(account.as_str())
                && s.attr("sync.mode") == Some(mode)
        })
    };
    let first_done_when_seen = capture
        .wait_spans("the queued sync's request span", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == queued_trace && s.name == request_name)
                .then(|| run(spans, "full"))
        })
        .await;
    assert!(
        !first_done_when_seen,
        "the queued sync's request span is exported when the 202 is sent, \
         not after the sync ahead of it"
    );
    capture
        .wait_spans("the queued sync to run", |spans| {
            run(spans, "incremental").then_some(())
        })
        .await;
    app.stop().await;
}

#[actix_web::test]
async fn secrets_never_appear_in_spans_or_logs() {
    let account_id = 880_005;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    crate::sync::run_sync(&app, account_id, sync_hostaway::sync::SyncMode::Full).await;
    let account = wait_for("registration", Duration::from_secs(20), || async {
        let account: Value = app
            .http
            .get(app.url(&format!("/api/v1/hostaway/accounts/{account_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (account["webhook"]["status"] == "registered").then_some(account)
    })
    .await;
    deliver(&app, &fixture_message(account_id), None).await;
    let rotate = app
        .http
        .post(app.url(&format!(
            "/api/v1/hostaway/accounts/{account_id}/rotate-webhook-credentials"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 202);
    wait_settled(&app.db).await;
    // A failed admin request logs nothing of the token it was given.
    app.http
        .request(Method::GET, app.url("/api/v1/hostaway/accounts"))
        .bearer_auth("wrong-token-value")
        .send()
        .await
        .unwrap();
    let row = sync_hostaway::store::accounts::find(&app.db, account_id)
        .await
        .unwrap()
        .unwrap();
    let token = app
        .ctx
        .cipher
        .decrypt(row.access_token.as_deref().unwrap())
        .unwrap();
    let hook_password = app.sim().state().webhooks(account_id)[0]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let capture = capture();
    capture.telemetry.flush().await;
    let spans = capture.spans();
    let logs = capture.logs();
    assert!(
        spans
            .iter()
            .any(|s| s.attr("hostaway.account_id") == Some(account_id.to_string().as_str()))
    );
    assert!(
        logs.contains(&account_id.to_string()),
        "this test's logs were captured"
    );
    let everything = format!(
        "{}\n{}\n{}",
        logs,
        spans
            .iter()
            .map(|s| format!("{} {:?}", s.name, s.attributes))
            .collect::<Vec<_>>()
            .join("\n"),
        account
    );
    for (what, secret) in [
        ("client secret", CLIENT_SECRET),
        ("webhook password", WEBHOOK_PASSWORD),
        ("registered webhook password", hook_password.as_str()),
        ("admin token", ADMIN_TOKEN),
        ("access token", token.as_str()),
        ("guest message body", "Could we check in a bit earlier"),
    ] {
        assert!(!everything.contains(secret), "the {what} leaked");
    }
    // Log lines inside a request carry its trace and span ids.
    let with_trace = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["trace_id"].is_string() && l["span_id"].is_string())
        .count();
    assert!(with_trace > 0, "JSON log lines carry trace_id and span_id");
    app.stop().await;
}

fn fixture_message(account_id: i64) -> Value {
    let mut body = fixture("webhook_message_received.json");
    body["accountId"] = json!(account_id);
    body
}

#[actix_web::test]
async fn metrics_are_exposed_and_move_when_work_happens() {
    let account_id = 880_006;
    let mut app = traced_app(account_id, &[]).await;
    add_account(&app, account_id).await;
    crate::sync::run_sync(&app, account_id, sync_hostaway::sync::SyncMode::Full).await;
    deliver(&app, &reservation_body(account_id, 77), None).await;
    deliver(&app, &reservation_body(account_id, 77), None).await;
    wait_settled(&app.db).await;
    let text = app.metrics().await;
    for name in [
        "sync_hostaway_webhooks_received_total",
        "sync_hostaway_webhook_received_to_applied_seconds",
        "sync_hostaway_webhook_events_applied_total",
        "sync_hostaway_webhook_apply_failures_total",
        "sync_hostaway_webhook_dead_letters_total",
        "sync_hostaway_webhook_duplicates_total",
        "sync_hostaway_webhook_ignored_total",
        "sync_hostaway_inbox_events",
        "sync_hostaway_actor_restarts_total",
        "sync_hostaway_accounts_degraded",
        "sync_hostaway_accounts_active",
        "sync_hostaway_sync_runs_total",
        "sync_hostaway_sync_duration_seconds",
        "sync_hostaway_sync_records_total",
        "sync_hostaway_hostaway_requests_total",
        "sync_hostaway_hostaway_request_duration_seconds",
        "sync_hostaway_hostaway_rate_limited_total",
        "sync_hostaway_hostaway_retries_total",
        "sync_hostaway_hostaway_token_refreshes_total",
        "sync_hostaway_db_operation_duration_seconds",
        "sync_hostaway_webhook_registrations_total",
        "sync_hostaway_inbox_pruned_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} is exposed"
        );
    }
    for moved in [
        "sync_hostaway_webhooks_received_total{event=\"reservation.updated\",status=\"200\"} 2",
        "sync_hostaway_webhook_duplicates_total 1",
        "sync_hostaway_webhook_events_applied_total{event=\"reservation.updated\"} 1",
        "sync_hostaway_sync_runs_total{mode=\"full\",outcome=\"ok\"} 1",
        "sync_hostaway_hostaway_token_refreshes_total 1",
        "sync_hostaway_accounts_active 1",
    ] {
        assert!(text.contains(moved), "expected `{moved}` in\n{text}");
    }
    assert!(text.contains(
        "sync_hostaway_webhook_received_to_applied_seconds_count{event=\"reservation.updated\"} 1"
    ));
    assert!(
        text.contains(
            "sync_hostaway_db_operation_duration_seconds_count{operation=\"inbox_append\"}"
        )
    );
    app.stop().await;
}

#[actix_web::test]
async fn the_service_keeps_serving_when_the_collector_is_unreachable() {
    let db = crate::helpers::TestDb::new(Backend::Sqlite);
    let service = crate::process::start(
        &db,
        &[
            // Nothing listens on the discard port: every export fails.
            (
                "SYNC_HOSTAWAY__TELEMETRY__OTLP_ENDPOINT",
                "http://127.0.0.1:9",
            ),
            ("SYNC_HOSTAWAY__TELEMETRY__EXPORT_QUEUE_SIZE", "64"),
            ("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false"),
        ],
    );
    let http = crate::helpers::http_client();
    let response = http
        .post(service.url("/api/v1/hostaway/accounts?verify=false"))
        .bearer_auth("test-admin-token")
        .json(&json!({"account_id": 880_007, "client_secret": "s"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", service.logs.lock().unwrap()));
    assert_eq!(response.status(), 201);
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        let one = std::time::Instant::now();
        let response = http
            .post(service.url("/api/v1/hostaway/webhooks"))
            .basic_auth("hostaway", Some("test-webhook-password"))
            .json(&reservation_body(880_007, 10_000 + i))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        slowest = slowest.max(one.elapsed());
    }
    println!(
        "300 deliveries with the collector down: {:?} in all, slowest {:?}",
        started.elapsed(),
        slowest
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a delivery waited on the exporter: {slowest:?}"
    );
    assert_eq!(
        http.get(service.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
