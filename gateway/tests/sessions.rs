//! Sessions and users (issue 14, item 7), against a running gateway on both
//! backends: logout revokes the token; an administrator disables a user,
//! whose open event stream then closes within the re-check interval (set to
//! 1 s here; at most 60 s by configuration); revoking a user's sessions and
//! setting a new password end its tokens (401); the same from the command
//! line while the gateway runs; expired sessions are pruned.

mod common;

use common::db::TestDb;
use gateway::config::Config;
use gateway::store::Store;
use gateway::tickets::Role;
use serde_json::Value;
use std::time::{Duration, Instant};

struct Gw {
    running: gateway::app::Running,
    base: String,
    config_file: std::path::PathBuf,
}

async fn start(db: &TestDb) -> Gw {
    let broker = gateway::demo::free_port().unwrap();
    let text = format!(
        "[http]\nsession_recheck_secs = 1\n[storage]\ndata_dir = \"{dir}\"\ndatabase_url = \"{url}\"\n\
         [mqtt]\nembedded_listen = \"127.0.0.1:{broker}\"\nclient_id = \"sessions-test\"\n\
         [[sites]]\nid = \"home_a\"\n[[sites.nodes]]\nid = \"n01\"\n",
        dir = db.dir.path().display(),
        url = db.url,
    );
    let config_file = db.dir.path().join("gateway.toml");
    std::fs::write(&config_file, &text).unwrap();
    let config = Config::from_toml(&text).unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gateway::app::start(config, http).await.unwrap();
    let now = gateway::domain::time::now_ms();
    for (login, role, sites) in [
        ("admin", Role::Admin, None),
        ("duty", Role::Duty, Some(vec!["home_a".to_string()])),
    ] {
        running
            .store
            .add_user(
                login,
                login,
                role,
                sites.as_deref(),
                "right-password-1",
                now,
            )
            .await
            .unwrap();
    }
    Gw {
        base: format!("http://{}", running.http_addr),
        running,
        config_file,
    }
}

async fn call(
    gw: &Gw,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", gw.base);
    let mut req = if method == "post" {
        client.post(url)
    } else {
        client.get(url)
    };
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn login(gw: &Gw, login: &str, password: &str) -> Option<String> {
    let (status, body) = call(
        gw,
        "post",
        "/api/v1/login",
        None,
        Some(serde_json::json!({"login": login, "password": password})),
    )
    .await;
    (status == 200).then(|| body["token"].as_str().unwrap().to_string())
}

/// Opens the event stream with `token`; the task returns the SSE event
/// names it saw once the gateway closes the stream.
async fn open_stream(gw: &Gw, token: &str) -> tokio::task::JoinHandle<Vec<String>> {
    let mut resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", gw.base))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("event:"))
            .map(|e| e.trim().to_string())
            .collect()
    })
}

/// Waits for the stream to be closed by the gateway; how long it took.
async fn closed_within(
    stream: tokio::task::JoinHandle<Vec<String>>,
    from: Instant,
) -> (Vec<String>, Duration) {
    let events = tokio::time::timeout(Duration::from_secs(15), stream)
        .await
        .expect("the event stream stayed open")
        .unwrap();
    (events, from.elapsed())
}

async fn sessions_end_by_logout_disable_revoke_and_new_password(db: TestDb) {
    let gw = start(&db).await;
    let admin = login(&gw, "admin", "right-password-1").await.unwrap();
    let t1 = login(&gw, "duty", "right-password-1").await.unwrap();
    let t2 = login(&gw, "duty", "right-password-1").await.unwrap();
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t2), None).await.0,
        200
    );

    // Logout: that token is dead at once, the other session lives.
    let (status, _) = call(&gw, "post", "/api/v1/logout", Some(&t2), None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&gw, "get", "/api/v1/alarms", Some(&t2), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t1), None).await.0,
        200
    );

    // Only an administrator manages users.
    let (status, body) = call(&gw, "get", "/api/v1/users", Some(&t1), None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("管理员"));
    let (status, _) = call(&gw, "post", "/api/v1/users/admin/disable", Some(&t1), None).await;
    assert_eq!(status, 403);

    // Disabling the user closes its open event stream at the next check.
    let stream = open_stream(&gw, &t1).await;
    let disabled_at = Instant::now();
    let (status, body) = call(
        &gw,
        "post",
        "/api/v1/users/duty/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["sessions"], 0);
    let (events, took) = closed_within(stream, disabled_at).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("session_ended"),
        "{events:?}"
    );
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t1), None).await.0,
        401
    );
    assert!(
        login(&gw, "duty", "right-password-1").await.is_none(),
        "a disabled user logs in"
    );
    // An administrator cannot lock themselves out.
    let (status, _) = call(
        &gw,
        "post",
        "/api/v1/users/admin/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &gw,
        "post",
        "/api/v1/users/nobody/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Enabled again; revoking its sessions ends the new token.
    let (status, _) = call(&gw, "post", "/api/v1/users/duty/enable", Some(&admin), None).await;
    assert_eq!(status, 200);
    let t3 = login(&gw, "duty", "right-password-1").await.unwrap();
    let stream = open_stream(&gw, &t3).await;
    let revoked_at = Instant::now();
    let (status, body) = call(
        &gw,
        "post",
        "/api/v1/users/duty/sessions/revoke",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!((status, &body["closed"]), (200, &Value::from(1)), "{body}");
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t3), None).await.0,
        401
    );
    let (events, took) = closed_within(stream, revoked_at).await;
    assert_eq!(events.last().map(String::as_str), Some("session_ended"));
    assert!(took < Duration::from_secs(5), "closed after {took:?}");

    // A new password: too short refused; then the old one no longer works.
    let t4 = login(&gw, "duty", "right-password-1").await.unwrap();
    let (status, _) = call(
        &gw,
        "post",
        "/api/v1/users/duty/password",
        Some(&admin),
        Some(serde_json::json!({"password": "short"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &gw,
        "post",
        "/api/v1/users/duty/password",
        Some(&admin),
        Some(serde_json::json!({"password": "new-password-2"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t4), None).await.0,
        401
    );
    assert!(login(&gw, "duty", "right-password-1").await.is_none());
    assert!(login(&gw, "duty", "new-password-2").await.is_some());

    let (status, users) = call(&gw, "get", "/api/v1/users", Some(&admin), None).await;
    assert_eq!(status, 200);
    let duty = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["login"] == "duty")
        .unwrap();
    assert_eq!(
        (duty["disabled"].clone(), duty["sessions"].clone()),
        (Value::from(false), Value::from(1))
    );
    // Every change is in the audit trail, with who made it, and the chain holds.
    let audit = gw.running.store.audit_records().await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|r| r.subject == "user:duty" && r.actor == "admin")
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "user.disable",
            "user.enable",
            "user.sessions.revoke",
            "user.password"
        ]
    );
    assert!(gw.running.store.verify_audit().await.unwrap().is_ok());
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_event_streams_closed_total 2"),
        "{metrics}"
    );
    gw.running.shutdown().await;
}

