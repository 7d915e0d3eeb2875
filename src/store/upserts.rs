//! Batch upserts for the entity tables, keyed by `(account_id, id)`: a row
//! belongs to exactly one account, and no write for one account can change,
//! move or read another account's row. Before writing, each batch reads the
//! stored versions of its rows and keeps only the states that win by the
//! version rules (`super::version`); the upsert itself then writes nothing for
//! a row whose content is unchanged (`IS DISTINCT FROM` on PostgreSQL, `IS NOT`
//! on SQLite), so `updated_at` keeps its value. Ids that already exist under
//! another account are reported (`Written::cross_account`) and written to the
//! row's own account only. All functions take any connection or transaction,
//! so a writer can commit several of them (and the inbox rows they settle)
//! atomically; the caller serializes the writes of one account (its actor).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr};

use super::rows::{EntityJson, ListingRow, Owner, ReservationRow};
use super::version::{Stored, Version};
use super::{MAX_ROWS_PER_STATEMENT, Sql, chunk_by_size};

/// `(account_id, id)`: the key of every entity row.
pub type Key = (i64, i64);

/// What a batch wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Rows inserted or changed.
    pub keys: Vec<Key>,
    /// `(account, id)` of rows written whose id another account also holds.
    pub cross_account: Vec<Key>,
    /// Incoming states whose timestamp was clamped (`version::Observed`).
    pub clamped: usize,
}

impl Written {
    /// How many rows were written.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn extend(&mut self, other: Written) {
        self.keys.extend(other.keys);
        self.cross_account.extend(other.cross_account);
        self.clamped += other.clamped;
    }
}

/// The payloads' JSON texts, and the statement-sized ranges they fall in.
fn serialized<'a>(
    backend: DbBackend,
    payloads: impl Iterator<Item = &'a EntityJson>,
) -> (Vec<std::ops::Range<usize>>, std::vec::IntoIter<String>) {
    let texts: Vec<String> = payloads.map(|p| p.as_str().to_owned()).collect();
    let sizes: Vec<usize> = texts.iter().map(String::len).collect();
    (chunk_by_size(backend, &sizes), texts.into_iter())
}

/// A row that carries its key and version.
trait Versioned: Clone {
    fn owner(&self) -> Owner;
    fn id(&self) -> i64;
    fn version(&self) -> Version;
    fn key(&self) -> Key {
        (self.owner().account_id, self.id())
    }
}

impl Versioned for ListingRow {
    fn owner(&self) -> Owner {
        self.owner
    }
    fn id(&self) -> i64 {
        self.id
    }
    fn version(&self) -> Version {
        self.version
    }
}

impl Versioned for ReservationRow {
    fn owner(&self) -> Owner {
        self.owner
    }
    fn id(&self) -> i64 {
        self.id
    }
    fn version(&self) -> Version {
        self.version
    }
}

/// The rows of a batch to write to `table`: the newest per key, and of
/// those the ones that win against what is stored; with a `Written` that
/// counts the clamped stamps, and the keys whose id another account holds.
async fn winning<C: ConnectionTrait, T: Versioned>(
    conn: &C,
    table: &str,
    rows: &[T],
) -> Result<(Vec<T>, Written, Vec<Key>), DbErr> {
    let rows = newest_per_key(rows, T::key, T::version);
    let ids: Vec<i64> = rows.iter().map(|r| r.key().1).collect();
    let (stored, owners) = stored_versions(conn, table, &ids).await?;
    let written = Written {
        clamped: rows.iter().filter(|r| r.version().clamped).count(),
        ..Written::default()
    };
    let (rows, cross) = winners(rows, T::key, T::version, &stored, &owners);
    Ok((rows, written, cross))
}

