//! The five tables: accounts, listings, reservations, message_threads and the
//! webhook_events inbox. Entity tables cascade on account delete; reservations
//! and message threads deliberately have no foreign key to their parents, so a
//! webhook for an object whose parent is not mirrored yet is still stored.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    AccountId,
    CustomerId,
    ClientSecret,
    AccessToken,
    TokenExpiresAt,
    WebhookId,
    WebhookLogin,
    WebhookPassword,
    IsActive,
    LastSyncAt,
    CreatedAt,
    UpdatedAt,
    SyncState,
    LastError,
    IgnoredEvents,
    WebhookStatus,
    WebhookError,
    WebhookPendingLogin,
    WebhookPendingPassword,
    WebhookPreviousLogin,
    WebhookPreviousPassword,
    WebhookPreviousUntil,
}

#[derive(DeriveIden)]
enum Listings {
    Table,
    Id,
    AccountId,
    CustomerId,
    RawPayload,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    Id,
    AccountId,
    CustomerId,
    ListingId,
    Status,
    ArrivalDate,
    DepartureDate,
    SourceUpdatedAt,
    RawPayload,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MessageThreads {
    Table,
    ReservationId,
    AccountId,
    CustomerId,
    ConversationId,
    RawMessages,
    LastMessageAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    AccountId,
    EventType,
    ObjectType,
    DedupeKey,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    Traceparent,
    ReceivedAt,
    ProcessedAt,
}

fn account_fk<T: IntoIden + 'static>(table: T, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from_tbl(table)
        .from_col(Alias::new("account_id"))
        .to_tbl(Accounts::Table)
        .to_col(Accounts::AccountId)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index<T: IntoIden + 'static>(name: &str, table: T, columns: &[&str]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table).if_not_exists();
    for column in columns {
        stmt.col(Alias::new(*column));
    }
    stmt.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(big_integer(Accounts::AccountId).primary_key())
                    .col(uuid_null(Accounts::CustomerId))
                    .col(text(Accounts::ClientSecret))
                    .col(text_null(Accounts::AccessToken))
                    .col(timestamp_with_time_zone_null(Accounts::TokenExpiresAt))
                    .col(big_integer_null(Accounts::WebhookId))
                    .col(string_null(Accounts::WebhookLogin))
                    .col(text_null(Accounts::WebhookPassword))
                    .col(boolean(Accounts::IsActive).default(true))
                    .col(timestamp_with_time_zone_null(Accounts::LastSyncAt))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .col(string(Accounts::SyncState).default("idle"))
                    .col(text_null(Accounts::LastError))
                    .col(json_binary(Accounts::IgnoredEvents))
                    .col(string(Accounts::WebhookStatus).default("pending"))
                    .col(text_null(Accounts::WebhookError))
                    .col(string_null(Accounts::WebhookPendingLogin))
                    .col(text_null(Accounts::WebhookPendingPassword))
                    .col(string_null(Accounts::WebhookPreviousLogin))
                    .col(text_null(Accounts::WebhookPreviousPassword))
                    .col(timestamp_with_time_zone_null(
                        Accounts::WebhookPreviousUntil,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Listings::Table)
                    .if_not_exists()
                    .col(big_integer(Listings::Id).primary_key())
                    .col(big_integer(Listings::AccountId))
                    .col(uuid_null(Listings::CustomerId))
                    .col(json_binary(Listings::RawPayload))
                    .col(timestamp_with_time_zone_null(Listings::DeletedAt))
                    .col(timestamp_with_time_zone(Listings::CreatedAt))
                    .col(timestamp_with_time_zone(Listings::UpdatedAt))
                    .foreign_key(&mut account_fk(Listings::Table, "fk_listings_account"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_listings_account_id",
                Listings::Table,
                &["account_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .if_not_exists()
                    .col(big_integer(Reservations::Id).primary_key())
                    .col(big_integer(Reservations::AccountId))
                    .col(uuid_null(Reservations::CustomerId))
                    .col(big_integer(Reservations::ListingId))
                    .col(string_null(Reservations::Status))
                    .col(date_null(Reservations::ArrivalDate))
                    .col(date_null(Reservations::DepartureDate))
                    .col(timestamp_with_time_zone_null(Reservations::SourceUpdatedAt))
                    .col(json_binary(Reservations::RawPayload))
                    .col(timestamp_with_time_zone(Reservations::CreatedAt))
                    .col(timestamp_with_time_zone(Reservations::UpdatedAt))
                    .foreign_key(&mut account_fk(
                        Reservations::Table,
                        "fk_reservations_account",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_reservations_account_id",
                Reservations::Table,
                &["account_id"],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_reservations_listing_id",
                Reservations::Table,
                &["listing_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MessageThreads::Table)
                    .if_not_exists()
                    .col(big_integer(MessageThreads::ReservationId).primary_key())
                    .col(big_integer(MessageThreads::AccountId))
                    .col(uuid_null(MessageThreads::CustomerId))
                    .col(big_integer_null(MessageThreads::ConversationId))
                    .col(json_binary(MessageThreads::RawMessages))
                    .col(timestamp_with_time_zone_null(MessageThreads::LastMessageAt))
                    .col(timestamp_with_time_zone(MessageThreads::CreatedAt))
                    .col(timestamp_with_time_zone(MessageThreads::UpdatedAt))
                    .foreign_key(&mut account_fk(
                        MessageThreads::Table,
                        "fk_message_threads_account",
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_message_threads_account_id",
                MessageThreads::Table,
                &["account_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(WebhookEvents::Id))
                    .col(big_integer(WebhookEvents::AccountId))
                    .col(string(WebhookEvents::EventType))
                    .col(string_null(WebhookEvents::ObjectType))
                    .col(string(WebhookEvents::DedupeKey))
                    .col(json_binary(WebhookEvents::Payload))
                    .col(string(WebhookEvents::Status))
                    .col(integer(WebhookEvents::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(WebhookEvents::NextAttemptAt))
                    .col(text_null(WebhookEvents::LastError))
                    .col(string_null(WebhookEvents::Traceparent))
                    .col(timestamp_with_time_zone(WebhookEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(WebhookEvents::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "ux_webhook_events_account_dedupe",
                    WebhookEvents::Table,
                    &["account_id", "dedupe_key"],
                )
                .unique()
                .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_webhook_events_account_status",
                WebhookEvents::Table,
                &["account_id", "status", "id"],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_webhook_events_status_received",
                WebhookEvents::Table,
                &["status", "received_at"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookEvents::Table.into_iden(),
            MessageThreads::Table.into_iden(),
            Reservations::Table.into_iden(),
            Listings::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
