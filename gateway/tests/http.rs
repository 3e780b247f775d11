//! The HTTP API against its OpenAPI document and its access rules: every
//! documented path is served and every served path documented; the document
//! is well-formed OpenAPI 3.1; every protected path answers 401 without a
//! valid token; a record of another site answers 404 as a missing one
//! does, a site outside the jurisdiction 403; bad parameters get
//! a clear 400 in Chinese.

mod common;

use common::db::TestDb;
use gateway::api::{router, AppState, OPENAPI};
use gateway::config::Config;
use gateway::metrics::Metrics;
use gateway::store::{AlarmInput, AlarmKey, Store, TicketSpec};
use gateway::tickets::Role;
use serde_json::{json, Value};
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
    let now = gateway::domain::time::now_ms();
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
    let config = Arc::new(config);
    let live = gateway::live::Live::load(config.clone(), store.clone(), None)
        .await
        .unwrap();
    let app = router(AppState {
        config,
        store,
        metrics: Arc::new(Metrics::default()),
        stream: events.clone(),
        events,
        commands,
        live,
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
    ("get", "/"),
    ("get", "/console/{file}"),
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
    ("post", "/api/v1/sites"),
    ("get", "/api/v1/sites/{site}/nodes"),
    ("post", "/api/v1/sites/{site}/nodes"),
    ("post", "/api/v1/sites/{site}/nodes/{node}/credentials"),
    ("post", "/api/v1/sites/{site}/nodes/{node}/revoke"),
    ("get", "/api/v1/notifications"),
    ("get", "/api/v1/trends/daily-max"),
    ("get", "/api/v1/readings/latest"),
    ("get", "/api/v1/sites/risk"),
    ("get", "/api/v1/trends/weekly"),
    ("get", "/api/v1/shift-log"),
    ("post", "/api/v1/shift-log"),
    ("post", "/api/v1/sites/{site}/nodes/{node}/selftest"),
    ("get", "/api/v1/selftests"),
    ("get", "/api/v1/selftests/{id}"),
    ("get", "/api/v1/sites/{site}/baselines"),
    ("get", "/api/v1/sites/{site}/commissioning"),
    ("get", "/api/v1/sites/{site}/commissioning.csv"),
    ("get", "/api/v1/sites/{site}/commissioning.html"),
    ("post", "/api/v1/sites/{site}/commissioning/sign-off"),
    (
        "post",
        "/api/v1/sites/{site}/nodes/{node}/channels/{channel}/setpoints",
    ),
    ("get", "/api/v1/ledger.csv"),
    ("get", "/api/v1/reports/monthly"),
    ("get", "/api/v1/events"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users/{login}/disable"),
    ("post", "/api/v1/users/{login}/enable"),
    ("post", "/api/v1/users/{login}/password"),
    ("post", "/api/v1/users/{login}/sessions/revoke"),
    ("get", "/api/v1/northbound/gb26875"),
    ("post", "/api/v1/northbound/gb26875/duty-checks/{id}/answer"),
];

/// Open without a token.
const PUBLIC: &[&str] = &[
    "/",
    "/console/{file}",
    "/healthz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/login",
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(&OPENAPI).expect("the document is JSON")
}

/// Every operation of the document: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (key, op) in item.as_object().expect("path item") {
            if METHODS.contains(&key.as_str()) {
                ops.push((key.clone(), path.clone(), op.clone()));
            }
        }
    }
    ops.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    ops
}

#[test]
fn openapi_documents_exactly_what_is_served() {
    let doc = document();
    let documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let mut served: Vec<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // Protected operations need the bearer token and say what happens
    // without it; public ones need nothing.
    for (method, path, op) in operations(&doc) {
        if PUBLIC.contains(&path.as_str()) {
            let security = op.get("security").and_then(Value::as_array);
            assert!(
                security.is_none_or(|s| s.is_empty()),
                "{method} {path} is public but documented with {security:?}"
            );
        } else {
            assert_eq!(
                op["security"],
                json!([{ "bearer": [] }]),
                "{method} {path} needs the bearer token"
            );
            assert!(op["responses"].get("401").is_some(), "{method} {path}: 401");
        }
    }
}

