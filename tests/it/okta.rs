//! Okta in full (issue 3), end to end through the real proxy and the dev IdP
//! playing Okta: groups beyond the token's 100 via the Okta API, custom and
//! org authorization servers, custom claims, PKCE, `test-idp` and `/readyz`,
//! signing-key rotation, outages, and several identity providers.

use std::time::Duration;

use portcullis::idp::dev::{self, DEV_API_TOKEN};
use serde_json::{json, Value};

use crate::harness::*;

// ---- helpers ---------------------------------------------------------------

/// One app on `app.localhost` allowing members of `team-150`, a group that
/// is not among the first 100 of pat's 151 groups.
const TEAM_150: &str = r#"
apps:
  - name: team
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: team 150
        decision: allow
        include: [{ group: team-150 }]
"#;

/// One app on `app.localhost` allowing the engineering department only.
const DEPARTMENT: &str = r#"
apps:
  - name: eng
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: engineering department
        decision: allow
        include: [{ claim: { name: department, value: engineering } }]
"#;

/// Two IdPs on the one dev IdP: `okta` (custom authorization server) and
/// `partner`, a generic OpenID provider on the org authorization server.
const TWO_IDPS: &str = r#"
  - name: okta
    type: okta
    config:
      client_id: __CLIENT_ID__
      client_secret: __CLIENT_SECRET__
      okta_account: __OKTA__
      authorization_server_id: default
      pkce_enabled: true
  - name: partner
    type: oidc
    config:
      client_id: __CLIENT_ID__
      client_secret: __CLIENT_SECRET__
      issuer: __OKTA__
      pkce_enabled: true
"#;

/// `app.localhost` accepts only `okta`; `other.localhost` accepts both and
/// lets in only users who came through `partner`.
const TWO_IDP_APPS: &str = r#"
apps:
  - name: okta only
    domain: app.localhost
    identity_providers: [okta]
    upstream: ${UPSTREAM}
    policies:
      - name: okta users
        decision: allow
        include: [{ login_method: okta }]
  - name: both
    domain: other.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: partner users
        decision: allow
        include: [{ login_method: partner }]
"#;

/// `http://127.0.0.1:PORT` of the dev IdP.
fn idp_base(env: &Env) -> String {
    format!("http://{}", env.idp.addr())
}

