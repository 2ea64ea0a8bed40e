//! The access log through the real proxy: one `request` line per request
//! (allowed, denied, unauthenticated, bypass, service token, proxy-owned)
//! with the deciding policy and who asked, found by the response's
//! `X-Request-Id`; `login`, `logout`, `scim`, `revocation` and `reload`
//! lines; the text format; reopening after rotation; and never a cookie,
//! token, query string or secret in the file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// How long a line may take to reach the file.
const LINE_WAIT: Duration = Duration::from_secs(5);

/// `access_log` in the config: `access.log` next to the config file (a
/// relative path: resolved against the config folder).
fn with_log(b: EnvBuilder) -> EnvBuilder {
    b.config("access_log: { path: access.log }\n")
}

fn log_path(env: &Env) -> PathBuf {
    env.data_path().join("access.log")
}

fn read_log(env: &Env) -> String {
    std::fs::read_to_string(log_path(env)).unwrap_or_default()
}

/// Every JSON line written so far (each must parse).
fn log_lines(env: &Env) -> Vec<Value> {
    read_log(env)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The first line whose fields include every one of `want`, waiting for it.
async fn line_with(env: &Env, want: Value) -> Value {
    let want = want.as_object().unwrap().clone();
    let matches = |l: &Value| want.iter().all(|(k, v)| l.get(k) == Some(v));
    eventually(
        &format!("a log line with {want:?}"),
        LINE_WAIT,
        async || log_lines(env).iter().any(matches),
    )
    .await;
    log_lines(env).into_iter().find(matches).unwrap()
}

/// The `request` line of the response `r`, by its `X-Request-Id`.
async fn request_line(env: &Env, r: &reqwest::Response) -> Value {
    let id = request_id(r);
    line_with(env, json!({ "type": "request", "request_id": id })).await
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .expect("X-Request-Id")
        .to_str()
        .unwrap()
        .to_string()
}

fn upstream_url(env: &Env) -> String {
    format!("http://{}", env.upstream.addr())
}

/// The fields of every `request` line, exactly.
const REQUEST_FIELDS: [&str; 18] = [
    "type",
    "ts",
    "request_id",
    "client_ip",
    "method",
    "host",
    "path",
    "status",
    "app",
    "decision",
    "policy",
    "email",
    "sub",
    "idp",
    "service_token",
    "upstream",
    "duration_ms",
    "bytes_sent",
];

fn assert_request_fields(line: &Value) {
    let mut keys: Vec<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want = REQUEST_FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{line}");
}

/// An allowed request's line names the user, the allowing policy, the
/// upstream, what the client got (status and body bytes) and the path
/// without its query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_request_names_user_policy_and_upstream() {
    let env = with_log(env()).start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = html_get(
        &browser,
        &env.url("app.localhost", "/reports//%71%31?year=2026"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let line = request_line(&env, &r).await;
    let body = r.bytes().await.unwrap();
    assert_request_fields(&line);
    assert_eq!(line["request_id"], id);
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "app.localhost");
    assert_eq!(line["path"], "/reports/q1", "normalised, no query");
    assert_eq!(line["status"], 200);
    assert_eq!(line["app"], "app");
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["policy"], "employees");
    assert_eq!(line["email"], "alice@example.com");
    assert_eq!(line["sub"], "00ualice");
    assert_eq!(line["idp"], "okta");
    assert_eq!(line["service_token"], Value::Null);
    assert_eq!(line["upstream"], upstream_url(&env));
    assert_eq!(line["bytes_sent"], body.len() as u64);
    assert!(line["duration_ms"].as_f64().unwrap() > 0.0, "{line}");
    let ts = line["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
}

/// A blocked user's line names the blocking policy and the user; nothing
/// was forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_request_names_the_blocking_policy() {
    let env = with_log(env()).start().await;
    let end = fresh_login_at(&env, "blocked.localhost", "00ubob").await;
    assert_eq!(end.response.status(), 403, "{:?}", end.trail);
    let line = request_line(&env, &end.response).await;
    assert_request_fields(&line);
    assert_eq!(line["status"], 403);
    assert_eq!(line["app"], "blocked");
    assert_eq!(line["decision"], "forbidden");
    assert_eq!(line["policy"], "block sales");
    assert_eq!(line["email"], "bob@example.com");
    assert_eq!(line["sub"], "00ubob");
    assert_eq!(line["upstream"], Value::Null);
}

