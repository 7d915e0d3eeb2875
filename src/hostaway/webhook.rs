//! Webhook deliveries: parsed once at the HTTP boundary (`parse_delivery`) and
//! decoded into a `WebhookEvent` when the account's actor applies them. Both
//! envelope shapes occur: the entity in `data`, or in `payload.data`.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::decode;
use super::json::Json;

pub use crate::events::{EventKind, EventType};

/// A delivery that passed validation.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub object: Option<String>,
    pub account_id: i64,
    /// `None` for event types the service does not handle.
    pub kind: Option<EventKind>,
    /// Over the event type and the canonical entity JSON.
    pub dedupe_key: String,
    /// The object the event is about (`entity_key`).
    pub entity_key: String,
    /// The entity of a handled event, as the mirror needs it.
    pub entity: Option<Entity>,
}

/// What the mirror needs of a handled event's entity, read once: its
/// canonical text (what the mirror stores, and what the dedupe key hashes)
/// and the fields its row is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub text: Arc<str>,
    /// A message whole (it is merged into its thread as it is); of a
    /// listing or reservation only the `ROW_FIELDS` it has.
    pub fields: Value,
}

/// The fields of a listing or reservation that its mirror row is made of
/// (`store::rows`; a test there holds the two lists together).
pub const ROW_FIELDS: &[&str] = &[
    "id",
    "hostawayReservationId",
    "listingMapId",
    "status",
    "arrivalDate",
    "departureDate",
    "updatedOn",
    "latestActivityOn",
];

impl Entity {
    /// The entity of a handled event's body (`data`, else `payload.data`),
    /// if it has one that is an object.
    pub fn of(kind: EventKind, body: &Json) -> Option<Entity> {
        let entity = entity_of(body).filter(|e| e.is_object())?;
        Some(Entity::from_object(kind, entity, entity.canonical()))
    }

    fn from_object(kind: EventKind, entity: &Json, text: String) -> Entity {
        let fields = match kind {
            EventKind::Message => entity.to_value(),
            _ => entity.pick(ROW_FIELDS),
        };
        Entity {
            text: text.into(),
            fields,
        }
    }
}

/// Why a delivery was refused (each maps to a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("missing `event` (or `eventType`)")]
    MissingEvent,
    #[error("`event` must be a non-empty string")]
    BadEvent,
    #[error("missing `accountId`")]
    MissingAccountId,
    #[error("`accountId` must be a positive integer (a numeric string is accepted)")]
    BadAccountId,
    #[error("`{0}` needs an object in `data` (or `payload.data`)")]
    MissingEntity(String),
    #[error("`{event}` entity is missing `{field}`")]
    MissingField { event: String, field: &'static str },
}

/// The entity of a delivery: `data`, else `payload.data`.
pub fn entity_of<'b, 'a>(body: &'b Json<'a>) -> Option<&'b Json<'a>> {
    body.get("data")
        .or_else(|| body.get("payload").and_then(|p| p.get("data")))
}

/// Validates a delivery body.
pub fn parse_delivery(body: &Json) -> Result<Delivery, DeliveryError> {
    if !body.is_object() {
        return Err(DeliveryError::NotAnObject);
    }
    let event = match body.entry("event").or_else(|| body.entry("eventType")) {
        None | Some(Json::Null) => return Err(DeliveryError::MissingEvent),
        Some(Json::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
        Some(_) => return Err(DeliveryError::BadEvent),
    };
    let account_id = match body.entry("accountId") {
        None | Some(Json::Null) => return Err(DeliveryError::MissingAccountId),
        Some(value @ (Json::Number(_) | Json::String(_))) => decode::id(&value.to_value())
            .filter(|id| *id > 0)
            .ok_or(DeliveryError::BadAccountId)?,
        Some(_) => return Err(DeliveryError::BadAccountId),
    };
    let object_type = body
        .entry("object")
        .and_then(Json::as_str)
        .map(|s| s.chars().take(100).collect());
    let kind = EventKind::of(&event);
    let found = entity_of(body);
    let canonical = found.unwrap_or(body).canonical();
    let dedupe_key = dedupe_key_of_text(&event, &canonical);
    let entity = match kind {
        None => None,
        Some(kind) => {
            let found = found
                .filter(|e| e.is_object())
                .ok_or_else(|| DeliveryError::MissingEntity(event.clone()))?;
            let entity = Entity::from_object(kind, found, canonical);
            let require = |field: &'static str| {
                decode::id_field(&entity.fields, field)
                    .map(|_| ())
                    .ok_or_else(|| DeliveryError::MissingField {
                        event: event.clone(),
                        field,
                    })
            };
            require("id")?;
            match kind {
                EventKind::Reservation => require("listingMapId")?,
                EventKind::Message => require("reservationId")?,
                EventKind::Listing | EventKind::ListingDeleted => {}
            }
            Some(entity)
        }
    };
    let entity_key = entity_key(kind, entity.as_ref().map(|e| &e.fields), &dedupe_key);
    Ok(Delivery {
        event,
        object: object_type,
        account_id,
        kind,
        dedupe_key,
        entity_key,
        entity,
    })
}

/// The object an event is about, for recognising redeliveries: `listing:ID`
/// (created, updated and deleted share it), `reservation:ID`, `message:ID`;
/// an event the service does not handle is its own object (so only an
/// identical delivery is a duplicate of it).
pub fn entity_key(kind: Option<EventKind>, entity: Option<&Value>, dedupe_key: &str) -> String {
    let id = entity.and_then(|e| decode::id_field(e, "id"));
    match (kind, id) {
        (Some(EventKind::Reservation), Some(id)) => format!("reservation:{id}"),
        (Some(EventKind::Message), Some(id)) => format!("message:{id}"),
        (Some(EventKind::Listing | EventKind::ListingDeleted), Some(id)) => format!("listing:{id}"),
        _ => format!("event:{dedupe_key}"),
    }
}

