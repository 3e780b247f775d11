//! `gateway demo`: the gateway on embedded defaults with simulated nodes
//! and a simulated Modbus monitor in two care homes.

use super::init_logs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `gateway demo`.
pub(crate) async fn run(http: SocketAddr, data_dir: PathBuf, duration: Option<u64>) -> ExitCode {
    init_logs();
    // Never a real installation's database: the demo would add its
    // accounts (published passwords) and simulated alarms to it.
    if let Err(e) = gateway::demo::claim_data_dir(&data_dir) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(http).await {
        Ok(l) => l,
        Err(_) => match tokio::net::TcpListener::bind((http.ip(), 0)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot open an HTTP port: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mqtt_port = match gateway::demo::free_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find a free port for the embedded broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mqtt = SocketAddr::from(([127, 0, 0, 1], mqtt_port));
    let mut config = gateway::demo::demo_config(mqtt, http, data_dir);
    // The simulated Modbus device is served before the gateway polls it,
    // and stops after the gateway (so the demo never ends on it offline).
    let sim_stop = CancellationToken::new();
    let modbus_sim = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => {
            if let Ok(addr) = l.local_addr() {
                gateway::demo::add_demo_modbus(&mut config, addr);
            }
            Some(tokio::spawn(gateway::demo::run_modbus_simulator(
                l,
                sim_stop.clone(),
            )))
        }
        Err(e) => {
            eprintln!("no simulated Modbus device (cannot open a port: {e})");
            None
        }
    };
    let printer_config = config.clone();
    let running = match gateway::app::start(config, listener).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = format!("http://{}", running.http_addr);
    let accounts = gateway::demo::ensure_demo_users(&running.store).await;
    println!("智慧用电监测网关 演示模式 / gateway demo");
    println!(
        "  内置 MQTT: {mqtt}    数据库: {}",
        printer_config.storage.database_url()
    );
    println!("  Web 控制台 console: {base}/    （值班台、隐患工单、监管端；用下面的演示账号登录）");
    println!("  报警列表 alarms:  {base}/api/v1/alarms");
    println!("  隐患工单 tickets: {base}/api/v1/tickets");
    println!("  实时事件 events:  {base}/api/v1/events    指标 metrics: {base}/metrics");
    println!("  模拟：阳光养老院、福星敬老院共 3 个 MQTT 节点和 1 台 Modbus 多回路监测仪（3号楼配电室）；");
    println!("        约 20 秒后监测仪第 9 回路探头短路（设备故障），约 35 秒后 2号楼厨房配电箱 漏电流超过 500 mA。按 Ctrl-C 退出。");
    match accounts {
        Ok(accounts) => {
            println!("  演示账号 demo users (login / password / role):");
            for (login, password, role) in &accounts.users {
                println!("    {login} / {password} / {role}");
            }
            println!(
                "  值班员令牌 duty token: export TOKEN={}",
                accounts.duty_token
            );
            println!("  例如: curl -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/tickets");
        }
        Err(e) => eprintln!("cannot create the demo users: {e}"),
    }

    let mut events = running.events.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            println!("{}", gateway::demo::describe(&ev, &printer_config));
        }
    });
    let stop = CancellationToken::new();
    let nodes: Vec<_> = gateway::demo::demo_nodes()
        .into_iter()
        .map(|n| tokio::spawn(n.run(mqtt, stop.clone())))
        .collect();
    match duration {
        Some(s) => {
            tokio::select! {
                _ = gateway::app::shutdown_signal() => {}
                _ = tokio::time::sleep(Duration::from_secs(s)) => {}
            }
        }
        None => gateway::app::shutdown_signal().await,
    }
    stop.cancel();
    for n in nodes {
        let _ = n.await;
    }
    running.shutdown().await;
    sim_stop.cancel();
    if let Some(sim) = modbus_sim {
        let _ = sim.await;
    }
    printer.abort();
    ExitCode::SUCCESS
}
