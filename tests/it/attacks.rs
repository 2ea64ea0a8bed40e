//! Attacks from SECURITY.md played against the running proxy: tampered,
//! unsigned, expired, mis-addressed and revoked session tokens; forged
//! identity headers; open redirects; path confusion; login CSRF and replay of
//! the callback and transfer steps; spoiled ID tokens; logout CSRF; host
//! confusion. Each test also runs a control showing the same request without
//! the attack succeeds, so a refusal for an unrelated reason cannot pass.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis::idp::dev::{self, Tamper};
use portcullis::session::token::{now_unix, SessionClaims};
use reqwest::cookie::{CookieStore as _, Jar};

use crate::harness::{browse_login, env, html_get, location, login_ok, raw_http, Env, HOSTS, HTML};

// ---------------------------------------------------------------- helpers

/// Log `user` in at `http://app.localhost:PORT/` with a fresh browser and
/// return the browser and the session token the upstream received.
async fn login_token(env: &Env, user: &str) -> (reqwest::Client, String) {
    let browser = env.browser();
    login_ok(env, &browser, &env.url("app.localhost", "/"), user).await;
    let token = last_seen_assertion(env);
    (browser, token)
}

/// The assertion header of the last request the upstream saw.
fn last_seen_assertion(env: &Env) -> String {
    let seen = env.upstream.seen();
    let last = seen.last().expect("the upstream saw a request");
    last.header("cf-access-jwt-assertion")
        .expect("an assertion header upstream")
        .to_string()
}

/// Status of an API (non-browser) GET carrying `token` as the session cookie.
async fn status_with_cookie(env: &Env, host: &str, path: &str, token: &str) -> u16 {
    env.client()
        .get(env.url(host, path))
        .header("cookie", format!("CF_Authorization={token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Status of an API GET carrying `token` in the `cf-access-token` header.
async fn status_with_token_header(env: &Env, host: &str, path: &str, token: &str) -> u16 {
    env.client()
        .get(env.url(host, path))
        .header("cf-access-token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

/// The three dot-separated parts of a JWS.
fn parts(token: &str) -> [&str; 3] {
    let v: Vec<&str> = token.split('.').collect();
    assert_eq!(v.len(), 3, "a JWS has three parts");
    [v[0], v[1], v[2]]
}

/// Claims of one of our session tokens, read without verifying.
fn claims_of(token: &str) -> SessionClaims {
    serde_json::from_slice(&unb64(parts(token)[1])).expect("session claims")
}

/// `kid` of one of our tokens.
fn kid_of(token: &str) -> String {
    let h: serde_json::Value = serde_json::from_slice(&unb64(parts(token)[0])).unwrap();
    h["kid"].as_str().expect("kid").to_string()
}

/// Audience tag of the app named `name` in the live policy set.
fn aud_of(env: &Env, name: &str) -> String {
    env.state()
        .policies
        .current()
        .apps
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no app {name}"))
        .aud
        .clone()
}

/// Sign `claims` with the proxy's own key, as the proxy would.
fn mint(env: &Env, claims: &SessionClaims) -> String {
    env.state().keys.sign(claims).expect("sign")
}

/// `claims` re-dated: issued now, valid for `secs` more seconds.
fn fresh(mut claims: SessionClaims, secs: i64) -> SessionClaims {
    let now = now_unix();
    claims.iat = now;
    claims.nbf = now;
    claims.exp = now + secs;
    claims
}

/// Whether a response sets a non-empty cookie whose name starts with `prefix=`.
fn sets_cookie(r: &reqwest::Response, name: &str) -> bool {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .is_some_and(|(k, val)| k.trim() == name && !val.trim().is_empty())
        })
}

/// A browser whose cookie jar the test can read.
fn jar_browser(env: &Env) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", env.port).parse().unwrap();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .cookie_provider(jar.clone());
    for h in HOSTS {
        b = b.resolve(h, addr);
    }
    (b.build().unwrap(), jar)
}

/// The `Cookie` header the jar would send to `url`.
fn jar_cookie_header(jar: &Jar, url: &str) -> String {
    jar.cookies(&url::Url::parse(url).unwrap())
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `(name, value)` of the first cookie the jar would send to `url` whose
/// name starts with `prefix`.
fn jar_cookie(jar: &Jar, url: &str, prefix: &str) -> (String, String) {
    let header = jar_cookie_header(jar, url);
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .unwrap_or_else(|| panic!("no cookie {prefix}* for {url} in {header:?}"))
}

/// Walk a browser login like `browse_login`, but return the first
/// redirect target for which `stop` is true, without visiting it.
async fn walk_until(
    env: &Env,
    browser: &reqwest::Client,
    url: &str,
    user: &str,
    stop: impl Fn(&str) -> bool,
) -> String {
    let idp_base = format!("http://{}", env.idp.addr());
    let mut trail = vec![url.to_string()];
    let mut resp = browser
        .get(url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    for _ in 0..12 {
        assert!(
            resp.status().is_redirection(),
            "login walk ended with {} after {trail:?}",
            resp.status()
        );
        let next = location(&resp);
        if stop(&next) {
            return next;
        }
        trail.push(next.clone());
        resp = if next.starts_with(&idp_base) && next.contains("/v1/authorize") {
            let (login_url, form) = dev::login_form(&next, user).unwrap();
            browser.post(&login_url).form(&form).send().await.unwrap()
        } else {
            assert!(
                HOSTS
                    .iter()
                    .any(|h| next.starts_with(&format!("http://{h}:{}/", env.port))),
                "login walk left our hosts: {next} after {trail:?}"
            );
            browser
                .get(&next)
                .header("accept", HTML)
                .send()
                .await
                .unwrap()
        };
    }
    panic!("login walk never reached the stop after {trail:?}");
}

fn is_callback(u: &str) -> bool {
    u.contains("/cdn-cgi/access/callback?")
}

fn is_authorized(u: &str) -> bool {
    u.contains("/cdn-cgi/access/authorized?")
}

/// A GET head for raw TCP with the given extra header lines.
fn raw_get(env: &Env, host: &str, target: &str, extra: &[(&str, &str)]) -> String {
    let mut s = format!("GET {target} HTTP/1.1\r\nHost: {host}:{}\r\n", env.port);
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s
}

/// Lower-case, `_` and `.` folded to `-`: how a server might fold names.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Values of every header the upstream saw whose folded name is `name`.
fn folded_values(seen: &portcullis::demo::echo::Seen, name: &str) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(k, _)| fold(k) == name)
        .map(|(_, v)| v.clone())
        .collect()
}

// ------------------------------------------------------- session tokens

/// A session cookie whose payload was edited (signature kept) is refused:
/// the signature covers the claims, so no claim can be changed (SECURITY 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_refused() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        200,
        "control"
    );
    let [h, p, s] = parts(&token);

    let mut claims: serde_json::Value = serde_json::from_slice(&unb64(p)).unwrap();
    claims["email"] = "mallory@example.com".into();
    claims["exp"] = (now_unix() + 86_400 * 365).into();
    let edited = format!("{h}.{}.{s}", b64(claims.to_string().as_bytes()));

    let mut raw = unb64(p);
    let i = raw.len() / 2;
    raw[i] ^= 0x01;
    let flipped = format!("{h}.{}.{s}", b64(&raw));

    for (what, t) in [("edited claims", edited), ("flipped payload byte", flipped)] {
        assert_eq!(
            status_with_cookie(&env, "app.localhost", "/", &t).await,
            401,
            "{what}"
        );
    }
    assert_eq!(
        env.upstream.seen().len(),
        2,
        "only the login and the control reached upstream"
    );
}