/// Follow the proxy's redirects from `url` until the browser is sent to the
/// IdP, and return that authorize URL.
async fn authorize_url(env: &Env, browser: &reqwest::Client, url: &str) -> String {
    let mut resp = browser
        .get(url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    for _ in 0..6 {
        assert!(
            resp.status().is_redirection(),
            "{url}: got {} before the IdP",
            resp.status()
        );
        let next = location(&resp);
        if next.starts_with(&idp_base(env)) {
            return next;
        }
        resp = browser
            .get(&next)
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
    }
    panic!("{url}: never reached the IdP");
}

/// Follow the proxy's redirects from `url` until a response that is not a
/// redirect (a page of the proxy), which is returned.
async fn follow_to_page(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    let mut resp = browser
        .get(url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    for _ in 0..6 {
        if !resp.status().is_redirection() {
            return resp;
        }
        let next = location(&resp);
        assert!(
            next.contains(".localhost:"),
            "{url}: left the proxy for {next}"
        );
        resp = browser
            .get(&next)
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
    }
    panic!("{url}: too many redirects");
}

/// A query parameter of an absolute URL.
fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Sign `user` in at the IdP with a login form built from `authorize` and
/// changed by `edit`, and return where the IdP sends the browser back.
async fn idp_login(
    browser: &reqwest::Client,
    authorize: &str,
    user: &str,
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> String {
    let (login_url, mut form) = dev::login_form(authorize, user).unwrap();
    edit(&mut form);
    let resp = browser.post(&login_url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the IdP signs {user} in");
    location(&resp)
}

/// `/cdn-cgi/access/get-identity` on `host` as JSON.
async fn identity(env: &Env, browser: &reqwest::Client, host: &str) -> Value {
    let r = browser
        .get(env.url(host, "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "get-identity");
    r.json().await.unwrap()
}

/// Session ids the store holds for the `okta` user `sub` (revoking them: use
/// at the end of a test only).
async fn sessions_of(env: &Env, sub: &str) -> Vec<String> {
    env.state()
        .store
        .revoke_user_sessions("okta", sub)
        .await
        .unwrap()
}

// ---- groups beyond the token's 100 ----------------------------------------

/// With `api_token`, the login reads every group from Okta's API, following
/// `Link: rel="next"` across pages: pat (151 groups) is let in by a policy
/// on `team-150`, which the ID token's 100 groups do not carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_reads_all_groups_across_pages_so_team_150_is_allowed() {
    let env = env()
        .policies(TEAM_150)
        .start_with(IdpSetup::new(&okta_idp(&format!(
            "      authorization_server_id: default\n      api_token: {DEV_API_TOKEN}"
        ))))
        .await;
    env.idp.set_groups_page_max(60);
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00upat").await;
    assert_eq!(
        env.idp.groups_api_requests(),
        3,
        "151 groups in pages of 60"
    );
    let groups = env
        .upstream
        .seen()
        .last()
        .unwrap()
        .header("x-portcullis-groups")
        .unwrap()
        .to_string();
    assert_eq!(groups.split(',').count(), 151);
    assert!(groups.split(',').any(|g| g == "team-150"), "{groups}");
}

/// Without `api_token`, groups come from the ID token only, which stops at
/// 100: the same policy on `team-150` refuses pat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_api_token_groups_stop_at_the_tokens_100_and_team_150_is_refused() {
    let env = env()
        .policies(TEAM_150)
        .start_with(IdpSetup::new(&okta_idp(
            "      authorization_server_id: default",
        )))
        .await;
    let browser = env.browser();
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00upat").await;
    assert_eq!(end.response.status(), 403, "trail {:?}", end.trail);
    assert_eq!(end.trail.last().unwrap(), &env.url("app.localhost", "/"));
    let id = identity(&env, &browser, "app.localhost").await;
    assert_eq!(id["groups"].as_array().unwrap().len(), 100);
    assert_eq!(env.idp.groups_api_requests(), 0);
}

/// An Okta API failure (a wrong API token) fails the login with a 502 page
/// that says why; no session is created and the browser is still signed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_api_failure_fails_the_login_with_a_502_page_and_no_session() {
    let env = env()
        .policies(TEAM_150)
        .start_with(IdpSetup::new(&okta_idp(
            "      authorization_server_id: default\n      api_token: not-the-api-token",
        )))
        .await;
    let browser = env.browser();
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00upat").await;
    assert_eq!(end.response.status(), 502, "trail {:?}", end.trail);
    assert!(
        end.trail
            .last()
            .unwrap()
            .contains("/cdn-cgi/access/callback"),
        "{:?}",
        end.trail
    );
    let page = end.response.text().await.unwrap();
    assert!(page.contains("Group memberships unavailable"), "{page}");
    assert!(env.idp.groups_api_requests() >= 1);
    let r = browser
        .get(env.url("app.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "still signed out");
    assert!(
        sessions_of(&env, "00upat").await.is_empty(),
        "no session was stored"
    );
    assert!(env.upstream.seen().is_empty());
}

// ---- authorization servers -------------------------------------------------

/// `authorization_server_id: default` makes discovery, the issuer and the
/// authorize endpoint `…/oauth2/default`, with the `groups` scope requested
/// there; the login works and the token's groups reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_authorization_server_is_used_for_discovery_issuer_and_groups_scope() {
    let env = env().start().await;
    let issuer = format!("{}/oauth2/default", env.idp.okta_account());
    assert_eq!(env.state().idp("okta").unwrap().config().issuer, issuer);
    let browser = env.browser();
    let authorize = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    assert!(
        authorize.starts_with(&format!("{issuer}/v1/authorize?")),
        "{authorize}"
    );
    let scope = query(&authorize, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "groups"), "{scope}");
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ualice",
    )
    .await;
    let seen = env.upstream.seen();
    assert_eq!(
        seen.last().unwrap().header_values("x-portcullis-groups"),
        ["engineering,everyone"]
    );
}

/// Without `authorization_server_id` the org authorization server is used:
/// issuer = `okta_account`, endpoints under `/oauth2/v1`; logins work and
/// carry the groups claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_authorization_server_works_without_authorization_server_id() {
    let env = env()
        .start_with(IdpSetup::new(&okta_idp("      claims: [department]")))
        .await;
    let okta = env.idp.okta_account();
    assert_eq!(env.state().idp("okta").unwrap().config().issuer, okta);
    let browser = env.browser();
    let authorize = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    assert!(
        authorize.starts_with(&format!("{okta}/oauth2/v1/authorize?")),
        "{authorize}"
    );
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ualice",
    )
    .await;
    let seen = env.upstream.seen();
    assert_eq!(
        seen.last().unwrap().header_values("x-portcullis-groups"),
        ["engineering,everyone"]
    );
}

