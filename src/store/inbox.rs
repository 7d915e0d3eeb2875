//! The webhook inbox (`webhook_events`): appended before a delivery is
//! acknowledged, drained in id order by each account's actor, retried with
//! backoff, dead-lettered after the last attempt, replayable, pruned.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MAX_ROWS_PER_STATEMENT, Sql, chunk_by_size};
use crate::hostaway::json::Json;
use crate::hostaway::webhook::{Entity, EventKind};

/// An inbox row's status, stored as its lower-case name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum EventStatus {
    Pending,
    Processed,
    Failed,
    Ignored,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(value: &str) -> Option<Self> {
        value.parse().ok()
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub account_id: i64,
    pub event_type: String,
    pub object_type: Option<String>,
    pub dedupe_key: String,
    /// The object the event is about (see `hostaway::webhook::entity_key`).
    pub entity_key: String,
    /// The JSON text stored as the payload: the bytes received (or, when
    /// NULs had to be replaced, the body written again).
    pub text: String,
    /// What the mirror needs of a handled event's entity (read once, at
    /// the HTTP boundary); handed to the account's actor with the row.
    pub entity: Option<Arc<Entity>>,
    /// `Pending` for events to apply, `Ignored` for events kept only for the record.
    pub status: EventStatus,
    /// Set by the ingest actor from the event's append span.
    pub traceparent: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Bytes of the delivery's body (for memory bounds).
    pub size: usize,
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored(i64),
    Duplicate,
}

/// An inbox row as the AccountActor needs it.
#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: i64,
    pub account_id: i64,
    pub event_type: String,
    /// What the mirror needs of the event's entity (`None` when the row
    /// has none: applying it fails). Shared: the row is handed between
    /// actors and retried without copying.
    pub entity: Option<Arc<Entity>>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Bytes held for the row (its stored text and the entity's text; for
    /// memory bounds).
    pub size: usize,
}

#[cfg(test)]
impl InboxRow {
    /// A pending `reservation.updated` row of `size` payload bytes.
    pub(crate) fn sample(id: i64, size: usize) -> InboxRow {
        InboxRow {
            id,
            account_id: 1,
            event_type: "reservation.updated".into(),
            entity: None,
            attempts: 0,
            next_attempt_at: None,
            traceparent: None,
            received_at: Utc::now(),
            size,
        }
    }
}

/// An inbox row for the admin API (the payload included).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub id: i64,
    pub account_id: i64,
    pub event_type: String,
    pub object_type: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub traceparent: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// Only when asked for (it holds guest messages and personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

/// Appends events, one statement per chunk, and recognises redeliveries: an
/// event whose dedupe key equals that of the latest event stored for the same
/// object (`entity_key`, in the same account) is a duplicate, and so is one
/// equal to the event just before it for that object in the same batch. The
/// same event after an intervening change to its object is stored again (the
/// version rules decide what it changes). Results are in input order.
pub async fn append<C: ConnectionTrait>(
    conn: &C,
    events: &[NewEvent],
) -> Result<Vec<Appended>, DbErr> {
    let plan = Plan::of(conn.get_database_backend(), events);
    plan.run(conn, events).await
}

/// `append`, durably, on the pool: a batch that is one statement on
/// PostgreSQL is committed as that statement alone (no `BEGIN`/`COMMIT`
/// round trips; one statement is atomic by itself); several statements, or
/// SQLite (which takes its write lock up front), in one transaction.
pub async fn append_committed(
    db: &sea_orm::DatabaseConnection,
    events: &[NewEvent],
) -> Result<Vec<Appended>, DbErr> {
    let backend = db.get_database_backend();
    let plan = Plan::of(backend, events);
    if backend == DbBackend::Postgres && plan.ranges.len() <= 1 {
        return plan.run(db, events).await;
    }
    let tx = super::begin_write(db).await?;
    let results = plan.run(&tx, events).await?;
    tx.commit().await?;
    Ok(results)
}

