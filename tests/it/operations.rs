//! Operating the proxy: policy hot reload (a good file changes decisions, a
//! broken one keeps the last good set and is counted) and the metrics
//! listener (`/metrics`, `/healthz`, `/readyz`), which the proxy listener
//! never serves. Metrics are process-global and tests run in parallel: a
//! test that asserts what a counter moved by runs the proxy in a process of
//! its own (`EnvBuilder::own_process`) and asserts the exact delta.

use std::time::{Duration, Instant};

use portcullis::policy::reload::POLL_INTERVAL;

use crate::harness::{
    assert_policy_denied, browse_login, env, eventually, login_ok, metric, write_policies, Env,
    POLICIES,
};

/// How long a reload may take to show.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Whether any sample of `name` exists.
fn has_metric(text: &str, name: &str) -> bool {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
}

fn reloads(text: &str, result: &str) -> f64 {
    metric(
        text,
        "portcullis_policy_reloads_total",
        &[("result", result)],
    )
}

/// The default policies with the `blocked` app's "block sales" policy turned
/// into an allow, so bob (sales) gets in.
fn policies_allowing_sales() -> String {
    let block = "      - name: block sales\n        decision: block\n";
    assert!(POLICIES.contains(block), "POLICIES changed shape");
    POLICIES.replace(
        block,
        "      - name: block sales\n        decision: allow\n",
    )
}