// ---- custom claims ---------------------------------------------------------

/// A claim named in `claims` is copied from the ID token into the session
/// and shown under `custom` by `/get-identity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_claim_is_shown_in_get_identity() {
    let env = env().start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let id = identity(&env, &browser, "app.localhost").await;
    assert_eq!(id["custom"], json!({"department": "engineering"}));
}

/// A claim not named in `claims` is not copied: `custom` stays empty and no
/// claim header reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_claim_is_not_copied() {
    let env = env()
        .start_with(IdpSetup::new(&okta_idp(
            "      authorization_server_id: default",
        )))
        .await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    assert!(env
        .upstream
        .seen()
        .last()
        .unwrap()
        .header("x-portcullis-claim-department")
        .is_none());
    let id = identity(&env, &browser, "app.localhost").await;
    assert!(
        id["custom"].as_object().is_none_or(|m| m.is_empty()),
        "{id}"
    );
}

/// A `claim` selector matches the copied claim: alice (engineering) is let
/// in, bob (sales) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_selector_allows_engineering_and_refuses_sales() {
    let env = env().policies(DEPARTMENT).start().await;
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ualice",
    )
    .await;
    assert_policy_denied(fresh_login(&env, "00ubob").await).await;
    assert_eq!(
        env.upstream.seen().len(),
        1,
        "only alice reached the upstream"
    );
}

/// With `headers.forward_claims` on, each copied claim is forwarded as
/// `X-Portcullis-Claim-<Name>`, and a client's own copy is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_forwarded_upstream_when_forward_claims_is_on() {
    let env = env().start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/spoof"))
        .header("x-portcullis-claim-department", "finance")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = env.upstream.seen();
    assert_eq!(seen.last().unwrap().uri, "/spoof");
    assert_eq!(
        seen.last()
            .unwrap()
            .header_values("x-portcullis-claim-department"),
        ["engineering"]
    );
}

/// With `headers.forward_claims` off, no claim header is forwarded, while
/// `/get-identity` still shows the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_not_forwarded_when_forward_claims_is_off() {
    let mut setup = IdpSetup::new(&okta_idp(
        "      authorization_server_id: default\n      claims: [department]",
    ));
    setup.forward_claims = false;
    let env = env().start_with(setup).await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    assert!(env
        .upstream
        .seen()
        .last()
        .unwrap()
        .header("x-portcullis-claim-department")
        .is_none());
    let id = identity(&env, &browser, "app.localhost").await;
    assert_eq!(id["custom"]["department"], "engineering");
}

// ---- PKCE ------------------------------------------------------------------

/// With `pkce_enabled` every authorize URL carries a fresh S256 challenge;
/// without it, none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_url_carries_an_s256_challenge_exactly_when_pkce_is_enabled() {
    let env = env().start().await;
    let browser = env.browser();
    let a = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    let b = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    assert_eq!(
        query(&a, "code_challenge_method").as_deref(),
        Some("S256"),
        "{a}"
    );
    let challenge = query(&a, "code_challenge").unwrap();
    assert_eq!(challenge.len(), 43, "base64url of a SHA-256");
    assert_ne!(
        query(&b, "code_challenge").unwrap(),
        challenge,
        "one challenge per login"
    );
    drop(env);
    let env = crate::harness::env()
        .start_with(IdpSetup::new(&okta_idp(
            "      authorization_server_id: default",
        )))
        .await;
    let plain = authorize_url(&env, &env.browser(), &env.url("app.localhost", "/")).await;
    assert_eq!(query(&plain, "code_challenge"), None, "{plain}");
    assert_eq!(query(&plain, "code_challenge_method"), None, "{plain}");
}

