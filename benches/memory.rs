//! Resident memory of the session cache: RSS (`/proc/self/status` VmRSS)
//! before and after caching N verified sessions, per session.
//!
//! Run: `cargo bench --bench memory` (N = 100,000; under `cargo test` it
//! runs with N = 200 as a smoke test). Target: ≤ 1 KiB per cached
//! session.
//!
//! Each scenario runs in a fresh child process (this binary re-executed
//! with `--scenario`), so memory freed by one scenario is never reused by
//! the next. Tokens are real ES256 session tokens (the cache key is the
//! whole token); they are minted before the first RSS reading, since the
//! cache makes its own copy of each key. Values are `CachedSession`s as the
//! proxy builds them: the token's claims and an identity with
//! - `10-groups`: a typical user (10 groups, 2 custom claims);
//! - `100-groups`: the benchmark user of `access.rs` (100 groups);
//! - `shared-identity`: every entry points at one identity, which isolates
//!   the cost of key + claims + cache bookkeeping;
//! - `10-groups-fwd`, `100-groups-fwd`: as the first two, after the session
//!   was forwarded once, so that it also holds the upstream header values
//!   (email, comma-separated groups) built on first use.
//!
//! Afterwards it checks, on the filled cache, that a revoked session and a
//! session past its expiry are not served (the unit tests
//! `session::cache::tests::{entry_is_not_served_after_exp,
//! revoked_sid_is_not_served, revoked_sid_is_not_served_even_if_reinserted,
//! session_loaded_after_revocation_is_refused}` cover this for every build).

#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;
use std::time::Duration;

use portcullis::identity::Identity;
use portcullis::proxy::service::forward_values;
use portcullis::session::cache::{CachedSession, SessionCache};
use portcullis::session::keys::KeyRing;
use portcullis::session::token::{now_unix, SessionClaims, TokenKind};

/// mimalloc, as in the `portcullis` binary (`src/main.rs`), so that both
/// proxies of this bench run on the allocator portcullis ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCENARIOS: &[&str] = &[
    "10-groups",
    "100-groups",
    "shared-identity",
    "10-groups-fwd",
    "100-groups-fwd",
];

fn claims(n: usize, id: &Identity, aud: &str, expires_in: i64) -> SessionClaims {
    let now = now_unix();
    SessionClaims {
        iss: format!("http://{}", fixtures::AUTH_DOMAIN),
        aud: vec![aud.to_string()],
        sub: id.sub.clone(),
        email: id.email.clone(),
        sid: format!(
            "sid-{n:010}-{}",
            portcullis::session::token::random_token(12)
        ),
        iat: now,
        nbf: now,
        exp: now + expires_in,
        idp: id.idp.clone(),
        typ: TokenKind::App,
    }
}

