//! Load benchmark: portcullis against a bare Pingora proxy, on loopback, in
//! one process, driven by `wrk` at fixed concurrency.
//!
//! Run: `cargo bench --bench load` (options after `--`, e.g.
//! `cargo bench --bench load -- --rounds 3 --duration 10 --out bench/runs/X`).
//! Options (defaults): `--rounds 3`, `--duration 10` (s per run),
//! `--warmup 4` (s per warm-up pass), `--connections 32`, `--wrk-threads 2`,
//! `--sessions 10000`, `--apps 1000`, `--variants bare,auth,bypass` (any of
//! `bare,auth,bypass,auth-pg,auth-log,auth-twin`),
//! `--groups-header off` (no `X-Portcullis-Groups` upstream),
//! `--policy-files 1`, `--skip-reload`, `--out DIR`, `--access-log-in DIR`
//! (where `auth-log` makes its temp folder; default the system temp folder,
//! on disk here; `/dev/shm` leaves the disk out, and `/dev/null`, not a
//! folder, is written to directly: no file system at all).
//! Needs `wrk` on the PATH; without it the bench says so and exits 0.
//! Under `cargo test` (no `--bench` argument) it runs a smoke test of the
//! same setup with a few sessions and plain HTTP requests, without wrk.
//!
//! What runs, all on 127.0.0.1 in this process:
//! - `upstream`: a hyper HTTP/1.1 server on one thread answering
//!   `200 ok\n` to everything (the fastest origin we can have);
//! - `bare`: a Pingora 0.9 proxy whose `ProxyHttp` only returns the
//!   upstream in `upstream_peer` — the physical limit of this stack;
//! - `portcullis`: the real server (`build_state`, `build_server`,
//!   `ServerHandle`) with a temp config, the dev IdP started in process, a
//!   SQLite store on tmpfs and the 1,000-app generated policy set
//!   (`support/fixtures.rs`; 10 policies per app, mixed selectors);
//!   10,000 distinct sessions (users with 100 groups) are stored and their
//!   tokens signed with the proxy's key, as a login would mint them;
//! - with the `auth-pg` variant, a second portcullis, the same in every
//!   respect but its store: a database of the PostgreSQL server the tests
//!   start (`src/testing/postgres.rs`, loopback, `fsync=off`), fleet mode
//!   (signing keys in the database, no `key_dir`, the change feed
//!   listening), with its own 10,000 sessions stored there;
//! - with the `auth-log` variant, another portcullis, the same as `auth`'s
//!   (SQLite) plus `access_log: { path: …, format: json }`: a file in a
//!   temp folder on disk (not tmpfs), with its own 10,000 sessions;
//! - with the `auth-twin` variant, one more portcullis exactly like
//!   `auth`'s (no access log): an A/A check of how far two identical
//!   instances differ on this machine.
//!
//! Both proxies run with `threads: 1` (one worker thread each): the
//! machine this was written for has 2 cores, shared by wrk (2 threads),
//! the upstream and the proxy under test. No CPU pinning.
//!
//! Variants, alternated round by round in the order `--variants` gives
//! (every request carries the rotating session cookie, so all of them send
//! the same bytes):
//! - `bare`: `app-0007.bench.localhost` through the bare proxy;
//! - `auth`: the same host through portcullis — session cookie verified
//!   (cache hit after warm-up), 10 policies evaluated, identity headers
//!   added;
//! - `bypass`: `public.bench.localhost` through portcullis (bypass policy);
//! - `auth-pg`: `auth` through the portcullis on PostgreSQL. After the
//!   warm-up every session is cached and the cached path never touches the
//!   store, so `auth-pg` should equal `auth`; the summary gives the ratios.
//! - `auth-log`: `auth` through the portcullis that writes an access log;
//!   the summary gives the ratios to `auth` (the issue's budget: at most
//!   3 % of authenticated throughput), the lines written and any dropped.
//!   The log's writer thread is named `portcullis-log`, so its CPU counts
//!   in the proxy's. Beside the ratio of medians, the summary gives the
//!   median of the per-round ratios (each variant's run against the
//!   other's in the same round: slower drift of the host cancels) and
//!   their range.
//! - `auth-twin`: `auth` through the twin instance; `auth-twin / auth`
//!   is the noise floor for `auth-log / auth`.
//!
//! Both portcullis servers' threads are named `portcullis`: the proxy CPU
//! of a run counts both, and the one not under load is idle (its
//! background tasks run on the bench's own runtime).
//!
//! Reload phase (skip with `--skip-reload`; SQLite instance only): `auth`
//! alone, then with the
//! policy file (1,000 apps) rewritten every second so the watcher reloads
//! it (it polls every 500 ms and waits until a change has been stable for
//! 100 ms, so a file rewritten faster than that would never reload), then
//! with the file rewritten and `PolicyHandle::reload` called back to back
//! on another thread (a stress case: compiling 1,000 apps also takes one
//! of the two cores; the watcher reloads the changing file too, about
//! every 2 s). With `--policy-files N` the apps are spread over N files
//! and only the first is rewritten: the other files' parses are reused.
//!
//! Printed per run: requests/s, p50/p99 latency, errors, and the CPU time
//! of the proxy's and the upstream's threads per request (from
//! `/proc/self/task/*/schedstat`); then medians over the rounds and the
//! ratios to `bare`. Targets: auth throughput ≥ 0.90 × bare, auth p99 ≤
//! 1.2 × bare. With `--out DIR` the raw per-run CSV, the wrk output and the
//! summary are written there.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use portcullis::idp::dev::{self, DevIdpOptions};
use portcullis::metrics::metrics;
use portcullis::proxy::State;
use portcullis::server::{build_server, build_state, ServerHandle};
use portcullis::testing::postgres::PgServer;

