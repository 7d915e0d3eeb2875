//! A listing (property) as Hostaway returned it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "listings")]
pub struct Model {
    /// The key is `(account_id, id)`: Hostaway ids are unique in practice,
    /// but a row belongs to exactly one account whatever ids are sent.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub customer_id: Option<Uuid>,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw_payload: Json,
    /// Set when the listing disappeared from Hostaway or a `listing.deleted` arrived.
    pub deleted_at: Option<DateTimeUtc>,
    /// The version this state was written with (see `store::version`): the
    /// listing's own timestamp, clamped, and when the service observed it.
    pub source_updated_at: Option<DateTimeUtc>,
    pub source_seen_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