/// One scenario in this process: prints `RESULT …` lines for the parent.
fn scenario(name: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let keys = KeyRing::generate_ephemeral();
    let aud = portcullis::policy::load::default_aud(&fixtures::app_name(fixtures::TARGET_APP));
    let groups = match name {
        "10-groups" | "10-groups-fwd" => 10,
        _ => fixtures::GROUPS_PER_USER,
    };
    // A session that has been forwarded once also holds its upstream
    // header values (email, groups), built on first use.
    let forwarded = name.ends_with("-fwd");
    let shared = Arc::new(fixtures::identity(0, groups));
    // Tokens first: the test's input, not cache memory.
    let mut all_claims = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    for u in 0..n {
        let c = claims(u, &shared, &aud, 8 * 3600);
        tokens.push(keys.sign(&c).expect("sign"));
        all_claims.push(c);
    }
    // What `CachedSession::new` does not keep (iss, sub, email, idp; typ
    // is a `TokenKind`, no heap)
    // is freed now, before the first reading, and the strings it keeps are
    // trimmed to their length (`into_boxed_str` would reallocate them):
    // memory freed inside the measured window is reused by the cache and
    // biases bytes/session low. Left inside: each token's one-entry `aud`
    // list (24 bytes), turned into the entry's boxed slice.
    for c in &mut all_claims {
        for s in [&mut c.iss, &mut c.sub, &mut c.email, &mut c.idp] {
            *s = String::new();
        }
        c.sid.shrink_to_fit();
        c.aud.iter_mut().for_each(String::shrink_to_fit);
        c.aud.shrink_to_fit();
    }
    let token_len = tokens.iter().map(String::len).sum::<usize>() / n.max(1);
    let cache = SessionCache::new(2 * n as u64, Duration::from_secs(300));

    let before = fixtures::rss_bytes();
    rt.block_on(async {
        for (u, (token, c)) in tokens.iter().zip(all_claims.drain(..)).enumerate() {
            let identity = if name == "shared-identity" {
                shared.clone()
            } else {
                Arc::new(fixtures::identity(u, groups))
            };
            let expires_at = c.exp;
            let session = CachedSession::new(c, identity, expires_at);
            if forwarded {
                session
                    .forward
                    .get_or_init(|| forward_values(&session.identity, false));
            }
            cache.insert(token, Arc::new(session)).await;
        }
        cache.run_pending_tasks().await;
    });
    let after = fixtures::rss_bytes();
    let entries = cache.entry_count();
    assert_eq!(entries, n as u64, "every session stays cached");
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "RESULT scenario={name} sessions={n} token_bytes={token_len} rss_before={before} rss_after={after} per_session={per:.0}"
    );

    // A revoked or expired session is never served, also from a full cache.
    rt.block_on(async {
        let victim = &tokens[n / 2];
        let sid = cache.get(victim).await.expect("cached").sid.to_string();
        cache.revoke(&sid);
        assert!(cache.get(victim).await.is_none(), "revoked session served");

        let id = Arc::new(fixtures::identity(n + 1, groups));
        let c = claims(n + 1, &id, &aud, 2);
        let token = keys.sign(&c).expect("sign");
        let expires_at = c.exp;
        let session = CachedSession::new(c, id, expires_at);
        cache.insert(&token, Arc::new(session)).await;
        assert!(cache.get(&token).await.is_some(), "fresh session cached");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(cache.get(&token).await.is_none(), "expired session served");
        println!("RESULT scenario={name} revoked_served=false expired_served=false");
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scenario") {
        let name = args.get(i + 1).expect("scenario name");
        let n: usize = args
            .get(i + 2)
            .and_then(|s| s.parse().ok())
            .expect("session count");
        scenario(name, n);
        return;
    }
    let n = if fixtures::bench_mode() { 100_000 } else { 200 };
    let exe = std::env::current_exe().expect("own path");
    println!("session cache memory, {n} sessions per scenario (each in a fresh process)");
    println!(
        "{:<16} {:>10} {:>12} {:>14} {:>16}  target ≤ 1024 B",
        "scenario", "sessions", "token bytes", "RSS growth", "bytes/session"
    );
    for name in SCENARIOS {
        let out = std::process::Command::new(&exe)
            .args(["--scenario", name, &n.to_string()])
            .output()
            .expect("run scenario");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scenario {name} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let field = |k: &str| {
            text.lines()
                .filter(|l| l.starts_with("RESULT"))
                .flat_map(|l| l.split_whitespace())
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
                .unwrap_or_default()
        };
        let before: f64 = field("rss_before").parse().unwrap_or(0.0);
        let after: f64 = field("rss_after").parse().unwrap_or(0.0);
        let per: f64 = field("per_session").parse().unwrap_or(0.0);
        let verdict = if per <= 1024.0 { "met" } else { "MISSED" };
        println!(
            "{:<16} {:>10} {:>12} {:>11.1} MiB {:>16.0}  {verdict}",
            name,
            field("sessions"),
            field("token_bytes"),
            (after - before) / 1048576.0,
            per
        );
        assert_eq!(field("revoked_served"), "false");
        assert_eq!(field("expired_served"), "false");
    }
    println!("revoked and expired sessions were not served from the filled cache (every scenario)");
}
