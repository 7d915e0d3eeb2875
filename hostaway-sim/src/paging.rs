//! Pagination and filtering of list endpoints: `limit`/`offset` paging with
//! Hostaway's envelope numbers, and the reservation query (cursor paging with
//! `afterId`, `latestActivityStart/End`, `sortOrder`). Pure functions.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;

use super::behaviour::{ActivityFormat, CursorMode};

/// Page size when the request names none (documented for reservations).
pub const DEFAULT_LIMIT: usize = 100;

/// One page of a list: its items plus the envelope numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub limit: usize,
    pub offset: usize,
    /// Total matching the filters, not the page length.
    pub count: usize,
}

impl<T> Page<T> {
    /// 1-based page number of `offset`.
    pub fn page(&self) -> usize {
        self.offset / self.limit.max(1) + 1
    }

    pub fn total_pages(&self) -> usize {
        self.count.div_ceil(self.limit.max(1))
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            limit: self.limit,
            offset: self.offset,
            count: self.count,
        }
    }
}

/// The effective `limit` and `offset`: missing or non-positive limits mean
/// the default, limits above `max_limit` are clamped, negative offsets are 0.
pub fn resolve(limit: Option<i64>, offset: Option<i64>, max_limit: u32) -> (usize, usize) {
    let max = (max_limit as usize).max(1);
    let limit = match limit {
        Some(l) if l > 0 => (l as usize).min(max),
        _ => DEFAULT_LIMIT.min(max),
    };
    let offset = offset.filter(|o| *o > 0).map_or(0, |o| o as usize);
    (limit, offset)
}

/// The `offset` page of already filtered and ordered items.
pub fn slice<T: Clone>(items: &[T], limit: usize, offset: usize) -> Page<T> {
    let start = offset.min(items.len());
    let end = start.saturating_add(limit).min(items.len());
    Page {
        items: items[start..end].to_vec(),
        limit,
        offset,
        count: items.len(),
    }
}

/// Orders of `GET /v1/reservations` (`sortOrder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationOrder {
    /// No `sortOrder`: newest modification first (`updatedOn DESC, id DESC`).
    UpdatedDesc,
    /// `updatedOn`: oldest modification first.
    UpdatedAsc,
    LatestActivityAsc,
    LatestActivityDesc,
    ArrivalAsc,
    ArrivalDesc,
    /// By the time of the reservation's last outgoing message (its
    /// conversation's `messageSentOn`); reservations without one first.
    LastMessageSentAsc,
    LastMessageSentDesc,
    /// By the time of the last incoming message (`messageReceivedOn`).
    LastMessageReceivedAsc,
    LastMessageReceivedDesc,
}

/// A reservation's conversation times (`messageSentOn`, `messageReceivedOn`),
/// for the `lastConversationMessage*` orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageTimes {
    pub sent: String,
    pub received: String,
}

impl ReservationOrder {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        Ok(match value.map(str::trim) {
            None | Some("") => ReservationOrder::UpdatedDesc,
            Some("updatedOn") => ReservationOrder::UpdatedAsc,
            Some("latestActivity") => ReservationOrder::LatestActivityAsc,
            Some("latestActivityDesc") => ReservationOrder::LatestActivityDesc,
            Some("arrivalDate") => ReservationOrder::ArrivalAsc,
            Some("arrivalDateDesc") => ReservationOrder::ArrivalDesc,
            Some("lastConversationMessageSent") => ReservationOrder::LastMessageSentAsc,
            Some("lastConversationMessageSentDesc") => ReservationOrder::LastMessageSentDesc,
            Some("lastConversationMessageReceived") => ReservationOrder::LastMessageReceivedAsc,
            Some("lastConversationMessageReceivedDesc") => {
                ReservationOrder::LastMessageReceivedDesc
            }
            Some(other) => return Err(format!("Unsupported sortOrder: {other}")),
        })
    }

    /// Whether the order needs the reservations' conversation times.
    pub fn needs_message_times(self) -> bool {
        matches!(
            self,
            ReservationOrder::LastMessageSentAsc
                | ReservationOrder::LastMessageSentDesc
                | ReservationOrder::LastMessageReceivedAsc
                | ReservationOrder::LastMessageReceivedDesc
        )
    }

    fn compare(self, a: &Value, b: &Value, times: &HashMap<i64, MessageTimes>) -> Ordering {
        enum Key {
            Field(&'static str),
            Sent,
            Received,
        }
        let (key, descending) = match self {
            ReservationOrder::UpdatedDesc => (Key::Field("updatedOn"), true),
            ReservationOrder::UpdatedAsc => (Key::Field("updatedOn"), false),
            ReservationOrder::LatestActivityAsc => (Key::Field("latestActivityOn"), false),
            ReservationOrder::LatestActivityDesc => (Key::Field("latestActivityOn"), true),
            ReservationOrder::ArrivalAsc => (Key::Field("arrivalDate"), false),
            ReservationOrder::ArrivalDesc => (Key::Field("arrivalDate"), true),
            ReservationOrder::LastMessageSentAsc => (Key::Sent, false),
            ReservationOrder::LastMessageSentDesc => (Key::Sent, true),
            ReservationOrder::LastMessageReceivedAsc => (Key::Received, false),
            ReservationOrder::LastMessageReceivedDesc => (Key::Received, true),
        };
        let value = |item: &'_ Value| -> String {
            match key {
                Key::Field(field) => text(item, field).to_string(),
                Key::Sent => times
                    .get(&id(item))
                    .map(|t| t.sent.clone())
                    .unwrap_or_default(),
                Key::Received => times
                    .get(&id(item))
                    .map(|t| t.received.clone())
                    .unwrap_or_default(),
            }
        };
        // Hostaway's timestamps sort correctly as text.
        let ordering = value(a).cmp(&value(b)).then_with(|| id(a).cmp(&id(b)));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

/// Inclusive bounds on `latestActivityOn`, as `YYYY-MM-DD HH:MM:SS` text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityWindow {
    pub start: Option<String>,
    pub end: Option<String>,
}

