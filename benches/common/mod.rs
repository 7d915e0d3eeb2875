//! Shared by the benchmark programs: the service binary as a child process,
//! the webhook load (`load`), RSS readings, machine facts, and rewriting one section of
//! docs/PERFORMANCE.md.

#![allow(dead_code)]

pub mod external;
pub mod load;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use test_support::ServiceProcess;
#[allow(unused_imports)] // used by some benches only
pub use test_support::rss_mib;

pub const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const ADMIN_TOKEN: &str = "bench-admin-token";
pub const WEBHOOK_USER: &str = "hostaway";
pub const WEBHOOK_PASSWORD: &str = "bench-webhook-password";

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a benchmark keeps its data.
pub enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

impl Database {
    pub fn sqlite() -> Database {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
        Database::Sqlite { _dir: dir, url }
    }

    /// A fresh schema on `BENCH_DATABASE_URL` (else `TEST_DATABASE_URL`), if set.
    pub fn postgres() -> Option<Database> {
        let url = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .ok()
            .filter(|u| !u.is_empty())?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Several in one process (the cluster bench) within one second
        // must not share a schema.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Database::Postgres {
            url,
            schema: format!("bench_{stamp}_{}_{seq}", std::process::id()),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "SQLite",
            Database::Postgres { .. } => "PostgreSQL",
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url, .. } | Database::Postgres { url, .. } => url,
        }
    }

    pub fn schema(&self) -> &str {
        match self {
            Database::Sqlite { .. } => "hostaway",
            Database::Postgres { schema, .. } => schema,
        }
    }

    /// A direct connection for reading results (search_path set).
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        let mut options = sea_orm::ConnectOptions::new(self.url().to_string());
        options.sqlx_logging(false).max_connections(2);
        if let Database::Postgres { schema, .. } = self {
            options.set_schema_search_path(schema.clone());
        }
        sea_orm::Database::connect(options).await.expect("connect")
    }

    /// Drops a PostgreSQL schema created for the run.
    pub async fn cleanup(&self) {
        if let Database::Postgres { url, schema } = self {
            use sea_orm::ConnectionTrait;
            if let Ok(db) = sea_orm::Database::connect(url.as_str()).await {
                let _ = db
                    .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            }
        }
    }
}

/// The release service binary, configured for production-like runs.
pub type Service = ServiceProcess;

/// Starts the service on `db` with production settings (and `env` on top)
/// and waits until it listens.
pub fn start_service(db: &Database, env: &[(&str, &str)]) -> Service {
    start_service_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_sync-hostaway")),
        &manifest_dir().join("config"),
        db,
        env,
    )
}

/// `start_service` for another build of the binary, with its config directory.
pub fn start_service_with(
    bin: &std::path::Path,
    config_dir: &std::path::Path,
    db: &Database,
    env: &[(&str, &str)],
) -> Service {
    let mut command = Command::new(bin);
    command
        .arg("--config-dir")
        .arg(config_dir)
        .env("SYNC_HOSTAWAY_ENV", "production")
        .env("SYNC_HOSTAWAY__SERVER__HOST", "127.0.0.1")
        .env("SYNC_HOSTAWAY__SERVER__PORT", "0")
        .env("SYNC_HOSTAWAY__DATABASE__URL", db.url())
        .env("SYNC_HOSTAWAY__DATABASE__SCHEMA", db.schema())
        .env("SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("SYNC_HOSTAWAY__ADMIN__API_TOKEN", ADMIN_TOKEN)
        .env("SYNC_HOSTAWAY__WEBHOOKS__USERNAME", WEBHOOK_USER)
        .env("SYNC_HOSTAWAY__WEBHOOKS__PASSWORD", WEBHOOK_PASSWORD)
        .env("SYNC_HOSTAWAY__HOSTAWAY__BASE_URL", "http://127.0.0.1:9/v1")
        .env("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false")
        .env("SYNC_HOSTAWAY__SYNC__SCHEDULED", "false")
        .env(
            "SYNC_HOSTAWAY__TELEMETRY__LOG_FILTER",
            "warn,sync_hostaway::app=info",
        );
    for (key, value) in env {
        command.env(key, value);
    }
    ServiceProcess::start(command, Duration::from_secs(120))
}

/// Creates accounts through the admin API.
pub async fn create_accounts(
    http: &reqwest::Client,
    service: &Service,
    ids: impl Iterator<Item = i64>,
) {
    for id in ids {
        let response = http
            .post(service.url("/api/v1/hostaway/accounts?verify=false"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"account_id": id, "client_secret": "bench-secret"}))
            .send()
            .await
            .expect("admin API answers");
        assert_eq!(response.status(), 201, "account {id}");
    }
}

