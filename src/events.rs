//! The webhook event types the service applies, named once: parsing,
//! metric labels, the per-account filter's validation and the docs all use
//! `EventType`.

use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

/// An event type Hostaway delivers and the service applies
/// (`../shared/hostaway/API.md` §5). Anything else is stored and ignored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EnumString, IntoStaticStr, EnumIter,
)]
pub enum EventType {
    #[strum(serialize = "reservation.created")]
    ReservationCreated,
    #[strum(serialize = "reservation.updated")]
    ReservationUpdated,
    #[strum(serialize = "reservation.cancelled")]
    ReservationCancelled,
    #[strum(serialize = "message.received")]
    MessageReceived,
    #[strum(serialize = "message.created")]
    MessageCreated,
    #[strum(serialize = "listing.created")]
    ListingCreated,
    #[strum(serialize = "listing.updated")]
    ListingUpdated,
    #[strum(serialize = "listing.deleted")]
    ListingDeleted,
}

/// What the service does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `reservation.created`, `reservation.updated`, `reservation.cancelled`.
    Reservation,
    /// `message.received`, `message.created`.
    Message,
    /// `listing.created`, `listing.updated`.
    Listing,
    /// `listing.deleted`.
    ListingDeleted,
}

/// The metric label of event types the service does not handle.
pub const OTHER_LABEL: &str = "other";

impl EventType {
    /// The name as Hostaway spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A handled event type by its name.
    pub fn parse(name: &str) -> Option<EventType> {
        name.parse().ok()
    }

    pub fn kind(self) -> EventKind {
        match self {
            EventType::ReservationCreated
            | EventType::ReservationUpdated
            | EventType::ReservationCancelled => EventKind::Reservation,
            EventType::MessageReceived | EventType::MessageCreated => EventKind::Message,
            EventType::ListingCreated | EventType::ListingUpdated => EventKind::Listing,
            EventType::ListingDeleted => EventKind::ListingDeleted,
        }
    }

    /// Every handled name, in declaration order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        EventType::iter().map(EventType::as_str)
    }

    /// The metric label of any event name: a handled name as it is,
    /// anything else `other` (labels stay a fixed, small set).
    pub fn label(name: &str) -> &'static str {
        EventType::parse(name).map_or(OTHER_LABEL, EventType::as_str)
    }
}

impl EventKind {
    /// The kind of a handled event name.
    pub fn of(name: &str) -> Option<EventKind> {
        EventType::parse(name).map(EventType::kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_other() {
        for event in EventType::iter() {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
            assert_eq!(EventType::label(event.as_str()), event.as_str());
        }
        assert_eq!(EventType::names().count(), 8);
        assert_eq!(EventType::parse("reservation.updatd"), None);
        assert_eq!(EventType::label("reservation.updatd"), OTHER_LABEL);
        assert_eq!(EventType::label(""), OTHER_LABEL);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            EventKind::of("reservation.cancelled"),
            Some(EventKind::Reservation)
        );
        assert_eq!(EventKind::of("message.created"), Some(EventKind::Message));
        assert_eq!(EventKind::of("listing.updated"), Some(EventKind::Listing));
        assert_eq!(
            EventKind::of("listing.deleted"),
            Some(EventKind::ListingDeleted)
        );
        assert_eq!(EventKind::of("guest.created"), None);
    }

    /// docs/webhooks.md names every handled event type.
    #[test]
    fn the_docs_name_every_event_type() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/webhooks.md"))
                .expect("docs/webhooks.md");
        for name in EventType::names() {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/webhooks.md lacks `{name}`"
            );
        }
    }
}