/// One state per key: the newest by the version rules (the later one on a
/// tie: later in a batch means handed over later).
fn newest_per_key<T: Clone>(
    rows: &[T],
    key: impl Fn(&T) -> Key,
    version: impl Fn(&T) -> Version,
) -> Vec<T> {
    let mut position: HashMap<Key, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<T> = Vec::with_capacity(rows.len());
    for row in rows {
        match position.get(&key(row)) {
            Some(&i) => {
                if version(row).supersedes(&version(&out[i]).stored()) {
                    out[i] = row.clone();
                }
            }
            None => {
                position.insert(key(row), out.len());
                out.push(row.clone());
            }
        }
    }
    out
}

/// Stored versions of `table`'s rows with these Hostaway ids, by key, plus
/// which ids exist under which accounts (for the cross-account check).
async fn stored_versions<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    ids: &[i64],
) -> Result<(HashMap<Key, Stored>, HashMap<i64, HashSet<i64>>), DbErr> {
    let mut versions = HashMap::new();
    let mut owners: HashMap<i64, HashSet<i64>> = HashMap::new();
    for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(&format!(
            "SELECT account_id, id, source_updated_at, source_seen_at FROM {table} WHERE id"
        ))
        .in_ids(chunk.iter().copied());
        for row in conn.query_all_raw(sql.build()).await? {
            let account_id: i64 = row.try_get_by_index(0)?;
            let id: i64 = row.try_get_by_index(1)?;
            owners.entry(id).or_default().insert(account_id);
            versions.insert(
                (account_id, id),
                Stored {
                    stamp: row.try_get_by_index(2)?,
                    seen: row.try_get_by_index(3)?,
                },
            );
        }
    }
    Ok((versions, owners))
}

/// The rows that win against what is stored, and the keys of those whose id
/// another account holds.
fn winners<T: Clone>(
    rows: Vec<T>,
    key: impl Fn(&T) -> Key,
    version: impl Fn(&T) -> Version,
    stored: &HashMap<Key, Stored>,
    owners: &HashMap<i64, HashSet<i64>>,
) -> (Vec<T>, Vec<Key>) {
    let mut cross = Vec::new();
    let rows = rows
        .into_iter()
        .filter(|row| {
            let (account_id, id) = key(row);
            if owners
                .get(&id)
                .is_some_and(|accounts| accounts.iter().any(|a| *a != account_id))
            {
                cross.push((account_id, id));
            }
            stored
                .get(&(account_id, id))
                .is_none_or(|stored| version(row).supersedes(stored))
        })
        .collect();
    (rows, cross)
}

/// Inserts or updates listings; a listing that comes back is un-deleted.
pub async fn upsert_listings<C: ConnectionTrait>(
    conn: &C,
    rows: &[ListingRow],
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    let backend = conn.get_database_backend();
    let (rows, mut written, cross) = winning(conn, "listings", rows).await?;
    let (ranges, mut texts) = serialized(backend, rows.iter().map(|r| &r.payload));
    for range in ranges {
        let chunk = &rows[range];
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO listings (account_id, id, customer_id, raw_payload, deleted_at, \
             source_updated_at, source_seen_at, created_at, updated_at) ",
        );
        if backend == DbBackend::Postgres {
            let texts: Vec<String> = texts.by_ref().take(chunk.len()).collect();
            sql.push(
                "SELECT v.account_id, v.id, CASE WHEN v.has_customer THEN v.customer_id END, \
                 v.payload::jsonb, NULL::timestamptz, CASE WHEN v.has_stamp THEN v.stamp END, \
                 v.seen, ",
            );
            entity_arrays(&mut sql, chunk, texts, now);
            sql.pop_separator()
                .push(&format!(") AS v({ENTITY_ARRAYS})"));
        } else {
            sql.push("VALUES ");
            for (i, row) in chunk.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" })
                    .bind(row.owner.account_id)
                    .push(", ")
                    .bind(row.id)
                    .push(", ")
                    .bind(row.owner.customer_id)
                    .push(", ")
                    .bind_json(texts.next().unwrap_or_default())
                    .push(", NULL, ")
                    .bind(row.version.stamp)
                    .push(", ")
                    .bind(row.version.seen)
                    .push(", ")
                    .bind(now)
                    .push(", ")
                    .bind(now)
                    .push(")");
            }
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (account_id, id) DO UPDATE SET \
             customer_id = excluded.customer_id, raw_payload = excluded.raw_payload, \
             deleted_at = NULL, source_updated_at = excluded.source_updated_at, \
             source_seen_at = excluded.source_seen_at, updated_at = excluded.updated_at \
             WHERE listings.raw_payload {d} excluded.raw_payload \
             OR listings.deleted_at IS NOT NULL \
             OR listings.customer_id {d} excluded.customer_id RETURNING account_id, id"
        ));
        written.keys.extend(returned_keys(conn, sql).await?);
    }
    written.cross_account = only_written(cross, &written.keys);
    Ok(written)
}

