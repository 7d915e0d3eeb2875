//! Wake-ups between replicas through PostgreSQL's `LISTEN/NOTIFY`: a
//! notification sent inside a transaction is delivered when (and only if)
//! it commits, so a listener never hears of an inbox row it cannot read yet.
//! Notifications are hints — one missed (a listener reconnecting) delays
//! work until the periodic scan finds it, never loses it. PostgreSQL only.

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sha2::{Digest, Sha256};

use super::Sql;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// New inbox rows of an account: wake its owner.
    Inbox,
    /// An account was created, changed or deleted: refresh the directory.
    Accounts,
    /// A sync of an account was asked for on another replica: its owner
    /// runs it (payload `id:full`, `id:incremental`, `:dry` appended for a
    /// dry run).
    Sync,
}

impl Topic {
    fn prefix(self) -> &'static str {
        match self {
            Topic::Inbox => "sh_inbox_",
            Topic::Accounts => "sh_accounts_",
            Topic::Sync => "sh_sync_",
        }
    }

    /// The channel of this topic for the deployment in `schema`: several
    /// deployments (schemas) on one server never hear each other. Channel
    /// names are identifiers of at most 63 bytes, so the schema is hashed.
    pub fn channel(self, schema: &str) -> String {
        let digest = Sha256::digest(schema.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{hex}", self.prefix())
    }
}

/// Sends one notification per account on `channel`, delivered when the
/// transaction of `conn` commits (at once outside one).
pub async fn notify<C: ConnectionTrait>(
    conn: &C,
    channel: &str,
    account_ids: &[i64],
) -> Result<(), DbErr> {
    if account_ids.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push("SELECT pg_notify(")
        .bind(channel)
        .push(", id::text) FROM unnest(")
        .bind(account_ids.to_vec())
        .push("::bigint[]) AS id");
    conn.execute_raw(sql.build()).await.map(|_| ())
}

/// Sends one notification on `channel` about `account_id`, with `detail`
/// after a colon (`Notice::detail`).
pub async fn notify_detail<C: ConnectionTrait>(
    conn: &C,
    channel: &str,
    account_id: i64,
    detail: &str,
) -> Result<(), DbErr> {
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push("SELECT pg_notify(")
        .bind(channel)
        .push(", ")
        .bind(format!("{account_id}:{detail}"))
        .push(")");
    conn.execute_raw(sql.build()).await.map(|_| ())
}

/// A dedicated connection listening on some channels.
pub struct Listener {
    inner: PgListener,
}

/// One notification: its channel, the account it names and what follows
/// the account id after a colon, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub channel: String,
    pub account_id: i64,
    pub detail: Option<String>,
}

impl Listener {
    /// Listens on `channels` over a connection of `db`'s pool (held for the
    /// listener's life; sqlx reconnects it if it breaks).
    pub async fn start(db: &DatabaseConnection, channels: &[String]) -> Result<Self, DbErr> {
        let pool = db.get_postgres_connection_pool();
        let mut inner = PgListener::connect_with(pool)
            .await
            .map_err(|e| DbErr::Custom(format!("LISTEN connection: {e}")))?;
        let names: Vec<&str> = channels.iter().map(String::as_str).collect();
        inner
            .listen_all(names)
            .await
            .map_err(|e| DbErr::Custom(format!("LISTEN: {e}")))?;
        Ok(Listener { inner })
    }

    /// The next notification; payloads that do not start with an account
    /// id are skipped.
    pub async fn next(&mut self) -> Result<Notice, DbErr> {
        loop {
            let notification = self
                .inner
                .recv()
                .await
                .map_err(|e| DbErr::Custom(format!("LISTEN: {e}")))?;
            let (id, detail) = match notification.payload().split_once(':') {
                Some((id, detail)) => (id, Some(detail.to_string())),
                None => (notification.payload(), None),
            };
            if let Ok(account_id) = id.parse() {
                return Ok(Notice {
                    channel: notification.channel().to_string(),
                    account_id,
                    detail,
                });
            }
        }
    }
}
