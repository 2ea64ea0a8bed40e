//! Micro benchmarks of the access phase (criterion).
//!
//! Run: `cargo bench --bench access` (one group: `cargo bench --bench access -- cached`).
//!
//! Workload (`support/fixtures.rs`): 50 generated apps × 10 policies with
//! mixed selectors (ip, everyone, service tokens, groups, email domains,
//! emails, amr, login method, claims, excludes), users with 100 groups who
//! are admitted by the 9th policy of their app, so every earlier allow and
//! block policy is evaluated first. The state is the proxy's own
//! [`State`](portcullis::proxy::State) with a SQLite store on a temp file.
//!
//! - `access/cached_decision`: `request::read` (host, path normalisation,
//!   browser check) + `access::decide` for a token already in the session
//!   cache: route, bypass phase, cookie scan, cache hit, policy evaluation.
//!   Target ≤ 1 µs median.
//! - `access/cached_decision_forbidden`: the same for a user no policy
//!   admits (every identity policy evaluated, 403).
//! - `access/cached_decision_10000_sessions_rotating`: the cached decision
//!   with 10,000 cached sessions requested in turn, as in the load bench:
//!   cold CPU caches, the realistic figure.
//! - `access/{request_read,route,cache_hit,evaluate}`: the parts.
//! - `session_miss/*`: ES256 verification, the session-record read through
//!   the store (`store_get_session`: the SQLite file store reads in place,
//!   so the future completes on its first poll) and that first poll alone
//!   (`store_get_session_in_place`), the live SCIM-group merge, the steps of a miss one
//!   after the other (`verify_and_load`), and `decide` end to end with a
//!   token never seen before (verify, read in place, cache insert,
//!   evaluate). Target ≤ 100 µs. `decide_end_to_end_scim`: the same with
//!   SCIM on, so a miss also reads the groups of the linked SCIM user (five
//!   groups), as with Okta provisioning.
//! - `path/*`: path normalisation of clean and dirty targets.
//! - `policy_compile/*`: `compile_sources` of the 50-app and 1,000-app sets,
//!   and a reload of 1,000 apps in 100 files after one file changed.
//! - `access_log/*`: what the access log costs a request: a `request` line
//!   serialised (`serialise_json`, by hand as the proxy does;
//!   `serialise_serde_json`, the same bytes through serde_json's derive),
//!   and serialised and queued to the real
//!   writer thread (`request_line_json`, `request_line_text`). The writer
//!   appends to `/dev/null` here, on its own thread (millions of lines
//!   would fill a disk); its cost with a real file is in the load bench's
//!   `auth-log` variant.
//!
//! Results of the last recorded run are in `BENCHMARKS.md`.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::access_log;
use portcullis::policy::eval::{evaluate, Outcome, Phase, RequestView, Subject};
use portcullis::policy::model::App;
use portcullis::proxy::access::{self, Permit, Verdict};
use portcullis::proxy::State;
use portcullis::proxy::{path, request};
use portcullis::session::cache::CachedSession;
use portcullis::session::keys::Expect;
use portcullis::session::token::{SessionClaims, TokenKind};
use portcullis::store::SessionRecord;

use fixtures::{Offline, CLIENT_IP, GROUPS_PER_USER, TARGET_APP};

/// mimalloc, as in the `portcullis` binary (`src/main.rs`), so that both
/// proxies of this bench run on the allocator portcullis ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The offline state, one admitted user (cached), one user no policy admits
/// (cached), and records for fresh tokens.
struct World {
    fx: Offline,
    host: String,
    allowed: (SessionRecord, String),
    forbidden: (SessionRecord, String),
    spares: Vec<SessionRecord>,
}

async fn world() -> World {
    let fx = fixtures::offline(fixtures::APPS).await;
    let state = &fx.state;
    let app = fixtures::app(state, &fixtures::app_name(TARGET_APP));
    let mut made = fixtures::sessions(state, &app, 0, 10, GROUPS_PER_USER).await;
    let allowed = made.remove(0);
    let mut forbidden = made.remove(0);
    // Same size of identity, but none of the groups the app admits.
    let teams = forbidden.0.identity.groups.names();
    forbidden.0.identity.groups = teams
        .into_iter()
        .filter(|g| g.starts_with("team-"))
        .chain(["sales", "marketing"])
        .collect();
    forbidden.0.identity.email = "someone@elsewhere.example".into();
    forbidden.0.sid.push_str("-forbidden");
    state
        .store
        .create_session(&forbidden.0)
        .await
        .expect("store forbidden session");
    forbidden.1 = fixtures::mint(state, &app, &forbidden.0, 0);
    let spares = made.into_iter().map(|(r, _)| r).collect();
    let host = fixtures::app_host(TARGET_APP);

    // Warm the cache and check the fixtures decide as intended.
    for (token, want_user) in [(&allowed.1, true), (&forbidden.1, false)] {
        let req = fixtures::request(&host, "/dashboard/42?orgId=1", token);
        let info = request::read(&req, Some(CLIENT_IP)).expect("read");
        let v = access::decide(state, &info, &req).await;
        match (&v, want_user) {
            (
                Verdict::Permit {
                    permit: Permit::User { .. },
                    ..
                },
                true,
            ) => {}
            (
                Verdict::Deny {
                    denial: access::Denial::Forbidden,
                    ..
                },
                false,
            ) => {}
            _ => panic!("fixture decided {v:?}"),
        }
    }
    World {
        fx,
        host,
        allowed,
        forbidden,
        spares,
    }
}

