//! Session-cache miss latency as a distribution, SQLite against PostgreSQL
//! (fleet mode), with SCIM off and on.
//!
//! Run: `cargo bench --bench miss` (options after `--`: `--rounds 10`,
//! `--batch 500`, `--out DIR`, which writes every sample to
//! `DIR/miss-samples.csv`). Under `cargo test` (no `--bench` argument) it
//! runs one round of 20 misses per store as a smoke test.
//!
//! A miss, end to end, is what `session_miss/decide_end_to_end` in
//! `benches/access.rs` times for SQLite: `request::read` and
//! `access::decide` for a token never seen before (ES256 verification, the
//! session record read from the store, the SCIM user's groups with SCIM
//! on, the cache insert, policy evaluation). Criterion gives only central
//! estimates; a target on the p99 needs every miss timed on its own, so
//! this bench is a plain timing loop.
//!
//! Four offline states (`support/fixtures.rs`: 50 generated apps, users
//! with 100 groups admitted by the 9th policy of their app), in one
//! process: `sqlite` (a WAL file on tmpfs, the record read in place on
//! the calling thread), `postgres` (a database of the PostgreSQL server
//! the tests start, `src/testing/postgres.rs`: Debian's server on a
//! loopback TCP port, `fsync=off`, which only writes feel; the record read
//! over the store's sqlx pool), and both with SCIM on (each user linked to
//! a SCIM user in five SCIM groups, read on every miss). Every round
//! mints `--batch` fresh tokens per state (outside the timed loop), then
//! times each decision; the states take turns within a round, in an order
//! that rotates, so that the machine's drift falls on all four alike. One
//! round of 100 misses per state warms up first and is not counted.
//!
//! Printed: p50, p90, p99, max and mean per state, the verdict against
//! the fleet target (≤ 1 ms p99 on PostgreSQL), the steps of a miss
//! timed one by one (ES256, session read, SCIM merge), and a PostgreSQL
//! round trip (`SELECT 1` on one connection, no pool) as the yardstick of
//! the loopback hop. The async runtime is a one-thread tokio runtime, as
//! in `benches/access.rs`; the PostgreSQL server runs on the other core.
//! Results: `BENCHMARKS.md`.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::policy::model::App;
use portcullis::proxy::access::{self, Verdict};
use portcullis::proxy::request;
use portcullis::session::keys::Expect;
use portcullis::session::token::{SessionClaims, TokenKind};
use portcullis::store::SessionRecord;
use portcullis::testing::postgres::PgServer;

use fixtures::{Offline, CLIENT_IP, GROUPS_PER_USER, TARGET_APP};

/// mimalloc, as in the `portcullis` binary (`src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Session records whose tokens the misses present (distinct users).
const USERS: usize = 8;
/// SCIM groups of each user in the SCIM-on states (as in `benches/access.rs`).
const SCIM_GROUPS_PER_USER: usize = 5;
/// Misses of the uncounted warm-up round, per state.
const WARMUP: usize = 100;
/// The fleet target on the miss with PostgreSQL (issue 13).
const TARGET_P99: Duration = Duration::from_millis(1);

/// Command-line options (after `--`).
struct Opts {
    rounds: usize,
    batch: usize,
    out: Option<PathBuf>,
}