/// mimalloc, as in the `portcullis` binary (`src/main.rs`), so that both
/// proxies of this bench run on the allocator portcullis ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Host of the authenticated app (generated app 7, admitted by its 9th policy).
const AUTH_HOST: &str = "app-0007.bench.localhost";
/// Host of the bypass app.
const BYPASS_HOST: &str = "public.bench.localhost";
/// Request path of every variant.
const PATH: &str = "/dashboard/42?orgId=1";
/// The wrk script.
const ROTATE_LUA: &str = include_str!("support/rotate.lua");
/// How often the reload phase rewrites the policy file: slower than the
/// watcher's poll (500 ms) plus settle time (100 ms), so each write reloads.
const WRITE_EVERY: Duration = Duration::from_millis(1000);

/// Command-line options (after `--`).
#[derive(Debug, Clone)]
struct Opts {
    rounds: usize,
    duration: u64,
    warmup: u64,
    connections: usize,
    wrk_threads: usize,
    sessions: usize,
    apps: usize,
    out: Option<PathBuf>,
    reload: bool,
    /// Variants of the proxy phase to run (default all three).
    variants: Vec<String>,
    /// Send `X-Portcullis-Groups` upstream (`--groups-header off`: not).
    groups_header: bool,
    /// Policy files the apps are spread over (`--policy-files N`, default
    /// 1): the reload phase rewrites the first.
    policy_files: usize,
    /// Where `auth-log` makes the folder of its access log.
    access_log_in: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            rounds: 3,
            duration: 10,
            warmup: 4,
            connections: 32,
            wrk_threads: 2,
            sessions: 10_000,
            apps: 1_000,
            out: None,
            reload: true,
            variants: vec!["bare".into(), "auth".into(), "bypass".into()],
            groups_header: true,
            policy_files: 1,
            access_log_in: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let num = |i: usize| -> usize {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--rounds" => o.rounds = num(i),
                "--duration" => o.duration = num(i) as u64,
                "--warmup" => o.warmup = num(i) as u64,
                "--connections" => o.connections = num(i),
                "--wrk-threads" => o.wrk_threads = num(i),
                "--sessions" => o.sessions = num(i),
                "--apps" => o.apps = num(i),
                "--policy-files" => o.policy_files = num(i).max(1),
                "--out" => o.out = args.get(i + 1).map(PathBuf::from),
                "--access-log-in" => o.access_log_in = args.get(i + 1).map(PathBuf::from),
                "--groups-header" => {
                    o.groups_header = args.get(i + 1).map(String::as_str) != Some("off")
                }
                "--variants" => {
                    o.variants = args
                        .get(i + 1)
                        .map(|v| v.split(',').map(str::to_string).collect())
                        .unwrap_or_default()
                }
                "--skip-reload" => {
                    o.reload = false;
                    i += 1;
                    continue;
                }
                // `cargo bench` adds `--bench`; filters are ignored.
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        o
    }
}

// ---------------------------------------------------------------- upstream

/// Start the upstream on its own thread (one-thread runtime named
/// `upstream`); it lives until the process ends.
fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok\n"),
                            )))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        })
        .expect("upstream thread");
    addr
}

// -------------------------------------------------------------- bare proxy

/// The minimal pass-through proxy: the physical limit.
struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Start the bare proxy (`threads: 1`, threads named `bare`).
fn start_bare(upstream: SocketAddr) -> (u16, ServerHandle) {
    let port = free_port();
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare { upstream },
        "bare",
    );
    svc.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(svc);
    (port, ServerHandle::start(server, false))
}

// -------------------------------------------------------------- portcullis

/// A running portcullis with its sessions.
struct Portcullis {
    /// The variant that measures it (`auth` or `auth-pg`), for messages.
    name: &'static str,
    state: Arc<State>,
    apps: usize,
    policy_files: usize,
    port: u16,
    dir: tempfile::TempDir,
    tokens_file: PathBuf,
    upstream: SocketAddr,
    _idp: dev::DevIdp,
    _server: ServerHandle,
}

impl Portcullis {
    /// The policy file the reload phase rewrites: the only one, or the
    /// first of a folder.
    fn policy_file(&self) -> PathBuf {
        let name = if self.policy_files == 1 {
            "main.yaml"
        } else {
            "apps-000.yaml"
        };
        self.dir.path().join("policies").join(name)
    }

