//! Browser login through the dev IdP, sessions, the second app, logout,
//! `/get-identity`, JWKS and restarts.

use crate::harness::*;

/// The app cookie set by `/authorized` (read from the trail's Set-Cookie is
/// not possible through the jar, so log in and read what the upstream got).
async fn login_and_token(env: &Env, user: &str) -> (reqwest::Client, String) {
    login_and_token_at(env, &env.url("app.localhost", "/"), user).await
}

/// Status of a GET of `path` on `app.localhost` with `token` as the app
/// cookie, from a client that has no other cookie.
async fn replay(env: &Env, path: &str, token: &str) -> reqwest::StatusCode {
    env.client()
        .get(env.url("app.localhost", path))
        .header("cookie", format!("CF_Authorization={token}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// The JSON body of a GET of `url`.
async fn get_json(client: &reqwest::Client, url: String) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// [`login_and_token`] starting at `url`.
async fn login_and_token_at(env: &Env, url: &str, user: &str) -> (reqwest::Client, String) {
    let browser = env.browser();
    login_ok(env, &browser, url, user).await;
    let seen = env.upstream.seen();
    let token = seen
        .last()
        .and_then(|s| s.header("cf-access-jwt-assertion"))
        .expect("assertion header")
        .to_string();
    (browser, token)
}

/// A browser without a session is sent to the auth domain's login with the
/// original URL, and a login ends at the upstream with the identity headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_reaches_upstream_with_identity_headers() {
    let env = env().start().await;
    let browser = env.browser();
    let end = browse_login(
        &env,
        &browser,
        &env.url("app.localhost", "/hello?x=1"),
        "00ualice",
    )
    .await;
    assert_eq!(end.response.status(), 200, "trail {:?}", end.trail);
    let login = &end.trail[1];
    assert!(
        login.starts_with(&format!(
            "http://auth.localhost:{}/cdn-cgi/access/login?redirect_url=",
            env.port
        )),
        "{login}"
    );
    assert!(end
        .trail
        .iter()
        .any(|u| u.contains("/cdn-cgi/access/callback")));
    assert!(end
        .trail
        .iter()
        .any(|u| u.contains("/cdn-cgi/access/authorized?token=")));
    assert_eq!(
        end.trail.last().unwrap(),
        &env.url("app.localhost", "/hello?x=1")
    );
    let seen = env.upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/hello?x=1");
    assert_eq!(
        last.header_values("cf-access-authenticated-user-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        last.header_values("x-portcullis-groups"),
        ["engineering,everyone"]
    );
    assert_eq!(
        last.header_values("x-portcullis-claim-department"),
        ["engineering"]
    );
    assert_eq!(last.header_values("cf-access-jwt-assertion").len(), 1);
}

/// The assertion forwarded upstream verifies with the proxy's JWKS, as an
/// origin behind Cloudflare Access would verify it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_assertion_verifies_with_published_jwks() {
    let env = env().start().await;
    let (browser, token) = login_and_token(&env, "00ualice").await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(
        get_json(&browser, env.url("app.localhost", "/cdn-cgi/access/certs")).await,
    )
    .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let app_aud = env.state().policies.current().apps[0].aud.clone();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[app_aud]);
    v.set_issuer(&[format!("http://auth.localhost:{}", env.port)]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).expect("verifies");
    assert_eq!(data.claims["email"], "alice@example.com");
    assert_eq!(data.claims["type"], "app");
}

/// Requests that are not browser navigations get 401 JSON, never a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_client_without_session_gets_401_json() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "unauthorized"}));
    let r = env
        .client()
        .post(env.url("app.localhost", "/x"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a POST is not a navigation");
    assert!(env.upstream.seen().is_empty());
}

/// The session token also works in the `cf-access-token` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_token_works_in_cf_access_token_header() {
    let env = env().start().await;
    let (_, token) = login_and_token(&env, "00ubob").await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/api"))
        .header("cf-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A second app reuses the auth-domain session: no second trip to the IdP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_app_reuses_auth_domain_session() {
    let env = env().start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let end = browse_login(&env, &browser, &env.url("other.localhost", "/"), "00ualice").await;
    assert_eq!(end.response.status(), 200, "{:?}", end.trail);
    let idp = format!("{}", env.idp.addr());
    assert!(
        !end.trail.iter().any(|u| u.contains(&idp)),
        "went to the IdP again: {:?}",
        end.trail
    );
}

/// `/get-identity` returns the user's identity as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_identity_returns_identity_json() {
    let env = env().start().await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id: serde_json::Value = r.json().await.unwrap();
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["sub"], "00ualice");
    assert_eq!(id["idp"]["name"], "okta");
    assert_eq!(id["idp"]["type"], "okta");
    assert_eq!(id["groups"], serde_json::json!(["engineering", "everyone"]));
    assert_eq!(id["custom"]["department"], "engineering");
    assert!(id["amr"].as_array().unwrap().iter().any(|a| a == "mfa"));
    assert!(id["exp"].as_i64().unwrap() > id["iat"].as_i64().unwrap());
    let r = env
        .client()
        .get(env.url("app.localhost", "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Logout revokes the session server-side: the old cookie is refused
/// afterwards, also when replayed from another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_session_and_old_cookie_is_refused() {
    let env = env().threads(2).start().await;
    let (browser, token) = login_and_token(&env, "00ualice").await;
    assert_eq!(replay(&env, "/after", &token).await, 200);
    let r = html_get(
        &browser,
        &env.url("app.localhost", "/cdn-cgi/access/logout"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        clears_cookie(&r, "CF_Authorization=;", ""),
        "app cookie cleared"
    );
    assert_eq!(replay(&env, "/after", &token).await, 401);
    // The auth-domain session is gone too: a new visit goes back to the IdP.
    let end = browse_login(&env, &browser, &env.url("other.localhost", "/"), "00ualice").await;
    let idp = format!("{}", env.idp.addr());
    assert!(
        end.trail.iter().any(|u| u.contains(&idp)),
        "{:?}",
        end.trail
    );
}

/// An app under a path gets a cookie scoped to that path, which the browser
/// does not send to the host's `/cdn-cgi/access/logout`; logout there hands
/// over to the auth domain, which still revokes the whole session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_a_host_with_a_path_scoped_app_revokes_the_session() {
    let policies = r#"
apps:
  - name: team
    domain: app.localhost
    path: /team
    upstream: ${UPSTREAM}
    policies:
      - { name: all, decision: allow, include: [{ everyone: true }] }
  - name: other
    domain: other.localhost
    upstream: ${UPSTREAM}
    policies:
      - { name: all, decision: allow, include: [{ everyone: true }] }
"#;
    let env = env().policies(policies).start().await;
    let (browser, token) =
        login_and_token_at(&env, &env.url("app.localhost", "/team/x"), "00ualice").await;
    assert_eq!(replay(&env, "/team/after", &token).await, 200);

    let r = html_get(
        &browser,
        &env.url("app.localhost", "/cdn-cgi/access/logout"),
    )
    .await;
    assert_eq!(r.status(), 302);
    let next = location(&r);
    assert_eq!(next, env.url("auth.localhost", "/cdn-cgi/access/logout"));
    assert!(
        clears_cookie(&r, "CF_Authorization=;", "Path=/team"),
        "the path-scoped app cookie is cleared"
    );
    let r = html_get(&browser, &next).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));
    assert_eq!(replay(&env, "/team/after", &token).await, 401);
}