/// SHA-256 over the event type and the canonical JSON of the entity: the same
/// change delivered twice has the same key (the definition; deliveries hash
/// the text `Json::canonical` wrote, which is the same).
#[cfg(test)]
fn dedupe_key(event: &str, entity: &Value) -> String {
    dedupe_key_of_text(event, &decode::canonical_json(entity))
}

/// The dedupe key of an entity whose canonical text is at hand.
fn dedupe_key_of_text(event: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// A stored event, ready to apply: its entity, borrowed from the row.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent<'a> {
    Reservation(&'a Entity),
    Message(&'a Entity),
    Listing(&'a Entity),
    ListingDeleted(i64),
}

/// Decodes a stored inbox row (its event type and entity) into what to apply.
pub fn decode_event<'a>(
    event_type: &str,
    entity: Option<&'a Entity>,
) -> Result<WebhookEvent<'a>, String> {
    let kind =
        EventKind::of(event_type).ok_or_else(|| format!("unhandled event `{event_type}`"))?;
    let entity = entity.ok_or_else(|| format!("`{event_type}` has no entity"))?;
    Ok(match kind {
        EventKind::Reservation => WebhookEvent::Reservation(entity),
        EventKind::Message => WebhookEvent::Message(entity),
        EventKind::Listing => WebhookEvent::Listing(entity),
        EventKind::ListingDeleted => WebhookEvent::ListingDeleted(
            decode::id_field(&entity.fields, "id").ok_or("`listing.deleted` without an id")?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Delivery, DeliveryError> {
        let text = body.to_string();
        parse_delivery(&Json::parse(text.as_bytes()).expect("JSON"))
    }

    #[test]
    fn a_dedupe_key_hashes_the_event_and_the_canonical_entity() {
        let entity = json!({"id": 7, "guestName": "Zoë", "b": [1, {"y": 2, "x": null}]});
        let mut hasher = Sha256::new();
        hasher.update(b"reservation.updated\n");
        hasher.update(decode::canonical_json(&entity).as_bytes());
        assert_eq!(
            dedupe_key("reservation.updated", &entity),
            format!("{:x}", hasher.finalize())
        );
    }

    #[test]
    fn both_envelopes_yield_the_entity_and_the_same_key() {
        let flat = json!({"event": "reservation.updated", "accountId": 1,
                          "data": {"id": 5, "listingMapId": 9, "b": 1, "a": 2}});
        let nested = json!({"eventType": "reservation.updated", "accountId": "1",
                            "payload": {"data": {"a": 2, "b": 1, "listingMapId": 9, "id": 5}}});
        let a = parse(flat).unwrap();
        let b = parse(nested).unwrap();
        assert_eq!(a.account_id, 1);
        assert_eq!(b.account_id, 1);
        assert_eq!(a.kind, Some(EventKind::Reservation));
        assert_eq!(a.dedupe_key, b.dedupe_key);
        // The entity's text is the canonical form the mirror stores, and
        // the key is the one `dedupe_key` gives for that entity.
        let (ea, eb) = (a.entity.unwrap(), b.entity.unwrap());
        assert_eq!(&*ea.text, r#"{"a":2,"b":1,"id":5,"listingMapId":9}"#);
        assert_eq!(ea, eb);
        let entity = json!({"id": 5, "listingMapId": 9, "b": 1, "a": 2});
        assert_eq!(a.dedupe_key, dedupe_key("reservation.updated", &entity));
        // A reservation's row fields only; a message whole.
        assert_eq!(ea.fields, json!({"id": 5, "listingMapId": 9}));
        let message = json!({"id": 3, "reservationId": 5, "body": "hi", "x": [1]});
        let m =
            parse(json!({"event": "message.received", "accountId": 1, "data": message})).unwrap();
        assert_eq!(m.entity.unwrap().fields, message);
    }

    #[test]
    fn bad_deliveries_are_named() {
        assert_eq!(parse(json!([1])).unwrap_err(), DeliveryError::NotAnObject);
        assert_eq!(
            parse(json!({"accountId": 1})).unwrap_err(),
            DeliveryError::MissingEvent
        );
        assert_eq!(
            parse(json!({"event": 5, "accountId": 1})).unwrap_err(),
            DeliveryError::BadEvent
        );
        assert_eq!(
            parse(json!({"event": "x"})).unwrap_err(),
            DeliveryError::MissingAccountId
        );
        assert_eq!(
            parse(json!({"event": "x", "accountId": "abc"})).unwrap_err(),
            DeliveryError::BadAccountId
        );
        assert_eq!(
            parse(json!({"event": "x", "accountId": [1]})).unwrap_err(),
            DeliveryError::BadAccountId
        );
        assert!(matches!(
            parse(json!({"event": "reservation.created", "accountId": 1})).unwrap_err(),
            DeliveryError::MissingEntity(_)
        ));
        assert!(matches!(
            parse(json!({"event": "message.received", "accountId": 1, "data": {"id": 1}}))
                .unwrap_err(),
            DeliveryError::MissingField {
                field: "reservationId",
                ..
            }
        ));
    }

    #[test]
    fn unknown_events_are_accepted_for_the_record() {
        let d = parse(json!({"event": "task.created", "accountId": 1, "data": {"id": 3}})).unwrap();
        assert_eq!(d.kind, None);
        assert_eq!(d.entity, None, "nothing of it is mirrored");
        assert!(decode_event("task.created", d.entity.as_ref()).is_err());
    }
}
