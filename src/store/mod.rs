//! Storage: the connection (SQLite file or a PostgreSQL schema), migrations,
//! and the SQL the rest of the service runs. Entity tables are written only by
//! the writer actors through `entities::*`; the inbox by the ingest actor and
//! the AccountActors through `inbox::*`.

pub mod accounts;
pub mod inbox;
pub mod leases;
pub mod mirror;
pub mod nodelay;
pub mod notify;
pub mod rows;
pub mod threads;
pub mod upserts;
pub mod version;
pub mod write;

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait, Value,
};
use sea_orm_migration::MigratorTrait;

use crate::config::{self, DatabaseSettings};

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
    connect_with(settings, None).await
}

/// `connect`, and on PostgreSQL a session left idle inside a transaction for
/// longer than `idle_in_transaction` is ended by the server (cluster mode:
/// a frozen replica's open transaction holds no lock for long).
pub async fn connect_with(
    settings: &DatabaseSettings,
    idle_in_transaction: Option<Duration>,
) -> Result<DatabaseConnection, StoreError> {
    connect_pool(settings, idle_in_transaction, Session::Shared).await
}

/// What a pool's connections are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// The service's pool (`database.max_connections`).
    Shared,
    /// One connection, kept by one committing actor for itself.
    Committer { durable: bool },
}

/// The connections of the committing actors (PostgreSQL): the inbox's,
/// and one per entity writer. Each actor has one transaction or statement
/// in flight at a time and keeps its own server session: its statements
/// are planned once and stay warm in one backend's caches, instead of
/// passing through every connection of the shared pool (with three
/// replicas, some sixty backends each planned and ran every statement).
/// The writers' sessions commit without waiting for their WAL flush
/// (`synchronous_commit = off`): the mirror is derived from the inbox, and
/// a crash loses only whole apply transactions, whose inbox rows are then
/// still pending. On SQLite there are none: everything shares the pool
/// (and its write lock).
#[derive(Clone)]
pub struct Committers {
    /// Where the inbox committer appends (`inbox()`).
    inbox: InboxPool,
    pub listings: DatabaseConnection,
    /// `reservation_writers(…)` on PostgreSQL (accounts are shared out
    /// among them), one on SQLite.
    pub reservations: Vec<DatabaseConnection>,
    pub threads: DatabaseConnection,
}

#[derive(Clone)]
enum InboxPool {
    /// SQLite: the shared pool.
    Shared(DatabaseConnection),
    /// PostgreSQL: a connection of the committer's own, opened on its thread.
    Own(DatabaseSettings, Option<Duration>),
}

/// PostgreSQL: reservation writers side by side, each account's rows always
/// with the same one. Webhooks are nearly all reservations, and one writer's
/// transactions, one after the other, could not keep up with the inbox at
/// full load (its backlog grew to a second behind); two overlap their waits.
/// A replica of a cluster applies only its share of the load, and a second
/// writer would halve its batches again (more statements per event, the
/// cost that grows with replicas): it has one.
pub fn reservation_writers(cluster: bool) -> usize {
    if cluster { 1 } else { 2 }
}

impl Committers {
    pub async fn open(
        settings: &DatabaseSettings,
        shared: &DatabaseConnection,
        idle_in_transaction: Option<Duration>,
        reservation_writers: usize,
    ) -> Result<Committers, StoreError> {
        if shared.get_database_backend() != DbBackend::Postgres {
            return Ok(Committers {
                inbox: InboxPool::Shared(shared.clone()),
                listings: shared.clone(),
                reservations: vec![shared.clone()],
                threads: shared.clone(),
            });
        }
        let own = |durable| {
            connect_pool(
                settings,
                idle_in_transaction,
                Session::Committer { durable },
            )
        };
        let mut reservations = Vec::with_capacity(reservation_writers);
        for _ in 0..reservation_writers.max(1) {
            reservations.push(own(false).await?);
        }
        Ok(Committers {
            inbox: InboxPool::Own(settings.clone(), idle_in_transaction),
            listings: own(false).await?,
            reservations,
            threads: own(false).await?,
        })
    }