/// An OP that sends email, name and groups only from UserInfo (OIDC Core
/// 5.4; node-oidc-provider's default for the code flow): the login asks
/// UserInfo with the access token, and the identity is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_missing_from_the_id_token_come_from_userinfo() {
    let env = env().start().await;
    env.idp.set_minimal_id_token(true);
    let (browser, _) = login_and_token(&env, "00ualice").await;
    let seen = env.upstream.seen();
    let s = seen.last().unwrap();
    assert_eq!(
        s.header("cf-access-authenticated-user-email"),
        Some("alice@example.com")
    );
    let identity = get_json(
        &browser,
        env.url("app.localhost", "/cdn-cgi/access/get-identity"),
    )
    .await;
    assert_eq!(identity["email"], "alice@example.com");
    assert_eq!(identity["name"], "Alice Anderson");
    assert!(
        identity["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "engineering"),
        "{identity}"
    );
}

/// Walk a whole login (as `browse_login` does) and return every
/// `Set-Cookie` the proxy sent on the way, from the first redirect to the
/// app's answer. Asserts the walk ended at the upstream and that each of
/// the login's cookies was among them (nonce, state, SSO, app session), so
/// a check over the list cannot pass on a walk that set none.
async fn login_set_cookies(env: &Env, user: &str) -> Vec<String> {
    let browser = env.browser();
    let idp = format!("http://{}", env.idp.addr());
    let mut set = Vec::new();
    let mut resp = html_get(&browser, &env.url("app.localhost", "/")).await;
    for _ in 0..12 {
        set.extend(
            resp.headers()
                .get_all("set-cookie")
                .iter()
                .map(|c| c.to_str().unwrap().to_string()),
        );
        if !resp.status().is_redirection() {
            break;
        }
        let next = location(&resp);
        resp = if next.starts_with(&idp) {
            let (url, form) = portcullis::idp::dev::login_form(&next, user).unwrap();
            let r = browser.post(&url).form(&form).send().await.unwrap();
            assert!(
                r.status().is_redirection(),
                "the IdP answered {}",
                r.status()
            );
            html_get(&browser, &location(&r)).await
        } else {
            html_get(&browser, &next).await
        };
    }
    assert_eq!(resp.status(), 200, "the login ended at the upstream");
    for name in [
        "CF_Authorization_nonce=",
        "CF_Authorization_state_",
        "CF_Authorization_sso=",
        "CF_Authorization=",
    ] {
        assert!(
            set.iter()
                .any(|c| c.starts_with(name) && !c.contains("Max-Age=0")),
            "the login set no {name}…: {set:?}"
        );
    }
    set
}

