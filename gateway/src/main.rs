//! `gateway`: run the monitoring gateway, run the demo, or check a configuration file.
//!
//! This file is the command line and its dispatch; each group of
//! subcommands lives in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use cli::audit::AuditCommand;
use cli::ca::CaCommand;
use cli::gb26875::Gb26875Command;
use cli::registry::{NodeCommand, SiteCommand};
use cli::users::UserCommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, not glibc's malloc: the alarm path allocates and frees small
/// rows and strings across threads, where glibc's arenas spent a fifth of
/// an alarm storm's CPU (see ARCHITECTURE.md, "Alarm-path benchmark").
#[global_allocator]
static HEAP: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Electrical-fire and fire-facility monitoring gateway (智慧用电/消防设施监测网关)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run on embedded defaults with simulated nodes in two care homes.
    Demo {
        /// HTTP API address (falls back to a free port if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "./data/demo")]
        data_dir: PathBuf,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_secs: Option<u64>,
    },
    /// Validate a configuration file and print every problem in it.
    CheckConfig { file: PathBuf },
    /// Manage users (用户): their role and the sites they cover.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check the hash chain of the audit trail (留痕) in the configured database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Register sites (机构) beside those of the configuration file.
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Register nodes (节点) and manage their MQTT credentials.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The node CA (节点证书): client certificates for MQTT over TLS.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Write `passwd` and `acl` for an external Mosquitto into a directory:
    /// every node with active credentials, each limited to its own topics;
    /// and the node CA's certificate as `ca.pem`, when there is one.
    MosquittoExport {
        #[arg(long, short)]
        config: PathBuf,
        /// Directory to write `passwd` and `acl` into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring a RabbitMQ cluster's users in line with the registry through
    /// its management API (issue 16): a user per node with active
    /// credentials, limited to its own topics; the gateway's own user;
    /// revoked nodes' users deleted and their connections closed. The
    /// administrator's password comes from FIRE_RABBITMQ_ADMIN_PASSWORD.
    RabbitmqSync {
        #[arg(long, short)]
        config: PathBuf,
        /// Management API, e.g. http://10.0.0.11:15672; repeat for each
        /// broker: the first that answers is used.
        #[arg(long, required = true)]
        url: Vec<String>,
        #[arg(long, default_value = "admin")]
        admin_user: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Write the same users as a RabbitMQ definitions file (for
    /// `rabbitmqctl import_definitions`). Importing never deletes users:
    /// use rabbitmq-sync for revocations.
    RabbitmqExport {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Print the Mosquitto ACL for a configuration: each node may publish
    /// only under its own fire/v1/{site}/{node}/.
    MosquittoAcl {
        #[arg(long, short)]
        config: PathBuf,
        /// The gateway's own MQTT username (default: mqtt.username, else fire-gateway).
        #[arg(long)]
        gateway_user: Option<String>,
    },
    /// GB/T 26875.3 (消防远程监控中心) tools for installers.
    Gb26875 {
        #[command(subcommand)]
        command: Gb26875Command,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    gateway::heap::no_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        c @ (Command::Site { .. }
        | Command::Node { .. }
        | Command::MosquittoExport { .. }
        | Command::RabbitmqSync { .. }
        | Command::RabbitmqExport { .. }) => cli::registry::registry_command(c).await,
        Command::Ca { command } => cli::ca::ca_command(command),
        Command::Gb26875 { command } => cli::gb26875::run(command),
        Command::CheckConfig { file } => cli::run::check_config(file),
        Command::MosquittoAcl {
            config,
            gateway_user,
        } => cli::brokers::mosquitto_acl(config, gateway_user),
        Command::User { command } => cli::users::run(command).await,
        Command::Audit { command } => cli::audit::run(command).await,
        Command::Run { config } => cli::run::run(config).await,
        Command::Demo {
            http,
            data_dir,
            duration_secs,
        } => cli::demo::run(http, data_dir, duration_secs).await,
    }
}