/// A session cookie whose signature was changed is refused: a flipped
/// signature byte, a truncated signature, and the signature of another of
/// our tokens grafted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_signature_is_refused() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        200,
        "control"
    );
    let [h, p, s] = parts(&token);

    let mut sig = unb64(s);
    sig[10] ^= 0x40;
    let flipped = format!("{h}.{p}.{}", b64(&sig));
    let truncated = format!("{h}.{p}.{}", b64(&unb64(s)[..32]));
    let mut other = claims_of(&token);
    other.email = "mallory@example.com".into();
    let other = mint(&env, &other);
    let grafted = format!("{h}.{p}.{}", parts(&other)[2]);
    let empty = format!("{h}.{p}.");

    for (what, t) in [
        ("flipped signature byte", flipped),
        ("truncated signature", truncated),
        ("signature of another token", grafted),
        ("empty signature", empty),
    ] {
        assert_eq!(
            status_with_cookie(&env, "app.localhost", "/", &t).await,
            401,
            "{what}"
        );
    }
}

/// A browser navigation with a tampered session cookie is sent into the
/// login flow (302 to the auth domain), not let through and not shown a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookie_sends_browser_to_login() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let [h, p, s] = parts(&token);
    let mut sig = unb64(s);
    sig[20] ^= 0x01;
    let tampered = format!("{h}.{p}.{}", b64(&sig));
    let r = env
        .client()
        .get(env.url("app.localhost", "/x"))
        .header("accept", HTML)
        .header("cookie", format!("CF_Authorization={tampered}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let login = format!("http://auth.localhost:{}/cdn-cgi/access/login?", env.port);
    assert!(location(&r).starts_with(&login), "{}", location(&r));
    assert!(env.upstream.seen().iter().all(|s| s.uri != "/x"));
}

/// An unsigned token (`alg: none`, in several spellings, with and without a
/// signature part) carrying real claims and our `kid` is refused: the
/// algorithm is pinned to ES256 (SECURITY 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_token_is_refused() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let [_, p, s] = parts(&token);
    let kid = kid_of(&token);
    for alg in ["none", "None", "NONE"] {
        let h = b64(serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid })
            .to_string()
            .as_bytes());
        for t in [format!("{h}.{p}."), format!("{h}.{p}.{s}")] {
            assert_eq!(
                status_with_cookie(&env, "app.localhost", "/", &t).await,
                401,
                "alg {alg}: {t}"
            );
            assert_eq!(
                status_with_token_header(&env, "app.localhost", "/", &t).await,
                401,
                "alg {alg} header"
            );
        }
    }
}

/// An HS256 token over real claims with our `kid` is refused whatever the
/// HMAC key (a guessable secret, or our public JWKS: algorithm confusion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_token_is_refused() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let claims = claims_of(&token);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid_of(&token));
    let jwks = env.state().keys.jwks_json().to_string();
    for secret in [b"secret".as_slice(), jwks.as_bytes(), b"portcullis"] {
        let t = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap();
        assert_eq!(
            status_with_cookie(&env, "app.localhost", "/", &t).await,
            401
        );
    }
}

/// A correctly signed token for a live session whose `exp` has passed (by
/// more than the clock leeway) is refused; the same claims re-dated pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_token_is_refused() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let claims = claims_of(&token);
    let valid = mint(&env, &fresh(claims.clone(), 3600));
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &valid).await,
        200,
        "control"
    );
    let now = now_unix();
    let mut expired = claims;
    expired.iat = now - 7200;
    expired.nbf = now - 7200;
    expired.exp = now - 120;
    let expired = mint(&env, &expired);
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &expired).await,
        401
    );
    assert_eq!(
        status_with_token_header(&env, "app.localhost", "/", &expired).await,
        401
    );
}

/// App A's session cookie sent to app B (other.localhost, which lets every
/// signed-in user in) is refused: tokens are bound to one app's audience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cookie_is_refused_by_another_app() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let mut for_other = claims_of(&token);
    for_other.aud = vec![aud_of(&env, "other")];
    let for_other = mint(&env, &for_other);
    assert_eq!(
        status_with_cookie(&env, "other.localhost", "/", &for_other).await,
        200,
        "control"
    );
    env.upstream.clear();
    assert_eq!(
        status_with_cookie(&env, "other.localhost", "/", &token).await,
        401
    );
    assert!(env.upstream.seen().is_empty());
}

