//! Changes to an account's data the way Hostaway makes them (new booking,
//! modification, cancellation, new guest message), each reported as the
//! webhook event Hostaway would send for it.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::DatasetSize;
use super::dataset::{
    AccountStore, MessageContext, ReservationTimes, build_conversation, build_message,
    build_reservation, format_timestamp, ids, summarize,
};
use super::vocab::HOST_NOTES;

/// What to change; `snake_case` on the wire (`"new_reservation"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mutation {
    NewReservation,
    UpdateReservation,
    CancelReservation,
    NewMessage,
}

/// One applied change. Serialized as `{"event","object_id","account_id"}`;
/// `object` and `data` (the webhook `object` and the full object after the
/// change) stay in-process for delivery and test assertions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `reservation.created`, `reservation.updated` (cancellations too) or
    /// `message.received`.
    pub event: String,
    pub object_id: i64,
    pub account_id: i64,
    #[serde(skip)]
    pub object: String,
    #[serde(skip)]
    pub data: Value,
}

/// Hands out change timestamps: the current second, but always later than
/// the previous one, so successive changes get strictly increasing
/// `updatedOn` values. During a burst of changes within one second the
/// clock runs ahead of the wall clock by up to the number of changes.
#[derive(Debug, Default)]
pub struct MutationClock {
    last: Option<DateTime<Utc>>,
}

impl MutationClock {
    pub fn tick(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = now.trunc_subsecs(0);
        let next = match self.last {
            Some(last) if now <= last => last + TimeDelta::seconds(1),
            _ => now,
        };
        self.last = Some(next);
        next
    }
}

/// Applies one change at `at`, choosing its target with `rng` and avoiding
/// the targets in `changed` (see `target_of`) while another one is left, so
/// that a batch of N changes touches N different objects when it can.
/// `None` when nothing can be changed (no candidate left, or the id scheme
/// is full).
pub fn apply(
    store: &mut AccountStore,
    rng: &mut StdRng,
    mutation: Mutation,
    at: DateTime<Utc>,
    changed: &HashSet<i64>,
) -> Option<Change> {
    match mutation {
        Mutation::NewReservation => new_reservation(store, rng, at),
        Mutation::UpdateReservation => update_reservation(store, rng, at, changed),
        Mutation::CancelReservation => cancel_reservation(store, rng, at),
        Mutation::NewMessage => new_message(store, rng, at, changed),
    }
}

/// The object a change targeted: the reservation, or the conversation a
/// message went to.
pub fn target_of(change: &Change) -> i64 {
    match change.object.as_str() {
        "conversationMessage" => int(&change.data, "conversationId"),
        _ => change.object_id,
    }
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn date(value: &Value, key: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text(value, key), "%Y-%m-%d").ok()
}

fn reservation_change(store: &AccountStore, event: &str, id: i64) -> Option<Change> {
    Some(Change {
        event: event.to_string(),
        object_id: id,
        account_id: store.account_id,
        object: "reservation".to_string(),
        data: store.reservation(id)?.clone(),
    })
}

/// A random position in `0..len` that `accept`s: a few random probes first,
/// then a scan from a random start. Cheap on large accounts while candidates
/// are common, and finds the last candidate when they are rare.
fn find_random(rng: &mut StdRng, len: usize, accept: impl Fn(usize) -> bool) -> Option<usize> {
    const PROBES: usize = 32;
    if len == 0 {
        return None;
    }
    for _ in 0..PROBES {
        let position = rng.random_range(0..len);
        if accept(position) {
            return Some(position);
        }
    }
    let start = rng.random_range(0..len);
    (0..len)
        .map(|step| (start + step) % len)
        .find(|&position| accept(position))
}

fn not_cancelled(store: &AccountStore) -> impl Fn(usize) -> bool + '_ {
    |position| text(&store.reservations[position], "status") != "cancelled"
}

fn touch(reservation: &mut Value, at: DateTime<Utc>) {
    let stamp = format_timestamp(at);
    reservation["updatedOn"] = json!(stamp);
    reservation["latestActivityOn"] = json!(stamp);
}