    /// Rewrite [`policy_file`](Self::policy_file) at `revision` (a real
    /// change of the same size), through a rename so the watcher never
    /// reads half a file.
    fn rewrite_policy(&self, revision: u64) {
        let upstream = format!("http://{}", self.upstream);
        let text = if self.policy_files == 1 {
            fixtures::policy_yaml(self.apps, &upstream, revision)
        } else {
            fixtures::policy_folder_file(self.apps, self.policy_files, 0, &upstream, revision).1
        };
        let file = self.policy_file();
        let tmp = file.with_file_name(".rewrite.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
    }
}

/// Which store a portcullis of the bench keeps its state in.
enum StoreKind {
    /// A SQLite file in the temp folder, keys in `key_dir`.
    Sqlite,
    /// A PostgreSQL database (fleet mode: keys in the database).
    Postgres(String),
    /// SQLite, plus an access log (JSON) to this file.
    SqliteLogged(PathBuf),
    /// SQLite, a second instance like `Sqlite` (the A/A twin).
    SqliteTwin,
}

/// Start portcullis (`threads: 1`, threads named `portcullis`) with
/// `apps` generated apps and `sessions` stored sessions on app 7.
async fn start_portcullis(
    upstream: SocketAddr,
    apps: usize,
    policy_files: usize,
    sessions: usize,
    groups_header: bool,
    store: StoreKind,
) -> Portcullis {
    let port = free_port();
    let dir = fixtures::fast_tempdir();
    let redirect = format!("http://auth.bench.localhost:{port}/cdn-cgi/access/callback");
    let idp = dev::start(DevIdpOptions::new(
        "127.0.0.1:0".parse().expect("addr"),
        vec![redirect],
    ))
    .await
    .expect("dev idp");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("policies dir");
    let upstream_url = format!("http://{upstream}");
    if policy_files == 1 {
        std::fs::write(
            policies.join("main.yaml"),
            fixtures::policy_yaml(apps, &upstream_url, 0),
        )
        .expect("write policies");
    } else {
        for (name, text) in fixtures::policy_folder(apps, policy_files, &upstream_url, 0) {
            std::fs::write(policies.join(name), text).expect("write policies");
        }
    }
    let data = dir.path().display();
    // The config refuses `key_dir` with a PostgreSQL store: the signing
    // keys live in the database.
    let (name, store) = match &store {
        StoreKind::Sqlite => (
            "auth",
            format!("store: sqlite://{data}/state.db\nkey_dir: {data}/keys"),
        ),
        StoreKind::Postgres(url) => ("auth-pg", format!("store: {url}")),
        StoreKind::SqliteTwin => (
            "auth-twin",
            format!("store: sqlite://{data}/state.db\nkey_dir: {data}/keys"),
        ),
        StoreKind::SqliteLogged(file) => (
            "auth-log",
            format!(
                "store: sqlite://{data}/state.db\nkey_dir: {data}/keys\naccess_log: {{ path: {}, format: json }}",
                file.display()
            ),
        ),
    };
    let config = format!(
        r#"
listen:
  - addr: 127.0.0.1:{port}
auth_domain: auth.bench.localhost:{port}
threads: 1
grace_period_seconds: 0
{store}
headers: {{ groups: {groups} }}
identity_providers:
  - name: okta
    type: okta
    config:
      client_id: {client_id}
      client_secret: {client_secret}
      okta_account: {okta}
      authorization_server_id: default
policies: {data}/policies
"#,
        client_id = idp.client_id(),
        client_secret = idp.client_secret(),
        okta = idp.okta_account(),
        groups = if groups_header {
            "X-Portcullis-Groups"
        } else {
            "false"
        },
    );
    let cfg_path = dir.path().join("portcullis.yaml");
    std::fs::write(&cfg_path, config).expect("write config");
    let cfg = portcullis::config::load_file(&cfg_path).unwrap_or_else(|e| panic!("config: {e}"));
    let state = build_state(cfg)
        .await
        .unwrap_or_else(|e| panic!("state: {e}"));
    let server = build_server(state.clone()).expect("server");
    let handle = ServerHandle::start(server, false);

    let app = fixtures::app(&state, &fixtures::app_name(fixtures::TARGET_APP));
    let made = fixtures::sessions(&state, &app, 0, sessions, fixtures::GROUPS_PER_USER).await;
    let tokens_file = dir.path().join("tokens.txt");
    let mut text = String::with_capacity(made.len() * 700);
    for (_, t) in &made {
        text.push_str(t);
        text.push('\n');
    }
    std::fs::write(&tokens_file, text).expect("write tokens");
    Portcullis {
        name,
        state,
        apps,
        policy_files,
        port,
        dir,
        tokens_file,
        upstream,
        _idp: idp,
        _server: handle,
    }
}

// ------------------------------------------------------------- measuring

/// One wrk run's figures.
#[derive(Debug, Clone, Default)]
struct Run {
    phase: &'static str,
    round: usize,
    variant: &'static str,
    requests: u64,
    seconds: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    errors: u64,
    proxy_cpu_us: f64,
    upstream_cpu_us: f64,
    reloads: u64,
    cache_misses: u64,
}

/// CPU nanoseconds of this process's threads whose name starts with `prefix`.
fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let sched = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        total += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn counter(vec: &prometheus::IntCounterVec, label: &str) -> u64 {
    vec.with_label_values(&[label]).get()
}

/// Where wrk output goes (besides parsing).
struct Log {
    wrk: String,
    lines: String,
}

impl Log {
    fn say(&mut self, line: String) {
        println!("{line}");
        self.lines.push_str(&line);
        self.lines.push('\n');
    }
}

struct Target<'a> {
    variant: &'static str,
    port: u16,
    host: &'a str,
    /// The token file of the instance behind `port` (each has its own
    /// sessions, signed with its own key).
    tokens: &'a Path,
    /// Thread-name prefix of the proxy serving it.
    threads: &'static str,
}

