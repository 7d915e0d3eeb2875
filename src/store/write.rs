//! What a write to the mirror is: the requests the writer actors commit
//! (their changes and the inbox rows they settle) and why one failed.

use chrono::{DateTime, Utc};

use super::rows::ListingRow;
use super::version::Version;

/// Why a request was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// A statement was refused: the batch's items are retried one by one.
    #[error("database: {0}")]
    Database(String),
    /// The database cannot be reached: every item fails alike, none is retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// This replica no longer owns an account the batch writes for (its
    /// message starts with `FENCED`): nothing was written.
    #[error("{0}")]
    Fenced(String),
    #[error("commit panicked: {0}")]
    Panicked(String),
    #[error("the writer stopped before committing")]
    Aborted,
}

impl BatchError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, BatchError::Fenced(_))
    }

    /// The error of a failed database commit.
    pub fn from_db(err: &sea_orm::DbErr) -> Self {
        if let sea_orm::DbErr::Custom(message) = err
            && message.starts_with(FENCED)
        {
            return BatchError::Fenced(message.clone());
        }
        if super::is_connection_error(err) {
            BatchError::Unavailable(err.to_string())
        } else {
            BatchError::Database(err.to_string())
        }
    }
}

/// Runs `attempt` on all `items` together; if a statement was refused or
/// an item's fence failed (not when the database is unreachable: then
/// every item fails alike),
/// runs it on each item alone, so one bad item fails only itself. One
/// result per item, in order. The one place a failed batch is split: the
/// group commit of the writers and the inbox, and an account's batch of
/// rows, both go through it.
pub async fn all_or_each<T, O, F, Fut>(
    what: &'static str,
    items: Vec<T>,
    attempt: F,
) -> Vec<Result<O, BatchError>>
where
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<O>, (BatchError, Vec<T>)>>,
{
    let count = items.len();
    match attempt(items).await {
        Ok(outputs) => outputs.into_iter().map(Ok).collect(),
        Err((error @ (BatchError::Database(_) | BatchError::Fenced(_)), items)) if count > 1 => {
            tracing::warn!(batch = what, error = %error, items = count, "batch failed; retrying its items one by one");
            let mut results = Vec::with_capacity(count);
            for item in items {
                results.push(match attempt(vec![item]).await {
                    Ok(mut outputs) => outputs.pop().ok_or(BatchError::Aborted),
                    Err((error, _)) => Err(error),
                });
            }
            results
        }
        Err((error, _)) => (0..count).map(|_| Err(error.clone())).collect(),
    }
}

/// An inbox row a write settles: marked processed in the write's transaction.
#[derive(Debug, Clone)]
pub struct Settle {
    pub inbox_id: i64,
    pub event: String,
    pub received_at: DateTime<Utc>,
}

/// One caller's request: its changes plus the inbox rows they settle.
#[derive(Debug, Clone)]
pub struct WriteItem<Op> {
    pub op: Op,
    pub settle: Vec<Settle>,
    /// In cluster mode, the lease the write is made under: the writer checks
    /// it in the write's own transaction and refuses the write if this
    /// replica no longer owns the account at that epoch. `None`: one process
    /// owns everything.
    pub fence: Option<Fence>,
}

/// A write's fencing token: the replica and the lease it acts under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub replica: std::sync::Arc<str>,
    pub lease: super::leases::Lease,
}

/// Checks, inside `tx`, that every fenced item's lease is still its
/// replica's (`leases::fence`, which also holds a takeover back until the
/// transaction ends); an error names the accounts that were lost.
pub async fn check_fences<'a, C: sea_orm::ConnectionTrait>(
    tx: &C,
    fences: impl Iterator<Item = &'a Fence>,
) -> Result<(), sea_orm::DbErr> {
    let mut by_replica: Vec<(&str, Vec<super::leases::Lease>)> = Vec::new();
    for fence in fences {
        match by_replica.iter_mut().find(|(r, _)| *r == &*fence.replica) {
            Some((_, leases)) => leases.push(fence.lease),
            None => by_replica.push((&fence.replica, vec![fence.lease])),
        }
    }
    for (replica, leases) in by_replica {
        let lost = super::leases::fence(tx, replica, &leases).await?;
        if !lost.is_empty() {
            return Err(sea_orm::DbErr::Custom(format!(
                "{FENCED}: replica {replica} no longer owns account(s) {lost:?}"
            )));
        }
    }
    Ok(())
}

/// How a refused fenced write's error starts.
pub const FENCED: &str = "fenced";

/// A change to listings, applied in order.
#[derive(Debug, Clone)]
pub enum ListingChange {
    Upsert(ListingRow),
    /// Soft-delete one listing (a `listing.deleted` event), if `version` wins.
    Delete {
        account_id: i64,
        id: i64,
        version: Version,
    },
    /// Soft-delete the account's live listings not in `present` (a sync's
    /// complete listing, fetched as `version` says).
    DeleteMissing {
        account_id: i64,
        present: Vec<i64>,
        version: Version,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items above 10 are refused; `unreachable` makes every attempt fail
    /// as if the database were gone.
    async fn attempt(
        items: Vec<i32>,
        unreachable: bool,
    ) -> Result<Vec<i32>, (BatchError, Vec<i32>)> {
        if unreachable {
            return Err((BatchError::Unavailable("gone".into()), items));
        }
        if items.iter().any(|i| *i > 10) {
            return Err((BatchError::Database("refused".into()), items));
        }
        Ok(items.iter().map(|i| i * 2).collect())
    }

    #[tokio::test]
    async fn a_refused_batch_is_retried_item_by_item() {
        let results = all_or_each("test", vec![1, 11, 3], |items| attempt(items, false)).await;
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().ok(), Some(&2));
        assert!(matches!(results[1], Err(BatchError::Database(_))));
        assert_eq!(results[2].as_ref().ok(), Some(&6));
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_every_item_without_retrying() {
        let calls = std::cell::Cell::new(0);
        let results = all_or_each("test", vec![1, 2, 3], |items| {
            calls.set(calls.get() + 1);
            attempt(items, true)
        })
        .await;
        assert_eq!(calls.get(), 1);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(BatchError::Unavailable(_))))
        );
    }
}
