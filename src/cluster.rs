//! Which replica owns which account: rendezvous (highest-random-weight)
//! hashing over the live replicas. Every replica computes the same answer
//! from the same list, with no coordination beyond agreeing on who is live
//! (their heartbeats in PostgreSQL, `store::leases`); when a replica joins
//! or leaves, only the accounts it gains or loses move. Pure, so the
//! placement rules are unit-tested apart from the database.

use sha2::{Digest, Sha256};

/// The weight of `replica` for `account_id`: a stable hash of both (the
/// same on every replica, build and platform).
fn weight(replica: &str, account_id: i64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(replica.as_bytes());
    hasher.update([0]);
    hasher.update(account_id.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The replica that should own `account_id`: the one of highest weight
/// (ties, which need a hash collision, go to the smaller id).
pub fn owner_of<S: AsRef<str>>(account_id: i64, replicas: &[S]) -> Option<&str> {
    replicas.iter().map(AsRef::as_ref).max_by(|a, b| {
        weight(a, account_id)
            .cmp(&weight(b, account_id))
            .then_with(|| b.cmp(a))
    })
}

/// The accounts among `accounts` that `replica` should own.
pub fn share_of<S: AsRef<str>>(replica: &str, replicas: &[S], accounts: &[i64]) -> Vec<i64> {
    accounts
        .iter()
        .copied()
        .filter(|id| owner_of(*id, replicas) == Some(replica))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    #[test]
    fn every_account_has_exactly_one_owner_and_shares_are_even() {
        let accounts: Vec<i64> = (1..=200).collect();
        let live = replicas(3);
        let shares: Vec<Vec<i64>> = live.iter().map(|r| share_of(r, &live, &accounts)).collect();
        let mut all: Vec<i64> = shares.concat();
        all.sort_unstable();
        assert_eq!(all, accounts, "each account owned once");
        for share in &shares {
            assert!((40..=95).contains(&share.len()), "{}", share.len());
        }
        assert_eq!(owner_of::<String>(1, &[]), None);
    }

    #[test]
    fn a_join_or_a_leave_moves_only_the_accounts_it_must() {
        let accounts: Vec<i64> = (1..=500).collect();
        let three = replicas(3);
        let four = replicas(4);
        let mut moved = 0;
        for id in &accounts {
            let before = owner_of(*id, &three).unwrap();
            let after = owner_of(*id, &four).unwrap();
            if before != after {
                assert_eq!(after, "replica-3", "a join takes accounts only for itself");
                moved += 1;
            }
        }
        assert!(
            (70..=190).contains(&moved),
            "about a quarter moves: {moved}"
        );
        let without_1: Vec<String> = three
            .iter()
            .filter(|r| *r != "replica-1")
            .cloned()
            .collect();
        for id in &accounts {
            let before = owner_of(*id, &three).unwrap();
            if before != "replica-1" {
                assert_eq!(
                    owner_of(*id, &without_1),
                    Some(before),
                    "only the leaver's accounts move"
                );
            }
        }
    }

    #[test]
    fn the_answer_does_not_depend_on_list_order() {
        let mut live = replicas(5);
        let first: Vec<_> = (1..100)
            .map(|id| owner_of(id, &live).unwrap().to_string())
            .collect();
        live.reverse();
        let second: Vec<_> = (1..100)
            .map(|id| owner_of(id, &live).unwrap().to_string())
            .collect();
        assert_eq!(first, second);
    }
}