/// One line on the machine the figures come from.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {memory} RAM, measured {date}")
}

/// Replaces the section between `<!-- bench:NAME -->` and
/// `<!-- /bench:NAME -->` in docs/PERFORMANCE.md (appending it if absent),
/// only when asked: `cargo bench --bench NAME -- --write-docs` or
/// `BENCH_WRITE_DOCS=1`. Otherwise the figures are only printed.
pub fn write_section(name: &str, body: &str) {
    let asked = std::env::args().any(|a| a == "--write-docs")
        || std::env::var("BENCH_WRITE_DOCS").is_ok_and(|v| !v.is_empty() && v != "0");
    if !asked {
        println!("(docs/PERFORMANCE.md unchanged: pass --write-docs to record these figures)");
        return;
    }
    let path = manifest_dir().join("docs/PERFORMANCE.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Performance\n".into());
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &text[..a], section, &text[b + end.len()..])
        }
        _ => format!("{}\n{}\n", text.trim_end(), section),
    };
    std::fs::write(&path, updated).expect("PERFORMANCE.md is writable");
    println!("updated docs/PERFORMANCE.md section `{name}`");
}

/// Milliseconds with three decimals from a histogram recorded in microseconds.
pub fn ms(value_us: u64) -> String {
    format!("{:.2}", value_us as f64 / 1000.0)
}

/// CPU time (user + system, seconds) used so far by the processes of each
/// kind on this machine: the service's processes (`service`), PostgreSQL's,
/// HAProxy's, and this benchmark's own (the load generator).
#[derive(Clone, Copy, Default)]
pub struct CpuSeconds {
    pub service: f64,
    pub postgres: f64,
    pub haproxy: f64,
    pub generator: f64,
}

impl CpuSeconds {
    pub fn now(service: &[u32]) -> CpuSeconds {
        let mut cpu = CpuSeconds::default();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid … utime stime …": fields after the
            // command's closing parenthesis; utime and stime are the 12th
            // and 13th of them, in clock ticks (100 per second on Linux).
            let Some((head, tail)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = tail.split_whitespace().collect();
            let ticks: f64 = fields
                .get(11..13)
                .map(|t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
                .unwrap_or(0.0);
            let seconds = ticks / 100.0;
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            if service.contains(&pid) {
                cpu.service += seconds;
            } else if pid == me {
                cpu.generator += seconds;
            } else if comm == "postgres" {
                cpu.postgres += seconds;
            } else if comm == "haproxy" {
                cpu.haproxy += seconds;
            }
        }
        cpu
    }

    /// What was used since `before`, in microseconds per `events`:
    /// "service 210 µs, PostgreSQL 95 µs, …".
    pub fn per_event_since(&self, before: &CpuSeconds, events: u64) -> String {
        let per = |now: f64, then: f64| (now - then) * 1e6 / events.max(1) as f64;
        let mut parts = vec![
            format!("service {:.0} µs", per(self.service, before.service)),
            format!("PostgreSQL {:.0} µs", per(self.postgres, before.postgres)),
        ];
        if self.haproxy > before.haproxy {
            parts.push(format!(
                "HAProxy {:.0} µs",
                per(self.haproxy, before.haproxy)
            ));
        }
        parts.push(format!(
            "load generator {:.0} µs",
            per(self.generator, before.generator)
        ));
        parts.join(", ")
    }
}
