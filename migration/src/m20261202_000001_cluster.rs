//! The cluster's coordination tables (PostgreSQL is the only engine): one
//! heartbeat row per live replica, and one lease per account naming the
//! replica that owns it, the fencing epoch of that ownership (raised on every
//! change of owner) and when it expires. Created on SQLite too, where they
//! stay empty (SQLite runs one process).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ClusterReplicas {
    Table,
    ReplicaId,
    StartedAt,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum AccountLeases {
    Table,
    AccountId,
    Owner,
    Epoch,
    AcquiredAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterReplicas::Table)
                    .if_not_exists()
                    .col(string(ClusterReplicas::ReplicaId).primary_key())
                    .col(timestamp_with_time_zone(ClusterReplicas::StartedAt))
                    .col(timestamp_with_time_zone(ClusterReplicas::HeartbeatAt))
                    .to_owned(),
            )
            .await?;
        // No foreign key to accounts: a lease may outlive a deleted account
        // for one renewal, and must never block the delete.
        manager
            .create_table(
                Table::create()
                    .table(AccountLeases::Table)
                    .if_not_exists()
                    .col(big_integer(AccountLeases::AccountId).primary_key())
                    .col(string(AccountLeases::Owner))
                    .col(big_integer(AccountLeases::Epoch))
                    .col(timestamp_with_time_zone(AccountLeases::AcquiredAt))
                    .col(timestamp_with_time_zone(AccountLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_account_leases_owner")
                    .table(AccountLeases::Table)
                    .col(AccountLeases::Owner)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccountLeases::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterReplicas::Table).to_owned())
            .await
    }
}
