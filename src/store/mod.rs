//! Storage: the connection (SQLite file or a PostgreSQL schema), migrations,
//! and the SQL the rest of the service runs. Entity tables are written only by
//! the writer actors through `entities::*`; the inbox by the ingest actor and
//! the AccountActors through `inbox::*`.

pub mod accounts;
pub mod inbox;
pub mod mirror;
pub mod rows;
pub mod upserts;

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("could not prepare the SQLite directory {path}: {source}")]
    SqliteDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("secret could not be decrypted: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Opens the configured database. On PostgreSQL the schema is created if
/// missing and every pooled connection gets `search_path = <schema>`; on SQLite
/// the file (and its directory) is created, in WAL mode.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, StoreError> {
    let url = settings.url.expose().to_string();
    let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
    let mut options = ConnectOptions::new(url.clone());
    options
        .max_connections(settings.max_connections)
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        if let Some(dir) = sqlite_parent_dir(&url) {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::SqliteDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let synchronous = match settings.sqlite_synchronous.as_str() {
            "off" => SqliteSynchronous::Off,
            "normal" => SqliteSynchronous::Normal,
            "extra" => SqliteSynchronous::Extra,
            _ => SqliteSynchronous::Full,
        };
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
        });
    } else {
        ensure_pg_schema(&url, &settings.schema, timeout).await?;
        options.set_schema_search_path(settings.schema.clone());
    }
    Ok(Database::connect(options).await?)
}

async fn ensure_pg_schema(url: &str, schema: &str, timeout: Duration) -> Result<(), StoreError> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    // `schema` is validated as a plain identifier when settings load.
    db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .await?;
    db.close().await?;
    Ok(())
}

/// The directory of a `sqlite:` URL's file, if it names one.
fn sqlite_parent_dir(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

/// Applies pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    migration::Migrator::up(db, None).await?;
    Ok(())
}

/// Starts a write transaction. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`) so a read-then-write transaction never fails with
/// SQLITE_BUSY halfway.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// A SQL string with positional parameters (`$1`, `$2`, ... work on both
/// PostgreSQL and SQLite) and their values.
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Sql {
            backend,
            text: String::with_capacity(256),
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.values.len().to_string());
        self
    }

    /// Appends `(p1, p2, ...)` for a list of values.
    pub(crate) fn bind_list<V: Into<Value>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    /// Comparison that treats NULLs as values: `IS DISTINCT FROM` on
    /// PostgreSQL, `IS NOT` on SQLite.
    pub(crate) fn distinct(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => "IS DISTINCT FROM",
            _ => "IS NOT",
        }
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// Rows a single INSERT may carry, below both backends' bound-parameter limits.
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 500;

pub(crate) async fn ping(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_dirs() {
        assert_eq!(
            sqlite_parent_dir("sqlite://data/sync-hostaway.db?mode=rwc"),
            Some("data".into())
        );
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite:file.db"), None);
        assert_eq!(
            sqlite_parent_dir("sqlite:///tmp/x/y.db"),
            Some("/tmp/x".into())
        );
    }

    #[test]
    fn placeholders_are_numbered() {
        let mut sql = Sql::new(DbBackend::Sqlite);
        sql.push("SELECT * FROM t WHERE a = ")
            .bind(1i64)
            .push(" AND b IN ")
            .bind_list([2i64, 3]);
        let stmt = sql.build();
        assert_eq!(stmt.sql, "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
    }
}
