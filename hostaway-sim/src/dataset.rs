//! Deterministic generation of one account's Hostaway data (listings,
//! reservations, conversations, messages) with the field names and shapes of
//! the fixtures in `tests/fixtures/hostaway`. Pure: no clock, no global state.
//!
//! Id scheme, chosen so that ids of different accounts never collide:
//!
//! | object       | id                                                        | range of i / j |
//! |--------------|-----------------------------------------------------------|----------------|
//! | listing      | `account_id * 10_000 + i`                                 | i 1..=9_999    |
//! | reservation  | `account_id * 1_000_000 + i`                              | i 1..=499_999  |
//! | conversation | `account_id * 1_000_000 + 500_000 + i`                    | i 1..=99_999   |
//! | message      | `account_id * 100_000_000 + conversation_i * 1_000 + j`   | j 1..=999      |
//!
//! Conversation `i` always belongs to reservation `i`, so a conversation
//! created later for a reservation gets that reservation's index.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::config::DatasetSize;
use super::vocab::{
    ADJECTIVES, AIRBNB, CANCELLATION_POLICIES, CHANNELS, CITIES, DIRECT, FEATURES, GUEST_MESSAGES,
    GUEST_NOTES, HOST_MESSAGES, HOST_NOTES, KINDS, ORIGINS, PITCHES, STATUSES,
};

/// The simulator's truth for one account, shaped as the API returns it:
/// conversations as `GET /v1/conversations?includeResources=1` lists them
/// (latest message and embedded `Reservation`), messages per conversation id
/// oldest first. Lists are ordered by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountData {
    pub listings: Vec<Value>,
    pub reservations: Vec<Value>,
    pub conversations: Vec<Value>,
    pub messages: BTreeMap<i64, Vec<Value>>,
}

/// Id arithmetic of the scheme in the module documentation.
pub mod ids {
    pub fn listing(account_id: i64, index: usize) -> i64 {
        account_id * 10_000 + index as i64
    }

    pub fn reservation(account_id: i64, index: usize) -> i64 {
        account_id * 1_000_000 + index as i64
    }

    pub fn conversation(account_id: i64, index: usize) -> i64 {
        account_id * 1_000_000 + 500_000 + index as i64
    }

    pub fn message(account_id: i64, conversation_index: usize, sequence: usize) -> i64 {
        account_id * 100_000_000 + conversation_index as i64 * 1_000 + sequence as i64
    }

    /// The index of a conversation id of this account, if it is one.
    pub fn conversation_index(account_id: i64, conversation_id: i64) -> Option<usize> {
        let index = conversation_id - account_id * 1_000_000 - 500_000;
        (1..=super::DatasetSize::MAX_CONVERSATIONS as i64)
            .contains(&index)
            .then_some(index as usize)
    }
}

/// Formats a time the way Hostaway writes date-times (UTC, no zone suffix).
pub fn format_timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Reads a Hostaway date-time written by `format_timestamp`.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|naive| naive.and_utc())
}

fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Independent random streams, so that e.g. reservation 7 is the same no
/// matter how many reservations or conversations are generated.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Listing = 1,
    Reservation = 2,
    Conversation = 3,
    Mutations = 4,
}

/// A generator seeded from (seed, account, stream, index) through splitmix64.
pub fn entity_rng(seed: u64, account_id: i64, stream: Stream, index: u64) -> StdRng {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut state = splitmix(seed);
    state = splitmix(state ^ account_id as u64);
    state = splitmix(state ^ stream as u64);
    state = splitmix(state ^ index);
    StdRng::seed_from_u64(state)
}

// ---------------------------------------------------------------------------
// Small random helpers

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // Every caller passes a non-empty constant table.
    &items[rng.random_range(0..items.len())]
}

/// One of `items`, chosen with probability proportional to `weight`.
fn weighted<'a, T>(rng: &mut StdRng, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for item in items {
        let w = weight(item);
        if roll < w {
            return item;
        }
        roll -= w;
    }
    // Every caller passes a non-empty constant table.
    &items[items.len() - 1]
}

