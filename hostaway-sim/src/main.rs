//! `hostaway-sim`: the Hostaway API simulator as a standalone server for
//! laptop demos and manual testing. Serves `/v1` like Hostaway and `/_sim`
//! controls until Ctrl-C.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use hostaway_sim::{
    ActivityFormat, ActivityScope, Behaviour, ConversationOrder, CountMode, CursorMode,
    DatasetSize, MessageOrder, PasswordMasking, ReservationTimestamps, RetryAfter, SimAccount,
    SimConfig, SimLimit, SimRateLimits, Simulator, TokenError, WebhookEnvelope,
};
use tracing_subscriber::EnvFilter;

fn defaults() -> SimConfig {
    SimConfig::default()
}

#[derive(Parser)]
#[command(
    name = "hostaway-sim",
    version,
    about = "Simulates the Hostaway API (/v1) with generated data, rate limits, faults and \
             webhook delivery, driven through /_sim controls"
)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 8081)]
    port: u16,

    /// Accounts as ACCOUNT_ID:CLIENT_SECRET, comma separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_account, default_value = "1001:secret")]
    accounts: Vec<SimAccount>,

    /// Seed of the generated data, mutation targets and random faults.
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,

    /// Listings per account (at most 9999).
    #[arg(long, default_value_t = defaults().dataset.listings)]
    listings: usize,

    /// Reservations per account (at most 499999).
    #[arg(long, default_value_t = defaults().dataset.reservations)]
    reservations: usize,

    /// Conversations per account, one per reservation for the first N
    /// reservations (at most 99999, capped at the reservation count).
    #[arg(long, default_value_t = defaults().dataset.conversations)]
    conversations: usize,

    /// Messages in each conversation (at most 999).
    #[arg(long, default_value_t = defaults().dataset.messages_per_conversation)]
    messages_per_conversation: usize,

    /// Per client IP limit as REQUESTS/SECONDS (sliding window).
    #[arg(
        long,
        value_name = "REQUESTS/SECONDS",
        default_value_t = defaults().rate_limits.per_ip
    )]
    rate_limit_per_ip: SimLimit,

    /// Per account limit as REQUESTS/SECONDS (sliding window).
    #[arg(
        long,
        value_name = "REQUESTS/SECONDS",
        default_value_t = defaults().rate_limits.per_account
    )]
    rate_limit_per_account: SimLimit,

    /// Do not enforce rate limits (they can be enabled later with PUT /_sim/rate-limits).
    #[arg(long)]
    no_rate_limit: bool,

    /// A new token answers 403 until this many milliseconds after it was issued.
    #[arg(long, default_value_t = defaults().token_ready_delay_ms)]
    token_ready_delay_ms: u64,

    /// `expires_in` of issued tokens, in seconds; tokens stop working after it.
    #[arg(long, default_value_t = defaults().token_ttl_secs)]
    token_ttl_secs: u64,

    /// Largest page `limit` honoured; larger requests are clamped.
    #[arg(long, default_value_t = defaults().max_limit)]
    max_limit: u32,

    /// Webhook retry backoff base in milliseconds (retries after base, 2x, 4x).
    #[arg(long, default_value_t = defaults().delivery_retry_base_ms)]
    delivery_retry_base_ms: u64,

    /// Timeout of each webhook delivery attempt, in milliseconds.
    #[arg(long, default_value_t = defaults().delivery_timeout_ms)]
    delivery_timeout_ms: u64,

    // What Hostaway's documentation leaves open (docs/simulator.md); each
    // can also be changed at run time with PUT /_sim/behaviour.
    /// `afterId` on GET /v1/reservations: `position` = the page after that
    /// reservation in the current order (an unknown id gives an empty page);
    /// `id-greater` = larger ids in id order.
    #[arg(long, default_value_t = CursorMode::default(), help_heading = "Undocumented behaviour")]
    cursor: CursorMode,

    /// Formats `latestActivityStart`/`End` accept: `any`, `date` (YYYY-MM-DD
    /// only) or `datetime` (YYYY-MM-DD HH:MM:SS only); others get 400.
    #[arg(long, default_value_t = ActivityFormat::default(), help_heading = "Undocumented behaviour")]
    activity_format: ActivityFormat,

    /// Which changes move a reservation's `latestActivityOn`: `every-change`,
    /// or `bookings-only` (updates and cancellations leave it).
    #[arg(long, default_value_t = ActivityScope::default(), help_heading = "Undocumented behaviour")]
    activity_scope: ActivityScope,

    /// Whether list envelopes carry `count`, `page` and `totalPages`
    /// (`present` or `absent`).
    #[arg(long, default_value_t = CountMode::default(), help_heading = "Undocumented behaviour")]
    count: CountMode,

    /// Status for a missing, expired or revoked token: `403` or `401`.
    #[arg(long, default_value_t = TokenError::default(), help_heading = "Undocumented behaviour")]
    token_error: TokenError,

    /// Order of GET /v1/conversations: `oldest-first` (by id) or
    /// `newest-first` (latest message first).
    #[arg(long, default_value_t = ConversationOrder::default(), help_heading = "Undocumented behaviour")]
    conversation_order: ConversationOrder,

    /// Order of GET /v1/conversations/{id}/messages: `newest-first` or
    /// `oldest-first`.
    #[arg(long, default_value_t = MessageOrder::default(), help_heading = "Undocumented behaviour")]
    message_order: MessageOrder,

    /// `Retry-After` on rate-limit 429s: `none`, or `window` (seconds until
    /// the refusing window admits again).
    #[arg(long, default_value_t = RetryAfter::default(), help_heading = "Undocumented behaviour")]
    retry_after: RetryAfter,

    /// Where deliveries carry the entity: `data` or `payload-data`
    /// (`payload.data`).
    #[arg(long, default_value_t = WebhookEnvelope::default(), help_heading = "Undocumented behaviour")]
    webhook_envelope: WebhookEnvelope,

    /// Webhook `password` in list, read and update answers: `masked` (****)
    /// or `plain`.
    #[arg(long, default_value_t = PasswordMasking::default(), help_heading = "Undocumented behaviour")]
    password_masking: PasswordMasking,

    /// Whether reservations carry `insertedOn`/`updatedOn`: `present` or
    /// `absent`.
    #[arg(long, default_value_t = ReservationTimestamps::default(), help_heading = "Undocumented behaviour")]
    reservation_timestamps: ReservationTimestamps,
}

