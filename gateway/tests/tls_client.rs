//! The HTTP(S) client of the notifier and the sink (`gateway::tls`)
//! against a real TLS server with certificates from a CA made here: the
//! CA given as `[tls] extra_ca_file` → answered; the CA not given, a
//! certificate for another name, an expired certificate → refused before
//! any request is sent, with an error that says it was the certificate and
//! names the server without the URL's path and query (a robot's key).

mod common;

use axum::routing::post;
use axum::serve::Listener as _;
use axum::Router;
use common::tls::{ServerCert, TestCa, TlsListener};
use gateway::tls::{HttpClient, TlsConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serves `POST /robot/send` (echoing the body) over TLS with `cert`;
/// returns the base URL and how many requests arrived.
async fn serve(cert: &ServerCert, host: &str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/robot/send",
        post(move |body: String| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            format!("got {body}")
        }),
    );
    let listener = TlsListener::bind(cert).await;
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("https://{host}:{port}"), hits)
}

fn client(extra_ca: Option<std::path::PathBuf>) -> HttpClient {
    let tls = TlsConfig {
        extra_ca_file: extra_ca,
    };
    HttpClient::new(&tls, Duration::from_secs(5)).expect("client")
}

/// Sends to `base` and returns the error's text, checking it is a
/// certificate error that does not quote the path or the key.
async fn certificate_refused(client: &HttpClient, base: &str) -> String {
    let e = client
        .post(&format!("{base}/robot/send?access_token=SECRET"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect_err("the certificate must be refused");
    let text = e.to_string();
    assert!(e.is_certificate(), "{text}");
    assert!(
        text.starts_with(&format!(
            "{base}: TLS: the server's certificate is not accepted: invalid peer certificate: "
        )),
        "{text}"
    );
    assert!(
        !text.contains("SECRET") && !text.contains("/robot"),
        "{text}"
    );
    text
}

#[tokio::test]
async fn the_server_is_verified_by_ca_name_and_date() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("fire-gateway test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let trusting = client(Some(ca_file.clone()));

    // Trusted: the request arrives and the answer is read.
    let (base, hits) = serve(&ca.server(&["127.0.0.1", "localhost"]), "127.0.0.1").await;
    let resp = trusting
        .post(&format!("{base}/robot/send?access_token=k"))
        .body("hello")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "got hello");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The same server without its CA: the system store does not know it.
    let text = certificate_refused(&client(None), &base).await;
    assert!(text.contains("UnknownIssuer"), "{text}");

    // Signed by the trusted CA, but for another name.
    let (other, other_hits) = serve(&ca.server(&["tsdb.bureau.example"]), "127.0.0.1").await;
    let text = certificate_refused(&trusting, &other).await;
    assert!(text.contains("not valid for name \"127.0.0.1\""), "{text}");

    // Signed by the trusted CA, for this name, but expired.
    let (old, old_hits) = serve(&ca.expired_server(&["127.0.0.1"]), "127.0.0.1").await;
    let text = certificate_refused(&trusting, &old).await;
    assert!(text.contains("expired"), "{text}");

    // A DNS name works as well as an address.
    let (named, _) = serve(&ca.server(&["localhost"]), "localhost").await;
    let resp = trusting
        .post(&format!("{named}/robot/send"))
        .body("by name")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.text().await.unwrap(), "got by name");

    // Nothing reached a server whose certificate was refused.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    assert_eq!(old_hits.load(Ordering::SeqCst), 0);
}

/// A plain-http URL still works through the same client (a sink or SMS
/// gateway on the LAN), and an unreachable server is a transport error,
/// not a certificate error.
#[tokio::test]
async fn plain_http_and_unreachable_servers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/write", post(|body: String| async move { body }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = client(None);
    let resp = c
        .post(&format!("http://{addr}/write"))
        .body("line")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.text().await.unwrap(), "line");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = c
        .post(&format!("https://{closed}/x?key=SECRET"))
        .send()
        .await
        .expect_err("nothing listens there");
    assert!(!e.is_certificate(), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("https://{closed}: ")) && !text.contains("SECRET"),
        "{text}"
    );
}
