//! Migrations and the batch upserts, on SQLite and PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait};
use sea_orm_migration::MigratorTrait;
use serde_json::{Value, json};
use sync_hostaway::store::accounts::{self, NewAccount};
use sync_hostaway::store::rows::{self, Owner};
use sync_hostaway::store::version::{Observed, Source};
use sync_hostaway::store::{threads, upserts};

use crate::both_backends;
use crate::helpers::{Backend, TestDb, fixture};

const ACCOUNT: i64 = 71234;
const OWNER: Owner = Owner {
    account_id: ACCOUNT,
    customer_id: None,
};

async fn db_with_account(backend: Backend) -> (TestDb, DatabaseConnection) {
    let test_db = TestDb::new(backend);
    let db = test_db.connect().await;
    add_account(&db, ACCOUNT).await;
    (test_db, db)
}

async fn add_account(db: &DatabaseConnection, id: i64) {
    accounts::insert(
        db,
        NewAccount {
            account_id: id,
            customer_id: None,
            encrypted_secret: "v1:sealed".into(),
            ignored_events: vec![],
        },
        Utc::now(),
    )
    .await
    .expect("insert account");
}

fn reservation(id: i64, updated_on: &str, guest: &str) -> Value {
    let mut r = fixture("reservations_page.json")["result"][0].clone();
    r["id"] = json!(id);
    r["hostawayReservationId"] = json!(id);
    r["updatedOn"] = json!(updated_on);
    r["guestName"] = json!(guest);
    r
}

/// A sync fetch observed now.
fn observed() -> Observed {
    Observed {
        seen: Utc::now(),
        source: Source::Sync,
        max_future_skew: Duration::days(1),
    }
}

fn reservation_rows(payloads: &[Value]) -> Vec<rows::ReservationRow> {
    payloads
        .iter()
        .filter_map(|p| rows::reservation_row(OWNER, p.clone(), &observed()))
        .collect()
}

async fn updated_at_of(db: &DatabaseConnection, table: &str, key: &str, id: i64) -> DateTime<Utc> {
    let stmt = sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        format!("SELECT updated_at FROM {table} WHERE {key} = $1"),
        [id.into()],
    );
    db.query_one_raw(stmt)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{table} {id} missing"))
        .try_get_by_index(0)
        .unwrap()
}

async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let stmt = sea_orm::Statement::from_string(
        db.get_database_backend(),
        format!("SELECT COUNT(*) FROM {table}"),
    );
    db.query_one_raw(stmt)
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

both_backends!(
    migrations_go_up_and_down,
    listing_upsert_inserts_updates_and_skips_unchanged,
    reservation_upsert_refuses_stale_versions,
    invalid_rows_are_skipped_not_fatal,
    unchanged_batch_of_1000_reservations_keeps_updated_at,
    message_threads_merge_by_id_and_stay_sorted,
    account_delete_cascades_to_mirrored_data,
    missing_listings_are_soft_deleted_and_come_back,
);

async fn migrations_go_up_and_down(backend: Backend) {
    let test_db = TestDb::new(backend);
    let db = test_db.connect().await;
    for table in [
        "accounts",
        "listings",
        "reservations",
        "message_threads",
        "webhook_events",
    ] {
        assert_eq!(count(&db, table).await, 0, "{table} exists and is empty");
    }
    migration::Migrator::down(&db, None).await.expect("down");
    let stmt =
        sea_orm::Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) FROM accounts");
    assert!(db.query_one_raw(stmt).await.is_err(), "accounts is dropped");
    migration::Migrator::up(&db, None).await.expect("up again");
    assert_eq!(count(&db, "webhook_events").await, 0);
    let applied = migration::Migrator::get_applied_migrations(&db)
        .await
        .unwrap();
    assert_eq!(applied.len(), migration::Migrator::migrations().len());
}

