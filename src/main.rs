//! The `sync-hostaway` command line: `serve` (default), `migrate`, `sync`,
//! `accounts`.

// The one exception, measured and explained below: `allocator`.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use sync_hostaway::actors::ActorSystem;
use sync_hostaway::app::Application;
use sync_hostaway::cli::{self, AccountsCommand, CliError, Target};
use sync_hostaway::config::Settings;
use sync_hostaway::context::Core;
use sync_hostaway::errors::one_message;
use sync_hostaway::lifecycle::Accounts;
use sync_hostaway::sync::progress::Snapshot;
use sync_hostaway::sync::{SyncMode, SyncRequest};
use sync_hostaway::{store, telemetry};

// The binary allocates many short-lived buffers per webhook: mimalloc
// keeps that cheap, and returns freed pages promptly (see `allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
mod allocator {
    /// mimalloc's `mi_option_purge_delay` (the C enum value in the bundled
    /// mimalloc v3; the Rust bindings do not name it; checked by a test).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    /// By default mimalloc purges freed pages a second after they were
    /// freed, and only while it keeps allocating, so an idle service held
    /// on to its start-up peak (99 MiB with 1,000 accounts). 10 ms: pages
    /// freed and taken again within a burst of webhooks stay mapped (purging
    /// at once cost 8 % of the service's CPU under load in page faults),
    /// and idle memory stays where purging at once kept it.
    pub fn return_freed_memory_promptly() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            // The operator chose (mimalloc reads it at start).
            return;
        }
        // SAFETY: setting an option is a store into mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10) }
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
    /// Sync one account and print its report: asks the running service
    /// (progress shown while it runs) unless --standalone.
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
        /// Run the sync in this process instead of the service (with the
        /// service stopped: it would not share its rate limiter or order).
        #[arg(long)]
        standalone: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the OpenAPI 3.1 description of the HTTP API (docs/openapi.json).
    Openapi,
    /// Manage accounts through the running service's admin API.
    Accounts {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        command: AccountsCommand,
    },
}

#[actix_web::main]
async fn main() -> ExitCode {
    allocator::return_freed_memory_promptly();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config_dir.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("sync-hostaway: invalid configuration: {err}");
            return ExitCode::from(cli::exit::BAD_INPUT);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        print!("{}", sync_hostaway::http::openapi::document_json());
        return ExitCode::SUCCESS;
    }
    if let Command::Accounts { target, command } = command {
        return report_exit(cli::run_accounts(&settings, &target, command).await);
    }
    if let Command::Sync {
        account,
        full,
        dry_run,
        standalone: false,
        target,
    } = &command
    {
        let every = std::time::Duration::from_secs(settings.sync.progress_log_secs.max(1));
        let outcome = async {
            let client = cli::AdminClient::for_settings(&settings, target.url.as_deref())?;
            let answer = client
                .sync_and_watch(*account, *full, *dry_run, every)
                .await?;
            Ok(if target.json {
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            } else {
                cli::report(&answer)
            })
        };
        return report_exit(outcome.await);
    }
    match run(settings, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Prints a CLI command's output, or its one-line error, and its exit code.
fn report_exit(outcome: Result<String, CliError>) -> ExitCode {
    match outcome {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sync-hostaway: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// The service and the commands that open the database themselves.
async fn run(settings: Settings, command: Command) -> anyhow::Result<()> {
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
            ..
        } => sync_once(settings, account, full, dry_run).await,
        Command::Accounts { .. } | Command::Openapi => {
            unreachable!("answered before the service's own set-up")
        }
    };
    if let Err(err) = &result {
        let message = one_message(err.chain());
        tracing::error!(error = message, "exiting with an error");
        eprintln!("sync-hostaway: {message}");
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
    tracing::warn!(
        account,
        "running the sync in this process: a running service would not count its requests \
         in its rate limiter nor order its writes with the webhooks it applies; stop the \
         service first, or drop --standalone to ask it"
    );
    let every = std::time::Duration::from_secs(settings.sync.progress_log_secs.max(1));
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
    let progress = || async {
        let row = store::accounts::find(&core.db, account).await.ok()??;
        serde_json::from_value::<Snapshot>(row.sync_progress?).ok()
    };
    let accounts = Accounts::new(&core, &actors);
    let run = accounts.run_sync(account, request);
    let result = cli::watch(account, run, progress, every).await;
    actors.stop().await;
    let result = result?;
    let report = result.context("sync failed")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