    /// The inbox committer's connection, for the thread it runs on: on
    /// PostgreSQL one of its own (durable commits), opened on first use on
    /// that thread (`OnFirstUse`); on SQLite, whose connections are not tied
    /// to a thread's runtime, the shared pool.
    pub fn inbox(&self) -> InboxConnection {
        match &self.inbox {
            InboxPool::Shared(db) => InboxConnection::Shared(db.clone()),
            InboxPool::Own(settings, idle_in_transaction) => {
                InboxConnection::Own(std::rc::Rc::new(OnFirstUse {
                    settings: settings.clone(),
                    idle_in_transaction: *idle_in_transaction,
                    conn: tokio::sync::OnceCell::new(),
                }))
            }
        }
    }
}

/// Where an inbox committer appends (`Committers::inbox`).
#[derive(Clone)]
pub enum InboxConnection {
    Shared(DatabaseConnection),
    Own(std::rc::Rc<OnFirstUse>),
}

impl InboxConnection {
    pub async fn get(&self) -> Result<&DatabaseConnection, DbErr> {
        match self {
            InboxConnection::Shared(db) => Ok(db),
            InboxConnection::Own(own) => own.get().await,
        }
    }
}

/// A committer's own durable connection (one), opened when first asked
/// for and kept. Opened on the HTTP worker's thread the committer runs on,
/// its socket is polled by that worker's runtime: an append and its
/// acknowledgement then never wait for another thread to wake. A failed
/// opening is tried again on the next use.
pub struct OnFirstUse {
    settings: DatabaseSettings,
    idle_in_transaction: Option<Duration>,
    conn: tokio::sync::OnceCell<DatabaseConnection>,
}

impl OnFirstUse {
    pub async fn get(&self) -> Result<&DatabaseConnection, DbErr> {
        self.conn
            .get_or_try_init(|| async {
                connect_pool(
                    &self.settings,
                    self.idle_in_transaction,
                    Session::Committer { durable: true },
                )
                .await
                .map_err(|err| match err {
                    StoreError::Db(err) => err,
                    other => DbErr::Custom(other.to_string()),
                })
            })
            .await
    }
}

async fn connect_pool(
    settings: &DatabaseSettings,
    idle_in_transaction: Option<Duration>,
    session: Session,
) -> Result<DatabaseConnection, StoreError> {
    let url = settings.url.expose().to_string();
    let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
    let mut options = ConnectOptions::new(url.clone());
    let pool = match session {
        Session::Committer { .. } => 1,
        Session::Shared if url.starts_with("sqlite:") => settings.sqlite_max_connections.get(),
        Session::Shared => settings.max_connections.get(),
    };
    options
        .max_connections(pool)
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // A connection back from work a moment ago is not pinged again
        // before its next use (a round trip per statement on the
        // acknowledgement's path); one idle longer is.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        if let Some(dir) = sqlite_parent_dir(&url) {
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::SqliteDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let synchronous = match settings.sqlite_synchronous {
            config::SqliteSynchronous::Off => SqliteSynchronous::Off,
            config::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
            config::SqliteSynchronous::Full => SqliteSynchronous::Full,
            config::SqliteSynchronous::Extra => SqliteSynchronous::Extra,
        };
        options.map_sqlx_sqlite_opts(move |opts| {
            opts.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
                // A multi-row upsert keeps a statement journal (to undo
                // itself on a constraint failure): in memory, not a temp
                // file written and read back on every batch.
                .pragma("temp_store", "memory")
                // The WAL is copied back into the database file by the
                // scheduler's checkpoints (`WalCheckpointer`), beside the
                // writers rather than by whichever commit crossed SQLite's
                // default 1,000 pages while holding the write lock; this is
                // only the backstop.
                .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string())
        });
    } else {
        if session == Session::Shared {
            // The committers connect after the shared pool made it.
            ensure_pg_schema(&url, &settings.schema, timeout).await?;
        }
        let schema = settings.schema.clone();
        let plain = loopback_without_sslmode(&url);
        // search_path as a startup parameter: no extra round trip per connection.
        let idle = idle_in_transaction.map(|d| format!("{}ms", d.as_millis().max(1)));
        options.map_sqlx_postgres_opts(move |opts| {
            // Generic plans: each statement is planned once per connection
            // and reused. Custom plans re-plan every execution with its
            // values (folding each JSON payload parameter into the plan),
            // which cost PostgreSQL more than the writes themselves.
            // No JIT: a generic plan's cost estimate for a batch lookup
            // (`id = ANY($1)` of 500 ids) passes `jit_above_cost`, and
            // compiling it took ~30 ms per execution for a 0.2 ms index scan.
            // No sequential scan where an index applies: a generic plan is
            // made once, on the connection's first use of the statement,
            // often while a table is still empty (a new deployment, every
            // test), and a sequential scan planned then would stay for the
            // connection's life while the table grows (measured: settling
            // one inbox row read ~1,300 pages, 1.9 ms). Every statement of
            // the service looks rows up by an indexed key; one that has no
            // index still scans.
            let opts = opts.options([
                ("search_path", &schema[..]),
                ("plan_cache_mode", "force_generic_plan"),
                ("jit", "off"),
                ("enable_seqscan", "off"),
            ]);
            let opts = match &idle {
                Some(idle) => opts.options([("idle_in_transaction_session_timeout", idle.clone())]),
                None => opts,
            };
            let opts = match session {
                Session::Committer { durable: false } => {
                    opts.options([("synchronous_commit", "off")])
                }
                _ => opts,
            };
            if plain {
                opts.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
            } else {
                opts
            }
        });
        options.map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|conn, _meta| Box::pin(nodelay::set_on(conn)))
        });
    }
    Ok(Database::connect(options).await?)
}

