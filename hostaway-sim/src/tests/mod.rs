//! In-process end-to-end tests: a real simulator on a free port, driven with
//! reqwest like a client would, plus a small webhook receiver for deliveries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::*;

fn quiet_config() -> SimConfig {
    SimConfig {
        accounts: vec![
            SimAccount::new(1001, "secret"),
            SimAccount::new(1002, "other"),
        ],
        dataset: DatasetSize {
            listings: 7,
            reservations: 45,
            conversations: 12,
            messages_per_conversation: 3,
        },
        rate_limits: SimRateLimits::disabled(),
        token_ready_delay_ms: 0,
        delivery_retry_base_ms: 10,
        delivery_timeout_ms: 2_000,
        ..SimConfig::default()
    }
}

fn client() -> reqwest::Client {
    crate::install_tls_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn token(
    client: &reqwest::Client,
    sim: &Simulator,
    account: i64,
    secret: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/accessTokens", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &account.to_string()),
            ("client_secret", secret),
            ("scope", "general"),
        ])
        .send()
        .await
        .unwrap()
}

async fn bearer(client: &reqwest::Client, sim: &Simulator, account: i64, secret: &str) -> String {
    let response = token(client, sim, account, secret).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[actix_web::test]
async fn tokens_and_authorization() {
    let sim = Simulator::start(
        SimConfig {
            token_ready_delay_ms: 300,
            ..quiet_config()
        },
        0,
    )
    .await
    .unwrap();
    let client = client();

    let response = token(&client, &sim, 1001, "wrong").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "fail", "result": "Invalid client credentials"})
    );
    assert_eq!(token(&client, &sim, 9999, "secret").await.status(), 401);
    let missing = client
        .post(format!("{}/accessTokens", sim.base_url()))
        .form(&[("client_id", "1001"), ("client_secret", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);

    let response = token(&client, &sim, 1001, "secret").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 63_072_000);
    assert!(body.get("status").is_none());
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(token.split('.').count(), 3);

    // Not usable until the ready delay has passed.
    let listings = format!("{}/listings", sim.base_url());
    let (status, body) = get(&client, listings.clone(), &token).await;
    assert_eq!(
        (status, body),
        (403, json!({"status": "fail", "result": "Unauthorized"}))
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(&client, listings.clone(), &token).await.0, 200);

    // Missing and bogus tokens.
    let anonymous = client.get(listings.clone()).send().await.unwrap();
    assert_eq!(anonymous.status(), 403);
    assert_eq!(get(&client, listings.clone(), "bogus").await.0, 403);

    // A second token does not revoke the first; revoking one leaves the other.
    let second = bearer(&client, &sim, 1001, "secret").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let revoked = client
        .delete(format!("{}/accessTokens", sim.base_url()))
        .query(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        revoked.json::<Value>().await.unwrap(),
        json!({"status": "success", "result": []})
    );
    assert_eq!(get(&client, listings.clone(), &token).await.0, 403);
    assert_eq!(get(&client, listings.clone(), &second).await.0, 200);

    // Expiring every token.
    sim.state().expire_tokens();
    assert_eq!(get(&client, listings, &second).await.0, 403);

    let stats = sim.state().stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.requests_for("POST /v1/accessTokens"), 5);
    assert_eq!(stats.requests_for("DELETE /v1/accessTokens"), 1);
    assert_eq!(stats.by_endpoint_status["GET /v1/listings"]["403"], 5);
    sim.stop().await;
}

