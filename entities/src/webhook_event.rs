//! The webhook inbox: every accepted delivery, written before it is acknowledged.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub event_type: String,
    pub object_type: Option<String>,
    pub dedupe_key: String,
    /// The object the event is about (`reservation:123`): a delivery equal to
    /// the latest stored event of its object is a redelivery.
    pub entity_key: Option<String>,
    /// `json` on PostgreSQL (the text as received; see the migration
    /// `m20261204_000001_inbox_payload_text`), text on SQLite.
    #[sea_orm(column_type = "Json")]
    pub payload: Json,
    /// `pending`, `processed`, `failed` (dead letter) or `ignored`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    /// W3C traceparent of the delivery that stored this row.
    pub traceparent: Option<String>,
    pub received_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