/// App A's session token sent to app B in the `cf-access-token` header is
/// refused, as the cookie is; at app A the same header is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_token_header_is_refused_by_another_app() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    assert_eq!(
        status_with_token_header(&env, "app.localhost", "/", &token).await,
        200,
        "control"
    );
    env.upstream.clear();
    assert_eq!(
        status_with_token_header(&env, "other.localhost", "/", &token).await,
        401
    );
    assert!(env.upstream.seen().is_empty());
}

/// A token never seen before (so verified on this request, not served from
/// the cache) is refused by the app it was not issued for, and the
/// verification that request cached does not make it pass there later;
/// at its own app it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_token_is_refused_by_another_app_on_first_and_later_use() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let fresh_token = mint(&env, &fresh(claims_of(&token), 600));
    env.upstream.clear();
    for round in 0..2 {
        assert_eq!(
            status_with_cookie(&env, "other.localhost", "/", &fresh_token).await,
            401,
            "round {round}"
        );
    }
    assert!(env.upstream.seen().is_empty());
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &fresh_token).await,
        200
    );
}

/// After logout, a token freshly minted (validly signed, unexpired, never
/// cached) for the revoked session is refused: revocation is checked
/// against the server-side session, not just the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_a_logged_out_session_is_refused() {
    let env = env().threads(2).start().await;
    let (browser, token) = login_token(&env, "00ualice").await;
    let before = mint(&env, &fresh(claims_of(&token), 600));
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &before).await,
        200,
        "control"
    );
    let r = browser
        .post(env.url("app.localhost", "/cdn-cgi/access/logout"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "logout");
    let mut after = fresh(claims_of(&token), 900);
    after.email = "alice@example.com".into();
    let after = mint(&env, &after);
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &after).await,
        401
    );
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &before).await,
        401
    );
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        401
    );
}

// ------------------------------------------------------- identity headers

/// Client copies of the identity headers, in every spelling a server might
/// fold together (case, `_`, `.`) and duplicated, are stripped: upstream
/// sees exactly one email, one assertion, one groups header and (when
/// claims are forwarded) one claim header, all real (SECURITY 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_are_replaced_by_the_real_ones() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let cookie = format!("CF_Authorization={token}");
    let forged = [
        ("Cookie", cookie.as_str()),
        ("Cf-Access-Authenticated-User-Email", "mallory@evil.example"),
        ("cf_access_authenticated_user_email", "mallory@evil.example"),
        (
            "CF-ACCESS-AUTHENTICATED-USER-EMAIL",
            "mallory2@evil.example",
        ),
        (
            "Cf.Access.Authenticated.User.Email",
            "mallory3@evil.example",
        ),
        ("CF-ACCESS-JWT-ASSERTION", "forged.assertion.value"),
        ("cf_access_jwt_assertion", "forged.assertion.value"),
        ("X-Portcullis-Groups", "admins"),
        ("x_portcullis_groups", "admins"),
        ("X-PORTCULLIS-GROUPS", "root"),
        ("X-Portcullis-Claim-Department", "finance"),
        ("x_portcullis_claim_department", "finance"),
    ];
    let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", "/spoof", &forged)).await;
    assert_eq!(status, 200);
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/spoof").expect("forwarded");
    assert_eq!(
        folded_values(s, "cf-access-authenticated-user-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        folded_values(s, "cf-access-jwt-assertion"),
        std::slice::from_ref(&token)
    );
    assert_eq!(
        folded_values(s, "x-portcullis-groups"),
        ["engineering,everyone"]
    );
    let claim: &[&str] = if env.state().cfg.headers.forward_claims {
        &["engineering"]
    } else {
        &[]
    };
    assert_eq!(
        folded_values(s, "x-portcullis-claim-department"),
        claim,
        "{:?}",
        s.headers
    );
    assert!(
        s.headers
            .iter()
            .all(|(_, v)| !v.contains("mallory") && v != "admins" && v != "root" && v != "finance"),
        "a forged value reached upstream: {:?}",
        s.headers
    );
}

/// A client's `cf-access-token` header is a credential for the proxy,
/// never passed on: not when it is the session that admits the request,
/// and not in another spelling next to a session cookie (DESIGN, "Upstream
/// headers"; SECURITY 4). Control: the same requests reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_access_token_header_never_reaches_upstream() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let cookie = format!("CF_Authorization={token}");
    let sent: [(&str, Vec<(&str, &str)>); 3] = [
        ("/by-header", vec![("cf-access-token", token.as_str())]),
        (
            "/cookie-and-header",
            vec![
                ("Cookie", cookie.as_str()),
                ("CF-Access-Token", "client-chosen-token-1"),
            ],
        ),
        (
            "/cookie-and-folded",
            vec![
                ("Cookie", cookie.as_str()),
                ("cf_access_token", "client-chosen-token-2"),
                ("Cf.Access.Token", "client-chosen-token-3"),
            ],
        ),
    ];
    for (path, headers) in &sent {
        let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", path, headers)).await;
        assert_eq!(status, 200, "control: {path} is admitted");
        let seen = env.upstream.seen();
        let s = seen.iter().find(|s| s.uri == *path).expect("forwarded");
        assert_eq!(
            folded_values(s, "cf-access-token"),
            Vec::<String>::new(),
            "{path}: {:?}",
            s.headers
        );
        assert!(
            s.headers
                .iter()
                .all(|(k, v)| k == "cf-access-jwt-assertion" || !v.contains("client-chosen")),
            "{path}: {:?}",
            s.headers
        );
    }
}

