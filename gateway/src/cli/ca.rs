//! `gateway ca init`: the node CA (节点证书) for MQTT over TLS.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Make the node CA under {storage.data_dir}/ca/ (ca.pem, ca.key);
    /// refused if one exists.
    Init {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `gateway ca init`.
pub(crate) fn ca_command(command: CaCommand) -> ExitCode {
    let CaCommand::Init { config } = command;
    match gateway::commissioning::ca::cli_init(&config, gateway::domain::time::now_ms() / 1000) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