/// Whether a PostgreSQL URL names a server on this host (a loopback
/// address, `localhost`, or a Unix socket) and says nothing of `sslmode`:
/// then the connection is plain. TLS to the same host protects nothing, and
/// cost both ends about 12 % of their CPU under load (sqlx's own default,
/// `prefer`, encrypts whenever the server offers it). A URL that asks for a
/// mode gets it.
fn loopback_without_sslmode(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if parsed
        .query_pairs()
        .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
    {
        return false;
    }
    let socket = parsed
        .query_pairs()
        .any(|(key, value)| key == "host" && value.starts_with('/'));
    let host = parsed.host_str().unwrap_or("");
    let loopback = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    socket || loopback || host.is_empty() || host.eq_ignore_ascii_case("localhost")
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
    // Serialised per schema: replicas starting together would otherwise
    // race to create it, and all but one fail on pg_namespace's unique key.
    db.execute_unprepared(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtext('sync-hostaway schema {schema}')); \
         CREATE SCHEMA IF NOT EXISTS \"{schema}\"; COMMIT"
    ))
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
///
/// On PostgreSQL under an advisory lock per schema, held on a connection of
/// its own: replicas starting together on a new schema (a first deploy)
/// would otherwise create the same tables at once, and all but one fail
/// ("duplicate key value violates unique constraint
/// pg_type_typname_nsp_index"). The others wait for the first and find
/// nothing left to do.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    if db.get_database_backend() != DbBackend::Postgres {
        migration::Migrator::up(db, None).await?;
        return Ok(());
    }
    use sea_orm::sqlx::{Connection, Executor};
    let mut lock = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?
        .detach();
    let sqlx = |e: sea_orm::sqlx::Error| DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e.into()));
    lock.execute(MIGRATION_LOCK).await.map_err(sqlx)?;
    let migrated = migration::Migrator::up(db, None).await;
    // Closing the session releases the lock, whatever happened.
    let _ = lock.close().await;
    migrated?;
    Ok(())
}

const MIGRATION_LOCK: &str =
    "SELECT pg_advisory_lock(hashtext('sync-hostaway migrations ' || current_schema()))";

/// SQLite: WAL pages past which a committing connection checkpoints by
/// itself (40 MB of 4 KiB pages), should the scheduler's chore fall behind.
const WAL_BACKSTOP_PAGES: u32 = 10_000;

