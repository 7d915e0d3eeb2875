//! The cluster's building blocks on a real PostgreSQL: leases are exclusive,
//! epochs rise on every change of owner, a lapsed or released lease can be
//! taken over, and the fence inside a write transaction both refuses a
//! replica that lost its lease and holds a takeover back until an in-flight
//! write has committed. PostgreSQL only (cluster mode needs it).

use std::time::Duration;

use sea_orm::TransactionTrait;
use sync_hostaway::cluster;
use sync_hostaway::store::leases::{self, Lease};

use crate::helpers::{Backend, TestDb};

async fn pg() -> (TestDb, sea_orm::DatabaseConnection) {
    let test_db = TestDb::new(Backend::Postgres);
    let db = test_db.connect().await;
    (test_db, db)
}

crate::pg_test! {
    async fn leases_are_exclusive_and_every_new_owner_gets_a_higher_epoch() {
        let (_test_db, db) = pg().await;
        let taken = leases::acquire(&db, "a", &[1, 2, 3], 10).await.unwrap();
        assert_eq!(taken.len(), 3);
        assert!(taken.iter().all(|l| l.epoch == 1), "{taken:?}");
        assert!(
            leases::acquire(&db, "b", &[1, 2, 3], 10)
                .await
                .unwrap()
                .is_empty(),
            "held leases are not taken"
        );
        assert!(
            leases::acquire(&db, "a", &[1], 10)
                .await
                .unwrap()
                .is_empty(),
            "nor re-taken by their owner (it renews them)"
        );
        assert_eq!(leases::renew(&db, "a", &taken, 10).await.unwrap().len(), 3);
        let two = Lease {
            account_id: 2,
            epoch: 1,
        };
        // Releasing a lease at an epoch it no longer has changes nothing.
        leases::release(
            &db,
            "a",
            &[Lease {
                account_id: 2,
                epoch: 7,
            }],
        )
        .await
        .unwrap();
        assert!(
            leases::acquire(&db, "b", &[2], 10)
                .await
                .unwrap()
                .is_empty()
        );
        leases::release(&db, "a", &[two]).await.unwrap();
        let by_b = leases::acquire(&db, "b", &[1, 2, 3], 10).await.unwrap();
        assert_eq!(
            by_b,
            vec![Lease {
                account_id: 2,
                epoch: 2
            }],
            "a released lease is taken at once, at a new epoch"
        );
        let renewed = leases::renew(&db, "a", &taken, 10).await.unwrap();
        assert_eq!(renewed.len(), 2, "a lost lease is not renewed: {renewed:?}");
        assert!(!renewed.contains(&two));
        let tx = db.begin().await.unwrap();
        assert_eq!(
            leases::fence(&tx, "a", &taken).await.unwrap(),
            vec![2],
            "the old owner is fenced off the account it lost, not the others"
        );
        tx.rollback().await.unwrap();
    }
}

crate::pg_test! {
    async fn a_lapsed_lease_is_lost_and_can_be_taken_over() {
        let (_test_db, db) = pg().await;
        let held = leases::acquire(&db, "a", &[7], 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            leases::renew(&db, "a", &held, 1).await.unwrap().is_empty(),
            "a lease that lapsed (a paused replica) is not renewed"
        );
        let tx = db.begin().await.unwrap();
        assert_eq!(leases::fence(&tx, "a", &held).await.unwrap(), vec![7]);
        tx.rollback().await.unwrap();
        let by_b = leases::acquire(&db, "b", &[7], 10).await.unwrap();
        assert_eq!(by_b[0].epoch, 2);
    }
}

crate::pg_test! {
    async fn the_fence_holds_a_takeover_back_until_the_write_commits() {
        let (_test_db, db) = pg().await;
        let held = leases::acquire(&db, "a", &[9], 1).await.unwrap();
        let tx = db.begin().await.unwrap();
        assert!(leases::fence(&tx, "a", &held).await.unwrap().is_empty());
        // The lease lapses while the write is in flight; b tries to take it:
        // the locked row is skipped (b's round is not held up), not taken.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let started = std::time::Instant::now();
        let skipped = leases::acquire(&db, "b", &[9], 10).await.unwrap();
        assert_eq!(skipped, vec![], "no takeover while the fenced write is open");
        assert!(started.elapsed() < Duration::from_secs(1), "and no waiting for it");
        tx.commit().await.unwrap();
        let taken = leases::acquire(&db, "b", &[9], 10).await.unwrap();
        assert_eq!(
            taken,
            vec![Lease {
                account_id: 9,
                epoch: 2
            }],
            "taken at the next round, after the commit"
        );
        let tx = db.begin().await.unwrap();
        assert_eq!(
            leases::fence(&tx, "a", &held).await.unwrap(),
            vec![9],
            "every later write of the old owner is refused"
        );
        tx.rollback().await.unwrap();
    }
}

