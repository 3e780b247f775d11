//! `gateway user add|list|disable|enable|passwd|sessions revoke`: users
//! (用户), their role and the sites they cover (the last five through
//! `gateway::user_admin`).

use super::{load_config, open_store};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user. The password is read from the environment variable
    /// GATEWAY_NEW_PASSWORD, or else from the first line of standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
        /// Display name, e.g. 张三.
        #[arg(long)]
        name: String,
        /// duty (值班员), site_manager (机构负责人), inspector (民政局监管),
        /// installer (安装人员), admin (管理员).
        #[arg(long)]
        role: String,
        /// Comma-separated site ids the user covers, or * for every site.
        #[arg(long)]
        sites: String,
    },
    /// List users: role, active or disabled, live sessions, sites.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Disable a user: no more logins, every session closed now.
    Disable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// Set a user's password (from GATEWAY_NEW_PASSWORD or the first line
    /// of standard input); every session of the user is closed.
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
    /// A user's sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
pub(crate) enum SessionsCommand {
    /// Close every session of a user: its tokens get 401 from now on.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        login: String,
    },
}

/// The new password: GATEWAY_NEW_PASSWORD, or the first line of standard input.
fn new_password() -> Result<String, ExitCode> {
    match std::env::var("GATEWAY_NEW_PASSWORD") {
        Ok(p) => Ok(p),
        Err(_) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("no password: set GATEWAY_NEW_PASSWORD or pipe it on standard input");
                return Err(ExitCode::from(2));
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
    }
}

/// `gateway user add`.
async fn user_add(
    config: PathBuf,
    login: String,
    name: String,
    role: String,
    sites: String,
) -> ExitCode {
    let config = match load_config(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(role) = gateway::auth::parse_role(&role) else {
        eprintln!("unknown role {role:?}: duty, site_manager, inspector, installer or admin");
        return ExitCode::from(2);
    };
    let sites = gateway::auth::parse_sites(&sites);
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Sites of the file and registered ones; an installer may also
    // be given a site that is yet to be registered.
    let registered = match store.registry().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read the registry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let known = gateway::commissioning::registry::effective(&config, &registered);
    if let Some(unknown) = sites
        .iter()
        .flatten()
        .find(|s| known.sites.iter().all(|c| &c.id != *s))
        .filter(|_| role != gateway::tickets::Role::Installer)
    {
        eprintln!("site {unknown:?} is not in the configuration");
        return ExitCode::from(2);
    }
    let password = match new_password() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match store
        .add_user(
            &login,
            &name,
            role,
            sites.as_deref(),
            &password,
            gateway::domain::time::now_ms(),
        )
        .await
    {
        Ok(id) => {
            println!("user {login} created (id {id})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot create user {login}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `gateway user list|disable|enable|passwd|sessions revoke`.
async fn user_admin(config: &std::path::Path, op: gateway::user_admin::UserOp) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match open_store(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match gateway::user_admin::run(&store, op, gateway::domain::time::now_ms()).await {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err((message, code)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

/// `gateway user …`.
pub(crate) async fn run(command: UserCommand) -> ExitCode {
    use gateway::user_admin::UserOp;
    let (config, op) = match command {
        UserCommand::Add {
            config,
            login,
            name,
            role,
            sites,
        } => return user_add(config, login, name, role, sites).await,
        UserCommand::List { config } => (config, UserOp::List),
        UserCommand::Disable { config, login } => (config, UserOp::Disable(login)),
        UserCommand::Enable { config, login } => (config, UserOp::Enable(login)),
        UserCommand::Passwd { config, login } => match new_password() {
            Ok(p) => (config, UserOp::Passwd(login, p)),
            Err(code) => return code,
        },
        UserCommand::Sessions {
            command: SessionsCommand::Revoke { config, login },
        } => (config, UserOp::RevokeSessions(login)),
    };
    user_admin(&config, op).await
}