async fn listing_upsert_inserts_updates_and_skips_unchanged(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let listings: Vec<Value> = fixture("listings_page.json")["result"]
        .as_array()
        .unwrap()
        .clone();
    let rows: Vec<_> = listings
        .iter()
        .filter_map(|l| rows::listing_row(OWNER, l.clone(), &observed()))
        .collect();
    let t0 = Utc::now();
    assert_eq!(
        upserts::upsert_listings(&db, &rows, t0)
            .await
            .unwrap()
            .len(),
        3
    );
    let first = updated_at_of(&db, "listings", "id", 310501).await;

    // Unchanged: nothing written, updated_at kept.
    let t1 = t0 + Duration::seconds(5);
    assert_eq!(
        upserts::upsert_listings(&db, &rows, t1)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(updated_at_of(&db, "listings", "id", 310501).await, first);

    // Changed: one row written, its updated_at moves, the others stay.
    let mut changed = rows.clone();
    let mut payload: Value = serde_json::from_str(changed[0].payload.as_str()).unwrap();
    payload["price"] = json!(199.0);
    changed[0].payload = rows::EntityJson::of(&payload);
    let t2 = t0 + Duration::seconds(10);
    assert_eq!(
        upserts::upsert_listings(&db, &changed, t2)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(updated_at_of(&db, "listings", "id", 310501).await > first);
    assert_eq!(updated_at_of(&db, "listings", "id", 310502).await, first);
    let stored = entities::listing::Entity::find_by_id((ACCOUNT, 310501))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.raw_payload["price"], json!(199.0));
    assert_eq!(stored.created_at, first, "created_at is kept");
}

async fn reservation_upsert_refuses_stale_versions(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let now = Utc::now();
    let newer = reservation_rows(&[reservation(1, "2025-06-15 12:00:00", "Newer")]);
    let older = reservation_rows(&[reservation(1, "2025-06-15 11:00:00", "Older")]);
    assert_eq!(
        upserts::upsert_reservations(&db, &newer, now)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        upserts::upsert_reservations(&db, &older, now + Duration::seconds(1))
            .await
            .unwrap()
            .len(),
        0,
        "an older version never replaces a newer one"
    );
    let stored = entities::reservation::Entity::find_by_id((ACCOUNT, 1))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.raw_payload["guestName"], "Newer");
    assert_eq!(stored.listing_id, 310501);
    assert_eq!(stored.status.as_deref(), Some("new"));
    assert_eq!(stored.arrival_date.unwrap().to_string(), "2025-07-03");

    let newest = reservation_rows(&[reservation(1, "2025-06-15 13:00:00", "Newest")]);
    assert_eq!(
        upserts::upsert_reservations(&db, &newest, now + Duration::seconds(2))
            .await
            .unwrap()
            .len(),
        1
    );
    let stored = entities::reservation::Entity::find_by_id((ACCOUNT, 1))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.raw_payload["guestName"], "Newest");
}

async fn invalid_rows_are_skipped_not_fatal(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let mut no_listing = reservation(2, "2025-06-15 12:00:00", "x");
    no_listing.as_object_mut().unwrap().remove("listingMapId");
    let mut no_id = reservation(3, "2025-06-15 12:00:00", "y");
    no_id.as_object_mut().unwrap().remove("id");
    no_id
        .as_object_mut()
        .unwrap()
        .remove("hostawayReservationId");
    let good = reservation(4, "2025-06-15 12:00:00", "z");
    let rows = reservation_rows(&[no_listing, no_id, good]);
    assert_eq!(rows.len(), 1, "rows without id or listingMapId are skipped");
    assert_eq!(
        upserts::upsert_reservations(&db, &rows, Utc::now())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(rows::listing_row(OWNER, json!({"name": "no id"}), &observed()).is_none());
    assert_eq!(count(&db, "reservations").await, 1);
}

async fn unchanged_batch_of_1000_reservations_keeps_updated_at(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let payloads: Vec<Value> = (1..=1000)
        .map(|i| reservation(1_000_000 + i, "2025-06-15 12:00:00", &format!("Guest {i}")))
        .collect();
    let rows = reservation_rows(&payloads);
    let t0 = Utc::now();
    assert_eq!(
        upserts::upsert_reservations(&db, &rows, t0)
            .await
            .unwrap()
            .len(),
        1000
    );
    let before = all_updated_at(&db).await;
    assert_eq!(before.len(), 1000);
    let written = upserts::upsert_reservations(&db, &rows, t0 + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(written.len(), 0, "an unchanged batch writes nothing");
    assert_eq!(
        all_updated_at(&db).await,
        before,
        "every updated_at is unchanged"
    );
}

async fn all_updated_at(db: &DatabaseConnection) -> Vec<(i64, DateTime<Utc>)> {
    let stmt = sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT id, updated_at FROM reservations ORDER BY id",
    );
    db.query_all_raw(stmt)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

async fn message_threads_merge_by_id_and_stay_sorted(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let page: Vec<Value> = fixture("conversation_messages_page.json")["result"]
        .as_array()
        .unwrap()
        .clone();
    let t0 = Utc::now();
    // The page lists newest first; the thread stores oldest first.
    let merges = rows::thread_merges(OWNER, page.clone(), &observed());
    assert_eq!(
        threads::merge_message_threads(&db, &merges, t0)
            .await
            .unwrap()
            .len(),
        1
    );
    let thread = entities::message_thread::Entity::find_by_id((ACCOUNT, 51234567))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = thread
        .raw_messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![402199702, 402199840, 402200917]);
    assert_eq!(thread.conversation_id, Some(8801201));
    assert_eq!(
        thread.last_message_at.unwrap().to_rfc3339(),
        "2025-06-14T10:02:40+00:00"
    );

    // Same messages again: nothing written.
    let merges = rows::thread_merges(OWNER, page.clone(), &observed());
    assert_eq!(
        threads::merge_message_threads(&db, &merges, t0 + Duration::seconds(5))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        updated_at_of(&db, "message_threads", "reservation_id", 51234567).await,
        thread.updated_at
    );

    // A new message lands in order; an existing one is not duplicated.
    let mut newer = page[0].clone();
    newer["id"] = json!(402200999);
    newer["date"] = json!("2025-06-14 11:00:00");
    let merges = rows::thread_merges(OWNER, vec![newer, page[1].clone()], &observed());
    assert_eq!(
        threads::merge_message_threads(&db, &merges, t0 + Duration::seconds(10))
            .await
            .unwrap()
            .len(),
        1
    );
    let thread = entities::message_thread::Entity::find_by_id((ACCOUNT, 51234567))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = thread
        .raw_messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![402199702, 402199840, 402200917, 402200999]);
}