/// Every cookie the proxy sets during a whole login (nonce, state, SSO and
/// app session cookies, and the ones it clears) is HttpOnly, SameSite=Lax
/// and host-only (no Domain), and not Secure on a plain-HTTP listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cookies_are_httponly_lax_host_only() {
    let env = env().start().await;
    for c in login_set_cookies(&env, "00ualice").await {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
        assert!(!c.to_ascii_lowercase().contains("domain="), "{c}");
        assert!(!c.contains("Secure"), "{c}");
    }
}

/// Sessions survive a restart: keys and session records are on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_sessions_valid() {
    let env1 = env().start().await;
    let port = env1.port;
    let (_, token) = login_and_token(&env1, "00ualice").await;
    let dir = env1.stop();
    let env2 = env().port(port).data_dir(dir).start().await;
    let r = env2
        .client()
        .get(env2.url("app.localhost", "/again"))
        .header("cf-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env2.upstream.seen().last().unwrap().uri, "/again");
}

/// A TLS listener speaks HTTP/2 to a client that offers it (ALPN): an
/// authorised request over h2 reaches the upstream (over HTTP/1.1) with the
/// identity headers and the `Host` the client named, a denied one gets the
/// same answer as over HTTP/1.1, and a SCIM write's body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http2() {
    let env = env().tls().scim(false, false, false).start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/h2-anon"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 401);
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/h2").expect("forwarded");
    assert_eq!(
        s.header("cf-access-authenticated-user-email"),
        Some("alice@example.com")
    );
    let host = format!("app.localhost:{}", env.port);
    assert_eq!(s.header("host"), Some(host.as_str()));
    assert!(seen.iter().all(|s| s.uri != "/h2-anon"));
    // SCIM reads request bodies itself: over h2 too.
    let r = env
        .client()
        .post(env.url("auth.localhost", "/scim/v2/Users"))
        .header("authorization", format!("Bearer {SCIM_SECRET}"))
        .header("content-type", "application/scim+json")
        .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"h2@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 201)
    );
}

/// On a TLS listener the whole login works over https and every cookie the
/// proxy sets is `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_login_sets_secure_cookies() {
    let env = env().tls().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&format!(
        "https://auth.localhost:{}/cdn-cgi/access/login?",
        env.port
    )));
    for c in login_set_cookies(&env, "00ualice").await {
        assert!(c.split(';').any(|p| p.trim() == "Secure"), "{c}");
    }
    let browser = env.browser();
    let end = browse_login(
        &env,
        &browser,
        &env.url("app.localhost", "/tls"),
        "00ualice",
    )
    .await;
    assert_eq!(end.response.status(), 200, "{:?}", end.trail);
    assert_eq!(
        env.upstream
            .seen()
            .last()
            .unwrap()
            .header("x-forwarded-proto"),
        Some("https")
    );
}