/// The statements an append takes: which events are candidates (the rest
/// repeat the event before them for their object in the same batch) and
/// how they are cut into statements.
struct Plan {
    backend: DbBackend,
    /// `(index into events, first of its object in the batch)`.
    candidates: Vec<(usize, bool)>,
    /// Each candidate's JSON text: the bytes received when known.
    texts: Vec<String>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Plan {
    fn of(backend: DbBackend, events: &[NewEvent]) -> Plan {
        let mut last_in_batch: HashMap<(i64, &str), &str> = HashMap::new();
        let mut candidates: Vec<(usize, bool)> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let object = (event.account_id, event.entity_key.as_str());
            match last_in_batch.insert(object, event.dedupe_key.as_str()) {
                Some(previous) if previous == event.dedupe_key => {}
                Some(_) => candidates.push((index, false)),
                None => candidates.push((index, true)),
            }
        }
        let texts: Vec<String> = candidates
            .iter()
            .map(|(i, _)| {
                let event = &events[*i];
                event.text.clone()
            })
            .collect();
        let sizes: Vec<usize> = texts.iter().map(String::len).collect();
        let ranges = chunk_by_size(backend, &sizes);
        Plan {
            backend,
            candidates,
            texts,
            ranges,
        }
    }

    async fn run<C: ConnectionTrait>(
        self,
        conn: &C,
        events: &[NewEvent],
    ) -> Result<Vec<Appended>, DbErr> {
        let mut results = vec![Appended::Duplicate; events.len()];
        let mut texts = self.texts.into_iter();
        for range in self.ranges {
            let chunk = &self.candidates[range];
            let texts: Vec<String> = texts.by_ref().take(chunk.len()).collect();
            let statement = match self.backend {
                DbBackend::Postgres => unnest_insert(events, chunk, texts),
                _ => values_insert(self.backend, events, chunk, texts),
            };
            let mut stored: HashMap<(i64, String), Vec<i64>> = HashMap::new();
            for row in conn.query_all_raw(statement).await? {
                let id: i64 = row.try_get_by_index(0)?;
                let account_id: i64 = row.try_get_by_index(1)?;
                let object: String = row.try_get_by_index(2)?;
                stored.entry((account_id, object)).or_default().push(id);
            }
            // Ids follow the input order; of an object's candidates only the
            // first can have been dropped.
            let mut of_object: HashMap<(i64, &str), Vec<usize>> = HashMap::new();
            for (index, _) in chunk {
                let event = &events[*index];
                of_object
                    .entry((event.account_id, event.entity_key.as_str()))
                    .or_default()
                    .push(*index);
            }
            for ((account_id, object), indexes) in of_object {
                let mut ids = stored
                    .remove(&(account_id, object.to_string()))
                    .unwrap_or_default();
                ids.sort_unstable();
                let skip = indexes.len().saturating_sub(ids.len());
                for (index, id) in indexes.into_iter().skip(skip).zip(ids) {
                    results[index] = Appended::Stored(id);
                }
            }
        }
        Ok(results)
    }
}

/// A candidate first in its batch is a redelivery when the latest stored
/// event of its object has its key (`v` names the candidate's columns).
const NOT_A_REDELIVERY: &str = "NOT (v.first AND EXISTS (SELECT 1 FROM webhook_events w \
     WHERE w.id = (SELECT MAX(x.id) FROM webhook_events x \
                   WHERE x.account_id = v.account_id AND x.entity_key = v.entity_key) \
     AND w.dedupe_key = v.dedupe_key))";