/// SQLite: copies what the WAL holds back into the database file, on a
/// connection of its own, without waiting for (or blocking) any writer or
/// reader (`PASSIVE`); once it has caught up, the next commit starts the
/// WAL from its beginning. The scheduler runs it every
/// `CHECKPOINT_EVERY`, so no commit has to do it while it holds the write
/// lock (the connections' `wal_autocheckpoint` is only the backstop).
pub struct WalCheckpointer {
    options: sea_orm::sqlx::sqlite::SqliteConnectOptions,
    connection: Option<sea_orm::sqlx::SqliteConnection>,
}

/// How often the scheduler checkpoints SQLite's WAL.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

impl WalCheckpointer {
    /// A checkpointer for an SQLite database; `None` on PostgreSQL.
    pub fn for_settings(settings: &DatabaseSettings) -> Option<WalCheckpointer> {
        use std::str::FromStr;
        let url = settings.url.expose();
        if !url.starts_with("sqlite:") {
            return None;
        }
        let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .ok()?
            .busy_timeout(Duration::from_secs(5));
        Some(WalCheckpointer {
            options,
            connection: None,
        })
    }

    /// One checkpoint; the frames copied. A failed connection is opened
    /// again next time.
    pub async fn run(&mut self) -> Result<i64, sea_orm::sqlx::Error> {
        use sea_orm::sqlx::{ConnectOptions as _, Row as _};
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(self.options.connect().await?),
        };
        let result = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *connection)
            .await;
        match result {
            Ok(row) => row.try_get::<i64, _>(2),
            Err(err) => {
                self.connection = None;
                Err(err)
            }
        }
    }
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

