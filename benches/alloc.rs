//! Heap allocations per request on the cached access path, counted by an
//! instrumenting global allocator (`stats_alloc`, which wraps the system
//! allocator; this crate writes no `unsafe`).
//!
//! Run: `cargo bench --bench alloc [-- --iterations N]` (under `cargo test`
//! it runs a few iterations as a smoke test).
//!
//! Sections (same workload as `benches/access.rs`: 50 apps × 10 policies,
//! a user with 100 groups admitted by the 9th policy, token in the cache):
//! - `request::read`, `access::decide`, and both together (the decision;
//!   target: 0 allocations beyond what forwarding needs);
//! - `Protected::strip` and `groups_value`, the library parts of
//!   `upstream_request_filter`;
//! - `forward (replica, lower bound)`: the work of `service.rs`
//!   `upstream_peer` and `upstream_request_filter` for a user permit,
//!   replayed with the same public calls, to show what forwarding itself
//!   costs in allocations. It is a lower bound, not the real functions
//!   (they need a Pingora `Session`): it leaves out the URI rewrite of a
//!   normalised path, the `Host` of an absolute-form request, claim headers
//!   (`forward_claims` off) and the first-use build of the cached header
//!   values, and whatever Pingora allocates around the calls.
//!
//! Counts are averages over many iterations: moka's occasional maintenance
//! inside a cache read shows up as a fraction.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::alloc::System;
use std::hint::black_box;

use portcullis::policy::eval::{evaluate, Outcome, Phase, RequestView, Subject};
use portcullis::proxy::access::{self, Permit, Verdict};
use portcullis::proxy::headers::{groups_value, ip_value};
use portcullis::proxy::request;
use stats_alloc::{Region, Stats, StatsAlloc, INSTRUMENTED_SYSTEM};

use fixtures::{CLIENT_IP, GROUPS_PER_USER, TARGET_APP};

/// The upstream address of the replayed `upstream_peer`.
const UPSTREAM: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocation counts of one section, per operation.
struct Row {
    name: &'static str,
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

/// Allocation counts summed over several regions.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    allocs: usize,
    reallocs: usize,
    bytes: usize,
}

impl Count {
    fn add(&mut self, s: Stats) {
        self.allocs += s.allocations;
        self.reallocs += s.reallocations;
        self.bytes += s.bytes_allocated + usize::try_from(s.bytes_reallocated).unwrap_or(0);
    }
}

impl From<Stats> for Count {
    fn from(s: Stats) -> Count {
        let mut c = Count::default();
        c.add(s);
        c
    }
}

