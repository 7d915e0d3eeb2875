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
    /// `idle`, `syncing` or `failed`: the outcome of the latest sync.
    pub sync_state: String,
    pub last_error: Option<String>,
    /// JSON array of event types this account ignores.
    #[sea_orm(column_type = "JsonBinary")]
    pub ignored_events: Json,
    /// `registered`, `pending`, `failed` or `disabled`.
    pub webhook_status: String,
    pub webhook_error: Option<String>,
    /// Credentials being rotated in: accepted while Hostaway is updated.
    pub webhook_pending_login: Option<String>,
    pub webhook_pending_password: Option<String>,
    /// Credentials rotated out: accepted until `webhook_previous_until`.
    pub webhook_previous_login: Option<String>,
    pub webhook_previous_password: Option<String>,
    pub webhook_previous_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
