//! The accounts CLI: `sync-hostaway accounts …` and `sync-hostaway sync`
//! talk to the running service's admin API (its URL and token from the same
//! config), so every change goes through the account's actor, its rate
//! limiter and its ordering. Output is a table or `--json`; the exit code
//! says what went wrong (`CliError::exit_code`).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::errors::root_cause;
use crate::paths;
use crate::sync::progress::{Count, Snapshot};

/// Exit codes, for scripts.
pub mod exit {
    /// The service refused the request as given (400, 405, 409, 413, 422)
    /// or the command line is wrong.
    pub const BAD_INPUT: u8 = 2;
    /// No such account (404).
    pub const NOT_FOUND: u8 = 3;
    /// The service is not reachable or not ready (connection refused, 503).
    pub const UNAVAILABLE: u8 = 4;
    /// The admin token was refused (401, 403).
    pub const UNAUTHORIZED: u8 = 5;
    /// Anything else that failed: a failed sync, a 5xx.
    pub const FAILED: u8 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{method} {url} answered {status} ({code}): {message}")]
    Api {
        method: Method,
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("could not reach the service at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::BAD_INPUT,
            CliError::Api { status, .. } => match *status {
                404 => exit::NOT_FOUND,
                401 | 403 => exit::UNAUTHORIZED,
                503 => exit::UNAVAILABLE,
                400..=499 => exit::BAD_INPUT,
                _ => exit::FAILED,
            },
            CliError::Unreachable { .. } => exit::UNAVAILABLE,
            CliError::Failed(_) => exit::FAILED,
        }
    }
}

/// Where the admin API is and how to call it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The running service's base URL (default: from server.host and
    /// server.port).
    #[arg(long, global = true, env = "SYNC_HOSTAWAY_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Print the service's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Where a new secret comes from: never the command line itself.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct SecretSource {
    /// Read the client secret from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Read the client secret from standard input (one line).
    #[arg(long)]
    pub secret_stdin: bool,
}

impl SecretSource {
    fn read(&self) -> Result<Option<String>, CliError> {
        if let Some(var) = &self.secret_env {
            let value = std::env::var(var).map_err(|_| {
                CliError::Usage(format!("--secret-env {var}: the variable is not set"))
            })?;
            return Ok(Some(value));
        }
        if self.secret_stdin {
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| CliError::Usage(format!("--secret-stdin: {e}")))?;
            let value = value.lines().next().unwrap_or_default().to_string();
            if value.is_empty() {
                return Err(CliError::Usage(
                    "--secret-stdin: standard input held no secret".into(),
                ));
            }
            return Ok(Some(value));
        }
        Ok(None)
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccountsCommand {
    /// Every account: status, sync state, webhook, counts.
    List,
    /// One account in detail, with a running sync's progress.
    Show { account_id: i64 },
    /// Add an account; its credentials are checked with Hostaway first.
    Add {
        account_id: i64,
        #[command(flatten)]
        secret: SecretSource,
        /// The customer (a UUID) the account belongs to.
        #[arg(long)]
        customer_id: Option<String>,
        /// Event names the account ignores (comma-separated).
        #[arg(long, value_delimiter = ',')]
        ignored_events: Option<Vec<String>>,
        /// Store the credentials without asking Hostaway.
        #[arg(long)]
        no_verify: bool,
    },
    /// Change an account: a new secret, customer, ignored events, activity.
    Update {
        account_id: i64,
        #[command(flatten)]
        secret: SecretSource,
        #[arg(long, conflicts_with = "clear_customer")]
        customer_id: Option<String>,
        /// Remove the customer id.
        #[arg(long)]
        clear_customer: bool,
        /// Replaces the ignored events (comma-separated; "" for none).
        #[arg(long, value_delimiter = ',')]
        ignored_events: Option<Vec<String>>,
        /// Reactivate (true) or deactivate (false).
        #[arg(long)]
        active: Option<bool>,
        /// Store a new secret without asking Hostaway.
        #[arg(long)]
        no_verify: bool,
    },
    /// Stop syncing an account and remove its webhook; its data stays.
    Deactivate { account_id: i64 },
    /// Erase an account and its mirrored data (needs --hard).
    Delete {
        account_id: i64,
        #[arg(long)]
        hard: bool,
    },
    /// Ask the service for a sync.
    Sync {
        account_id: i64,
        /// Read everything instead of reconciling changes.
        #[arg(long)]
        full: bool,
        /// Fetch and count, write nothing (implies --wait).
        #[arg(long)]
        dry_run: bool,
        /// Wait for the end, showing progress, and print the report.
        #[arg(long)]
        wait: bool,
    },
    /// Put the account's dead letters back in the inbox.
    ReplayFailed { account_id: i64 },
}

/// The admin API of a running service.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, token: &str) -> Result<Self, CliError> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| CliError::Failed(format!("HTTP client: {}", root_cause(&e))))?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// The service these settings describe, or `url`.
    pub fn for_settings(settings: &Settings, url: Option<&str>) -> Result<Self, CliError> {
        let base = match url {
            Some(url) => url.to_string(),
            None => {
                let host = match &*settings.server.host {
                    "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
                    host => host,
                };
                format!("http://{host}:{}", settings.server.port)
            }
        };
        let token = settings.admin.api_token.expose();
        if token.is_empty() {
            return Err(CliError::Usage(
                "admin.api_token is empty in this environment's config: set \
                 SYNC_HOSTAWAY__ADMIN__API_TOKEN to the running service's token"
                    .into(),
            ));
        }
        AdminClient::new(&base, token)
    }