async fn fresh_login_at(env: &Env, host: &str, user: &str) -> LoginEnd {
    browse_login(env, &env.browser(), &env.url(host, "/"), user).await
}

/// A request without a session: 401, no policy, no identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_request_has_no_policy_or_identity() {
    let env = with_log(env()).start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let line = request_line(&env, &r).await;
    assert_request_fields(&line);
    assert_eq!(line["status"], 401);
    assert_eq!(line["app"], "app");
    assert_eq!(line["decision"], "unauthenticated");
    for k in ["policy", "email", "sub", "idp", "service_token", "upstream"] {
        assert_eq!(line[k], Value::Null, "{k}: {line}");
    }
}

/// A bypass names the bypass policy and the upstream, and no identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_request_names_the_bypass_policy() {
    let env = with_log(env()).start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/logo.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = request_line(&env, &r).await;
    assert_eq!(line["app"], "public");
    assert_eq!(line["decision"], "bypass");
    assert_eq!(line["policy"], "anyone");
    assert_eq!(line["email"], Value::Null);
    assert_eq!(line["upstream"], upstream_url(&env));
}

/// A service token's line names the token and its `service_auth` policy,
/// never its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_request_names_the_token() {
    let env = with_log(env()).start().await;
    let r = env
        .client()
        .get(env.url("api.localhost", "/v1/things"))
        .header("CF-Access-Client-Id", "ci.access")
        .header("CF-Access-Client-Secret", "ci-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = request_line(&env, &r).await;
    assert_eq!(line["app"], "api");
    assert_eq!(line["decision"], "service_auth");
    assert_eq!(line["policy"], "ci");
    assert_eq!(line["service_token"], "ci");
    assert_eq!(line["email"], Value::Null);
    assert!(!read_log(&env).contains("ci-secret"));
}

