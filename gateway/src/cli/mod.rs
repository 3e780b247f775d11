//! The `gateway` command's subcommands, one file per group; `main.rs`
//! parses the command line and dispatches here.

pub(crate) mod audit;
pub(crate) mod brokers;
pub(crate) mod ca;
pub(crate) mod demo;
pub(crate) mod gb26875;
pub(crate) mod registry;
pub(crate) mod run;
pub(crate) mod users;

use gateway::config::Config;
use std::process::ExitCode;

/// Loads and validates a configuration file, printing every problem (exit 2).
pub(crate) fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprint!("{}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// Opens the configured database (running its migrations).
pub(crate) async fn open_store(config: &Config) -> Result<gateway::store::Store, ExitCode> {
    gateway::store::Store::open(&config.database_url())
        .await
        .map_err(|e| {
            eprintln!("cannot open the database: {e}");
            ExitCode::FAILURE
        })
}

/// Logs go to stderr (stdout is the demo's duty-desk view). The embedded
/// broker's own logs are off by default: it reports ordinary client
/// disconnects as errors. `RUST_LOG` overrides.
pub(crate) fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Who acts from the command line, for the audit trail.
pub(crate) fn cli_actor_name() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}