impl ActivityWindow {
    /// Reads `latestActivityStart`/`End` in the formats `format` accepts
    /// (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`); a date-only end includes that
    /// whole day.
    pub fn parse(
        start: Option<&str>,
        end: Option<&str>,
        format: ActivityFormat,
    ) -> Result<Self, String> {
        let dates = format != ActivityFormat::DateTime;
        let times = format != ActivityFormat::Date;
        let expected = match format {
            ActivityFormat::Any => "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS",
            ActivityFormat::Date => "YYYY-MM-DD",
            ActivityFormat::DateTime => "YYYY-MM-DD HH:MM:SS",
        };
        let bound =
            |name: &str, value: Option<&str>, end_of_day: bool| -> Result<Option<String>, String> {
                let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                    return Ok(None);
                };
                if let Ok(at) = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
                    && times
                {
                    return Ok(Some(at.format("%Y-%m-%d %H:%M:%S").to_string()));
                }
                if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    && dates
                {
                    let time = if end_of_day { "23:59:59" } else { "00:00:00" };
                    return Ok(Some(format!("{} {time}", day.format("%Y-%m-%d"))));
                }
                Err(format!("Invalid {name}: expected {expected}"))
            };
        Ok(ActivityWindow {
            start: bound("latestActivityStart", start, false)?,
            end: bound("latestActivityEnd", end, true)?,
        })
    }

    pub fn contains(&self, item: &Value) -> bool {
        let activity = text(item, "latestActivityOn");
        self.start.as_deref().is_none_or(|start| activity >= start)
            && self.end.as_deref().is_none_or(|end| activity <= end)
    }
}

/// A parsed `GET /v1/reservations` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReservationQuery {
    pub limit: usize,
    pub offset: usize,
    pub after_id: Option<i64>,
    pub activity: ActivityWindow,
    pub order: ReservationOrder,
    pub listing_id: Option<i64>,
    /// Conversation times by reservation id, filled only for the orders
    /// that need them.
    pub message_times: HashMap<i64, MessageTimes>,
}

/// Applies a reservation query. With `afterId`, `offset` is ignored and the
/// page starts after the cursor as `cursor` reads it: after that
/// reservation's position in the `sortOrder` order (none there: an empty
/// page), or at the first larger id in id order. `count` stays the total
/// matching the filters; the reported `offset` is where the page starts.
/// Without `afterId`: `sortOrder`, then `offset`.
pub fn select_reservations<'a>(
    all: &'a [Value],
    query: &ReservationQuery,
    cursor: CursorMode,
) -> Page<&'a Value> {
    let mut matching: Vec<&Value> = all
        .iter()
        .filter(|r| query.activity.contains(r))
        .filter(|r| query.listing_id.is_none_or(|l| int(r, "listingMapId") == l))
        .collect();
    let Some(after) = query.after_id else {
        matching.sort_by(|a, b| query.order.compare(a, b, &query.message_times));
        return slice(&matching, query.limit, query.offset);
    };
    let position = match cursor {
        CursorMode::Position => {
            matching.sort_by(|a, b| query.order.compare(a, b, &query.message_times));
            matching
                .iter()
                .position(|r| id(r) == after)
                .map_or(matching.len(), |anchor| anchor + 1)
        }
        CursorMode::IdGreater => {
            matching.sort_by_key(|r| id(r));
            matching.partition_point(|r| id(r) <= after)
        }
    };
    let end = position.saturating_add(query.limit).min(matching.len());
    Page {
        items: matching[position..end].to_vec(),
        limit: query.limit,
        offset: position,
        count: matching.len(),
    }
}

