//! Webhook deliveries: parsed once at the HTTP boundary (`parse_delivery`) and
//! decoded into a `WebhookEvent` when the account's actor applies them. Both
//! envelope shapes occur: the entity in `data`, or in `payload.data`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::decode;

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
    /// The whole body, stored as the inbox payload.
    pub body: Value,
    /// The canonical text of the entity of a handled event (what the
    /// mirror stores; written once, for the dedupe key).
    pub entity_text: Option<std::sync::Arc<str>>,
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
pub fn entity_of(body: &Value) -> Option<&Value> {
    decode::field(body, "data")
        .or_else(|| body.get("payload").and_then(|p| decode::field(p, "data")))
}

/// Validates a delivery body.
pub fn parse_delivery(body: Value) -> Result<Delivery, DeliveryError> {
    let object = body.as_object().ok_or(DeliveryError::NotAnObject)?;
    let event = match object.get("event").or_else(|| object.get("eventType")) {
        None | Some(Value::Null) => return Err(DeliveryError::MissingEvent),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
        Some(_) => return Err(DeliveryError::BadEvent),
    };
    let account_id = match object.get("accountId") {
        None | Some(Value::Null) => return Err(DeliveryError::MissingAccountId),
        Some(value @ (Value::Number(_) | Value::String(_))) => decode::id(value)
            .filter(|id| *id > 0)
            .ok_or(DeliveryError::BadAccountId)?,
        Some(_) => return Err(DeliveryError::BadAccountId),
    };
    let object_type = object
        .get("object")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(100).collect());
    let kind = EventKind::of(&event);
    let entity = entity_of(&body);
    if let Some(kind) = kind {
        let entity = entity
            .filter(|e| e.is_object())
            .ok_or_else(|| DeliveryError::MissingEntity(event.clone()))?;
        let require = |field: &'static str| {
            decode::id_field(entity, field)
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
    }
    let canonical = decode::canonical_json(entity.unwrap_or(&body));
    let dedupe_key = dedupe_key_of_text(&event, &canonical);
    let entity_key = entity_key(kind, entity, &dedupe_key);
    let entity_text = (kind.is_some() && entity.is_some()).then(|| canonical.into());
    Ok(Delivery {
        event,
        object: object_type,
        account_id,
        kind,
        dedupe_key,
        entity_key,
        body,
        entity_text,
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
/// change delivered twice has the same key.
pub fn dedupe_key(event: &str, entity: &Value) -> String {
    dedupe_key_of_text(event, &decode::canonical_json(entity))
}

/// `dedupe_key` of an entity whose canonical text is at hand.
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
    Reservation(&'a Value),
    Message(&'a Value),
    Listing(&'a Value),
    ListingDeleted(i64),
}

/// Decodes a stored inbox row into what to apply.
pub fn decode_event<'a>(event_type: &str, body: &'a Value) -> Result<WebhookEvent<'a>, String> {
    let kind =
        EventKind::of(event_type).ok_or_else(|| format!("unhandled event `{event_type}`"))?;
    let entity = entity_of(body)
        .filter(|e| e.is_object())
        .ok_or_else(|| format!("`{event_type}` has no entity"))?;
    Ok(match kind {
        EventKind::Reservation => WebhookEvent::Reservation(entity),
        EventKind::Message => WebhookEvent::Message(entity),
        EventKind::Listing => WebhookEvent::Listing(entity),
        EventKind::ListingDeleted => WebhookEvent::ListingDeleted(
            decode::id_field(entity, "id").ok_or("`listing.deleted` without an id")?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let a = parse_delivery(flat).unwrap();
        let b = parse_delivery(nested).unwrap();
        assert_eq!(a.account_id, 1);
        assert_eq!(b.account_id, 1);
        assert_eq!(a.kind, Some(EventKind::Reservation));
        assert_eq!(a.dedupe_key, b.dedupe_key);
        // The entity's text is the canonical form the mirror stores, and
        // the key is the one `dedupe_key` gives for that entity.
        let entity = entity_of(&a.body).unwrap();
        assert_eq!(
            a.entity_text.as_deref(),
            Some(r#"{"a":2,"b":1,"id":5,"listingMapId":9}"#)
        );
        assert_eq!(a.entity_text.as_deref(), b.entity_text.as_deref());
        assert_eq!(a.dedupe_key, dedupe_key("reservation.updated", entity));
    }

    #[test]
    fn bad_deliveries_are_named() {
        assert_eq!(
            parse_delivery(json!([1])).unwrap_err(),
            DeliveryError::NotAnObject
        );
        assert_eq!(
            parse_delivery(json!({"accountId": 1})).unwrap_err(),
            DeliveryError::MissingEvent
        );
        assert_eq!(
            parse_delivery(json!({"event": 5, "accountId": 1})).unwrap_err(),
            DeliveryError::BadEvent
        );
        assert_eq!(
            parse_delivery(json!({"event": "x"})).unwrap_err(),
            DeliveryError::MissingAccountId
        );
        assert_eq!(
            parse_delivery(json!({"event": "x", "accountId": "abc"})).unwrap_err(),
            DeliveryError::BadAccountId
        );
        assert_eq!(
            parse_delivery(json!({"event": "x", "accountId": [1]})).unwrap_err(),
            DeliveryError::BadAccountId
        );
        assert!(matches!(
            parse_delivery(json!({"event": "reservation.created", "accountId": 1})).unwrap_err(),
            DeliveryError::MissingEntity(_)
        ));
        assert!(matches!(
            parse_delivery(json!({"event": "message.received", "accountId": 1, "data": {"id": 1}}))
                .unwrap_err(),
            DeliveryError::MissingField {
                field: "reservationId",
                ..
            }
        ));
    }

    #[test]
    fn unknown_events_are_accepted_for_the_record() {
        let d = parse_delivery(json!({"event": "task.created", "accountId": 1, "data": {"id": 3}}))
            .unwrap();
        assert_eq!(d.kind, None);
        assert_eq!(d.entity_text, None, "nothing of it is mirrored");
        assert!(decode_event("task.created", &d.body).is_err());
    }
}
