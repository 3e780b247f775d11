//! `gateway audit verify`: the hash chain of the audit trail (留痕).

use super::{load_config, open_store};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify every record's hash and link; name the first broken record.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// `gateway audit …`.
pub(crate) async fn run(command: AuditCommand) -> ExitCode {
    let AuditCommand::Verify { config } = command;
    let config = match load_config(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.verify_audit().await {
        Ok(Ok((n, head))) => {
            println!("audit trail intact: {n} records; head {head}");
            ExitCode::SUCCESS
        }
        Ok(Err(broken)) => {
            eprintln!("audit trail BROKEN at {broken}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("cannot read the audit trail: {e}");
            ExitCode::FAILURE
        }
    }
}
