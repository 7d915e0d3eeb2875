//! The inbox's status indexes cover only the rows they are for: pending
//! rows (`idx_webhook_events_pending`, the actors' scans) and dead letters
//! (`idx_webhook_events_failed`). In steady state almost every row is
//! processed, so these stay small, and settling a row (pending →
//! processed) adds no entry to either: on PostgreSQL an update that changes
//! an indexed column writes a new entry into every index the new row
//! version belongs to, and the old full `(account_id, status, id)` and
//! `(status, received_at)` indexes took two per settled event. Pruning by
//! age reads `received_at` through a BRIN index on PostgreSQL (a few pages
//! for the whole table, cheap to keep up) and a plain index on SQLite
//! (where an update touches only the indexes of the columns it changes).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for statement in statements {
        manager
            .get_connection()
            .execute_unprepared(statement)
            .await?;
    }
    Ok(())
}

const PARTIAL: [&str; 2] = [
    "CREATE INDEX IF NOT EXISTS idx_webhook_events_pending ON webhook_events (account_id, id) \
     WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS idx_webhook_events_failed ON webhook_events (account_id, id) \
     WHERE status = 'failed'",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &PARTIAL).await?;
        let received = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "CREATE INDEX IF NOT EXISTS idx_webhook_events_received ON webhook_events \
                 USING brin (received_at)"
            }
            _ => {
                "CREATE INDEX IF NOT EXISTS idx_webhook_events_received ON webhook_events \
                 (received_at)"
            }
        };
        run(
            manager,
            &[
                received,
                "DROP INDEX IF EXISTS idx_webhook_events_account_status",
                "DROP INDEX IF EXISTS idx_webhook_events_status_received",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &[
                "CREATE INDEX IF NOT EXISTS idx_webhook_events_account_status ON webhook_events \
                 (account_id, status, id)",
                "CREATE INDEX IF NOT EXISTS idx_webhook_events_status_received ON webhook_events \
                 (status, received_at)",
                "DROP INDEX IF EXISTS idx_webhook_events_received",
                "DROP INDEX IF EXISTS idx_webhook_events_failed",
                "DROP INDEX IF EXISTS idx_webhook_events_pending",
            ],
        )
        .await
    }
}
