//! PostgreSQL over TLS: a server of this test's own (`ssl = on`, a
//! certificate for `localhost` from a CA made here) reached with
//! `sslmode=verify-full`: the CA given as the URL's `sslrootcert` or as
//! `[tls] extra_ca_file` → connected, over TLS; the CA not given, or the
//! server reached by a name its certificate does not carry → refused;
//! `sslmode=require` (TLS without verification) → refused before
//! connecting. A missing PostgreSQL fails loudly, naming the package.

mod common;

use common::db::{as_pg_user, bin_dir, init_cluster, is_root};
use common::tls::TestCa;
use gateway::config::Config;
use gateway::store::Store;
use std::path::PathBuf;
use std::process::Stdio;

/// A PostgreSQL server with `ssl = on`, stopped when dropped.
struct SslServer {
    port: u16,
    pg_ctl: PathBuf,
    data: PathBuf,
    root: bool,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SslServer {
    fn start(ca: &TestCa) -> (SslServer, PathBuf) {
        let bin = bin_dir();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("gateway-test-pg-tls")
            .tempdir()
            .expect("temp dir");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let server = ca.server(&["localhost"]);
        let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
        std::fs::write(&cert, &server.cert_pem).expect("write");
        std::fs::write(&key, &server.key_pem).expect("write");
        {
            use std::os::unix::fs::PermissionsExt;
            // PostgreSQL refuses a key others can read.
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let data = init_cluster(&bin, dir.path(), root);
        let pg_ctl = bin.join("pg_ctl");
        let log = dir.path().join("server.log");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let opts = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
                 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.path().display(),
                cert.display(),
                key.display()
            );
            let started = as_pg_user(&pg_ctl, root)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run pg_ctl");
            if started.success() {
                let server = SslServer {
                    port,
                    pg_ctl,
                    data,
                    root,
                    log,
                    _dir: dir,
                };
                return (server, ca_file);
            }
        }
        panic!(
            "PostgreSQL with ssl = on did not start; its log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }
}

impl Drop for SslServer {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.pg_ctl, self.root)
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether this store's connection is encrypted, as the server sees it.
async fn over_tls(store: &Store) -> bool {
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_ssl");
    ssl
}

fn refused(result: Result<Store, gateway::store::StoreError>) -> String {
    match result {
        Ok(_) => panic!("connected"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn postgres_over_tls_with_verify_full() {
    let ca = TestCa::new("fire-gateway PostgreSQL test CA");
    let (server, ca_file) = SslServer::start(&ca);
    let log = || std::fs::read_to_string(&server.log).unwrap_or_default();

    // The CA as the URL's sslrootcert.
    let url = server.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
    );
    let store = Store::open(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    assert!(over_tls(&store).await, "connected without TLS");
    store.close().await;

    // The CA as [tls] extra_ca_file, through the configuration.
    let config = Config::from_toml(&format!(
        "[storage]\ndatabase_url = \"{}\"\n[tls]\nextra_ca_file = \"{}\"\n",
        server.url("localhost", "sslmode=verify-full"),
        ca_file.display()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&config.database_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    assert!(over_tls(&store).await, "connected without TLS");
    store.close().await;

    // Without the CA: the system store does not know it.
    let e = refused(Store::open(&server.url("localhost", "sslmode=verify-full")).await);
    assert!(e.contains("UnknownIssuer"), "{e}");

    // The right CA, but a name the certificate does not carry.
    let e = refused(
        Store::open(&server.url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
        ))
        .await,
    );
    assert!(
        e.contains("certificate not valid for name \"127.0.0.1\""),
        "{e}"
    );

    // TLS without verification is not offered at all.
    let e = refused(Store::open(&server.url("localhost", "sslmode=require")).await);
    assert!(e.contains("sslmode=require does not verify"), "{e}");
    drop(server);
}
