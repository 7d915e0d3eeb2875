//! What a paged listing has gathered so far, and whether it is complete:
//! items de-duplicated by id, the total the server announced (`count`), and
//! the guards that end a walk whose pages stop bringing anything new. Pure,
//! so the rules are unit-tested apart from HTTP.

use std::collections::HashMap;

use serde_json::Value;

use super::decode;

/// The items of one listing, each id once (a later copy replaces an earlier
/// one: it was read later), in the order first seen.
#[derive(Debug, Default)]
pub struct Collected {
    items: Vec<Value>,
    positions: HashMap<i64, usize>,
    /// The smallest `count` any page announced: items created during the
    /// walk may or may not be included, items that existed throughout must.
    total: Option<u64>,
}

impl Collected {
    /// Adds one page; returns how many of its items were new.
    pub fn add_page(&mut self, count: Option<i64>, items: Vec<Value>) -> usize {
        if let Some(count) = count.and_then(|c| u64::try_from(c).ok()) {
            self.total = Some(self.total.map_or(count, |t| t.min(count)));
        }
        let mut new = 0;
        for item in items {
            match decode::id_field(&item, "id") {
                Some(id) => match self.positions.get(&id) {
                    Some(&at) => self.items[at] = item,
                    None => {
                        self.positions.insert(id, self.items.len());
                        self.items.push(item);
                        new += 1;
                    }
                },
                // Nothing to de-duplicate by: kept as it came.
                None => {
                    self.items.push(item);
                    new += 1;
                }
            }
        }
        new
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The total announced, if any page carried one.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// True once every announced item is in (never without a `count`).
    pub fn reached_total(&self) -> bool {
        self.total
            .is_some_and(|total| self.items.len() as u64 >= total)
    }

    /// `(announced, distinct)` when fewer distinct items came than the
    /// server announced: an incomplete fetch.
    pub fn shortfall(&self) -> Option<(u64, u64)> {
        let got = self.items.len() as u64;
        self.total
            .filter(|total| got < *total)
            .map(|total| (total, got))
    }

    pub fn into_items(self) -> Vec<Value> {
        self.items
    }
}

/// The id of the last item of a page, in the order the server returned it:
/// the next `afterId`.
pub fn last_id(items: &[Value]) -> Option<i64> {
    items.last().and_then(|item| decode::id_field(item, "id"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(ids: &[i64]) -> Vec<Value> {
        ids.iter().map(|id| json!({"id": id, "v": 1})).collect()
    }

    #[test]
    fn items_are_kept_once_in_first_seen_order_latest_copy_wins() {
        let mut collected = Collected::default();
        assert_eq!(collected.add_page(Some(4), page(&[3, 1])), 2);
        let newer = vec![json!({"id": 1, "v": 2}), json!({"id": 7, "v": 1})];
        assert_eq!(collected.add_page(Some(4), newer), 1);
        assert_eq!(collected.add_page(Some(4), page(&[3])), 0, "nothing new");
        let items = collected.into_items();
        assert_eq!(
            items,
            vec![
                json!({"id": 3, "v": 1}),
                json!({"id": 1, "v": 2}),
                json!({"id": 7, "v": 1})
            ]
        );
    }

    #[test]
    fn a_listing_short_of_its_count_is_incomplete() {
        let mut collected = Collected::default();
        collected.add_page(Some(800), page(&[]));
        assert_eq!(collected.shortfall(), Some((800, 0)), "empty first page");
        collected.add_page(Some(3), page(&[1, 2]));
        assert_eq!(
            collected.shortfall(),
            Some((3, 2)),
            "the smallest count counts"
        );
        assert!(!collected.reached_total());
        collected.add_page(Some(5), page(&[3]));
        assert_eq!(collected.shortfall(), None);
        assert!(collected.reached_total());
    }

    #[test]
    fn without_a_count_nothing_can_be_proven_short() {
        let mut collected = Collected::default();
        collected.add_page(None, page(&[1]));
        assert_eq!(collected.total(), None);
        assert_eq!(collected.shortfall(), None);
        assert!(!collected.reached_total());
        assert_eq!(collected.add_page(Some(-1), page(&[2])), 1);
        assert_eq!(collected.total(), None, "a negative count is ignored");
    }

    #[test]
    fn the_cursor_is_the_last_item_as_returned() {
        assert_eq!(last_id(&page(&[9, 4, 7])), Some(7));
        assert_eq!(last_id(&[]), None);
        assert_eq!(last_id(&[json!({"id": "12"})]), Some(12));
    }
}