crate::pg_test! {
    async fn live_replicas_place_accounts_and_a_leaver_frees_its_leases() {
        let (_test_db, db) = pg().await;
        for replica in ["r1", "r2", "r3"] {
            leases::heartbeat(&db, replica).await.unwrap();
        }
        let live = leases::live_replicas(&db, 10).await.unwrap();
        assert_eq!(live, ["r1", "r2", "r3"]);
        let accounts: Vec<i64> = (1..=200).collect();
        let mut owned = 0;
        for replica in &live {
            let share = cluster::share_of(replica, &live, &accounts);
            let taken = leases::acquire(&db, replica, &share, 10).await.unwrap();
            assert_eq!(taken.len(), share.len(), "{replica} takes its whole share");
            owned += taken.len();
        }
        assert_eq!(owned, 200, "every account owned exactly once");
        leases::leave(&db, "r3").await.unwrap();
        let live = leases::live_replicas(&db, 10).await.unwrap();
        assert_eq!(live, ["r1", "r2"]);
        let mut moved = 0;
        for replica in &live {
            let share = cluster::share_of(replica, &live, &accounts);
            moved += leases::acquire(&db, replica, &share, 10)
                .await
                .unwrap()
                .len();
        }
        let r3_share = cluster::share_of("r3", &["r1", "r2", "r3"], &accounts).len();
        assert_eq!(
            moved, r3_share,
            "the leaver's accounts, and only they, are taken over at once"
        );
    }
}

crate::pg_test! {
    async fn a_notification_arrives_when_its_transaction_commits_and_never_on_rollback() {
        use sea_orm::ConnectionTrait;
        use sync_hostaway::store::notify::{self, Listener, Notice, Topic};
        let (test_db, db) = pg().await;
        let channel = Topic::Inbox.channel(&test_db.schema);
        assert_ne!(channel, Topic::Accounts.channel(&test_db.schema));
        assert_ne!(channel, Topic::Inbox.channel("another_schema"));
        assert!(channel.len() <= 63);
        let mut listener = Listener::start(&db, std::slice::from_ref(&channel))
            .await
            .unwrap();
        let tx = db.begin().await.unwrap();
        notify::notify(&tx, &channel, &[6, 5, 6]).await.unwrap();
        assert!(quiet(&mut listener).await, "nothing before the commit");
        tx.commit().await.unwrap();
        let mut heard = Vec::new();
        for _ in 0..2 {
            let notice = tokio::time::timeout(Duration::from_secs(5), listener.next())
                .await
                .expect("delivered after the commit")
                .unwrap();
            heard.push(notice);
        }
        let expect = |account_id| Notice {
            channel: channel.clone(),
            account_id,
            detail: None,
        };
        assert_eq!(heard, vec![expect(5), expect(6)]);
        // Many accounts go out in a few notifications of many ids each
        // (payloads stay under PostgreSQL's 8,000 bytes), heard one by one.
        // As the announcer sends them: a hint whose commit is not flushed,
        // the setting undone with its transaction.
        let one = sea_orm::Database::connect(
            sea_orm::ConnectOptions::new(test_db.url.clone()).max_connections(1).to_owned(),
        )
        .await
        .unwrap();
        let many: Vec<i64> = (0..1000).map(|i| 9_000_000_000_000_000_000 + i).collect();
        notify::notify_hint(&one, &channel, &many).await.unwrap();
        let setting = one
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_setting('synchronous_commit')",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(setting.try_get_by_index::<String>(0).unwrap(), "on");
        for &account_id in &many {
            let notice = tokio::time::timeout(Duration::from_secs(5), listener.next())
                .await
                .expect("every account heard")
                .unwrap();
            assert_eq!(notice, expect(account_id));
        }
        assert!(quiet(&mut listener).await, "each account once");
        let tx = db.begin().await.unwrap();
        notify::notify(&tx, &channel, &[7]).await.unwrap();
        tx.rollback().await.unwrap();
        assert!(
            quiet(&mut listener).await,
            "a rolled-back notification is never heard"
        );
    }
}

/// True when nothing arrives within 300 ms.
async fn quiet(listener: &mut sync_hostaway::store::notify::Listener) -> bool {
    tokio::time::timeout(Duration::from_millis(300), listener.next())
        .await
        .is_err()
}