/// PostgreSQL: one statement of the same text whatever the batch's size
/// (one array parameter per column), so each connection prepares and plans
/// it once and reuses it.
fn unnest_insert(events: &[NewEvent], chunk: &[(usize, bool)], texts: Vec<String>) -> Statement {
    let picked = || chunk.iter().map(|(i, _)| &events[*i]);
    let optional = |value: Option<&String>| (value.is_some(), value.cloned().unwrap_or_default());
    let (has_object, objects): (Vec<bool>, Vec<String>) =
        picked().map(|e| optional(e.object_type.as_ref())).unzip();
    let (has_trace, traces): (Vec<bool>, Vec<String>) =
        picked().map(|e| optional(e.traceparent.as_ref())).unzip();
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push(
        "INSERT INTO webhook_events (account_id, event_type, object_type, dedupe_key, entity_key, \
         payload, status, attempts, traceparent, received_at) \
         SELECT v.account_id, v.event_type, CASE WHEN v.has_object THEN v.object_type END, \
         v.dedupe_key, v.entity_key, v.payload::json, v.status, 0, \
         CASE WHEN v.has_trace THEN v.traceparent END, v.received_at FROM unnest(",
    )
    .bind(picked().map(|e| e.account_id).collect::<Vec<i64>>())
    .push("::bigint[], ")
    .bind(
        picked()
            .map(|e| e.event_type.clone())
            .collect::<Vec<String>>(),
    )
    .push("::text[], ")
    .bind(objects)
    .push("::text[], ")
    .bind(has_object)
    .push("::bool[], ")
    .bind(
        picked()
            .map(|e| e.dedupe_key.clone())
            .collect::<Vec<String>>(),
    )
    .push("::text[], ")
    .bind(
        picked()
            .map(|e| e.entity_key.clone())
            .collect::<Vec<String>>(),
    )
    .push("::text[], ")
    .bind(texts)
    .push("::text[], ")
    .bind(
        picked()
            .map(|e| e.status.as_str().to_string())
            .collect::<Vec<String>>(),
    )
    .push("::text[], ")
    .bind(traces)
    .push("::text[], ")
    .bind(has_trace)
    .push("::bool[], ")
    .bind(
        picked()
            .map(|e| e.received_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .push("::timestamptz[], ")
    .bind(chunk.iter().map(|(_, first)| *first).collect::<Vec<bool>>())
    .push(
        "::bool[]) WITH ORDINALITY AS v(account_id, event_type, object_type, has_object, \
         dedupe_key, entity_key, payload, status, traceparent, has_trace, received_at, first, ord) \
         WHERE ",
    )
    .push(NOT_A_REDELIVERY)
    .push(" ORDER BY v.ord RETURNING id, account_id, entity_key");
    sql.build()
}

/// SQLite: a multi-row `VALUES` list (its lengths are powers of two, see
/// `chunk_by_size`).
fn values_insert(
    backend: DbBackend,
    events: &[NewEvent],
    chunk: &[(usize, bool)],
    texts: Vec<String>,
) -> Statement {
    let mut sql = Sql::new(backend);
    sql.push(
        "INSERT INTO webhook_events (account_id, event_type, object_type, dedupe_key, entity_key, \
         payload, status, attempts, traceparent, received_at) \
         SELECT account_id, event_type, object_type, dedupe_key, entity_key, payload, status, 0, \
         traceparent, received_at FROM (SELECT column1 AS account_id, column2 AS event_type, \
         column3 AS object_type, column4 AS dedupe_key, column5 AS entity_key, column6 AS payload, \
         column7 AS status, column8 AS traceparent, column9 AS received_at, column10 AS first \
         FROM (VALUES ",
    );
    for (i, ((index, first), text)) in chunk.iter().zip(texts).enumerate() {
        let event = &events[*index];
        sql.push(if i == 0 { "(" } else { ", (" })
            .bind(event.account_id)
            .push(", ")
            .bind(event.event_type.clone())
            .push(", ")
            .bind(event.object_type.clone())
            .push(", ")
            .bind(event.dedupe_key.clone())
            .push(", ")
            .bind(event.entity_key.clone())
            .push(", ")
            .bind_json(text)
            .push(", ")
            .bind(event.status.as_str())
            .push(", ")
            .bind(event.traceparent.clone())
            .push(", ")
            .bind(event.received_at)
            .push(", ")
            .bind(*first)
            .push(")");
    }
    sql.push(")) AS v WHERE ")
        .push(NOT_A_REDELIVERY)
        .push(" RETURNING id, account_id, entity_key");
    sql.build()
}

/// The columns of an `InboxRow`, each behind `prefix` (a table alias and
/// its dot, or nothing). The payload is read as text on either backend.
fn row_columns(prefix: &str) -> String {
    format!(
        "{p}id, {p}account_id, {p}event_type, CAST({p}payload AS TEXT), {p}attempts, \
         {p}next_attempt_at, {p}traceparent, {p}received_at",
        p = prefix
    )
}

fn inbox_row(row: &QueryResult) -> Result<InboxRow, DbErr> {
    let event_type: String = row.try_get_by_index(2)?;
    let text: String = row.try_get_by_index(3)?;
    let entity = EventKind::of(&event_type)
        .and_then(|kind| Entity::of(kind, &Json::parse(text.as_bytes()).ok()?))
        .map(Arc::new);
    Ok(InboxRow {
        id: row.try_get_by_index(0)?,
        account_id: row.try_get_by_index(1)?,
        event_type,
        size: text.len() + entity.as_ref().map_or(0, |e| e.text.len()),
        entity,
        attempts: row.try_get_by_index(4)?,
        next_attempt_at: row.try_get_by_index(5)?,
        traceparent: row.try_get_by_index(6)?,
        received_at: row.try_get_by_index(7)?,
    })
}

/// Pending rows of an account with id above `after_id`, oldest first.
pub async fn pending_for_account<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
    after_id: i64,
    limit: u64,
) -> Result<Vec<InboxRow>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!(
        "SELECT {} FROM webhook_events WHERE account_id = ",
        row_columns("")
    ))
    .bind(account_id)
    .push(" AND status = 'pending' AND id > ")
    .bind(after_id)
    .push(" ORDER BY id LIMIT ")
    .bind(limit as i64);
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(inbox_row)
        .collect()
}