fn cached(c: &mut Criterion) {
    let rt = runtime();
    let w = rt.block_on(world());
    let state = &*w.fx.state;
    let allowed_req = fixtures::request(&w.host, "/dashboard/42?orgId=1", &w.allowed.1);
    let forbidden_req = fixtures::request(&w.host, "/dashboard/42?orgId=1", &w.forbidden.1);

    let mut g = c.benchmark_group("access");
    g.bench_function("cached_decision", |b| {
        b.to_async(&rt).iter(|| async {
            let info = request::read(black_box(&allowed_req), Some(CLIENT_IP)).expect("read");
            let v = access::decide(state, &info, &allowed_req).await;
            debug_assert!(matches!(v, Verdict::Permit { .. }));
            black_box(v)
        })
    });
    g.bench_function("cached_decision_forbidden", |b| {
        b.to_async(&rt).iter(|| async {
            let info = request::read(black_box(&forbidden_req), Some(CLIENT_IP)).expect("read");
            black_box(access::decide(state, &info, &forbidden_req).await)
        })
    });
    g.bench_function("request_read", |b| {
        b.iter(|| black_box(request::read(black_box(&allowed_req), Some(CLIENT_IP)).is_ok()))
    });
    let set = state.policies.current();
    g.bench_function("route", |b| {
        b.iter(|| {
            black_box(
                set.router
                    .route(&set.apps, black_box(&w.host), "/dashboard/42")
                    .is_some(),
            )
        })
    });
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(state.cache.get(black_box(&w.allowed.1)).await.is_some()) })
    });
    let app = fixtures::app(state, &fixtures::app_name(TARGET_APP));
    let view = RequestView {
        client_ip: CLIENT_IP,
    };
    let id = rt
        .block_on(state.cache.get(&w.allowed.1))
        .expect("cached")
        .identity
        .clone();
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            let o = evaluate(&app, Phase::Identity, &Subject::User(black_box(&id)), &view);
            debug_assert!(matches!(o, Outcome::Matched(_)));
            black_box(o)
        })
    });
    g.finish();
}

/// Distinct token bytes for the end-to-end miss: vary `exp` by one second
/// per token, over several session records.
static FRESH: AtomicI64 = AtomicI64::new(1);

/// SCIM groups of each user in `session_miss/decide_end_to_end_scim`.
const SCIM_GROUPS_PER_USER: usize = 5;

fn miss(c: &mut Criterion) {
    let rt = runtime();
    let w = rt.block_on(world());
    let state = w.fx.state.clone();
    let app = fixtures::app(&state, &fixtures::app_name(TARGET_APP));
    let expect = Expect {
        iss: &state.auth_origin,
        aud: Some(&app.aud),
        typ: TokenKind::App,
    };
    let token = w.allowed.1.clone();
    let sid = w.allowed.0.sid.clone();

    let mut g = c.benchmark_group("session_miss");
    g.bench_function("verify_es256", |b| {
        b.iter(|| {
            black_box(
                state
                    .keys
                    .verify::<SessionClaims>(black_box(&token), &expect)
                    .expect("valid"),
            )
        })
    });
    g.bench_function("store_get_session", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                state
                    .store
                    .get_session(black_box(&sid))
                    .await
                    .expect("read")
                    .expect("found"),
            )
        })
    });
    g.bench_function("store_get_session_in_place", |b| {
        b.iter(|| {
            black_box(
                first_poll(state.store.get_session(black_box(&sid)))
                    .expect("read in place")
                    .expect("read")
                    .expect("found"),
            )
        })
    });
    g.bench_function("live_identity", |b| {
        b.to_async(&rt).iter(|| async {
            let id = w.allowed.0.identity.clone();
            black_box(portcullis::proxy::endpoints::live_identity(state.store.as_ref(), id).await)
        })
    });
    g.bench_function("verify_and_load", |b| {
        b.to_async(&rt).iter(|| async {
            // The steps of a miss, as access.rs `verify_and_load` runs them
            // (the record read in place), plus the SCIM merge.
            let claims: SessionClaims = state
                .keys
                .verify(black_box(&token), &expect)
                .expect("valid");
            let rec = first_poll(state.store.get_session(&claims.sid))
                .expect("read in place")
                .expect("read")
                .expect("found");
            let identity =
                portcullis::proxy::endpoints::live_identity(state.store.as_ref(), rec.identity)
                    .await;
            let expires_at = claims.exp.min(rec.expires_at);
            black_box(Arc::new(CachedSession::new(
                claims,
                Arc::new(identity),
                expires_at,
            )))
        })
    });
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    g.bench_function("decide_end_to_end", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| fresh_misses(&state, &app, &w.spares, &w.host, iters))
    });
    g.finish();
}

