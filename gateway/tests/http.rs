//! The HTTP API against its OpenAPI document and its access rules: every
//! documented path is served and every served path documented; every
//! protected path answers 401 without a valid token and 403 outside the
//! caller's jurisdiction; bad parameters get a clear 400 in Chinese.

mod common;

use common::db::TestDb;
use gateway::config::Config;
use gateway::http::{router, AppState, OPENAPI};
use gateway::metrics::Metrics;
use gateway::store::{AlarmInput, AlarmKey, Store, TicketSpec};
use gateway::ticket::Role;
use std::sync::Arc;

struct Api {
    addr: std::net::SocketAddr,
    /// Tokens by login: `admin` (every site), `duty_a` (home_a), `duty_b` (home_b).
    tokens: std::collections::HashMap<&'static str, String>,
    alarm_a: i64,
    ticket_a: i64,
    _db: TestDb,
}

async fn serve(db: TestDb) -> Api {
    let dir = &db.dir;
    let store = Store::open(&db.url).await.unwrap();
    let mut config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n\
         [[sites]]\nid = \"home_b\"\nname = \"福星敬老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
    config.storage.data_dir = dir.path().to_path_buf();
    let now = gateway::time::now_ms();
    let mut tokens = std::collections::HashMap::new();
    for (login, role, sites) in [
        ("admin", Role::Admin, None),
        ("duty_a", Role::Duty, Some(vec!["home_a".to_string()])),
        ("duty_b", Role::Duty, Some(vec!["home_b".to_string()])),
    ] {
        store
            .add_user(login, login, role, sites.as_deref(), "a-long-password", now)
            .await
            .unwrap();
        tokens.insert(
            login,
            store
                .login(login, "a-long-password", now)
                .await
                .unwrap()
                .unwrap()
                .0,
        );
    }
    let key = AlarmKey {
        site: "home_a".into(),
        node: "n01".into(),
        channel: "rc1".into(),
        cause: "residual_current_high".into(),
    };
    let input = AlarmInput {
        key,
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(620),
        setpoint: Some(500),
        at: now,
        suppressed: false,
    };
    let spec = TicketSpec {
        source: "sensor_alarm",
        category: "electrical_fire",
        grade: "general",
        prefix: "YH",
        title: "剩余电流超限".into(),
        location: String::new(),
        reopen_window_ms: 0,
    };
    let (alarm, _) = store.raise(&input, Some(&spec)).await.unwrap();
    let (events, _) = tokio::sync::broadcast::channel(4);
    let (commands, _) = tokio::sync::mpsc::channel(4);
    let app = router(AppState {
        config: Arc::new(config),
        store,
        metrics: Arc::new(Metrics::default()),
        events,
        commands,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api {
        addr,
        tokens,
        alarm_a: alarm.id,
        ticket_a: alarm.ticket_id.unwrap(),
        _db: db,
    }
}

/// What the router serves, as (method, OpenAPI path).
const SERVED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/login"),
    ("get", "/api/v1/alarms"),
    ("post", "/api/v1/alarms/{id}/ack"),
    ("post", "/api/v1/alarms/{id}/reset"),
    ("get", "/api/v1/tickets"),
    ("get", "/api/v1/tickets/{id}"),
    ("post", "/api/v1/tickets/{id}/transitions"),
    ("post", "/api/v1/tickets/{id}/evidence"),
    ("get", "/api/v1/evidence/{hash}"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/ledger.csv"),
    ("get", "/api/v1/reports/monthly"),
    ("get", "/api/v1/events"),
];

/// Open without a token.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/login",
];

#[test]
fn openapi_documents_exactly_what_is_served() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

async fn call(
    api: &Api,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let url = format!("http://{}{path}", api.addr);
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
    // The event stream never ends: read only the status.
    let text = if path.ends_with("/events") {
        String::new()
    } else {
        resp.text().await.unwrap()
    };
    (status, text)
}

fn concrete(api: &Api, path: &str) -> String {
    let id = if path.contains("alarms") {
        api.alarm_a
    } else {
        api.ticket_a
    };
    let path = path.replace("{id}", &id.to_string());
    if path.ends_with("/monthly") {
        format!("{path}?month=2026-11")
    } else {
        path
    }
}

async fn every_protected_path_needs_a_valid_token(db: TestDb) {
    let api = serve(db).await;
    for (method, path) in SERVED {
        let url = concrete(&api, path);
        if PUBLIC.contains(path) {
            continue;
        }
        for token in [None, Some("not-a-token"), Some("")] {
            let (status, body) = call(&api, method, &url, token, Some("{}")).await;
            assert_eq!(status, 401, "{method} {url} with {token:?}: {body}");
            assert!(url.ends_with("/events") || body.contains("登录"), "{body}");
        }
    }
    for path in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        assert_eq!(call(&api, "get", path, None, None).await.0, 200, "{path}");
    }
}

