//! The HTTP API against its OpenAPI document: every documented path is
//! served, every served path is documented, and bad parameters get a clear
//! 400 in Chinese rather than a 500.

use gateway::config::Config;
use gateway::http::{router, AppState, OPENAPI};
use gateway::metrics::Metrics;
use gateway::store::Store;
use std::sync::Arc;

async fn serve() -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("h.db").display()))
        .await
        .unwrap();
    let config = Config::from_toml(
        "[[sites]]\nid = \"home_a\"\nname = \"阳光养老院\"\n[[sites.nodes]]\nid = \"n01\"\n",
    )
    .unwrap();
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
    (addr, dir)
}

/// What the router serves, as (method, OpenAPI path).
const SERVED: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/alarms"),
    ("post", "/api/v1/alarms/{id}/ack"),
    ("post", "/api/v1/alarms/{id}/reset"),
    ("get", "/api/v1/tickets"),
    ("get", "/api/v1/tickets/{id}"),
    ("post", "/api/v1/tickets/{id}/transitions"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/ledger.csv"),
    ("get", "/api/v1/reports/monthly"),
    ("get", "/api/v1/events"),
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

#[tokio::test]
async fn every_documented_get_without_parameters_answers() {
    let (addr, _dir) = serve().await;
    for (method, path) in SERVED {
        if *method != "get"
            || path.contains('{')
            || path.ends_with("/events")
            || path.ends_with("/monthly")
        {
            continue;
        }
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let text = reqwest::get(format!("http://{addr}/api/v1/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["info"]["version"], "1.0.0");
}

#[tokio::test]
async fn bad_parameters_are_a_clear_400_and_missing_records_a_404() {
    let (addr, _dir) = serve().await;
    let client = reqwest::Client::new();
    for path in ["/api/v1/alarms?state=bogus", "/api/v1/tickets?status=bogus"] {
        let resp = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(body["message"].as_str().unwrap().contains("未知"), "{body}");
    }
    let resp = client
        .get(format!("http://{addr}/api/v1/tickets/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .post(format!("http://{addr}/api/v1/alarms/42/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .post(format!("http://{addr}/api/v1/alarms/42/ack"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"by":"{}"}}"#, "长".repeat(65)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .get(format!("http://{addr}/api/v1/tickets/not-a-number"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
