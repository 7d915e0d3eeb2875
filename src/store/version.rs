//! The one total order of versions, for every write path (webhook, sync,
//! replay) and every entity (listings, reservations, messages, deletes).
//!
//! A state's version is Hostaway's own timestamp (`updatedOn`, then
//! `latestActivityOn`; for messages `updatedOn`, then `insertedOn`), clamped
//! to the moment it was observed when it lies more than
//! `webhooks.max_future_skew_secs` ahead of it, plus that moment (`seen`: a
//! webhook's receive time, a sync's fetch time). Incoming state replaces
//! stored state when:
//!
//! | incoming stamp | stored stamp | replaces when |
//! |---|---|---|
//! | yes | yes | `(stamp, seen)` ≥ stored `(stamp, seen)`: the newer timestamp, and on equal timestamps the later observation |
//! | yes | no | `seen` ≥ stored `seen` |
//! | no | yes | it is authoritative (a sync fetch: Hostaway's current state; or a delete) and `seen` ≥ stored `seen` |
//! | no | no | `seen` ≥ stored `seen` |
//!
//! Within one second Hostaway's timestamps cannot tell two versions apart;
//! observation order is the only signal left, and the next reconciliation
//! repairs the rare wrong guess.

use chrono::{DateTime, Duration, Utc};

/// How a state reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A webhook delivery (or its replay), observed when it was received.
    Webhook,
    /// A sync fetch: Hostaway's state when the run read it.
    Sync,
    /// An explicit delete (a `listing.deleted` event, or an object missing
    /// from a complete listing).
    Delete,
}

impl Source {
    /// Whether a state without a timestamp may replace a stamped one.
    fn authoritative(self) -> bool {
        matches!(self, Source::Sync | Source::Delete)
    }
}

/// The version of an incoming state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Hostaway's timestamp, clamped; `None` when the payload has none.
    pub stamp: Option<DateTime<Utc>>,
    pub seen: DateTime<Utc>,
    pub source: Source,
    /// The payload's timestamp was implausibly far ahead and was clamped.
    pub clamped: bool,
}

/// The version a stored row was written with (`seen` is `None` for rows
/// written before versions were kept: they sort before everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    pub stamp: Option<DateTime<Utc>>,
    pub seen: Option<DateTime<Utc>>,
}

/// When and how a batch of states was observed, and the clamp to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub seen: DateTime<Utc>,
    pub source: Source,
    pub max_future_skew: Duration,
}

impl Observed {
    /// The version of a state with Hostaway timestamp `stamp`.
    pub fn version(&self, stamp: Option<DateTime<Utc>>) -> Version {
        let limit = self.seen + self.max_future_skew;
        let (stamp, clamped) = match stamp {
            Some(at) if at > limit => (Some(self.seen), true),
            other => (other, false),
        };
        Version {
            stamp,
            seen: self.seen,
            source: self.source,
            clamped,
        }
    }
}

impl Version {
    /// Whether this incoming state replaces `stored` (see the module table).
    pub fn supersedes(&self, stored: &Stored) -> bool {
        let later_seen = stored.seen.is_none_or(|seen| self.seen >= seen);
        match (self.stamp, stored.stamp) {
            (Some(mine), Some(theirs)) => mine > theirs || (mine == theirs && later_seen),
            (None, Some(_)) => self.source.authoritative() && later_seen,
            (Some(_), None) | (None, None) => later_seen,
        }
    }

    /// The version to store with the written state.
    pub fn stored(&self) -> Stored {
        Stored {
            stamp: self.stamp,
            seen: Some(self.seen),
        }
    }

    /// Whichever of two incoming versions of the same object wins (the later
    /// one on a tie: it was handed over later).
    pub fn newer_of(first: Version, second: Version) -> Version {
        if second.supersedes(&first.stored()) {
            second
        } else {
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, minute, 0).unwrap()
    }

    fn observed(seen: u32, source: Source) -> Observed {
        Observed {
            seen: at(seen),
            source,
            max_future_skew: Duration::minutes(30),
        }
    }

    fn stored(stamp: Option<u32>, seen: Option<u32>) -> Stored {
        Stored {
            stamp: stamp.map(at),
            seen: seen.map(at),
        }
    }