async fn account_delete_cascades_to_mirrored_data(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    add_account(&db, 999).await;
    let now = Utc::now();
    let listings: Vec<_> = fixture("listings_page.json")["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| rows::listing_row(OWNER, l.clone(), &observed()))
        .collect();
    upserts::upsert_listings(&db, &listings, now).await.unwrap();
    upserts::upsert_reservations(
        &db,
        &reservation_rows(&[reservation(7, "2025-06-15 12:00:00", "a")]),
        now,
    )
    .await
    .unwrap();
    let merges = rows::thread_merges(
        OWNER,
        fixture("conversation_messages_page.json")["result"]
            .as_array()
            .unwrap()
            .clone(),
        &observed(),
    );
    threads::merge_message_threads(&db, &merges, now)
        .await
        .unwrap();
    let other = Owner {
        account_id: 999,
        customer_id: None,
    };
    upserts::upsert_reservations(
        &db,
        &[rows::reservation_row(
            other,
            reservation(8, "2025-06-15 12:00:00", "b"),
            &observed(),
        )
        .unwrap()],
        now,
    )
    .await
    .unwrap();

    assert!(accounts::hard_delete(&db, ACCOUNT).await.unwrap());
    assert_eq!(count(&db, "listings").await, 0);
    assert_eq!(count(&db, "message_threads").await, 0);
    assert_eq!(
        count(&db, "reservations").await,
        1,
        "the other account keeps its data"
    );
    assert_eq!(
        entities::account::Entity::find().count(&db).await.unwrap(),
        1
    );
}

async fn missing_listings_are_soft_deleted_and_come_back(backend: Backend) {
    let (_t, db) = db_with_account(backend).await;
    let now = Utc::now();
    let listings: Vec<_> = fixture("listings_page.json")["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| rows::listing_row(OWNER, l.clone(), &observed()))
        .collect();
    upserts::upsert_listings(&db, &listings, now).await.unwrap();
    let fetched = Observed {
        source: Source::Delete,
        ..observed()
    };
    let deleted = upserts::delete_missing_listings(
        &db,
        ACCOUNT,
        &[310501, 310502],
        fetched.version(None),
        now,
    )
    .await
    .unwrap();
    assert_eq!(deleted, vec![(ACCOUNT, 310503)]);
    let gone = entities::listing::Entity::find_by_id((ACCOUNT, 310503))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(gone.deleted_at.is_some());
    // It reappears at Hostaway (a later fetch): the upsert clears deleted_at.
    let again: Vec<_> = fixture("listings_page.json")["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| rows::listing_row(OWNER, l.clone(), &observed()))
        .collect();
    assert_eq!(
        upserts::upsert_listings(&db, &again[2..], now)
            .await
            .unwrap()
            .len(),
        1
    );
    let back = entities::listing::Entity::find_by_id((ACCOUNT, 310503))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert!(back.deleted_at.is_none());
}

crate::pg_test! {
    /// Every pooled PostgreSQL connection has TCP_NODELAY (store::nodelay, until
    /// sqlx sets it itself): four connections held at once, each asked for its
    /// own ends, each socket checked.
    async fn every_postgres_pool_connection_has_nodelay() {
        let test_db = TestDb::new(Backend::Postgres);
        let settings = test_db.settings(&[("database.max_connections", "4")]);
        let db = sync_hostaway::store::connect(&settings.database)
            .await
            .expect("connect");
        let ends = |db: DatabaseConnection| async move {
            let stmt = sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT host(inet_client_addr()), inet_client_port(), host(inet_server_addr()), \
                 inet_server_port(), pg_sleep(0.3)::text",
            );
            let row = db.query_one_raw(stmt).await.expect("query").expect("row");
            let at =
                |ip: String, port: i32| std::net::SocketAddr::new(ip.parse().unwrap(), port as u16);
            (
                at(
                    row.try_get_by_index(0).unwrap(),
                    row.try_get_by_index(1).unwrap(),
                ),
                at(
                    row.try_get_by_index(2).unwrap(),
                    row.try_get_by_index(3).unwrap(),
                ),
            )
        };
        let pairs = futures::future::join_all((0..4).map(|_| ends(db.clone()))).await;
        let locals: std::collections::HashSet<_> = pairs.iter().map(|(local, _)| *local).collect();
        assert_eq!(locals.len(), 4, "four distinct connections: {pairs:?}");
        for (local, peer) in pairs {
            assert_eq!(
                sync_hostaway::store::nodelay::is_set(local, peer),
                Some(true),
                "socket {local} -> {peer}"
            );
        }
        // A pool opened without the shim: sqlx leaves Nagle on. When this fails,
        // sqlx sets the option itself and store::nodelay can go.
        let plain = sea_orm::Database::connect(test_db.url.as_str())
            .await
            .expect("plain connect");
        let (local, peer) = ends(plain).await;
        assert_eq!(
            sync_hostaway::store::nodelay::is_set(local, peer),
            Some(false),
            "a plain sqlx connection {local} -> {peer}"
        );
    }
}

crate::pg_test! {
    /// Service connections plan once (generic plans) and never JIT-compile:
    /// a generic plan's estimate for a 500-id batch lookup passes
    /// `jit_above_cost` on a default server, and compiling it cost ~30 ms
    /// per execution of a 0.2 ms index scan.
    async fn postgres_connections_use_generic_plans_without_jit() {
        let test_db = TestDb::new(Backend::Postgres);
        let settings = test_db.settings(&[]);
        let db = sync_hostaway::store::connect(&settings.database)
            .await
            .expect("connect");
        let stmt = sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('jit'), current_setting('plan_cache_mode')",
        );
        let row = db.query_one_raw(stmt).await.expect("query").expect("row");
        let jit: String = row.try_get_by_index(0).unwrap();
        let plans: String = row.try_get_by_index(1).unwrap();
        assert_eq!((jit.as_str(), plans.as_str()), ("off", "force_generic_plan"));
    }
}

crate::pg_test! {
    /// The committing actors' sessions: the inbox's commits wait for their
    /// WAL flush (the 200 depends on it), the writers' do not (the mirror
    /// is derived from the inbox); each is one connection of its own.
    async fn committers_have_their_own_sessions_and_only_the_inbox_waits_for_the_flush() {
        let test_db = TestDb::new(Backend::Postgres);
        let db = test_db.connect().await;
        let reservation_writers = sync_hostaway::store::reservation_writers(false);
        let committers = sync_hostaway::store::Committers::open(
            &test_db.settings(&[]).database,
            &db,
            None,
            reservation_writers,
        )
        .await
        .expect("committers");
        assert_eq!(committers.reservations.len(), reservation_writers);
        let session = |conn: DatabaseConnection| async move {
            let row = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT current_setting('synchronous_commit'), pg_backend_pid()",
                ))
                .await
                .expect("query")
                .expect("row");
            let commit: String = row.try_get_by_index(0).unwrap();
            let pid: i32 = row.try_get_by_index(1).unwrap();
            (commit, pid)
        };
        let inbox = committers.inbox();
        let (inbox, inbox_pid) = session(inbox.get().await.expect("inbox").clone()).await;
        assert_eq!(inbox, "on");
        let mut pids = vec![inbox_pid];
        let writers = [&committers.listings, &committers.threads]
            .into_iter()
            .chain(committers.reservations.iter());
        for writer in writers {
            let (commit, pid) = session(writer.clone()).await;
            assert_eq!(commit, "off");
            // The same session every time.
            assert_eq!(session(writer.clone()).await.1, pid);
            pids.push(pid);
        }
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(
            pids.len(),
            3 + reservation_writers,
            "every committer a session of its own"
        );
        let (shared, _) = session(db.clone()).await;
        assert_eq!(shared, "on");
    }
}