async fn every_path_keeps_to_the_callers_jurisdiction(db: TestDb) {
    let api = serve(db).await;
    let outsider = api.tokens["duty_b"].as_str();
    let insider = api.tokens["duty_a"].as_str();
    // Acting on or reading one record of another site: 403.
    let transition = r#"{"step":{"action":"register","grade":"general"}}"#;
    for (method, path, body) in [
        ("get", format!("/api/v1/tickets/{}", api.ticket_a), None),
        (
            "post",
            format!("/api/v1/tickets/{}/transitions", api.ticket_a),
            Some(transition),
        ),
        ("post", format!("/api/v1/alarms/{}/ack", api.alarm_a), None),
        (
            "post",
            format!("/api/v1/alarms/{}/reset", api.alarm_a),
            None,
        ),
        ("get", "/api/v1/ledger.csv?site=home_a".to_string(), None),
        (
            "get",
            "/api/v1/reports/monthly?month=2026-11&site=home_a".to_string(),
            None,
        ),
    ] {
        let (status, text) = call(&api, method, &path, Some(outsider), body).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        assert!(text.contains("管辖范围"), "{text}");
    }
    // Lists are filtered rather than refused.
    for path in [
        "/api/v1/alarms?state=all",
        "/api/v1/tickets",
        "/api/v1/sites",
    ] {
        let (_, theirs) = call(&api, "get", path, Some(outsider), None).await;
        let (_, ours) = call(&api, "get", path, Some(insider), None).await;
        assert!(!theirs.contains("home_a"), "{path}: {theirs}");
        assert!(ours.contains("home_a"), "{path}: {ours}");
    }
    let (_, csv) = call(&api, "get", "/api/v1/ledger.csv", Some(outsider), None).await;
    assert_eq!(csv.lines().count(), 1, "headings only: {csv}");
    // Within the jurisdiction the same calls work, with the caller's name and role.
    let (status, text) = call(
        &api,
        "post",
        &format!("/api/v1/alarms/{}/ack", api.alarm_a),
        Some(insider),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"acked_by\":\"duty_a\""), "{text}");
    let (status, text) = call(
        &api,
        "post",
        &format!("/api/v1/tickets/{}/transitions", api.ticket_a),
        Some(insider),
        Some(transition),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // Roles still apply within the jurisdiction: an admin signs off nothing.
    let admin = api.tokens["admin"].as_str();
    let (status, _) = call(
        &api,
        "post",
        &format!("/api/v1/alarms/{}/ack", api.alarm_a),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, 403);
}

