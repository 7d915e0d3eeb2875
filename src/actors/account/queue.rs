//! The account's inbox queue, as plain data: which pending rows are held in
//! memory (within a row and a byte bound, and the budget all accounts
//! share), where the next inbox scan starts, what the next apply batch is.
//! No I/O and no actor: the AccountActor asks it what to do and tells it
//! what happened, and the rules are unit-tested here.
//!
//! The invariant: rows are applied in id order. Held rows are a prefix of
//! the pending rows up to `scan_cursor` (when `more_in_db`); everything above
//! the cursor is read from the inbox by a later scan, so a row that does not
//! fit is never lost, only left to the database, where it is anyway.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::actors::doorbell::{Delivery, QueueBudget};
use crate::store::inbox::InboxRow;

/// Most rows one inbox scan reads (fewer when the queue has less room).
pub const SCAN_PAGE: usize = 256;

/// The bounds of one account's queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `actors.max_queued_rows`.
    pub max_rows: usize,
    /// `actors.max_queued_bytes`.
    pub max_bytes: usize,
    /// `webhooks.apply_batch_max`.
    pub batch_rows: usize,
}

/// Where a scan reads from and how many rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanFrom {
    /// Rows with an id above this.
    pub after: i64,
    pub page: u64,
}

#[derive(Debug)]
pub struct InboxQueue {
    limits: Limits,
    /// Rows known to be pending, by id.
    rows: BTreeMap<i64, InboxRow>,
    /// Payload bytes of `rows`.
    bytes: usize,
    /// Bytes every account's queue holds together.
    budget: Arc<QueueBudget>,
    /// A running average of row sizes, to size scan pages.
    typical_row_bytes: usize,
    /// Highest inbox id a scan could see; new rows at or below it are
    /// already covered by that scan.
    watermark: i64,
    /// Rows above `scan_cursor` may be only in the database.
    more_in_db: bool,
    scan_cursor: i64,
    /// A scan is in flight.
    scanning: bool,
    /// Rows left to the inbox while a scan ran (the lowest id).
    left_while_scanning: Option<i64>,
    /// The last scan added nothing (the queue is full of rows waiting for a
    /// retry): no scan until something leaves the queue or a retry is due.
    stalled: bool,
    /// The ids released last (at most `REMEMBERED_RELEASES`): a row another
    /// replica stored can be read twice (a fetch and a scan), and one already
    /// applied must not be taken again.
    released: std::collections::VecDeque<i64>,
}

const REMEMBERED_RELEASES: usize = 256;