/// Cluster mode: the pending rows of several accounts past a cursor each,
/// at most `per_account` rows of each, in one statement (PostgreSQL).
pub async fn pending_after<C: ConnectionTrait>(
    conn: &C,
    cursors: &[(i64, i64)],
    per_account: u64,
) -> Result<Vec<InboxRow>, DbErr> {
    if cursors.is_empty() {
        return Ok(Vec::new());
    }
    let columns = row_columns("e.");
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT r.* FROM unnest(")
        .bind(cursors.iter().map(|c| c.0).collect::<Vec<_>>())
        .push("::bigint[], ")
        .bind(cursors.iter().map(|c| c.1).collect::<Vec<_>>())
        .push(&format!(
            "::bigint[]) AS c(account_id, after_id) CROSS JOIN LATERAL (SELECT {columns} \
             FROM webhook_events e WHERE e.account_id = c.account_id AND e.status = 'pending' \
             AND e.id > c.after_id ORDER BY e.id LIMIT "
        ))
        .bind(per_account as i64)
        .push(") r ORDER BY r.id");
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(inbox_row)
        .collect()
}

/// Per account, the first pending row received before `before` (rows that
/// have waited: cluster mode's catch-up scans from there).
pub async fn waiting_since<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
) -> Result<Vec<(i64, i64)>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT account_id, min(id) FROM webhook_events WHERE status = 'pending' AND received_at < ")
        .bind(before)
        .push(" GROUP BY account_id ORDER BY account_id");
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// Pending rows by id (for re-queued events).
pub async fn rows_by_id<C: ConnectionTrait>(conn: &C, ids: &[i64]) -> Result<Vec<InboxRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(&format!(
        "SELECT {} FROM webhook_events WHERE status = 'pending' AND id",
        row_columns("")
    ))
    .in_ids(ids.iter().copied())
    .push(" ORDER BY id");
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(inbox_row)
        .collect()
}

/// The highest inbox id of an account (any status), 0 when it has none.
pub async fn max_id_for_account<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
) -> Result<i64, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT MAX(id) FROM webhook_events WHERE account_id = ")
        .bind(account_id);
    let row = conn.query_one_raw(sql.build()).await?;
    Ok(row
        .map(|r| r.try_get_by_index::<Option<i64>>(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// Accounts that have pending rows (re-dispatched at start).
pub async fn accounts_with_pending<C: ConnectionTrait>(conn: &C) -> Result<Vec<i64>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT DISTINCT account_id FROM webhook_events WHERE status = 'pending' ORDER BY account_id");
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect()
}

/// Marks rows applied.
pub async fn mark_processed<C: ConnectionTrait>(
    conn: &C,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push("UPDATE webhook_events SET status = 'processed', processed_at = ")
            .bind(now)
            .push(", last_error = NULL WHERE id")
            .in_ids(chunk.iter().copied());
        conn.execute_raw(sql.build()).await?;
    }
    Ok(())
}

/// Records a failed attempt: the row stays pending until `retry_at`, or is
/// dead-lettered (`failed`) when `retry_at` is `None`.
pub async fn record_failure<C: ConnectionTrait>(
    conn: &C,
    id: i64,
    attempts: i32,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    let status = if retry_at.is_some() {
        EventStatus::Pending
    } else {
        EventStatus::Failed
    };
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("UPDATE webhook_events SET status = ")
        .bind(status.as_str())
        .push(", attempts = ")
        .bind(attempts)
        .push(", last_error = ")
        .bind(truncate(error, 2000))
        .push(", next_attempt_at = ")
        .bind(retry_at)
        .push(" WHERE id = ")
        .bind(id);
    conn.execute_raw(sql.build()).await?;
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Filter for the admin listing.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub account_id: Option<i64>,
    pub status: Option<EventStatus>,
    pub limit: u64,
    /// Only events older than this id (the next page of a listing).
    pub before_id: Option<i64>,
    /// Only events newer than this id.
    pub after_id: Option<i64>,
    pub include_payload: bool,
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &EventFilter,
) -> Result<Vec<EventRecord>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "SELECT id, account_id, event_type, object_type, status, attempts, next_attempt_at, \
         last_error, traceparent, received_at, processed_at",
    );
    sql.push(if filter.include_payload {
        ", payload FROM webhook_events WHERE 1 = 1"
    } else {
        " FROM webhook_events WHERE 1 = 1"
    });
    if let Some(before) = filter.before_id {
        sql.push(" AND id < ").bind(before);
    }
    if let Some(after) = filter.after_id {
        sql.push(" AND id > ").bind(after);
    }
    if let Some(account_id) = filter.account_id {
        sql.push(" AND account_id = ").bind(account_id);
    }
    if let Some(status) = filter.status {
        // A literal (one of four fixed words), so a generic plan can still
        // use the partial index of that status.
        sql.push(&format!(" AND status = '{}'", status.as_str()));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(filter.limit as i64);
    conn.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| {
            Ok(EventRecord {
                id: row.try_get_by_index(0)?,
                account_id: row.try_get_by_index(1)?,
                event_type: row.try_get_by_index(2)?,
                object_type: row.try_get_by_index(3)?,
                status: row.try_get_by_index(4)?,
                attempts: row.try_get_by_index(5)?,
                next_attempt_at: row.try_get_by_index(6)?,
                last_error: row.try_get_by_index(7)?,
                traceparent: row.try_get_by_index(8)?,
                received_at: row.try_get_by_index(9)?,
                processed_at: row.try_get_by_index(10)?,
                payload: match filter.include_payload {
                    true => Some(row.try_get_by_index(11)?),
                    false => None,
                },
            })
        })
        .collect()
}

