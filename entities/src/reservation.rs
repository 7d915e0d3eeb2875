//! A reservation. `listing_id` has no foreign key: a reservation may arrive
//! before its listing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "reservations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub account_id: i64,
    pub customer_id: Option<Uuid>,
    pub listing_id: i64,
    pub status: Option<String>,
    pub arrival_date: Option<Date>,
    pub departure_date: Option<Date>,
    /// Hostaway's `updatedOn` (or `latestActivityOn`): an older version never
    /// replaces a newer one.
    pub source_updated_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary")]
    pub raw_payload: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
