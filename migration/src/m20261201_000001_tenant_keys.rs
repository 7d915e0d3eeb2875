//! Tenant keys and versions. Listings, reservations and message threads are
//! keyed by `(account_id, id)` instead of `id` alone, so no write for one
//! account can reach another account's row whatever ids Hostaway sends; each
//! keeps the version it was written with (`source_updated_at`, the clamped
//! Hostaway timestamp, and `source_seen_at`, when the service observed that
//! state); a plain index on the Hostaway id finds ids shared by two accounts.
//! The inbox gains `entity_key` (which object an event is about), so that a
//! redelivery is recognised against the latest event of its object instead of
//! every event ever stored.
//!
//! The three entity tables are rebuilt (SQLite cannot change a primary key in
//! place); every row is copied. Works the same on PostgreSQL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The foreign key of `from` (a table being built as `name_of`) to accounts.
fn account_fk(from: &str, name_of: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{name_of}_account"))
        .from_tbl(Alias::new(from))
        .from_col(Alias::new("account_id"))
        .to_tbl(Alias::new("accounts"))
        .to_col(Alias::new("account_id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(Alias::new(table));
    for column in columns {
        stmt.col(Alias::new(*column));
    }
    stmt.to_owned()
}

/// One entity table in either shape.
struct Shape {
    table: &'static str,
    /// The Hostaway id column (`id`, or `reservation_id` for threads).
    key: &'static str,
    /// Columns every shape has, in order.
    common: &'static [&'static str],
    /// Columns only the tenant-keyed shape has.
    added: &'static [&'static str],
    /// `(name, columns)` of the secondary indexes of the tenant-keyed shape.
    indexes: &'static [(&'static str, &'static [&'static str])],
    /// The same for the old shape.
    old_indexes: &'static [(&'static str, &'static [&'static str])],
}

const LISTINGS: Shape = Shape {
    table: "listings",
    key: "id",
    common: &[
        "id",
        "account_id",
        "customer_id",
        "raw_payload",
        "deleted_at",
        "created_at",
        "updated_at",
    ],
    added: &["source_updated_at", "source_seen_at"],
    indexes: &[("idx_listings_id", &["id"])],
    old_indexes: &[("idx_listings_account_id", &["account_id"])],
};

const RESERVATIONS: Shape = Shape {
    table: "reservations",
    key: "id",
    common: &[
        "id",
        "account_id",
        "customer_id",
        "listing_id",
        "status",
        "arrival_date",
        "departure_date",
        "source_updated_at",
        "raw_payload",
        "created_at",
        "updated_at",
    ],
    added: &["source_seen_at"],
    indexes: &[
        ("idx_reservations_id", &["id"]),
        (
            "idx_reservations_account_listing",
            &["account_id", "listing_id"],
        ),
    ],
    old_indexes: &[
        ("idx_reservations_account_id", &["account_id"]),
        ("idx_reservations_listing_id", &["listing_id"]),
    ],
};

const THREADS: Shape = Shape {
    table: "message_threads",
    key: "reservation_id",
    common: &[
        "reservation_id",
        "account_id",
        "customer_id",
        "conversation_id",
        "raw_messages",
        "last_message_at",
        "created_at",
        "updated_at",
    ],
    added: &["source_seen_at"],
    indexes: &[("idx_message_threads_reservation_id", &["reservation_id"])],
    old_indexes: &[("idx_message_threads_account_id", &["account_id"])],
};

/// The column definition of `name`.
fn column(name: &str) -> ColumnDef {
    let iden = Alias::new(name);
    match name {
        "id" | "account_id" | "listing_id" | "reservation_id" => big_integer(iden),
        "conversation_id" => big_integer_null(iden),
        "customer_id" => uuid_null(iden),
        "raw_payload" | "raw_messages" => json_binary(iden),
        "status" => string_null(iden),
        "arrival_date" | "departure_date" => date_null(iden),
        "created_at" | "updated_at" => timestamp_with_time_zone(iden),
        // deleted_at, source_updated_at, source_seen_at, last_message_at
        _ => timestamp_with_time_zone_null(iden),
    }
}

