//! The Hostaway client against the simulator on real loopback HTTP: tokens,
//! pagination, retries, rate limits, tolerant decoding, webhook CRUD, and the
//! simulator's own delivery rules. Tests of a documented fact are named by
//! its section of API.md (`s1_3_...` is §1.3); `conformance.rs` has the rest.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hostaway_sim::{
    DatasetSize, Faults, SimAccount, SimConfig, SimLimit, SimRateLimits, Simulator,
};
use secrecy::SecretString;
use serde_json::json;
use sync_hostaway::hostaway::types::WebhookSpec;
use sync_hostaway::hostaway::{Credentials, HostawayClient, HostawayError, endpoints};
use sync_hostaway::metrics::Metrics;

use crate::helpers::{client_settings, sim_config, start_sim};

const ACCOUNT: i64 = 1001;

fn client(sim: &Simulator, overrides: &[(&str, &str)]) -> (HostawayClient, Arc<Metrics>) {
    let settings = client_settings(sim, overrides);
    let metrics = Arc::new(Metrics::new());
    let client = HostawayClient::new(&settings.hostaway, metrics.clone(), None).expect("client");
    (client, metrics)
}

/// A simulator for account 1001 with a dataset of this size.
async fn sim(
    listings: usize,
    reservations: usize,
    conversations: usize,
    messages: usize,
) -> Simulator {
    start_sim(sim_config(DatasetSize {
        listings,
        reservations,
        conversations,
        messages_per_conversation: messages,
    }))
    .await
}

fn creds(secret: &str) -> Credentials {
    Credentials {
        account_id: ACCOUNT,
        client_secret: SecretString::from(secret.to_string()),
    }
}

fn ids(items: &[serde_json::Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["id"].as_i64().expect("numeric id"))
        .collect()
}

#[actix_web::test]
async fn s1_2_a_token_is_fetched_once_and_reused() {
    let sim = sim(3, 3, 3, 1).await;
    let (client, metrics) = client(&sim, &[]);
    let account = client.account(creds("secret"));
    account.list_listings().await.unwrap();
    account.list_listings().await.unwrap();
    account.get_listing(ACCOUNT * 10_000 + 1).await.unwrap();
    let stats = sim.state().stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.requests.get(endpoints::ACCESS_TOKENS), Some(&1));
    assert_eq!(metrics.hostaway_token_refreshes.get(), 1);
}

