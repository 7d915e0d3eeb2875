//! The `sync-hostaway` command line: `serve` (default), `migrate`, `sync`.

// The one exception, measured and explained below: `allocator`.
#![deny(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use sync_hostaway::actors::ActorSystem;
use sync_hostaway::app::Application;
use sync_hostaway::config::Settings;
use sync_hostaway::context::Core;
use sync_hostaway::lifecycle::Accounts;
use sync_hostaway::sync::{SyncMode, SyncRequest};
use sync_hostaway::{store, telemetry};

// The binary allocates many short-lived JSON trees per webhook: mimalloc
// keeps that cheap, and returns freed pages at once (see `allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
mod allocator {
    /// mimalloc's `mi_option_purge_delay` (the C enum value in the bundled
    /// mimalloc v3; the Rust bindings do not name it; checked by a test).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    /// By default mimalloc purges freed pages only while it keeps allocating,
    /// so an idle service holds on to its start-up peak. Purge at once.
    pub fn return_freed_memory_promptly() {
        // SAFETY: setting an option is a store into mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_option_is_the_purge_delay() {
            // SAFETY: reading an option. Its default in mimalloc v3 is 1000 ms.
            let value = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
            assert_eq!(value, 1000, "mimalloc's option numbering changed");
        }
    }
}

#[derive(Parser)]
#[command(
    name = "sync-hostaway",
    version,
    about = "Keeps a SQL mirror of Hostaway accounts fresh"
)]
struct Cli {
    /// Directory with default.toml and the environment files; each file
    /// there replaces its built-in twin (default: ./config when present).
    #[arg(
        long,
        global = true,
        env = "SYNC_HOSTAWAY_CONFIG_DIR",
        value_name = "DIR"
    )]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one sync of an account in the foreground and print its counts.
    Sync {
        /// The Hostaway account id.
        #[arg(long)]
        account: i64,
        /// Read everything instead of reconciling changes since the last sync.
        #[arg(long)]
        full: bool,
        /// Fetch and count, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    allocator::return_freed_memory_promptly();
    let cli = Cli::parse();
    let settings = Settings::load(cli.config_dir.as_deref()).context("invalid configuration")?;
    let command = cli.command.unwrap_or(Command::Serve);
    // The service logs to stdout; one-shot commands keep stdout for their output.
    let telemetry = match command {
        Command::Serve => telemetry::init(&settings.telemetry, settings.environment),
        _ => {
            telemetry::init_with_writer(&settings.telemetry, settings.environment, std::io::stderr)
        }
    }
    .context("could not start telemetry")?;
    let result = match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Sync {
            account,
            full,
            dry_run,
        } => sync_once(settings, account, full, dry_run).await,
    };
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "exiting with an error");
    }
    telemetry.shutdown().await;
    result
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings)
        .await
        .context("startup failed")?;
    app.run_until_stopped().await.context("server error")?;
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = store::connect(&settings.database).await?;
    store::migrate(&db).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn sync_once(
    settings: Settings,
    account: i64,
    full: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    if settings.cluster.enabled {
        anyhow::bail!(
            "cluster.enabled is set: a sync in a separate process would race the replica that \
             owns account {account}; ask the running service instead \
             (POST /api/v1/hostaway/accounts/{account}/sync)"
        );
    }
    let core = Arc::new(Core::open(settings).await.context("startup failed")?);
    let actors = ActorSystem::start(core.clone(), false);
    let request = SyncRequest {
        mode: if full {
            SyncMode::Full
        } else {
            SyncMode::Incremental
        },
        dry_run,
    };
    let result = Accounts::new(&core, &actors)
        .run_sync(account, request)
        .await;
    actors.stop().await;
    let result = result?;
    let report = result.context("sync failed")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
