//! Policy decisions over real sockets: allow by group, by email domain,
//! require mfa, exclude, block, bypass, service tokens, no app.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis::idp::dev::DevUser;
use tokio::io::AsyncReadExt;

use crate::harness::*;

/// Status of `url` after logging `user` in at that URL.
async fn status_after_login(env: &Env, url: &str, user: &str) -> u16 {
    let browser = env.browser();
    browse_login(env, &browser, url, user)
        .await
        .response
        .status()
        .as_u16()
}

/// Log `user` in at `url` and assert a policy refused them (not the login).
async fn denied_after_login(env: &Env, url: &str, user: &str) {
    assert_policy_denied(browse_login(env, &env.browser(), url, user).await).await;
}

/// A group in the ID token's groups claim allows (carol: contractors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_group() {
    let env = env().start().await;
    assert_eq!(
        status_after_login(&env, &env.url("app.localhost", "/"), "00ucarol").await,
        200
    );
}

/// A verified email in the domain allows (bob@example.com).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_email_domain() {
    let env = env().start().await;
    assert_eq!(
        status_after_login(&env, &env.url("app.localhost", "/"), "00ubob").await,
        200
    );
}

/// An unverified email never matches an email rule (dave@example.com is unverified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_email_does_not_match_email_domain() {
    let env = env().start().await;
    denied_after_login(&env, &env.url("app.localhost", "/"), "00udave").await;
}

/// `require: auth_method: mfa` reads `amr`: alice (mfa) passes, dave
/// (engineering, pwd only) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_mfa_from_amr() {
    let env = env().start().await;
    assert_eq!(
        status_after_login(&env, &env.url("app.localhost", "/admin/x"), "00ualice").await,
        200
    );
    denied_after_login(&env, &env.url("app.localhost", "/admin/x"), "00udave").await;
    assert!(env
        .upstream
        .seen()
        .iter()
        .all(|s| s.header("cf-access-authenticated-user-email") != Some("dave@example.com")));
}

/// `exclude` wins over `include`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_overrides_include() {
    let env = env().start().await;
    env.idp
        .add_user(DevUser::new("00uexcl", "excluded@example.com", "Excluded"));
    denied_after_login(&env, &env.url("app.localhost", "/"), "00uexcl").await;
}

/// A matching block policy denies with 403 before a later allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_policy_denies() {
    let env = env().start().await;
    denied_after_login(&env, &env.url("blocked.localhost", "/"), "00ubob").await;
    assert_eq!(
        status_after_login(&env, &env.url("blocked.localhost", "/"), "00ualice").await,
        200
    );
}

/// No policy matching is a 403 too (bob is not in engineering for /admin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_policy_is_403() {
    let env = env().start().await;
    denied_after_login(&env, &env.url("app.localhost", "/admin"), "00ubob").await;
}

/// Bypass forwards without a session and without identity headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_needs_no_session_and_sends_no_identity() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = env.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/public/page");
    assert!(seen[0].header("cf-access-jwt-assertion").is_none());
    assert!(seen[0]
        .header("cf-access-authenticated-user-email")
        .is_none());
}

/// A valid service token passes a service_auth policy and the upstream gets
/// a proxy-signed assertion with `common_name`, no email, and never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_allows() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("api.localhost", "/v1/things"))
        .header("CF-Access-Client-Id", "ci.access")
        .header("CF-Access-Client-Secret", "ci-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = env.upstream.seen();
    let s = seen.last().unwrap();
    assert!(s.header("cf-access-client-secret").is_none());
    assert!(s.header("cf-access-client-id").is_none());
    assert!(s.header("cf-access-authenticated-user-email").is_none());
    let assertion = s.header("cf-access-jwt-assertion").expect("assertion");
    let payload = assertion.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["common_name"], "ci.access");
}

/// A wrong secret, or only one of the two headers, is 401; nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_with_wrong_secret_is_401() {
    let env = env().start().await;
    let c = env.client();
    let url = env.url("api.localhost", "/v1/things");
    let r = c
        .get(&url)
        .header("CF-Access-Client-Id", "ci.access")
        .header("CF-Access-Client-Secret", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(&url)
        .header("CF-Access-Client-Id", "ci.access")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(env.upstream.seen().is_empty());
}

/// A valid service token on an app without a service_auth policy is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_without_service_auth_policy_is_403() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/"))
        .header("CF-Access-Client-Id", "ci.access")
        .header("CF-Access-Client-Secret", "ci-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(env.upstream.seen().is_empty());
}

/// A host no app serves is 404 and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("nowhere.localhost", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(env.upstream.seen().is_empty());
}

/// One bypassed app on `app.localhost` with the upstream list `upstreams`.
fn pool(upstreams: &str) -> String {
    format!(
        r#"
apps:
  - name: pool
    domain: app.localhost
    upstream: {upstreams}
    policies:
      - name: anyone
        decision: bypass
        include: [{{ everyone: true }}]
"#
    )
}