/// Run wrk once against `t` and measure.
fn wrk(log: &mut Log, o: &Opts, script: &Path, t: &Target<'_>, seconds: u64) -> Run {
    let url = format!("http://127.0.0.1:{}", t.port);
    let cpu0 = (thread_cpu_ns(t.threads), thread_cpu_ns("upstream"));
    let miss0 = counter(&metrics().session_cache_total, "miss");
    let out = Command::new("wrk")
        .arg(format!("-t{}", o.wrk_threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(&url)
        .arg("--")
        .arg(t.tokens)
        .arg(t.host)
        .arg(PATH)
        .arg(o.wrk_threads.to_string())
        .output()
        .expect("run wrk");
    let cpu1 = (thread_cpu_ns(t.threads), thread_cpu_ns("upstream"));
    let miss1 = counter(&metrics().session_cache_total, "miss");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = writeln!(
        log.wrk,
        "### {} ({seconds}s)\n{text}{}",
        t.variant,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wrk failed: {text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("no RESULT line from wrk:\n{text}"));
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let requests = field("requests") as u64;
    let secs = field("duration_us") / 1e6;
    let errors = [
        "connect_errors",
        "read_errors",
        "write_errors",
        "status_errors",
        "timeouts",
    ]
    .iter()
    .map(|k| field(k) as u64)
    .sum();
    let per_req = |ns: u64| {
        if requests == 0 {
            0.0
        } else {
            ns as f64 / 1e3 / requests as f64
        }
    };
    Run {
        variant: t.variant,
        requests,
        seconds: secs,
        rps: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        p50_us: field("p50_us"),
        p99_us: field("p99_us"),
        max_us: field("max_us"),
        errors,
        proxy_cpu_us: per_req(cpu1.0.saturating_sub(cpu0.0)),
        upstream_cpu_us: per_req(cpu1.1.saturating_sub(cpu0.1)),
        cache_misses: miss1.saturating_sub(miss0),
        ..Run::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn show(log: &mut Log, r: &Run) {
    log.say(format!(
        "{:<8} round {} {:<16} {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  max {:>7.0} µs  errors {}  proxy cpu {:>5.1} µs/req  upstream cpu {:>4.1} µs/req{}{}",
        r.phase,
        r.round,
        r.variant,
        r.rps,
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.errors,
        r.proxy_cpu_us,
        r.upstream_cpu_us,
        if r.cache_misses > 0 { format!("  cache misses {}", r.cache_misses) } else { String::new() },
        if r.reloads > 0 { format!("  reloads {}", r.reloads) } else { String::new() },
    ));
}

/// Medians per variant and ratios to `base`.
fn summarize(log: &mut Log, runs: &[Run], phase: &str, variants: &[&str], base: &str) {
    let of = |v: &str| {
        runs.iter()
            .filter(|r| r.phase == phase && r.variant == v)
            .collect::<Vec<_>>()
    };
    let med = |v: &str, f: fn(&Run) -> f64| median(of(v).iter().map(|r| f(r)).collect());
    let (b_rps, b_p50, b_p99) = (
        med(base, |r| r.rps),
        med(base, |r| r.p50_us),
        med(base, |r| r.p99_us),
    );
    log.say(format!(
        "{:<18} {:>10} {:>9} {:>9} {:>12} {:>11} {:>11} {:>14}",
        "variant", "req/s", "p50 µs", "p99 µs", "rps/base", "p50/base", "p99/base", "proxy µs/req"
    ));
    for v in variants {
        let (rps, p50, p99) = (
            med(v, |r| r.rps),
            med(v, |r| r.p50_us),
            med(v, |r| r.p99_us),
        );
        log.say(format!(
            "{:<18} {:>10.0} {:>9.0} {:>9.0} {:>12.3} {:>11.3} {:>11.3} {:>14.1}",
            v,
            rps,
            p50,
            p99,
            rps / b_rps,
            p50 / b_p50,
            p99 / b_p99,
            med(v, |r| r.proxy_cpu_us)
        ));
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn wrk_available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

// ------------------------------------------------------------------ phases

fn bench(o: &Opts) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-rt")
        .enable_all()
        .build()
        .expect("runtime");
    let mut log = Log {
        wrk: String::new(),
        lines: String::new(),
    };
    log.say(format!("load average before: {}", loadavg()));
    log.say(format!(
        "options: rounds {} × {} s, warm-up {} s, wrk -t{} -c{}, {} sessions, {} apps in {} policy file(s), groups header {}; proxies threads: 1",
        o.rounds,
        o.duration,
        o.warmup,
        o.wrk_threads,
        o.connections,
        o.sessions,
        o.apps,
        o.policy_files,
        if o.groups_header { "on" } else { "off" }
    ));
    let upstream = start_upstream();
    let (bare_port, _bare) = start_bare(upstream);
    let started = Instant::now();
    let px = rt.block_on(start_portcullis(
        upstream,
        o.apps,
        o.policy_files,
        o.sessions,
        o.groups_header,
        StoreKind::Sqlite,
    ));
    log.say(format!(
        "portcullis (SQLite) up with {} apps and {} sessions in {:.1} s",
        o.apps,
        o.sessions,
        started.elapsed().as_secs_f64()
    ));
    let logged = o.variants.iter().any(|v| v == "auth-log").then(|| {
        let started = Instant::now();
        let log_dir = match &o.access_log_in {
            Some(d) if d.is_dir() => tempfile::tempdir_in(d),
            _ => tempfile::tempdir(),
        }
        .expect("access log dir");
        // `--access-log-in /dev/null`: the writer's work without a file system.
        let file = match &o.access_log_in {
            Some(d) if !d.is_dir() => d.clone(),
            _ => log_dir.path().join("access.log"),
        };
        let px = rt.block_on(start_portcullis(
            upstream,
            o.apps,
            o.policy_files,
            o.sessions,
            o.groups_header,
            StoreKind::SqliteLogged(file.clone()),
        ));
        log.say(format!(
            "portcullis (SQLite, access log to {}) up with {} apps and {} sessions in {:.1} s",
            file.display(),
            o.apps,
            o.sessions,
            started.elapsed().as_secs_f64()
        ));
        (px, log_dir, file)
    });
    let twin = o.variants.iter().any(|v| v == "auth-twin").then(|| {
        let px = rt.block_on(start_portcullis(
            upstream,
            o.apps,
            o.policy_files,
            o.sessions,
            o.groups_header,
            StoreKind::SqliteTwin,
        ));
        log.say("portcullis twin (SQLite, as auth) up".to_string());
        px
    });
    let pg = o.variants.iter().any(|v| v == "auth-pg").then(|| {
        let started = Instant::now();
        let px = rt.block_on(start_portcullis_pg(o, upstream));
        log.say(format!(
            "portcullis (PostgreSQL) up with {} apps and {} sessions in {:.1} s",
            o.apps,
            o.sessions,
            started.elapsed().as_secs_f64()
        ));
        px
    });
    rt.block_on(preflight(&px, pg.as_ref(), bare_port));
    if let Some((lx, _, _)) = &logged {
        rt.block_on(preflight(lx, None, bare_port));
    }
    if let Some(tx) = &twin {
        rt.block_on(preflight(tx, None, bare_port));
    }

    let script = px.dir.path().join("rotate.lua");
    std::fs::write(&script, ROTATE_LUA).expect("write script");
    let mut all = vec![
        Target {
            variant: "bare",
            port: bare_port,
            host: AUTH_HOST,
            tokens: &px.tokens_file,
            threads: "bare",
        },
        Target {
            variant: "auth",
            port: px.port,
            host: AUTH_HOST,
            tokens: &px.tokens_file,
            threads: "portcullis",
        },
        Target {
            variant: "bypass",
            port: px.port,
            host: BYPASS_HOST,
            tokens: &px.tokens_file,
            threads: "portcullis",
        },
    ];
    if let Some(pg) = &pg {
        all.push(Target {
            variant: "auth-pg",
            port: pg.port,
            host: AUTH_HOST,
            tokens: &pg.tokens_file,
            threads: "portcullis",
        });
    }
    if let Some((lx, _, _)) = &logged {
        all.push(Target {
            variant: "auth-log",
            port: lx.port,
            host: AUTH_HOST,
            tokens: &lx.tokens_file,
            threads: "portcullis",
        });
    }
    if let Some(tx) = &twin {
        all.push(Target {
            variant: "auth-twin",
            port: tx.port,
            host: AUTH_HOST,
            tokens: &tx.tokens_file,
            threads: "portcullis",
        });
    }
    // In the order of `--variants`, so that a second run can swap the
    // places of two variants within a round.
    let targets: Vec<&Target<'_>> = o
        .variants
        .iter()
        .filter_map(|v| all.iter().find(|t| t.variant == v))
        .collect();

    // Warm-up: connections, pools, and every session verified once (auth
    // repeats until a pass has no cache miss, at most 8 passes).
    for t in &targets {
        let state = match (&pg, &logged, &twin) {
            (Some(pg), _, _) if t.variant == pg.name => &pg.state,
            (_, Some((lx, _, _)), _) if t.variant == lx.name => &lx.state,
            (_, _, Some(tx)) if t.variant == tx.name => &tx.state,
            _ => &px.state,
        };
        for pass in 1..=8 {
            let r = wrk(&mut log, o, &script, t, o.warmup);
            log.say(format!(
                "warm-up {:<8} pass {pass} {:>9.0} req/s, {} cache misses, {} cached sessions",
                t.variant,
                r.rps,
                r.cache_misses,
                entry_count(&rt, state)
            ));
            if r.cache_misses == 0 {
                break;
            }
        }
    }

    let mut runs = Vec::new();
    for round in 1..=o.rounds {
        for t in &targets {
            let mut r = wrk(&mut log, o, &script, t, o.duration);
            r.phase = "proxy";
            r.round = round;
            show(&mut log, &r);
            runs.push(r);
        }
    }
    if o.variants.iter().any(|v| v == "bare") {
        log.say(String::new());
        log.say(format!(
            "medians over {} rounds; base = bare Pingora",
            o.rounds
        ));
        let names: Vec<&str> = targets.iter().map(|t| t.variant).collect();
        summarize(&mut log, &runs, "proxy", &names, "bare");
        verdicts(&mut log, &runs);
    }
    if pg.is_some() && o.variants.iter().any(|v| v == "auth") {
        log.say(String::new());
        pg_ratios(&mut log, &runs);
    }
    if twin.is_some() && o.variants.iter().any(|v| v == "auth") {
        log.say(String::new());
        ratios(
            &mut log,
            &runs,
            "auth-twin",
            "auth",
            "an identical instance / auth: the noise floor",
        );
    }
    if let Some((lx, _, file)) = &logged {
        log.say(String::new());
        let with_auth = o.variants.iter().any(|v| v == "auth");
        log_ratios(&mut log, &runs, lx, file, with_auth);
    }

    if o.reload {
        log.say(String::new());
        reload_phase(&mut log, o, &rt, &px, &script, &mut runs);
    }
    log.say(String::new());
    log.say(format!("load average after: {}", loadavg()));
    if let Some(dir) = &o.out {
        write_out(dir, &log, &runs);
    }
}

/// The portcullis of `auth-pg`: the same as `auth`'s but on a fresh
/// database of the tests' PostgreSQL server.
async fn start_portcullis_pg(o: &Opts, upstream: SocketAddr) -> Portcullis {
    let url = PgServer::shared().fresh_database().await;
    start_portcullis(
        upstream,
        o.apps,
        o.policy_files,
        o.sessions,
        o.groups_header,
        StoreKind::Postgres(url),
    )
    .await
}

/// `auth-pg` against `auth` (medians over the rounds): the cached path
/// never touches the store, so the ratios should be 1 within noise.
fn pg_ratios(log: &mut Log, runs: &[Run]) {
    let med = |v: &str, f: fn(&Run) -> f64| {
        median(
            runs.iter()
                .filter(|r| r.phase == "proxy" && r.variant == v)
                .map(f)
                .collect(),
        )
    };
    let ratio = |f: fn(&Run) -> f64| med("auth-pg", f) / med("auth", f);
    log.say(format!(
        "auth-pg / auth (PostgreSQL store / SQLite store, medians): throughput {:.3}, p50 {:.3}, p99 {:.3}, proxy cpu {:.3}",
        ratio(|r| r.rps),
        ratio(|r| r.p50_us),
        ratio(|r| r.p99_us),
        ratio(|r| r.proxy_cpu_us),
    ));
    let misses: u64 = runs
        .iter()
        .filter(|r| r.phase == "proxy" && r.variant == "auth-pg")
        .map(|r| r.cache_misses)
        .sum();
    log.say(format!(
        "auth-pg cache misses over the measured runs: {misses} (0: every request took the cached path)"
    ));
}

/// `variant` against `base`: the ratios of their medians over the rounds,
/// then the median and range of the per-round ratios (the two ran one
/// after the other in each round, so slow drift of the host cancels).
fn ratios(log: &mut Log, runs: &[Run], variant: &str, base: &str, what: &str) {
    let of = |v: &str| -> Vec<&Run> {
        runs.iter()
            .filter(|r| r.phase == "proxy" && r.variant == v)
            .collect()
    };
    let med = |v: &str, f: fn(&Run) -> f64| median(of(v).iter().map(|r| f(r)).collect());
    let ratio = |f: fn(&Run) -> f64| med(variant, f) / med(base, f);
    log.say(format!(
        "{variant} / {base} ({what}), medians: throughput {:.3}, p50 {:.3}, p99 {:.3}, proxy cpu {:.3}",
        ratio(|r| r.rps),
        ratio(|r| r.p50_us),
        ratio(|r| r.p99_us),
        ratio(|r| r.proxy_cpu_us),
    ));
    let per_round = |f: fn(&Run) -> f64| -> Vec<f64> {
        of(variant)
            .iter()
            .filter_map(|v| {
                let b = of(base).into_iter().find(|b| b.round == v.round)?;
                Some(f(v) / f(b))
            })
            .collect()
    };
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let (rps, cpu) = (per_round(|r| r.rps), per_round(|r| r.proxy_cpu_us));
    let ((rlo, rhi), (clo, chi)) = (range(&rps), range(&cpu));
    log.say(format!(
        "{variant} / {base} per round ({} rounds): throughput median {:.3} (range {rlo:.3}–{rhi:.3}), proxy cpu median {:.3} (range {clo:.3}–{chi:.3})",
        rps.len(),
        median(rps.clone()),
        median(cpu.clone()),
    ));
}

/// `auth-log` against `auth`: what writing the access log costs; then how
/// much was written and whether any line was dropped (a dropped line
/// would make logging look cheaper than it is).
fn log_ratios(log: &mut Log, runs: &[Run], lx: &Portcullis, file: &Path, with_auth: bool) {
    if with_auth {
        ratios(log, runs, "auth-log", "auth", "access log to a file / none");
    }
    lx.state.access_log.flush();
    let bytes = std::fs::metadata(file).map_or(0, |m| m.len());
    let lines = std::fs::read(file)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0);
    let dropped: u64 = ["queue_full", "write_error"]
        .iter()
        .map(|r| counter(&metrics().access_log_dropped_total, r))
        .sum();
    let requests: u64 = runs
        .iter()
        .filter(|r| r.variant == "auth-log")
        .map(|r| r.requests)
        .sum();
    log.say(format!(
        "access log: {lines} lines, {:.1} MB ({:.0} bytes/line), {dropped} dropped; measured auth-log requests: {requests}",
        bytes as f64 / 1e6,
        bytes as f64 / lines.max(1) as f64
    ));
}

fn entry_count(rt: &tokio::runtime::Runtime, state: &State) -> u64 {
    rt.block_on(state.cache.run_pending_tasks());
    state.cache.entry_count()
}

fn verdicts(log: &mut Log, runs: &[Run]) {
    let med = |v: &str, f: fn(&Run) -> f64| {
        median(
            runs.iter()
                .filter(|r| r.phase == "proxy" && r.variant == v)
                .map(f)
                .collect(),
        )
    };
    let rps = med("auth", |r| r.rps) / med("bare", |r| r.rps);
    let p99 = med("auth", |r| r.p99_us) / med("bare", |r| r.p99_us);
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    log.say(format!(
        "target auth throughput ≥ 0.90 × bare: {rps:.3} ({})",
        mark(rps >= 0.90)
    ));
    log.say(format!(
        "target auth p99 ≤ 1.2 × bare: {p99:.3} ({})",
        mark(p99 <= 1.2)
    ));
    log.say(format!(
        "errors (connect/read/write/status/timeout) over all runs: {errors}"
    ));
}

/// Check every variant answers as intended before measuring.
async fn preflight(px: &Portcullis, pg: Option<&Portcullis>, bare_port: u16) {
    let first_token = |p: &Portcullis| {
        let text = std::fs::read_to_string(&p.tokens_file).expect("tokens");
        text.lines().next().expect("one token").to_string()
    };
    let token = first_token(px);
    let get = |port: u16, host: &'static str, cookie: Option<String>| async move {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let client = reqwest::Client::builder()
            .resolve(host, addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut req = client.get(format!("http://{host}:{port}{PATH}"));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("CF_Authorization={c}"));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    };
    let ports: Vec<u16> = [Some(px.port), pg.map(|p| p.port), Some(bare_port)]
        .into_iter()
        .flatten()
        .collect();
    let ready = fixtures::wait_until(Duration::from_secs(20), || {
        ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    });
    assert!(ready, "proxies did not start listening");
    let mut cases = vec![
        ("bare", bare_port, AUTH_HOST, Some(token.clone()), 200),
        ("auth", px.port, AUTH_HOST, Some(token.clone()), 200),
        ("auth without cookie", px.port, AUTH_HOST, None, 401),
        ("bypass", px.port, BYPASS_HOST, Some(token.clone()), 200),
    ];
    if let Some(pg) = pg {
        let pg_token = first_token(pg);
        cases.extend([
            ("auth-pg", pg.port, AUTH_HOST, Some(pg_token), 200),
            ("auth-pg without cookie", pg.port, AUTH_HOST, None, 401),
            // Each instance signs with its own key: a token of the other is
            // refused (401), which shows the variants are not crossed.
            (
                "auth-pg with auth's token",
                pg.port,
                AUTH_HOST,
                Some(token.clone()),
                401,
            ),
        ]);
    }
    for (what, port, host, cookie, want) in cases {
        let (status, body) = get(port, host, cookie).await;
        assert_eq!(status, want, "preflight {what}: {status} {body}");
        if want == 200 {
            assert_eq!(body, "ok\n", "preflight {what} reached the upstream");
        }
    }
    let _ = px.upstream;
}

fn reload_phase(
    log: &mut Log,
    o: &Opts,
    rt: &tokio::runtime::Runtime,
    px: &Portcullis,
    script: &Path,
    runs: &mut Vec<Run>,
) {
    log.say(format!(
        "reload phase: auth under policy reloads of {} apps (file rewrite every second; continuous reload())",
        o.apps
    ));
    let t = Target {
        variant: "auth",
        port: px.port,
        host: AUTH_HOST,
        tokens: &px.tokens_file,
        threads: "portcullis",
    };
    let ok0 = || counter(&metrics().policy_reloads_total, "success");
    let err0 = || counter(&metrics().policy_reloads_total, "error");
    let start_errors = err0();
    let revision = AtomicU64::new(1);
    for round in 1..=o.rounds {
        // Steady.
        let mut r = wrk(log, o, script, &t, o.duration);
        (r.phase, r.round, r.variant) = ("reload", round, "steady");
        show(log, &r);
        runs.push(r);

        // The watcher reloads the rewritten file.
        let stop = AtomicBool::new(false);
        let before = ok0();
        let mut r = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("bench-writer".into())
                .spawn_scoped(scope, || {
                    while !stop.load(Ordering::Relaxed) {
                        px.rewrite_policy(revision.fetch_add(1, Ordering::Relaxed));
                        std::thread::sleep(WRITE_EVERY);
                    }
                })
                .expect("writer thread");
            let r = wrk(log, o, script, &t, o.duration);
            stop.store(true, Ordering::Relaxed);
            r
        });
        (r.phase, r.round, r.variant, r.reloads) =
            ("reload", round, "file-reloads", ok0() - before);
        show(log, &r);
        runs.push(r);
        // Let the watcher settle on the last file before the next run.
        std::thread::sleep(Duration::from_millis(1500));

        // Back-to-back reloads on another thread, each after a rewrite (a
        // reload of unchanged files parses nothing again).
        let stop = AtomicBool::new(false);
        let (count, busy) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut r = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("bench-reloader".into())
                .spawn_scoped(scope, || {
                    while !stop.load(Ordering::Relaxed) {
                        px.rewrite_policy(revision.fetch_add(1, Ordering::Relaxed));
                        let t0 = Instant::now();
                        px.state.policies.reload().expect("reload");
                        busy.fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .expect("reloader thread");
            let r = wrk(log, o, script, &t, o.duration);
            stop.store(true, Ordering::Relaxed);
            r
        });
        let n = count.load(Ordering::Relaxed);
        (r.phase, r.round, r.variant, r.reloads) = ("reload", round, "continuous", n);
        show(log, &r);
        log.say(format!(
            "  one reload of {} apps took {:.1} ms on average (compile + swap)",
            o.apps,
            busy.load(Ordering::Relaxed) as f64 / 1e3 / n.max(1) as f64
        ));
        runs.push(r);
    }
    assert_eq!(err0(), start_errors, "a policy reload failed");
    log.say(String::new());
    log.say(format!(
        "medians over {} rounds; base = steady (no reloads)",
        o.rounds
    ));
    summarize(
        log,
        runs,
        "reload",
        &["steady", "file-reloads", "continuous"],
        "steady",
    );
    let _ = rt;
}

fn write_out(dir: &Path, log: &Log, runs: &[Run]) {
    std::fs::create_dir_all(dir).expect("out dir");
    let mut csv = String::from(
        "phase,round,variant,requests,seconds,rps,p50_us,p99_us,max_us,errors,proxy_cpu_us_per_req,upstream_cpu_us_per_req,reloads,cache_misses\n",
    );
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.3},{:.1},{},{},{},{},{:.2},{:.2},{},{}",
            r.phase,
            r.round,
            r.variant,
            r.requests,
            r.seconds,
            r.rps,
            r.p50_us,
            r.p99_us,
            r.max_us,
            r.errors,
            r.proxy_cpu_us,
            r.upstream_cpu_us,
            r.reloads,
            r.cache_misses
        );
    }
    std::fs::write(dir.join("load.csv"), csv).expect("write csv");
    std::fs::write(dir.join("load-summary.txt"), &log.lines).expect("write summary");
    std::fs::write(dir.join("load-wrk.txt"), &log.wrk).expect("write wrk log");
    println!(
        "wrote {}/load.csv, load-summary.txt, load-wrk.txt",
        dir.display()
    );
}

