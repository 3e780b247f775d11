//! `gateway run` and `gateway check-config`.

use super::{init_logs, load_config};
use gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// `gateway check-config FILE`: every problem in the file, or a summary.
pub(crate) fn check_config(file: PathBuf) -> ExitCode {
    match Config::load(&file) {
        Ok(c) => {
            let nodes: usize = c.sites.iter().map(|s| s.nodes.len()).sum();
            for (path, warning) in c.warnings() {
                eprintln!("warning: {path}: {warning}");
            }
            println!(
                "{}: OK ({} sites, {nodes} nodes)",
                file.display(),
                c.sites.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// `gateway run -c FILE`: the gateway until a shutdown signal.
pub(crate) async fn run(config: PathBuf) -> ExitCode {
    init_logs();
    let config = match load_config(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for (path, warning) in config.warnings() {
        tracing::warn!(%path, "{warning}");
    }
    let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.http.listen);
            return ExitCode::FAILURE;
        }
    };
    let running = match gateway::app::start(config, listener).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    gateway::app::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}
