//! A real PostgreSQL server for tests: one per test process, started on
//! first use with Debian's server binaries (`initdb` into a temporary
//! folder, a free loopback port, trust authentication), with a fresh
//! database per test. Never a mock: the fleet-mode store is tested against
//! the engine it runs on.
//!
//! The server is stopped when the test process exits: a small watchdog
//! shell waits for the process to end, then stops the server and deletes
//! its folder (statics are never dropped in a Rust test binary).
//!
//! `initdb` and `postgres` refuse to run as root; as root (CI, the
//! developers' machines) they run as the `postgres` user the Debian
//! package creates. `scripts/ensure-deps.sh` installs the package.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use sqlx::Connection as _;

/// A running server.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The server binaries' folder (`/usr/lib/postgresql/<newest>/bin`), or
/// `PORTCULLIS_PG_BIN` when set.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: \
             run scripts/ensure-deps.sh (installs Debian's postgresql package)"
        ),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl PgServer {
    /// The process's server, started on first call.
    pub fn shared() -> &'static PgServer {
        SERVER.get_or_init(PgServer::start)
    }

    /// A server of the caller's own, for a test that stops or restarts it
    /// (stopped at the latest when the process exits).
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "portcullis-pg-{}-{}",
            std::process::id(),
            crate::session::token::random_token(6)
        ));
        std::fs::create_dir_all(&dir).expect("create the PostgreSQL folder");
        let server = PgServer {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&server.dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to postgres failed", server.dir.display());
        }
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        server.watch(std::process::id());
        server
    }

    /// Run a server binary (as `postgres` when we are root); panics with
    /// its output when it fails.
    fn run(&self, name: &str, args: &[&str]) {
        let prog = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&prog);
            c
        } else {
            Command::new(&prog)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
        assert!(
            out.status.success(),
            "{name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop the server and delete its folder once process `pid` has ended.
    fn watch(&self, pid: u32) {
        let data = self.dir.join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.as_postgres {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {}",
            self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Create a new, empty database and return its URL.
    pub async fn fresh_database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "t{}_{n}",
            crate::session::token::random_token(6).to_ascii_lowercase()
        )
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test PostgreSQL server");
        // The name is made of [a-z0-9_] above, never input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        self.url(&name)
    }

    /// Stop the server (`immediate`: like a crash) and start it again on
    /// the same port and data; for outage and durability tests.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Stop the server now (`immediate`), as a crash would.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", path(&data), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Start the (stopped) server on its port and data folder.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-o",
                &opts,
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
