//! What an external broker needs from the registry: `mosquitto-export`
//! (`passwd`, `acl`, the node CA), `mosquitto-acl`, `rabbitmq-sync` and
//! `rabbitmq-export`.

use crate::Command;
use gateway::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// `rabbitmq-sync` and `rabbitmq-export` (gateway/src/rabbitmq.rs).
pub(crate) async fn rabbitmq_command(
    store: &gateway::store::Store,
    config: &Config,
    command: Command,
) -> ExitCode {
    let plan = match gateway::ingest::rabbitmq::plan_from_store(store, config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if config.mqtt.password.is_none() {
        eprintln!("注意：配置中没有 mqtt.password，网关自身的用户未写入 RabbitMQ");
    }
    if !plan.without_hash.is_empty() {
        eprintln!(
            "注意：以下节点的凭据签发于支持 RabbitMQ 之前，没有 RabbitMQ 密码散列，未写入；请用 node rotate 重新签发：{}",
            plan.without_hash.join(", ")
        );
    }
    match command {
        Command::RabbitmqExport { out, vhost, .. } => {
            let text = gateway::ingest::rabbitmq::definitions(&plan, &vhost).to_string();
            if let Err(e) = std::fs::write(&out, text) {
                eprintln!("无法写入 {}：{e}", out.display());
                return ExitCode::FAILURE;
            }
            println!(
                "已写入 {}（{} 个用户）；用 rabbitmqctl import_definitions 导入。导入不会删除已注销节点的用户：注销后请用 rabbitmq-sync",
                out.display(),
                plan.users.len()
            );
            ExitCode::SUCCESS
        }
        Command::RabbitmqSync {
            url,
            admin_user,
            vhost,
            ..
        } => {
            let Ok(password) = std::env::var("FIRE_RABBITMQ_ADMIN_PASSWORD") else {
                eprintln!("请在环境变量 FIRE_RABBITMQ_ADMIN_PASSWORD 中给出 RabbitMQ 管理员 {admin_user} 的密码");
                return ExitCode::from(2);
            };
            let client = gateway::tls::HttpClient::new_or_system(
                &config.tls,
                std::time::Duration::from_secs(15),
                "rabbitmq-sync",
            );
            let mut last = String::new();
            for base in &url {
                match gateway::ingest::rabbitmq::sync(
                    &client,
                    base,
                    (&admin_user, &password),
                    &vhost,
                    &plan,
                )
                .await
                {
                    Ok(r) => {
                        println!(
                            "RabbitMQ（{base}）已同步：{} 个用户；删除已注销节点的用户 {} 个，断开其连接 {} 个",
                            r.users,
                            r.deleted.len(),
                            r.connections_closed
                        );
                        return ExitCode::SUCCESS;
                    }
                    Err(e) => {
                        eprintln!("{base}：{e}");
                        last = e;
                    }
                }
            }
            eprintln!("RabbitMQ 未同步：{last}");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    }
}

/// Writes `passwd`, `acl` and the node CA (`ca.pem`) for an external
/// Mosquitto into `out`.
pub(crate) async fn mosquitto_export(
    store: &gateway::store::Store,
    config: &Config,
    out: &std::path::Path,
) -> ExitCode {
    let reg = match store.registry().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("无法读取节点登记：{e}");
            return ExitCode::FAILURE;
        }
    };
    let effective = gateway::commissioning::registry::effective(config, &reg);
    let user = config
        .mqtt
        .username
        .clone()
        .unwrap_or_else(|| "fire-gateway".into());
    let gateway_login = config.mqtt.password.as_deref().map(|p| (user.as_str(), p));
    if gateway_login.is_none() {
        eprintln!(
            "注意：配置中没有 mqtt.password，网关自身的用户 {user} 未写入 passwd；请用 mosquitto_passwd 另行添加"
        );
    }
    let passwd = match gateway::ingest::mosquitto::passwd(&reg, gateway_login) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let acl = gateway::ingest::mosquitto::acl(&effective, &user);
    let write = |name: &str, text: &str| -> std::io::Result<()> {
        std::fs::create_dir_all(out)?;
        let path = out.join(name);
        let tmp = out.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640))?;
        }
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write("passwd", &passwd).and_then(|_| write("acl", &acl)) {
        eprintln!("无法写入 {}：{e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "已写入 {0}/passwd（{1} 个用户）和 {0}/acl；在 mosquitto.conf 中设置 password_file 与 acl_file 后重新加载 Mosquitto（kill -HUP）",
        out.display(),
        passwd.lines().count()
    );
    // The node CA, for Mosquitto's certificate listener (tls.conf: cafile).
    match gateway::ingest::mosquitto::export_node_ca(&config.storage.data_dir, out) {
        Ok(Some(path)) => println!(
            "已写入节点 CA 证书 {}（tls.conf 中 8883 监听的 cafile）",
            path.display()
        ),
        Ok(None) => println!("no node CA: run `gateway ca init`（尚无节点 CA，未写入 ca.pem）"),
        Err(e) => {
            eprintln!("无法写入 {}/ca.pem：{e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `gateway mosquitto-acl`: prints the ACL for a configuration.
pub(crate) fn mosquitto_acl(config: PathBuf, gateway_user: Option<String>) -> ExitCode {
    match Config::load(&config) {
        Ok(c) => {
            let user = gateway_user
                .or(c.mqtt.username.clone())
                .unwrap_or_else(|| "fire-gateway".into());
            print!("{}", gateway::ingest::mosquitto::acl(&c, &user));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", config.display());
            ExitCode::from(2)
        }
    }
}