fn new_reservation(
    store: &mut AccountStore,
    rng: &mut StdRng,
    at: DateTime<Utc>,
) -> Option<Change> {
    let last_index = store
        .reservations
        .last()
        .map_or(0, |r| int(r, "id") - ids::reservation(store.account_id, 0));
    let index = usize::try_from(last_index + 1).ok()?;
    if index > DatasetSize::MAX_RESERVATIONS {
        return None;
    }
    let active: Vec<&Value> = store
        .listings
        .iter()
        .filter(|l| l.get("specialStatus").is_none_or(Value::is_null))
        .collect();
    let pool: Vec<&Value> = if active.is_empty() {
        store.listings.iter().collect()
    } else {
        active
    };
    if pool.is_empty() {
        return None;
    }
    let listing = pool[rng.random_range(0..pool.len())];
    let times = ReservationTimes {
        reservation_date: at - TimeDelta::seconds(3),
        inserted_on: at,
        updated_on: at,
        latest_activity_on: at,
        arrival: at.date_naive() + TimeDelta::days(rng.random_range(7..=200)),
    };
    let reservation = build_reservation(store.account_id, index, listing, "new", times, rng);
    let id = int(&reservation, "id");
    store.reservations.push(reservation);
    reservation_change(store, "reservation.created", id)
}

fn update_reservation(
    store: &mut AccountStore,
    rng: &mut StdRng,
    at: DateTime<Utc>,
    changed: &HashSet<i64>,
) -> Option<Change> {
    let position = {
        let len = store.reservations.len();
        let live = not_cancelled(store);
        let fresh = |position: usize| !changed.contains(&int(&store.reservations[position], "id"));
        find_random(rng, len, |p| live(p) && fresh(p))
            .or_else(|| find_random(rng, len, fresh))
            .or_else(|| find_random(rng, len, |_| true))?
    };
    let capacity = store
        .listing(int(&store.reservations[position], "listingMapId"))
        .map_or(2, |l| int(l, "personCapacity").max(1));
    let reservation = &mut store.reservations[position];
    let bookable = matches!(text(reservation, "status"), "new" | "modified");
    match rng.random_range(0..4) {
        0 if bookable => shift_dates(reservation, rng),
        1 if bookable => change_guests(reservation, capacity),
        2 if bookable && int(reservation, "isPaid") == 0 => reservation["isPaid"] = json!(1),
        _ => {
            let current = text(reservation, "hostNote").to_string();
            let notes: Vec<&&str> = HOST_NOTES.iter().filter(|n| **n != current).collect();
            reservation["hostNote"] = json!(**notes[rng.random_range(0..notes.len())]);
        }
    }
    touch(reservation, at);
    let id = int(reservation, "id");
    reservation_change(store, "reservation.updated", id)
}

/// Moves the stay by 1-3 days either way, remembering the previous dates.
fn shift_dates(reservation: &mut Value, rng: &mut StdRng) {
    let (Some(arrival), Some(departure)) = (
        date(reservation, "arrivalDate"),
        date(reservation, "departureDate"),
    ) else {
        return;
    };
    let days = rng.random_range(1..=3) * if rng.random_bool(0.5) { 1 } else { -1 };
    let shift = TimeDelta::days(days);
    reservation["previousArrivalDate"] = json!(arrival.format("%Y-%m-%d").to_string());
    reservation["previousDepartureDate"] = json!(departure.format("%Y-%m-%d").to_string());
    reservation["arrivalDate"] = json!((arrival + shift).format("%Y-%m-%d").to_string());
    reservation["departureDate"] = json!((departure + shift).format("%Y-%m-%d").to_string());
    reservation["status"] = json!("modified");
}

/// One guest more (or less when the listing is full), repriced per person.
fn change_guests(reservation: &mut Value, capacity: i64) {
    let guests = int(reservation, "numberOfGuests").max(1);
    let children = int(reservation, "children");
    let next = if guests < capacity {
        guests + 1
    } else {
        (guests - 1).max(1)
    };
    let nights = int(reservation, "nights").max(1) as f64;
    let total = reservation
        .get("totalPrice")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let repriced = ((total + (next - guests) as f64 * 15.0 * nights) * 100.0).round() / 100.0;
    reservation["numberOfGuests"] = json!(next);
    reservation["adults"] = json!((next - children).max(1));
    reservation["totalPrice"] = json!(repriced.max(0.0));
    reservation["status"] = json!("modified");
}

fn cancel_reservation(
    store: &mut AccountStore,
    rng: &mut StdRng,
    at: DateTime<Utc>,
) -> Option<Change> {
    let position = find_random(rng, store.reservations.len(), not_cancelled(store))?;
    let reservation = &mut store.reservations[position];
    let by = if text(reservation, "status") == "ownerStay" || rng.random_bool(0.3) {
        "host"
    } else {
        "guest"
    };
    reservation["status"] = json!("cancelled");
    reservation["cancellationDate"] = json!(at.format("%Y-%m-%d").to_string());
    reservation["cancelledBy"] = json!(by);
    touch(reservation, at);
    let id = int(reservation, "id");
    reservation_change(store, "reservation.updated", id)
}