/// A client cannot make the proxy drop its own identity headers by naming
/// them in `Connection`: hop-by-hop removal happens before the proxy adds
/// them, so upstream still sees the real email, groups and assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_remove_proxy_added_headers() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let cookie = format!("CF_Authorization={token}");
    let head = raw_get(
        &env,
        "app.localhost",
        "/conn",
        &[
            ("Cookie", cookie.as_str()),
            (
                "Connection",
                "close, X-Portcullis-Groups, Cf-Access-Authenticated-User-Email, Cf-Access-Jwt-Assertion",
            ),
            ("X-Portcullis-Groups", "admins"),
        ],
    );
    let (status, _) = raw_http(&env, &head).await;
    assert_eq!(status, 200);
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/conn").expect("forwarded");
    assert_eq!(
        folded_values(s, "cf-access-authenticated-user-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        folded_values(s, "x-portcullis-groups"),
        ["engineering,everyone"]
    );
    assert_eq!(folded_values(s, "cf-access-jwt-assertion"), [token]);
    // Nor does the nomination travel on: a hop behind the proxy that honours
    // `Connection` would otherwise drop the identity headers there.
    assert!(
        folded_values(s, "connection").is_empty(),
        "Connection reached upstream: {:?}",
        s.headers
    );
}

/// On a bypass route the upstream gets no identity at all: forged identity
/// headers are stripped and none is added, even with a valid session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_route_forwards_no_identity_headers() {
    let env = env().start().await;
    let (_, token) = login_token(&env, "00ualice").await;
    let cookie = format!("CF_Authorization={token}");
    for (path, cookie) in [
        ("/public/anon", None),
        ("/public/with-session", Some(cookie.as_str())),
    ] {
        let mut headers = vec![
            ("Cf-Access-Authenticated-User-Email", "mallory@evil.example"),
            ("cf_access_jwt_assertion", "forged"),
            ("X-Portcullis-Groups", "admins"),
            ("X-Portcullis-Claim-Department", "finance"),
            ("Cf-Access-Client-Id", "ci.access"),
            ("Cf-Access-Client-Secret", "ci-secret"),
            ("X-Original-URL", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Forwarded-Prefix", "/admin"),
            ("True-Client-IP", "10.0.0.1"),
            ("CF-Connecting-IP", "10.0.0.1"),
            ("X-Forwarded-User", "admin"),
            ("X_Auth_Request_Email", "admin@example.com"),
            ("Remote-User", "admin"),
            ("X-Forwarded-Client-Cert", "Hash=00;Subject=\"CN=admin\""),
        ];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", path, &headers)).await;
        assert_eq!(status, 200, "{path}");
        let seen = env.upstream.seen();
        let s = seen.iter().find(|s| s.uri == path).expect("forwarded");
        for name in [
            "cf-access-authenticated-user-email",
            "cf-access-jwt-assertion",
            "x-portcullis-groups",
            "x-portcullis-claim-department",
            "cf-access-client-id",
            "cf-access-client-secret",
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-uri",
            "x-forwarded-prefix",
            "true-client-ip",
            "cf-connecting-ip",
            "x-forwarded-user",
            "x-auth-request-email",
            "remote-user",
            "x-forwarded-client-cert",
        ] {
            assert!(
                folded_values(s, name).is_empty(),
                "{path}: {name} reached upstream: {:?}",
                s.headers
            );
        }
    }
}

/// Service-token credentials never reach the upstream, in any spelling: a
/// valid pair is replaced by a proxy-signed assertion and no email header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_token_headers_never_reach_upstream() {
    let env = env().start().await;
    let head = raw_get(
        &env,
        "api.localhost",
        "/svc",
        &[
            ("CF-Access-Client-Id", "ci.access"),
            ("CF-Access-Client-Secret", "ci-secret"),
            ("cf_access_client_secret", "ci-secret"),
            ("Cf.Access.Client.Id", "ci.access"),
            ("Cf-Access-Authenticated-User-Email", "mallory@evil.example"),
        ],
    );
    let (status, _) = raw_http(&env, &head).await;
    assert_eq!(status, 200);
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/svc").expect("forwarded");
    assert!(
        folded_values(s, "cf-access-client-id").is_empty(),
        "{:?}",
        s.headers
    );
    assert!(
        folded_values(s, "cf-access-client-secret").is_empty(),
        "{:?}",
        s.headers
    );
    assert!(
        s.headers.iter().all(|(_, v)| !v.contains("ci-secret")),
        "{:?}",
        s.headers
    );
    assert!(folded_values(s, "cf-access-authenticated-user-email").is_empty());
    assert_eq!(folded_values(s, "cf-access-jwt-assertion").len(), 1);
}

// ------------------------------------------------------- open redirects

/// `redirect_url` values that leave our app origins, or are not absolute.
fn bad_redirects(port: u16) -> Vec<String> {
    [
        "//evil.com",
        "//evil.com/",
        "/\\evil.com",
        "\\\\evil.com",
        "https://evil.com",
        "http://evil.com",
        "http://evil.com/",
        "HTTP://EVIL.COM/",
        "http:evil.com",
        "http:/evil.com",
        "http:\\\\evil.com",
        "http://app.localhost.evil.com:PORT/",
        "http://app.localhost:PORT@evil.com/",
        "http://evil.com\\@app.localhost:PORT/",
        "http://evil.com#@app.localhost:PORT/",
        "http://evil.com?@app.localhost:PORT/",
        "http://user:pass@app.localhost:PORT/",
        "https://app.localhost:PORT/",
        "http://app.localhost:1/",
        "http://nowhere.localhost:PORT/",
        "http://evil.com/http://app.localhost:PORT/",
        " http://evil.com/",
        "http://evil.com\t/",
        "javascript:alert(1)",
        "javascript://app.localhost:PORT/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/x",
        "x",
        "",
    ]
    .iter()
    .map(|s| s.replace("PORT", &port.to_string()))
    .collect()
}

/// Whether a `Location` stays on our hosts (or is relative to them).
fn on_our_hosts(env: &Env, loc: &str) -> bool {
    let base = url::Url::parse(&env.url("app.localhost", "/")).unwrap();
    match base.join(loc) {
        Ok(u) => {
            u.scheme() == "http"
                && u.port() == Some(env.port)
                && u.username().is_empty()
                && u.host_str()
                    .is_some_and(|h| HOSTS.contains(&h) && h != "nowhere.localhost")
        }
        Err(_) => false,
    }
}