/// Inserts or updates reservations: the newest version of each wins, in the
/// batch and against the table.
pub async fn upsert_reservations<C: ConnectionTrait>(
    conn: &C,
    rows: &[ReservationRow],
    now: DateTime<Utc>,
) -> Result<Written, DbErr> {
    let backend = conn.get_database_backend();
    let (rows, mut written, cross) = winning(conn, "reservations", rows).await?;
    let (ranges, mut texts) = serialized(backend, rows.iter().map(|r| &r.payload));
    for range in ranges {
        let chunk = &rows[range];
        let texts: Vec<String> = texts.by_ref().take(chunk.len()).collect();
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO reservations (account_id, id, customer_id, listing_id, status, arrival_date, \
             departure_date, source_updated_at, source_seen_at, raw_payload, created_at, updated_at) ",
        );
        if backend == DbBackend::Postgres {
            reservation_arrays(&mut sql, chunk, texts, now);
        } else {
            reservation_values(&mut sql, chunk, texts, now);
        }
        let d = sql.distinct();
        sql.push(&format!(
            " ON CONFLICT (account_id, id) DO UPDATE SET \
             customer_id = excluded.customer_id, listing_id = excluded.listing_id, \
             status = excluded.status, arrival_date = excluded.arrival_date, \
             departure_date = excluded.departure_date, \
             source_updated_at = excluded.source_updated_at, \
             source_seen_at = excluded.source_seen_at, raw_payload = excluded.raw_payload, \
             updated_at = excluded.updated_at \
             WHERE reservations.raw_payload {d} excluded.raw_payload \
             OR reservations.customer_id {d} excluded.customer_id RETURNING account_id, id"
        ));
        written.keys.extend(returned_keys(conn, sql).await?);
    }
    written.cross_account = only_written(cross, &written.keys);
    Ok(written)
}

/// SQLite: `VALUES (...), (...)`, one placeholder per column and row.
fn reservation_values(
    sql: &mut Sql,
    chunk: &[ReservationRow],
    texts: Vec<String>,
    now: DateTime<Utc>,
) {
    sql.push("VALUES ");
    for (i, (row, text)) in chunk.iter().zip(texts).enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" })
            .bind(row.owner.account_id)
            .push(", ")
            .bind(row.id)
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
            .bind(row.version.stamp)
            .push(", ")
            .bind(row.version.seen)
            .push(", ")
            .bind_json(text)
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(")");
    }
}

