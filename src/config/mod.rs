//! Settings: `config/default.toml`, then `config/{environment}.toml`, then
//! `SYNC_HOSTAWAY__SECTION__KEY` environment variables. Loading validates every
//! value and fails with a message that names the offending key.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod values;
pub use values::{
    AbsoluteUrl, DatabaseUrl, Environment, Filter, Identifier, NonEmpty, OptionalUrl, Ratio,
    Seconds, Secret,
};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SYNC_HOSTAWAY";
/// Keys whose string values (env vars, overrides) are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "faults.panic_on_reservation_ids",
    "faults.fail_on_reservation_ids",
    "faults.panic_on_sync_accounts",
    "faults.fail_inbox_event_types",
];

/// Environment variable that picks the environment file.
pub const ENV_SELECTOR: &str = "SYNC_HOSTAWAY_ENV";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Its message already names the key and the cause (not repeated as
    /// a source).
    #[error("config: {0}")]
    Load(config::ConfigError),
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("unknown environment `{0}` (expected development, test or production)")]
    UnknownEnvironment(String),
    #[error("config directory `{0}` does not exist")]
    MissingDir(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip, default = "default_env")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub hostaway: HostawaySettings,
    pub webhooks: WebhookSettings,
    pub admin: AdminSettings,
    pub sync: SyncSettings,
    pub security: SecuritySettings,
    pub telemetry: TelemetrySettings,
    pub actors: ActorSettings,
    pub cluster: ClusterSettings,
    pub faults: FaultSettings,
}

fn default_env() -> Environment {
    Environment::Development
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: NonEmpty,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub body_timeout_secs: Seconds,
    pub max_inflight_bodies: NonZeroUsize,
    pub max_inflight_body_bytes: usize,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub schema: Identifier,
    pub max_connections: NonZeroU32,
    /// Pool size on SQLite, which lets one connection write at a time.
    pub sqlite_max_connections: NonZeroU32,
    pub connect_timeout_secs: u64,
    pub auto_migrate: bool,
    pub sqlite_synchronous: SqliteSynchronous,
}

/// SQLite's fsync policy (`PRAGMA synchronous`); `full` makes an
/// acknowledgement durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, strum::EnumString)]
#[serde(try_from = "String")]
#[strum(serialize_all = "lowercase")]
pub enum SqliteSynchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl TryFrom<String> for SqliteSynchronous {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        value
            .parse()
            .map_err(|_| format!("must be one of off, normal, full, extra (not `{value}`)"))
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub per_seconds: Seconds,
}