/// Ask `host`'s login endpoint to start a login for every bad `redirect_url`
/// and check it answers 400 without a Location off our hosts.
async fn assert_open_redirects_refused(env: &Env, host: &str) {
    let client = env.client();
    for bad in bad_redirects(env.port) {
        let url = format!(
            "{}?redirect_url={}",
            env.url(host, "/cdn-cgi/access/login"),
            url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        let r = client
            .get(&url)
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        if let Some(loc) = r.headers().get("location") {
            let loc = loc.to_str().unwrap_or("(not text)");
            assert!(
                on_our_hosts(env, loc),
                "{host}: {bad:?} redirected to {loc}"
            );
        }
        assert_eq!(r.status(), 400, "{host}: redirect_url {bad:?}");
    }
}

/// On the auth domain, `/login` refuses every `redirect_url` that is not an
/// absolute URL on a configured app origin (SECURITY 5), while a good one
/// is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_open_redirects_on_the_auth_domain() {
    let env = env().start().await;
    let good = env.url("app.localhost", "/x");
    let r = env
        .client()
        .get(env.url("auth.localhost", "/cdn-cgi/access/login"))
        .query(&[("redirect_url", good.as_str())])
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "control");
    assert!(on_our_hosts(&env, &location(&r)), "{}", location(&r));
    assert_open_redirects_refused(&env, "auth.localhost").await;
}

/// On an app host, `/login` refuses every bad `redirect_url` the same way,
/// while a good one on that host is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_open_redirects_on_an_app_host() {
    let env = env().start().await;
    let good = env.url("app.localhost", "/x");
    let r = env
        .client()
        .get(env.url("app.localhost", "/cdn-cgi/access/login"))
        .query(&[("redirect_url", good.as_str())])
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "control");
    assert!(on_our_hosts(&env, &location(&r)), "{}", location(&r));
    assert_open_redirects_refused(&env, "app.localhost").await;
}

// ------------------------------------------------------- path confusion

/// With bob signed in to both `app` (allowed) and `admin` (403: he is not
/// in engineering), every encoding trick towards `/admin` is 400 or 403,
/// and the upstream never receives a path under `/admin` (SECURITY 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_confusion_never_reaches_admin() {
    let env = env().start().await;
    let (browser, jar) = jar_browser(&env);
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ubob").await;
    let end = browse_login(
        &env,
        &browser,
        &env.url("app.localhost", "/admin/"),
        "00ubob",
    )
    .await;
    assert_eq!(
        end.response.status(),
        403,
        "bob at /admin after {:?}",
        end.trail
    );
    let cookie = jar_cookie_header(&jar, &env.url("app.localhost", "/admin/x"));
    assert_eq!(cookie.matches("CF_Authorization=").count(), 2, "{cookie}");
    let with_cookie = |target: &str| {
        raw_get(
            &env,
            "app.localhost",
            target,
            &[("Cookie", cookie.as_str())],
        )
    };

    assert_eq!(
        raw_http(&env, &with_cookie("/x")).await.0,
        200,
        "control: app"
    );
    assert_eq!(
        raw_http(&env, &with_cookie("/admin/x")).await.0,
        403,
        "control: admin"
    );
    for target in [
        "/public/../admin/x",
        "/public/./../admin/x",
        "//admin/x",
        "///admin/x",
        "/%61dmin/x",
        "/%2e%2e/admin/x",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "/public/.%2e/admin",
        "/admin;x/y",
        "/admin%3bx/y",
        "/public;/../admin",
        "/public%2F..%2Fadmin",
        "/public/..%2Fadmin",
        "/public/..%2fadmin",
        "/public\\..\\admin",
        "/public/..%5Cadmin",
        "/admin%00",
        "/admin%00/x",
        "/admin#x",
        "/public/%c0%ae%c0%ae/admin",
        "/public/..%c0%afadmin",
    ] {
        let (status, text) = raw_http(&env, &with_cookie(target)).await;
        assert!(
            status == 400 || status == 403,
            "{target} answered {status}: {}",
            text.lines().next().unwrap_or("")
        );
    }
    let leaked: Vec<String> = env
        .upstream
        .seen()
        .into_iter()
        .map(|s| s.uri)
        .filter(|u| u.to_ascii_lowercase().contains("dmin"))
        .collect();
    assert!(leaked.is_empty(), "upstream received {leaked:?}");
}

/// Without a session, `/public/../admin` is the admin app after
/// normalisation (not the bypassed `public` app), so it is refused and never
/// forwarded, while `/public/x` itself is bypassed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_out_of_a_bypass_route_never_reach_upstream() {
    let env = env().start().await;
    assert_eq!(
        raw_http(&env, &raw_get(&env, "app.localhost", "/public/x", &[]))
            .await
            .0,
        200,
        "control"
    );
    for target in [
        "/public/../admin",
        "/public/../admin/x",
        "/public/%2e%2e/admin",
        "/public//../admin",
    ] {
        let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", target, &[])).await;
        assert_eq!(status, 401, "{target}");
        let (status, _) = raw_http(
            &env,
            &raw_get(&env, "app.localhost", target, &[("Accept", "text/html")]),
        )
        .await;
        assert_eq!(status, 302, "{target} as a browser");
    }
    let uris: Vec<String> = env.upstream.seen().into_iter().map(|s| s.uri).collect();
    assert_eq!(uris, ["/public/x"]);
}

