//! Batch upserts for the entity tables. Each writes nothing for a row whose
//! content is unchanged (`IS DISTINCT FROM` on PostgreSQL, `IS NOT` on SQLite),
//! so `updated_at` keeps its value; a reservation never replaces a stored one
//! whose `source_updated_at` is newer. All functions take any connection or
//! transaction, so a writer can commit several of them (and the inbox rows
//! they settle) atomically.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use serde_json::Value;

use super::rows::{ListingRow, ReservationRow, ThreadMerge, last_message_at, merge_messages};
use super::{MAX_ROWS_PER_STATEMENT, Sql, chunk_by_size};

/// JSON texts of the payloads, and the statement-sized ranges they fall in.
fn serialized<'a>(
    payloads: impl Iterator<Item = &'a Value>,
) -> (Vec<std::ops::Range<usize>>, std::vec::IntoIter<String>) {
    let texts: Vec<String> = payloads.map(Value::to_string).collect();
    let sizes: Vec<usize> = texts.iter().map(String::len).collect();
    (chunk_by_size(&sizes), texts.into_iter())
}

/// Keeps the last row per id (later rows in a batch are newer deliveries).
fn last_per_id<T: Clone>(rows: &[T], id: impl Fn(&T) -> i64) -> Vec<T> {
    let mut position: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows {
        match position.get(&id(row)) {
            Some(&i) => out[i] = row.clone(),
            None => {
                position.insert(id(row), out.len());
                out.push(row.clone());
            }
        }
    }
    out
}

/// Inserts or updates listings; a listing that comes back is un-deleted.
/// Returns the ids of rows inserted or changed.
pub async fn upsert_listings<C: ConnectionTrait>(
    conn: &C,
    rows: &[ListingRow],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    let rows = last_per_id(rows, |r| r.id);
    let mut written = Vec::new();
    let (ranges, mut texts) = serialized(rows.iter().map(|r| r.payload.as_ref()));
    for range in ranges {
        let chunk = &rows[range];
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO listings (id, account_id, customer_id, raw_payload, deleted_at, created_at, updated_at) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(row.id)
                .push(", ")
                .bind(row.owner.account_id)
                .push(", ")
                .bind(row.owner.customer_id)
                .push(", ")
                .bind_json(texts.next().unwrap_or_default())
                .push(", NULL, ")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(")");
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, \
             customer_id = excluded.customer_id, raw_payload = excluded.raw_payload, \
             deleted_at = NULL, updated_at = excluded.updated_at \
             WHERE listings.raw_payload {d} excluded.raw_payload \
             OR listings.deleted_at IS NOT NULL \
             OR listings.account_id {d} excluded.account_id \
             OR listings.customer_id {d} excluded.customer_id RETURNING id"
        ));
        written.extend(returned_ids(conn, sql).await?);
    }
    Ok(written)
}

/// Inserts or updates reservations. Within a batch the newest version of each
/// reservation wins; against the table, a stored row with a newer
/// `source_updated_at` is kept. A row without a timestamp on either side is
/// replaced (there is nothing to compare).
pub async fn upsert_reservations<C: ConnectionTrait>(
    conn: &C,
    rows: &[ReservationRow],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    let rows = newest_per_reservation(rows);
    let mut written = Vec::new();
    let (ranges, mut texts) = serialized(rows.iter().map(|r| r.payload.as_ref()));
    for range in ranges {
        let chunk = &rows[range];
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO reservations (id, account_id, customer_id, listing_id, status, arrival_date, \
             departure_date, source_updated_at, raw_payload, created_at, updated_at) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(row.id)
                .push(", ")
                .bind(row.owner.account_id)
                .push(", ")
                .bind(row.owner.customer_id)
                .push(", ")
                .bind(row.listing_id)
                .push(", ")
                .bind(row.status.clone())
                .push(", ")
                .bind(row.arrival_date)
                .push(", ")
                .bind(row.departure_date)
                .push(", ")
                .bind(row.source_updated_at)
                .push(", ")
                .bind_json(texts.next().unwrap_or_default())
                .push(", ")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(")");
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (id) DO UPDATE SET account_id = excluded.account_id, \
             customer_id = excluded.customer_id, listing_id = excluded.listing_id, \
             status = excluded.status, arrival_date = excluded.arrival_date, \
             departure_date = excluded.departure_date, \
             source_updated_at = excluded.source_updated_at, raw_payload = excluded.raw_payload, \
             updated_at = excluded.updated_at \
             WHERE (reservations.source_updated_at IS NULL \
                    OR excluded.source_updated_at IS NULL \
                    OR excluded.source_updated_at >= reservations.source_updated_at) \
             AND (reservations.raw_payload {d} excluded.raw_payload \
                  OR reservations.account_id {d} excluded.account_id \
                  OR reservations.customer_id {d} excluded.customer_id) RETURNING id"
        ));
        written.extend(returned_ids(conn, sql).await?);
    }
    Ok(written)
}