impl RateLimit {
    pub fn window(&self) -> Duration {
        self.per_seconds.duration()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub per_ip: RateLimit,
    pub per_account: RateLimit,
    pub safety_margin_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostawaySettings {
    pub base_url: AbsoluteUrl,
    pub request_timeout_secs: Seconds,
    pub max_attempts: NonZeroU32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub concurrency: NonZeroUsize,
    pub page_size: NonZeroU32,
    pub max_pages: NonZeroU32,
    pub max_retry_after_secs: u64,
    pub token_ready_delay_ms: u64,
    pub token_refresh_margin_secs: u64,
    pub rate_limit: RateLimitSettings,
}

impl HostawaySettings {
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout_secs.duration()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub username: String,
    pub password: Secret,
    pub public_base_url: OptionalUrl,
    pub max_attempts: NonZeroU32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retention_days: u32,
    pub ingest_batch_max: NonZeroUsize,
    pub apply_batch_max: NonZeroUsize,
    pub registration_retry_base_ms: u64,
    pub registration_retry_max_ms: u64,
    pub credential_grace_secs: u64,
    pub max_future_skew_secs: u64,
}

impl WebhookSettings {
    /// How far ahead of its observation a Hostaway timestamp may lie before
    /// it is clamped (`store::version`).
    pub fn max_future_skew(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.max_future_skew_secs.min(i64::MAX as u64 / 2000) as i64)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub api_token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    pub scheduled: bool,
    pub reconcile_interval_secs: std::num::NonZeroU64,
    pub jitter_ratio: Ratio,
    pub scheduler_tick_ms: u64,
    pub overlap_secs: u64,
    pub sync_on_create: bool,
    pub max_duration_secs: u64,
    /// A running sync logs a progress line this often (0: never).
    pub progress_log_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub encryption_key: Secret,
    pub key_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub otlp_endpoint: OptionalUrl,
    pub otlp_protocol: OtlpProtocol,
    pub service_name: NonEmpty,
    pub log_format: LogFormat,
    pub log_filter: Filter,
    pub trace_filter: Filter,
    pub sampling_ratio: Ratio,
    pub export_queue_size: usize,
    pub export_timeout_ms: u64,
    pub metrics_refresh_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSettings {
    pub max_restarts: NonZeroU32,
    pub restart_window_secs: u64,
    pub restart_backoff_ms: u64,
    pub restart_backoff_max_ms: u64,
    pub shutdown_timeout_secs: u64,
    pub account_arbiters: usize,
    pub max_queued_rows: NonZeroUsize,
    pub max_queued_bytes: usize,
    pub max_queued_bytes_total: usize,
    pub degraded_retry_secs: u64,
}

/// Several replicas on one PostgreSQL database (`docs/operations.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    pub enabled: bool,
    /// Empty: this host's name and the process id.
    pub replica_id: String,
    pub lease_secs: std::num::NonZeroU64,
    pub heartbeat_secs: std::num::NonZeroU64,
}

impl ClusterSettings {
    /// `replica_id`, or this host's name and process id when it is empty.
    pub fn replica_id(&self) -> String {
        let configured = self.replica_id.trim();
        if !configured.is_empty() {
            return configured.to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            // No host name to tell machines apart: a random one instead.
            .unwrap_or_else(|| format!("replica-{:08x}", rand::random::<u32>()));
        format!("{host}-{}", std::process::id())
    }
}

/// Deliberate failures for the fault suite. All lists are empty in every shipped
/// config; production refuses to start when any is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Applying a webhook for one of these reservation ids panics.
    pub panic_on_reservation_ids: Vec<i64>,
    /// Applying a webhook for one of these reservation ids returns an error.
    pub fail_on_reservation_ids: Vec<i64>,
    /// A sync of one of these accounts panics inside the AccountActor.
    pub panic_on_sync_accounts: Vec<i64>,
    /// An inbox batch holding an event of one of these types fails to
    /// commit (as if the database refused that row).
    pub fail_inbox_event_types: Vec<String>,
    /// Every batch an AccountActor applies takes this much longer (a busy
    /// account).
    pub slow_apply_ms: u64,
}

impl FaultSettings {
    pub fn any(&self) -> bool {
        !(self.panic_on_reservation_ids.is_empty()
            && self.fail_on_reservation_ids.is_empty()
            && self.panic_on_sync_accounts.is_empty()
            && self.fail_inbox_event_types.is_empty()
            && self.slow_apply_ms == 0)
    }
}

impl From<config::ConfigError> for ConfigError {
    fn from(err: config::ConfigError) -> Self {
        ConfigError::Load(err)
    }
}

/// Where settings come from. `Settings::load` uses the process environment;
/// tests pass their own variables and overrides.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub config_dir: Option<PathBuf>,
    pub environment: Option<Environment>,
    /// Replaces the process environment when set (tests).
    pub env_vars: Option<HashMap<String, String>>,
    /// `("section.key", "value")` pairs applied last.
    pub overrides: Vec<(String, String)>,
}

impl Settings {
    /// Loads settings for the process: `SYNC_HOSTAWAY_ENV`, env overrides, and
    /// the config directory (default `./config`).
    pub fn load(config_dir: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with(LoadOptions {
            config_dir: config_dir.map(Path::to_path_buf),
            ..LoadOptions::default()
        })
    }

