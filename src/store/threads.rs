//! Message threads: one row per reservation holding its messages, merged
//! message by message under the version rules (`super::version`). Like the
//! other upserts, every read and write is scoped by `(account_id, id)`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use serde_json::Value;

use super::rows::{ThreadMerge, last_message_at, merge_versioned};
use super::upserts::{Key, Written, only_written, returned_keys};
use super::{MAX_ROWS_PER_STATEMENT, Sql, chunk_by_size};

/// Merges messages into their reservations' threads, in order: by message
/// id, each message replacing its stored copy only when its version wins,
/// sorted oldest first; a thread that does not exist yet is created. Reads
/// (and on PostgreSQL locks) only the rows of each merge's own account, so
/// call it inside a write transaction.
pub async fn merge_message_threads<C: ConnectionTrait>(
    conn: &C,
    merges: &[ThreadMerge],
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    // The threads touched, per account, in first-seen order.
    let mut order: Vec<Key> = Vec::new();
    let mut by_account: HashMap<i64, Vec<i64>> = HashMap::new();
    for merge in merges {
        let key = (merge.owner.account_id, merge.reservation_id);
        if !order.contains(&key) {
            order.push(key);
            by_account.entry(key.0).or_default().push(key.1);
        }
    }
    let mut threads: HashMap<Key, StoredThread> = HashMap::new();
    let mut cross: HashSet<Key> = HashSet::new();
    for (account_id, ids) in &by_account {
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            for (id, thread) in load_threads(conn, *account_id, chunk).await? {
                threads.insert((*account_id, id), thread);
            }
            for id in ids_of_other_accounts(conn, *account_id, chunk).await? {
                cross.insert((*account_id, id));
            }
        }
    }
    let mut clamped = 0;
    let mut owners = HashMap::new();
    for merge in merges {
        let key = (merge.owner.account_id, merge.reservation_id);
        owners.insert(key, merge.owner);
        let thread = threads.entry(key).or_default();
        let (messages, clamped_here) = merge_versioned(
            std::mem::take(&mut thread.messages),
            merge.messages.clone(),
            &merge.observed,
            thread.seen,
        );
        clamped += clamped_here;
        thread.messages = messages;
        thread.seen = Some(
            thread
                .seen
                .map_or(merge.observed.seen, |s| s.max(merge.observed.seen)),
        );
        if merge.conversation_id.is_some() {
            thread.conversation_id = merge.conversation_id;
        }
    }
    // The merged threads, as they will be written.
    let merged: Vec<(Key, &StoredThread, String)> = order
        .iter()
        .filter_map(|key| {
            let thread = threads.get(key)?;
            Some((
                *key,
                thread,
                Value::Array(thread.messages.clone()).to_string(),
            ))
        })
        .collect();
    let sizes: Vec<usize> = merged.iter().map(|(_, _, text)| text.len()).collect();
    let mut written = Written {
        clamped,
        ..Written::default()
    };
    for range in chunk_by_size(conn.get_database_backend(), &sizes) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO message_threads (account_id, reservation_id, customer_id, conversation_id, \
             raw_messages, last_message_at, source_seen_at, created_at, updated_at) VALUES ",
        );
        for (i, (key, thread, text)) in merged[range].iter().enumerate() {
            let owner = owners.get(key).map(|o| o.customer_id).unwrap_or_default();
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(key.0)
                .push(", ")
                .bind(key.1)
                .push(", ")
                .bind(owner)
                .push(", ")
                .bind(thread.conversation_id)
                .push(", ")
                .bind_json(text.clone())
                .push(", ")
                .bind(last_message_at(&thread.messages))
                .push(", ")
                .bind(thread.seen)
                .push(", ")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(")");
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (account_id, reservation_id) DO UPDATE SET \
             customer_id = excluded.customer_id, conversation_id = excluded.conversation_id, \
             raw_messages = excluded.raw_messages, last_message_at = excluded.last_message_at, \
             source_seen_at = excluded.source_seen_at, updated_at = excluded.updated_at \
             WHERE message_threads.raw_messages {d} excluded.raw_messages \
             OR message_threads.conversation_id {d} excluded.conversation_id \
             OR message_threads.customer_id {d} excluded.customer_id \
             RETURNING account_id, reservation_id"
        ));
        written.keys.extend(returned_keys(conn, sql).await?);
    }
    written.cross_account = only_written(cross.into_iter().collect(), &written.keys);
    Ok(written)
}

/// A thread as stored (or as it will be written).
#[derive(Debug, Default)]
struct StoredThread {
    messages: Vec<Value>,
    conversation_id: Option<i64>,
    seen: Option<DateTime<Utc>>,
}

/// The account's threads among `reservation_ids`, locked on PostgreSQL.
async fn load_threads<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    reservation_ids: &[i64],
) -> Result<HashMap<i64, StoredThread>, DbErr> {
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push(
        "SELECT reservation_id, raw_messages, conversation_id, source_seen_at FROM message_threads \
         WHERE account_id = ",
    )
    .bind(account_id)
    .push(" AND reservation_id")
    .in_ids(reservation_ids.iter().copied());
    if backend == DbBackend::Postgres {
        sql.push(" FOR UPDATE");
    }
    let mut out = HashMap::new();
    for row in conn.query_all_raw(sql.build()).await? {
        let id: i64 = row.try_get_by_index(0)?;
        let messages: Value = row.try_get_by_index(1)?;
        let messages = match messages {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        out.insert(
            id,
            StoredThread {
                messages,
                conversation_id: row.try_get_by_index(2)?,
                seen: row.try_get_by_index(3)?,
            },
        );
    }
    Ok(out)
}

/// Which of these thread ids other accounts hold too (nothing else is read).
async fn ids_of_other_accounts<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    reservation_ids: &[i64],
) -> Result<Vec<i64>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT DISTINCT reservation_id FROM message_threads WHERE account_id <> ")
        .bind(account_id)
        .push(" AND reservation_id")
        .in_ids(reservation_ids.iter().copied());
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect()
}