#[actix_web::test]
async fn paging_matches_the_dataset() {
    let sim = Simulator::start(
        SimConfig {
            max_limit: 20,
            ..quiet_config()
        },
        0,
    )
    .await
    .unwrap();
    let client = client();
    let token = bearer(&client, &sim, 1001, "secret").await;
    let truth = sim.state().dataset(1001).unwrap();
    let base = sim.base_url();

    // Listings by offset, limit clamped to max_limit.
    let (status, page) = get(&client, format!("{base}/listings?limit=500"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["count"], 7);
    assert_eq!(page["result"], json!(truth.listings));
    let (_, one) = get(
        &client,
        format!("{base}/listings/{}", truth.listings[2]["id"]),
        &token,
    )
    .await;
    assert_eq!(
        one,
        json!({"status": "success", "result": truth.listings[2]})
    );
    sim.state().set_max_limit(3);
    let (_, page) = get(
        &client,
        format!("{base}/listings?limit=50&offset=3"),
        &token,
    )
    .await;
    let numbers = (
        page["limit"].as_i64(),
        page["page"].as_i64(),
        page["totalPages"].as_i64(),
    );
    assert_eq!(numbers, (Some(3), Some(2), Some(3)));
    assert_eq!(page["result"], json!(truth.listings[3..6]));
    sim.state().set_max_limit(20);

    // Reservations with the afterId cursor as documented (§4.2): the first
    // page without it, then the id of the last item returned, until an
    // empty page; the default order is updatedOn DESC, id DESC.
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let after = cursor
            .map(|id| format!("&afterId={id}"))
            .unwrap_or_default();
        let (_, page) = get(
            &client,
            format!("{base}/reservations?limit=10{after}"),
            &token,
        )
        .await;
        assert_eq!(page["count"], 45);
        let items = page["result"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        cursor = items.last().unwrap()["id"].as_i64();
        seen.extend(items);
    }
    let key = |r: &Value| {
        (
            r["updatedOn"].as_str().unwrap().to_string(),
            r["id"].as_i64().unwrap(),
        )
    };
    let mut expected = truth.reservations.clone();
    expected.sort_by_key(|r| std::cmp::Reverse(key(r)));
    assert_eq!(seen, expected);
    let (_, unknown) = get(&client, format!("{base}/reservations?afterId=0"), &token).await;
    assert_eq!(
        unknown["result"],
        json!([]),
        "an unknown anchor gives an empty page"
    );
    assert_eq!(unknown["count"], 45);
    let (_, page) = get(
        &client,
        format!("{base}/reservations?limit=20&offset=40"),
        &token,
    )
    .await;
    assert_eq!(page["result"].as_array().unwrap().len(), 5);
    assert_eq!(
        (page["page"].as_i64(), page["totalPages"].as_i64()),
        (Some(3), Some(3))
    );
    let updated: Vec<&str> = page["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["updatedOn"].as_str().unwrap())
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] >= w[1]),
        "default order is updatedOn DESC"
    );
    let (status, body) = get(
        &client,
        format!("{base}/reservations?latestActivityStart=soon"),
        &token,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "fail");

    // Conversations with and without resources; messages newest first.
    let (_, page) = get(
        &client,
        format!("{base}/conversations?includeResources=1"),
        &token,
    )
    .await;
    assert_eq!(page["result"], json!(truth.conversations));
    let (_, bare) = get(&client, format!("{base}/conversations?limit=1"), &token).await;
    assert_eq!(bare["result"][0]["conversationMessages"], json!([]));
    assert!(bare["result"][0].get("Reservation").is_none());
    let conversation_id = truth.conversations[0]["id"].as_i64().unwrap();
    let (_, messages) = get(
        &client,
        format!("{base}/conversations/{conversation_id}/messages"),
        &token,
    )
    .await;
    let mut expected = truth.messages[&conversation_id].clone();
    expected.reverse();
    assert_eq!(messages["result"], json!(expected));

    // Other accounts' objects are invisible; unknown paths and ids are 404.
    let other = sim.state().dataset(1002).unwrap();
    let foreign = other.conversations[0]["id"].as_i64().unwrap();
    let (status, body) = get(
        &client,
        format!("{base}/conversations/{foreign}/messages"),
        &token,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (404, Some("fail")));
    assert_eq!(
        get(
            &client,
            format!("{base}/reservations/{}", other.reservations[0]["id"]),
            &token
        )
        .await
        .0,
        404
    );
    assert_eq!(get(&client, format!("{base}/nowhere"), &token).await.0, 404);
    assert_eq!(
        get(&client, format!("{base}/listings/abc"), &token).await.0,
        404
    );

    let stats = sim.state().stats();
    assert_eq!(stats.requests_for("GET /v1/reservations"), 9);
    assert_eq!(stats.requests_for("GET /v1/conversations/{id}/messages"), 2);
    assert_eq!(stats.requests_for("GET /v1/listings/{id}"), 2);
    assert_eq!(stats.requests_for("GET /v1/listings"), 2);
    assert_eq!(stats.requests_for("GET (unmatched)"), 1);
    sim.stop().await;
}