crate::pg_test! {
    /// A server on this host is reached without TLS unless the URL asks
    /// for it (it protects nothing there and cost both ends ~12 % of their
    /// CPU under load); a URL's own `sslmode` is obeyed.
    async fn loopback_connections_skip_tls_unless_the_url_asks() {
        let test_db = TestDb::new(Backend::Postgres);
        let uses_tls = |url: String| {
            let test_db = &test_db;
            async move {
                let mut settings = test_db.settings(&[]);
                settings.database.url = sync_hostaway::config::DatabaseUrl::new(url).unwrap();
                let db = sync_hostaway::store::connect(&settings.database)
                    .await
                    .expect("connect");
                let row = db
                    .query_one_raw(sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        "SELECT ssl, current_setting('ssl') = 'on' FROM pg_stat_ssl \
                         WHERE pid = pg_backend_pid()",
                    ))
                    .await
                    .expect("query")
                    .expect("row");
                let tls: bool = row.try_get_by_index(0).unwrap();
                let offered: bool = row.try_get_by_index(1).unwrap();
                (tls, offered)
            }
        };
        let url = test_db.settings(&[]).database.url.expose().to_string();
        let (tls, offered) = uses_tls(url.clone()).await;
        assert!(!tls, "{url} is on this host: plain");
        if offered {
            let separator = if url.contains('?') { '&' } else { '?' };
            let (tls, _) = uses_tls(format!("{url}{separator}sslmode=require")).await;
            assert!(tls, "sslmode=require is obeyed");
        }
    }
}