/// Puts dead letters of `account_id` (all of them, or only `id`) back to
/// pending with a fresh attempt budget. Returns the account and ids re-queued.
pub async fn requeue_failed<C: ConnectionTrait>(
    conn: &C,
    account_id: Option<i64>,
    id: Option<i64>,
) -> Result<Vec<(i64, i64)>, DbErr> {
    let mut select = Sql::new(conn.get_database_backend());
    select.push("SELECT id, account_id FROM webhook_events WHERE status = 'failed'");
    if let Some(account_id) = account_id {
        select.push(" AND account_id = ").bind(account_id);
    }
    if let Some(id) = id {
        select.push(" AND id = ").bind(id);
    }
    select.push(" ORDER BY id");
    let rows: Vec<(i64, i64)> = conn
        .query_all_raw(select.build())
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(1)?, r.try_get_by_index(0)?)))
        .collect::<Result<_, DbErr>>()?;
    for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(conn.get_database_backend());
        sql.push(
            "UPDATE webhook_events SET status = 'pending', attempts = 0, next_attempt_at = NULL \
             WHERE status = 'failed' AND id",
        )
        .in_ids(chunk.iter().map(|(_, id)| *id));
        conn.execute_raw(sql.build()).await?;
    }
    Ok(rows)
}

/// Status of one row, if it exists.
pub async fn status_of<C: ConnectionTrait>(conn: &C, id: i64) -> Result<Option<String>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT status FROM webhook_events WHERE id = ")
        .bind(id);
    conn.query_one_raw(sql.build())
        .await?
        .map(|r| r.try_get_by_index(0))
        .transpose()
}

/// Removes processed and ignored rows received before `before`.
pub async fn prune<C: ConnectionTrait>(conn: &C, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push(
        "DELETE FROM webhook_events WHERE status IN ('processed', 'ignored') AND received_at < ",
    )
    .bind(before);
    Ok(conn.execute_raw(sql.build()).await?.rows_affected())
}

/// Row counts by status.
pub async fn counts<C: ConnectionTrait>(conn: &C) -> Result<HashMap<String, i64>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    // One count per status, each over its partial index.
    sql.push(
        "SELECT (SELECT COUNT(*) FROM webhook_events WHERE status = 'pending'), \
         (SELECT COUNT(*) FROM webhook_events WHERE status = 'failed')",
    );
    let mut out = HashMap::new();
    if let Some(row) = conn.query_one_raw(sql.build()).await? {
        out.insert("pending".to_string(), row.try_get_by_index(0)?);
        out.insert("failed".to_string(), row.try_get_by_index(1)?);
    }
    Ok(out)
}

/// How many rows of an account wait to be applied.
pub async fn pending_count<C: ConnectionTrait>(conn: &C, account_id: i64) -> Result<i64, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT COUNT(*) FROM webhook_events WHERE status = 'pending' AND account_id = ")
        .bind(account_id);
    Ok(match conn.query_one_raw(sql.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    })
}

/// Removes every inbox row of an account (hard delete).
pub async fn delete_for_account<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
) -> Result<u64, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("DELETE FROM webhook_events WHERE account_id = ")
        .bind(account_id);
    Ok(conn.execute_raw(sql.build()).await?.rows_affected())
}