    /// (incoming stamp, incoming seen, source, stored stamp, stored seen,
    /// replaces?, why)
    type Row = (
        Option<u32>,
        u32,
        Source,
        Option<u32>,
        Option<u32>,
        bool,
        &'static str,
    );

    #[test]
    fn the_rules_as_a_table() {
        use Source::{Delete, Sync, Webhook};
        let table: &[Row] = &[
            (
                Some(5),
                20,
                Webhook,
                Some(4),
                Some(10),
                true,
                "newer timestamp",
            ),
            (
                Some(3),
                20,
                Webhook,
                Some(4),
                Some(10),
                false,
                "older timestamp, later arrival",
            ),
            (
                Some(3),
                20,
                Sync,
                Some(4),
                Some(10),
                false,
                "an older sync fetch",
            ),
            (
                Some(4),
                20,
                Webhook,
                Some(4),
                Some(10),
                true,
                "equal: the later arrival",
            ),
            (
                Some(4),
                5,
                Sync,
                Some(4),
                Some(10),
                false,
                "equal: an earlier fetch loses",
            ),
            (
                Some(4),
                10,
                Webhook,
                Some(4),
                Some(10),
                true,
                "the same state again",
            ),
            (
                None,
                20,
                Webhook,
                Some(4),
                Some(10),
                false,
                "unversioned webhook",
            ),
            (
                None,
                20,
                Sync,
                Some(4),
                Some(10),
                true,
                "unversioned sync: current state",
            ),
            (
                None,
                5,
                Sync,
                Some(4),
                Some(10),
                false,
                "unversioned sync fetched earlier",
            ),
            (
                None,
                20,
                Delete,
                Some(4),
                Some(10),
                true,
                "a delete without a timestamp",
            ),
            (
                Some(3),
                20,
                Delete,
                Some(4),
                Some(10),
                false,
                "an old delete after an update",
            ),
            (
                Some(5),
                20,
                Delete,
                Some(4),
                Some(10),
                true,
                "a newer delete",
            ),
            (
                Some(5),
                20,
                Webhook,
                None,
                Some(10),
                true,
                "versioned after unversioned",
            ),
            (
                Some(5),
                5,
                Webhook,
                None,
                Some(10),
                false,
                "observed before the stored one",
            ),
            (
                None,
                20,
                Webhook,
                None,
                Some(10),
                true,
                "neither versioned: arrival",
            ),
            (
                None,
                5,
                Webhook,
                None,
                Some(10),
                false,
                "neither versioned: earlier",
            ),
            (
                Some(1),
                1,
                Webhook,
                Some(4),
                None,
                false,
                "legacy row, older stamp",
            ),
            (
                Some(4),
                1,
                Webhook,
                Some(4),
                None,
                true,
                "legacy row, equal stamp",
            ),
        ];
        for (stamp, seen, source, stored_stamp, stored_seen, replaces, why) in table {
            let version = observed(*seen, *source).version(stamp.map(at));
            assert_eq!(
                version.supersedes(&stored(*stored_stamp, *stored_seen)),
                *replaces,
                "{why}"
            );
        }
    }

    #[test]
    fn far_future_timestamps_are_clamped_to_the_observation() {
        let o = observed(10, Source::Webhook);
        let pinned = o.version(Some(Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap()));
        assert!(pinned.clamped);
        assert_eq!(pinned.stamp, Some(at(10)));
        let near = o.version(Some(at(39)));
        assert!(!near.clamped, "within the allowed skew");
        assert_eq!(near.stamp, Some(at(39)));
        // A later real update beats the clamped one.
        let later = observed(12, Source::Webhook).version(Some(at(11)));
        assert!(later.supersedes(&pinned.stored()));
    }

    #[test]
    fn of_two_incoming_versions_the_newer_wins_and_ties_go_to_the_second() {
        let a = observed(10, Source::Webhook).version(Some(at(5)));
        let b = observed(11, Source::Webhook).version(Some(at(4)));
        assert_eq!(Version::newer_of(a, b), a);
        let c = observed(10, Source::Webhook).version(Some(at(5)));
        assert_eq!(Version::newer_of(a, c), c);
    }
}