crate::pg_test! {
    /// Two lease keepers on one database share 20 accounts, each exactly once;
    /// when one leaves, the other holds all 20 within a heartbeat or two.
    async fn lease_keepers_share_the_accounts_and_take_over_a_leaver_s() {
        use std::sync::Arc;

        use actix::Actor;
        use sync_hostaway::actors::cluster::{ClusterOptions, LeaseKeeper, Leave, Ownership};

        let (_test_db, db) = pg().await;
        let accounts: Vec<i64> = (1..=20).collect();
        let metrics_a = Arc::new(sync_hostaway::metrics::Metrics::new());
        let start = |id: &str, metrics: Arc<sync_hostaway::metrics::Metrics>| {
            let ownership = Arc::new(Ownership::default());
            let active = accounts.clone();
            let keeper = LeaseKeeper::new(
                db.clone(),
                ClusterOptions {
                    replica_id: id.into(),
                    lease_secs: 5,
                    heartbeat_secs: 1,
                },
                ownership.clone(),
                metrics,
                Box::new(move || active.clone()),
                None,
            )
            .start();
            (keeper, ownership)
        };
        let (_a, owned_a) = start("keeper-a", metrics_a.clone());
        let (b, owned_b) = start("keeper-b", Arc::new(sync_hostaway::metrics::Metrics::new()));
        let ids = |o: &Ownership| o.leases().iter().map(|l| l.account_id).collect::<Vec<_>>();
        crate::helpers::wait_for(
            "both keepers to hold their shares",
            Duration::from_secs(20),
            || {
                let (a, b) = (ids(&owned_a), ids(&owned_b));
                async move {
                    let mut all = [a.clone(), b.clone()].concat();
                    all.sort_unstable();
                    (!a.is_empty() && !b.is_empty() && all == (1..=20).collect::<Vec<_>>())
                        .then_some(())
                }
            },
        )
        .await;
        assert_eq!(
            ids(&owned_a),
            sync_hostaway::cluster::share_of("keeper-a", &["keeper-a", "keeper-b"], &accounts)
        );
        b.send(Leave).await.unwrap();
        assert!(ids(&owned_b).is_empty(), "a leaver holds nothing");
        crate::helpers::wait_for(
            "the other keeper to take over",
            Duration::from_secs(10),
            || {
                let a = ids(&owned_a);
                async move { (a.len() == 20).then_some(()) }
            },
        )
        .await;
        let epochs_in_db = leases::renew(&db, "keeper-a", &owned_a.leases(), 5)
            .await
            .unwrap();
        assert_eq!(
            epochs_in_db.len(),
            20,
            "what the keeper publishes is what the database holds"
        );
        let text = metrics_a.render();
        let value = |name: &str| crate::helpers::metric_value(&text, name);
        assert_eq!(value("sync_hostaway_cluster_accounts_owned"), 20.0);
        assert_eq!(value("sync_hostaway_cluster_replicas_live"), 1.0);
        assert!(
            value("sync_hostaway_cluster_ownership_changes_total") >= 20.0,
            "it took 20, gave the other its share, then took that back"
        );
        assert_eq!(
            value("sync_hostaway_cluster_lease_renew_failures_total"),
            0.0
        );
    }
}

crate::both_backends!(a_chore_is_claimed_once_per_interval);

async fn a_chore_is_claimed_once_per_interval(backend: Backend) {
    let test_db = TestDb::new(backend);
    let db = test_db.connect().await;
    let now = chrono::Utc::now();
    let every = chrono::Duration::seconds(600);
    assert!(
        leases::claim_chore(&db, "inbox_prune", every, now)
            .await
            .unwrap(),
        "the first claim runs it"
    );
    for replica_clock in [now, now + chrono::Duration::seconds(300)] {
        assert!(
            !leases::claim_chore(&db, "inbox_prune", every, replica_clock)
                .await
                .unwrap(),
            "no other run within the interval"
        );
    }
    assert!(
        leases::claim_chore(&db, "another_chore", every, now)
            .await
            .unwrap(),
        "chores are claimed apart"
    );
    assert!(
        leases::claim_chore(&db, "inbox_prune", every, now + every)
            .await
            .unwrap(),
        "due again after the interval"
    );
}