/// A callback whose code was issued for another login's challenge fails:
/// the proxy redeems it with its own verifier, which the IdP refuses; the
/// browser gets the sign-in-failed page and no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_with_a_code_bound_to_another_challenge_fails() {
    let env = env().start().await;
    let browser = env.browser();
    let first = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    let second = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    let other_challenge = query(&second, "code_challenge").unwrap();
    let callback = idp_login(&browser, &first, "00ualice", |form| {
        for (k, v) in form.iter_mut() {
            if k == "code_challenge" {
                *v = other_challenge.clone();
            }
        }
    })
    .await;
    assert!(
        callback.contains("/cdn-cgi/access/callback?code="),
        "{callback}"
    );
    let r = browser
        .get(&callback)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Sign-in failed"));
    assert!(sessions_of(&env, "00ualice").await.is_empty());
}

/// A login stripped of its challenge on the way to the IdP (a PKCE
/// downgrade) fails at the callback: the proxy always sends its verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_for_a_login_stripped_of_its_challenge_fails() {
    let env = env().start().await;
    let browser = env.browser();
    let authorize = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
    let callback = idp_login(&browser, &authorize, "00ualice", |form| {
        form.retain(|(k, _)| k != "code_challenge" && k != "code_challenge_method");
    })
    .await;
    let r = browser
        .get(&callback)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(sessions_of(&env, "00ualice").await.is_empty());
}

/// The IdP enforces the challenge the proxy sent: a code from a proxy login
/// cannot be redeemed without the proxy's verifier (none, or a wrong one),
/// even with the right client credentials. So every successful login above
/// proves the proxy sent the matching verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_refuses_a_proxy_code_without_the_proxys_verifier() {
    let env = env().start().await;
    let browser = env.browser();
    let token_url = format!("{}/v1/token", env.idp.issuer());
    for verifier in [
        None,
        Some("a-wrong-verifier-0123456789-0123456789-0123456789"),
    ] {
        let authorize = authorize_url(&env, &browser, &env.url("app.localhost", "/")).await;
        let callback = idp_login(&browser, &authorize, "00ualice", |_| {}).await;
        let code = query(&callback, "code").unwrap();
        let redirect_uri = query(&authorize, "redirect_uri").unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.to_string()));
        }
        let r = reqwest::Client::new()
            .post(&token_url)
            .basic_auth(env.idp.client_id(), Some(env.idp.client_secret()))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "verifier {verifier:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "verifier {verifier:?}");
    }
}

// ---- Test connection and readiness -----------------------------------------

/// A config file for `test-idp` against `idp` with `secret`.
fn test_idp_config(dir: &std::path::Path, idp: &dev::DevIdp, secret: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/main.yaml"), "apps: []\n").unwrap();
    let config = format!(
        r#"
listen:
  - addr: 127.0.0.1:{port}
auth_domain: auth.localhost:{port}
store: sqlite://{data}/state.db
key_dir: {data}/keys
identity_providers:
  - name: okta
    type: okta
    config:
      client_id: {client_id}
      client_secret: {secret}
      okta_account: {okta}
      authorization_server_id: default
policies: {data}/policies
"#,
        port = free_port(),
        data = dir.display(),
        client_id = idp.client_id(),
        okta = idp.okta_account(),
    );
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn start_dev_idp() -> dev::DevIdp {
    dev::start(dev::DevIdpOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        Vec::new(),
    ))
    .await
    .expect("dev idp")
}

/// Run the built `portcullis test-idp -c FILE`: exit status and stdout.
async fn run_test_idp(config: &std::path::Path) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("test-idp")
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run portcullis test-idp");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `test-idp` against a healthy IdP prints discovery, JWKS and client
/// credentials as passed and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_idp_passes_every_step_and_exits_0() {
    let idp = start_dev_idp().await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_test_idp(&test_idp_config(dir.path(), &idp, idp.client_secret())).await;
    assert!(ok, "{out}");
    for step in ["discovery", "jwks", "client credentials"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("ok    {step}:"))),
            "{step}: {out}"
        );
    }
    assert!(
        out.contains(&format!("{}/oauth2/default", idp.okta_account())),
        "{out}"
    );
    assert!(out.contains("invalid_grant"), "{out}");
}