/// A `#` in the request target is 400 (DESIGN: ambiguous, never guessed),
/// in the path, after the query and in an absolute-form target; nothing is
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_in_target_is_400() {
    let env = env().start().await;
    let absolute = format!("http://app.localhost:{}/public/x#/../admin", env.port);
    for target in [
        "/public#/../admin",
        "/public#/%2e%2e/admin/x",
        "/public/x#/../../admin",
        "/public/x?a#b",
        absolute.as_str(),
    ] {
        let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", target, &[])).await;
        assert_eq!(status, 400, "{target}");
        // Empty lines before the request line are skipped by the parser.
        let head = format!("\r\n{}", raw_get(&env, "app.localhost", target, &[]));
        assert_eq!(raw_http(&env, &head).await.0, 400, "CRLF, {target}");
        let seen: Vec<String> = env.upstream.seen().into_iter().map(|s| s.uri).collect();
        assert!(seen.is_empty(), "{target}: forwarded {seen:?}");
    }
}

/// An absolute-form request without a Host header is forwarded with the
/// Host it was decided on, not without one (RFC 9112 §3.2.2): an origin
/// with several virtual hosts serves the host that was authorised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_without_host_is_forwarded_with_the_decided_host() {
    let env = env().start().await;
    let head = format!(
        "GET http://app.localhost:{}/public/abs HTTP/1.1\r\n",
        env.port
    );
    let (status, _) = raw_http(&env, &head).await;
    assert_eq!(status, 200);
    let seen = env.upstream.seen();
    let s = seen
        .iter()
        .find(|s| s.uri == "/public/abs")
        .expect("forwarded");
    assert_eq!(
        folded_values(s, "host"),
        [format!("app.localhost:{}", env.port)]
    );
}

// ------------------------------------------------------- login CSRF and replay

/// A transfer-token URL opened in a browser that did not start the login
/// (no nonce cookie, or another one) is refused with 400 and sets no session
/// cookie; the browser that started it can still use it (login CSRF).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_token_from_another_browser_is_refused() {
    let env = env().start().await;
    let browser = env.browser();
    let url = walk_until(
        &env,
        &browser,
        &env.url("app.localhost", "/x"),
        "00ualice",
        is_authorized,
    )
    .await;

    let r = env
        .client()
        .get(&url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no nonce cookie");
    assert!(!sets_cookie(&r, "CF_Authorization"));
    let r = env
        .client()
        .get(&url)
        .header("accept", HTML)
        .header("cookie", "CF_Authorization_nonce=attacker-chosen-nonce")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "someone else's nonce cookie");
    assert!(!sets_cookie(&r, "CF_Authorization"));

    let r = html_get(&browser, &url).await;
    assert_eq!(
        r.status(),
        302,
        "control: the browser that started the login"
    );
    assert!(sets_cookie(&r, "CF_Authorization"));
    assert!(env.upstream.seen().is_empty());
}

/// A transfer token minted for a session that is revoked before the
/// token is used sets no cookie: `/authorized` answers 400 and nothing is
/// forwarded. Control: a second browser's token for a live session, used
/// the same way, sets the app cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_token_for_a_session_revoked_in_between_is_refused() {
    let env = env().start().await;
    let walk = async |browser: &reqwest::Client| {
        walk_until(
            &env,
            browser,
            &env.url("app.localhost", "/x"),
            "00ualice",
            is_authorized,
        )
        .await
    };
    let browser = env.browser();
    let url = walk(&browser).await;
    let token = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("a transfer token");
    let claims: serde_json::Value = serde_json::from_slice(&unb64(parts(&token)[1])).unwrap();
    let sid = claims["sid"].as_str().expect("sid").to_string();
    assert!(
        env.state().store.revoke_session(&sid).await.unwrap(),
        "was live"
    );

    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 400, "a token of a revoked session");
    assert!(!sets_cookie(&r, "CF_Authorization"));
    let body = r.text().await.unwrap();
    assert!(body.contains("session has ended"), "{body}");
    let r = browser
        .get(env.url("app.localhost", "/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the browser holds no app session");

    let control = env.browser();
    let url = walk(&control).await;
    let r = html_get(&control, &url).await;
    assert_eq!(r.status(), 302, "control: a live session's token");
    assert!(sets_cookie(&r, "CF_Authorization"));
    assert!(env.upstream.seen().is_empty());
}

/// A transfer token works once: a second use, in the same browser or with
/// the original nonce cookie re-sent, is 400 and sets no session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_transfer_token_is_refused() {
    let env = env().start().await;
    let (browser, jar) = jar_browser(&env);
    let url = walk_until(
        &env,
        &browser,
        &env.url("app.localhost", "/x"),
        "00ualice",
        is_authorized,
    )
    .await;
    let (name, nonce) = jar_cookie(&jar, &url, "CF_Authorization_nonce");

    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 302, "first use");
    assert!(sets_cookie(&r, "CF_Authorization"));

    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 400, "second use in the same browser");
    assert!(!sets_cookie(&r, "CF_Authorization"));
    let r = env
        .client()
        .get(&url)
        .header("accept", HTML)
        .header("cookie", format!("{name}={nonce}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "second use with the nonce cookie");
    assert!(!sets_cookie(&r, "CF_Authorization"));
}

/// A callback URL works once: replayed in the same browser it is 400 and
/// sets no auth-domain session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_callback_is_refused() {
    let env = env().start().await;
    let browser = env.browser();
    let url = callback_url(&env, &browser).await;
    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 302, "first use");
    assert!(is_authorized(&location(&r)), "{}", location(&r));

    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 400);
    assert!(!sets_cookie(&r, "CF_Authorization_sso"));
}

/// The callback URL of alice's login at `app.localhost/`, not yet visited.
async fn callback_url(env: &Env, browser: &reqwest::Client) -> String {
    walk_until(
        env,
        browser,
        &env.url("app.localhost", "/"),
        "00ualice",
        is_callback,
    )
    .await
}