/// Behind a load balancer that ends TLS (`public: { scheme: https }`, the
/// listener plain HTTP), every URL the proxy builds is `https://`: the
/// login redirect, the callback registered at the IdP, the hop back to the
/// app; every cookie is `Secure`; the upstream gets `X-Forwarded-Proto:
/// https`. The test plays the balancer: it sends each `https://` hop to the
/// plain listener, and keeps cookies per host itself (a cookie jar would
/// not send `Secure` cookies over http).
/// See: issue 13 (fleet mode)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_https_behind_a_balancer_builds_https_urls_and_secure_cookies() {
    let env = env().behind_tls_balancer().start().await;
    assert_eq!(env.scheme, "http");
    let client = env.client();
    let public = |host: &str, path: &str| format!("https://{host}:{}{path}", env.port);
    // host -> cookies (name, value) set on it.
    let mut jar: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
    let mut set_cookies: Vec<String> = Vec::new();
    let mut trail: Vec<String> = Vec::new();
    let idp_base = format!("http://{}", env.idp.addr());

    let mut next = public("app.localhost", "/hello?x=1");
    let mut response = None;
    for _ in 0..8 {
        trail.push(next.clone());
        let resp = if next.starts_with(&idp_base) && next.contains("/v1/authorize") {
            let (login_url, form) = portcullis::idp::dev::login_form(&next, "00ualice").unwrap();
            client.post(&login_url).form(&form).send().await.unwrap()
        } else {
            // The balancer: https outside, plain HTTP to the listener inside.
            let inside = next
                .strip_prefix("https://")
                .map(|rest| format!("http://{rest}"))
                .unwrap_or_else(|| panic!("not an https URL: {next} after {trail:?}"));
            let host = url::Url::parse(&inside)
                .unwrap()
                .host_str()
                .unwrap()
                .to_string();
            let cookie = jar
                .get(&host)
                .map(|c| {
                    c.iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let mut req = client.get(&inside).header("accept", HTML);
            if !cookie.is_empty() {
                req = req.header("cookie", cookie);
            }
            let resp = req.send().await.unwrap();
            let cookies = jar.entry(host).or_default();
            for c in resp.headers().get_all("set-cookie") {
                let c = c.to_str().unwrap().to_string();
                let (name, rest) = c.split_once('=').unwrap();
                let value = rest.split(';').next().unwrap().to_string();
                cookies.retain(|(n, _)| n != name);
                if !c.contains("Max-Age=0") {
                    cookies.push((name.to_string(), value));
                }
                set_cookies.push(c);
            }
            resp
        };
        if !resp.status().is_redirection() {
            response = Some(resp);
            break;
        }
        next = location(&resp);
    }
    let response = response.unwrap_or_else(|| panic!("login did not end: {trail:?}"));
    assert_eq!(response.status(), 200, "trail {trail:?}");

    let login = &trail[1];
    assert!(
        login.starts_with(&format!(
            "{}?redirect_url={}",
            public("auth.localhost", "/cdn-cgi/access/login"),
            urlencode(&public("app.localhost", "/hello?x=1"))
        )),
        "{login}"
    );
    let callback = public("auth.localhost", "/cdn-cgi/access/callback");
    assert!(
        trail.iter().any(|u| u.starts_with(&format!("{callback}?"))),
        "{trail:?}"
    );
    assert!(
        trail
            .iter()
            .any(|u| u.contains(&format!("redirect_uri={}", urlencode(&callback)))),
        "the IdP is asked to return to the https callback: {trail:?}"
    );
    assert!(
        trail.iter().any(|u| u.starts_with(&public(
            "app.localhost",
            "/cdn-cgi/access/authorized?token="
        ))),
        "{trail:?}"
    );
    assert_eq!(
        trail.last().unwrap(),
        &public("app.localhost", "/hello?x=1")
    );

    // The app session cookie, and every other cookie, is Secure.
    let session = set_cookies
        .iter()
        .find(|c| c.starts_with("CF_Authorization="))
        .unwrap_or_else(|| panic!("no app session cookie in {set_cookies:?}"));
    assert!(session.contains("; Secure"), "{session}");
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("CF_Authorization_sso=")),
        "{set_cookies:?}"
    );
    for c in &set_cookies {
        assert!(c.split(';').any(|p| p.trim() == "Secure"), "{c}");
    }

    let seen = env.upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.uri, "/hello?x=1");
    assert_eq!(last.header_values("x-forwarded-proto"), ["https"]);
    assert_eq!(
        last.header_values("cf-access-authenticated-user-email"),
        ["alice@example.com"]
    );

    // A `redirect_url` must use the public scheme; the listener's is refused.
    for (target, status) in [
        (public("app.localhost", "/x"), 302),
        (env.url("app.localhost", "/x"), 400),
    ] {
        let r = env
            .client()
            .get(env.url("auth.localhost", "/cdn-cgi/access/login"))
            .query(&[("redirect_url", target.as_str())])
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "redirect_url {target}");
    }
}

/// Query-component encoding as the proxy writes it (form-urlencoded).
fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A revocation written to the store by another writer (here a second
/// handle on the same SQLite file, as another process or the operator's
/// tooling would open it) is applied by the running proxy through its
/// change poller: a session it already holds in its cache (whose entries
/// live 5 minutes) is refused within seconds. Without the poller nothing
/// tells this proxy, and the cached session keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_written_by_another_writer_is_seen_through_the_poller() {
    let env = env().threads(2).start().await;
    let (_, token) = login_and_token(&env, "00ualice").await;
    assert_eq!(replay(&env, "/cached", &token).await, 200, "cached now");
    let payload = token.split('.').nth(1).expect("a JWS");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let sid = claims["sid"].as_str().expect("sid").to_string();
    let other =
        portcullis::store::open_store(&format!("sqlite://{}/state.db", env.data_path().display()))
            .await
            .expect("a second handle on the store");
    let written = std::time::Instant::now();
    assert!(other.revoke_session(&sid).await.unwrap(), "was live");
    eventually(
        "the proxy refuses the session revoked elsewhere",
        std::time::Duration::from_secs(10),
        async || replay(&env, "/after", &token).await == 401,
    )
    .await;
    eprintln!(
        "revocation by another writer seen after {:?}",
        written.elapsed()
    );
}