/// Status of a GET of `path` on the pool app.
async fn pool_get(env: &Env, path: &str) -> u16 {
    let url = env.url("app.localhost", path);
    env.client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `n` requests to the pool app all answer 200 and all reach the upstream.
async fn all_reach_the_upstream(env: &Env, n: usize) {
    all_reach_the_upstream_after(env, n, 0).await;
}

/// [`all_reach_the_upstream`] when it has seen `before` requests already.
async fn all_reach_the_upstream_after(env: &Env, n: usize, before: usize) {
    for i in 0..n {
        assert_eq!(pool_get(env, &format!("/r{i}")).await, 200, "request {i}");
    }
    assert_eq!(env.upstream.seen().len(), before + n);
}

/// With several upstreams, a dead one is skipped: every request still
/// reaches the live upstream (round-robin with passive failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_skipped() {
    let dead = free_port();
    let policies = pool(&format!(r#"["http://127.0.0.1:{dead}", "${{UPSTREAM}}"]"#));
    let env = env().policies(&policies).start().await;
    all_reach_the_upstream(&env, 6).await;
}

/// An upstream written as a host name is resolved when the request is
/// forwarded: `localhost` reaches the upstream on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_host_name_is_resolved_when_forwarding() {
    let policies = pool(r#"["http://localhost:${UPSTREAM_PORT}"]"#);
    let env = env().policies(&policies).start().await;
    assert_eq!(pool_get(&env, "/by-name").await, 200);
    let seen = env.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/by-name");
}

/// A name that does not resolve is skipped like a refused connect: every
/// request goes to the app's other upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_upstream_name_is_skipped() {
    let policies = pool(r#"["http://no-such-host.invalid:80", "${UPSTREAM}"]"#);
    // No active check during the test (the first runs after an interval):
    // only the failed lookup can mark the name down.
    let env = env()
        .policies(&policies)
        .config("upstream_health: { interval: 1h }\n")
        .start()
        .await;
    all_reach_the_upstream(&env, 4).await;
    assert!(env.state().health.is_down("no-such-host.invalid:80"));
}

/// With only names that do not resolve, the request is 502 and nothing is
/// sent anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resolvable_upstream_is_502() {
    let policies = pool(r#"["http://no-such-host.invalid:80"]"#);
    let env = env().policies(&policies).start().await;
    assert_eq!(pool_get(&env, "/x").await, 502);
    assert!(env.upstream.seen().is_empty());
}

/// Connections to a port that carried a request (sent at least one byte).
async fn count_requests_on(listener: tokio::net::TcpListener) -> Arc<AtomicUsize> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1];
                if let Ok(1) = conn.read(&mut buf).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    hits
}

/// An upstream that refused a connect is out of the rotation: later
/// requests all go to the live one, none even connects to it, also once
/// something listens on its port again (until a health check sees it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_refused_is_not_tried_again() {
    let dead = free_port();
    let policies = pool(&format!(r#"["http://127.0.0.1:{dead}", "${{UPSTREAM}}"]"#));
    // No active check during the test (the first runs after an interval):
    // only the failed connect can mark it down.
    let env = env()
        .policies(&policies)
        .config("upstream_health: { interval: 1h }\n")
        .start()
        .await;
    assert_eq!(pool_get(&env, "/first").await, 200);
    assert!(env.state().health.is_down(&format!("127.0.0.1:{dead}")));
    let hits = count_requests_on(
        tokio::net::TcpListener::bind(("127.0.0.1", dead))
            .await
            .unwrap(),
    )
    .await;
    all_reach_the_upstream_after(&env, 6, 1).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a down upstream got requests"
    );
}

/// Active checks: an upstream that stops listening is marked down and
/// skipped; when it listens again it is marked up and gets its turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_an_upstream_out_and_back() {
    let second = portcullis::demo::echo::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = second.addr();
    let policies = pool(&format!(r#"["${{UPSTREAM}}", "http://{addr}"]"#));
    let env = env()
        .policies(&policies)
        .config("upstream_health: { interval: 1s, timeout: 1s }\n")
        .start()
        .await;
    let authority = addr.to_string();
    drop(second);
    eventually(
        "the stopped upstream marked down",
        Duration::from_secs(10),
        async || env.state().health.is_down(&authority),
    )
    .await;
    all_reach_the_upstream(&env, 6).await;

    let back = portcullis::demo::echo::start(addr).await.unwrap();
    eventually(
        "the upstream marked up again",
        Duration::from_secs(10),
        async || !env.state().health.is_down(&authority),
    )
    .await;
    for i in 0..4 {
        assert_eq!(pool_get(&env, &format!("/again{i}")).await, 200);
    }
    assert_eq!(back.seen().len(), 2, "round-robin includes it again");
}
