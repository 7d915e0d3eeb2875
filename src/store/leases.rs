//! Leases in PostgreSQL, the cluster's only coordination engine: replicas
//! record heartbeats, and each account's lease row names its owner, the
//! fencing epoch of that ownership and when it expires. Every time is the
//! database's clock (`now()`), so replicas' clocks may disagree.
//!
//! Fencing: `fence` runs inside an account's write transaction and takes a
//! `FOR SHARE` lock on the lease row after checking that it still names this
//! replica at this epoch. A takeover (`acquire`) updates that row, so it
//! waits for such a transaction to commit, and every write committed after
//! the takeover checks the new epoch: a replica that lost its lease (paused,
//! partitioned) can never commit a write for that account again. A
//! transaction left open by a frozen replica is ended by the server
//! (`idle_in_transaction_session_timeout` on cluster connections), so it
//! cannot hold a takeover back for longer than that. PostgreSQL only, but
//! for `claim_chore`, which SQLite runs too.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

use super::Sql;

/// Ownership of one account at one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub account_id: i64,
    pub epoch: i64,
}

/// Runs `sql`, which selects or returns `account_id, epoch`.
async fn leases_of<C: ConnectionTrait>(conn: &C, sql: Sql) -> Result<Vec<Lease>, DbErr> {
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| {
            Ok(Lease {
                account_id: row.try_get_by_index(0)?,
                epoch: row.try_get_by_index(1)?,
            })
        })
        .collect()
}

fn sql() -> Sql {
    Sql::new(DbBackend::Postgres)
}

/// Records that `replica` is alive (first call: joined).
pub async fn heartbeat<C: ConnectionTrait>(conn: &C, replica: &str) -> Result<(), DbErr> {
    let mut sql = sql();
    sql.push(
        "INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at) VALUES (",
    )
    .bind(replica)
    .push(
        ", now(), now()) ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    );
    conn.execute_raw(sql.build()).await.map(|_| ())
}

/// The replicas whose last heartbeat is younger than `lease_secs`, by id.
pub async fn live_replicas<C: ConnectionTrait>(
    conn: &C,
    lease_secs: u64,
) -> Result<Vec<String>, DbErr> {
    let mut sql = sql();
    sql.push("SELECT replica_id FROM cluster_replicas WHERE heartbeat_at > now() - make_interval(secs => ")
        .bind(lease_secs as f64)
        .push(") ORDER BY replica_id");
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect()
}

/// Takes the leases of `account_ids` that are free, expired or released,
/// each at a new epoch; returns the ones taken. A lease another replica
/// still holds is left alone, and so is one this replica holds (`renew`).
/// So is one whose row a write transaction of the old owner has locked
/// (`fence`): the takeover is retried next round instead of waiting, so a
/// frozen replica's open transaction cannot stall the keeper's round.
pub async fn acquire<C: ConnectionTrait>(
    conn: &C,
    replica: &str,
    account_ids: &[i64],
    lease_secs: u64,
) -> Result<Vec<Lease>, DbErr> {
    let mut taken = Vec::new();
    for chunk in account_ids.chunks(super::MAX_ROWS_PER_STATEMENT) {
        let ids = chunk.to_vec();
        let mut sql = sql();
        sql.push(
            "WITH free AS (SELECT account_id FROM account_leases WHERE account_id = ANY(",
        )
        .bind(ids.clone())
        .push(
            ") AND expires_at <= now() FOR UPDATE SKIP LOCKED), \
             taken AS (UPDATE account_leases l SET owner = ",
        )
        .bind(replica)
        .push(
            ", epoch = l.epoch + 1, acquired_at = now(), expires_at = now() + make_interval(secs => ",
        )
        .bind(lease_secs as f64)
        .push(
            ") FROM free WHERE l.account_id = free.account_id RETURNING l.account_id, l.epoch), \
             fresh AS (INSERT INTO account_leases (account_id, owner, epoch, acquired_at, expires_at) \
             SELECT id, ",
        )
        .bind(replica)
        .push(", 1, now(), now() + make_interval(secs => ")
        .bind(lease_secs as f64)
        .push(") FROM unnest(")
        .bind(ids)
        .push(
            "::bigint[]) AS id WHERE NOT EXISTS (SELECT 1 FROM account_leases e WHERE e.account_id = id) \
             ON CONFLICT (account_id) DO NOTHING RETURNING account_id, epoch) \
             SELECT account_id, epoch FROM taken UNION ALL SELECT account_id, epoch FROM fresh",
        );
        taken.extend(leases_of(conn, sql).await?);
    }
    Ok(taken)
}

/// Extends the leases this replica still holds at their epochs and has not
/// let expire; returns those renewed. A lease missing from the answer is
/// lost: its account must be dropped at once.
pub async fn renew<C: ConnectionTrait>(
    conn: &C,
    replica: &str,
    held: &[Lease],
    lease_secs: u64,
) -> Result<Vec<Lease>, DbErr> {
    let mut renewed = Vec::new();
    for chunk in held.chunks(super::MAX_ROWS_PER_STATEMENT) {
        let mut sql = sql();
        sql.push("UPDATE account_leases l SET expires_at = now() + make_interval(secs => ")
            .bind(lease_secs as f64)
            .push(") FROM unnest(")
            .bind(chunk.iter().map(|l| l.account_id).collect::<Vec<_>>())
            .push("::bigint[], ")
            .bind(chunk.iter().map(|l| l.epoch).collect::<Vec<_>>())
            .push(
                "::bigint[]) AS h(account_id, epoch) WHERE l.account_id = h.account_id \
                 AND l.epoch = h.epoch AND l.owner = ",
            )
            .bind(replica)
            .push(" AND l.expires_at > now() RETURNING l.account_id, l.epoch");
        renewed.extend(leases_of(conn, sql).await?);
    }
    Ok(renewed)
}

/// Gives leases up at once (a graceful leave, or accounts that belong to
/// another replica now): they expire now, so the next owner need not wait.
pub async fn release<C: ConnectionTrait>(
    conn: &C,
    replica: &str,
    held: &[Lease],
) -> Result<(), DbErr> {
    if held.is_empty() {
        return Ok(());
    }
    let mut sql = sql();
    sql.push("UPDATE account_leases l SET expires_at = now() FROM unnest(")
        .bind(held.iter().map(|l| l.account_id).collect::<Vec<_>>())
        .push("::bigint[], ")
        .bind(held.iter().map(|l| l.epoch).collect::<Vec<_>>())
        .push(
            "::bigint[]) AS h(account_id, epoch) WHERE l.account_id = h.account_id \
             AND l.epoch = h.epoch AND l.owner = ",
        )
        .bind(replica);
    conn.execute_raw(sql.build()).await.map(|_| ())
}

/// Leaves the cluster: the replica's heartbeat row goes and its leases are
/// released.
pub async fn leave<C: ConnectionTrait>(conn: &C, replica: &str) -> Result<(), DbErr> {
    let mut sql = sql();
    sql.push("UPDATE account_leases SET expires_at = now() WHERE owner = ")
        .bind(replica)
        .push(" AND expires_at > now()");
    conn.execute_raw(sql.build()).await?;
    let mut sql = self::sql();
    sql.push("DELETE FROM cluster_replicas WHERE replica_id = ")
        .bind(replica);
    conn.execute_raw(sql.build()).await.map(|_| ())
}

/// Inside a write transaction: checks that this replica still owns every
/// lease in `leases` at its epoch, unexpired, and locks those rows against a
/// takeover until the transaction ends. Returns the accounts it no longer
/// owns (empty: the write may commit).
pub async fn fence<C: ConnectionTrait>(
    tx: &C,
    replica: &str,
    leases: &[Lease],
) -> Result<Vec<i64>, DbErr> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = sql();
    sql.push("SELECT account_id, epoch FROM account_leases WHERE owner = ")
        .bind(replica)
        .push(" AND expires_at > now() AND account_id = ANY(")
        .bind(leases.iter().map(|l| l.account_id).collect::<Vec<_>>())
        .push(") FOR SHARE");
    let owned: std::collections::HashSet<Lease> = leases_of(tx, sql).await?.into_iter().collect();
    Ok(leases
        .iter()
        .filter(|l| !owned.contains(l))
        .map(|l| l.account_id)
        .collect())
}

