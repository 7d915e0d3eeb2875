//! Reads of the mirror that a reconciliation needs to decide what to fetch.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr};
use serde_json::Value;

use super::Sql;
use crate::hostaway::decode;

/// What identifies a version of a message: its `updatedOn` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageVersion {
    pub updated_on: Option<String>,
    pub hash: Option<String>,
}

impl MessageVersion {
    pub fn of(message: &Value) -> Self {
        MessageVersion {
            updated_on: decode::string_field(message, "updatedOn"),
            hash: decode::string_field(message, "hash"),
        }
    }
}

/// Every mirrored message of an account by message id.
pub async fn message_versions<C: ConnectionTrait>(
    conn: &C,
    account_id: i64,
) -> Result<HashMap<i64, MessageVersion>, DbErr> {
    let mut sql = Sql::new(conn.get_database_backend());
    sql.push("SELECT raw_messages FROM message_threads WHERE account_id = ")
        .bind(account_id);
    let mut out = HashMap::new();
    for row in conn.query_all_raw(sql.build()).await? {
        let messages: Value = row.try_get_by_index(0)?;
        for message in messages.as_array().into_iter().flatten() {
            if let Some(id) = decode::id_field(message, "id") {
                out.insert(id, MessageVersion::of(message));
            }
        }
    }
    Ok(out)
}