/// `iters` decisions, each for a token never seen before (a cache miss);
/// the tokens are minted, and their requests built, outside the timed loop.
async fn fresh_misses(
    state: &State,
    app: &App,
    spares: &[SessionRecord],
    host: &str,
    iters: u64,
) -> Duration {
    let reqs: Vec<_> = (0..iters)
        .map(|_| {
            let n = FRESH.fetch_add(1, Ordering::Relaxed);
            let rec = &spares[(n / 20_000) as usize % spares.len()];
            let t = fixtures::mint(state, app, rec, -(n % 20_000));
            fixtures::request(host, "/dashboard/42?orgId=1", &t)
        })
        .collect();
    let start = Instant::now();
    for req in &reqs {
        let info = request::read(req, Some(CLIENT_IP)).expect("read");
        let v = access::decide(state, &info, req).await;
        debug_assert!(matches!(v, Verdict::Permit { .. }), "{v:?}");
        black_box(v);
    }
    start.elapsed()
}

/// The miss with SCIM on (Okta provisioning users): the session record
/// and the linked SCIM user's groups are read, in place, for every token.
fn miss_scim(c: &mut Criterion) {
    let rt = runtime();
    let (fx, app, spares) = rt.block_on(async {
        let fx = fixtures::offline_scim(fixtures::APPS).await;
        let app = fixtures::app(&fx.state, &fixtures::app_name(TARGET_APP));
        let made = fixtures::sessions(&fx.state, &app, 0, 8, GROUPS_PER_USER).await;
        for (n, (rec, _)) in made.iter().enumerate() {
            fixtures::scim_link(&fx.state, rec, n, SCIM_GROUPS_PER_USER).await;
        }
        // Every SCIM group joins the identity a miss loads.
        let id = fx.state.policy_identity(made[0].0.identity.clone()).await;
        let added = id.expect("SCIM read").groups.len() - made[0].0.identity.groups.len();
        assert_eq!(added, SCIM_GROUPS_PER_USER, "SCIM groups merged");
        let spares: Vec<SessionRecord> = made.into_iter().map(|(r, _)| r).collect();
        (fx, app, spares)
    });
    let host = fixtures::app_host(TARGET_APP);
    let state = fx.state.clone();
    let mut g = c.benchmark_group("session_miss");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    g.bench_function("decide_end_to_end_scim", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| fresh_misses(&state, &app, &spares, &host, iters))
    });
    g.finish();
}