/// Claims a chore that runs once per cluster every `every` (inbox pruning):
/// true when this caller is the one to run it now, false when another
/// replica (or this one) ran it less than `every` ago. Works on SQLite too,
/// where the one process always claims its own schedule; times come from
/// the caller, so replicas' clocks should agree to well within `every`.
pub async fn claim_chore<C: ConnectionTrait>(
    conn: &C,
    chore: &str,
    every: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("INSERT INTO cluster_chores (chore, last_run_at) VALUES (")
        .bind(chore)
        .push(", ")
        .bind(now)
        .push(
            ") ON CONFLICT (chore) DO UPDATE SET last_run_at = excluded.last_run_at \
             WHERE cluster_chores.last_run_at <= ",
        )
        .bind(now - every)
        .push(" RETURNING chore");
    Ok(!conn.query_all_raw(sql.build()).await?.is_empty())
}

/// A replica as `GET /api/v1/hostaway/cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaState {
    pub replica_id: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Seconds since the last heartbeat, by the database's clock.
    pub heartbeat_age_secs: f64,
    pub live: bool,
}

/// A lease as `GET /api/v1/hostaway/cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeaseState {
    pub account_id: i64,
    pub owner: String,
    pub epoch: i64,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Seconds since this owner took it.
    pub held_for_secs: f64,
    /// Seconds until it lapses unless renewed (negative: lapsed).
    pub expires_in_secs: f64,
}

/// Every replica that has a heartbeat row, by id.
pub async fn replicas<C: ConnectionTrait>(
    conn: &C,
    lease_secs: u64,
) -> Result<Vec<ReplicaState>, DbErr> {
    let mut sql = sql();
    sql.push(
        "SELECT replica_id, started_at, heartbeat_at, \
         extract(epoch FROM now() - heartbeat_at)::float8 FROM cluster_replicas ORDER BY replica_id",
    );
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| {
            let age: f64 = row.try_get_by_index(3)?;
            Ok(ReplicaState {
                replica_id: row.try_get_by_index(0)?,
                started_at: row.try_get_by_index(1)?,
                heartbeat_at: row.try_get_by_index(2)?,
                heartbeat_age_secs: age,
                live: age < lease_secs as f64,
            })
        })
        .collect()
}

/// Every lease row, by account.
pub async fn all_leases<C: ConnectionTrait>(conn: &C) -> Result<Vec<LeaseState>, DbErr> {
    let mut sql = sql();
    sql.push(
        "SELECT account_id, owner, epoch, acquired_at, expires_at, \
         extract(epoch FROM now() - acquired_at)::float8, \
         extract(epoch FROM expires_at - now())::float8 FROM account_leases ORDER BY account_id",
    );
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| {
            Ok(LeaseState {
                account_id: row.try_get_by_index(0)?,
                owner: row.try_get_by_index(1)?,
                epoch: row.try_get_by_index(2)?,
                acquired_at: row.try_get_by_index(3)?,
                expires_at: row.try_get_by_index(4)?,
                held_for_secs: row.try_get_by_index(5)?,
                expires_in_secs: row.try_get_by_index(6)?,
            })
        })
        .collect()
}
