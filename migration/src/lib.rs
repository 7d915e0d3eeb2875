//! Migrations for PostgreSQL and SQLite. On PostgreSQL the connection's
//! search_path selects the schema, so every statement here is schema-agnostic.

#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_create_tables;
mod m20261201_000001_tenant_keys;
mod m20261202_000001_cluster;
mod m20261202_000002_chores;
mod m20261203_000001_sync_progress;
mod m20261204_000001_inbox_payload_text;
mod m20261207_000001_inbox_partial_indexes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_tables::Migration),
            Box::new(m20261201_000001_tenant_keys::Migration),
            Box::new(m20261202_000001_cluster::Migration),
            Box::new(m20261202_000002_chores::Migration),
            Box::new(m20261203_000001_sync_progress::Migration),
            Box::new(m20261204_000001_inbox_payload_text::Migration),
            Box::new(m20261207_000001_inbox_partial_indexes::Migration),
        ]
    }
}
