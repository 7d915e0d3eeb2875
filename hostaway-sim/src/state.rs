//! The simulator's shared state: accounts and their data, tokens, webhook
//! registrations, rate limiter, faults, statistics and deliveries. Handlers
//! and in-process tests go through `SimState`; no lock is held across an
//! await.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use rand::rngs::StdRng;
use serde_json::{Value, json};

use actix_web::http::StatusCode;

use super::behaviour::{ActivityScope, Behaviour, PasswordMasking, RetryAfter, TokenError};
use super::config::{DatasetSize, SimAccount, SimConfig, SimRateLimits, validate_account_id};
use super::dataset::{AccountData, AccountStore, Stream, entity_rng};
use super::delivery::{
    DeliverRequest, Deliverer, DeliveryJob, DeliveryRecord, envelope, object_for_event,
};
use super::envelope::Fail;
use super::faults::{Decision, FaultInjector, Faults};
use super::limits::RateLimiter;
use super::mutation::{self, Change, Mutation, MutationClock};
use super::paging::Page;
use super::stats::SimStats;
use super::tokens::TokenStore;
use super::webhooks::{Webhook, WebhookPatch};

/// Locks a mutex, carrying on after a panic elsewhere: every update below
/// leaves its data consistent before it can panic, so the data stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Account {
    secret: String,
    store: AccountStore,
    /// Picks mutation targets; seeded from (seed, account) so runs repeat.
    rng: StdRng,
}

struct World {
    accounts: BTreeMap<i64, Account>,
    tokens: TokenStore,
    webhooks: BTreeMap<i64, Webhook>,
    next_webhook_id: i64,
    clock: MutationClock,
}

/// Shared by every worker of one simulator (behind an `Arc`).
pub struct SimState {
    config: SimConfig,
    /// Largest page `limit` honoured; starts at `config.max_limit`.
    max_limit: AtomicU32,
    /// Starts at `config.behaviour`.
    behaviour: Mutex<Behaviour>,
    /// The moment generated data is "as of": midnight UTC of the start day.
    anchor: DateTime<Utc>,
    world: Mutex<World>,
    stats: Mutex<SimStats>,
    limiter: Mutex<RateLimiter>,
    faults: Mutex<FaultInjector>,
    deliverer: Deliverer,
}

/// Puts back the `latestActivityOn` the changed reservation had in `before`.
fn keep_latest_activity(store: &mut AccountStore, before: &[Value], change: &mut Change) {
    let id = change.object_id;
    let previous = before
        .iter()
        .find(|r| r.get("id").and_then(Value::as_i64) == Some(id))
        .and_then(|r| r.get("latestActivityOn").cloned());
    if let (Some(previous), Some(reservation)) = (previous, store.reservation_mut(id)) {
        reservation["latestActivityOn"] = previous.clone();
        change.data["latestActivityOn"] = previous;
    }
}

/// First id handed to a webhook registration (ids are global, like Hostaway's).
const FIRST_WEBHOOK_ID: i64 = 5001;

impl SimState {
    /// Generates every configured account. `config` must be valid
    /// (`SimConfig::validate`); the TLS provider must be installed.
    pub(crate) fn new(config: SimConfig) -> std::io::Result<Self> {
        let deliverer = Deliverer::new(
            Duration::from_millis(config.delivery_retry_base_ms),
            Duration::from_millis(config.delivery_timeout_ms),
        )?;
        let anchor = Utc::now().date_naive().and_time(NaiveTime::MIN).and_utc();
        let accounts = config
            .accounts
            .iter()
            .map(|account| {
                let entry = Self::generate(&config, anchor, account, config.dataset);
                (account.account_id, entry)
            })
            .collect();
        let world = World {
            accounts,
            tokens: TokenStore::new(
                Duration::from_millis(config.token_ready_delay_ms),
                config.token_ttl_secs,
            ),
            webhooks: BTreeMap::new(),
            next_webhook_id: FIRST_WEBHOOK_ID,
            clock: MutationClock::default(),
        };
        Ok(SimState {
            limiter: Mutex::new(RateLimiter::new(config.rate_limits)),
            faults: Mutex::new(FaultInjector::new(config.seed)),
            max_limit: AtomicU32::new(config.max_limit.max(1)),
            behaviour: Mutex::new(config.behaviour),
            anchor,
            world: Mutex::new(world),
            stats: Mutex::new(SimStats::default()),
            deliverer,
            config,
        })
    }

    fn generate(
        config: &SimConfig,
        anchor: DateTime<Utc>,
        account: &SimAccount,
        size: DatasetSize,
    ) -> Account {
        let id = account.account_id;
        Account {
            secret: account.client_secret.clone(),
            store: AccountStore::generate(id, config.seed, size, anchor),
            rng: entity_rng(config.seed, id, Stream::Mutations, 0),
        }
    }