/// The router answers every documented operation with its handler (not the
/// router's own 404 or 405), answers 405 to every other method on those
/// paths, and 404 elsewhere; every operation documented as protected
/// answers 401 without a token.
#[tokio::test]
async fn the_router_serves_the_documented_operations_and_no_others() {
    let api = serve(TestDb::sqlite()).await;
    let doc = document();
    let client = reqwest::Client::new();
    for (method, path, op) in operations(&doc) {
        let url = format!("http://{}{}", api.addr, concrete(&api, &path));
        let resp = client
            .request(method.to_uppercase().parse().unwrap(), &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if op.get("security").is_some() {
            assert_eq!(status, 401, "{method} {path}");
        } else {
            assert!(![404, 405].contains(&status), "{method} {path}: {status}");
        }
        for other in ["get", "post", "put", "delete", "patch"] {
            if doc["paths"][&path].get(other).is_some() {
                continue;
            }
            // With a token: the token check runs before the method check.
            let resp = client
                .request(other.to_uppercase().parse().unwrap(), &url)
                .header("authorization", format!("Bearer {}", api.tokens["admin"]))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status().as_u16(),
                405,
                "{other} {path} is not documented"
            );
        }
    }
    for path in [
        "/index.html",
        "/console/",
        "/console/index.html",
        "/console/nope.js",
        "/console/..%2Fsrc%2Fhttp.rs",
        "/api/v1",
        "/api/v1/openapi.yaml",
        "/api/v1/user",
    ] {
        let (status, _) = call(&api, "get", path, Some(&api.tokens["admin"]), None).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// `http` registers routes only with `utoipa_axum::routes!`, which puts each
/// route in the document too; axum cannot list a router's routes, so this
/// guards the one way around it: a plain `.route(…)`, `.route_service(…)`,
/// `.nest_service(…)` or an `axum::Router` built anywhere in the gateway.
#[test]
fn routes_are_registered_only_with_their_documentation() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for bypass in [
            ".route(",
            ".route_service(",
            ".nest_service(",
            ".fallback_service(",
            "Router::new(",
            "routing::get",
            "routing::post",
        ] {
            assert!(
                !src.contains(bypass),
                "{} uses {bypass}: register routes with utoipa_axum::routes! so they are documented",
                path.display()
            );
        }
    }
}

/// Every `$ref` in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == "$ref" {
                    out.push((
                        at.to_string(),
                        x.as_str().expect("a $ref is a string").into(),
                    ));
                } else {
                    refs(x, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Checks a schema object and the schemas within it for OpenAPI 3.1
/// (JSON Schema 2020-12): known types, no 3.0 `nullable`, non-empty
/// compositions, required properties that exist.
fn check_schema(v: &Value, at: &str) {
    const TYPES: &[&str] = &[
        "string", "number", "integer", "boolean", "array", "object", "null",
    ];
    let Some(map) = v.as_object() else {
        assert!(v.is_boolean(), "{at}: a schema is an object or a boolean");
        return;
    };
    assert!(
        !map.contains_key("nullable"),
        "{at}: `nullable` is OpenAPI 3.0; 3.1 uses type [\"…\", \"null\"]"
    );
    if let Some(t) = map.get("type") {
        let ok = match t {
            Value::String(t) => TYPES.contains(&t.as_str()),
            Value::Array(ts) => ts
                .iter()
                .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))),
            _ => false,
        };
        assert!(ok, "{at}: type {t}");
    }
    if let Some(values) = map.get("enum") {
        assert!(
            values.as_array().is_some_and(|v| !v.is_empty()),
            "{at}: enum"
        );
    }
    let props = map.get("properties").and_then(Value::as_object);
    for name in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        assert!(
            props.is_some_and(|p| p.contains_key(name.as_str().unwrap())),
            "{at}: required {name} is not a property"
        );
    }
    for (name, s) in props.into_iter().flatten() {
        check_schema(s, &format!("{at}/properties/{name}"));
    }
    for list in ["oneOf", "allOf", "anyOf", "prefixItems"] {
        if let Some(xs) = map.get(list) {
            let xs = xs.as_array().expect("a list of schemas");
            assert!(!xs.is_empty(), "{at}/{list}");
            for (i, s) in xs.iter().enumerate() {
                check_schema(s, &format!("{at}/{list}/{i}"));
            }
        }
    }
    for one in ["items", "additionalProperties", "not"] {
        if let Some(s) = map.get(one) {
            check_schema(s, &format!("{at}/{one}"));
        }
    }
}