/// PostgreSQL: one `SELECT … FROM unnest(…)` of fixed text whatever the
/// batch's size (one array per column; a nullable column as a presence
/// flag beside its values, since bound arrays hold no NULLs), so each
/// connection plans it once.
fn reservation_arrays(
    sql: &mut Sql,
    chunk: &[ReservationRow],
    texts: Vec<String>,
    now: DateTime<Utc>,
) {
    let (has_status, statuses) = nullable(chunk.iter().map(|r| r.status.clone()));
    let (has_arrival, arrivals) = nullable(chunk.iter().map(|r| r.arrival_date));
    let (has_departure, departures) = nullable(chunk.iter().map(|r| r.departure_date));
    sql.push(
        "SELECT v.account_id, v.id, CASE WHEN v.has_customer THEN v.customer_id END, v.listing_id, \
         CASE WHEN v.has_status THEN v.status END, CASE WHEN v.has_arrival THEN v.arrival END, \
         CASE WHEN v.has_departure THEN v.departure END, CASE WHEN v.has_stamp THEN v.stamp END, \
         v.seen, v.payload::jsonb, ",
    );
    entity_arrays(sql, chunk, texts, now);
    sql.array(
        chunk.iter().map(|r| r.listing_id).collect::<Vec<i64>>(),
        "bigint",
    )
    .array(statuses, "text")
    .array(has_status, "bool")
    .array(arrivals, "date")
    .array(has_arrival, "bool")
    .array(departures, "date")
    .array(has_departure, "bool");
    sql.pop_separator().push(&format!(
        ") AS v({ENTITY_ARRAYS}, listing_id, status, has_status, arrival, has_arrival, departure, \
         has_departure)"
    ));
}

/// The columns every entity row has, in the order `entity_arrays` binds them.
const ENTITY_ARRAYS: &str =
    "account_id, id, customer_id, has_customer, stamp, has_stamp, seen, payload";

/// `$now::timestamptz, $now::timestamptz FROM unnest(` and the arrays of the
/// columns every entity row has (`ENTITY_ARRAYS`), each followed by `, `.
fn entity_arrays<T: Versioned>(sql: &mut Sql, chunk: &[T], texts: Vec<String>, now: DateTime<Utc>) {
    let (has_customer, customers) = nullable(chunk.iter().map(|r| r.owner().customer_id));
    let (has_stamp, stamps) = nullable(chunk.iter().map(|r| r.version().stamp));
    sql.bind(now)
        .push("::timestamptz, ")
        .bind(now)
        .push("::timestamptz FROM unnest(")
        .array(
            chunk.iter().map(|r| r.key().0).collect::<Vec<i64>>(),
            "bigint",
        )
        .array(
            chunk.iter().map(|r| r.key().1).collect::<Vec<i64>>(),
            "bigint",
        )
        .array(customers, "uuid")
        .array(has_customer, "bool")
        .array(stamps, "timestamptz")
        .array(has_stamp, "bool")
        .array(
            chunk
                .iter()
                .map(|r| r.version().seen)
                .collect::<Vec<DateTime<Utc>>>(),
            "timestamptz",
        )
        .array(texts, "text");
}

/// A nullable column as two arrays: whether each value is present, and the
/// values (a default where absent).
fn nullable<T: Default>(values: impl Iterator<Item = Option<T>>) -> (Vec<bool>, Vec<T>) {
    values.map(|v| (v.is_some(), v.unwrap_or_default())).unzip()
}

/// The cross-account keys among those written.
pub(super) fn only_written(cross: Vec<Key>, written: &[Key]) -> Vec<Key> {
    let written: HashSet<&Key> = written.iter().collect();
    cross.into_iter().filter(|k| written.contains(k)).collect()
}

