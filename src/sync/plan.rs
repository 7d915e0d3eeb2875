//! Pure decisions of a sync: which conversations need their messages fetched.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{SyncMode, reservation_of};
use crate::hostaway::decode;
use crate::store::mirror::MessageVersion;

/// `(conversation id, reservation id)` of every conversation whose messages
/// must be fetched: all of them on a full sync; on a reconciliation, those
/// whose latest message is missing from the mirror or differs from it.
/// Conversations without a reservation are skipped (threads are keyed by
/// reservation).
pub fn conversations_to_refetch(
    conversations: &[Value],
    known: &HashMap<i64, MessageVersion>,
    mode: SyncMode,
) -> Vec<(i64, Option<i64>)> {
    let mut out = Vec::new();
    for conversation in conversations {
        let Some(id) = decode::id_field(conversation, "id") else {
            continue;
        };
        let reservation_id = reservation_of(conversation);
        if reservation_id.is_none() {
            tracing::warn!(
                conversation_id = id,
                "skipping conversation without a reservation"
            );
            continue;
        }
        let needed = match mode {
            SyncMode::Full => true,
            SyncMode::Incremental => {
                let latest = conversation
                    .get("conversationMessages")
                    .and_then(Value::as_array)
                    .and_then(|messages| messages.first());
                match latest {
                    // Nothing to read in an empty conversation.
                    None => false,
                    Some(message) => match decode::id_field(message, "id") {
                        Some(message_id) => {
                            known.get(&message_id) != Some(&MessageVersion::of(message))
                        }
                        None => true,
                    },
                }
            }
        };
        if needed {
            out.push((id, reservation_id));
        }
    }
    out
}

/// `first`, then the items of `second` whose id `first` does not hold.
pub fn union_by_id(mut first: Vec<Value>, second: Vec<Value>) -> Vec<Value> {
    let known: HashSet<i64> = first
        .iter()
        .filter_map(|item| decode::id_field(item, "id"))
        .collect();
    first.extend(
        second
            .into_iter()
            .filter(|item| decode::id_field(item, "id").is_none_or(|id| !known.contains(&id))),
    );
    first
}

/// Gives a fetched message the keys its thread needs when Hostaway left them out.
pub fn fill_message_keys(message: &mut Value, conversation_id: i64, reservation_id: Option<i64>) {
    if let Some(object) = message.as_object_mut() {
        if object.get("reservationId").and_then(decode::id).is_none()
            && let Some(reservation_id) = reservation_id
        {
            object.insert("reservationId".into(), json!(reservation_id));
        }
        object
            .entry("conversationId")
            .or_insert_with(|| json!(conversation_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation(id: i64, reservation: i64, latest: Option<Value>) -> Value {
        json!({"id": id, "reservationId": reservation,
               "conversationMessages": latest.map(|m| vec![m]).unwrap_or_default()})
    }

    #[test]
    fn reconciliation_refetches_only_changed_conversations() {
        let m1 = json!({"id": 1, "updatedOn": "2025-01-01 00:00:00", "hash": "a"});
        let m2 = json!({"id": 2, "updatedOn": "2025-01-01 00:00:00", "hash": "b"});
        let m3 = json!({"id": 3, "updatedOn": "2025-01-02 00:00:00", "hash": "c"});
        let mut known = HashMap::new();
        known.insert(1, MessageVersion::of(&m1));
        known.insert(
            2,
            MessageVersion::of(&json!({"id": 2, "updatedOn": "2024-12-31 00:00:00", "hash": "b"})),
        );
        let conversations = vec![
            conversation(10, 100, Some(m1)),
            conversation(11, 101, Some(m2)),
            conversation(12, 102, Some(m3)),
            conversation(13, 103, None),
            json!({"id": 14, "conversationMessages": []}),
        ];
        let planned = conversations_to_refetch(&conversations, &known, SyncMode::Incremental);
        assert_eq!(planned, vec![(11, Some(101)), (12, Some(102))]);
        let full = conversations_to_refetch(&conversations, &known, SyncMode::Full);
        assert_eq!(
            full.len(),
            4,
            "full sync reads every conversation with a reservation"
        );
    }

    #[test]
    fn union_keeps_the_first_copy_of_each_id() {
        let first = vec![json!({"id": 1, "v": "a"}), json!({"id": 2, "v": "a"})];
        let second = vec![json!({"id": 2, "v": "b"}), json!({"id": 3, "v": "b"})];
        assert_eq!(
            union_by_id(first, second),
            vec![
                json!({"id": 1, "v": "a"}),
                json!({"id": 2, "v": "a"}),
                json!({"id": 3, "v": "b"})
            ]
        );
    }

    #[test]
    fn missing_keys_are_filled() {
        let mut m = json!({"id": 1});
        fill_message_keys(&mut m, 5, Some(7));
        assert_eq!(m, json!({"id": 1, "reservationId": 7, "conversationId": 5}));
    }
}