crate::pg_test! {
    /// The writers check a fenced write's lease in its own transaction: the
    /// write of a replica that lost the account is refused and changes nothing,
    /// while writes under leases still held go through.
    async fn a_write_under_a_lost_lease_is_refused_in_its_transaction() {
        use std::sync::Arc;

        use sea_orm::{EntityTrait, PaginatorTrait};
        use sync_hostaway::actors::writers::{Fence, WriteItem, Writers};
        use sync_hostaway::store::accounts::{self, NewAccount};
        use sync_hostaway::store::rows::{self, Owner};
        use sync_hostaway::store::version::{Observed, Source};
        use sync_hostaway::sync::MirrorWriter;

        let (test_db, db) = pg().await;
        for account_id in [1, 2] {
            accounts::insert(
                &db,
                NewAccount {
                    account_id,
                    customer_id: None,
                    encrypted_secret: "v1:sealed".into(),
                    ignored_events: vec![],
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        }
        let committers = sync_hostaway::store::Committers::open(
            &test_db.settings(&[]).database,
            &db,
            None,
            sync_hostaway::store::reservation_writers(true),
        )
        .await
        .unwrap();
        let writers = Writers::start(
            &actix::Arbiter::current(),
            &committers,
            &sync_hostaway::store::WriteGate::for_backend(db.get_database_backend()),
            &Arc::new(sync_hostaway::metrics::Metrics::new()),
            16,
        );
        let held = leases::acquire(&db, "r", &[1, 2], 10).await.unwrap();
        let fence = |account_id: i64| Fence {
            replica: Arc::from("r"),
            lease: *held.iter().find(|l| l.account_id == account_id).unwrap(),
        };
        let write = |account_id: i64, id: i64, fence: Option<Fence>| {
            let mut payload = crate::helpers::fixture("reservations_page.json")["result"][0].clone();
            payload["id"] = serde_json::json!(id);
            let observed = Observed {
                seen: chrono::Utc::now(),
                source: Source::Sync,
                max_future_skew: chrono::Duration::days(1),
            };
            let owner = Owner {
                account_id,
                customer_id: None,
            };
            let row = rows::reservation_row(owner, payload, &observed).unwrap();
            let writers = writers.clone();
            async move {
                writers
                    .write_reservations(
                        WriteItem {
                            op: vec![row],
                            settle: Vec::new(),
                            fence,
                        },
                        Vec::new(),
                    )
                    .await
            }
        };
        write(1, 101, Some(fence(1))).await.expect("held lease");
        write(2, 201, Some(fence(2))).await.expect("held lease");
        // Account 2 moves to another replica.
        leases::release(&db, "r", &[fence(2).lease]).await.unwrap();
        leases::acquire(&db, "s", &[2], 10).await.unwrap();
        let refused = write(2, 202, Some(fence(2))).await.unwrap_err();
        assert!(refused.to_string().contains("fenced"), "{refused}");
        write(1, 102, Some(fence(1)))
            .await
            .expect("a lease still held");
        write(2, 203, None)
            .await
            .expect("unfenced (one process) writes as before");
        let stored = entities::reservation::Entity::find()
            .count(&db)
            .await
            .unwrap();
        assert_eq!(
            stored, 4,
            "101, 102, 201 and 203: the refused write left nothing"
        );
    }
}

crate::pg_test! {
    /// A keeper that cannot reach its lease rows for longer than a lease drops
    /// every account itself (others may hold them by now).
    async fn a_keeper_that_cannot_renew_past_its_lease_drops_every_account() {
        use std::sync::Arc;

        use actix::Actor;
        use sea_orm::ConnectionTrait;
        use sync_hostaway::actors::cluster::{ClusterOptions, LeaseKeeper, Ownership};

        let (_test_db, db) = pg().await;
        let ownership = Arc::new(Ownership::default());
        let metrics = Arc::new(sync_hostaway::metrics::Metrics::new());
        let _keeper = LeaseKeeper::new(
            db.clone(),
            ClusterOptions {
                replica_id: "lonely".into(),
                lease_secs: 2,
                heartbeat_secs: 1,
            },
            ownership.clone(),
            metrics.clone(),
            Box::new(|| (1..=5).collect()),
            None,
        )
        .start();
        let owned = |o: &Ownership| o.leases().len();
        crate::helpers::wait_for(
            "the keeper to take its accounts",
            Duration::from_secs(10),
            || {
                let n = owned(&ownership);
                async move { (n == 5).then_some(()) }
            },
        )
        .await;
        // Every round fails from now on.
        db.execute_unprepared("DROP TABLE account_leases; DROP TABLE cluster_replicas")
            .await
            .unwrap();
        crate::helpers::wait_for(
            "the keeper to drop its accounts",
            Duration::from_secs(10),
            || {
                let n = owned(&ownership);
                async move { (n == 0).then_some(()) }
            },
        )
        .await;
        let text = metrics.render();
        assert!(
            crate::helpers::metric_value(&text, "sync_hostaway_cluster_lease_renew_failures_total")
                >= 1.0
        );
        assert_eq!(
            crate::helpers::metric_value(&text, "sync_hostaway_cluster_accounts_owned"),
            0.0
        );
    }
}

crate::pg_test! {
    /// Replicas starting together on a new schema (a first deploy): each
    /// creates the schema and migrates it at the same moment, and all start.
    async fn replicas_starting_together_on_a_new_schema_all_migrate_it() {
        let test_db = TestDb::new(Backend::Postgres);
        let settings = test_db.settings(&[]);
        let starts = (0..4).map(|_| async {
            let db = sync_hostaway::store::connect(&settings.database).await?;
            sync_hostaway::store::migrate(&db).await
        });
        for started in futures::future::join_all(starts).await {
            started.expect("every replica creates and migrates the schema or finds it done");
        }
    }
}