async fn expired_sessions_are_pruned(db: TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let now = gateway::domain::time::now_ms();
    store
        .add_user("duty", "duty", Role::Duty, None, "right-password-1", now)
        .await
        .unwrap();
    let old = now - gateway::auth::SESSION_MS - 60_000;
    let (stale, _) = store
        .login("duty", "right-password-1", old)
        .await
        .unwrap()
        .unwrap();
    store
        .login("duty", "right-password-1", old)
        .await
        .unwrap()
        .unwrap();
    assert!(store.user_by_token(&stale, now).await.unwrap().is_none());
    assert_eq!(store.prune_sessions(now).await.unwrap(), 2);
    assert_eq!(store.prune_sessions(now).await.unwrap(), 0);
    // Each login also clears what has expired by then.
    store
        .login("duty", "right-password-1", old)
        .await
        .unwrap()
        .unwrap();
    let (fresh, _) = store
        .login("duty", "right-password-1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.prune_sessions(now).await.unwrap(), 0);
    assert!(store.user_by_token(&fresh, now).await.unwrap().is_some());
    assert_eq!(store.users(now).await.unwrap()[0].sessions, 1);
}

crate::on_both_backends!(
    sessions_end_by_logout_disable_revoke_and_new_password,
    expired_sessions_are_pruned,
);

fn cli(config: &std::path::Path, args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.arg("user").args(args).arg("--config").arg(config);
    if let Some(p) = password {
        c.env("GATEWAY_NEW_PASSWORD", p);
    }
    c.output().unwrap()
}

async fn cli_async(
    config: &std::path::Path,
    args: &[&str],
    password: Option<&str>,
) -> (bool, String, String) {
    let (config, args, password): (_, Vec<String>, _) = (
        config.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect(),
        password.map(str::to_string),
    );
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&config, &args, password.as_deref())
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's commands on the gateway's machine act on the running
/// gateway's users: a disabled user's open event stream closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disables_enables_revokes_and_resets_users_of_a_running_gateway() {
    let db = TestDb::sqlite();
    let gw = start(&db).await;
    let f = gw.config_file.as_path();
    let t1 = login(&gw, "duty", "right-password-1").await.unwrap();
    let stream = open_stream(&gw, &t1).await;
    let at = Instant::now();
    let (ok, out, err) = cli_async(f, &["disable", "--login", "duty"], None).await;
    assert!(ok, "{out}{err}");
    let (events, took) = closed_within(stream, at).await;
    assert_eq!(events.last().map(String::as_str), Some("session_ended"));
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    let (ok, out, _) = cli_async(f, &["list"], None).await;
    assert!(ok);
    let line = out
        .lines()
        .find(|l| l.starts_with("duty "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("disabled"), "{out}");
    assert!(login(&gw, "duty", "right-password-1").await.is_none());

    let (ok, _, _) = cli_async(f, &["enable", "--login", "duty"], None).await;
    assert!(ok);
    let t2 = login(&gw, "duty", "right-password-1").await.unwrap();
    let (ok, out, _) = cli_async(f, &["sessions", "revoke", "--login", "duty"], None).await;
    assert!(ok && out.contains("1 session(s)"), "{out}");
    assert_eq!(
        call(&gw, "get", "/api/v1/alarms", Some(&t2), None).await.0,
        401
    );

    let (ok, _, err) = cli_async(f, &["passwd", "--login", "duty"], Some("short")).await;
    assert!(!ok && err.contains("password"), "{err}");
    let (ok, _, _) = cli_async(f, &["passwd", "--login", "duty"], Some("cli-password-3")).await;
    assert!(ok);
    assert!(login(&gw, "duty", "right-password-1").await.is_none());
    assert!(login(&gw, "duty", "cli-password-3").await.is_some());
    let (ok, _, err) = cli_async(f, &["disable", "--login", "nobody"], None).await;
    assert!(!ok && err.contains("no user"), "{err}");
    let cli_actions = gw
        .running
        .store
        .audit_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == "cli")
        .count();
    assert_eq!(cli_actions, 4);
    gw.running.shutdown().await;
}

#[test]
fn the_recheck_interval_is_at_most_a_minute() {
    for (secs, ok) in [(0, false), (1, true), (60, true), (61, false)] {
        let text = format!("[http]\nsession_recheck_secs = {secs}\n");
        assert_eq!(Config::from_toml(&text).is_ok(), ok, "{secs}");
    }
    assert_eq!(Config::default().http.session_recheck_secs, 60);
}