/// One row per reservation: the newest by `source_updated_at`, the later one on ties.
fn newest_per_reservation(rows: &[ReservationRow]) -> Vec<ReservationRow> {
    let mut position: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<ReservationRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match position.get(&row.id) {
            Some(&i) => {
                let kept = &out[i];
                let older = matches!(
                    (row.source_updated_at, kept.source_updated_at),
                    (Some(new), Some(old)) if new < old
                );
                if !older {
                    out[i] = row.clone();
                }
            }
            None => {
                position.insert(row.id, out.len());
                out.push(row.clone());
            }
        }
    }
    out
}

/// Merges messages into their reservations' threads: by message id, sorted
/// oldest first, creating a thread that does not exist yet. Reads and writes
/// the same rows, so call it inside a write transaction.
pub async fn merge_message_threads<C: ConnectionTrait>(
    conn: &C,
    merges: &[ThreadMerge],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    // Fold merges for the same reservation together, in order.
    let mut combined: Vec<ThreadMerge> = Vec::new();
    let mut position: HashMap<i64, usize> = HashMap::new();
    for merge in merges {
        match position.get(&merge.reservation_id) {
            Some(&i) => {
                let entry = &mut combined[i];
                entry.messages.extend(merge.messages.iter().cloned());
                entry.owner = merge.owner;
                if merge.conversation_id.is_some() {
                    entry.conversation_id = merge.conversation_id;
                }
            }
            None => {
                position.insert(merge.reservation_id, combined.len());
                combined.push(merge.clone());
            }
        }
    }
    let mut existing = HashMap::new();
    for chunk in combined.chunks(MAX_ROWS_PER_STATEMENT) {
        existing.extend(load_threads(conn, chunk.iter().map(|m| m.reservation_id)).await?);
    }
    // The merged threads, as they will be written.
    let merged: Vec<MergedThread> = combined
        .iter()
        .map(|merge| {
            let (stored, stored_conversation) =
                existing.remove(&merge.reservation_id).unwrap_or_default();
            let messages = merge_messages(stored, merge.messages.clone());
            let last = last_message_at(&messages);
            let conversation = merge.conversation_id.or(stored_conversation);
            (
                merge,
                conversation,
                Value::Array(messages).to_string(),
                last,
            )
        })
        .collect();
    let sizes: Vec<usize> = merged.iter().map(|(_, _, text, _)| text.len()).collect();
    let mut written = Vec::new();
    for range in chunk_by_size(&sizes) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "INSERT INTO message_threads (reservation_id, account_id, customer_id, conversation_id, \
             raw_messages, last_message_at, created_at, updated_at) VALUES ",
        );
        for (i, (merge, conversation, text, last)) in merged[range].iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .bind(merge.reservation_id)
                .push(", ")
                .bind(merge.owner.account_id)
                .push(", ")
                .bind(merge.owner.customer_id)
                .push(", ")
                .bind(*conversation)
                .push(", ")
                .bind_json(text.clone())
                .push(", ")
                .bind(*last)
                .push(", ")
                .bind(now)
                .push(", ")
                .bind(now)
                .push(")");
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (reservation_id) DO UPDATE SET account_id = excluded.account_id, \
             customer_id = excluded.customer_id, conversation_id = excluded.conversation_id, \
             raw_messages = excluded.raw_messages, last_message_at = excluded.last_message_at, \
             updated_at = excluded.updated_at \
             WHERE message_threads.raw_messages {d} excluded.raw_messages \
             OR message_threads.conversation_id {d} excluded.conversation_id \
             OR message_threads.account_id {d} excluded.account_id \
             OR message_threads.customer_id {d} excluded.customer_id RETURNING reservation_id"
        ));
        written.extend(returned_ids(conn, sql).await?);
    }
    Ok(written)
}

