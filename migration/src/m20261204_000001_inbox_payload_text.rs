//! PostgreSQL only: the inbox keeps each delivery's payload as `json` (the
//! text as received, validated) instead of `jsonb`, and its rows are stored
//! uncompressed up to a page (`toast_tuple_target = 8160`). An inbox row is
//! written once, read back at most once and pruned: converting every payload
//! to JSONB (parsing numbers, sorting keys) and compressing it cost the
//! server more than the insert itself. The mirror's own JSON columns stay
//! JSONB. SQLite stores JSON as text already; nothing changes there.
//! Rewrites the inbox table once (it holds only the retention window).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Runs `sql` on PostgreSQL; on SQLite there is nothing to do.
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE webhook_events ALTER COLUMN payload TYPE json USING payload::json; \
             ALTER TABLE webhook_events SET (toast_tuple_target = 8160)",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "ALTER TABLE webhook_events RESET (toast_tuple_target); \
             ALTER TABLE webhook_events ALTER COLUMN payload TYPE jsonb USING payload::jsonb",
        )
        .await
    }
}