    /// The configuration the simulator was started with (rate limits and
    /// the page limit may have changed since: see `rate_limits`, `max_limit`).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    // -- Inspection ------------------------------------------------------

    pub fn account_ids(&self) -> Vec<i64> {
        lock(&self.world).accounts.keys().copied().collect()
    }

    pub fn has_account(&self, account_id: i64) -> bool {
        lock(&self.world).accounts.contains_key(&account_id)
    }

    pub fn stats(&self) -> SimStats {
        lock(&self.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.stats) = SimStats::default();
    }

    /// The account's data as the API serves it now (the mirror's target).
    pub fn dataset(&self, account_id: i64) -> Option<AccountData> {
        let behaviour = self.behaviour();
        let mut data = lock(&self.world)
            .accounts
            .get(&account_id)
            .map(|account| account.store.snapshot())?;
        for reservation in &mut data.reservations {
            *reservation = behaviour.render_reservation(reservation);
        }
        Some(data)
    }

    /// The account's webhook registrations with their real passwords.
    pub fn webhooks(&self, account_id: i64) -> Vec<Value> {
        lock(&self.world)
            .webhooks
            .values()
            .filter(|w| w.account_id == account_id)
            .map(|w| w.to_json(true))
            .collect()
    }

    /// Every delivery completed so far.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.deliverer.records()
    }

    // -- Control ----------------------------------------------------------

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.faults).set(faults);
    }

    /// Current faults, with burst counters as far as they have counted down.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).faults()
    }

    /// Replaces the limits; requests already counted stay in their windows.
    pub fn set_rate_limits(&self, limits: SimRateLimits) {
        lock(&self.limiter).set_config(limits);
    }

    pub fn rate_limits(&self) -> SimRateLimits {
        lock(&self.limiter).config()
    }

    /// The switches for what the documentation leaves open, as they are now.
    pub fn behaviour(&self) -> Behaviour {
        *lock(&self.behaviour)
    }

    /// Changes those switches from the next request on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.behaviour) = behaviour;
    }

    /// Largest page `limit` honoured now.
    pub fn max_limit(&self) -> u32 {
        self.max_limit.load(Ordering::Relaxed)
    }

    /// Changes the largest page `limit` honoured (at least 1); larger
    /// requests are clamped from the next request on.
    pub fn set_max_limit(&self, max_limit: u32) {
        self.max_limit.store(max_limit.max(1), Ordering::Relaxed);
    }

    /// Every token issued so far stops working (403); returns how many.
    pub fn expire_tokens(&self) -> usize {
        lock(&self.world).tokens.expire_all()
    }

    /// Adds an account (or replaces one with the same id, regenerating its
    /// data; its tokens and webhooks stay). Sizes beyond the id scheme are
    /// clamped; an id outside `1..=SimConfig::MAX_ACCOUNT_ID` is ignored
    /// with a warning (the control API rejects both with 400 first).
    pub fn add_account(&self, account: SimAccount, size: DatasetSize) {
        self.add_account_with_ids(account, size, None);
    }

    /// Like `add_account`; with `ids_like`, the account's objects carry the
    /// ids another account's objects have (their content is its own): two
    /// tenants whose ids collide. Mutations of it still draw ids from
    /// `ids_like`'s range.
    pub fn add_account_with_ids(
        &self,
        account: SimAccount,
        size: DatasetSize,
        ids_like: Option<i64>,
    ) {
        if let Err(err) = validate_account_id(account.account_id) {
            tracing::warn!(error = %err, "account not added");
            return;
        }
        // Generated outside the lock: large accounts take a moment.
        let mut entry = Self::generate(&self.config, self.anchor, &account, size.normalized());
        if let Some(other) = ids_like.filter(|other| *other != account.account_id) {
            let seed = self.config.seed ^ account.account_id as u64;
            let mut store = AccountStore::generate(other, seed, size.normalized(), self.anchor);
            store.rebrand(account.account_id);
            entry.store = store;
        }
        lock(&self.world).accounts.insert(account.account_id, entry);
        tracing::info!(account_id = account.account_id, ?ids_like, "account added");
    }

    /// Applies `count` changes to the account and returns them in order.
    /// Targets are picked by the account's seeded generator, each a different
    /// reservation (or, for messages, conversation) while one is left. Fewer
    /// changes come back when no target is left (e.g. nothing to cancel);
    /// none for an unknown account.
    pub fn mutate(&self, account_id: i64, mutation: Mutation, count: usize) -> Vec<Change> {
        let mut world = lock(&self.world);
        let World {
            accounts, clock, ..
        } = &mut *world;
        let Some(account) = accounts.get_mut(&account_id) else {
            return Vec::new();
        };
        let mut changes = Vec::with_capacity(count);
        let mut changed = HashSet::new();
        let keep_activity = self.behaviour().activity_scope == ActivityScope::BookingsOnly
            && matches!(
                mutation,
                Mutation::UpdateReservation | Mutation::CancelReservation
            );
        for _ in 0..count {
            let at = clock.tick(Utc::now());
            let before = keep_activity.then(|| account.store.reservations.clone());
            let applied =
                mutation::apply(&mut account.store, &mut account.rng, mutation, at, &changed);
            let Some(mut change) = applied else {
                break;
            };
            if let Some(before) = before {
                // This server does not count the change as activity.
                keep_latest_activity(&mut account.store, &before, &mut change);
            }
            changed.insert(mutation::target_of(&change));
            changes.push(change);
        }
        changes
    }

    /// Delivers each change, in order, to every enabled registration of the
    /// account. With `asynchronous` it returns at once (see `deliveries`).
    pub async fn deliver_changes(
        &self,
        account_id: i64,
        changes: &[Change],
        asynchronous: bool,
    ) -> Vec<DeliveryRecord> {
        let behaviour = self.behaviour();
        let jobs = {
            let world = lock(&self.world);
            let targets: Vec<&Webhook> = world
                .webhooks
                .values()
                .filter(|w| w.account_id == account_id && w.is_enabled)
                .collect();
            changes
                .iter()
                .flat_map(|change| {
                    // A `Change` read back from JSON has no `object`; derive it.
                    let object = if change.object.is_empty() {
                        object_for_event(&change.event)
                    } else {
                        change.object.clone()
                    };
                    let data = if object == "reservation" {
                        behaviour.render_reservation(&change.data)
                    } else {
                        change.data.clone()
                    };
                    let body = envelope(
                        behaviour.webhook_envelope,
                        &object,
                        &change.event,
                        account_id,
                        data,
                    );
                    targets.iter().map(move |webhook| DeliveryJob {
                        url: webhook.url.clone(),
                        event: change.event.clone(),
                        account_id,
                        body: body.clone(),
                        credentials: webhook.credentials(),
                    })
                })
                .collect::<Vec<_>>()
        };
        self.deliverer.run(jobs, asynchronous).await
    }

    /// Sends one event as `POST /_sim/deliver` describes: to `url` (with the
    /// credentials of a registration of the account with that URL, if any)
    /// or to every enabled registration; `login`/`password` override the
    /// registration's credentials.
    pub async fn deliver(&self, request: DeliverRequest) -> Vec<DeliveryRecord> {
        let body = request.body.clone().unwrap_or_else(|| {
            let object = request
                .object
                .clone()
                .unwrap_or_else(|| object_for_event(&request.event));
            let data = request.data.clone().unwrap_or_else(|| json!({}));
            envelope(
                self.behaviour().webhook_envelope,
                &object,
                &request.event,
                request.account_id,
                data,
            )
        });
        let targets: Vec<(String, Option<(String, String)>)> = {
            let world = lock(&self.world);
            let registrations = world
                .webhooks
                .values()
                .filter(|w| w.account_id == request.account_id);
            match &request.url {
                Some(url) => {
                    let registered = registrations
                        .filter(|w| &w.url == url)
                        .find_map(Webhook::credentials);
                    vec![(url.clone(), registered)]
                }
                None => registrations
                    .filter(|w| w.is_enabled)
                    .map(|w| (w.url.clone(), w.credentials()))
                    .collect(),
            }
        };
        let jobs = targets
            .into_iter()
            .map(|(url, registered)| {
                let credentials = match (&request.login, &request.password, registered) {
                    (None, None, registered) => registered,
                    (login, password, registered) => {
                        let (registered_login, registered_password) = registered.unzip();
                        Some((
                            login.clone().or(registered_login).unwrap_or_default(),
                            password.clone().or(registered_password).unwrap_or_default(),
                        ))
                    }
                };
                DeliveryJob {
                    url,
                    event: request.event.clone(),
                    account_id: request.account_id,
                    body: body.clone(),
                    credentials,
                }
            })
            .collect();
        self.deliverer.run(jobs, request.asynchronous).await
    }

    // -- Serving /v1 (crate-internal) ---------------------------------------

    pub(crate) fn record_request(&self, route: &str) {
        lock(&self.stats).record_request(route);
    }

    pub(crate) fn record_response(&self, route: &str, status: u16) {
        lock(&self.stats).record_response(route, status);
    }

    /// A list page as the (possibly lying) server serves it to `path`.
    pub(crate) fn distort<T>(&self, path: &str, page: Page<T>) -> Page<T> {
        lock(&self.faults).distort(path, page)
    }

    pub(crate) fn decide_faults(&self, path: &str) -> Decision {
        lock(&self.faults).decide(path)
    }

    /// Rate-limit admission for a request from `ip` on behalf of `account`.
    pub(crate) fn admit(&self, ip: IpAddr, account: Option<i64>) -> Result<(), Fail> {
        let now = Instant::now();
        let admitted = lock(&self.limiter).admit(ip, account, now);
        admitted.map_err(|limited| {
            let window = match self.behaviour().retry_after {
                RetryAfter::None => None,
                RetryAfter::Window => limited
                    .retry_at
                    .map(|at| at.saturating_duration_since(now).as_secs_f64().ceil() as u64),
            };
            Fail::too_many_requests(self.retry_after_secs().or(window))
        })
    }

    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        lock(&self.faults).retry_after_secs()
    }

    /// A token for the client-credentials grant, and its `expires_in`.
    pub(crate) fn issue_token(&self, account_id: i64, secret: &str) -> Result<(String, u64), Fail> {
        let mut world = lock(&self.world);
        let known = world
            .accounts
            .get(&account_id)
            .is_some_and(|account| account.secret == secret);
        if !known {
            return Err(Fail::invalid_client());
        }
        let token = world.tokens.issue(account_id, Instant::now(), Utc::now());
        let ttl = world.tokens.ttl_secs();
        drop(world);
        lock(&self.stats).tokens_issued += 1;
        Ok((token, ttl))
    }

    /// The account of a usable token.
    /// The answer to a missing, unknown, expired or revoked token.
    pub(crate) fn token_refused(&self) -> Fail {
        match self.behaviour().token_error {
            TokenError::Forbidden => Fail::unauthorized(),
            TokenError::Unauthorized => Fail::new(StatusCode::UNAUTHORIZED, "Unauthorized"),
        }
    }

    pub(crate) fn authenticate(&self, token: &str) -> Option<i64> {
        lock(&self.world).tokens.check(token, Instant::now())
    }

    pub(crate) fn revoke_token(&self, token: &str) -> bool {
        lock(&self.world).tokens.revoke(token)
    }

    /// Runs `read` on the account's store; `None` for an unknown account.
    pub(crate) fn read<R>(
        &self,
        account_id: i64,
        read: impl FnOnce(&AccountStore) -> R,
    ) -> Option<R> {
        lock(&self.world)
            .accounts
            .get(&account_id)
            .map(|account| read(&account.store))
    }

    /// Whether list, read and update answers show the real password.
    fn reveal_passwords(&self) -> bool {
        self.behaviour().password_masking == PasswordMasking::Plain
    }

    /// The account's registrations, passwords masked unless switched off.
    pub(crate) fn list_webhooks(&self, account_id: i64) -> Vec<Value> {
        let reveal = self.reveal_passwords();
        lock(&self.world)
            .webhooks
            .values()
            .filter(|w| w.account_id == account_id)
            .map(|w| w.to_json(reveal))
            .collect()
    }

    /// Registers a webhook; the answer shows the real password (like Hostaway).
    pub(crate) fn create_webhook(&self, account_id: i64, patch: WebhookPatch) -> Value {
        let mut world = lock(&self.world);
        let id = world.next_webhook_id;
        world.next_webhook_id += 1;
        let webhook = patch.create(id, account_id);
        let rendered = webhook.to_json(true);
        world.webhooks.insert(id, webhook);
        rendered
    }

    pub(crate) fn webhook(&self, account_id: i64, id: i64) -> Option<Value> {
        let reveal = self.reveal_passwords();
        lock(&self.world)
            .webhooks
            .get(&id)
            .filter(|w| w.account_id == account_id)
            .map(|w| w.to_json(reveal))
    }

    pub(crate) fn update_webhook(
        &self,
        account_id: i64,
        id: i64,
        patch: WebhookPatch,
    ) -> Option<Value> {
        let reveal = self.reveal_passwords();
        let mut world = lock(&self.world);
        let webhook = world
            .webhooks
            .get_mut(&id)
            .filter(|w| w.account_id == account_id)?;
        patch.apply(webhook);
        Some(webhook.to_json(reveal))
    }

    pub(crate) fn delete_webhook(&self, account_id: i64, id: i64) -> bool {
        let mut world = lock(&self.world);
        let owned = world
            .webhooks
            .get(&id)
            .is_some_and(|w| w.account_id == account_id);
        if owned {
            world.webhooks.remove(&id);
        }
        owned
    }

    /// `{"account_id","listings","reservations","conversations","messages"}`
    /// per account (counts only, never the secret).
    pub fn account_summaries(&self) -> Vec<Value> {
        lock(&self.world)
            .accounts
            .iter()
            .map(|(id, account)| {
                let store = &account.store;
                json!({
                    "account_id": id,
                    "listings": store.listings.len(),
                    "reservations": store.reservations.len(),
                    "conversations": store.conversations.len(),
                    "messages": store.messages.values().map(Vec::len).sum::<usize>(),
                })
            })
            .collect()
    }
}