/// With a wrong client secret, `test-idp` passes discovery and JWKS, fails
/// at the client-credentials step naming `invalid_client`, and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_idp_with_a_wrong_client_secret_fails_at_client_credentials() {
    let idp = start_dev_idp().await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_test_idp(&test_idp_config(dir.path(), &idp, "not-the-secret")).await;
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("ok    jwks:")),
        "{out}"
    );
    let fail = out
        .lines()
        .find(|l| l.contains("FAIL"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        fail.contains("client credentials") && fail.contains("invalid_client"),
        "{fail}"
    );
    assert!(
        !out.contains("not-the-secret"),
        "the secret is never printed"
    );
}

/// With the IdP offline, `test-idp` fails at discovery, runs no later step,
/// and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_idp_with_the_idp_offline_fails_at_discovery() {
    let idp = start_dev_idp().await;
    idp.set_offline(true);
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_test_idp(&test_idp_config(dir.path(), &idp, idp.client_secret())).await;
    assert!(!ok, "{out}");
    let fail = out
        .lines()
        .find(|l| l.contains("FAIL"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(fail.contains("discovery") && fail.contains("503"), "{fail}");
    assert!(
        !out.contains("jwks") && !out.contains("client credentials"),
        "{out}"
    );
}

/// `/readyz` is 503 while the IdP has never been discovered (it is offline
/// at start) and turns 200 by itself once it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_first_discovery_succeeds() {
    let mut setup = IdpSetup::new(&okta_idp("      authorization_server_id: default"));
    setup.idp_offline_at_start = true;
    let env = env().start_with(setup).await;
    for _ in 0..3 {
        assert_eq!(env.readyz().await, 503);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    env.idp.set_offline(false);
    eventually(
        "ready after the IdP is back",
        Duration::from_secs(20),
        async || env.readyz().await == 200,
    )
    .await;
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ualice",
    )
    .await;
}