/// `cargo test`: the same setup with a few sessions, checked with plain
/// requests (no wrk).
fn smoke() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-rt")
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = start_upstream();
    let (bare_port, bare) = start_bare(upstream);
    let px = rt.block_on(start_portcullis(
        upstream,
        20,
        1,
        5,
        true,
        StoreKind::Sqlite,
    ));
    let url = rt.block_on(PgServer::shared().fresh_database());
    let pg = rt.block_on(start_portcullis(
        upstream,
        20,
        1,
        5,
        true,
        StoreKind::Postgres(url),
    ));
    rt.block_on(preflight(&px, Some(&pg), bare_port));
    let log_dir = tempfile::tempdir().expect("access log dir");
    let lx = rt.block_on(start_portcullis(
        upstream,
        20,
        1,
        5,
        true,
        StoreKind::SqliteLogged(log_dir.path().join("access.log")),
    ));
    rt.block_on(preflight(&lx, None, bare_port));
    lx.state.access_log.flush();
    let written = std::fs::read_to_string(log_dir.path().join("access.log")).expect("access log");
    assert!(
        written.lines().any(|l| l.contains(r#""decision":"allow""#)),
        "the auth-log instance logged its requests: {written}"
    );
    drop(bare);
    println!(
        "load bench smoke test: bare, auth, bypass, auth-pg and auth-log answered as expected"
    );
}

fn main() {
    if !fixtures::bench_mode() {
        smoke();
        return;
    }
    if !wrk_available() {
        println!("load bench: `wrk` is not installed (apt-get install wrk); skipping");
        return;
    }
    let o = Opts::parse();
    bench(&o);
}