/// Status of an API GET at `host` `/` with `browser`'s cookies.
async fn status(env: &Env, browser: &reqwest::Client, host: &str) -> u16 {
    browser
        .get(env.url(host, "/"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Log bob in at blocked.localhost, where the default policies block sales.
async fn bob_blocked(env: &Env) -> reqwest::Client {
    let browser = env.browser();
    let end = browse_login(env, &browser, &env.url("blocked.localhost", "/"), "00ubob").await;
    assert_policy_denied(end).await;
    browser
}

/// Assert `f` stays true for `window` (checked repeatedly): used to show
/// that something does *not* change.
async fn holds_for(what: &str, window: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(f().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------- hot reload

/// Rewriting the policy file changes decisions without a restart: bob
/// (sales) is blocked at blocked.localhost, then allowed once the file says
/// so, and the reload is counted as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_policy_file_is_hot_reloaded() {
    let env = env().threads(2).start().await;
    let browser = bob_blocked(&env).await;
    assert_eq!(status(&env, &browser, "blocked.localhost").await, 403);
    let before = reloads(&env.metrics().await, "success");

    write_policies(&env, &policies_allowing_sales());
    eventually("bob allowed after reload", RELOAD_WAIT, async || {
        status(&env, &browser, "blocked.localhost").await == 200
    })
    .await;
    eventually("success reload counted", RELOAD_WAIT, async || {
        reloads(&env.metrics().await, "success") > before
    })
    .await;
}

/// Write `broken` over a reloaded good policy set and check the good set
/// stays in force (bob still allowed, anonymous still refused) and the
/// failure is counted.
async fn assert_broken_file_keeps_last_good(broken: &str) {
    let env = env().start().await;
    let browser = bob_blocked(&env).await;
    write_policies(&env, &policies_allowing_sales());
    eventually(
        "bob allowed after the good reload",
        RELOAD_WAIT,
        async || status(&env, &browser, "blocked.localhost").await == 200,
    )
    .await;
    let before = reloads(&env.metrics().await, "error");

    write_policies(&env, broken);
    eventually("failed reload counted", RELOAD_WAIT, async || {
        reloads(&env.metrics().await, "error") > before
    })
    .await;
    let anon = env.client();
    holds_for("the last good policy set", POLL_INTERVAL * 4, async || {
        status(&env, &browser, "blocked.localhost").await == 200
            && status(&env, &anon, "blocked.localhost").await == 401
            && status(&env, &anon, "app.localhost").await == 401
    })
    .await;
}

/// A policy file that is not valid YAML is refused as a whole: the last good
/// policies keep deciding and `policy_reloads_total{result="error"}` moves
/// (SECURITY 11: never "nothing loaded, pass through").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_with_bad_yaml_keeps_the_last_good_set() {
    assert_broken_file_keeps_last_good(
        "apps:\n  - name: app\n    domain: [app.localhost\n    upstream: : :\n",
    )
    .await;
}

/// A policy file with an unknown selector is refused as a whole: the last
/// good policies keep deciding and the failure is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_with_unknown_selector_keeps_the_last_good_set() {
    let broken = policies_allowing_sales().replace("{ group: sales }", "{ groupz: sales }");
    assert!(broken.contains("groupz"));
    assert_broken_file_keeps_last_good(&broken).await;
}

// ------------------------------------------------------- metrics

/// After a login, a few allowed requests and a logout, `/metrics` shows the
/// request, login, session-cache, access-phase, upstream, revocation and
/// process metrics, each moved by exactly what this test did. The proxy
/// runs in a process of its own, so no other test's traffic is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_logins_requests_cache_hits_and_logouts() {
    let env = env().own_process().start().await;
    let before = env.metrics().await;
    for family in [
        "portcullis_logins_total{idp=\"okta\",result=\"success\"}",
        "portcullis_sessions_revoked_total{reason=\"logout\"}",
        "portcullis_policy_reloads_total{result=\"error\"}",
        "portcullis_session_cache_total{result=\"miss\"}",
    ] {
        assert!(before.contains(family), "{family} not in the first scrape");
    }
    let allow = [("app", "app"), ("decision", "allow")];
    let login = [("idp", "okta"), ("result", "success")];
    let hit = [("result", "hit")];
    let miss = [("result", "miss")];
    let up = [("app", "app"), ("class", "2xx")];
    let logout = [("reason", "logout")];

    let browser = env.browser();
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    assert_eq!(end.response.status(), 200, "{:?}", end.trail);
    // Every hop of the walk but the IdP's went through the access phase.
    let idp = format!("http://{}", env.idp.addr());
    let walk_hops = end.trail.iter().filter(|u| !u.starts_with(&idp)).count() as f64;
    for i in 0..3 {
        let r = browser
            .get(env.url("app.localhost", &format!("/m{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    let delta = |after: &str, name: &str, labels: &[(&str, &str)]| {
        metric(after, name, labels) - metric(&before, name, labels)
    };
    // A request is counted when its log phase runs, after the response.
    eventually("the fourth request counted", RELOAD_WAIT, async || {
        delta(
            &env.metrics().await,
            "portcullis_upstream_responses_total",
            &up,
        ) >= 4.0
    })
    .await;
    let after = env.metrics().await;
    assert_eq!(delta(&after, "portcullis_requests_total", &allow), 4.0);
    assert_eq!(delta(&after, "portcullis_logins_total", &login), 1.0);
    // `/authorized` caches the session it mints: all four are hits.
    assert_eq!(delta(&after, "portcullis_session_cache_total", &hit), 4.0);
    assert_eq!(delta(&after, "portcullis_session_cache_total", &miss), 0.0);
    assert_eq!(
        delta(&after, "portcullis_access_phase_seconds_count", &[]),
        walk_hops + 3.0
    );
    assert_eq!(
        delta(&after, "portcullis_upstream_responses_total", &up),
        4.0
    );
    assert_eq!(
        delta(&after, "portcullis_sessions_revoked_total", &logout),
        0.0
    );
    assert!(
        has_metric(&after, "portcullis_access_phase_seconds_bucket"),
        "no histogram buckets"
    );
    assert!(
        metric(
            &after,
            "portcullis_access_phase_seconds_bucket",
            &[("le", "+Inf")]
        ) >= metric(&after, "portcullis_access_phase_seconds_count", &[]),
        "the +Inf bucket holds every observation"
    );
    assert!(
        metric(&after, "process_resident_memory_bytes", &[]) > 0.0,
        "no process metrics"
    );

    // A logout revokes the one session; the auth domain's logout that
    // follows finds it revoked already and counts nothing more.
    let logout_at = async |url: String| {
        browser
            .post(url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
    };
    let r = logout_at(env.url("app.localhost", "/cdn-cgi/access/logout")).await;
    assert_eq!(r.status(), 200);
    let m = env.metrics().await;
    assert_eq!(delta(&m, "portcullis_sessions_revoked_total", &logout), 1.0);
    let r = logout_at(env.url("app.localhost", "/cdn-cgi/access/logout")).await;
    assert_eq!(r.status(), 302, "no app cookie left: on to the auth domain");
    let r = logout_at(crate::harness::location(&r)).await;
    assert_eq!(r.status(), 200);
    let m = env.metrics().await;
    assert_eq!(delta(&m, "portcullis_sessions_revoked_total", &logout), 1.0);
}

/// `/metrics` is never served on the proxy listener (SECURITY 12): on the
/// auth domain and unknown hosts it is 404, on an app host it is an app path
/// like any other (401 without a session, forwarded with one) — never the
/// Prometheus text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_served_on_the_proxy_listener() {
    let env = env().start().await;
    let client = env.client();
    let prometheus =
        |body: &str| body.contains("# HELP") || body.contains("portcullis_requests_total");
    for (host, want) in [
        ("auth.localhost", 404),
        ("nowhere.localhost", 404),
        ("app.localhost", 401),
    ] {
        let r = client.get(env.url(host, "/metrics")).send().await.unwrap();
        assert_eq!(r.status(), want, "{host}");
        assert!(
            !prometheus(&r.text().await.unwrap()),
            "{host} served metrics"
        );
    }
    let r = reqwest::get(format!("http://127.0.0.1:{}/metrics", env.port))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "by IP");
    assert!(!prometheus(&r.text().await.unwrap()));
    assert!(env.upstream.seen().is_empty());

    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !prometheus(&r.text().await.unwrap()),
        "app.localhost served metrics"
    );
    assert!(
        env.upstream.seen().iter().any(|s| s.uri == "/metrics"),
        "not forwarded to the app"
    );
}

/// The metrics listener answers `/healthz` and, once the IdP's discovery is
/// done and the store is open, `/readyz`, both 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_on_the_metrics_listener() {
    let env = env().start().await;
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", env.metrics_port))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = reqwest::get(format!("http://127.0.0.1:{}/metrics", env.metrics_port))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("# HELP"));
}