/// A proxy-owned endpoint is logged as `proxy`, without an app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_owned_endpoint_is_logged() {
    let env = with_log(env()).start().await;
    let r = env
        .client()
        .get(env.url("auth.localhost", "/cdn-cgi/access/certs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = request_line(&env, &r).await;
    let body = r.bytes().await.unwrap();
    assert_eq!(line["decision"], "proxy");
    assert_eq!(line["host"], "auth.localhost");
    assert_eq!(line["path"], "/cdn-cgi/access/certs");
    assert_eq!(line["app"], Value::Null);
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_sent"], body.len() as u64);
}

/// A login walk writes a `login` line (result, IdP, email) inside the
/// callback's request; `/logout` writes a `logout` line and a `logout`
/// revocation, with the logout request's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_logout_are_logged() {
    let env = with_log(env()).start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let login = line_with(
        &env,
        json!({ "type": "login", "email": "alice@example.com" }),
    )
    .await;
    assert_eq!(login["result"], "success");
    assert_eq!(login["idp"], "okta");
    assert_eq!(login["sub"], "00ualice");
    let callback = line_with(
        &env,
        json!({ "type": "request", "request_id": login["request_id"] }),
    )
    .await;
    assert_eq!(callback["path"], "/cdn-cgi/access/callback");

    let r = html_get(
        &browser,
        &env.url("auth.localhost", "/cdn-cgi/access/logout"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let logout = line_with(&env, json!({ "type": "logout", "request_id": id })).await;
    assert_eq!(logout["sub"], "00ualice");
    assert_eq!(logout["email"], "alice@example.com");
    assert_eq!(logout["idp"], "okta");
    let revoked = line_with(&env, json!({ "type": "revocation", "request_id": id })).await;
    assert_eq!(revoked["reason"], "logout");
    assert_eq!(revoked["sub"], "00ualice");
}

/// A SCIM request as Okta sends it; the response and its JSON body.
async fn scim(env: &Env, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
    env.client()
        .request(
            method,
            env.url("auth.localhost", &format!("/scim/v2{path}")),
        )
        .header("authorization", format!("Bearer {SCIM_SECRET}"))
        .header("content-type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// SCIM writes are logged (method, resource, id, status); deactivating a
/// signed-in user writes a `scim_deprovision` revocation with the PATCH's
/// request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_writes_and_deprovisioning_are_logged() {
    let env = with_log(env().scim(true, false, false)).start().await;
    let r = scim(
        &env,
        reqwest::Method::POST,
        "/Users",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bob@example.com",
            "externalId": "00ubob",
            "emails": [{"primary": true, "value": "bob@example.com"}],
            "active": true
        }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created_rid = request_id(&r);
    let user: Value = r.json().await.unwrap();
    let uid = user["id"].as_str().unwrap().to_string();
    let created = line_with(&env, json!({ "type": "scim", "request_id": created_rid })).await;
    assert_eq!(created["method"], "POST");
    assert_eq!(created["resource"], "Users");
    assert_eq!(created["id"], uid.as_str());
    assert_eq!(created["status"], 201);

    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ubob",
    )
    .await;
    let r = scim(
        &env,
        reqwest::Method::PATCH,
        &format!("/Users/{uid}"),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let rid = request_id(&r);
    let patched = line_with(&env, json!({ "type": "scim", "request_id": rid })).await;
    assert_eq!(patched["method"], "PATCH");
    assert_eq!(patched["id"], uid.as_str());
    assert_eq!(patched["status"], 200);
    let revoked = line_with(&env, json!({ "type": "revocation", "request_id": rid })).await;
    assert_eq!(revoked["reason"], "scim_deprovision");
    assert_eq!(revoked["sub"], "00ubob");
    assert_eq!(revoked["idp"], "okta");
    assert_eq!(revoked["sessions"], 1);
}

/// A policy reload writes a `reload` line: `success`, then `error` for a
/// broken file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_are_logged() {
    let env = with_log(env()).start().await;
    write_policies(
        &env,
        &POLICIES.replace("name: block sales", "name: block sales v2"),
    );
    let ok = line_with(&env, json!({ "type": "reload", "result": "success" })).await;
    assert!(ok.get("request_id").is_none(), "{ok}");
    write_policies(&env, "apps: [ {");
    line_with(&env, json!({ "type": "reload", "result": "error" })).await;
}

/// Cookies, tokens (cookie, header, query), query strings, the service
/// token's secret and the SCIM bearer secret never reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cookie_token_query_or_secret_is_logged() {
    let env = with_log(env().scim(true, false, false)).start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let token = env
        .upstream
        .seen()
        .last()
        .and_then(|s| s.header("cf-access-jwt-assertion"))
        .expect("session token")
        .to_string();
    let r = env
        .client()
        .get(env.url("app.localhost", "/search?access_token=QUERYSECRET&q=x"))
        .header(
            "cookie",
            format!("tracking=COOKIESECRET; CF_Authorization={token}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = request_id(&r);
    let r = env
        .client()
        .get(env.url("app.localhost", "/api?token=QUERYSECRET2"))
        .header("cf-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.client()
        .get(env.url("api.localhost", "/v1"))
        .header("CF-Access-Client-Id", "ci.access")
        .header("CF-Access-Client-Secret", "ci-secret")
        .send()
        .await
        .unwrap();
    let r = scim(&env, reqwest::Method::DELETE, "/Users/nope", json!({})).await;
    assert_eq!(r.status(), 404);
    let scim_rid = request_id(&r);
    line_with(&env, json!({ "type": "request", "request_id": last })).await;
    line_with(&env, json!({ "type": "scim", "request_id": scim_rid })).await;

    let log = read_log(&env);
    for secret in [
        token.as_str(),
        "eyJ",
        "QUERYSECRET",
        "COOKIESECRET",
        "ci-secret",
        SCIM_SECRET,
        "CF_Authorization",
        "?",
        "code=",
        "state=",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// `format: text`: one readable line per request, combined-log-like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_writes_readable_lines() {
    let env = env()
        .config("access_log: { path: access.log, format: text }\n")
        .start()
        .await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/a?b=c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    eventually("the text line", LINE_WAIT, async || {
        read_log(&env).contains(&id)
    })
    .await;
    let log = read_log(&env);
    let line = log.lines().find(|l| l.contains(&id)).unwrap();
    let (_ts, rest) = line.split_once(' ').unwrap();
    assert!(
        rest.starts_with("request 127.0.0.1 \"GET app.localhost/public/a\" 200 "),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            " request_id={id} app=public decision=bypass policy=anyone email=- sub=- idp=- service_token=- upstream={}",
            upstream_url(&env)
        )),
        "{line}"
    );
}

/// After log rotation moved the file, a reload (what SIGHUP runs) makes
/// the proxy write to a new file at the configured path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_writes_to_a_new_file_after_rotation() {
    let env = with_log(env()).start().await;
    let get = async || {
        let r = env
            .client()
            .get(env.url("app.localhost", "/public/"))
            .send()
            .await
            .unwrap();
        request_id(&r)
    };
    let first = get().await;
    line_with(&env, json!({ "request_id": first })).await;
    let rotated = env.data_path().join("access.log.1");
    std::fs::rename(log_path(&env), &rotated).unwrap();
    let outcome = env.reloader().reload().await;
    assert_eq!(outcome.access_log, Ok(()));
    let second = get().await;
    line_with(&env, json!({ "request_id": second })).await;
    assert!(!read_log(&env).contains(&first));
    let old = std::fs::read_to_string(rotated).unwrap();
    assert!(old.contains(&first) && !old.contains(&second));
}

/// The real binary: `kill -HUP` after logrotate moved the file makes it
/// write to a new file at the configured path; no line is lost on the way
/// (lines before the signal are in the moved file) and the policy reload
/// the signal also runs is a `reload` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_hup_reopens_the_access_log_after_rotation() {
    use crate::process::{get, ConfigDir, Running};
    let policies = "apps:\n  - name: app\n    domain: app.localhost\n    upstream: http://127.0.0.1:9\n    policies:\n      - { name: all, decision: bypass, include: [{ everyone: true }] }\n";
    let cfg = ConfigDir::new("", "access_log: { path: access.log }\n", policies);
    let mut proxy = Running::start(&cfg.config(), &[]);
    proxy.wait_ready(cfg.metrics_port, Duration::from_secs(60));
    let log = cfg.path("access.log");
    let rotated = cfg.path("access.log.1");
    let lines_at = |path: &std::path::Path, path_field: &str| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"path\":\"{path_field}\"")))
            .count()
    };
    assert_eq!(get(cfg.addr(), "app.localhost", "/before").unwrap().0, 502);
    eventually("the first line", LINE_WAIT, async || {
        lines_at(&log, "/before") == 1
    })
    .await;
    std::fs::rename(&log, &rotated).unwrap();
    // Still written to the moved file until the signal.
    assert_eq!(get(cfg.addr(), "app.localhost", "/moved").unwrap().0, 502);
    eventually("the moved file's line", LINE_WAIT, async || {
        lines_at(&rotated, "/moved") == 1
    })
    .await;

    proxy.signal("HUP");
    eventually("the reload", Duration::from_secs(30), async || {
        proxy.stderr().contains("Reload done")
    })
    .await;
    assert_eq!(get(cfg.addr(), "app.localhost", "/after").unwrap().0, 502);
    eventually("the new file's line", LINE_WAIT, async || {
        lines_at(&log, "/after") == 1
    })
    .await;
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        new.contains("\"type\":\"reload\",") && new.contains("\"result\":\"success\""),
        "{new}"
    );
    assert_eq!(
        lines_at(&log, "/before") + lines_at(&log, "/moved"),
        0,
        "{new}"
    );
    assert_eq!(lines_at(&rotated, "/after"), 0);
    assert!(
        proxy.stderr().contains("result=\"success\""),
        "{}",
        proxy.stderr()
    );
    proxy.signal("TERM");
    proxy
        .wait_exit(Duration::from_secs(30))
        .expect("exits on SIGTERM");
}