/// Rebuilds `shape.table` keyed by `primary` with `columns`, copying every
/// row, as one script (`run_script`).
async fn rebuild(
    manager: &SchemaManager<'_>,
    shape: &Shape,
    primary: &[&str],
    columns: &[&str],
    indexes: &[(&str, &[&str])],
    drop_indexes: &[(&str, &[&str])],
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let postgres = backend == sea_orm_migration::sea_orm::DbBackend::Postgres;
    let table = shape.table;
    let staging = format!("{table}_rebuild");
    let mut create = Table::create();
    create.table(Alias::new(&staging));
    for name in columns {
        create.col(column(name));
    }
    let mut pk = Index::create();
    for name in primary {
        pk.col(Alias::new(*name));
    }
    create.primary_key(&mut pk);
    create.foreign_key(&mut account_fk(&staging, table));

    let mut script: Vec<String> = vec![backend.build(&create.to_owned()).to_string()];
    let copy = shape.common.join(", ");
    script.push(format!(
        "INSERT INTO {staging} ({copy}) SELECT {copy} FROM {table} WHERE 1 = 1 ON CONFLICT DO NOTHING"
    ));
    for (name, _) in drop_indexes {
        let drop = Index::drop()
            .name(*name)
            .table(Alias::new(table))
            .if_exists()
            .to_owned();
        script.push(backend.build(&drop).to_string());
    }
    script.push(
        backend
            .build(&Table::drop().table(Alias::new(table)).to_owned())
            .to_string(),
    );
    let rename = Table::rename()
        .table(Alias::new(&staging), Alias::new(table))
        .to_owned();
    script.push(backend.build(&rename).to_string());
    if postgres {
        // The primary key's index keeps the staging name otherwise.
        script.push(format!("ALTER INDEX {staging}_pkey RENAME TO {table}_pkey"));
    }
    for (name, columns) in indexes {
        script.push(backend.build(&index(name, table, columns)).to_string());
    }
    run_script(manager, &script).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for shape in [&LISTINGS, &RESERVATIONS, &THREADS] {
            let columns: Vec<&str> = shape.common.iter().chain(shape.added).copied().collect();
            rebuild(
                manager,
                shape,
                &["account_id", shape.key],
                &columns,
                shape.indexes,
                shape.old_indexes,
            )
            .await?;
        }
        let backend = manager.get_database_backend();
        let script = [
            backend
                .build(
                    &Table::alter()
                        .table(Alias::new("webhook_events"))
                        .add_column(string_null(Alias::new("entity_key")))
                        .to_owned(),
                )
                .to_string(),
            backend
                .build(
                    &Index::drop()
                        .name("ux_webhook_events_account_dedupe")
                        .table(Alias::new("webhook_events"))
                        .to_owned(),
                )
                .to_string(),
            backend
                .build(&index(
                    "idx_webhook_events_account_entity",
                    "webhook_events",
                    &["account_id", "entity_key", "id"],
                ))
                .to_string(),
        ];
        run_script(manager, &script).await
    }

    /// Back to keys by id alone. Where two accounts hold the same id, one
    /// row is kept (the first copied): the old shape cannot hold both.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let script = [
            backend
                .build(
                    &Index::drop()
                        .name("idx_webhook_events_account_entity")
                        .table(Alias::new("webhook_events"))
                        .to_owned(),
                )
                .to_string(),
            // Duplicate keys stored since: keep the first of each.
            "DELETE FROM webhook_events WHERE id NOT IN \
             (SELECT MIN(id) FROM webhook_events GROUP BY account_id, dedupe_key)"
                .to_string(),
            backend
                .build(
                    &index(
                        "ux_webhook_events_account_dedupe",
                        "webhook_events",
                        &["account_id", "dedupe_key"],
                    )
                    .unique()
                    .to_owned(),
                )
                .to_string(),
            backend
                .build(
                    &Table::alter()
                        .table(Alias::new("webhook_events"))
                        .drop_column(Alias::new("entity_key"))
                        .to_owned(),
                )
                .to_string(),
        ];
        run_script(manager, &script).await?;
        for shape in [&LISTINGS, &RESERVATIONS, &THREADS] {
            rebuild(
                manager,
                shape,
                &[shape.key],
                shape.common,
                shape.old_indexes,
                shape.indexes,
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs statements as one script on one connection, in a transaction on
/// SQLite (the migrator runs each migration in one on PostgreSQL only, and
/// pooled SQLite connections could otherwise see different schemas).
async fn run_script(manager: &SchemaManager<'_>, statements: &[String]) -> Result<(), DbErr> {
    let sqlite = manager.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres;
    let mut script = Vec::with_capacity(statements.len() + 2);
    if sqlite {
        script.push("BEGIN");
    }
    script.extend(statements.iter().map(String::as_str));
    if sqlite {
        script.push("COMMIT");
    }
    manager
        .get_connection()
        .execute_unprepared(&script.join(";\n"))
        .await?;
    Ok(())
}
