//! A reservation. `listing_id` has no foreign key: a reservation may arrive
//! before its listing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reservations")]
pub struct Model {
    /// Keyed by `(account_id, id)`, like every entity table.
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub customer_id: Option<Uuid>,
    pub listing_id: i64,
    pub status: Option<String>,
    pub arrival_date: Option<Date>,
    pub departure_date: Option<Date>,
    /// Hostaway's `updatedOn` (or `latestActivityOn`), clamped when far in
    /// the future, and when the service observed this state: together the
    /// version (`store::version`); an older one never replaces a newer one.
    pub source_updated_at: Option<DateTimeUtc>,
    pub source_seen_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw_payload: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
