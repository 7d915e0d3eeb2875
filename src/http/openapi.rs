//! The OpenAPI 3.1 description of every route, derived from the handlers'
//! `#[utoipa::path]` annotations and the request and response types; served
//! at `GET /api/v1/openapi.json` and checked in as `docs/openapi.json` (a
//! test keeps the two equal and checks that every served route is here).
//! The shapes below are the bodies handlers build with `json!`.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Server};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::events::EventType;
use crate::store::inbox::EventRecord;
use crate::sync::SyncReport;
use crate::sync::progress::Snapshot;

/// An event name the service applies (`ignored_events` accepts only these).
pub struct EventName;

impl PartialSchema for EventName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(EventType::names()))
            .description(Some("An event type the service applies"))
            .into()
    }
}

impl ToSchema for EventName {}

/// The progress fields of an account's `sync` section: there while a sync
/// runs (`SyncProgress`), absent otherwise.
pub struct ProgressFields;

impl PartialSchema for ProgressFields {
    fn schema() -> RefOr<Schema> {
        let mut schema = <Snapshot as PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.clear();
            object.description =
                Some("Present while a sync runs (`SyncProgress`), absent otherwise".into());
        }
        schema
    }
}

impl ToSchema for ProgressFields {}

/// Every error: a stable code and a sentence that names the cause.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Error {
    /// e.g. `invalid_body`, `not_found`, `credentials_refused`.
    error: String,
    message: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `ok`.
    status: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `not ready`.
    status: String,
    /// Each check (`database`, `actors`, `cluster`…): `ok` or what is wrong.
    checks: BTreeMap<String, String>,
    /// Each supervised actor: `ok` or `stopped`.
    actors: BTreeMap<String, String>,
}

/// What a delivery got: stored (`accepted`, or `ignored` when the account
/// ignores its event type), or recognised as a redelivery (`duplicate`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookAck {
    /// `accepted`, `ignored` or `duplicate`.
    status: String,
    /// The inbox id (not for a duplicate).
    event_id: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventsPage {
    /// Newest first.
    events: Vec<EventRecord>,
    /// Pass as `before_id` for the next page; `null` on the last one.
    next_before_id: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventRequeued {
    /// `requeued`.
    status: String,
    event_id: i64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AccountList {
    accounts: Vec<super::accounts::AccountView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SyncAccepted {
    /// `accepted`.
    status: String,
    account_id: i64,
    mode: crate::sync::SyncMode,
    dry_run: bool,
}

/// `?wait=true`: the run's report when this replica ran it; when the
/// replica owning the account ran it, `report` is `null` and `account`
/// shows its outcome.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SyncFinished {
    /// `finished`.
    status: String,
    account_id: i64,
    report: Option<SyncReport>,
    account: Option<super::accounts::AccountView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Requeued {
    /// `requeued`.
    status: String,
    /// Dead letters put back in the inbox.
    requeued: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Rotating {
    /// `rotating`.
    status: String,
    account_id: i64,
}

/// Cluster mode: the replicas, the accounts each holds and lease ages.
/// Without cluster mode: `{"enabled": false}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClusterStatus {
    enabled: bool,
    replica_id: Option<String>,
    lease_secs: Option<u64>,
    heartbeat_secs: Option<u64>,
    /// This replica's ownership settled since the last change.
    settled: Option<bool>,
    #[schema(value_type = Option<Vec<Object>>)]
    replicas: Option<Vec<Value>>,
    /// Active accounts no live replica holds yet.
    unowned_accounts: Option<Vec<i64>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sync-hostaway",
        description = "Keeps a SQL mirror of Hostaway accounts fresh from webhooks and \
                       reconciliation syncs. Admin routes take `Authorization: Bearer \
                       <admin.api_token>`; webhook deliveries take HTTP Basic with the \
                       account's webhook credentials.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        super::health::health,
        super::health::ready,
        super::health::metrics,
        serve,
        super::webhooks::receive,
        super::webhooks::list_events,
        super::webhooks::replay_event,
        super::accounts::list,
        super::accounts::create,
        super::accounts::get_one,
        super::accounts::update,
        super::accounts::remove,
        super::accounts::sync,
        super::accounts::replay_failed,
        super::accounts::rotate_credentials,
        super::cluster::status,
    ),
    components(schemas(
        EventName,
        ProgressFields,
        Snapshot,
        crate::sync::progress::Count,
        crate::sync::progress::Phase,
        crate::store::inbox::EventStatus
    )),
    modifiers(&Security),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "webhooks", description = "Deliveries from Hostaway and the inbox"),
        (name = "accounts", description = "Accounts, syncs, dead letters, credentials"),
        (name = "cluster", description = "Replicas and leases (cluster mode)"),
    )
)]
struct ApiDoc;

/// The security schemes the annotations name.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "webhook",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        openapi.servers = Some(vec![Server::new("/")]);
    }
}

/// The document, with this build's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// This description.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 description of every route", content_type = "application/json"))
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}