/// An authorization response naming another issuer (RFC 9207 `iss`) is
/// refused; the same response naming ours, or none, signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_naming_another_issuer_is_refused() {
    let env = env().start().await;
    for (iss, expect) in [
        (Some("https://evil.example/oauth2/default".to_string()), 400),
        (Some(env.idp.issuer()), 302),
        (None, 302),
    ] {
        let browser = env.browser();
        // The response as the IdP sent it, less any `iss` of its own.
        let mut url = url::Url::parse(&callback_url(&env, &browser).await).unwrap();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
        let url = url.to_string();
        assert!(!url.contains("iss="), "{url}");
        let url = match &iss {
            Some(i) => format!("{url}&iss={}", urlencoding(i)),
            None => url,
        };
        let r = html_get(&browser, &url).await;
        assert_eq!(r.status(), expect, "iss {iss:?}");
        assert_eq!(sets_cookie(&r, "CF_Authorization_sso"), expect == 302);
    }
}

/// `s` percent-encoded for a query value.
fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A callback URL replayed together with its (captured) state cookie is
/// still 400: the state is burned server-side, not only cleared in the
/// browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_callback_with_its_state_cookie_is_refused() {
    let env = env().start().await;
    let (browser, jar) = jar_browser(&env);
    let url = callback_url(&env, &browser).await;
    let (name, value) = jar_cookie(&jar, &url, "CF_Authorization_state_");
    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 302, "first use");

    let r = env
        .client()
        .get(&url)
        .header("accept", HTML)
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!sets_cookie(&r, "CF_Authorization_sso"));
}

/// A callback whose `state` does not match the state cookie (same first 12
/// characters, so the cookie is found, different rest) is 400; the genuine
/// callback in that browser then still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_with_mismatched_state_is_refused() {
    let env = env().start().await;
    let browser = env.browser();
    let url = callback_url(&env, &browser).await;
    let mut forged = url::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                let tail: String = v[12..]
                    .chars()
                    .map(|c| if c == 'A' { 'B' } else { 'A' })
                    .collect();
                format!("{}{tail}", &v[..12])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    assert_ne!(forged.as_str(), url);

    let r = browser
        .get(forged.as_str())
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "mismatched state");
    assert!(!sets_cookie(&r, "CF_Authorization_sso"));
    let r = html_get(&browser, &url).await;
    assert_eq!(r.status(), 302, "control: the genuine callback");
}

/// A callback arriving in a browser without the state cookie (login CSRF:
/// the attacker's code in the victim's browser) is 400; the genuine browser
/// then still completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_without_state_cookie_is_refused() {
    let env = env().start().await;
    let browser = env.browser();
    let url = callback_url(&env, &browser).await;
    let r = env
        .client()
        .get(&url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!sets_cookie(&r, "CF_Authorization_sso"));
    let r = html_get(&browser, &url).await;
    assert_eq!(
        r.status(),
        302,
        "control: the browser that started the login"
    );
}

/// A callback whose `state` is not one of ours in form (non-ASCII, cut
/// inside a character where the cookie name is taken) is a 400 page, not
/// a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_with_a_non_ascii_state_is_400() {
    let env = env().start().await;
    for st in [
        "aaaaaaaaaaa%C3%A9bbbb",
        "%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9",
        "aaaaaaaaaaaa.bbbb",
    ] {
        let r = env
            .client()
            .get(env.url(
                "auth.localhost",
                &format!("/cdn-cgi/access/callback?code=x&state={st}"),
            ))
            .header("accept", HTML)
            .send()
            .await
            .unwrap_or_else(|e| panic!("state {st}: {e}"));
        assert_eq!(r.status(), 400, "state {st}");
    }
}

// ------------------------------------------------------- ID tokens

/// Spoil the next ID token with `tamper`, walk a login, and check that it
/// ends in 400 or 502 without a session or an upstream request; then a
/// clean login in the same browser succeeds.
async fn assert_id_token_refused(tamper: Tamper) {
    let env = env().start().await;
    let browser = env.browser();
    env.idp.set_next_id_token_tamper(tamper);
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let status = end.response.status().as_u16();
    assert!(
        status == 400 || status == 502,
        "{tamper:?}: ended with {status} after {:?}",
        end.trail
    );
    assert!(
        end.trail.iter().any(|u| is_callback(u)),
        "{tamper:?}: {:?}",
        end.trail
    );
    assert!(
        !end.trail.iter().any(|u| is_authorized(u)),
        "{tamper:?}: {:?}",
        end.trail
    );
    let r = browser
        .get(env.url("app.localhost", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{tamper:?}: a session exists");
    let r = browser
        .get(env.url("auth.localhost", "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{tamper:?}: an auth-domain session exists");
    assert!(
        env.upstream.seen().is_empty(),
        "{tamper:?}: upstream reached"
    );
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
}

/// An ID token issued to another client (`aud`) creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_wrong_audience_creates_no_session() {
    assert_id_token_refused(Tamper::WrongAudience).await;
}

/// An ID token from another issuer creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_from_another_issuer_creates_no_session() {
    assert_id_token_refused(Tamper::WrongIssuer).await;
}

/// An expired ID token creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_id_token_creates_no_session() {
    assert_id_token_refused(Tamper::Expired).await;
}

/// An ID token with a broken RS256 signature creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_bad_signature_creates_no_session() {
    assert_id_token_refused(Tamper::BadSignature).await;
}

/// An ID token whose `nonce` is not the one this login sent (a replayed or
/// injected token) creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_wrong_nonce_creates_no_session() {
    assert_id_token_refused(Tamper::WrongNonce).await;
}

/// An unsigned (`alg: none`) ID token creates no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_id_token_creates_no_session() {
    assert_id_token_refused(Tamper::NoneAlg).await;
}

/// An HS256 ID token keyed with the client secret (algorithm confusion)
/// creates no session: the IdP's algorithm is pinned to its JWKS keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_id_token_creates_no_session() {
    assert_id_token_refused(Tamper::Hs256ClientSecret).await;
}

// ------------------------------------------------------- logout CSRF

