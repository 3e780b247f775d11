//! Test databases, so that every store-backed test runs against both
//! backends: a SQLite file in the test's own directory, or a fresh database
//! on a throwaway PostgreSQL server that this test process starts.
//!
//! The PostgreSQL server belongs to the test process: `initdb` into a temp
//! directory, a free port on 127.0.0.1, fsync off. A watchdog started in its
//! own process group reads a pipe whose write end only this process holds;
//! when the process ends, however it ends, the pipe closes and the watchdog
//! stops the server and removes its directory. Each test gets its own
//! database on that server. A missing PostgreSQL fails the test loudly,
//! naming the package to install; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Runs each named `async fn(TestDb)` twice: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::common::db::TestDb::sqlite()).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::common::db::TestDb::postgres().await).await
            }
        }
    )*};
}

/// A database for one test, and a directory for its other files.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        TestDb { url, dir }
    }

    /// A new, empty database on this process's PostgreSQL server.
    pub async fn postgres() -> TestDb {
        use sqlx::Connection;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let port = server().port;
        let name = format!("gw_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL at {admin}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        conn.close().await.ok();
        TestDb {
            url: format!("postgres://postgres@127.0.0.1:{port}/{name}"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

struct Server {
    port: u16,
    /// How to stop and start it again (outage tests).
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    opts: String,
    root: bool,
    /// The watchdog's stdin: closed when this process ends.
    _watchdog: Mutex<std::process::ChildStdin>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

pub fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: \
             install them with `apt-get install postgresql` (scripts/test does)"
        )
    })
}

pub fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root), else as ourselves.
pub fn as_pg_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A fresh cluster in `dir/data` (trust authentication, superuser
/// `postgres`), `dir` handed to the `postgres` user first when we are root.
pub fn init_cluster(bin: &Path, dir: &Path, root: bool) -> PathBuf {
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {} to postgres", dir.display());
    }
    let data = dir.join("data");
    let out = as_pg_user(&bin.join("initdb"), root)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn start_server() -> Server {
    let bin = bin_dir();
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("gateway-test-pg")
        .tempdir()
        .expect("temp dir")
        .keep();
    let data = init_cluster(&bin, &dir, root);

    // The watchdog first, so that the server never outlives us.
    let pg_ctl = bin.join("pg_ctl");
    let stop = format!(
        "cat >/dev/null; {} '{}' -D '{}' stop -m immediate >/dev/null 2>&1; rm -rf '{}'",
        if root { "runuser -u postgres --" } else { "" },
        pg_ctl.display(),
        data.display(),
        dir.display()
    );
    let mut watchdog = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the PostgreSQL watchdog")
    };
    let stdin = watchdog.stdin.take().expect("watchdog stdin");

    // A free port can be taken by someone else before the server binds it:
    // try a few.
    let log = dir.join("server.log");
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            dir.display()
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
            return Server {
                port,
                pg_ctl,
                data,
                log,
                opts,
                root,
                _watchdog: Mutex::new(stdin),
            };
        }
    }
    panic!(
        "PostgreSQL did not start; its log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Stops this process's PostgreSQL server at once (`pg_ctl stop -m
/// immediate`: connections cut, as a crash or a host restart does). Only
/// for a test binary whose tests all expect the outage.
pub fn stop_postgres() {
    let s = server();
    let ok = as_pg_user(&s.pg_ctl, s.root)
        .arg("-D")
        .arg(&s.data)
        .args(["-w", "-m", "immediate", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    assert!(ok, "pg_ctl stop failed");
}

/// Starts this process's PostgreSQL server again, on the same port and data.
pub fn start_postgres() {
    let s = server();
    let ok = as_pg_user(&s.pg_ctl, s.root)
        .arg("-D")
        .arg(&s.data)
        .arg("-l")
        .arg(&s.log)
        .args(["-w", "-t", "60", "-o", &s.opts, "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    assert!(
        ok,
        "PostgreSQL did not start again; its log: {}",
        std::fs::read_to_string(&s.log).unwrap_or_default()
    );
}