#[actix_web::test]
async fn rate_limits_and_faults() {
    let sim = Simulator::start(
        SimConfig {
            rate_limits: SimRateLimits {
                enabled: true,
                per_ip: SimLimit::new(5, 10.0),
                per_account: SimLimit::new(3, 10.0),
            },
            ..quiet_config()
        },
        0,
    )
    .await
    .unwrap();
    let client = client();
    let token = bearer(&client, &sim, 1001, "secret").await; // 1 per IP, 1 for account 1001
    let listings = format!("{}/listings?limit=1", sim.base_url());
    assert_eq!(get(&client, listings.clone(), &token).await.0, 200);
    assert_eq!(get(&client, listings.clone(), &token).await.0, 200);
    let response = client
        .get(listings.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        response.json::<Value>().await.unwrap()["message"],
        RATE_LIMIT_MESSAGE
    );
    // The account is full, the IP is not: account 1002 still gets in.
    let other = bearer(&client, &sim, 1002, "other").await;
    assert_eq!(get(&client, listings.clone(), &other).await.0, 200);
    // Now the IP is full (5 accepted) for everyone.
    assert_eq!(get(&client, listings.clone(), &other).await.0, 429);
    assert_eq!(sim.state().stats().rate_limited, 2);

    // Injected bursts with Retry-After, limited to matching paths.
    sim.state().set_rate_limits(SimRateLimits::disabled());
    sim.state().set_faults(Faults {
        burst_429: 1,
        error_burst: 1,
        retry_after_secs: Some(7),
        path_contains: Some("/listings".into()),
        ..Faults::default()
    });
    let response = client
        .get(listings.clone())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(
        get(
            &client,
            format!("{}/reservations?limit=1", sim.base_url()),
            &token
        )
        .await
        .0,
        200
    );
    let (status, body) = get(&client, listings.clone(), &token).await;
    assert_eq!((status, body["status"].as_str()), (503, Some("fail")));
    assert_eq!(get(&client, listings.clone(), &token).await.0, 200);

    sim.state().set_faults(Faults {
        timeout_rate: 1.0,
        hang_ms: 50,
        ..Faults::default()
    });
    assert_eq!(get(&client, listings.clone(), &token).await.0, 504);

    // The control API drives the same switches.
    let control = sim.root_url();
    let faults: Value = client
        .put(format!("{control}/_sim/faults"))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["hang_ms"], 30_000);
    let status = get(&client, listings.clone(), &token).await.0;
    assert!([500, 502, 503].contains(&status), "{status}");
    client
        .delete(format!("{control}/_sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&client, listings.clone(), &token).await.0, 200);

    let stats: SimStats = client
        .get(format!("{control}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, sim.state().stats());
    assert_eq!(stats.rate_limited, 3);
    client
        .post(format!("{control}/_sim/stats/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.state().stats().total, 0);
    sim.stop().await;
}

/// Authorization header and JSON body of each request a receiver got.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver answering with the statuses in `script` (then 200),
/// recording each request's Authorization header and body.
struct Receiver {
    url: String,
    seen: Seen,
    handle: actix_web::dev::ServerHandle,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let seen: Seen = Arc::default();
    let script = Arc::new(Mutex::new(script));
    let (recorded, statuses) = (seen.clone(), script.clone());
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        let statuses = statuses.clone();
        App::new().default_service(web::to(
            move |request: HttpRequest, body: web::Json<Value>| {
                let recorded = recorded.clone();
                let statuses = statuses.clone();
                async move {
                    let auth = request
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    recorded.lock().unwrap().push((auth, body.into_inner()));
                    let mut statuses = statuses.lock().unwrap();
                    let status = if statuses.is_empty() {
                        200
                    } else {
                        statuses.remove(0)
                    };
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            },
        ))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Receiver {
        url: format!("http://{address}/hooks"),
        seen,
        handle,
    }
}

#[actix_web::test]
async fn webhooks_and_deliveries() {
    let sim = Simulator::start(quiet_config(), 0).await.unwrap();
    let client = client();
    let token = bearer(&client, &sim, 1001, "secret").await;
    let hooks = format!("{}/webhooks/unifiedWebhooks", sim.base_url());
    let target = receiver(vec![503, 500]).await;

    let missing_url = client
        .post(&hooks)
        .bearer_auth(&token)
        .json(&json!({"isEnabled": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing_url.status(), 400);
    let created: Value = client
        .post(&hooks)
        .bearer_auth(&token)
        .json(&json!({
            "isEnabled": 1,
            "url": target.url,
            "login": "hostaway",
            "password": "s3cret",
            "alertingEmailAddress": null
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "success");
    assert_eq!(created["result"]["password"], "s3cret");
    let id = created["result"]["id"].as_i64().unwrap();
    let (_, listed) = get(&client, hooks.clone(), &token).await;
    assert_eq!(listed["result"][0]["password"], "****");
    assert_eq!(sim.state().webhooks(1001)[0]["password"], "s3cret");
    assert!(sim.state().webhooks(1002).is_empty());

    // Another account cannot see or change it.
    let other = bearer(&client, &sim, 1002, "other").await;
    assert_eq!(get(&client, format!("{hooks}/{id}"), &other).await.0, 404);
    let (status, _) = get(&client, format!("{hooks}/{id}"), &token).await;
    assert_eq!(status, 200);

    // Two 5xx then success: three attempts, Basic auth, Hostaway's envelope.
    let changes = sim.state().mutate(1001, Mutation::CancelReservation, 1);
    let records = sim.state().deliver_changes(1001, &changes, false).await;
    assert_eq!(records.len(), 1);
    assert!(records[0].delivered);
    assert_eq!(records[0].attempts.len(), 3);
    assert_eq!(records[0].attempts[0].status, Some(503));
    let seen = target.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0.as_deref(), Some("Basic aG9zdGF3YXk6czNjcmV0"));
    let body = &seen[2].1;
    assert_eq!(body["object"], "reservation");
    assert_eq!(body["event"], "reservation.updated");
    assert_eq!(body["accountId"], 1001);
    assert_eq!(body["data"]["status"], "cancelled");
    assert_eq!(
        body["data"],
        sim.state()
            .dataset(1001)
            .unwrap()
            .reservations
            .iter()
            .find(|r| r["id"] == body["data"]["id"])
            .unwrap()
            .clone()
    );

    // Through the control API: a new message, delivered.
    let response: Value = client
        .post(format!("{}/_sim/accounts/1001/mutate", sim.root_url()))
        .json(&json!({"kind": "new_message", "count": 2, "deliver": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["changes"].as_array().unwrap().len(), 2);
    assert_eq!(response["changes"][0]["event"], "message.received");
    assert_eq!(response["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(
        target.seen.lock().unwrap().last().unwrap().1["object"],
        "conversationMessage"
    );

    // A 4xx is final; overrides of the credentials; disabled hooks get nothing.
    let rejecting = receiver(vec![401]).await;
    let records = sim
        .state()
        .deliver(DeliverRequest {
            account_id: 1001,
            event: "reservation.created".into(),
            url: Some(rejecting.url.clone()),
            login: Some("intruder".into()),
            password: Some("guess".into()),
            ..DeliverRequest::default()
        })
        .await;
    assert!(!records[0].delivered);
    assert_eq!(records[0].attempts.len(), 1);
    assert_eq!(rejecting.seen.lock().unwrap()[0].1["data"], json!({}));

    let disable = client
        .put(format!("{hooks}/{id}"))
        .bearer_auth(&token)
        .json(&json!({"isEnabled": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(disable.status(), 200);
    let changes = sim.state().mutate(1001, Mutation::NewReservation, 1);
    assert!(
        sim.state()
            .deliver_changes(1001, &changes, false)
            .await
            .is_empty()
    );
    let deleted = client
        .delete(format!("{hooks}/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"status": "success", "result": []})
    );
    assert_eq!(get(&client, format!("{hooks}/{id}"), &token).await.0, 404);

    let all: Vec<DeliveryRecord> = client
        .get(format!("{}/_sim/deliveries", sim.root_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    target.handle.stop(false).await;
    rejecting.handle.stop(false).await;
    sim.stop().await;
}

#[actix_web::test]
async fn control_api_accounts_and_validation() {
    let sim = Simulator::start(quiet_config(), 0).await.unwrap();
    let client = client();
    let control = sim.root_url();
    let created = client
        .post(format!("{control}/_sim/accounts"))
        .json(&json!({
            "account_id": 2002, "client_secret": "third", "reservations": 5, "listings": 2
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let summary: Value = created.json().await.unwrap();
    assert_eq!(summary["reservations"], 5);
    assert_eq!(summary["conversations"], 5);
    assert!(!summary.to_string().contains("third"));
    let data: AccountData = client
        .get(format!("{control}/_sim/accounts/2002/data"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data, sim.state().dataset(2002).unwrap());
    assert_eq!(data.reservations[0]["id"], 2002 * 1_000_000 + 1);

    let token = bearer(&client, &sim, 2002, "third").await;
    assert_eq!(
        get(&client, format!("{}/listings", sim.base_url()), &token)
            .await
            .1["count"],
        2
    );

    for (path, body) in [
        (
            "/_sim/accounts",
            json!({"account_id": 0, "client_secret": "x"}),
        ),
        (
            "/_sim/accounts",
            json!({"account_id": 5, "client_secret": "x", "listings": 100000}),
        ),
        ("/_sim/accounts/1001/mutate", json!({"kind": "explode"})),
        ("/_sim/deliver", json!({"event": "x"})),
    ] {
        let response = client
            .post(format!("{control}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path} {body}");
    }
    let unknown = client
        .post(format!("{control}/_sim/accounts/77/mutate"))
        .json(&json!({"kind": "new_message"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let limits = client
        .put(format!("{control}/_sim/rate-limits"))
        .json(&json!({
            "enabled": true,
            "per_ip": {"requests": 1, "per_seconds": 0},
            "per_account": {"requests": 1, "per_seconds": 1}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(limits.status(), 400);
    let expired: Value = client
        .post(format!("{control}/_sim/tokens/expire"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(expired["expired"], 1);
    assert_eq!(
        sim.state().stats().total,
        2,
        "control calls are not counted"
    );
    sim.stop().await;
}
