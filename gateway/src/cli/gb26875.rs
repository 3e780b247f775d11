//! `gateway gb26875 decode`: GB/T 26875.3 (消防远程监控中心) frames in words.

use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum Gb26875Command {
    /// Print the frames in hex bytes (e.g. from a packet capture) in words.
    Decode {
        /// Hex bytes; spaces, colons and 0x prefixes are allowed.
        #[arg(required = true)]
        hex: Vec<String>,
    },
}

/// `gateway gb26875 …`.
pub(crate) fn run(command: Gb26875Command) -> ExitCode {
    let Gb26875Command::Decode { hex } = command;
    use gateway::northbound::gb26875::describe;
    match describe::parse_hex(&hex.join(" ")) {
        Ok(bytes) => {
            print!("{}", describe::stream(&bytes));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("not hex bytes: {e}");
            ExitCode::from(2)
        }
    }
}
