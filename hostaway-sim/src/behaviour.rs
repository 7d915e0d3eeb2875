//! Switches for what Hostaway's documentation leaves open (API.md §7): each
//! switch offers every plausible behaviour, so the client can be proven
//! correct under all of them. The defaults follow the documentation where it
//! speaks, and the most literal reading where it does not.

use serde::{Deserialize, Serialize};

/// Defines a switch: an enum with kebab-case names on the wire and on the
/// command line, `ALL` its values (the first is the default), `Display` and
/// `FromStr` by those names.
macro_rules! switch {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::ALL[0]
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text.trim())
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        format!("expected one of {}, got {text:?}", names.join(", "))
                    })
            }
        }
    };
}

switch! {
    /// §7.3: what `afterId` on `GET /v1/reservations` means.
    CursorMode {
        /// The page after that reservation's position in the current order
        /// (`sortOrder`, default `updatedOn DESC, id DESC`); an `afterId`
        /// that matches no reservation gives an empty page.
        Position = "position",
        /// Reservations with a larger id, in id order (`sortOrder` ignored).
        IdGreater = "id-greater",
    }
}

switch! {
    /// §7.2: the format `latestActivityStart`/`End` accept.
    ActivityFormat {
        /// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`.
        Any = "any",
        /// `YYYY-MM-DD` only; a date-time is answered 400.
        Date = "date",
        /// `YYYY-MM-DD HH:MM:SS` only; a bare date is answered 400.
        DateTime = "datetime",
    }
}

switch! {
    /// §7.2: which changes move a reservation's `latestActivityOn` (the
    /// field `latestActivityStart` filters on).
    ActivityScope {
        /// Every modification.
        EveryChange = "every-change",
        /// Bookings and messages only: updates and cancellations leave it.
        BookingsOnly = "bookings-only",
    }
}

switch! {
    /// §2.2/§2.5: whether list envelopes carry `count` (and `page`,
    /// `totalPages`).
    CountMode {
        Present = "present",
        Absent = "absent",
    }
}

switch! {
    /// §1.3/§7.6: the status of a missing, expired or revoked token.
    TokenError {
        Forbidden = "403",
        Unauthorized = "401",
    }
}

switch! {
    /// §7.4: the order of `GET /v1/conversations`.
    ConversationOrder {
        /// Ascending id.
        OldestFirst = "oldest-first",
        /// Latest message first (then descending id).
        NewestFirst = "newest-first",
    }
}

switch! {
    /// §7.4: the order of `GET /v1/conversations/{id}/messages`.
    MessageOrder {
        NewestFirst = "newest-first",
        OldestFirst = "oldest-first",
    }
}

switch! {
    /// §3/§7.5: a `Retry-After` header on rate-limit 429s.
    RetryAfter {
        None = "none",
        /// Whole seconds until the refusing window admits again.
        Window = "window",
    }
}

switch! {
    /// §5.2/§7.7: where a delivery carries its entity.
    WebhookEnvelope {
        /// `{"object","event","accountId","data"}`.
        Data = "data",
        /// `{"object","event","accountId","payload":{"data"}}`.
        PayloadData = "payload-data",
    }
}

switch! {
    /// §5.1/§7.13: the webhook `password` in list and read responses.
    PasswordMasking {
        Masked = "masked",
        Plain = "plain",
    }
}

switch! {
    /// §6.2/§7.15: whether reservations carry `insertedOn`/`updatedOn`.
    ReservationTimestamps {
        Present = "present",
        Absent = "absent",
    }
}

/// Every switch; `Behaviour::default()` is the documented behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    pub cursor: CursorMode,
    pub activity_format: ActivityFormat,
    pub activity_scope: ActivityScope,
    pub count: CountMode,
    pub token_error: TokenError,
    pub conversation_order: ConversationOrder,
    pub message_order: MessageOrder,
    pub retry_after: RetryAfter,
    pub webhook_envelope: WebhookEnvelope,
    pub password_masking: PasswordMasking,
    pub reservation_timestamps: ReservationTimestamps,
}

impl Behaviour {
    /// The default, then each other value of each switch with everything
    /// else at its default, each named `switch=value`: the matrix a client
    /// must pass.
    pub fn variants() -> Vec<(String, Behaviour)> {
        let mut out = vec![("default".to_string(), Behaviour::default())];
        macro_rules! each {
            ($field:ident, $kind:ident) => {
                for value in $kind::ALL.iter().copied().skip(1) {
                    out.push((
                        format!("{}={}", stringify!($field), value),
                        Behaviour {
                            $field: value,
                            ..Behaviour::default()
                        },
                    ));
                }
            };
        }
        each!(cursor, CursorMode);
        each!(activity_format, ActivityFormat);
        each!(activity_scope, ActivityScope);
        each!(count, CountMode);
        each!(token_error, TokenError);
        each!(conversation_order, ConversationOrder);
        each!(message_order, MessageOrder);
        each!(retry_after, RetryAfter);
        each!(webhook_envelope, WebhookEnvelope);
        each!(password_masking, PasswordMasking);
        each!(reservation_timestamps, ReservationTimestamps);
        out
    }

    /// A reservation as the API shows it under these switches.
    pub fn render_reservation(&self, reservation: &serde_json::Value) -> serde_json::Value {
        let mut rendered = reservation.clone();
        if self.reservation_timestamps == ReservationTimestamps::Absent
            && let Some(object) = rendered.as_object_mut()
        {
            object.remove("insertedOn");
            object.remove("updatedOn");
        }
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_print_and_serialize_by_name() {
        assert_eq!(
            "id-greater".parse::<CursorMode>(),
            Ok(CursorMode::IdGreater)
        );
        assert_eq!(TokenError::Unauthorized.to_string(), "401");
        assert!("sideways".parse::<CursorMode>().is_err());
        let behaviour = Behaviour {
            count: CountMode::Absent,
            ..Behaviour::default()
        };
        let json = serde_json::to_value(behaviour).unwrap();
        assert_eq!(json["count"], "absent");
        assert_eq!(json["cursor"], "position");
        let back: Behaviour =
            serde_json::from_value(serde_json::json!({"count": "absent"})).unwrap();
        assert_eq!(back, behaviour);
        assert!(serde_json::from_value::<Behaviour>(serde_json::json!({"nope": 1})).is_err());
    }

    #[test]
    fn variants_cover_every_value_once() {
        let variants = Behaviour::variants();
        let names: std::collections::HashSet<_> = variants.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names.len(), variants.len());
        // The default, one for each two-valued switch, two for the activity format.
        assert_eq!(variants.len(), 1 + 10 + 2);
        assert_eq!(variants[0].1, Behaviour::default());
    }
}
