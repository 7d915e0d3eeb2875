//! The hand-off of new inbox rows from the router to one AccountActor,
//! bounded: rows wait here (up to a row and a byte limit, beyond which they
//! are left to the database, where they are anyway), and at most one wake-up
//! message is in flight per account however many batches arrive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::inbox::InboxRow;

/// The bytes all accounts together may hold in memory (queues and
/// doorbells): `actors.max_queued_bytes_total`.
#[derive(Debug)]
pub struct QueueBudget {
    used: AtomicUsize,
    max: usize,
}

impl QueueBudget {
    pub fn new(max: usize) -> Self {
        QueueBudget {
            used: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// Takes `bytes` if they fit (or always, with `force`: one row per
    /// account must always be able to move).
    pub fn take(&self, bytes: usize, force: bool) -> bool {
        if force {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            return true;
        }
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.max).then_some(used + bytes)
            })
            .is_ok()
    }

    pub fn give(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct State {
    rows: Vec<InboxRow>,
    bytes: usize,
    /// Rows were left to the database: the lowest such id.
    overflow_from: Option<i64>,
    /// A wake-up is in flight (sent, not yet taken).
    rung: bool,
}

/// What the actor takes when it answers the bell.
#[derive(Debug, Default)]
pub struct Delivery {
    pub rows: Vec<InboxRow>,
    /// The lowest id of rows that did not fit and must be read from the inbox.
    pub overflow_from: Option<i64>,
}

#[derive(Debug)]
pub struct Doorbell {
    state: Mutex<State>,
    max_rows: usize,
    max_bytes: usize,
    budget: Arc<QueueBudget>,
}

impl Doorbell {
    pub fn new(max_rows: usize, max_bytes: usize, budget: Arc<QueueBudget>) -> Self {
        Doorbell {
            state: Mutex::default(),
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent before it could panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leaves `rows` for the actor; true when a wake-up must be sent (none
    /// is in flight).
    pub fn leave(&self, rows: Vec<InboxRow>) -> bool {
        let mut state = self.lock();
        for row in rows {
            let fits = state.overflow_from.is_none()
                && state.rows.len() < self.max_rows
                && state.bytes + row.size <= self.max_bytes
                && self.budget.take(row.size, false);
            if fits {
                state.bytes += row.size;
                state.rows.push(row);
            } else {
                state.overflow_from = Some(state.overflow_from.map_or(row.id, |id| id.min(row.id)));
            }
        }
        !std::mem::replace(&mut state.rung, true)
    }

    /// Takes what waits, and lets the next `leave` ring again.
    pub fn take(&self) -> Delivery {
        let mut state = self.lock();
        state.rung = false;
        // The actor takes the bytes of what it keeps from the budget itself.
        self.budget.give(state.bytes);
        state.bytes = 0;
        Delivery {
            rows: std::mem::take(&mut state.rows),
            overflow_from: state.overflow_from.take(),
        }
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        let bytes = self.lock().bytes;
        self.budget.give(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, size: usize) -> InboxRow {
        InboxRow::sample(id, size)
    }

    #[test]
    fn one_wake_up_per_take_and_rows_beyond_the_bounds_are_left_to_the_database() {
        let budget = Arc::new(QueueBudget::new(1 << 20));
        let bell = Doorbell::new(3, 1000, budget.clone());
        assert!(bell.leave(vec![row(1, 100)]), "the first batch rings");
        assert!(
            !bell.leave(vec![row(2, 100)]),
            "a wake-up is already in flight"
        );
        assert!(!bell.leave(vec![row(3, 900), row(4, 10)]));
        let taken = bell.take();
        let ids: Vec<i64> = taken.rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2], "row 3 would pass the byte bound");
        assert_eq!(
            taken.overflow_from,
            Some(3),
            "and every row after it stays in the inbox"
        );
        assert!(
            bell.leave(vec![row(5, 10)]),
            "taken: the next batch rings again"
        );
        let taken = bell.take();
        assert_eq!(taken.rows.len(), 1);
        assert_eq!(taken.overflow_from, None);
        let bell = Doorbell::new(2, 10_000, budget.clone());
        bell.leave((10..15).map(|id| row(id, 1)).collect());
        let taken = bell.take();
        assert_eq!((taken.rows.len(), taken.overflow_from), (2, Some(12)));
        assert_eq!(budget.used(), 0, "taken rows leave the doorbell's share");
        // The shared budget bounds every doorbell together.
        let small = Arc::new(QueueBudget::new(150));
        let a = Doorbell::new(10, 1000, small.clone());
        let b = Doorbell::new(10, 1000, small.clone());
        a.leave(vec![row(1, 100)]);
        b.leave(vec![row(2, 100)]);
        assert_eq!(
            b.take().overflow_from,
            Some(2),
            "no room left in the shared budget"
        );
        assert_eq!(small.used(), 100);
        drop(a);
        assert_eq!(small.used(), 0);
        assert!(small.take(500, true), "one row may always move");
    }
}