/// A cross-site GET of `/logout` (a link or image on another site) only
/// shows a confirmation page with a POST form; the session keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_logout_get_only_asks_for_confirmation() {
    let env = env().start().await;
    let (browser, token) = login_token(&env, "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/cdn-cgi/access/logout"))
        .header("accept", HTML)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap_or("").starts_with("CF_Authorization=")));
    let body = r.text().await.unwrap().to_ascii_lowercase();
    assert!(
        body.contains("<form") && body.contains("method=\"post\""),
        "{body}"
    );
    let r = browser
        .get(env.url("app.localhost", "/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the session still works in the browser");
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        200,
        "and server-side"
    );
}

/// A POST to `/logout` (the confirmation form) signs out: the session is
/// revoked server-side and the cookie no longer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_post_ends_the_session() {
    let env = env().start().await;
    let (browser, token) = login_token(&env, "00ualice").await;
    let r = browser
        .post(env.url("app.localhost", "/cdn-cgi/access/logout"))
        .header("accept", HTML)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = browser
        .get(env.url("app.localhost", "/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        401
    );
}

/// A GET of `/logout` from a sibling subdomain (`Sec-Fetch-Site:
/// same-site`) logs out: DESIGN asks for a confirmation only when the
/// request is `cross-site`, and "any other GET or POST logs out". The
/// session is revoked server-side and the cookie cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_site_logout_get_ends_the_session() {
    let env = env().start().await;
    let (browser, token) = login_token(&env, "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/cdn-cgi/access/logout"))
        .header("accept", HTML)
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        crate::harness::clears_cookie(&r, "CF_Authorization=", ""),
        "the app cookie is cleared: {:?}",
        r.headers()
    );
    let body = r.text().await.unwrap().to_ascii_lowercase();
    assert!(!body.contains("<form"), "no confirmation asked: {body}");
    assert_eq!(
        status_with_cookie(&env, "app.localhost", "/", &token).await,
        401,
        "the session is revoked server-side"
    );
}

// ------------------------------------------------------- host confusion

/// An absolute-form request target naming another host than `Host` is 400:
/// the proxy must not authorise for one host and route by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_for_another_host_is_refused() {
    let env = env().start().await;
    let target = format!("http://other.localhost:{}/", env.port);
    let (status, _) = raw_http(&env, &raw_get(&env, "app.localhost", &target, &[])).await;
    assert_eq!(status, 400);
    let target = format!("http://app.localhost:{}/public/x", env.port);
    let (status, _) = raw_http(&env, &raw_get(&env, "other.localhost", &target, &[])).await;
    assert_eq!(status, 400);
    assert!(env.upstream.seen().is_empty());
}

/// A host no app is configured for is 404 and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_and_never_forwarded() {
    let env = env().start().await;
    for path in ["/", "/public/x", "/admin"] {
        let r = env
            .client()
            .get(env.url("nowhere.localhost", path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (status, _) = raw_http(&env, &raw_get(&env, "evil.example", "/public/x", &[])).await;
    assert_eq!(status, 404);
    assert!(env.upstream.seen().is_empty());
}

// ------------------------------------------------------- error bodies and methods

/// What kind of body a reply has: an HTML page or `{"error": code}`.
fn body_kind(response: &str) -> &'static str {
    let lower = response.to_ascii_lowercase();
    if lower.contains("content-type: text/html") {
        "html"
    } else if lower.contains("content-type: application/json") && response.contains("\"error\"") {
        "json"
    } else {
        "other"
    }
}

/// An unroutable path is 400 with a page for a browser and JSON for any
/// other client, as DESIGN's status-code table says; nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_path_is_400_page_for_browsers_and_json_otherwise() {
    let env = env().start().await;
    for target in ["/a%2fb", "/a\\b", "/a;b=c"] {
        let (status, text) = raw_http(&env, &raw_get(&env, "app.localhost", target, &[])).await;
        assert_eq!(
            (status, body_kind(&text)),
            (400, "json"),
            "{target}: {text}"
        );
        let browser = raw_get(&env, "app.localhost", target, &[("Accept", "text/html")]);
        let (status, text) = raw_http(&env, &browser).await;
        assert_eq!(
            (status, body_kind(&text)),
            (400, "html"),
            "{target}: {text}"
        );
    }
    assert!(env.upstream.seen().is_empty());
}

/// A bad `redirect_url` on `/login` is 400 JSON for a non-browser GET (curl)
/// and an HTML page for a browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_error_body_follows_accept() {
    let env = env().start().await;
    let target = "/cdn-cgi/access/login?redirect_url=https%3A%2F%2Fevil.example%2F";
    let (status, text) = raw_http(&env, &raw_get(&env, "app.localhost", target, &[])).await;
    assert_eq!((status, body_kind(&text)), (400, "json"), "{text}");
    let browser = raw_get(&env, "app.localhost", target, &[("Accept", "text/html")]);
    let (status, text) = raw_http(&env, &browser).await;
    assert_eq!((status, body_kind(&text)), (400, "html"), "{text}");
}

/// The OIDC callback exists only on the auth domain: on an app host it is
/// 404 for every method, never a 405 that suggests it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_off_the_auth_domain_is_404() {
    let env = env().start().await;
    let c = env.client();
    let url = env.url("app.localhost", "/cdn-cgi/access/callback?code=x&state=y");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 404);
    assert_eq!(c.post(&url).send().await.unwrap().status(), 404);
}

/// A proxy-owned endpoint answers a method it does not take with 405 and
/// an `Allow` header listing the ones it does (POST for `/logout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_405_lists_the_methods_they_take() {
    let env = env().start().await;
    let c = env.client();
    for (path, allow) in [
        ("/cdn-cgi/access/logout", "GET, HEAD, POST"),
        ("/cdn-cgi/access/login", "GET, HEAD"),
        ("/cdn-cgi/access/get-identity", "GET, HEAD"),
        ("/cdn-cgi/access/certs", "GET, HEAD"),
    ] {
        let r = c.put(env.url("app.localhost", path)).send().await.unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(r.headers()["allow"], allow, "{path}");
    }
    assert!(env.upstream.seen().is_empty());
}