async fn login_gives_a_token_and_refuses_bad_passwords_alike(db: TestDb) {
    let api = serve(db).await;
    let (status, text) = call(
        &api,
        "post",
        "/api/v1/login",
        None,
        Some(r#"{"login":"duty_a","password":"a-long-password"}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"]["role"], "duty");
    assert_eq!(
        call(&api, "get", "/api/v1/sites", Some(token), None)
            .await
            .0,
        200
    );
    for bad in [
        r#"{"login":"duty_a","password":"wrong-password"}"#,
        r#"{"login":"nobody","password":"a-long-password"}"#,
    ] {
        let (status, text) = call(&api, "post", "/api/v1/login", None, Some(bad)).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("用户名或密码错误"));
    }
}

async fn bad_parameters_are_a_clear_400_and_missing_records_a_404(db: TestDb) {
    let api = serve(db).await;
    let t = Some(api.tokens["admin"].as_str());
    for path in [
        "/api/v1/alarms?state=bogus",
        "/api/v1/tickets?status=bogus",
        "/api/v1/tickets/not-a-number",
        "/api/v1/ledger.csv?from=2026-02-30",
        "/api/v1/ledger.csv?grade=huge",
        "/api/v1/ledger.csv?bogus=1",
        "/api/v1/reports/monthly",
        "/api/v1/reports/monthly?month=2026-13",
        "/api/v1/reports/monthly?month=2026-11&format=pdf",
    ] {
        let (status, body) = call(&api, "get", path, t, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("无效") || body.contains("未知"),
            "{path}: {body}"
        );
    }
    assert_eq!(
        call(&api, "get", "/api/v1/tickets/42", t, None).await.0,
        404
    );
    assert_eq!(
        call(
            &api,
            "post",
            "/api/v1/alarms/42/ack",
            Some(api.tokens["duty_a"].as_str()),
            None
        )
        .await
        .0,
        404
    );
    let (status, csv) = call(
        &api,
        "get",
        "/api/v1/ledger.csv?site=home_a&from=2026-01-01&to=2026-12-31&status=open",
        t,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("\u{feff}编号,"));
}

async fn upload(api: &Api, token: &str, media: &str, body: Vec<u8>, query: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/tickets/{}/evidence{query}",
            api.addr, api.ticket_a
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn evidence_is_stored_by_hash_checked_and_kept_to_the_jurisdiction(db: TestDb) {
    let api = serve(db).await;
    let (a, b) = (api.tokens["duty_a"].as_str(), api.tokens["duty_b"].as_str());
    let mut photo = vec![0xFF, 0xD8, 0xFF, 0xE0];
    photo.extend(std::iter::repeat_n(7u8, 4096));
    let (status, text) = upload(
        &api,
        a,
        "image/jpeg",
        photo.clone(),
        "?note=%E6%95%B4%E6%94%B9%E5%90%8E",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let row: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hash = row["content_hash"].as_str().unwrap().to_string();
    assert_eq!(
        (
            row["kind"].as_str(),
            row["size"].as_i64(),
            row["note"].as_str()
        ),
        (Some("file"), Some(4100), Some("整改后"))
    );
    let (status, _) = upload(
        &api,
        a,
        "application/json",
        r#"{"note":"已更换电缆"}"#.as_bytes().to_vec(),
        "",
    )
    .await;
    assert_eq!(status, 200);
    // A file that is not what it says, or not a photo or document at all.
    assert_eq!(upload(&api, a, "image/png", photo.clone(), "").await.0, 415);
    assert_eq!(
        upload(&api, a, "text/html", b"<script>".to_vec(), "")
            .await
            .0,
        415
    );
    let mut huge = vec![0xFF, 0xD8, 0xFF];
    huge.resize(10 * 1024 * 1024 + 10, 0);
    assert_eq!(upload(&api, a, "image/jpeg", huge, "").await.0, 413);
    // Another site's user can neither attach nor read.
    assert_eq!(
        upload(&api, b, "image/jpeg", photo.clone(), "").await.0,
        403
    );
    assert_eq!(
        call(
            &api,
            "get",
            &format!("/api/v1/evidence/{hash}"),
            Some(b),
            None
        )
        .await
        .0,
        403
    );
    // The owner reads it back byte for byte; the ticket lists both pieces.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/evidence/{hash}", api.addr))
        .header("authorization", format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), photo);
    let (_, detail) = call(
        &api,
        "get",
        &format!("/api/v1/tickets/{}", api.ticket_a),
        Some(a),
        None,
    )
    .await;
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["evidence"].as_array().unwrap().len(), 2);
    assert_eq!(
        call(
            &api,
            "get",
            "/api/v1/evidence/..%2F..%2Fetc%2Fpasswd",
            Some(a),
            None
        )
        .await
        .0,
        404
    );
}

crate::on_both_backends!(
    every_protected_path_needs_a_valid_token,
    every_path_keeps_to_the_callers_jurisdiction,
    login_gives_a_token_and_refuses_bad_passwords_alike,
    bad_parameters_are_a_clear_400_and_missing_records_a_404,
    evidence_is_stored_by_hash_checked_and_kept_to_the_jurisdiction,
);