    /// One admin request; the JSON answer (`null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: url.clone(),
            cause: root_cause(&e),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| CliError::Unreachable {
            url: url.clone(),
            cause: root_cause(&e),
        })?;
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        Err(CliError::Api {
            method,
            url,
            status: status.as_u16(),
            code: value["error"].as_str().unwrap_or("error").to_string(),
            message: value["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string()),
        })
    }

    async fn account(&self, account_id: i64) -> Result<Value, CliError> {
        self.call(Method::GET, &account_path(account_id, ""), None)
            .await
    }

    /// Asks for a sync and waits for its report, drawing its progress.
    pub async fn sync_and_watch(
        &self,
        account_id: i64,
        full: bool,
        dry_run: bool,
        every: Duration,
    ) -> Result<Value, CliError> {
        let mode = if full { "full" } else { "incremental" };
        let path = account_path(
            account_id,
            &format!("/sync?mode={mode}&dry_run={dry_run}&wait=true"),
        );
        let run = self.call(Method::POST, &path, None);
        let progress = || async {
            let account = self.account(account_id).await.ok()?;
            serde_json::from_value::<Snapshot>(account["sync"].clone()).ok()
        };
        watch(account_id, run, progress, every).await
    }
}

fn account_path(account_id: i64, rest: &str) -> String {
    format!("{}/{account_id}{rest}", paths::ACCOUNTS)
}

