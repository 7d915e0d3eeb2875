//! The `sync-hostaway` command line: `serve` (default), `migrate`, `sync`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sync_hostaway::app::Application;
use sync_hostaway::config::Settings;
use sync_hostaway::{store, telemetry};

#[derive(Parser)]
#[command(
    name = "sync-hostaway",
    version,
    about = "Keeps a SQL mirror of Hostaway accounts fresh"
)]
struct Cli {
    /// Directory holding default.toml and the environment files.
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
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config_dir.as_deref()).context("invalid configuration")?;
    let telemetry = telemetry::init(&settings.telemetry, settings.environment)
        .context("could not start telemetry")?;
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
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