fn hex(rng: &mut StdRng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn digits(rng: &mut StdRng, count: usize) -> String {
    (0..count)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn code(rng: &mut StdRng, count: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..count)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn money(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn seconds(rng: &mut StdRng, low: i64, high: i64) -> TimeDelta {
    TimeDelta::seconds(if high > low {
        rng.random_range(low..=high)
    } else {
        low
    })
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn float(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `make(rng)` with probability `p`, otherwise null.
fn sometimes(rng: &mut StdRng, p: f64, make: impl FnOnce(&mut StdRng) -> Value) -> Value {
    if rng.random_bool(p) {
        make(rng)
    } else {
        Value::Null
    }
}

/// Joins JSON objects into one (a single `json!` literal cannot hold as many
/// keys as a Hostaway object has).
fn join<const N: usize>(parts: [Value; N]) -> Value {
    let mut joined = Map::new();
    for part in parts {
        joined.extend(object(part));
    }
    Value::Object(joined)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------
// Listings

/// Listing `index` of the account; `latestActivityOn` is filled in once the
/// reservations exist.
pub fn build_listing(account_id: i64, index: usize, rng: &mut StdRng) -> Value {
    let city = pick(rng, CITIES);
    let kind = pick(rng, KINDS);
    let adjective = *pick(rng, ADJECTIVES);
    let feature = *pick(rng, FEATURES);
    let name = format!("{adjective} {} {feature}", kind.word);
    let initials: String = adjective
        .split(' ')
        .chain(std::iter::once(kind.word))
        .filter_map(|word| word.chars().next())
        .collect();
    let bedrooms_text = match kind.bedrooms {
        0 => "Compact studio".to_string(),
        n => format!("{}-bedroom {}", n, kind.word.to_lowercase()),
    };
    let description = format!("{bedrooms_text} in {}, {}.", city.city, pick(rng, PITCHES));
    let street = format!("{} {}", pick(rng, city.streets), rng.random_range(1..=140));
    let address = format!("{street}, {} {}, {}", city.zipcode, city.city, city.country);
    let public_address = format!("{}, {}, {}", city.city, city.zipcode, city.country);
    let jitter = |rng: &mut StdRng, degrees: f64| {
        ((degrees + rng.random_range(-0.02..0.02)) * 10_000.0).round() / 10_000.0
    };
    let (lat, lng) = (jitter(rng, city.lat), jitter(rng, city.lng));

    let room_type = if kind.bedrooms >= 2 && rng.random_bool(0.08) {
        "private_room"
    } else {
        "entire_home"
    };
    let capacity = kind.capacity + i64::from(rng.random_bool(0.3));
    let guests_included = (capacity - i64::from(rng.random_bool(0.5))).max(1);
    let beds = kind.bedrooms.max(1) + rng.random_range(0..=1);
    let bathrooms = (kind.bedrooms / 2).max(1) + i64::from(kind.bedrooms >= 4);
    let check_in_start = *pick(rng, &[14, 15, 16]);
    let check_in_end = *pick(rng, &[20, 22, 23]);
    let check_out = *pick(rng, &[10, 11, 12]);
    let min_nights = *pick(rng, &[1, 2, 2, 3, 5]);
    let max_nights = *pick(rng, &[30, 60, 90, 365]);

    let usd = if city.currency == "USD" { 1.15 } else { 1.0 };
    let price = (kind.price * usd * rng.random_range(0.8..1.3) / 5.0).round() * 5.0;
    let extra_person = if rng.random_bool(0.7) {
        json!(*pick(rng, &[15.0, 20.0, 35.0]))
    } else {
        json!(0)
    };
    let rating = sometimes(rng, 0.9, |rng| {
        json!(f64::from(rng.random_range(80..=100u8)) / 10.0)
    });
    let external = 900_000_000 + account_id % 10_000 * 10_000 + index as i64;
    let airbnb_url = sometimes(rng, 0.8, |_| {
        json!(format!("https://www.airbnb.com/rooms/{external}"))
    });
    let vrbo_url = sometimes(rng, 0.35, |_| {
        json!(format!("https://www.vrbo.com/{}", 5_550_000 + index))
    });
    let special_status = sometimes(rng, 0.04, |_| json!("archived"));

    join([
        json!({
            "id": ids::listing(account_id, index),
            "propertyTypeId": kind.property_type_id,
            "name": name,
            "externalListingName": name,
            "internalListingName": format!("{initials}-{index:02}"),
            "description": description,
        }),
        json!({
            "country": city.country,
            "countryCode": city.country_code,
            "state": city.state,
            "city": city.city,
            "street": street,
            "address": address,
            "publicAddress": public_address,
            "zipcode": city.zipcode,
            "lat": lat,
            "lng": lng,
            "timeZoneName": city.time_zone,
        }),
        json!({
            "personCapacity": capacity,
            "roomType": room_type,
            "bedroomsNumber": kind.bedrooms,
            "bedsNumber": beds,
            "bathroomsNumber": bathrooms,
            "guestsIncluded": guests_included,
            "checkInTimeStart": check_in_start,
            "checkInTimeEnd": check_in_end,
            "checkOutTime": check_out,
            "minNights": min_nights,
            "maxNights": max_nights,
        }),
        json!({
            "price": price,
            "cleaningFee": kind.cleaning_fee,
            "priceForExtraPerson": extra_person,
            "currencyCode": city.currency,
            "instantBookable": i64::from(rng.random_bool(0.6)),
            "averageReviewRating": rating,
            "isRentalAgreementActive": rng.random_bool(0.3),
            "insuranceEligibilityStatus": rng.random_bool(0.1),
        }),
        json!({
            "specialStatus": special_status,
            "airbnbListingUrl": airbnb_url,
            "vrboListingUrl": vrbo_url,
            "latestActivityOn": Value::Null,
            "bookingEngineUrls": [],
            "listingAmenities": [],
            "listingBedTypes": [],
            "listingImages": [],
            "customFieldValues": [],
        }),
    ])
}

// ---------------------------------------------------------------------------
// Reservations

/// When a reservation was booked and last touched, and its stay.
#[derive(Debug, Clone, Copy)]
pub struct ReservationTimes {
    pub reservation_date: DateTime<Utc>,
    pub inserted_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
    pub latest_activity_on: DateTime<Utc>,
    pub arrival: NaiveDate,
}

/// Times of a historical reservation: everything strictly before `anchor`.
fn historical_times(rng: &mut StdRng, status: &str, anchor: DateTime<Utc>) -> ReservationTimes {
    let latest = anchor - TimeDelta::minutes(1);
    let arrival = anchor.date_naive() + TimeDelta::days(rng.random_range(-240..=300));
    let lead = TimeDelta::days(rng.random_range(1..=180)) + seconds(rng, 0, 86_399);
    let mut booked = arrival.and_time(NaiveTime::MIN).and_utc() - lead;
    if booked > anchor - TimeDelta::minutes(10) {
        booked = anchor - seconds(rng, 600, 20 * 86_400);
    }
    let inserted = booked + seconds(rng, 1, 5);
    let room = (latest - inserted).num_seconds().max(0);
    let updated = match status {
        "modified" | "cancelled" => inserted + seconds(rng, room.min(3_600), room.min(90 * 86_400)),
        "new" | "inquiry" => inserted + seconds(rng, 0, room.min(900)),
        _ => inserted,
    };
    let latest_activity = match status {
        "modified" | "cancelled" => updated,
        _ => booked,
    };
    ReservationTimes {
        reservation_date: booked,
        inserted_on: inserted,
        updated_on: updated,
        latest_activity_on: latest_activity,
        arrival,
    }
}

/// Reservation `index` of the account on `listing`, in `status`.
pub fn build_reservation(
    account_id: i64,
    index: usize,
    listing: &Value,
    status: &str,
    times: ReservationTimes,
    rng: &mut StdRng,
) -> Value {
    let owner_stay = status == "ownerStay";
    let (channel_id, channel_name, source, _) = if owner_stay {
        DIRECT
    } else if status == "inquiry" {
        AIRBNB
    } else {
        *weighted(rng, CHANNELS, |channel| channel.3)
    };
    let id = ids::reservation(account_id, index);
    let listing_id = int(listing, "id");
    let channel_code = match channel_name {
        "airbnbOfficial" => format!("HM{}", code(rng, 8)),
        "bookingcom" => digits(rng, 10),
        "homeaway" => format!("HA-{}", code(rng, 7)),
        "expedia" => digits(rng, 9),
        _ => format!("{account_id}-{listing_id}-{channel_id}-{}", digits(rng, 7)),
    };
    let external_property_id = match channel_name {
        "airbnbOfficial" => text(listing, "airbnbListingUrl")
            .rsplit('/')
            .next()
            .filter(|tail| !tail.is_empty())
            .map_or_else(|| json!(digits(rng, 9)), |tail| json!(tail)),
        "bookingcom" => json!(digits(rng, 7)),
        _ => Value::Null,
    };

    let origin = pick(rng, ORIGINS);
    let first = *pick(rng, origin.first_names);
    let last = *pick(rng, origin.last_names);
    let email_local = format!("{}.{}", first, last.replace(' ', "")).to_lowercase();
    let guest_email = match channel_name {
        "bookingcom" => format!(
            "{}{}.{}@guest.booking.example",
            first.chars().next().unwrap_or('g').to_ascii_lowercase(),
            last.replace(' ', "").to_lowercase(),
            digits(rng, 6)
        ),
        _ => format!("{email_local}@guest.example"),
    };

    let min_nights = int(listing, "minNights").max(1);
    let nights = rng.random_range(min_nights..=min_nights.max(1) + 9);
    let departure = times.arrival + TimeDelta::days(nights);
    let capacity = int(listing, "personCapacity").max(1);
    let guests = rng.random_range(1..=capacity);
    let children = if guests > 2 && rng.random_bool(0.3) {
        rng.random_range(1..=guests - 2)
    } else {
        0
    };
    let cleaning_fee = float(listing, "cleaningFee");
    let nightly = float(listing, "price") * rng.random_range(0.85..1.25);
    let total = money(nightly * nights as f64 + cleaning_fee);
    let taxed = matches!(channel_name, "airbnbOfficial" | "direct" | "bookingengine");
    let tax = if taxed {
        json!(money(total * 0.04))
    } else {
        Value::Null
    };
    let paid = match status {
        "inquiry" => Value::Null,
        "cancelled" => json!(i64::from(rng.random_bool(0.3))),
        _ => json!(i64::from(rng.random_bool(0.75))),
    };
    let (policy_id, policy) = *pick(rng, CANCELLATION_POLICIES);
    let airbnb = channel_name == "airbnbOfficial";
    let (confirmation_code, airbnb_policy) = if airbnb {
        (json!(channel_code), json!(policy))
    } else {
        (Value::Null, Value::Null)
    };
    let guest_external_id = if airbnb {
        json!(digits(rng, 8))
    } else {
        Value::Null
    };

    // Half of the modified bookings moved their dates by a few days.
    let (previous_arrival, previous_departure) = if status == "modified" && rng.random_bool(0.5) {
        let shift = TimeDelta::days(rng.random_range(1..=3));
        (
            json!(format_date(times.arrival - shift)),
            json!(format_date(departure - shift)),
        )
    } else {
        (Value::Null, Value::Null)
    };
    let (cancellation_date, cancelled_by) = if status == "cancelled" {
        let by = if rng.random_bool(0.7) {
            "guest"
        } else {
            "host"
        };
        (json!(format_date(times.updated_on.date_naive())), json!(by))
    } else {
        (Value::Null, Value::Null)
    };
    let assignee = sometimes(rng, 0.2, |rng| json!(rng.random_range(900..=910)));
    let host_note = sometimes(rng, 0.15, |rng| json!(*pick(rng, HOST_NOTES)));
    let guest_note = sometimes(rng, 0.2, |rng| json!(*pick(rng, GUEST_NOTES)));
    let agreement = if rng.random_bool(0.2) {
        "signed"
    } else {
        "not_required"
    };
    let instant = i64::from(channel_name != "direct" && rng.random_bool(0.6));
    let infants = i64::from(children > 0 && rng.random_bool(0.2));
    let pets = i64::from(rng.random_bool(0.05));
    let phone = format!(
        "{}{}",
        origin.phone_prefix,
        digits(rng, origin.phone_digits)
    );
    let guest_city = *pick(rng, origin.cities);

    let mut reservation = join([
        json!({
            "id": id,
            "hostawayReservationId": id,
            "listingMapId": listing_id,
            "listingName": text(listing, "name"),
            "channelId": channel_id,
            "channelName": channel_name,
            "source": source,
            "reservationId": channel_code,
            "channelReservationId": channel_code,
            "externalPropertyId": external_property_id,
            "confirmationCode": confirmation_code,
        }),
        json!({
            "status": status,
            "reservationDate": format_timestamp(times.reservation_date),
            "pendingExpireDate": Value::Null,
            "cancellationDate": cancellation_date,
            "cancelledBy": cancelled_by,
            "latestActivityOn": format_timestamp(times.latest_activity_on),
            "insertedOn": format_timestamp(times.inserted_on),
            "updatedOn": format_timestamp(times.updated_on),
        }),
        json!({
            "guestName": format!("{first} {last}"),
            "guestFirstName": first,
            "guestLastName": last,
            "guestExternalAccountId": guest_external_id,
            "guestEmail": guest_email,
            "guestCountry": origin.country_code,
            "guestCity": guest_city,
            "guestLocale": origin.locale,
            "phone": phone,
            "numberOfGuests": guests,
            "adults": guests - children,
            "children": children,
            "infants": infants,
            "pets": pets,
        }),
        json!({
            "arrivalDate": format_date(times.arrival),
            "departureDate": format_date(departure),
            "nights": nights,
            "isDatesUnspecified": 0,
            "previousArrivalDate": previous_arrival,
            "previousDepartureDate": previous_departure,
            "checkInTime": int(listing, "checkInTimeStart"),
            "checkOutTime": int(listing, "checkOutTime"),
        }),
        json!({
            "totalPrice": total,
            "taxAmount": tax,
            "cleaningFee": cleaning_fee,
            "isPaid": paid,
            "currency": text(listing, "currencyCode"),
            "cancellationPolicyId": policy_id,
            "cancellationPolicy": policy,
            "airbnbCancellationPolicy": airbnb_policy,
            "reservationAgreement": agreement,
        }),
        json!({
            "assigneeUserId": assignee,
            "customerUserId": Value::Null,
            "isProcessed": i64::from(status != "inquiry"),
            "isInitial": 0,
            "isManuallyChecked": 0,
            "isInstantBooked": instant,
            "hasPullError": 0,
            "isStarred": i64::from(rng.random_bool(0.05)),
            "isArchived": 0,
            "isPinned": i64::from(rng.random_bool(0.02)),
            "hostNote": host_note,
            "guestNote": guest_note,
        }),
        json!({
            "hostProxyEmail": Value::Null,
            "customFieldValues": [],
            "reservationFees": [],
            "reservationUnit": [],
        }),
    ]);

    if owner_stay {
        // Owner blocks carry no guest contact and no financials (like the fixture).
        let initial = first.chars().next().unwrap_or('A');
        for (key, value) in [
            ("guestName", json!(format!("Owner - {initial}. {last}"))),
            ("guestEmail", Value::Null),
            ("guestCountry", Value::Null),
            ("guestCity", Value::Null),
            ("guestLocale", Value::Null),
            ("guestExternalAccountId", Value::Null),
            ("phone", Value::Null),
            ("children", Value::Null),
            ("infants", Value::Null),
            ("pets", Value::Null),
            ("checkInTime", Value::Null),
            ("checkOutTime", Value::Null),
            ("totalPrice", json!(0)),
            ("taxAmount", Value::Null),
            ("cleaningFee", Value::Null),
            ("isPaid", Value::Null),
            ("isInstantBooked", json!(0)),
            ("isProcessed", json!(0)),
            ("cancellationPolicyId", Value::Null),
            ("cancellationPolicy", Value::Null),
            ("hostNote", json!("Owner holiday week")),
            ("guestNote", Value::Null),
        ] {
            reservation[key] = value;
        }
    }
    reservation
}

// ---------------------------------------------------------------------------
// Conversations and messages

/// What every message of one conversation shares.
#[derive(Debug, Clone)]
pub struct MessageContext {
    pub account_id: i64,
    pub listing_map_id: i64,
    pub reservation_id: i64,
    pub conversation_id: i64,
    pub conversation_index: usize,
    pub time_zone: String,
    pub communication_type: &'static str,
    pub guest_first_name: String,
    pub listing_name: String,
    pub check_in_hour: i64,
}

impl MessageContext {
    pub fn new(account_id: i64, reservation: &Value, listing: Option<&Value>) -> Option<Self> {
        let reservation_id = int(reservation, "id");
        let index = usize::try_from(reservation_id - ids::reservation(account_id, 0)).ok()?;
        if !(1..=DatasetSize::MAX_CONVERSATIONS).contains(&index) {
            return None;
        }
        let channel = text(reservation, "channelName");
        Some(MessageContext {
            account_id,
            listing_map_id: int(reservation, "listingMapId"),
            reservation_id,
            conversation_id: ids::conversation(account_id, index),
            conversation_index: index,
            time_zone: listing
                .map(|l| text(l, "timeZoneName").to_string())
                .unwrap_or_else(|| "UTC".to_string()),
            communication_type: if matches!(channel, "direct" | "bookingengine") {
                "email"
            } else {
                "channel"
            },
            guest_first_name: reservation
                .get("guestFirstName")
                .and_then(Value::as_str)
                .unwrap_or("there")
                .to_string(),
            listing_name: text(reservation, "listingName").to_string(),
            check_in_hour: listing.map_or(15, |l| int(l, "checkInTimeStart")),
        })
    }
}

/// Message `sequence` of a conversation, written at `at`.
pub fn build_message(
    context: &MessageContext,
    sequence: usize,
    incoming: bool,
    at: DateTime<Utc>,
    seen: bool,
    rng: &mut StdRng,
) -> Value {
    let id = ids::message(context.account_id, context.conversation_index, sequence);
    let template = if incoming {
        *pick(rng, GUEST_MESSAGES)
    } else {
        *pick(rng, HOST_MESSAGES)
    };
    let body = template
        .replace("{listing}", &context.listing_name)
        .replace("{first}", &context.guest_first_name)
        .replace("{checkin}", &context.check_in_hour.to_string())
        .replace("{hour}", &rng.random_range(9..=13).to_string());
    let attachments = if incoming && rng.random_bool(0.04) {
        json!([{
            "id": id,
            "accountId": context.account_id,
            "listingMapId": Value::Null,
            "reservationId": context.reservation_id,
            "taskId": Value::Null,
            "conversationMessageId": id,
            "communicationId": Value::Null,
            "name": "photo.jpeg",
            "url": format!(
                "https://attachments.example-cdn.invalid/{}/{id}/photo.jpeg?expires={}&sig={}",
                context.account_id,
                (at + TimeDelta::days(7)).timestamp(),
                hex(rng, 6)
            ),
            "extension": "jpeg",
            "mimeType": "image/jpeg",
            "isImage": 1,
            "isPublic": 0,
        }])
    } else {
        json!([])
    };
    let (sent_channel_date, inserted, updated) = if incoming {
        let stored = format_timestamp(at + TimeDelta::seconds(1));
        (Value::Null, stored.clone(), stored)
    } else {
        let pushed = format_timestamp(at + seconds(rng, 1, 15));
        (json!(pushed), format_timestamp(at), pushed)
    };
    let communication_id = if incoming {
        Value::Null
    } else {
        json!(77_000 + rng.random_range(0..1_000))
    };
    json!({
        "id": id,
        "accountId": context.account_id,
        "listingMapId": context.listing_map_id,
        "reservationId": context.reservation_id,
        "conversationId": context.conversation_id,
        "communicationId": communication_id,
        "airbnbThreadMessageId": Value::Null,
        "body": body,
        "communicationType": context.communication_type,
        "status": "sent",
        "isIncoming": i64::from(incoming),
        "isSeen": i64::from(seen),
        "sentUsingHostaway": i64::from(!incoming),
        "hash": hex(rng, 16),
        "listingTimeZoneName": context.time_zone,
        "communicationEvent": Value::Null,
        "communicationTimeDelta": Value::Null,
        "communicationApplyListingTimeZone": Value::Null,
        "communicationAlwaysTrigger": Value::Null,
        "date": format_timestamp(at),
        "sentChannelDate": sent_channel_date,
        "attachments": attachments,
        "insertedOn": inserted,
        "updatedOn": updated,
    })
}

/// The conversation of a reservation, without messages (see `summarize`).
pub fn build_conversation(
    context: &MessageContext,
    reservation: &Value,
    rng: &mut StdRng,
) -> Value {
    json!({
        "id": context.conversation_id,
        "accountId": context.account_id,
        "listingMapId": context.listing_map_id,
        "reservationId": context.reservation_id,
        "type": "host-guest-email",
        "recipientEmail": reservation.get("guestEmail").cloned().unwrap_or(Value::Null),
        "recipientName": reservation.get("guestName").cloned().unwrap_or(Value::Null),
        "recipientPicture": Value::Null,
        "hostEmail": format!("c-{}@host.hostaway.info", hex(rng, 16)),
        "guestEmail": format!("c-{}@guest.hostaway.info", hex(rng, 16)),
        "hasUnreadMessages": 0,
        "messageSentOn": Value::Null,
        "messageReceivedOn": Value::Null,
    })
}

/// Brings a conversation's summary fields in line with its messages (oldest
/// first): last outgoing / incoming times and the unread flag.
pub fn summarize(conversation: &mut Value, messages: &[Value]) {
    let is_incoming = |m: &&Value| int(m, "isIncoming") == 1;
    let sent_on = messages
        .iter()
        .rev()
        .find(|m| !is_incoming(m))
        .and_then(|m| {
            m.get("sentChannelDate")
                .filter(|v| !v.is_null())
                .or_else(|| m.get("date"))
                .cloned()
        })
        .unwrap_or(Value::Null);
    let received_on = messages
        .iter()
        .rev()
        .find(is_incoming)
        .and_then(|m| m.get("date").cloned())
        .unwrap_or(Value::Null);
    let unread = messages
        .last()
        .is_some_and(|m| is_incoming(&m) && int(m, "isSeen") == 0);
    conversation["messageSentOn"] = sent_on;
    conversation["messageReceivedOn"] = received_on;
    conversation["hasUnreadMessages"] = json!(i64::from(unread));
}

/// The subset of a reservation embedded in a conversation, with
/// `hostawayReservationId` as a string like the fixture.
fn embedded_reservation(reservation: &Value) -> Value {
    let mut subset = Map::new();
    for key in [
        "id",
        "listingMapId",
        "listingName",
        "channelId",
        "channelName",
        "reservationId",
        "hostawayReservationId",
        "guestName",
        "arrivalDate",
        "departureDate",
        "status",
        "insertedOn",
        "updatedOn",
    ] {
        let value = reservation.get(key).cloned().unwrap_or(Value::Null);
        let value = match (key, value) {
            ("hostawayReservationId", Value::Number(n)) => Value::String(n.to_string()),
            (_, other) => other,
        };
        subset.insert(key.to_string(), value);
    }
    Value::Object(subset)
}

// ---------------------------------------------------------------------------
// The mutable per-account store

/// One account's objects as the simulator keeps them: conversations without
/// their derived `conversationMessages`/`Reservation`, messages oldest first.
/// Every list is sorted by id.
#[derive(Debug, Clone)]
pub struct AccountStore {
    pub account_id: i64,
    pub listings: Vec<Value>,
    pub reservations: Vec<Value>,
    pub conversations: Vec<Value>,
    pub messages: BTreeMap<i64, Vec<Value>>,
}

impl AccountStore {
    /// Generates the account's data. `anchor` is the moment the data is
    /// "as of": every generated timestamp lies before it.
    pub fn generate(account_id: i64, seed: u64, size: DatasetSize, anchor: DateTime<Utc>) -> Self {
        let size = size.normalized();
        let mut listings: Vec<Value> = (1..=size.listings)
            .map(|i| {
                let mut rng = entity_rng(seed, account_id, Stream::Listing, i as u64);
                build_listing(account_id, i, &mut rng)
            })
            .collect();

        let reservations: Vec<Value> = (1..=size.reservations)
            .map(|i| {
                let mut rng = entity_rng(seed, account_id, Stream::Reservation, i as u64);
                let listing = &listings[rng.random_range(0..listings.len())];
                let status = weighted(&mut rng, STATUSES, |status| status.1).0;
                let times = historical_times(&mut rng, status, anchor);
                build_reservation(account_id, i, listing, status, times, &mut rng)
            })
            .collect();

        // A listing's latest activity is its most recent reservation activity.
        let mut latest: BTreeMap<i64, String> = BTreeMap::new();
        for reservation in &reservations {
            let activity = text(reservation, "latestActivityOn").to_string();
            let entry = latest.entry(int(reservation, "listingMapId")).or_default();
            if activity > *entry {
                *entry = activity;
            }
        }
        for (i, listing) in listings.iter_mut().enumerate() {
            let fallback = || {
                let mut rng = entity_rng(seed, account_id, Stream::Listing, (i + 1) as u64);
                let back = TimeDelta::days(rng.random_range(30..=400));
                format_timestamp(anchor - back)
            };
            let activity = latest
                .get(&int(listing, "id"))
                .cloned()
                .unwrap_or_else(fallback);
            listing["latestActivityOn"] = json!(activity);
        }

        let mut store = AccountStore {
            account_id,
            listings,
            reservations,
            conversations: Vec::with_capacity(size.conversations),
            messages: BTreeMap::new(),
        };
        for index in 1..=size.conversations {
            let mut rng = entity_rng(seed, account_id, Stream::Conversation, index as u64);
            store.generate_conversation(index, size.messages_per_conversation, anchor, &mut rng);
        }
        store
    }

    fn generate_conversation(
        &mut self,
        index: usize,
        message_count: usize,
        anchor: DateTime<Utc>,
        rng: &mut StdRng,
    ) {
        let Some(reservation) = self.reservations.get(index - 1) else {
            return;
        };
        let listing = self.listing(int(reservation, "listingMapId"));
        let Some(context) = MessageContext::new(self.account_id, reservation, listing) else {
            return;
        };
        let mut conversation = build_conversation(&context, reservation, rng);

        // Gaps of 2 min .. 8 h after the booking, squeezed to end before the anchor.
        let start = parse_timestamp(text(reservation, "insertedOn")).unwrap_or(anchor);
        let room = (anchor - TimeDelta::minutes(1) - start)
            .num_seconds()
            .max(0) as f64;
        let gaps: Vec<f64> = (0..message_count)
            .map(|_| rng.random_range(120.0..28_800.0))
            .collect();
        let total: f64 = gaps.iter().sum();
        let scale = if total > room && total > 0.0 {
            room / total
        } else {
            1.0
        };
        let mut incoming = rng.random_bool(0.5);
        let mut at = start;
        let mut messages = Vec::with_capacity(message_count);
        for (j, gap) in gaps.iter().enumerate() {
            at = (at + TimeDelta::seconds(((gap * scale) as i64).max(1)))
                .min(anchor - TimeDelta::seconds(20));
            let last = j + 1 == message_count;
            let seen = !(last && incoming && rng.random_bool(0.5));
            messages.push(build_message(&context, j + 1, incoming, at, seen, rng));
            incoming = !incoming;
        }
        summarize(&mut conversation, &messages);
        self.messages.insert(context.conversation_id, messages);
        self.conversations.push(conversation);
    }

    pub fn listing(&self, id: i64) -> Option<&Value> {
        find_by_id(&self.listings, id).map(|i| &self.listings[i])
    }

    pub fn reservation(&self, id: i64) -> Option<&Value> {
        find_by_id(&self.reservations, id).map(|i| &self.reservations[i])
    }

    /// Says `account_id` in every object's `accountId`, keeping the ids.
    pub fn rebrand(&mut self, account_id: i64) {
        let objects = self
            .listings
            .iter_mut()
            .chain(self.reservations.iter_mut())
            .chain(self.conversations.iter_mut())
            .chain(self.messages.values_mut().flatten());
        for object in objects {
            if let Some(map) = object.as_object_mut()
                && map.contains_key("accountId")
            {
                map.insert("accountId".into(), json!(account_id));
            }
        }
    }

    pub fn reservation_mut(&mut self, id: i64) -> Option<&mut Value> {
        find_by_id(&self.reservations, id).map(|i| &mut self.reservations[i])
    }

    pub fn conversation(&self, id: i64) -> Option<&Value> {
        find_by_id(&self.conversations, id).map(|i| &self.conversations[i])
    }

    /// Inserts or replaces a conversation, keeping the list sorted by id.
    pub fn put_conversation(&mut self, conversation: Value) {
        let id = int(&conversation, "id");
        match self
            .conversations
            .binary_search_by_key(&id, |c| int(c, "id"))
        {
            Ok(i) => self.conversations[i] = conversation,
            Err(i) => self.conversations.insert(i, conversation),
        }
    }

    /// Each reservation's conversation times, for the
    /// `lastConversationMessage*` orders (latest over its conversations).
    pub fn message_times(&self) -> std::collections::HashMap<i64, super::paging::MessageTimes> {
        let mut times: std::collections::HashMap<i64, super::paging::MessageTimes> =
            std::collections::HashMap::new();
        for conversation in &self.conversations {
            let entry = times.entry(int(conversation, "reservationId")).or_default();
            let sent = text(conversation, "messageSentOn");
            let received = text(conversation, "messageReceivedOn");
            if sent > entry.sent.as_str() {
                entry.sent = sent.to_string();
            }
            if received > entry.received.as_str() {
                entry.received = received.to_string();
            }
        }
        times
    }

    /// A conversation's messages, oldest first.
    pub fn messages_of(&self, conversation_id: i64) -> &[Value] {
        self.messages
            .get(&conversation_id)
            .map_or(&[][..], Vec::as_slice)
    }

    /// A conversation as the API shows it: with `include_resources`, its
    /// latest message and the embedded `Reservation`; otherwise no
    /// `Reservation` and an empty `conversationMessages`.
    pub fn render_conversation(&self, conversation: &Value, include_resources: bool) -> Value {
        let mut rendered = object(conversation.clone());
        let id = int(conversation, "id");
        if include_resources {
            let latest: Vec<Value> = self.messages_of(id).last().cloned().into_iter().collect();
            rendered.insert("conversationMessages".into(), Value::Array(latest));
            let reservation = self
                .reservation(int(conversation, "reservationId"))
                .map_or(Value::Null, embedded_reservation);
            rendered.insert("Reservation".into(), reservation);
        } else {
            rendered.insert("conversationMessages".into(), json!([]));
        }
        Value::Object(rendered)
    }

    /// The public snapshot of this account.
    pub fn snapshot(&self) -> AccountData {
        AccountData {
            listings: self.listings.clone(),
            reservations: self.reservations.clone(),
            conversations: self
                .conversations
                .iter()
                .map(|c| self.render_conversation(c, true))
                .collect(),
            messages: self.messages.clone(),
        }
    }
}

/// Position of the object with `id` in a list sorted by id.
fn find_by_id(items: &[Value], id: i64) -> Option<usize> {
    items.binary_search_by_key(&id, |item| int(item, "id")).ok()
}

/// The reservation's arrival year, for sanity checks in tests.
#[cfg(test)]
fn arrival_year(reservation: &Value) -> i32 {
    use chrono::Datelike;
    NaiveDate::parse_from_str(text(reservation, "arrivalDate"), "%Y-%m-%d")
        .map(|d| d.year())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn anchor() -> DateTime<Utc> {
        parse_timestamp("2026-03-01 00:00:00").unwrap()
    }

    fn size() -> DatasetSize {
        DatasetSize {
            listings: 12,
            reservations: 60,
            conversations: 40,
            messages_per_conversation: 5,
        }
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/hostaway/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn generation_is_deterministic() {
        let a = AccountStore::generate(1001, 42, size(), anchor()).snapshot();
        let b = AccountStore::generate(1001, 42, size(), anchor()).snapshot();
        assert_eq!(a, b);
        let other_seed = AccountStore::generate(1001, 43, size(), anchor()).snapshot();
        assert_ne!(a.reservations, other_seed.reservations);
    }

    #[test]
    fn entities_do_not_depend_on_other_counts() {
        let small = AccountStore::generate(1001, 42, size(), anchor());
        let bigger = AccountStore::generate(
            1001,
            42,
            DatasetSize {
                reservations: 90,
                conversations: 10,
                ..size()
            },
            anchor(),
        );
        assert_eq!(small.reservations[..], bigger.reservations[..60]);
        assert_eq!(
            small.messages_of(ids::conversation(1001, 3)),
            bigger.messages_of(ids::conversation(1001, 3))
        );
    }

    #[test]
    fn ids_never_collide_across_accounts() {
        let a = AccountStore::generate(1001, 42, size(), anchor()).snapshot();
        let b = AccountStore::generate(1002, 42, size(), anchor()).snapshot();
        let collect =
            |items: &[Value]| -> BTreeSet<i64> { items.iter().map(|v| int(v, "id")).collect() };
        let messages = |data: &AccountData| -> BTreeSet<i64> {
            data.messages
                .values()
                .flatten()
                .map(|m| int(m, "id"))
                .collect()
        };
        assert!(collect(&a.listings).is_disjoint(&collect(&b.listings)));
        assert!(collect(&a.reservations).is_disjoint(&collect(&b.reservations)));
        assert!(collect(&a.conversations).is_disjoint(&collect(&b.conversations)));
        assert!(messages(&a).is_disjoint(&messages(&b)));
        assert_eq!(messages(&a).len(), 40 * 5);
        assert_eq!(int(&a.listings[0], "id"), 1001 * 10_000 + 1);
        assert_eq!(int(&a.reservations[59], "id"), 1001 * 1_000_000 + 60);
        assert_eq!(int(&a.conversations[0], "id"), 1001 * 1_000_000 + 500_001);
        assert!(
            a.messages[&(1001 * 1_000_000 + 500_002)]
                .iter()
                .any(|m| int(m, "id") == 1001 * 100_000_000 + 2 * 1_000 + 5)
        );
    }

    #[test]
    fn objects_have_the_fixture_fields() {
        let data = AccountStore::generate(1001, 42, size(), anchor()).snapshot();
        let listing = &fixture("listings_page.json")["result"][0];
        let reservation = &fixture("reservations_page.json")["result"][0];
        let conversation = &fixture("conversations_page.json")["result"][0];
        let message = &fixture("conversation_messages_page.json")["result"][0];
        for generated in &data.listings {
            assert_eq!(keys(generated), keys(listing));
        }
        for generated in &data.reservations {
            assert_eq!(keys(generated), keys(reservation));
        }
        for generated in &data.conversations {
            assert_eq!(keys(generated), keys(conversation));
            assert_eq!(
                keys(&generated["Reservation"]),
                keys(&conversation["Reservation"])
            );
            assert!(generated["Reservation"]["hostawayReservationId"].is_string());
        }
        for generated in data.messages.values().flatten() {
            assert_eq!(keys(generated), keys(message));
        }
    }

    #[test]
    fn reservations_are_plausible() {
        let data = AccountStore::generate(
            1001,
            42,
            DatasetSize {
                reservations: 400,
                ..size()
            },
            anchor(),
        )
        .snapshot();
        let listing_ids: BTreeSet<i64> = data.listings.iter().map(|l| int(l, "id")).collect();
        let limit = format_timestamp(anchor());
        let mut statuses = BTreeMap::<String, usize>::new();
        let mut updated = BTreeSet::new();
        for r in &data.reservations {
            assert!(listing_ids.contains(&int(r, "listingMapId")));
            assert_eq!(r["hostawayReservationId"], r["id"]);
            for key in [
                "reservationDate",
                "insertedOn",
                "updatedOn",
                "latestActivityOn",
            ] {
                assert!(text(r, key) < limit.as_str(), "{key} of {r}");
                assert!(parse_timestamp(text(r, key)).is_some());
            }
            assert!(text(r, "insertedOn") <= text(r, "updatedOn"));
            assert!(text(r, "arrivalDate") < text(r, "departureDate"));
            assert!((2025..=2027).contains(&arrival_year(r)));
            if text(r, "status") == "cancelled" {
                assert!(r["cancellationDate"].is_string() && r["cancelledBy"].is_string());
            }
            *statuses.entry(text(r, "status").to_string()).or_default() += 1;
            updated.insert(text(r, "updatedOn").to_string());
        }
        assert!(statuses["new"] + statuses["modified"] > 250, "{statuses:?}");
        for status in ["cancelled", "ownerStay", "inquiry"] {
            assert!(
                statuses.get(status).copied().unwrap_or(0) > 0,
                "{statuses:?}"
            );
        }
        assert!(updated.len() > 350, "updatedOn should vary");
    }

    #[test]
    fn conversations_match_their_messages() {
        let data = AccountStore::generate(1001, 42, size(), anchor()).snapshot();
        assert_eq!(data.conversations.len(), 40);
        for conversation in &data.conversations {
            let id = int(conversation, "id");
            let messages = &data.messages[&id];
            assert_eq!(messages.len(), 5);
            for pair in messages.windows(2) {
                assert_ne!(int(&pair[0], "isIncoming"), int(&pair[1], "isIncoming"));
                assert!(text(&pair[0], "date") <= text(&pair[1], "date"));
                assert!(text(&pair[0], "insertedOn") <= text(&pair[1], "insertedOn"));
            }
            for message in messages {
                assert_eq!(int(message, "conversationId"), id);
                assert_eq!(message["reservationId"], conversation["reservationId"]);
                assert_eq!(message["listingMapId"], conversation["listingMapId"]);
                assert_eq!(text(message, "status"), "sent");
                assert_eq!(text(message, "hash").len(), 32);
            }
            let latest = &conversation["conversationMessages"];
            assert_eq!(latest.as_array().unwrap().len(), 1);
            assert_eq!(latest[0], *messages.last().unwrap());
            let last_in = messages
                .iter()
                .rev()
                .find(|m| int(m, "isIncoming") == 1)
                .unwrap();
            assert_eq!(conversation["messageReceivedOn"], last_in["date"]);
            let last_out = messages
                .iter()
                .rev()
                .find(|m| int(m, "isIncoming") == 0)
                .unwrap();
            assert_eq!(conversation["messageSentOn"], last_out["sentChannelDate"]);
            let reservation = data
                .reservations
                .iter()
                .find(|r| r["id"] == conversation["reservationId"])
                .unwrap();
            assert_eq!(conversation["recipientName"], reservation["guestName"]);
            assert_eq!(
                conversation["Reservation"]["hostawayReservationId"],
                json!(reservation["id"].to_string())
            );
        }
    }

    #[test]
    fn oversized_requests_are_normalized() {
        let store = AccountStore::generate(
            7,
            1,
            DatasetSize {
                listings: 2,
                reservations: 3,
                conversations: 10,
                messages_per_conversation: 0,
            },
            anchor(),
        );
        assert_eq!(store.conversations.len(), 3);
        assert!(store.messages.values().all(Vec::is_empty));
        let rendered = store.render_conversation(&store.conversations[0], true);
        assert_eq!(rendered["conversationMessages"], json!([]));
        let bare = store.render_conversation(&store.conversations[0], false);
        assert!(bare.get("Reservation").is_none());
    }
}