#[test]
fn the_document_is_well_formed_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    for key in doc.as_object().unwrap().keys() {
        assert!(
            [
                "openapi",
                "info",
                "jsonSchemaDialect",
                "servers",
                "paths",
                "webhooks",
                "components",
                "security",
                "tags",
                "externalDocs",
            ]
            .contains(&key.as_str()),
            "unknown top-level field {key}"
        );
    }
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(doc["info"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));

    // Every reference points at something in the document.
    let mut all = Vec::new();
    refs(&doc, "#", &mut all);
    assert!(!all.is_empty());
    for (at, target) in &all {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not local"));
        assert!(
            pointer.starts_with("/components/"),
            "{at}: {target} is not a component"
        );
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: {target} does not exist"
        );
    }
    for kind in ["schemas", "responses"] {
        for name in doc["components"][kind].as_object().unwrap().keys() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)),
                "component name {name}"
            );
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        check_schema(schema, &format!("#/components/schemas/{name}"));
    }

    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (name, scheme) in schemes {
        assert!(
            ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]
                .contains(&scheme["type"].as_str().unwrap()),
            "{name}"
        );
    }
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();

    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => doc.pointer(&r[1..]).unwrap().clone(),
            None => v.clone(),
        }
    };
    let mut operation_ids = std::collections::HashSet::new();
    for (method, path, op) in operations(&doc) {
        let here = format!("{method} {path}");
        assert!(path.starts_with('/'), "{here}");
        if let Some(id) = op.get("operationId") {
            assert!(
                operation_ids.insert(id.clone()),
                "{here}: operationId {id} twice"
            );
        }
        for tag in op["tags"].as_array().into_iter().flatten() {
            assert!(
                tags.contains(&tag.as_str().unwrap()),
                "{here}: tag {tag} undeclared"
            );
        }
        // Parameters: valid places, unique, and the path's templates exactly
        // the required path parameters.
        let mut seen = std::collections::HashSet::new();
        let mut in_path = Vec::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = resolve(p);
            let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
            assert!(
                ["query", "header", "path", "cookie"].contains(&place),
                "{here}: {name} in {place}"
            );
            assert!(
                seen.insert((name.to_string(), place.to_string())),
                "{here}: {name} twice"
            );
            assert!(
                p.get("schema").is_some() != p.get("content").is_some(),
                "{here}: {name} needs a schema or a content, not both"
            );
            if let Some(schema) = p.get("schema") {
                check_schema(schema, &format!("{here} {name}"));
            }
            if place == "path" {
                assert_eq!(p["required"], true, "{here}: path parameter {name}");
                in_path.push(name.to_string());
            }
        }
        let mut templated: Vec<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(String::from)
            .collect();
        templated.sort();
        in_path.sort();
        assert_eq!(
            templated, in_path,
            "{here}: path templates vs path parameters"
        );
        if let Some(body) = op.get("requestBody") {
            let body = resolve(body);
            let content = body["content"].as_object().expect("request content");
            assert!(!content.is_empty(), "{here}: empty request body");
            for (media, m) in content {
                assert!(media.contains('/'), "{here}: media type {media}");
                if let Some(schema) = m.get("schema") {
                    check_schema(schema, &format!("{here} body {media}"));
                }
            }
        }
        // Responses: status codes, each with a description.
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{here}: no responses");
        for (code, r) in responses {
            let valid = code == "default"
                || (code.len() == 3
                    && ('1'..='5').contains(&code.chars().next().unwrap())
                    && (code[1..].chars().all(|c| c.is_ascii_digit()) || &code[1..] == "XX"));
            assert!(valid, "{here}: status {code}");
            let r = resolve(r);
            assert!(r["description"].is_string(), "{here} {code}: description");
            for (media, m) in r["content"].as_object().into_iter().flatten() {
                assert!(media.contains('/'), "{here} {code}: media type {media}");
                if let Some(schema) = m.get("schema") {
                    check_schema(schema, &format!("{here} {code} {media}"));
                }
            }
        }
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(name), "{here}: scheme {name}");
            }
        }
    }
}

/// What the document promises about the bodies, checked against the code's
/// own lists.
#[test]
fn the_document_carries_the_codes_and_media_types_the_code_uses() {
    let doc = document();
    let evidence = &doc["paths"]["/api/v1/tickets/{id}/evidence"]["post"]["requestBody"]["content"];
    let mut files: Vec<&str> = evidence
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|m| *m != "application/json")
        .collect();
    let mut accepted = gateway::tickets::evidence::MEDIA_TYPES.to_vec();
    files.sort();
    accepted.sort();
    assert_eq!(files, accepted);
    let statuses: Vec<&str> = gateway::domain::labels::TICKET_STATUSES
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(
        doc["components"]["schemas"]["Status"]["enum"],
        json!(statuses)
    );
    let filter = doc["paths"]["/api/v1/tickets"]["get"]["parameters"][0]["schema"]["enum"]
        .as_array()
        .unwrap();
    for s in &statuses {
        assert!(filter.contains(&json!(s)), "{s}");
    }
    assert_eq!(
        doc["paths"]["/api/v1/alarms"]["get"]["parameters"][0]["schema"]["enum"],
        json!(gateway::api::ALARM_FILTERS)
    );
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
    let path = path
        .replace("{id}", &id.to_string())
        .replace("{file}", "app.js");
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

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let api = serve(TestDb::sqlite()).await;
    let resp = reqwest::get(format!("http://{}/api/v1/openapi.json", api.addr))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), OPENAPI.as_str());
}

