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

/// What a replica does with its leases after a heartbeat: the accounts to
/// try to take (its share it does not hold yet: each may still be held by
/// its previous owner until that one lets go or its lease lapses) and the
/// ones to give up (held, but another replica's share now, or no longer
/// active). `live` is the replicas whose heartbeats are fresh; this replica
/// counts as live whatever the list says (it just wrote its own).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub acquire: Vec<i64>,
    pub release: Vec<i64>,
}

impl Plan {
    pub fn new(me: &str, live: &[String], active: &[i64], held: &[i64]) -> Plan {
        let mut replicas: Vec<&str> = live.iter().map(String::as_str).collect();
        if !replicas.contains(&me) {
            replicas.push(me);
        }
        let share = share_of(me, &replicas, active);
        Plan {
            acquire: share
                .iter()
                .copied()
                .filter(|id| !held.contains(id))
                .collect(),
            release: held
                .iter()
                .copied()
                .filter(|id| !share.contains(id))
                .collect(),
        }
    }

    /// Nothing to take or give up: the replica holds exactly its share.
    pub fn settled(&self) -> bool {
        self.acquire.is_empty() && self.release.is_empty()
    }
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
    fn a_plan_takes_the_missing_share_and_gives_up_the_rest() {
        let live = replicas(2);
        let active: Vec<i64> = (1..=50).collect();
        let share = share_of("replica-0", &live, &active);
        let plan = Plan::new("replica-0", &live, &active, &[]);
        assert_eq!(plan.acquire, share);
        assert!(plan.release.is_empty());
        let held = share.clone();
        assert!(Plan::new("replica-0", &live, &active, &held).settled());
        // A third replica joins: replica-0 gives up what is now its share.
        let three = replicas(3);
        let plan = Plan::new("replica-0", &three, &active, &held);
        assert!(
            plan.acquire.is_empty(),
            "a join never gives the others more"
        );
        assert_eq!(
            plan.release,
            held.iter()
                .copied()
                .filter(|id| owner_of(*id, &three) == Some("replica-2"))
                .collect::<Vec<_>>()
        );
        // An account deactivated while held is given up.
        let fewer: Vec<i64> = active.iter().copied().filter(|id| *id != held[0]).collect();
        assert_eq!(
            Plan::new("replica-0", &live, &fewer, &held).release,
            vec![held[0]]
        );
        // A replica missing from its own list (its heartbeat not seen yet)
        // still plans as live.
        let plan = Plan::new("replica-9", &live, &active, &[]);
        assert_eq!(
            plan.acquire,
            share_of(
                "replica-9",
                &[&live[0], &live[1], &"replica-9".to_string()],
                &active
            )
        );
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
