//! Raw Hostaway JSON turned into the rows the upserts write. A payload without
//! the fields a row needs is skipped with a warning, never an error: one bad
//! object must not fail a whole sync or webhook batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::version::{Observed, Version};
use crate::hostaway::decode;
use crate::hostaway::webhook::Entity;

/// Which account (and customer) a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub account_id: i64,
    pub customer_id: Option<Uuid>,
}

/// An entity's JSON as the mirror stores it (`raw_payload`): its canonical
/// text (`decode::canonical_json`: object keys sorted at every level, no
/// spaces), made once, shared as rows move between actors, and bound to
/// the upsert as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityJson(Arc<str>);

impl EntityJson {
    pub fn of(value: &Value) -> Self {
        EntityJson(decode::canonical_json(value).into())
    }

    /// Text that `decode::canonical_json` wrote (a delivery's entity, made
    /// once when its dedupe key was computed).
    pub fn from_canonical(text: Arc<str>) -> Self {
        EntityJson(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListingRow {
    pub id: i64,
    pub owner: Owner,
    pub version: Version,
    pub payload: EntityJson,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReservationRow {
    pub id: i64,
    pub owner: Owner,
    pub listing_id: i64,
    pub status: Option<String>,
    pub arrival_date: Option<NaiveDate>,
    pub departure_date: Option<NaiveDate>,
    pub version: Version,
    pub payload: EntityJson,
}

/// Messages to merge into one reservation's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadMerge {
    pub reservation_id: i64,
    pub owner: Owner,
    pub conversation_id: Option<i64>,
    pub messages: Vec<Value>,
    /// When and how these messages were observed; each message's version
    /// is its own `updatedOn`/`insertedOn` under this observation.
    pub observed: Observed,
}

/// The version timestamp of a listing or reservation: `updatedOn`, else
/// `latestActivityOn`.
pub fn entity_stamp(payload: &Value) -> Option<DateTime<Utc>> {
    decode::datetime_field(payload, "updatedOn")
        .or_else(|| decode::datetime_field(payload, "latestActivityOn"))
}

/// The version timestamp of a message: `updatedOn`, else `insertedOn`.
pub fn message_stamp(message: &Value) -> Option<DateTime<Utc>> {
    decode::datetime_field(message, "updatedOn")
        .or_else(|| decode::datetime_field(message, "insertedOn"))
}

pub fn listing_row(owner: Owner, payload: Value, observed: &Observed) -> Option<ListingRow> {
    let text = EntityJson::of(&payload);
    listing_row_of(owner, &payload, text, observed)
}

/// `listing_row` of a webhook's entity (read once at the HTTP boundary).
pub fn listing_row_with(owner: Owner, entity: &Entity, observed: &Observed) -> Option<ListingRow> {
    let text = EntityJson::from_canonical(entity.text.clone());
    listing_row_of(owner, &entity.fields, text, observed)
}

fn listing_row_of(
    owner: Owner,
    payload: &Value,
    text: EntityJson,
    observed: &Observed,
) -> Option<ListingRow> {
    let Some(id) = decode::id_field(payload, "id") else {
        tracing::warn!(
            account_id = owner.account_id,
            "skipping listing without an id"
        );
        return None;
    };
    Some(ListingRow {
        id,
        owner,
        version: observed.version(entity_stamp(payload)),
        payload: text,
    })
}

pub fn reservation_row(
    owner: Owner,
    payload: Value,
    observed: &Observed,
) -> Option<ReservationRow> {
    let text = EntityJson::of(&payload);
    reservation_row_of(owner, &payload, text, observed)
}

/// `reservation_row` of a webhook's entity (read once at the HTTP
/// boundary: its `ROW_FIELDS` and canonical text).
pub fn reservation_row_with(
    owner: Owner,
    entity: &Entity,
    observed: &Observed,
) -> Option<ReservationRow> {
    let text = EntityJson::from_canonical(entity.text.clone());
    reservation_row_of(owner, &entity.fields, text, observed)
}

fn reservation_row_of(
    owner: Owner,
    payload: &Value,
    text: EntityJson,
    observed: &Observed,
) -> Option<ReservationRow> {
    let Some(id) = decode::id_field(payload, "id")
        .or_else(|| decode::id_field(payload, "hostawayReservationId"))
    else {
        tracing::warn!(
            account_id = owner.account_id,
            "skipping reservation without an id"
        );
        return None;
    };
    let Some(listing_id) = decode::id_field(payload, "listingMapId") else {
        tracing::warn!(
            account_id = owner.account_id,
            reservation_id = id,
            "skipping reservation without listingMapId"
        );
        return None;
    };
    Some(ReservationRow {
        id,
        owner,
        listing_id,
        status: decode::string_field(payload, "status"),
        arrival_date: decode::date_field(payload, "arrivalDate"),
        departure_date: decode::date_field(payload, "departureDate"),
        version: observed.version(entity_stamp(payload)),
        payload: text,
    })
}

/// Groups messages by reservation. Messages without an id or a reservation
/// are skipped with a warning: a thread is keyed by its reservation.
pub fn thread_merges(owner: Owner, messages: Vec<Value>, observed: &Observed) -> Vec<ThreadMerge> {
    let mut by_reservation: BTreeMap<i64, ThreadMerge> = BTreeMap::new();
    for message in messages {
        if decode::id_field(&message, "id").is_none() {
            tracing::warn!(
                account_id = owner.account_id,
                "skipping message without an id"
            );
            continue;
        }
        let Some(reservation_id) = decode::id_field(&message, "reservationId") else {
            tracing::warn!(
                account_id = owner.account_id,
                "skipping message without a reservationId"
            );
            continue;
        };
        let conversation_id = decode::id_field(&message, "conversationId");
        let entry = by_reservation
            .entry(reservation_id)
            .or_insert_with(|| ThreadMerge {
                reservation_id,
                owner,
                conversation_id,
                messages: Vec::new(),
                observed: *observed,
            });
        if entry.conversation_id.is_none() {
            entry.conversation_id = conversation_id;
        }
        entry.messages.push(message);
    }
    by_reservation.into_values().collect()
}

/// When a message happened: `date`, else `sentChannelDate`, `insertedOn`, `updatedOn`.
pub fn message_time(message: &Value) -> Option<DateTime<Utc>> {
    ["date", "sentChannelDate", "insertedOn", "updatedOn"]
        .iter()
        .find_map(|key| decode::datetime_field(message, key))
}

fn message_sort_key(message: &Value) -> (Option<DateTime<Utc>>, i64) {
    (
        message_time(message),
        decode::id_field(message, "id").unwrap_or(i64::MAX),
    )
}

/// Merges `incoming` into `existing` by message id (an incoming version
/// replaces a stored one) and sorts oldest first, ties by id.
pub fn merge_messages(existing: Vec<Value>, incoming: Vec<Value>) -> Vec<Value> {
    let always = |_: &Value, _: &Value| true;
    merge_messages_with(existing, incoming, always)
}

/// Merges messages observed as `observed` into a thread whose latest write
/// was observed at `thread_seen`: each message replaces its stored copy only
/// when its version is not older (`store::version`).
pub fn merge_versioned(
    existing: Vec<Value>,
    incoming: Vec<Value>,
    observed: &Observed,
    thread_seen: Option<DateTime<Utc>>,
) -> (Vec<Value>, usize) {
    let mut clamped = 0;
    let merged = merge_messages_with(existing, incoming, |stored, new| {
        let version = observed.version(message_stamp(new));
        clamped += usize::from(version.clamped);
        // The stored copy is clamped as of when it was observed.
        let as_stored = Observed {
            seen: thread_seen.unwrap_or(observed.seen),
            ..*observed
        };
        let stored = super::version::Stored {
            stamp: as_stored.version(message_stamp(stored)).stamp,
            seen: thread_seen,
        };
        version.supersedes(&stored)
    });
    (merged, clamped)
}

fn merge_messages_with(
    existing: Vec<Value>,
    incoming: Vec<Value>,
    mut replaces: impl FnMut(&Value, &Value) -> bool,
) -> Vec<Value> {
    let mut by_id: BTreeMap<i64, Value> = BTreeMap::new();
    let mut without_id = Vec::new();
    for message in existing {
        match decode::id_field(&message, "id") {
            Some(id) => {
                by_id.insert(id, message);
            }
            None => without_id.push(message),
        }
    }
    for message in incoming {
        match decode::id_field(&message, "id") {
            Some(id) => match by_id.get(&id) {
                Some(stored) if !replaces(stored, &message) => {}
                _ => {
                    by_id.insert(id, message);
                }
            },
            None => without_id.push(message),
        }
    }
    let mut merged: Vec<Value> = by_id.into_values().chain(without_id).collect();
    merged.sort_by_key(message_sort_key);
    merged
}

/// The newest message time in a thread.
pub fn last_message_at(messages: &[Value]) -> Option<DateTime<Utc>> {
    messages.iter().filter_map(message_time).max()
}

pub use crate::hostaway::decode::canonical_json;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNER: Owner = Owner {
        account_id: 1,
        customer_id: None,
    };

    fn observed() -> Observed {
        Observed {
            seen: Utc::now(),
            source: crate::store::version::Source::Sync,
            max_future_skew: chrono::Duration::days(1),
        }
    }

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hostaway")
            .join(name);
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON")
    }

    /// A webhook's row is made of its entity's `ROW_FIELDS` only: it must
    /// equal the row made of the whole entity (a field a row reads that
    /// the list misses would be lost for every webhook).
    #[test]
    fn rows_from_the_row_fields_equal_rows_from_the_whole_entity() {
        use crate::events::EventKind;
        use crate::hostaway::json::Json;
        let mut reservations: Vec<Value> = fixture("reservations_page.json")["result"]
            .as_array()
            .expect("reservations")
            .clone();
        for name in [
            "webhook_reservation_created.json",
            "webhook_reservation_updated.json",
            "webhook_reservation_cancelled.json",
        ] {
            reservations.push(fixture(name)["data"].clone());
        }
        let listings: Vec<Value> = fixture("listings_page.json")["result"]
            .as_array()
            .expect("listings")
            .clone();
        let observed = observed();
        let entity = |kind, value: &Value| {
            let body = serde_json::json!({ "data": value }).to_string();
            Entity::of(kind, &Json::parse(body.as_bytes()).unwrap()).expect("entity")
        };
        for value in &reservations {
            let whole = reservation_row(OWNER, value.clone(), &observed).expect("a row");
            let picked =
                reservation_row_with(OWNER, &entity(EventKind::Reservation, value), &observed);
            assert_eq!(picked.as_ref(), Some(&whole));
        }
        for value in &listings {
            let whole = listing_row(OWNER, value.clone(), &observed).expect("a row");
            let picked = listing_row_with(OWNER, &entity(EventKind::Listing, value), &observed);
            assert_eq!(picked.as_ref(), Some(&whole));
        }
        assert!(reservations.len() > 3 && !listings.is_empty());
    }

    #[test]
    fn reservation_needs_id_and_listing() {
        assert!(reservation_row(OWNER, json!({"id": 5}), &observed()).is_none());
        assert!(reservation_row(OWNER, json!({"listingMapId": 5}), &observed()).is_none());
        let row = reservation_row(
            OWNER,
            json!({"id": "7", "listingMapId": 9, "status": "new", "arrivalDate": "2025-07-03",
                   "updatedOn": "2025-06-14 09:45:30"}),
            &observed(),
        )
        .unwrap();
        assert_eq!((row.id, row.listing_id), (7, 9));
        assert_eq!(row.status.as_deref(), Some("new"));
        assert!(row.version.stamp.is_some());
    }

    #[test]
    fn messages_merge_by_id_and_sort_by_time() {
        let existing = vec![
            json!({"id": 2, "date": "2025-06-14 10:00:00", "body": "old"}),
            json!({"id": 1, "date": "2025-06-14 09:00:00"}),
        ];
        let incoming = vec![
            json!({"id": 2, "date": "2025-06-14 10:00:00", "body": "edited"}),
            json!({"id": 3, "sentChannelDate": "2025-06-14 09:30:00"}),
        ];
        let merged = merge_messages(existing, incoming);
        let ids: Vec<i64> = merged.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert_eq!(merged[2]["body"], "edited");
        assert_eq!(
            last_message_at(&merged).unwrap().to_rfc3339(),
            "2025-06-14T10:00:00+00:00"
        );
    }

    #[test]
    fn an_older_message_edit_never_replaces_a_newer_one() {
        let seen = Utc::now();
        let stored = vec![json!({"id": 2, "updatedOn": "2025-06-14 10:05:00", "body": "newer"})];
        let late = vec![json!({"id": 2, "updatedOn": "2025-06-14 10:01:00", "body": "older"})];
        let webhook = Observed {
            seen: seen + chrono::Duration::seconds(5),
            source: crate::store::version::Source::Webhook,
            max_future_skew: chrono::Duration::days(1),
        };
        let (merged, _) = merge_versioned(stored.clone(), late, &webhook, Some(seen));
        assert_eq!(merged[0]["body"], "newer");
        let edit = vec![json!({"id": 2, "updatedOn": "2025-06-14 10:06:00", "body": "edited"})];
        let (merged, _) = merge_versioned(stored.clone(), edit, &webhook, Some(seen));
        assert_eq!(merged[0]["body"], "edited");
        // Equal timestamps: the later observation wins, an earlier one not.
        let same =
            vec![json!({"id": 2, "updatedOn": "2025-06-14 10:05:00", "body": "same second"})];
        let (merged, _) = merge_versioned(stored.clone(), same.clone(), &webhook, Some(seen));
        assert_eq!(merged[0]["body"], "same second");
        let later_thread = Some(seen + chrono::Duration::seconds(10));
        let (merged, _) = merge_versioned(stored, same, &webhook, later_thread);
        assert_eq!(merged[0]["body"], "newer");
    }

    #[test]
    fn threads_group_by_reservation() {
        let merges = thread_merges(
            OWNER,
            vec![
                json!({"id": 1, "reservationId": 10, "conversationId": 100}),
                json!({"id": 2, "reservationId": "10"}),
                json!({"id": 3, "reservationId": 11}),
                json!({"id": 4}),
                json!({"reservationId": 11}),
            ],
            &observed(),
        );
        assert_eq!(merges.len(), 2);
        assert_eq!(merges[0].messages.len(), 2);
        assert_eq!(merges[0].conversation_id, Some(100));
    }
}
