//! All guest messages of one reservation, oldest first, exactly as Hostaway
//! sent them. No foreign key to reservations: a message may arrive first.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "message_threads")]
pub struct Model {
    /// Keyed by `(account_id, reservation_id)`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub reservation_id: i64,
    pub customer_id: Option<Uuid>,
    pub conversation_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw_messages: Json,
    pub last_message_at: Option<DateTimeUtc>,
    /// When the newest state written to the thread was observed (breaks ties
    /// between message versions with the same timestamp).
    pub source_seen_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