impl InboxQueue {
    /// An empty queue whose first scan reads from the first pending row.
    pub fn new(limits: Limits, budget: Arc<QueueBudget>) -> Self {
        InboxQueue {
            limits,
            rows: BTreeMap::new(),
            bytes: 0,
            budget,
            typical_row_bytes: 4096,
            watermark: 0,
            more_in_db: true,
            scan_cursor: 0,
            scanning: false,
            left_while_scanning: None,
            stalled: false,
            released: std::collections::VecDeque::new(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// Payload bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `row` in memory if the bounds allow; otherwise leaves it, and
    /// every later row, to the inbox scan.
    pub fn hold(&mut self, row: InboxRow) {
        if self.rows.contains_key(&row.id) {
            return;
        }
        let in_order = !self.more_in_db || row.id <= self.scan_cursor;
        self.typical_row_bytes = (self.typical_row_bytes * 7 + row.size) / 8;
        // One row always fits an empty queue, however big it is.
        let fits = in_order
            && (self.rows.is_empty()
                || (self.rows.len() < self.limits.max_rows
                    && self.bytes + row.size <= self.limits.max_bytes));
        if fits && self.budget.take(row.size, self.rows.is_empty()) {
            self.bytes += row.size;
            self.rows.insert(row.id, row);
        } else {
            self.leave_to_scan(row.id);
        }
    }

    /// New rows from the doorbell: those a scan has not covered are held
    /// (or left to the next scan).
    pub fn take_new(&mut self, delivery: Delivery) {
        for row in delivery.rows {
            if row.id > self.watermark {
                self.hold(row);
            }
        }
        if let Some(id) = delivery.overflow_from {
            self.leave_to_scan(id);
        }
    }

    /// Rows from `id` on are read from the inbox by a later scan.
    pub fn leave_to_scan(&mut self, id: i64) {
        if self.scanning {
            // The scan in flight resets the cursor: applied after it.
            self.left_while_scanning = Some(self.left_while_scanning.map_or(id, |l| l.min(id)));
            return;
        }
        let before = id.saturating_sub(1);
        self.scan_cursor = if self.more_in_db {
            self.scan_cursor.min(before)
        } else {
            before
        };
        self.more_in_db = true;
        // Everything above the cursor is read again by the scan, in order:
        // what is held above it goes (it is in the inbox anyway).
        let above = self.rows.split_off(&(self.scan_cursor + 1));
        for row in above.values() {
            self.give_back(row.size);
        }
    }

    /// Rows past the newest seen are read from the inbox by a later scan.
    pub fn scan_new(&mut self) {
        self.leave_to_scan(self.watermark + 1);
    }

    /// Scan from the first pending row (start, restart, half-open retry).
    pub fn rescan_all(&mut self) {
        self.more_in_db = true;
        self.scan_cursor = 0;
        self.stalled = false;
    }

    /// Forgets everything held (an actor restart: the inbox is the truth).
    pub fn reset(&mut self) {
        self.rows.clear();
        self.budget.give(self.bytes);
        self.bytes = 0;
        self.scanning = false;
        self.left_while_scanning = None;
        self.rescan_all();
    }

    /// A row was applied or dead-lettered.
    pub fn release(&mut self, id: i64) {
        if let Some(row) = self.rows.remove(&id) {
            self.give_back(row.size);
            self.stalled = false;
        }
        if self.released.len() == REMEMBERED_RELEASES {
            self.released.pop_front();
        }
        self.released.push_back(id);
    }

    /// Rows another replica stored, read from the inbox (cluster mode):
    /// held unless held already or just released, whatever the watermark
    /// (ids are not committed in order across replicas).
    pub fn take_fetched(&mut self, rows: Vec<InboxRow>) {
        for row in rows {
            if !self.released.contains(&row.id) {
                self.hold(row);
            }
        }
    }

    /// A row failed and waits until `at` for its next attempt.
    pub fn defer(&mut self, id: i64, attempts: i32, at: DateTime<Utc>) {
        if let Some(row) = self.rows.get_mut(&id) {
            row.attempts = attempts;
            row.next_attempt_at = Some(at);
        }
    }

    /// A retry is due: the next scan may find room again.
    pub fn unstall(&mut self) {
        self.stalled = false;
    }

    /// When the earliest deferred row is due.
    pub fn next_retry_at(&self) -> Option<DateTime<Utc>> {
        self.rows.values().filter_map(|r| r.next_attempt_at).min()
    }

    /// Starts a scan: where it reads from, and a page that fits the room
    /// left (rows of the size seen so far).
    pub fn begin_scan(&mut self) -> ScanFrom {
        self.scanning = true;
        let rows = self.limits.max_rows.saturating_sub(self.rows.len());
        let bytes = self.limits.max_bytes.saturating_sub(self.bytes);
        let by_size = bytes / self.typical_row_bytes.max(1);
        ScanFrom {
            after: if self.more_in_db { self.scan_cursor } else { 0 },
            page: rows.min(by_size).clamp(1, SCAN_PAGE) as u64,
        }
    }

    /// A scan read `pending` (a page of `page` rows at most) and saw ids up
    /// to `watermark`.
    pub fn end_scan(&mut self, pending: Vec<InboxRow>, watermark: i64, page: u64) {
        self.scanning = false;
        let left = self.left_while_scanning.take();
        let last_id = pending.last().map(|r| r.id);
        self.watermark = self.watermark.max(watermark).max(last_id.unwrap_or(0));
        self.more_in_db = pending.len() as u64 >= page;
        if let Some(last) = last_id {
            self.scan_cursor = last;
        }
        let before = self.rows.len();
        for row in pending {
            self.hold(row);
        }
        self.stalled = self.more_in_db && self.rows.len() == before;
        if let Some(id) = left {
            self.leave_to_scan(id);
        }
    }

    /// A scan failed: it is retried; rows left meanwhile are kept in mind.
    pub fn scan_failed(&mut self) {
        self.scanning = false;
        if let Some(id) = self.left_while_scanning.take() {
            self.leave_to_scan(id);
        }
    }

    /// The next rows to apply, in id order: due rows below the scan cursor,
    /// at most `batch_rows`, and under a quarter of the byte bound (big
    /// events go out a few at a time; the first always goes).
    pub fn next_batch(&self, now: DateTime<Utc>) -> Vec<InboxRow> {
        let limit = if self.more_in_db {
            self.scan_cursor
        } else {
            i64::MAX
        };
        let max_bytes = (self.limits.max_bytes / 4).max(1);
        let mut bytes = 0;
        self.rows
            .range(..=limit)
            .map(|(_, row)| row)
            .filter(|row| row.next_attempt_at.is_none_or(|t| t <= now))
            .take(self.limits.batch_rows)
            .take_while(|row| {
                let first = bytes == 0;
                bytes += row.size.max(1);
                first || bytes <= max_bytes
            })
            .cloned()
            .collect()
    }

    /// Nothing is due: whether a scan should read on. A queue full of rows
    /// waiting for their retry waits with them (memory stays bounded);
    /// otherwise what is held is done or waiting, and the scan moves past
    /// it, so later rows never wait behind a failing one.
    pub fn wants_scan(&self) -> bool {
        let room = self.rows.len() < self.limits.max_rows && self.bytes < self.limits.max_bytes;
        self.more_in_db && room && !self.stalled
    }

    fn give_back(&mut self, size: usize) {
        self.bytes = self.bytes.saturating_sub(size);
        self.budget.give(size);
    }
}

impl Drop for InboxQueue {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, size: usize) -> InboxRow {
        InboxRow::sample(id, size)
    }

    fn queue(max_rows: usize, max_bytes: usize) -> (InboxQueue, Arc<QueueBudget>) {
        let budget = Arc::new(QueueBudget::new(1 << 30));
        let limits = Limits {
            max_rows,
            max_bytes,
            batch_rows: 100,
        };
        (InboxQueue::new(limits, budget.clone()), budget)
    }

    fn ids(rows: &[InboxRow]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    /// A first scan that read everything there was (a short page).
    fn scanned(q: &mut InboxQueue, rows: Vec<InboxRow>) {
        let from = q.begin_scan();
        let watermark = rows.last().map_or(0, |r| r.id);
        q.end_scan(rows, watermark, from.page);
    }

    #[test]
    fn rows_apply_in_id_order_and_a_scan_covers_what_it_saw() {
        let (mut q, _) = queue(10, 1 << 20);
        scanned(&mut q, vec![row(1, 10), row(2, 10)]);
        // The doorbell repeats row 2 (the scan saw it) and brings row 3.
        q.take_new(Delivery {
            rows: vec![row(2, 10), row(3, 10)],
            overflow_from: None,
        });
        assert_eq!(ids(&q.next_batch(Utc::now())), [1, 2, 3]);
        q.release(1);
        assert_eq!(ids(&q.next_batch(Utc::now())), [2, 3]);
    }

    #[test]
    fn fetched_rows_below_the_watermark_are_held_unless_just_released() {
        let (mut q, _) = queue(10, 1 << 20);
        // A scan saw up to 5; row 4 was committed (by another replica) later.
        scanned(&mut q, vec![row(3, 10), row(5, 10)]);
        q.release(3);
        q.release(5);
        // A doorbell would drop it (below the watermark); a fetch holds it,
        // and drops a copy of what was just applied.
        q.take_fetched(vec![row(3, 10), row(4, 10), row(5, 10)]);
        assert_eq!(ids(&q.next_batch(Utc::now())), [4]);
        q.take_fetched(vec![row(4, 10)]);
        assert_eq!(ids(&q.next_batch(Utc::now())), [4], "held once");
    }

    #[test]
    fn rows_beyond_the_row_bound_are_left_to_the_next_scan() {
        let (mut q, _) = queue(2, 1 << 20);
        scanned(&mut q, vec![]);
        for id in 1..=5 {
            q.hold(row(id, 10));
        }
        assert_eq!(q.len(), 2);
        // Only rows below the cursor may go: 1 and 2, then a scan from 2.
        assert_eq!(ids(&q.next_batch(Utc::now())), [1, 2]);
        q.release(1);
        q.release(2);
        assert!(q.wants_scan());
        assert_eq!(q.begin_scan().after, 2);
    }

    #[test]
    fn the_byte_bound_holds_but_one_big_row_always_fits() {
        let (mut q, _) = queue(100, 1_000);
        scanned(&mut q, vec![]);
        q.hold(row(1, 5_000));
        assert_eq!(q.len(), 1, "one row always fits an empty queue");
        q.hold(row(2, 10));
        assert_eq!(q.len(), 1);
        assert!(q.bytes() <= 5_000);
    }

    #[test]
    fn the_shared_budget_bounds_all_queues_together() {
        let budget = Arc::new(QueueBudget::new(100));
        let limits = Limits {
            max_rows: 100,
            max_bytes: 1 << 20,
            batch_rows: 100,
        };
        let mut a = InboxQueue::new(limits, budget.clone());
        let mut b = InboxQueue::new(limits, budget.clone());
        scanned(&mut a, vec![]);
        scanned(&mut b, vec![]);
        a.hold(row(1, 60));
        b.hold(row(2, 60)); // forced: b was empty
        b.hold(row(3, 60)); // over the budget: left to the scan
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(budget.used(), 120);
        drop(a);
        assert_eq!(budget.used(), 60, "a dropped queue gives its bytes back");
        b.reset();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_failing_row_waits_without_holding_up_later_rows() {
        let (mut q, _) = queue(10, 1 << 20);
        scanned(&mut q, vec![row(1, 10), row(2, 10)]);
        let later = Utc::now() + chrono::Duration::seconds(60);
        q.defer(1, 1, later);
        assert_eq!(ids(&q.next_batch(Utc::now())), [2]);
        assert_eq!(q.next_retry_at(), Some(later));
        assert_eq!(ids(&q.next_batch(later)), [1, 2]);
    }

    #[test]
    fn a_queue_full_of_deferred_rows_stops_scanning_until_a_retry() {
        let (mut q, _) = queue(2, 1 << 20);
        let from = q.begin_scan();
        assert_eq!(from.page, 2);
        q.end_scan(vec![row(1, 10), row(2, 10)], 5, from.page);
        let later = Utc::now() + chrono::Duration::seconds(60);
        q.defer(1, 1, later);
        q.defer(2, 1, later);
        assert!(q.next_batch(Utc::now()).is_empty());
        assert!(!q.wants_scan(), "no room: wait for the retries");
        // A scan that added nothing stalls until a retry is due.
        q.release(2);
        assert!(q.wants_scan());
        let from = q.begin_scan();
        q.end_scan(vec![row(3, 10)], 5, from.page);
        q.hold(row(4, 10));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn rows_left_during_a_scan_are_rescanned_after_it() {
        let (mut q, _) = queue(10, 1 << 20);
        let from = q.begin_scan();
        q.leave_to_scan(7);
        q.end_scan(vec![row(1, 10)], 9, from.page);
        // The page was short (no more in the inbox then), but row 7 came
        // meanwhile: the next scan reads from just below it.
        assert!(q.wants_scan());
        assert_eq!(q.begin_scan().after, 6);
    }

    #[test]
    fn a_failed_scan_keeps_what_was_left_meanwhile() {
        let (mut q, _) = queue(10, 1 << 20);
        scanned(&mut q, vec![row(1, 10), row(2, 10), row(3, 10)]);
        q.begin_scan();
        q.leave_to_scan(2);
        q.scan_failed();
        // Row 2 and above are re-read; only row 1 stays held.
        assert_eq!(ids(&q.next_batch(Utc::now())), [1]);
        assert_eq!(q.begin_scan().after, 1);
    }

    #[test]
    fn batches_stay_under_a_quarter_of_the_byte_bound() {
        let (mut q, _) = queue(100, 4_000);
        scanned(&mut q, vec![row(1, 600), row(2, 600), row(3, 600)]);
        assert_eq!(ids(&q.next_batch(Utc::now())), [1]);
    }
}