fn per_op(name: &'static str, n: usize, c: impl Into<Count>) -> Row {
    let c = c.into();
    let n = n as f64;
    Row {
        name,
        allocs: c.allocs as f64 / n,
        reallocs: c.reallocs as f64 / n,
        bytes: c.bytes as f64 / n,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = match args.iter().position(|a| a == "--iterations") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--iterations N"),
        None if fixtures::bench_mode() => 100_000,
        None => 200,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fx = rt.block_on(fixtures::offline(fixtures::APPS));
    let state = &*fx.state;
    let app = fixtures::app(state, &fixtures::app_name(TARGET_APP));
    let (_, token) = rt
        .block_on(fixtures::sessions(state, &app, 0, 1, GROUPS_PER_USER))
        .pop()
        .expect("one session");
    let host = fixtures::app_host(TARGET_APP);
    let req = fixtures::request(&host, "/dashboard/42?orgId=1", &token);

    // Warm up: the first decision verifies and caches the session.
    let session = rt.block_on(async {
        let info = request::read(&req, Some(CLIENT_IP)).expect("read");
        match access::decide(state, &info, &req).await {
            Verdict::Permit {
                permit: Permit::User { session, .. },
                ..
            } => session,
            other => panic!("fixture decided {other:?}"),
        }
    });

    let mut rows = Vec::new();

    let reg = Region::new(GLOBAL);
    for _ in 0..iterations {
        black_box(request::read(black_box(&req), Some(CLIENT_IP)).is_ok());
    }
    rows.push(per_op("request::read", iterations, reg.change()));

    let set = state.policies.current();
    let reg = Region::new(GLOBAL);
    for _ in 0..iterations {
        black_box(
            set.router
                .route(&set.apps, black_box(&host), "/dashboard/42")
                .is_some(),
        );
    }
    rows.push(per_op("router.route", iterations, reg.change()));
    drop(set);

    rt.block_on(async {
        let reg = Region::new(GLOBAL);
        for _ in 0..iterations {
            black_box(state.cache.get(black_box(&token)).await.is_some());
        }
        rows.push(per_op("SessionCache::get (hit)", iterations, reg.change()));
    });

    let view = RequestView {
        client_ip: CLIENT_IP,
    };
    let reg = Region::new(GLOBAL);
    for _ in 0..iterations {
        let o = evaluate(
            &app,
            Phase::Identity,
            &Subject::User(black_box(&session.identity)),
            &view,
        );
        assert!(matches!(o, Outcome::Matched(_)));
    }
    rows.push(per_op(
        "evaluate (identity phase, 9th policy)",
        iterations,
        reg.change(),
    ));

    let reg = Region::new(GLOBAL);
    for _ in 0..iterations {
        portcullis::metrics::metrics()
            .session_cache_total
            .with_label_values(&["hit"])
            .inc();
    }
    rows.push(per_op(
        "metrics session_cache_total.inc",
        iterations,
        reg.change(),
    ));

    let info = request::read(&req, Some(CLIENT_IP)).expect("read");
    rt.block_on(async {
        let reg = Region::new(GLOBAL);
        for _ in 0..iterations {
            black_box(access::decide(state, &info, &req).await);
        }
        rows.push(per_op(
            "access::decide (cache hit, allow)",
            iterations,
            reg.change(),
        ));
    });
    drop(info);

    rt.block_on(async {
        let reg = Region::new(GLOBAL);
        for _ in 0..iterations {
            let info = request::read(&req, Some(CLIENT_IP)).expect("read");
            let v = access::decide(state, &info, &req).await;
            assert!(matches!(v, Verdict::Permit { .. }));
            black_box(v);
        }
        rows.push(per_op(
            "cached decision (read + decide)",
            iterations,
            reg.change(),
        ));
    });

    let mut strip_total = Count::default();
    for _ in 0..iterations {
        let mut up = fixtures::request(&host, "/dashboard/42?orgId=1", &token);
        let reg = Region::new(GLOBAL);
        state.protected.strip(&mut up);
        strip_total.add(reg.change());
        black_box(up);
    }
    rows.push(per_op(
        "Protected::strip (5 client headers)",
        iterations,
        strip_total,
    ));

    let reg = Region::new(GLOBAL);
    for _ in 0..iterations {
        black_box(groups_value(&black_box(&session.identity.groups).names()));
    }
    rows.push(per_op(
        "groups_value (100 groups)",
        iterations,
        reg.change(),
    ));

    let names = &state.upstream_headers;
    let authority = host.clone();
    // Built once per cached session in the proxy (`CachedSession::forward`).
    let email_value = http::HeaderValue::from_str(&session.identity.email).expect("email");
    let groups_header =
        http::HeaderValue::from_str(&groups_value(&session.identity.groups.names())).expect("g");
    let request_id = portcullis::proxy::client::new_request_id();
    let upstream_host = String::from("app.internal");
    let mut fwd_total = Count::default();
    for _ in 0..iterations {
        let mut up = fixtures::request(&host, "/dashboard/42?orgId=1", &token);
        let reg = Region::new(GLOBAL);
        // Replica of service.rs `upstream_peer` (the peer for an upstream
        // given by address) and `upstream_request_filter`, `Permit::User`
        // arm, with `forward_claims` off (the default).
        let peer = Box::new(pingora::upstreams::peer::HttpPeer::new(
            UPSTREAM,
            false,
            upstream_host.clone(),
        ));
        state.protected.strip(&mut up);
        portcullis::proxy::headers::join_cookies(&mut up).expect("cookies");
        up.insert_header("x-forwarded-for", ip_value(CLIENT_IP))
            .expect("h");
        up.insert_header(portcullis::proxy::client::REQUEST_ID, request_id.clone())
            .expect("h");
        up.insert_header(
            "x-forwarded-proto",
            http::HeaderValue::from_static(state.scheme()),
        )
        .expect("h");
        up.insert_header("x-forwarded-host", authority.as_str())
            .expect("h");
        let tok = access::candidate_tokens(state, &req)[0].expect("token");
        up.insert_header(names.assertion.clone(), tok).expect("h");
        up.insert_header(names.email.clone(), email_value.clone())
            .expect("h");
        if let Some(g) = &names.groups {
            up.insert_header(g.clone(), groups_header.clone())
                .expect("h");
        }
        fwd_total.add(reg.change());
        black_box((up, peer));
    }
    rows.push(per_op(
        "forward (replica, lower bound)",
        iterations,
        fwd_total,
    ));

    println!("allocations per operation, {iterations} iterations each");
    println!(
        "{:<48} {:>10} {:>10} {:>12}",
        "section", "allocs", "reallocs", "bytes"
    );
    for r in &rows {
        println!(
            "{:<48} {:>10.2} {:>10.2} {:>12.1}",
            r.name, r.allocs, r.reallocs, r.bytes
        );
    }
    let decision = rows
        .iter()
        .find(|r| r.name.starts_with("cached decision"))
        .expect("decision row");
    let verdict = if decision.allocs < 0.5 {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "target: 0 allocations per cached decision beyond forwarding; measured {:.2} ({verdict})",
        decision.allocs
    );
}