/// On SQLite, the turn of the busy writers (the inbox appends and the three
/// writers) at the database's one write lock: they queue here, in order,
/// instead of in SQLite's busy handler, which sleeps in steps of up to
/// 100 ms and so stretched the tails under load. Other, rare writes still
/// wait in the busy handler. On PostgreSQL there is no gate.
#[derive(Clone, Debug, Default)]
pub struct WriteGate(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    pub fn for_backend(backend: DbBackend) -> Self {
        WriteGate((backend == DbBackend::Sqlite).then(Default::default))
    }

    /// Waits for the turn; it lasts until the guard is dropped (after the
    /// commit).
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }
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

    /// Appends a placeholder bound to JSON text (JSONB on PostgreSQL).
    pub(crate) fn bind_json(&mut self, text: String) -> &mut Self {
        self.bind(text);
        if self.backend == DbBackend::Postgres {
            self.text.push_str("::jsonb");
        }
        self
    }

    /// Appends `$n::TYPE[], ` bound to `values` (PostgreSQL arrays hold
    /// no NULLs here: see `upserts::nullable`).
    pub(crate) fn array<T>(&mut self, values: Vec<T>, sql_type: &str) -> &mut Self
    where
        Vec<T>: Into<Value>,
    {
        self.bind(values);
        self.text.push_str("::");
        self.text.push_str(sql_type);
        self.text.push_str("[], ");
        self
    }

    /// Drops a trailing `, ` (after the last `array`).
    pub(crate) fn pop_separator(&mut self) -> &mut Self {
        if self.text.ends_with(", ") {
            self.text.truncate(self.text.len() - 2);
        }
        self
    }

    /// Appends a membership test for the expression before it: ` = ANY($n)`
    /// with one array parameter on PostgreSQL (one statement text, planned
    /// once, whatever the list's length), ` IN ($n, ...)` on SQLite.
    pub(crate) fn in_ids(&mut self, ids: impl IntoIterator<Item = i64>) -> &mut Self {
        if self.backend == DbBackend::Postgres {
            self.text.push_str(" = ANY(");
            self.bind(ids.into_iter().collect::<Vec<i64>>());
            self.text.push_str("::bigint[])");
            return self;
        }
        self.text.push_str(" IN (");
        for (i, id) in ids.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(id);
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

/// True when `err` says the database could not be reached or a connection
/// broke (rather than that a statement was refused): every statement would
/// fail the same way, so retrying a batch's items one by one is pointless.
pub fn is_connection_error(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    let runtime = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    match runtime {
        sea_orm::RuntimeErr::SqlxError(inner) => matches!(
            inner.as_ref(),
            SqlxError::Io(_)
                | SqlxError::PoolTimedOut
                | SqlxError::PoolClosed
                | SqlxError::WorkerCrashed
                | SqlxError::Tls(_)
                | SqlxError::Protocol(_)
        ),
        _ => false,
    }
}

/// Rows a single INSERT may carry, below both backends' bound-parameter limits.
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 500;

/// Bound data per statement: large batches go out as several statements in
/// one transaction rather than one statement of many megabytes.
pub(crate) const STATEMENT_BYTES: usize = 256 * 1024;

/// Splits items of the given sizes into consecutive ranges of at most
/// `STATEMENT_BYTES` (an item larger than that gets a range of its own) and
/// at most `MAX_ROWS_PER_STATEMENT` items.
///
/// On SQLite each range is cut further into power-of-two lengths. sqlx keeps
/// up to 100 prepared statements per connection, and SQLite holds a compiled
/// multi-row upsert in the process's heap (measured: 177 KB for 100 rows of
/// 30 columns); with any length possible, a connection's cache could hold
/// 100 distinct shapes of one statement, tens of megabytes. With powers of
/// two a statement kind has at most nine shapes, each reused. PostgreSQL
/// compiles in the server, and there one round trip per range matters more.
pub(crate) fn chunk_by_size(backend: DbBackend, sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, size) in sizes.iter().enumerate() {
        let full =
            i > start && (bytes + size > STATEMENT_BYTES || i - start >= MAX_ROWS_PER_STATEMENT);
        if full {
            ranges.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    if backend != DbBackend::Sqlite {
        return ranges;
    }
    let mut pieces = Vec::new();
    for range in ranges {
        let mut start = range.start;
        while start < range.end {
            let len = 1 << (range.end - start).ilog2();
            pieces.push(start..start + len);
            start += len;
        }
    }
    pieces
}

pub(crate) async fn ping(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_connections_are_plain_unless_the_url_says_otherwise() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://u:p@localhost/db",
            "postgresql://u@[::1]:5432/db",
            "postgres://u@127.0.0.2/db",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert!(loopback_without_sslmode(url), "{url}");
        }
        for url in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@localhost/db?sslmode=prefer",
            "postgres://u@db.internal/db",
            "postgres://u@10.0.0.5/db",
        ] {
            assert!(!loopback_without_sslmode(url), "{url}");
        }
    }

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
    fn chunks_respect_size_and_keep_order() {
        let big = STATEMENT_BYTES;
        let pg = DbBackend::Postgres;
        assert_eq!(chunk_by_size(pg, &[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(chunk_by_size(pg, &[10, 10, 10]), vec![0..3]);
        assert_eq!(
            chunk_by_size(pg, &[big, 1, big / 2, big / 2]),
            vec![0..1, 1..3, 3..4]
        );
        assert_eq!(chunk_by_size(pg, &[big * 3]), vec![0..1]);
        let many = vec![1; MAX_ROWS_PER_STATEMENT + 1];
        assert_eq!(chunk_by_size(pg, &many).len(), 2);
    }

    #[test]
    fn sqlite_chunks_have_power_of_two_lengths() {
        let lite = DbBackend::Sqlite;
        assert_eq!(chunk_by_size(lite, &[10; 7]), vec![0..4, 4..6, 6..7]);
        assert_eq!(chunk_by_size(lite, &[10; 8]), vec![0..8]);
        let many = vec![1; MAX_ROWS_PER_STATEMENT + 3];
        let pieces = chunk_by_size(lite, &many);
        assert!(pieces.iter().all(|r| r.len().is_power_of_two()));
        assert_eq!(pieces.iter().map(|r| r.len()).sum::<usize>(), many.len());
        assert!(pieces.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn placeholders_are_numbered() {
        let mut sql = Sql::new(DbBackend::Sqlite);
        sql.push("SELECT * FROM t WHERE a = ")
            .bind(1i64)
            .push(" AND b")
            .in_ids([2i64, 3]);
        let stmt = sql.build();
        assert_eq!(stmt.sql, "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
        let mut sql = Sql::new(DbBackend::Postgres);
        sql.push("SELECT * FROM t WHERE b").in_ids([2i64, 3]);
        let stmt = sql.build();
        assert_eq!(stmt.sql, "SELECT * FROM t WHERE b = ANY($1::bigint[])");
    }
}