impl Opts {
    fn parse(bench: bool) -> Opts {
        let mut o = if bench {
            Opts {
                rounds: 10,
                batch: 500,
                out: None,
            }
        } else {
            Opts {
                rounds: 1,
                batch: 20,
                out: None,
            }
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
                "--rounds" => o.rounds = num(i).max(1),
                "--batch" => o.batch = num(i).max(1),
                "--out" => o.out = args.get(i + 1).map(PathBuf::from),
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

/// One offline state and what its misses need.
struct Case {
    name: &'static str,
    fx: Offline,
    app: Arc<App>,
    users: Vec<SessionRecord>,
    host: String,
    /// Token counter: each token varies `exp` by one second, over the users.
    minted: i64,
    /// (round, latency) of every counted miss.
    samples: Vec<(usize, Duration)>,
}

impl Case {
    async fn new(name: &'static str, scim: bool, store_url: Option<&str>) -> Case {
        let fx = fixtures::offline_with(fixtures::APPS, scim, store_url).await;
        let app = fixtures::app(&fx.state, &fixtures::app_name(TARGET_APP));
        let made = fixtures::sessions(&fx.state, &app, 0, USERS, GROUPS_PER_USER).await;
        let users: Vec<SessionRecord> = made.into_iter().map(|(r, _)| r).collect();
        if scim {
            for (n, rec) in users.iter().enumerate() {
                fixtures::scim_link(&fx.state, rec, n, SCIM_GROUPS_PER_USER).await;
            }
            // Every SCIM group joins the identity a miss loads.
            let id = fx.state.policy_identity(users[0].identity.clone()).await;
            let added = id.expect("SCIM read").groups.len() - users[0].identity.groups.len();
            assert_eq!(added, SCIM_GROUPS_PER_USER, "{name}: SCIM groups merged");
        }
        Case {
            name,
            fx,
            app,
            users,
            host: fixtures::app_host(TARGET_APP),
            minted: 0,
            samples: Vec::new(),
        }
    }

    /// `n` tokens never presented before (minted outside any timing).
    fn fresh_tokens(&mut self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.minted += 1;
                let k = self.minted;
                let rec = &self.users[(k as usize) % self.users.len()];
                fixtures::mint(&self.fx.state, &self.app, rec, -(k / USERS as i64))
            })
            .collect()
    }

    /// Time `n` misses one by one; each must be admitted.
    async fn misses(&mut self, n: usize) -> Vec<Duration> {
        let reqs: Vec<_> = self
            .fresh_tokens(n)
            .iter()
            .map(|t| fixtures::request(&self.host, "/dashboard/42?orgId=1", t))
            .collect();
        let state = &*self.fx.state;
        let misses0 = cache_misses();
        let mut took = Vec::with_capacity(n);
        for req in &reqs {
            let start = Instant::now();
            let info = request::read(req, Some(CLIENT_IP)).expect("read");
            let v = access::decide(state, &info, req).await;
            let t = start.elapsed();
            assert!(matches!(v, Verdict::Permit { .. }), "{}: {v:?}", self.name);
            black_box(v);
            took.push(t);
        }
        assert_eq!(
            cache_misses() - misses0,
            n as u64,
            "{}: every token was a cache miss",
            self.name
        );
        took
    }

    /// The steps of `n` misses timed one by one, as access.rs
    /// `verify_and_load` runs them: ES256, the session read (in place on
    /// SQLite), the identity policies see (SCIM merge).
    async fn steps(&mut self, n: usize) -> [Vec<Duration>; 3] {
        let tokens = self.fresh_tokens(n);
        let state = &*self.fx.state;
        let expect = Expect {
            iss: &state.auth_origin,
            aud: None,
            typ: TokenKind::App,
        };
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        for token in &tokens {
            let t0 = Instant::now();
            let claims: SessionClaims = state.keys.verify(token, &expect).expect("valid");
            let t1 = Instant::now();
            // The SQLite store reads in place inside `get_session`.
            let rec = state
                .store
                .get_session(&claims.sid)
                .await
                .expect("read")
                .expect("found");
            let t2 = Instant::now();
            let id = state.policy_identity(rec.identity).await.expect("identity");
            let t3 = Instant::now();
            black_box(id);
            out[0].push(t1 - t0);
            out[1].push(t2 - t1);
            out[2].push(t3 - t2);
        }
        out
    }
}

/// Session-cache misses counted by the proxy's metrics so far.
fn cache_misses() -> u64 {
    portcullis::metrics::metrics()
        .session_cache_total
        .with_label_values(&["miss"])
        .get()
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50, p90, p99, max and mean of `v`, in µs.
fn stats(mut v: Vec<Duration>) -> [f64; 5] {
    v.sort();
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / v.len().max(1) as f64;
    [
        us(percentile(&v, 0.50)),
        us(percentile(&v, 0.90)),
        us(percentile(&v, 0.99)),
        us(v[v.len() - 1]),
        mean,
    ]
}

/// Round trips of `SELECT 1` on one connection to `url` (no pool): the
/// loopback hop and PostgreSQL's per-statement cost, nothing of ours.
async fn pg_round_trips(url: &str, n: usize) -> Vec<Duration> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect for SELECT 1");
    let mut took = Vec::with_capacity(n);
    for _ in 0..n + WARMUP {
        let t = Instant::now();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("SELECT 1");
        took.push(t.elapsed());
        black_box(one);
    }
    let _ = conn.close().await;
    took.split_off(WARMUP)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn main() {
    let bench = fixtures::bench_mode();
    let o = Opts::parse(bench);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&o, bench));
}