/// Once discovery has succeeded, `/readyz` stays 200 during a later IdP
/// outage, also after a failed discovery refresh: sessions still serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_stays_200_during_a_later_outage() {
    let env = env().start().await;
    env.idp.set_offline(true);
    assert!(
        env.state().idp("okta").unwrap().discover().await.is_err(),
        "the refresh fails"
    );
    for _ in 0..3 {
        assert_eq!(env.readyz().await, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- key rotation and outages ----------------------------------------------

/// After Okta rotates its signing key (a new `kid`), new logins work without
/// a restart, existing sessions keep working, and logins still work once the
/// old key is no longer published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_work_after_a_signing_key_rotation_without_restart() {
    let env = env().start().await;
    let alice = env.browser();
    login_ok(&env, &alice, &env.url("app.localhost", "/"), "00ualice").await;
    let before = env.idp.active_kid();
    env.idp.rotate_key();
    assert_ne!(env.idp.active_kid(), before);
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ubob",
    )
    .await;
    let r = alice
        .get(env.url("app.localhost", "/still"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.idp.retire_old_key();
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ucarol",
    )
    .await;
}

/// While the IdP is offline, an existing session keeps working (no IdP call
/// on the session path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_session_keeps_working_while_the_idp_is_offline() {
    let env = env().start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    env.idp.set_offline(true);
    for i in 0..3 {
        let r = browser
            .get(env.url("app.localhost", &format!("/during/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = browser
        .get(env.url("app.localhost", "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Walk a new login with a fresh browser until the proxy itself answers with
/// a 502 page (the first attempts may still be sent to the offline IdP while
/// its last answer is fresh), within `timeout`.
async fn wait_for_502_login(env: &Env, timeout: Duration) -> reqwest::Response {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let end = browse_login(
            env,
            &env.browser(),
            &env.url("app.localhost", "/"),
            "00ubob",
        )
        .await;
        if end.response.status() == 502 {
            let last = end.trail.last().unwrap();
            assert!(
                last.contains("auth.localhost") && last.contains("/cdn-cgi/access/login"),
                "{last}"
            );
            return end.response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 502 page; last walk {:?}",
            end.trail
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// While the IdP is offline, a new login gets the proxy's 502 page instead
/// of being sent to an IdP that cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_login_during_an_outage_gets_a_502_page() {
    let env = env().start().await;
    env.idp.set_offline(true);
    let resp = wait_for_502_login(&env, Duration::from_secs(15)).await;
    let page = resp.text().await.unwrap();
    assert!(page.contains("Identity provider unavailable"), "{page}");
    assert!(env.upstream.seen().is_empty());
}

/// After an outage, logins recover by themselves once the IdP is back: no
/// restart, no operator action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_recovers_by_itself_when_the_idp_is_back() {
    let env = env().start().await;
    env.idp.set_offline(true);
    wait_for_502_login(&env, Duration::from_secs(15)).await;
    env.idp.set_offline(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let end = browse_login(
            &env,
            &env.browser(),
            &env.url("app.localhost", "/"),
            "00ualice",
        )
        .await;
        if end.response.status() == 200 {
            break;
        }
        assert_eq!(end.response.status(), 502, "trail {:?}", end.trail);
        assert!(
            std::time::Instant::now() < deadline,
            "login did not recover"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(env.upstream.seen().len(), 1);
}

// ---- several identity providers --------------------------------------------

/// An app that accepts one identity provider sends the browser straight to
/// it: no chooser page, and the session records that IdP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_with_one_identity_provider_goes_straight_to_it() {
    let env = env()
        .policies(TWO_IDP_APPS)
        .start_with(IdpSetup::new(TWO_IDPS))
        .await;
    let browser = env.browser();
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    assert_eq!(end.response.status(), 200, "trail {:?}", end.trail);
    let authorize = end
        .trail
        .iter()
        .find(|u| u.starts_with(&idp_base(&env)))
        .unwrap();
    assert!(
        authorize.starts_with(&format!("{}/v1/authorize?", env.idp.issuer())),
        "{authorize}"
    );
    let id = identity(&env, &browser, "app.localhost").await;
    assert_eq!(id["idp"], json!({"name": "okta", "type": "okta"}));
}

/// The chooser page of `other.localhost` (from the auth domain's login).
async fn chooser_page(env: &Env, browser: &reqwest::Client) -> String {
    let r = follow_to_page(browser, &env.url("other.localhost", "/")).await;
    assert_eq!(r.status(), 200, "the chooser page");
    assert_eq!(r.url().host_str(), Some("auth.localhost"));
    r.text().await.unwrap()
}

/// The chooser's link for IdP `name`, HTML-unescaped.
fn chooser_link(page: &str, name: &str) -> String {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"'))
        .find(|(_, after)| after.starts_with(&format!(">{name}<")))
        .map(|(href, _)| href.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("no link for {name} in {page}"))
}

/// An app that accepts several identity providers shows a chooser page on
/// the auth domain listing each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_accepting_several_identity_providers_shows_the_chooser() {
    let env = env()
        .policies(TWO_IDP_APPS)
        .start_with(IdpSetup::new(TWO_IDPS))
        .await;
    let browser = env.browser();
    let page = chooser_page(&env, &browser).await;
    for name in ["okta", "partner"] {
        let link = chooser_link(&page, name);
        assert!(link.contains("/cdn-cgi/access/login?"), "{link}");
        assert_eq!(query(&link, "idp").as_deref(), Some(name), "{link}");
    }
    assert!(env.upstream.seen().is_empty());
}

/// `login_method` matches the IdP the user chose: through `partner` (a
/// generic OIDC provider on the org server) the app lets the user in and
/// `/get-identity` names it; through `okta` the same user is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_method_selector_matches_the_identity_provider_used() {
    let env = env()
        .policies(TWO_IDP_APPS)
        .start_with(IdpSetup::new(TWO_IDPS))
        .await;

    let browser = env.browser();
    let page = chooser_page(&env, &browser).await;
    let end = browse_login(&env, &browser, &chooser_link(&page, "partner"), "00ualice").await;
    assert_eq!(end.response.status(), 200, "trail {:?}", end.trail);
    let org_authorize = format!("{}/oauth2/v1/authorize?", env.idp.okta_account());
    assert!(
        end.trail.iter().any(|u| u.starts_with(&org_authorize)),
        "{:?}",
        end.trail
    );
    let id = identity(&env, &browser, "other.localhost").await;
    assert_eq!(id["idp"], json!({"name": "partner", "type": "oidc"}));

    let browser = env.browser();
    let page = chooser_page(&env, &browser).await;
    let end = browse_login(&env, &browser, &chooser_link(&page, "okta"), "00ualice").await;
    assert_eq!(end.response.status(), 403, "trail {:?}", end.trail);
    assert_eq!(end.trail.last().unwrap(), &env.url("other.localhost", "/"));
    assert_eq!(
        env.upstream.seen().len(),
        1,
        "only the partner login reached the upstream"
    );
}