/// Runs an INSERT ... RETURNING <id> and collects the ids of rows written.
async fn returned_ids<C: ConnectionTrait>(conn: &C, sql: Sql) -> Result<Vec<i64>, DbErr> {
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect()
}

type StoredThread = (Vec<Value>, Option<i64>);

/// A thread ready to write: its merge, conversation id, messages as JSON
/// text, and the time of its newest message.
type MergedThread<'a> = (&'a ThreadMerge, Option<i64>, String, Option<DateTime<Utc>>);

async fn load_threads<C: ConnectionTrait>(
    conn: &C,
    reservation_ids: impl IntoIterator<Item = i64>,
) -> Result<HashMap<i64, StoredThread>, DbErr> {
    let backend = conn.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("SELECT reservation_id, raw_messages, conversation_id FROM message_threads WHERE reservation_id IN ")
        .bind_list(reservation_ids);
    if backend == DbBackend::Postgres {
        sql.push(" FOR UPDATE");
    }
    let mut out = HashMap::new();
    for row in conn.query_all_raw(sql.build()).await? {
        let id: i64 = row.try_get_by_index(0)?;
        let messages: Value = row.try_get_by_index(1)?;
        let conversation: Option<i64> = row.try_get_by_index(2)?;
        let messages = match messages {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        out.insert(id, (messages, conversation));
    }
    Ok(out)
}

/// Soft-deletes the given listings of an account (a `listing.deleted` event).
pub async fn soft_delete_listings<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    let mut written = Vec::new();
    for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push("UPDATE listings SET deleted_at = ")
            .bind(now)
            .push(", updated_at = ")
            .bind(now)
            .push(" WHERE deleted_at IS NULL AND account_id = ")
            .bind(account_id)
            .push(" AND id IN ")
            .bind_list(chunk.iter().copied())
            .push(" RETURNING id");
        written.extend(returned_ids(conn, sql).await?);
    }
    Ok(written)
}

/// Soft-deletes every live listing of the account that is not in `present`
/// (listings that disappeared from Hostaway). Returns the ids deleted.
pub async fn delete_missing_listings<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    present: &[i64],
    now: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT id FROM listings WHERE deleted_at IS NULL AND account_id = ")
        .bind(account_id);
    let present: std::collections::HashSet<i64> = present.iter().copied().collect();
    let mut missing = Vec::new();
    for row in conn.query_all_raw(sql.build()).await? {
        let id: i64 = row.try_get_by_index(0)?;
        if !present.contains(&id) {
            missing.push(id);
        }
    }
    soft_delete_listings(conn, account_id, &missing, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::Owner;
    use serde_json::json;

    fn reservation(id: i64, updated: &str, tag: &str) -> ReservationRow {
        ReservationRow {
            id,
            owner: Owner {
                account_id: 1,
                customer_id: None,
            },
            listing_id: 1,
            status: None,
            arrival_date: None,
            departure_date: None,
            source_updated_at: crate::hostaway::decode::datetime(&json!(updated)),
            payload: json!({ "tag": tag }).into(),
        }
    }

    #[test]
    fn batch_keeps_newest_version_per_reservation() {
        let rows = vec![
            reservation(1, "2025-01-02 00:00:00", "newer"),
            reservation(1, "2025-01-01 00:00:00", "older"),
            reservation(2, "2025-01-01 00:00:00", "a"),
            reservation(2, "2025-01-01 00:00:00", "b"),
        ];
        let kept = newest_per_reservation(&rows);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].payload["tag"], "newer");
        assert_eq!(kept[1].payload["tag"], "b", "ties go to the later delivery");
    }
}