async fn run(o: &Opts, bench: bool) {
    let mut out = String::new();
    let mut say = |line: String| {
        println!("{line}");
        out.push_str(&line);
        out.push('\n');
    };
    say(format!("load average before: {}", loadavg()));
    let server = PgServer::shared();
    let pg = server.fresh_database().await;
    let pg_scim = server.fresh_database().await;
    let mut cases = vec![
        Case::new("sqlite", false, None).await,
        Case::new("postgres", false, Some(&pg)).await,
        Case::new("sqlite+scim", true, None).await,
        Case::new("postgres+scim", true, Some(&pg_scim)).await,
    ];

    // Warm-up: connections, statement caches, CPU caches.
    for c in &mut cases {
        c.misses(WARMUP.min(o.batch * 5)).await;
    }
    for round in 0..o.rounds {
        let k = cases.len();
        for i in 0..k {
            let c = &mut cases[(round + i) % k];
            let took = c.misses(o.batch).await;
            c.samples.extend(took.into_iter().map(|t| (round + 1, t)));
        }
    }

    say(format!(
        "session-cache miss end to end (request::read + access::decide, token never seen), {} misses per store in {} alternated rounds of {}",
        o.rounds * o.batch,
        o.rounds,
        o.batch
    ));
    say(format!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "store", "p50 µs", "p90 µs", "p99 µs", "max µs", "mean µs"
    ));
    let mut p99 = Vec::new();
    for c in &cases {
        let s = stats(c.samples.iter().map(|(_, t)| *t).collect());
        say(format!(
            "{:<16} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            c.name, s[0], s[1], s[2], s[3], s[4]
        ));
        p99.push((c.name, s[2]));
    }
    let target = us(TARGET_P99);
    for (name, v) in p99.iter().filter(|(n, _)| n.starts_with("postgres")) {
        say(format!(
            "target miss p99 ≤ {target:.0} µs on PostgreSQL ({name}): {v:.1} µs ({})",
            if *v <= target { "met" } else { "MISSED" }
        ));
    }

    let n = o.batch;
    say(String::new());
    say(format!(
        "steps of a miss, each timed alone ({n} misses per store; p50 / p99 µs)"
    ));
    say(format!(
        "{:<16} {:>17} {:>17} {:>17}",
        "store", "ES256 verify", "session read", "SCIM merge"
    ));
    for c in &mut cases {
        let [verify, read, merge] = c.steps(n).await;
        let [v, r, m] = [stats(verify), stats(read), stats(merge)];
        say(format!(
            "{:<16} {:>8.1} / {:>6.1} {:>8.1} / {:>6.1} {:>8.1} / {:>6.1}",
            c.name, v[0], v[2], r[0], r[2], m[0], m[2]
        ));
    }
    let rt = stats(pg_round_trips(&pg, n.max(20)).await);
    say(format!(
        "PostgreSQL round trip (SELECT 1 on one connection, no pool, {} queries): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        n.max(20),
        rt[0],
        rt[2],
        rt[3]
    ));
    say(format!("load average after: {}", loadavg()));

    if let Some(dir) = &o.out {
        std::fs::create_dir_all(dir).expect("out dir");
        let mut csv = String::from("store,round,ns\n");
        for c in &cases {
            for (round, t) in &c.samples {
                let _ = writeln!(csv, "{},{round},{}", c.name, t.as_nanos());
            }
        }
        std::fs::write(dir.join("miss-samples.csv"), csv).expect("write samples");
        std::fs::write(dir.join("miss-summary.txt"), &out).expect("write summary");
        println!("wrote {}/miss-samples.csv, miss-summary.txt", dir.display());
    }
    if !bench {
        println!("miss bench smoke test: SQLite and PostgreSQL misses, SCIM off and on, admitted");
    }
}