fn parse_account(text: &str) -> Result<SimAccount, String> {
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| format!("expected ACCOUNT_ID:CLIENT_SECRET, got {text:?}"))?;
    let account_id = id
        .trim()
        .parse::<i64>()
        .map_err(|err| format!("bad account id {id:?}: {err}"))?;
    if secret.is_empty() {
        return Err(format!("account {account_id} has an empty secret"));
    }
    Ok(SimAccount::new(account_id, secret))
}

impl Cli {
    fn config(&self) -> SimConfig {
        SimConfig {
            accounts: self.accounts.clone(),
            seed: self.seed,
            dataset: DatasetSize {
                listings: self.listings,
                reservations: self.reservations,
                conversations: self.conversations,
                messages_per_conversation: self.messages_per_conversation,
            },
            rate_limits: SimRateLimits {
                enabled: !self.no_rate_limit,
                per_ip: self.rate_limit_per_ip,
                per_account: self.rate_limit_per_account,
            },
            token_ready_delay_ms: self.token_ready_delay_ms,
            token_ttl_secs: self.token_ttl_secs,
            max_limit: self.max_limit,
            delivery_retry_base_ms: self.delivery_retry_base_ms,
            delivery_timeout_ms: self.delivery_timeout_ms,
            behaviour: Behaviour {
                cursor: self.cursor,
                activity_format: self.activity_format,
                activity_scope: self.activity_scope,
                count: self.count,
                token_error: self.token_error,
                conversation_order: self.conversation_order,
                message_order: self.message_order,
                retry_after: self.retry_after,
                webhook_envelope: self.webhook_envelope,
                password_masking: self.password_masking,
                reservation_timestamps: self.reservation_timestamps,
            },
        }
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = cli.config();
    config
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid options")?;
    let limits = config.rate_limits;
    let simulator = Simulator::start_on(config, SocketAddr::new(cli.host, cli.port))
        .await
        .context("could not start the simulator")?;
    let state = simulator.state();
    for summary in state.account_summaries() {
        tracing::info!(
            account_id = %summary["account_id"],
            listings = %summary["listings"],
            reservations = %summary["reservations"],
            conversations = %summary["conversations"],
            messages = %summary["messages"],
            "account ready"
        );
    }
    tracing::info!(
        base_url = %simulator.base_url(),
        control_url = %format!("{}/_sim", simulator.root_url()),
        rate_limits = %if limits.enabled {
            format!("{} per IP, {} per account", limits.per_ip, limits.per_account)
        } else {
            "off".to_string()
        },
        "hostaway simulator serving; Ctrl-C stops it"
    );

    tokio::signal::ctrl_c()
        .await
        .context("could not listen for Ctrl-C")?;
    tracing::info!("stopping");
    simulator.stop().await;
    Ok(())
}