async fn every_path_keeps_to_the_callers_jurisdiction(db: TestDb) {
    let api = serve(db).await;
    let outsider = api.tokens["duty_b"].as_str();
    let insider = api.tokens["duty_a"].as_str();
    // A record of another site asked for by its id answers exactly as an id
    // that does not exist: 404, the same body (a 403 would reveal the id).
    let transition = r#"{"step":{"action":"register","grade":"general"}}"#;
    let missing = 987_654_321i64;
    for (method, path, body) in [
        ("get", "/api/v1/tickets/{t}", None),
        ("post", "/api/v1/tickets/{t}/transitions", Some(transition)),
        (
            "post",
            "/api/v1/tickets/{t}/evidence",
            Some(r#"{"note":"现场照片"}"#),
        ),
        ("post", "/api/v1/alarms/{a}/ack", None),
        ("post", "/api/v1/alarms/{a}/reset", None),
    ] {
        let real = path
            .replace("{t}", &api.ticket_a.to_string())
            .replace("{a}", &api.alarm_a.to_string());
        let absent = path
            .replace("{t}", &missing.to_string())
            .replace("{a}", &missing.to_string());
        let (status, text) = call(&api, method, &real, Some(outsider), body).await;
        let (status_absent, text_absent) = call(&api, method, &absent, Some(outsider), body).await;
        assert_eq!(status, 404, "{method} {real}: {text}");
        assert_eq!(
            (
                status,
                text.replace(&api.ticket_a.to_string(), "ID")
                    .replace(&api.alarm_a.to_string(), "ID")
            ),
            (
                status_absent,
                text_absent.replace(&missing.to_string(), "ID")
            ),
            "{method} {real} differs from an id that does not exist"
        );
        assert!(
            !text.contains("home_a") && !text.contains("管辖范围"),
            "{text}"
        );
    }
    // A site named in the query outside the jurisdiction: 403, whether or
    // not the site exists.
    for (method, path, body) in [
        ("get", "/api/v1/ledger.csv?site=home_a".to_string(), None),
        (
            "get",
            "/api/v1/trends/daily-max?site=home_a".to_string(),
            None,
        ),
        (
            "get",
            "/api/v1/reports/monthly?month=2026-11&site=home_a".to_string(),
            None,
        ),
        (
            "get",
            "/api/v1/ledger.csv?site=no_such_home".to_string(),
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
        "/api/v1/sites/risk",
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
    // Another site's user can neither attach nor read, and is told no more
    // than for a file or ticket that does not exist.
    assert_eq!(
        upload(&api, b, "image/jpeg", photo.clone(), "").await.0,
        404
    );
    let (status, theirs) = call(
        &api,
        "get",
        &format!("/api/v1/evidence/{hash}"),
        Some(b),
        None,
    )
    .await;
    let absent = call(
        &api,
        "get",
        &format!("/api/v1/evidence/{}", "0".repeat(64)),
        Some(b),
        None,
    )
    .await;
    assert_eq!((status, theirs), absent);
    assert_eq!(absent.0, 404);
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

async fn handover_notes_are_kept_to_the_jurisdiction_and_the_duty_roles(db: TestDb) {
    let api = serve(db).await;
    let (a, b, admin) = (
        api.tokens["duty_a"].as_str(),
        api.tokens["duty_b"].as_str(),
        api.tokens["admin"].as_str(),
    );
    let note = r#"{"site":"home_a","text":"2号楼厨房回路漏电流报警已确认，电工明早8点到场"}"#;
    let (status, text) = call(&api, "post", "/api/v1/shift-log", Some(a), Some(note)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"author\":\"duty_a\""), "{text}");
    let (status, text) = call(&api, "post", "/api/v1/shift-log", Some(b), Some(note)).await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = call(&api, "post", "/api/v1/shift-log", Some(admin), Some(note)).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("交接班"), "{text}");
    let empty = r#"{"site":"home_a","text":"  "}"#;
    let (status, _) = call(&api, "post", "/api/v1/shift-log", Some(a), Some(empty)).await;
    assert_eq!(status, 400);
    let (_, ours) = call(&api, "get", "/api/v1/shift-log", Some(a), None).await;
    assert!(ours.contains("电工明早8点到场"), "{ours}");
    let (_, theirs) = call(&api, "get", "/api/v1/shift-log", Some(b), None).await;
    assert_eq!(theirs, "[]");
    let (status, _) = call(&api, "get", "/api/v1/shift-log?site=home_a", Some(b), None).await;
    assert_eq!(status, 403);
}

async fn weekly_counts_cover_all_the_data_within_the_jurisdiction(db: TestDb) {
    let api = serve(db).await;
    let (a, b) = (api.tokens["duty_a"].as_str(), api.tokens["duty_b"].as_str());
    let (status, text) = call(&api, "get", "/api/v1/trends/weekly?weeks=4", Some(a), None).await;
    assert_eq!(status, 200, "{text}");
    let w: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(w["weeks"].as_array().unwrap().len(), 4);
    // This week: the fixture's alarm and the ticket it opened.
    assert_eq!(w["alarms"]["electrical_fire"][3], 1, "{w}");
    assert_eq!(w["tickets"]["opened"][3], 1, "{w}");
    assert_eq!(w["tickets"]["closed"][3], 0, "{w}");
    let (_, text) = call(&api, "get", "/api/v1/trends/weekly?weeks=4", Some(b), None).await;
    let w: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(w["alarms"]["electrical_fire"][3], 0, "{w}");
    let (status, _) = call(
        &api,
        "get",
        "/api/v1/trends/weekly?site=home_a",
        Some(b),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(&api, "get", "/api/v1/trends/weekly?weeks=0", Some(a), None).await;
    assert_eq!(status, 400);
}

/// The ledger export holds the caller's sites only: the jurisdiction is
/// part of the query, so other sites' rows are never loaded.
async fn the_ledger_holds_only_the_callers_sites(db: TestDb) {
    let api = serve(db).await;
    // A hazard on home_b beside the one on home_a.
    let store = Store::open(&api._db.url).await.unwrap();
    let input = AlarmInput {
        key: AlarmKey {
            site: "home_b".into(),
            node: "n01".into(),
            channel: "rc2".into(),
            cause: "residual_current_high".into(),
        },
        kind: "electrical_fire",
        level: "alarm",
        quantity: Some("residual_current"),
        value: Some(640),
        setpoint: Some(500),
        at: gateway::domain::time::now_ms(),
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
    store.raise(&input, Some(&spec)).await.unwrap();
    store.close().await;

    let rows = |csv: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap_or_default().to_string())
            .collect()
    };
    for (login, want) in [
        ("duty_a", vec!["阳光养老院"]),
        ("duty_b", vec!["福星敬老院"]),
        ("admin", vec!["阳光养老院", "福星敬老院"]),
    ] {
        let (status, csv) = call(
            &api,
            "get",
            "/api/v1/ledger.csv?status=all",
            Some(api.tokens[login].as_str()),
            None,
        )
        .await;
        assert_eq!(status, 200, "{login}: {csv}");
        assert_eq!(rows(&csv), want, "{login}: {csv}");
    }
    let (_, csv) = call(
        &api,
        "get",
        "/api/v1/ledger.csv?site=home_b",
        Some(api.tokens["admin"].as_str()),
        None,
    )
    .await;
    assert_eq!(rows(&csv), ["福星敬老院"], "{csv}");
}

crate::on_both_backends!(
    weekly_counts_cover_all_the_data_within_the_jurisdiction,
    the_ledger_holds_only_the_callers_sites,
    handover_notes_are_kept_to_the_jurisdiction_and_the_duty_roles,
    every_protected_path_needs_a_valid_token,
    every_path_keeps_to_the_callers_jurisdiction,
    login_gives_a_token_and_refuses_bad_passwords_alike,
    bad_parameters_are_a_clear_400_and_missing_records_a_404,
    evidence_is_stored_by_hash_checked_and_kept_to_the_jurisdiction,
);

/// The console's page and files: their media types, revalidation by ETag
/// (304 until the gateway changes), and the page's security headers.
#[tokio::test]
async fn the_console_is_served_with_its_types_and_cache_headers() {
    let api = serve(TestDb::sqlite()).await;
    let client = reqwest::Client::new();
    for (path, media) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/charts.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let url = format!("http://{}{path}", api.addr);
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], media, "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let etag = h["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(!resp.bytes().await.unwrap().is_empty());
        let again = client
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        let stale = client
            .get(&url)
            .header("if-none-match", "\"0\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200, "{path}");
    }
    let page = client
        .get(format!("http://{}/", api.addr))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let text = page.text().await.unwrap();
    assert!(text.contains("<html lang=\"zh-CN\">") && text.contains("智慧用电监测平台"));
}
