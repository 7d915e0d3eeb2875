//! Chores that run once per cluster, not once per replica (inbox pruning):
//! one row per chore with when it last ran; a replica runs it only after
//! claiming the row (`store::leases::claim_chore`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ClusterChores {
    Table,
    Chore,
    LastRunAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterChores::Table)
                    .if_not_exists()
                    .col(string(ClusterChores::Chore).primary_key())
                    .col(timestamp_with_time_zone(ClusterChores::LastRunAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ClusterChores::Table).to_owned())
            .await
    }
}
