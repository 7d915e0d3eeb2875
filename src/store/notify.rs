//! Wake-ups between replicas through PostgreSQL's `LISTEN/NOTIFY`: a
//! notification sent inside a transaction is delivered when (and only if)
//! it commits, so a listener never hears of an inbox row it cannot read yet.
//! Notifications are hints — one missed (a listener reconnecting) delays
//! work until the periodic scan finds it, never loses it. PostgreSQL only.

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
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

/// Account ids per notification: a payload stays under PostgreSQL's
/// 8,000 bytes (an id and its comma take at most 20).
const IDS_PER_NOTICE: usize = 300;

/// Tells the listeners on `channel` about `account_ids`: a few
/// notifications of many ids each (`5,6,7`), not one per account, for every
/// listener receives and parses every notification. Delivered when the
/// transaction of `conn` commits (at once outside one).
pub async fn notify<C: ConnectionTrait>(
    conn: &C,
    channel: &str,
    account_ids: &[i64],
) -> Result<(), DbErr> {
    send(conn, notify_statement(channel, account_ids, false)).await
}

/// `notify` in a transaction of its own whose commit does not wait for the
/// disk: a hint needs no durability (one lost is made up by the periodic
/// scans), and a flush per inbox batch, on top of the batch's own, was a
/// third of a cluster's flushes. `synchronous_commit` is set for this
/// transaction only, which commits right after the statement.
pub async fn notify_hint(
    db: &DatabaseConnection,
    channel: &str,
    account_ids: &[i64],
) -> Result<(), DbErr> {
    send(db, notify_statement(channel, account_ids, true)).await
}

async fn send<C: ConnectionTrait>(conn: &C, statement: Option<Statement>) -> Result<(), DbErr> {
    match statement {
        Some(statement) => conn.execute_raw(statement).await.map(|_| ()),
        None => Ok(()),
    }
}

fn notify_statement(channel: &str, account_ids: &[i64], unflushed: bool) -> Option<Statement> {
    if account_ids.is_empty() {
        return None;
    }
    let mut ids = account_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let payloads: Vec<String> = ids
        .chunks(IDS_PER_NOTICE)
        .map(|chunk| {
            chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push("SELECT pg_notify(").bind(channel).push(", p)");
    if unflushed {
        sql.push(", set_config('synchronous_commit', 'off', true)");
    }
    sql.push(" FROM unnest(")
        .bind(payloads)
        .push("::text[]) AS p");
    Some(sql.build())
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
    /// The rest of a notification that named several accounts.
    heard: std::collections::VecDeque<Notice>,
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
        Ok(Listener {
            inner,
            heard: Default::default(),
        })
    }

    /// The next notice, one per account a notification names (`5`,
    /// `5,6,7` or `5:detail`); payloads that name no account are skipped.
    pub async fn next(&mut self) -> Result<Notice, DbErr> {
        loop {
            if let Some(notice) = self.heard.pop_front() {
                return Ok(notice);
            }
            let notification = self
                .inner
                .recv()
                .await
                .map_err(|e| DbErr::Custom(format!("LISTEN: {e}")))?;
            let (ids, detail) = match notification.payload().split_once(':') {
                Some((id, detail)) => (id, Some(detail.to_string())),
                None => (notification.payload(), None),
            };
            let channel = notification.channel();
            self.heard.extend(
                ids.split(',')
                    .filter_map(|id| id.parse().ok())
                    .map(|account_id| Notice {
                        channel: channel.to_string(),
                        account_id,
                        detail: detail.clone(),
                    }),
            );
        }
    }
}