/// Runs `run` while drawing what `progress` reads: a bar on a terminal,
/// a plain line every `every` otherwise (both on stderr).
pub async fn watch<T, P, PF>(
    account_id: i64,
    run: impl Future<Output = T>,
    progress: P,
    every: Duration,
) -> T
where
    P: Fn() -> PF,
    PF: Future<Output = Option<Snapshot>>,
{
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let poll = Duration::from_millis(if bar.is_some() { 500 } else { 1000 });
    let mut run = std::pin::pin!(run);
    let mut last_line = tokio::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            () = tokio::time::sleep(poll) => {}
        }
        let Some(snapshot) = progress().await else {
            continue;
        };
        match &bar {
            Some(bar) => {
                // Writing: one step.
                let current = snapshot.current().unwrap_or(Count {
                    fetched: 1,
                    total: Some(1),
                });
                bar.set_length(current.total.unwrap_or(current.fetched));
                bar.set_position(current.fetched);
                bar.set_message(progress_line(&snapshot));
            }
            None if last_line.elapsed() >= every => {
                eprintln!("account {account_id}: {}", progress_line(&snapshot));
                last_line = tokio::time::Instant::now();
            }
            None => {}
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

/// `phase reservations · listings 8/8 · reservations 40/150 · … · ETA 11 s`
pub fn progress_line(s: &Snapshot) -> String {
    let eta = s
        .eta_secs
        .map(|eta| format!(" · ETA {eta:.0} s"))
        .unwrap_or_default();
    format!(
        "phase {} · listings {} · reservations {} · conversations {} · threads {} · \
         messages {} · {} requests · rate-limit wait {:.1} s{eta}",
        s.phase.as_str(),
        s.listings,
        s.reservations,
        s.conversations,
        s.message_threads,
        s.messages.fetched,
        s.requests,
        s.rate_limit_wait_secs,
    )
}

/// `sync-hostaway accounts …`: what to print on success.
pub async fn run_accounts(
    settings: &Settings,
    target: &Target,
    command: AccountsCommand,
) -> Result<String, CliError> {
    let client = AdminClient::for_settings(settings, target.url.as_deref())?;
    let every = Duration::from_secs(settings.sync.progress_log_secs.max(1));
    let verify = |no_verify: bool| if no_verify { "?verify=false" } else { "" };
    let (value, human): (Value, fn(&Value) -> String) = match command {
        AccountsCommand::List => (
            client.call(Method::GET, paths::ACCOUNTS, None).await?,
            |v| table(v["accounts"].as_array().map(Vec::as_slice).unwrap_or(&[])),
        ),
        AccountsCommand::Show { account_id } => (client.account(account_id).await?, details),
        AccountsCommand::Add {
            account_id,
            secret,
            customer_id,
            ignored_events,
            no_verify,
        } => {
            let Some(client_secret) = secret.read()? else {
                return Err(CliError::Usage(
                    "add needs the client secret: --secret-env VAR or --secret-stdin".into(),
                ));
            };
            let mut body = json!({"account_id": account_id, "client_secret": client_secret});
            if let Some(customer) = customer_id {
                body["customer_id"] = json!(customer);
            }
            if let Some(events) = ignored_events {
                body["ignored_events"] = json!(non_empty(events));
            }
            let path = format!("{}{}", paths::ACCOUNTS, verify(no_verify));
            (
                client.call(Method::POST, &path, Some(&body)).await?,
                details,
            )
        }
        AccountsCommand::Update {
            account_id,
            secret,
            customer_id,
            clear_customer,
            ignored_events,
            active,
            no_verify,
        } => {
            let mut body = json!({});
            if let Some(client_secret) = secret.read()? {
                body["client_secret"] = json!(client_secret);
            }
            if let Some(customer) = customer_id {
                body["customer_id"] = json!(customer);
            }
            if clear_customer {
                body["customer_id"] = Value::Null;
            }
            if let Some(events) = ignored_events {
                body["ignored_events"] = json!(non_empty(events));
            }
            if let Some(active) = active {
                body["is_active"] = json!(active);
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(CliError::Usage(
                    "update needs a change: --secret-env/--secret-stdin, --customer-id, \
                     --clear-customer, --ignored-events or --active"
                        .into(),
                ));
            }
            let path = format!("{}{}", account_path(account_id, ""), verify(no_verify));
            (
                client.call(Method::PATCH, &path, Some(&body)).await?,
                details,
            )
        }
        AccountsCommand::Deactivate { account_id } => (
            client
                .call(Method::DELETE, &account_path(account_id, ""), None)
                .await?,
            details,
        ),
        AccountsCommand::Delete { account_id, hard } => {
            if !hard {
                return Err(CliError::Usage(format!(
                    "delete erases account {account_id} and its mirrored data: pass --hard, \
                     or keep the data with `accounts deactivate {account_id}`"
                )));
            }
            client
                .call(
                    Method::DELETE,
                    &account_path(account_id, "?hard=true"),
                    None,
                )
                .await?;
            (
                json!({"status": "deleted", "account_id": account_id}),
                |v| format!("account {} deleted", v["account_id"]),
            )
        }
        AccountsCommand::Sync {
            account_id,
            full,
            dry_run,
            wait,
        } => {
            if wait || dry_run {
                (
                    client
                        .sync_and_watch(account_id, full, dry_run, every)
                        .await?,
                    report,
                )
            } else {
                let mode = if full { "full" } else { "incremental" };
                (
                    client
                        .call(
                            Method::POST,
                            &account_path(account_id, &format!("/sync?mode={mode}")),
                            None,
                        )
                        .await?,
                    |v| {
                        format!(
                            "{} sync of account {} queued; follow it with `accounts show {}`",
                            v["mode"].as_str().unwrap_or("a"),
                            v["account_id"],
                            v["account_id"]
                        )
                    },
                )
            }
        }
        AccountsCommand::ReplayFailed { account_id } => (
            client
                .call(
                    Method::POST,
                    &account_path(account_id, "/replay-failed"),
                    None,
                )
                .await?,
            |v| format!("{} dead letters put back in the inbox", v["requeued"]),
        ),
    };
    Ok(if target.json {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        human(&value)
    })
}

/// `--ignored-events ""` means none.
fn non_empty(events: Vec<String>) -> Vec<String> {
    events.into_iter().filter(|e| !e.is_empty()).collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The accounts as a table.
pub fn table(accounts: &[Value]) -> String {
    let header = [
        "ACCOUNT",
        "STATUS",
        "SYNC",
        "LAST SYNC",
        "WEBHOOK",
        "LISTINGS",
        "RESERVATIONS",
        "THREADS",
        "PENDING",
    ];
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            let sync = match a["sync"]["phase"].as_str() {
                Some(phase) => format!("syncing ({phase})"),
                None => text(&a["sync_state"]),
            };
            vec![
                text(&a["account_id"]),
                text(&a["status"]),
                sync,
                text(&a["last_sync_at"]),
                text(&a["webhook"]["status"]),
                text(&a["counts"]["listings"]),
                text(&a["counts"]["reservations"]),
                text(&a["counts"]["message_threads"]),
                text(&a["counts"]["pending_events"]),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// One account, field by field.
pub fn details(a: &Value) -> String {
    let mut lines = vec![
        format!("account        {}", text(&a["account_id"])),
        format!("status         {}", text(&a["status"])),
        format!("customer       {}", text(&a["customer_id"])),
        format!("sync           {}", text(&a["sync_state"])),
        format!("last sync      {}", text(&a["last_sync_at"])),
        format!("last error     {}", text(&a["last_error"])),
        format!(
            "webhook        {} (id {})",
            text(&a["webhook"]["status"]),
            text(&a["webhook"]["webhook_id"])
        ),
        format!("ignored events {}", text(&a["ignored_events"])),
        format!(
            "counts         listings {} · reservations {} · threads {} · pending events {}",
            text(&a["counts"]["listings"]),
            text(&a["counts"]["reservations"]),
            text(&a["counts"]["message_threads"]),
            text(&a["counts"]["pending_events"]),
        ),
    ];
    if let Ok(snapshot) = serde_json::from_value::<Snapshot>(a["sync"].clone()) {
        lines.push(format!("progress       {}", progress_line(&snapshot)));
    }
    lines.join("\n")
}

/// A sync's report.
pub fn report(v: &Value) -> String {
    let Some(report) = v.get("report").filter(|r| !r.is_null()) else {
        return format!(
            "sync of account {} finished on the replica that owns it",
            v["account_id"]
        );
    };
    let counts = |c: &Value| format!("{} fetched, {} written", c["fetched"], c["written"]);
    format!(
        "{} sync of account {}{} finished in {} ms\nlistings      {} ({} deleted)\n\
         reservations  {}\nconversations {} ({} re-read)\nthreads       {}",
        text(&report["mode"]),
        report["account_id"],
        if report["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        },
        report["duration_ms"],
        counts(&report["listings"]),
        report["listings_deleted"],
        counts(&report["reservations"]),
        report["conversations"],
        report["conversations_refetched"],
        counts(&report["message_threads"]),
    )
}