fn paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    let cases = [
        (
            "clean",
            "/grafana/d/000000012/dashboard-overview?orgId=1&refresh=30s",
        ),
        (
            "dot_segments",
            "/grafana/./d//000000012/../000000012/dashboard-overview?orgId=1",
        ),
        (
            "escapes",
            "/static/%7Euser/caf%C3%A9/a%20b/%61dmin/index.html?q=%2F",
        ),
    ];
    for (name, target) in cases {
        g.bench_function(name, |b| {
            b.iter(|| black_box(path::normalize(black_box(target)).expect("normal")))
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_compile");
    g.sample_size(10);
    for n in [fixtures::APPS, 1000] {
        let sources = vec![(
            "policies.yaml".to_string(),
            fixtures::policy_yaml(n, "http://127.0.0.1:9", 0),
        )];
        g.bench_function(format!("{n}_apps"), |b| {
            b.iter(|| {
                black_box(
                    portcullis::policy::compile_sources(black_box(&sources)).expect("compiles"),
                )
            })
        });
    }
    // A reload of 1,000 apps kept in 100 files after one file changed:
    // the other 100 files' parses are reused (`ParsedFiles`).
    let upstream = "http://127.0.0.1:9";
    let mut sources = fixtures::policy_folder(1000, 100, upstream, 0);
    let mut other = fixtures::policy_folder_file(1000, 100, 0, upstream, 1).1;
    let mut cache = portcullis::policy::ParsedFiles::default();
    portcullis::policy::compile_sources_cached(&sources, &mut cache).expect("compiles");
    g.bench_function("1000_apps_100_files_one_changed", |b| {
        b.iter(|| {
            std::mem::swap(&mut sources[0].1, &mut other);
            black_box(
                portcullis::policy::compile_sources_cached(black_box(&sources), &mut cache)
                    .expect("compiles"),
            )
        })
    });
    g.finish();
}

/// The cached decision over many sessions in rotation, as under load: each
/// request touches another cache entry and identity, so CPU caches are cold
/// (10,000 sessions; 100 under `cargo test`).
fn rotating(c: &mut Criterion) {
    let rt = runtime();
    let n = if fixtures::bench_mode() { 10_000 } else { 100 };
    let fx = rt.block_on(fixtures::offline(fixtures::APPS));
    let state = &*fx.state;
    let app = fixtures::app(state, &fixtures::app_name(TARGET_APP));
    let host = fixtures::app_host(TARGET_APP);
    let made = rt.block_on(fixtures::sessions(state, &app, 0, n, GROUPS_PER_USER));
    let reqs: Vec<_> = made
        .iter()
        .map(|(_, t)| fixtures::request(&host, "/dashboard/42?orgId=1", t))
        .collect();
    // Every session verified and cached once.
    rt.block_on(async {
        for req in &reqs {
            let info = request::read(req, Some(CLIENT_IP)).expect("read");
            let v = access::decide(state, &info, req).await;
            assert!(matches!(v, Verdict::Permit { .. }), "{v:?}");
        }
    });
    let mut g = c.benchmark_group("access");
    let mut next = 0;
    g.bench_function(format!("cached_decision_{n}_sessions_rotating"), |b| {
        b.to_async(&rt).iter(|| {
            let req = &reqs[next % reqs.len()];
            next += 1;
            async move {
                let info = request::read(req, Some(CLIENT_IP)).expect("read");
                black_box(access::decide(state, &info, req).await)
            }
        })
    });
    g.finish();
}

/// A `request` line as the load bench's authenticated requests write it.
fn request_record(now: std::time::SystemTime) -> access_log::Record<'static> {
    access_log::Record::Request(access_log::record::Request {
        ts: access_log::Ts(now),
        request_id: "5b0e6c1f8a2d4e7b9c3f1a6d8e2b4c70",
        client_ip: CLIENT_IP,
        method: "GET",
        host: Some("app-0007.bench.localhost"),
        path: "/dashboard/42",
        status: Some(200),
        app: Some("app-0007"),
        decision: "allow",
        policy: Some("policy 8 of app-0007"),
        email: Some("user-00042@example.com"),
        sub: Some("00u00000000000042"),
        idp: Some("okta"),
        service_token: None,
        upstream: Some("http://127.0.0.1:34567"),
        duration_ms: access_log::Millis(Duration::from_micros(1234)),
        bytes_sent: 3,
    })
}

fn access_log_lines(c: &mut Criterion) {
    use portcullis::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
    let mut g = c.benchmark_group("access_log");
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("serialise_serde_json", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, &request_record(std::time::SystemTime::now()))
                .expect("serialise");
            black_box(buf.len())
        })
    });
    g.bench_function("serialise_json", |b| {
        b.iter(|| {
            buf.clear();
            if let access_log::Record::Request(r) = request_record(std::time::SystemTime::now()) {
                r.write_json(&mut buf);
            }
            black_box(buf.len())
        })
    });
    for (name, format) in [
        ("request_line_json", AccessLogFormat::Json),
        ("request_line_text", AccessLogFormat::Text),
    ] {
        let log = access_log::AccessLog::open(Some(&AccessLogConfig {
            target: AccessLogTarget::File("/dev/null".into()),
            format,
        }))
        .expect("open the access log");
        g.bench_function(name, |b| {
            b.iter(|| log.write(black_box(&request_record(std::time::SystemTime::now()))))
        });
        log.flush();
    }
    g.finish();
}

criterion_group!(
    benches,
    cached,
    rotating,
    miss,
    miss_scim,
    paths,
    compile,
    access_log_lines
);
criterion_main!(benches);

/// Poll `fut` once, on this thread: `Some` when it completed there (a
/// store read done in place), `None` when it would have waited.
fn first_poll<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
