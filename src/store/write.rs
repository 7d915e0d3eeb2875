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
    #[error("commit panicked: {0}")]
    Panicked(String),
    #[error("the writer stopped before committing")]
    Aborted,
}

impl BatchError {
    /// The error of a failed database commit.
    pub fn from_db(err: &sea_orm::DbErr) -> Self {
        if super::is_connection_error(err) {
            BatchError::Unavailable(err.to_string())
        } else {
            BatchError::Database(err.to_string())
        }
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
}

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
