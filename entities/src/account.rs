//! A Hostaway account the service mirrors. Secrets are stored encrypted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    pub customer_id: Option<Uuid>,
    /// Encrypted (`v1:` + base64); never returned by the API.
    pub client_secret: String,
    /// Encrypted access token, when one was issued.
    pub access_token: Option<String>,
    pub token_expires_at: Option<DateTimeUtc>,
    pub webhook_id: Option<i64>,
    pub webhook_login: Option<String>,
    /// Encrypted.
    pub webhook_password: Option<String>,
    pub is_active: bool,
    pub last_sync_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The outcome of the latest sync, or that one runs.
    pub sync_state: SyncState,
    pub last_error: Option<String>,
    /// JSON array of event types this account ignores.
    #[sea_orm(column_type = "JsonBinary")]
    pub ignored_events: Json,
    pub webhook_status: WebhookStatus,
    pub webhook_error: Option<String>,
    /// Credentials being rotated in: accepted while Hostaway is updated.
    pub webhook_pending_login: Option<String>,
    pub webhook_pending_password: Option<String>,
    /// Credentials rotated out: accepted until `webhook_previous_until`.
    pub webhook_previous_login: Option<String>,
    pub webhook_previous_password: Option<String>,
    pub webhook_previous_until: Option<DateTimeUtc>,
    /// A running sync's progress (`sync::progress::Snapshot`), else `NULL`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub sync_progress: Option<Json>,
}

/// `sync_state`: stored as its lower-case name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    #[sea_orm(string_value = "idle")]
    Idle,
    #[sea_orm(string_value = "syncing")]
    Syncing,
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// `webhook_status`: where the account's subscription at Hostaway stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// Subscribed and matching what the service expects.
    #[sea_orm(string_value = "registered")]
    Registered,
    /// Not (yet) reconciled, or being changed.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The last attempt failed; retried with backoff.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Disabled at Hostaway (the account is inactive).
    #[sea_orm(string_value = "disabled")]
    Disabled,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