#[actix_web::test]
async fn s1_3_refresh_on_403_is_single_flight_under_16_concurrent_requests() {
    let sim = sim(20, 3, 3, 1).await;
    let (client, _) = client(&sim, &[]);
    let account = client.account(creds("secret"));
    account.ensure_token().await.unwrap();
    sim.state().expire_tokens();
    let calls = (1..=16).map(|i| {
        let account = account.clone();
        async move { account.get_listing(ACCOUNT * 10_000 + i).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        sim.state().stats().tokens_issued,
        2,
        "exactly one new token for 16 callers"
    );
}

#[actix_web::test]
async fn s1_1_a_bad_secret_is_a_typed_auth_error() {
    let sim = sim(1, 1, 1, 1).await;
    let (client, _) = client(&sim, &[]);
    let err = client
        .account(creds("wrong"))
        .list_listings()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HostawayError::AuthFailed {
                account_id: ACCOUNT,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the secret never appears in errors"
    );
    assert_eq!(
        sim.state().stats().requests.get(endpoints::ACCESS_TOKENS),
        Some(&1),
        "4xx is not retried"
    );
}

#[actix_web::test]
async fn s2_5_offset_pagination_returns_every_item_exactly_once() {
    let sim = sim(250, 230, 230, 1).await;
    let (client, _) = client(
        &sim,
        &[("hostaway.page_size", "100"), ("hostaway.concurrency", "3")],
    );
    let account = client.account(creds("secret"));
    let listings = ids(&account.list_listings().await.unwrap());
    assert_eq!(listings.len(), 250);
    assert_eq!(listings.iter().collect::<HashSet<_>>().len(), 250);
    let conversations = account.list_conversations().await.unwrap();
    assert_eq!(conversations.len(), 230);
    assert_eq!(
        ids(&conversations).iter().collect::<HashSet<_>>().len(),
        230
    );
    assert!(
        conversations.iter().all(|c| c["conversationMessages"]
            .as_array()
            .is_some_and(|m| m.len() == 1)),
        "includeResources=1 brings the latest message"
    );
    let stats = sim.state().stats();
    assert_eq!(stats.requests.get(endpoints::LISTINGS), Some(&3));

    // A server that clamps `limit` still yields everything once.
    sim.state().set_max_limit(40);
    let listings = ids(&account.list_listings().await.unwrap());
    assert_eq!(listings.iter().collect::<HashSet<_>>().len(), 250);
}

#[actix_web::test]
async fn s4_2_cursor_pagination_returns_every_reservation_exactly_once() {
    let sim = sim(5, 801, 1, 1).await;
    let (client, _) = client(&sim, &[("hostaway.page_size", "100")]);
    let reservations = client
        .account(creds("secret"))
        .list_reservations(None)
        .await
        .unwrap();
    let all = ids(&reservations);
    assert_eq!(all.len(), 801);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 801);
    let key = |r: &serde_json::Value| {
        (
            r["updatedOn"].as_str().unwrap_or_default().to_string(),
            r["id"].as_i64(),
        )
    };
    assert!(
        reservations.windows(2).all(|w| key(&w[0]) > key(&w[1])),
        "pages come in the documented default order, updatedOn DESC, id DESC"
    );
    assert_eq!(
        sim.state().stats().requests.get(endpoints::RESERVATIONS),
        Some(&9),
        "8 full pages and one short page; once `count` is reached no empty page is needed"
    );
}

#[actix_web::test]
async fn s2_3_server_errors_are_retried_then_surfaced() {
    let sim = sim(2, 1, 1, 1).await;
    let (client, metrics) = client(&sim, &[("hostaway.max_attempts", "4")]);
    let account = client.account(creds("secret"));
    account.ensure_token().await.unwrap();

    sim.state().set_faults(Faults {
        error_burst: 2,
        ..Faults::default()
    });
    assert_eq!(
        account.list_listings().await.unwrap().len(),
        2,
        "two 503s, then success"
    );
    assert_eq!(
        metrics
            .hostaway_retries
            .with_label_values(&["server_error"])
            .get(),
        2
    );

    sim.state().set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    sim.state().reset_stats();
    let err = account.list_listings().await.unwrap_err();
    assert!(
        matches!(
            err,
            HostawayError::Api {
                status: 500..=599,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        sim.state().stats().requests.get(endpoints::LISTINGS),
        Some(&4),
        "bounded attempts"
    );
}

#[actix_web::test]
async fn timeouts_are_retried_then_surfaced() {
    let sim = sim(2, 1, 1, 1).await;
    let (client, metrics) = client(
        &sim,
        &[
            ("hostaway.request_timeout_secs", "0.3"),
            ("hostaway.max_attempts", "3"),
        ],
    );
    let account = client.account(creds("secret"));
    account.ensure_token().await.unwrap();
    sim.state().set_faults(Faults {
        timeout_rate: 1.0,
        hang_ms: 3_000,
        ..Faults::default()
    });
    let err = account.list_listings().await.unwrap_err();
    assert!(
        matches!(err, HostawayError::Timeout { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        metrics
            .hostaway_retries
            .with_label_values(&["timeout"])
            .get(),
        2
    );
    sim.state().set_faults(Faults::default());
    assert_eq!(account.list_listings().await.unwrap().len(), 2);
}

#[actix_web::test]
async fn s3_a_429_waits_at_least_one_full_window() {
    let sim = sim(2, 1, 1, 1).await;
    let (client, metrics) = client(
        &sim,
        &[
            ("hostaway.rate_limit.enabled", "true"),
            ("hostaway.rate_limit.per_ip.per_seconds", "0.5"),
            ("hostaway.rate_limit.per_account.per_seconds", "0.5"),
            ("hostaway.rate_limit.safety_margin_ms", "0"),
        ],
    );
    let account = client.account(creds("secret"));
    account.ensure_token().await.unwrap();
    sim.state().set_faults(Faults {
        burst_429: 1,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(account.list_listings().await.unwrap().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(metrics.hostaway_rate_limited.get(), 1);

    // Retry-After, when sent, is honoured too.
    sim.state().set_faults(Faults {
        burst_429: 1,
        retry_after_secs: Some(1),
        ..Faults::default()
    });
    let started = Instant::now();
    account.list_listings().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn s3_a_sync_sized_run_within_the_limits_sees_no_429() {
    let mut config = sim_config(DatasetSize {
        listings: 20,
        reservations: 300,
        conversations: 300,
        messages_per_conversation: 2,
    });
    // Hostaway's limits, with the window compressed from 10 s to 1 s.
    config.rate_limits = SimRateLimits {
        enabled: true,
        per_ip: SimLimit {
            requests: 15,
            per_seconds: 1.0,
        },
        per_account: SimLimit {
            requests: 20,
            per_seconds: 1.0,
        },
    };
    let sim = start_sim(config).await;
    let (client, _) = client(
        &sim,
        &[
            ("hostaway.rate_limit.enabled", "true"),
            ("hostaway.rate_limit.per_ip.per_seconds", "1"),
            ("hostaway.rate_limit.per_account.per_seconds", "1"),
            ("hostaway.rate_limit.safety_margin_ms", "50"),
            ("hostaway.concurrency", "8"),
        ],
    );
    let account = client.account(creds("secret"));
    let conversations = account.list_conversations().await.unwrap();
    assert_eq!(account.list_reservations(None).await.unwrap().len(), 300);
    let first_40: Vec<i64> = ids(&conversations).into_iter().take(40).collect();
    let pages =
        futures::future::join_all(first_40.iter().map(|id| account.list_messages(*id))).await;
    assert!(pages.iter().all(|p| p.as_ref().is_ok_and(|m| m.len() == 2)));
    let stats = sim.state().stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert!(stats.total >= 47, "a token, 3 + 3 pages, 40 message lists");
}

#[actix_web::test]
async fn s2_4_tolerant_decoding_of_string_ids_and_integer_booleans() {
    let sim = sim(2, 2, 2, 1).await;
    let (client, _) = client(&sim, &[]);
    let account = client.account(creds("secret"));
    let conversations = account.list_conversations().await.unwrap();
    let embedded = &conversations[0]["Reservation"];
    assert!(
        embedded["hostawayReservationId"].is_string(),
        "the simulator sends a string id here"
    );
    assert_eq!(
        sync_hostaway::hostaway::decode::id(&embedded["hostawayReservationId"]),
        embedded["id"].as_i64()
    );
    let created = account
        .create_webhook(&WebhookSpec {
            is_enabled: 1,
            url: "https://mirror.example.com/api/v1/hostaway/webhooks".into(),
            login: Some("l".into()),
            password: Some("p".into()),
            alerting_email_address: None,
        })
        .await
        .unwrap();
    assert_eq!(created.is_enabled, Some(true), "isEnabled: 1 reads as true");
}

#[actix_web::test]
async fn s5_1_webhook_crud_round_trip() {
    let sim = sim(1, 1, 1, 1).await;
    let (client, _) = client(&sim, &[]);
    let account = client.account(creds("secret"));
    let spec = WebhookSpec {
        is_enabled: 1,
        url: "https://mirror.example.com/api/v1/hostaway/webhooks".into(),
        login: Some("hook-login".into()),
        password: Some("hook-password".into()),
        alerting_email_address: None,
    };
    let created = account.create_webhook(&spec).await.unwrap();
    assert_eq!(created.password.as_deref(), Some("hook-password"));
    let listed = account.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].password.as_deref(),
        Some("****"),
        "lists mask the password"
    );
    assert_eq!(
        account
            .get_webhook(created.id)
            .await
            .unwrap()
            .url
            .as_deref(),
        Some(spec.url.as_str())
    );
    let disabled = account
        .update_webhook(
            created.id,
            &WebhookSpec {
                is_enabled: 0,
                ..spec.clone()
            },
        )
        .await
        .unwrap();
    assert!(!disabled.enabled());
    assert_eq!(sim.state().webhooks(ACCOUNT)[0]["isEnabled"], json!(0));
    account.delete_webhook(created.id).await.unwrap();
    assert!(account.list_webhooks().await.unwrap().is_empty());
    let err = account.get_webhook(created.id).await.unwrap_err();
    assert!(
        matches!(err, HostawayError::Api { status: 404, .. }),
        "404 is final: {err:?}"
    );
}

#[actix_web::test]
async fn s1_4_revoked_tokens_stop_working_and_a_new_one_is_fetched() {
    let sim = sim(1, 1, 1, 1).await;
    let (client, _) = client(&sim, &[]);
    let account = client.account(creds("secret"));
    account.ensure_token().await.unwrap();
    account.revoke_token().await.unwrap();
    account.list_listings().await.unwrap();
    assert_eq!(sim.state().stats().tokens_issued, 2);
}

/// A webhook receiver that answers 503 `failures` times, then 200, and
/// records the Basic credentials it saw.
async fn flaky_receiver(
    failures: usize,
    final_status: u16,
) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, a) = (hits.clone(), auth.clone());
    let server = HttpServer::new(move || {
        let (h, a) = (h.clone(), a.clone());
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, _body: web::Bytes| {
                let (h, a) = (h.clone(), a.clone());
                async move {
                    let n = h.fetch_add(1, Ordering::SeqCst);
                    if let Some(v) = req.headers().get("authorization") {
                        a.lock().unwrap().push(v.to_str().unwrap_or("").to_string());
                    }
                    if n < failures {
                        HttpResponse::ServiceUnavailable().finish()
                    } else {
                        HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(final_status).unwrap(),
                        )
                        .finish()
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}/hook"), hits, auth)
}

#[actix_web::test]
async fn s5_3_simulator_delivers_with_basic_auth_and_retries_503() {
    let sim = sim(1, 1, 1, 1).await;
    let (url, hits, auth) = flaky_receiver(2, 200).await;
    let http = crate::helpers::http_client();
    let response: serde_json::Value = http
        .post(format!("{}/_sim/deliver", sim.root_url()))
        .json(&json!({"account_id": ACCOUNT, "event": "reservation.updated", "data": {"id": 1, "listingMapId": 2},
                      "url": url, "login": "hook", "password": "pw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let record = &response["deliveries"][0];
    assert_eq!(record["delivered"], true, "{response}");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hook:pw")
    );
    assert!(auth.lock().unwrap().iter().all(|a| *a == expected));

    // Any other 4xx is final.
    let (url, hits, _) = flaky_receiver(0, 401).await;
    let response: serde_json::Value = http
        .post(format!("{}/_sim/deliver", sim.root_url()))
        .json(&json!({"account_id": ACCOUNT, "event": "reservation.updated", "data": {"id": 1}, "url": url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["deliveries"][0]["delivered"], false);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "401 is not retried");
}

#[actix_web::test]
async fn s1_3_simulator_refuses_bad_tokens_with_403_and_counts_requests() {
    let sim = start_sim(SimConfig {
        accounts: vec![SimAccount {
            account_id: ACCOUNT,
            client_secret: "secret".into(),
        }],
        ..sim_config(DatasetSize {
            listings: 1,
            reservations: 1,
            conversations: 1,
            messages_per_conversation: 1,
        })
    })
    .await;
    let http = crate::helpers::http_client();
    let response = http
        .get(format!("{}/listings", sim.base_url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    assert_eq!(sim.state().stats().statuses.get("403"), Some(&1));
}

/// Hostaway unreachable: one message that names the endpoint, the URL and
/// the underlying cause, each once, also when wrapped by a failed sync.
#[actix_web::test]
async fn an_unreachable_hostaway_is_named_once_with_its_url_and_cause() {
    let settings = crate::helpers::test_settings(
        &[],
        &[
            ("hostaway.base_url", "http://127.0.0.1:1/v1"),
            ("hostaway.max_attempts", "1"),
        ],
    );
    let client = HostawayClient::new(&settings.hostaway, Arc::new(Metrics::new()), None).unwrap();
    let err = client
        .account(creds("secret"))
        .list_listings()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not reach Hostaway for POST /v1/accessTokens: Connection refused (os error 111) \
         (at http://127.0.0.1:1/v1/accessTokens)"
    );
    let wrapped = anyhow::Error::from(sync_hostaway::sync::SyncError::from(err.clone()))
        .context("sync failed");
    let said = sync_hostaway::errors::one_message(wrapped.chain());
    assert_eq!(
        said.matches("could not reach Hostaway").count(),
        1,
        "{said}"
    );
    assert!(said.ends_with(&err.to_string()), "{said}");
}