crate::pg_test! {
    /// A statement's generic plan is made on its first use, here while the
    /// inbox is empty; once the inbox holds thousands of rows the same
    /// cached plan must still find a row by its key through an index, not
    /// read the whole table (settling one row once read ~1,300 pages).
    async fn a_plan_made_on_an_empty_table_still_uses_the_index_when_it_grows() {
        let test_db = TestDb::new(Backend::Postgres);
        let _migrated = test_db.connect().await;
        let settings = test_db.settings(&[("database.max_connections", "1")]);
        let db = sync_hostaway::store::connect(&settings.database)
            .await
            .expect("connect");
        let run = |sql: &str| {
            sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql.to_string())
        };
        sync_hostaway::store::inbox::mark_processed(&db, &[1], Utc::now())
            .await
            .expect("first use plans it on the empty table");
        db.execute_raw(run(
            "INSERT INTO webhook_events (account_id, event_type, dedupe_key, entity_key, payload, \
             status, attempts, received_at) SELECT 1, 'reservation.updated', g::text, \
             'reservation:' || g, '{}', 'pending', 0, now() FROM generate_series(1, 20000) g",
        ))
        .await
        .expect("rows");
        // The pool holds one connection: the statement sqlx prepared on it.
        let name: String = db
            .query_one_raw(run(
                "SELECT name FROM pg_prepared_statements \
                 WHERE statement LIKE 'UPDATE webhook_events SET status = ''processed''%'",
            ))
            .await
            .expect("query")
            .expect("the statement is prepared on this connection")
            .try_get_by_index(0)
            .unwrap();
        let plan: Vec<String> = db
            .query_all_raw(run(&format!(
                "EXPLAIN EXECUTE {name}(now(), ARRAY[5]::bigint[])"
            )))
            .await
            .expect("explain")
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("webhook_events_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