    pub fn load_with(options: LoadOptions) -> Result<Settings, ConfigError> {
        // An explicit directory must exist; `./config` is used when present.
        let dir = match options.config_dir.clone() {
            Some(dir) if !dir.is_dir() => return Err(ConfigError::MissingDir(dir)),
            Some(dir) => Some(dir),
            None => Some(default_config_dir()).filter(|d| d.is_dir()),
        };
        let environment = match options.environment {
            Some(env) => env,
            None => match &options.env_vars {
                Some(vars) => match vars.get(ENV_SELECTOR) {
                    Some(v) if !v.trim().is_empty() => v.parse()?,
                    _ => Environment::Development,
                },
                None => Environment::from_process_env()?,
            },
        };
        let mut env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in LIST_KEYS {
            env_source = env_source.with_list_parse_key(key);
        }
        if let Some(vars) = options.env_vars.clone() {
            env_source = env_source.source(Some(vars.into_iter().collect()));
        }
        let otel = otel_defaults(|name| match &options.env_vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        });
        let mut builder = config::Config::builder()
            .add_source(config_file(dir.as_deref(), "default"))
            // The standard OpenTelemetry variables stand in for what
            // default.toml leaves to them; an environment file or a
            // SYNC_HOSTAWAY__TELEMETRY__… variable still wins.
            .add_source(config::File::from_str(&otel, config::FileFormat::Toml))
            .add_source(config_file(dir.as_deref(), environment.as_str()))
            .add_source(env_source);
        for (key, value) in &options.overrides {
            builder = if LIST_KEYS.contains(&key.as_str()) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                builder.set_override(key.as_str(), items)?
            } else {
                builder.set_override(key.as_str(), value.as_str())?
            };
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what one value's type cannot: rules between keys, and the
    /// production rules. (Each value's own range is its type's.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(invalid("server.body_limit_bytes", "must be at least 1024"));
        }
        if self.server.max_inflight_body_bytes < self.server.body_limit_bytes {
            return Err(invalid(
                "server.max_inflight_body_bytes",
                "must be at least server.body_limit_bytes",
            ));
        }
        if self.actors.max_queued_bytes < self.server.body_limit_bytes {
            return Err(invalid(
                "actors.max_queued_bytes",
                "must be at least server.body_limit_bytes (one event must fit)",
            ));
        }
        if self.webhooks.username.is_empty() == self.webhooks.password.is_set() {
            return Err(invalid(
                "webhooks.password",
                "webhooks.username and webhooks.password must be set together",
            ));
        }
        self.refuse_public_secrets()?;
        self.check_cluster()?;
        if self.environment == Environment::Production {
            if !self.security.encryption_key.is_set() {
                return Err(invalid(
                    "security.encryption_key",
                    "is required in production (32 bytes, base64)",
                ));
            }
            if !self.admin.api_token.is_set() {
                return Err(invalid("admin.api_token", "is required in production"));
            }
            if self.database.url.expose() == DEFAULT_DATABASE_URL {
                return Err(invalid(
                    "database.url",
                    "must be set in production (e.g. SYNC_HOSTAWAY__DATABASE__URL=postgres://USER@HOST:5432/DB)",
                ));
            }
            if self.faults.any() {
                return Err(invalid(
                    "faults",
                    "fault injection is refused in production",
                ));
            }
        }
        Ok(())
    }

    /// The shipped development and test secrets are public: production
    /// refuses them anywhere, other environments refuse to serve them on an
    /// address other hosts can reach.
    fn refuse_public_secrets(&self) -> Result<(), ConfigError> {
        let public = |value: &str| PUBLIC_SECRETS.contains(&value);
        let offending = if self.admin.api_token.is_set() && public(self.admin.api_token.expose()) {
            Some("admin.api_token")
        } else if self.webhooks.password.is_set() && public(self.webhooks.password.expose()) {
            Some("webhooks.password")
        } else {
            None
        };
        let Some(key) = offending else {
            return Ok(());
        };
        if self.environment == Environment::Production {
            return Err(ConfigError::Invalid {
                key,
                message: "is a published development/test secret; set your own".into(),
            });
        }
        if !is_loopback(&self.server.host) {
            return Err(ConfigError::Invalid {
                key: "server.host",
                message: format!(
                    "{} is not a loopback address, and {key} is a published development/test secret: \
                     bind 127.0.0.1, or set your own {key}",
                    self.server.host
                ),
            });
        }
        Ok(())
    }

    /// Cluster mode needs PostgreSQL, and a heartbeat well inside a lease.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        if !cluster.enabled {
            return Ok(());
        }
        if self.is_sqlite() {
            return Err(ConfigError::Invalid {
                key: "cluster.enabled",
                message: "cluster mode needs PostgreSQL (database.url = \"postgres://...\"): \
                          replicas coordinate through its leases and LISTEN/NOTIFY; \
                          SQLite is one process's database"
                    .into(),
            });
        }
        if cluster.heartbeat_secs.get() * 2 > cluster.lease_secs.get() {
            return Err(ConfigError::Invalid {
                key: "cluster.heartbeat_secs",
                message: format!(
                    "must be at most half of cluster.lease_secs ({}), so a lease is renewed \
                     at least twice before it lapses",
                    cluster.lease_secs
                ),
            });
        }
        if cluster.replica_id.len() > 200 {
            return Err(ConfigError::Invalid {
                key: "cluster.replica_id",
                message: "must be at most 200 characters".into(),
            });
        }
        Ok(())
    }

    pub fn is_sqlite(&self) -> bool {
        self.database.url.is_sqlite()
    }
}

/// The standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces-only form),
/// `OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_SERVICE_NAME`, as a TOML
/// `[telemetry]` table of what is set.
fn otel_defaults(var: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut table = String::from("[telemetry]\n");
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    for (key, value) in [
        ("otlp_endpoint", endpoint),
        ("otlp_protocol", protocol),
        ("service_name", set("OTEL_SERVICE_NAME")),
    ] {
        if let Some(value) = value {
            table.push_str(&format!("{key} = {}\n", toml_string(&value)));
        }
    }
    table
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The files shipped in `config/`, built into the binary: a binary copied
/// anywhere runs on them and `SYNC_HOSTAWAY__…` variables alone.
const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../../config/default.toml")),
    ("development", include_str!("../../config/development.toml")),
    ("test", include_str!("../../config/test.toml")),
    ("production", include_str!("../../config/production.toml")),
];

/// `database.url` in the built-in default.toml: production refuses it.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/sync-hostaway.db?mode=rwc";

/// `NAME.toml` from the config directory when it has one, else the
/// built-in file of that name.
fn config_file(
    dir: Option<&Path>,
    name: &str,
) -> config::File<config::FileSourceString, config::FileFormat> {
    let on_disk = dir
        .map(|d| d.join(format!("{name}.toml")))
        .filter(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok());
    let text = on_disk.unwrap_or_else(|| {
        BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(String::new(), |(_, text)| text.to_string())
    });
    config::File::from_str(&text, config::FileFormat::Toml)
}

fn default_config_dir() -> PathBuf {
    PathBuf::from("config")
}

/// The secrets `config/development.toml` and `config/test.toml` ship with.
const PUBLIC_SECRETS: &[&str] = &[
    "dev-admin-token",
    "dev-webhook-password",
    "test-admin-token",
    "test-webhook-password",
];

/// `localhost` or a loopback IP.
fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "10.0.0.5", "::", "mirror.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