/// Items whose `latestActivityOn` lies in `window`, in id order.
pub fn filter_by_activity<'a>(items: &'a [Value], window: &ActivityWindow) -> Vec<&'a Value> {
    items.iter().filter(|item| window.contains(item)).collect()
}

fn id(item: &Value) -> i64 {
    int(item, "id")
}

fn int(item: &Value, key: &str) -> i64 {
    item.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reservations() -> Vec<Value> {
        // ids 1..=10; updatedOn rises with the id except that 4 is the newest.
        (1..=10)
            .map(|i| {
                let minute = if i == 4 { 59 } else { i };
                json!({
                    "id": i,
                    "listingMapId": if i % 2 == 0 { 20 } else { 10 },
                    "updatedOn": format!("2026-01-10 10:{minute:02}:00"),
                    "latestActivityOn": format!("2026-01-{:02} 12:00:00", i),
                    "arrivalDate": format!("2026-03-{:02}", 11 - i),
                })
            })
            .collect()
    }

    fn query() -> ReservationQuery {
        ReservationQuery {
            limit: 3,
            offset: 0,
            after_id: None,
            activity: ActivityWindow::default(),
            order: ReservationOrder::UpdatedDesc,
            listing_id: None,
            message_times: HashMap::new(),
        }
    }

    fn select_id_greater<'a>(all: &'a [Value], query: &ReservationQuery) -> Page<&'a Value> {
        select_reservations(all, query, CursorMode::IdGreater)
    }

    fn ids(page: &Page<&Value>) -> Vec<i64> {
        page.items.iter().map(|r| id(r)).collect()
    }

    #[test]
    fn limits_are_resolved() {
        assert_eq!(resolve(None, None, 100), (100, 0));
        assert_eq!(resolve(Some(500), Some(20), 100), (100, 20));
        assert_eq!(resolve(Some(0), Some(-5), 100), (100, 0));
        assert_eq!(resolve(Some(7), None, 100), (7, 0));
        assert_eq!(resolve(None, None, 50), (50, 0));
    }

    #[test]
    fn offset_pages_report_totals() {
        let items: Vec<i32> = (1..=25).collect();
        let page = slice(&items, 10, 20);
        assert_eq!(page.items, vec![21, 22, 23, 24, 25]);
        assert_eq!((page.count, page.page(), page.total_pages()), (25, 3, 3));
        let beyond = slice(&items, 10, 40);
        assert!(beyond.items.is_empty());
        assert_eq!((beyond.count, beyond.page()), (25, 5));
        let empty = slice::<i32>(&[], 10, 0);
        assert_eq!((empty.count, empty.page(), empty.total_pages()), (0, 1, 0));
    }

    #[test]
    fn default_order_is_updated_desc_then_id_desc() {
        let mut all = reservations();
        all[1]["updatedOn"] = all[2]["updatedOn"].clone(); // ids 2 and 3 tie
        let page = select_id_greater(
            &all,
            &ReservationQuery {
                limit: 10,
                ..query()
            },
        );
        assert_eq!(ids(&page), vec![4, 10, 9, 8, 7, 6, 5, 3, 2, 1]);
        let ascending = select_id_greater(
            &all,
            &ReservationQuery {
                limit: 10,
                order: ReservationOrder::UpdatedAsc,
                ..query()
            },
        );
        assert_eq!(ids(&ascending), vec![1, 2, 3, 5, 6, 7, 8, 9, 10, 4]);
        let second = select_id_greater(
            &all,
            &ReservationQuery {
                offset: 3,
                ..query()
            },
        );
        assert_eq!(ids(&second), vec![8, 7, 6]);
        assert_eq!(
            (second.count, second.page(), second.total_pages()),
            (10, 2, 4)
        );
    }

    #[test]
    fn after_id_is_a_cursor_in_id_order() {
        let all = reservations();
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let page = select_id_greater(
                &all,
                &ReservationQuery {
                    after_id: Some(cursor),
                    offset: 7, // ignored with a cursor
                    ..query()
                },
            );
            assert_eq!(page.count, 10);
            if page.items.is_empty() {
                assert_eq!(page.offset, 10);
                break;
            }
            assert_eq!(page.offset, seen.len());
            seen.extend(ids(&page));
            cursor = *seen.last().unwrap();
        }
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        let tail = select_id_greater(
            &all,
            &ReservationQuery {
                after_id: Some(8),
                ..query()
            },
        );
        assert_eq!(ids(&tail), vec![9, 10]);
        assert_eq!(tail.page(), 3);
    }

    #[test]
    fn position_cursor_follows_the_current_order() {
        let all = reservations();
        // Default order: 4, 10, 9, 8, 7, 6, 5, 3, 2, 1.
        let first = select_reservations(&all, &query(), CursorMode::Position);
        assert_eq!(ids(&first), vec![4, 10, 9]);
        let mut seen = ids(&first);
        loop {
            let page = select_reservations(
                &all,
                &ReservationQuery {
                    after_id: Some(*seen.last().unwrap()),
                    offset: 1, // ignored with a cursor
                    ..query()
                },
                CursorMode::Position,
            );
            assert_eq!(page.count, 10);
            if page.items.is_empty() {
                break;
            }
            seen.extend(ids(&page));
        }
        assert_eq!(seen, vec![4, 10, 9, 8, 7, 6, 5, 3, 2, 1]);
        for unknown in [0, 11] {
            let page = select_reservations(
                &all,
                &ReservationQuery {
                    after_id: Some(unknown),
                    ..query()
                },
                CursorMode::Position,
            );
            assert!(page.items.is_empty(), "afterId={unknown} anchors nowhere");
            assert_eq!(page.count, 10);
        }
        let ascending = select_reservations(
            &all,
            &ReservationQuery {
                after_id: Some(10),
                order: ReservationOrder::UpdatedAsc,
                ..query()
            },
            CursorMode::Position,
        );
        assert_eq!(ids(&ascending), vec![4]);
    }

    #[test]
    fn activity_window_and_listing_filter() {
        let all = reservations();
        let window =
            ActivityWindow::parse(Some("2026-01-03"), Some("2026-01-05"), ActivityFormat::Any)
                .unwrap();
        assert_eq!(window.end.as_deref(), Some("2026-01-05 23:59:59"));
        let page = select_id_greater(
            &all,
            &ReservationQuery {
                limit: 10,
                activity: window,
                order: ReservationOrder::UpdatedAsc,
                ..query()
            },
        );
        assert_eq!(ids(&page), vec![3, 5, 4]);
        assert_eq!(page.count, 3);

        let precise = ActivityWindow::parse(
            Some("2026-01-03 12:00:01"),
            Some("2026-01-05 12:00:00"),
            ActivityFormat::Any,
        )
        .unwrap();
        let page = select_id_greater(
            &all,
            &ReservationQuery {
                activity: precise,
                after_id: Some(0),
                ..query()
            },
        );
        assert_eq!(ids(&page), vec![4, 5]);

        let page = select_id_greater(
            &all,
            &ReservationQuery {
                listing_id: Some(10),
                after_id: Some(0),
                limit: 10,
                ..query()
            },
        );
        assert_eq!(ids(&page), vec![1, 3, 5, 7, 9]);

        let any = ActivityFormat::Any;
        assert!(ActivityWindow::parse(Some("yesterday"), None, any).is_err());
        assert!(ActivityWindow::parse(None, Some("2026-13-01"), any).is_err());
        assert_eq!(
            ActivityWindow::parse(Some(""), None, any).unwrap(),
            ActivityWindow::default()
        );
        let date = ActivityFormat::Date;
        let datetime = ActivityFormat::DateTime;
        assert!(ActivityWindow::parse(Some("2026-01-03"), None, date).is_ok());
        assert!(ActivityWindow::parse(Some("2026-01-03 12:00:00"), None, date).is_err());
        assert!(ActivityWindow::parse(Some("2026-01-03 12:00:00"), None, datetime).is_ok());
        assert!(ActivityWindow::parse(Some("2026-01-03"), None, datetime).is_err());
    }

    #[test]
    fn other_orders() {
        let all = reservations();
        let by_arrival = select_id_greater(
            &all,
            &ReservationQuery {
                order: ReservationOrder::parse(Some("arrivalDate")).unwrap(),
                ..query()
            },
        );
        assert_eq!(ids(&by_arrival), vec![10, 9, 8]);
        let by_activity = select_id_greater(
            &all,
            &ReservationQuery {
                order: ReservationOrder::parse(Some("latestActivityDesc")).unwrap(),
                ..query()
            },
        );
        assert_eq!(ids(&by_activity), vec![10, 9, 8]);
        assert!(ReservationOrder::parse(Some("guestName")).is_err());
    }
}