/// Where a new message goes (positions into the store's lists).
enum Target {
    /// Open the conversation of the reservation at this position.
    New(usize),
    /// Append to the conversation at this position.
    Existing(usize),
}

/// Appends a message to a conversation, opening the conversation of a
/// reservation that has none about one time in five (or when every
/// existing conversation is full).
fn new_message(
    store: &mut AccountStore,
    rng: &mut StdRng,
    at: DateTime<Utc>,
    changed: &HashSet<i64>,
) -> Option<Change> {
    let account_id = store.account_id;
    let open = |store: &AccountStore, rng: &mut StdRng, avoid_changed: bool| {
        find_random(rng, store.conversations.len(), |position| {
            let id = int(&store.conversations[position], "id");
            store.messages_of(id).len() < DatasetSize::MAX_MESSAGES_PER_CONVERSATION
                && !(avoid_changed && changed.contains(&id))
        })
        .map(Target::Existing)
    };
    let fresh = |store: &AccountStore, rng: &mut StdRng| {
        let reachable = store.reservations.len().min(DatasetSize::MAX_CONVERSATIONS);
        find_random(rng, reachable, |position| {
            let id = ids::conversation(account_id, position + 1);
            store.conversation(id).is_none()
        })
        .map(Target::New)
    };
    let target = if store.conversations.is_empty() || rng.random_bool(0.2) {
        fresh(store, rng).or_else(|| open(store, rng, true))
    } else {
        open(store, rng, true).or_else(|| fresh(store, rng))
    }
    .or_else(|| open(store, rng, false))?;

    let (conversation_id, mut conversation) = match target {
        Target::New(position) => {
            let reservation = &store.reservations[position];
            let listing = store.listing(int(reservation, "listingMapId"));
            let context = MessageContext::new(account_id, reservation, listing)?;
            let conversation = build_conversation(&context, reservation, rng);
            (context.conversation_id, conversation)
        }
        Target::Existing(position) => {
            let conversation = store.conversations[position].clone();
            (int(&conversation, "id"), conversation)
        }
    };

    let reservation = store.reservation(int(&conversation, "reservationId"))?;
    let channel_id = reservation.get("channelId").cloned().unwrap_or(Value::Null);
    let listing = store.listing(int(reservation, "listingMapId"));
    let context = MessageContext::new(account_id, reservation, listing)?;
    let history = store.messages_of(conversation_id);
    let incoming = history.last().is_none_or(|m| int(m, "isIncoming") == 0);
    let message = build_message(&context, history.len() + 1, incoming, at, !incoming, rng);

    let messages = store.messages.entry(conversation_id).or_default();
    messages.push(message.clone());
    summarize(&mut conversation, messages);
    store.put_conversation(conversation);

    let mut data = message;
    data["channelId"] = channel_id;
    Some(Change {
        event: "message.received".to_string(),
        object_id: int(&data, "id"),
        account_id,
        object: "conversationMessage".to_string(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::dataset::parse_timestamp;

    fn store() -> AccountStore {
        let anchor = parse_timestamp("2026-03-01 00:00:00").unwrap();
        AccountStore::generate(
            1001,
            42,
            DatasetSize {
                listings: 5,
                reservations: 30,
                conversations: 10,
                messages_per_conversation: 3,
            },
            anchor,
        )
    }

    fn now() -> DateTime<Utc> {
        parse_timestamp("2026-03-02 12:00:00").unwrap()
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let mut clock = MutationClock::default();
        let a = clock.tick(now());
        let b = clock.tick(now());
        let c = clock.tick(now() + TimeDelta::milliseconds(300));
        assert!(a < b && b < c);
        assert_eq!(
            clock.tick(now() + TimeDelta::minutes(5)),
            now() + TimeDelta::minutes(5)
        );
    }

    #[test]
    fn new_reservations_extend_the_id_range() {
        let mut store = store();
        let mut rng = StdRng::seed_from_u64(1);
        let change = apply(
            &mut store,
            &mut rng,
            Mutation::NewReservation,
            now(),
            &HashSet::new(),
        )
        .unwrap();
        assert_eq!(change.event, "reservation.created");
        assert_eq!(change.object_id, 1001 * 1_000_000 + 31);
        assert_eq!(change.data["status"], "new");
        assert_eq!(change.data["updatedOn"], "2026-03-02 12:00:00");
        assert_eq!(store.reservations.len(), 31);
        assert_eq!(store.reservation(change.object_id), Some(&change.data));
    }

    #[test]
    fn updates_bump_timestamps_and_cancellations_are_updates() {
        let mut store = store();
        let mut rng = StdRng::seed_from_u64(2);
        let mut clock = MutationClock::default();
        let mut last = String::new();
        for _ in 0..20 {
            let at = clock.tick(now());
            let change = apply(
                &mut store,
                &mut rng,
                Mutation::UpdateReservation,
                at,
                &HashSet::new(),
            )
            .unwrap();
            assert_eq!(change.event, "reservation.updated");
            let updated = change.data["updatedOn"].as_str().unwrap().to_string();
            assert!(updated > last, "{updated} after {last}");
            assert_eq!(change.data["latestActivityOn"], change.data["updatedOn"]);
            last = updated;
        }
        let at = clock.tick(now());
        let change = apply(
            &mut store,
            &mut rng,
            Mutation::CancelReservation,
            at,
            &HashSet::new(),
        )
        .unwrap();
        assert_eq!(change.event, "reservation.updated");
        assert_eq!(change.data["status"], "cancelled");
        assert_eq!(change.data["cancellationDate"], "2026-03-02");
        assert!(change.data["cancelledBy"].is_string());
    }

    #[test]
    fn a_batch_changes_distinct_objects() {
        let mut store = store();
        let mut rng = StdRng::seed_from_u64(5);
        let mut clock = MutationClock::default();
        for (mutation, count) in [
            (Mutation::UpdateReservation, 25),
            (Mutation::NewMessage, 30),
        ] {
            let mut changed = HashSet::new();
            for _ in 0..count {
                let at = clock.tick(now());
                let change = apply(&mut store, &mut rng, mutation, at, &changed).unwrap();
                assert!(
                    changed.insert(target_of(&change)),
                    "{mutation:?} repeated a target"
                );
            }
        }
        // With every target used, a batch goes on with repeats.
        let all: HashSet<i64> = store.reservations.iter().map(|r| int(r, "id")).collect();
        let at = clock.tick(now());
        assert!(apply(&mut store, &mut rng, Mutation::UpdateReservation, at, &all).is_some());
    }

    #[test]
    fn cancelling_runs_out_of_targets() {
        let mut store = store();
        let mut rng = StdRng::seed_from_u64(4);
        let mut clock = MutationClock::default();
        let live = store
            .reservations
            .iter()
            .filter(|r| r["status"] != "cancelled")
            .count();
        for _ in 0..live {
            let at = clock.tick(now());
            assert!(
                apply(
                    &mut store,
                    &mut rng,
                    Mutation::CancelReservation,
                    at,
                    &HashSet::new()
                )
                .is_some()
            );
        }
        assert!(
            store
                .reservations
                .iter()
                .all(|r| r["status"] == "cancelled")
        );
        let at = clock.tick(now());
        assert_eq!(
            apply(
                &mut store,
                &mut rng,
                Mutation::CancelReservation,
                at,
                &HashSet::new()
            ),
            None
        );
        // Updates still find a target among cancelled reservations.
        assert!(
            apply(
                &mut store,
                &mut rng,
                Mutation::UpdateReservation,
                at,
                &HashSet::new()
            )
            .is_some()
        );
    }

    #[test]
    fn messages_extend_conversations() {
        let mut store = store();
        let mut rng = StdRng::seed_from_u64(3);
        let mut clock = MutationClock::default();
        for _ in 0..30 {
            let at = clock.tick(now());
            let change = apply(
                &mut store,
                &mut rng,
                Mutation::NewMessage,
                at,
                &HashSet::new(),
            )
            .unwrap();
            assert_eq!(change.event, "message.received");
            assert_eq!(change.object, "conversationMessage");
            let conversation_id = change.data["conversationId"].as_i64().unwrap();
            let messages = store.messages_of(conversation_id);
            let latest = messages.last().unwrap();
            assert_eq!(latest["id"].as_i64(), Some(change.object_id));
            assert!(change.data["channelId"].is_number());
            let rendered =
                store.render_conversation(store.conversation(conversation_id).unwrap(), true);
            assert_eq!(rendered["conversationMessages"][0], *latest);
            if latest["isIncoming"] == 1 {
                assert_eq!(rendered["messageReceivedOn"], latest["date"]);
                assert_eq!(rendered["hasUnreadMessages"], 1);
            }
            for pair in messages.windows(2) {
                assert_ne!(pair[0]["isIncoming"], pair[1]["isIncoming"]);
            }
        }
        assert!(
            store.conversations.len() > 10,
            "some conversations were opened"
        );
    }
}