/// Runs an INSERT/UPDATE ... RETURNING account_id, <id> and collects the keys written.
pub(super) async fn returned_keys<C: ConnectionTrait>(
    conn: &C,
    sql: Sql,
) -> Result<Vec<Key>, DbErr> {
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// Soft-deletes the given listings of an account where the delete's version
/// wins (`version::Source::Delete`); returns the keys deleted.
pub async fn soft_delete_listings<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    ids: &[i64],
    version: Version,
    now: DateTime<Utc>,
) -> Result<Vec<Key>, DbErr> {
    let (stored, _) = stored_versions(conn, "listings", ids).await?;
    let doomed: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| {
            stored
                .get(&(account_id, *id))
                .is_some_and(|stored| version.supersedes(stored))
        })
        .collect();
    let mut written = Vec::new();
    for chunk in doomed.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push("UPDATE listings SET deleted_at = ")
            .bind(now)
            .push(", updated_at = ")
            .bind(now)
            .push(", source_seen_at = ")
            .bind(version.seen)
            // The tombstone carries the delete's own version: without a
            // timestamp, only a state observed later replaces it, so an
            // update applied late (seen before the delete) cannot undo it.
            .push(", source_updated_at = ")
            .bind(version.stamp)
            .push(" WHERE deleted_at IS NULL AND account_id = ")
            .bind(account_id)
            .push(" AND id")
            .in_ids(chunk.iter().copied())
            .push(" RETURNING account_id, id");
        written.extend(returned_keys(conn, sql).await?);
    }
    Ok(written)
}

/// Soft-deletes every live listing of the account that is not in `present`
/// (listings that disappeared from a complete listing fetched as `version`
/// says); a listing written after that fetch is kept. Returns the keys deleted.
pub async fn delete_missing_listings<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    present: &[i64],
    version: Version,
    now: DateTime<Utc>,
) -> Result<Vec<Key>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT id FROM listings WHERE deleted_at IS NULL AND account_id = ")
        .bind(account_id);
    let present: HashSet<i64> = present.iter().copied().collect();
    let mut missing = Vec::new();
    for row in conn.query_all_raw(sql.build()).await? {
        let id: i64 = row.try_get_by_index(0)?;
        if !present.contains(&id) {
            missing.push(id);
        }
    }
    soft_delete_listings(conn, account_id, &missing, version, now).await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::store::rows::Owner;
    use crate::store::version::{Observed, Source};

    fn reservation(account_id: i64, id: i64, minute: u32, seen: u32, tag: &str) -> ReservationRow {
        let at = |m: u32| Utc.with_ymd_and_hms(2025, 1, 1, 0, m, 0).unwrap();
        let observed = Observed {
            seen: at(seen),
            source: Source::Webhook,
            max_future_skew: chrono::Duration::days(1),
        };
        ReservationRow {
            id,
            owner: Owner {
                account_id,
                customer_id: None,
            },
            listing_id: 1,
            status: None,
            arrival_date: None,
            departure_date: None,
            version: observed.version(Some(at(minute))),
            payload: crate::store::rows::EntityJson::of(&json!({ "tag": tag })),
        }
    }

    #[test]
    fn batch_keeps_newest_version_per_account_and_id() {
        let rows = vec![
            reservation(1, 1, 2, 10, "newer"),
            reservation(1, 1, 1, 11, "older"),
            reservation(1, 2, 1, 10, "a"),
            reservation(1, 2, 1, 11, "b"),
            reservation(9, 1, 0, 12, "another account"),
        ];
        let kept = newest_per_key(&rows, |r| (r.owner.account_id, r.id), |r| r.version);
        let tags: Vec<_> = kept
            .iter()
            .map(|r| serde_json::from_str::<serde_json::Value>(r.payload.as_str()).unwrap())
            .map(|p| p["tag"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            tags,
            vec!["newer", "b", "another account"],
            "ties go to the later delivery"
        );
    }

    #[test]
    fn winners_skip_older_states_and_report_shared_ids() {
        let rows = vec![reservation(1, 1, 5, 10, "x"), reservation(1, 2, 1, 10, "y")];
        let mut stored = HashMap::new();
        stored.insert((1, 2), reservation(1, 2, 3, 9, "z").version.stored());
        let owners = HashMap::from([(1, HashSet::from([7])), (2, HashSet::from([1]))]);
        let (kept, cross) = winners(
            rows,
            |r| (r.owner.account_id, r.id),
            |r| r.version,
            &stored,
            &owners,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, 1);
        assert_eq!(cross, vec![(1, 1)], "id 1 is also account 7's");
    }
}
