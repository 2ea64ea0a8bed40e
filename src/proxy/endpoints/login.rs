//! The login flow (DESIGN.md "Login flow"): `login` starts it (or reuses the
//! auth-domain session), `callback` finishes it with the IdP, `authorized`
//! sets the app cookie from a one-time transfer token.
//!
//! Browser binding: a nonce cookie on the app host whose hash rides in the
//! login state and the transfer token (login CSRF); a signed state cookie on
//! the auth domain carrying state, nonce and PKCE verifier; every one-time
//! value is burned in the store (`use_once`).

use std::sync::Arc;

use pingora::http::RequestHeader;
use subtle::ConstantTimeEq;

use crate::idp::oidc::{IdpError, Provider};
use crate::metrics::metrics;
use crate::policy::model::App;
use crate::proxy::access::{login_nonce, urlencode};
use crate::proxy::cookies;
use crate::proxy::path;
use crate::proxy::request::RequestInfo;
use crate::proxy::respond::{html_escape, Reply};
use crate::proxy::state::State;
use crate::session::cache::CachedSession;
use crate::session::token::{
    now_unix, random_token, sha256_hex, LoginState, SessionClaims, TokenKind, TransferClaims,
};
use crate::store::{Seat, SessionRecord};

use crate::session::token::{
    LOGIN_STATE_AUD, LOGIN_STATE_TTL_SECS as STATE_TTL, TRANSFER_TTL_SECS as TRANSFER_TTL,
};

/// A validated `redirect_url`: absolute, on a configured app origin.
struct Target {
    url: String,
    /// `scheme://host[:port]`
    origin: String,
    /// Lower-case host without port.
    host: String,
    app: Arc<App>,
}

fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn bad_request(info: &RequestInfo<'_>, msg: &str) -> Reply {
    Reply::error(info.browser, 400, "bad_request", "Bad request", msg)
}

/// Validate a `redirect_url` (SECURITY.md rule 5): WHATWG parse, our scheme,
/// no credentials, a port we listen on or `public.port` (or none), and a
/// host + path that routes to a configured app.
fn check_redirect(state: &State, raw: &str) -> Option<Target> {
    if raw.len() > 4096 || raw.bytes().any(|b| b < 0x20 || b == b'\\') {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    if url.scheme() != state.scheme() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    if url.fragment().is_some() {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    // `url` leaves out the scheme's default port.
    if url
        .port()
        .is_some_and(|p| !state.cfg.redirect_port_allowed(p))
    {
        return None;
    }
    let target = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_string(),
    };
    let norm = path::normalize(&target).ok()?;
    let set = state.policies.current();
    let app = set.router.route(&set.apps, &host, &norm.path)?.clone();
    let origin = match url.port() {
        Some(p) => format!("{}://{}:{}", url.scheme(), host, p),
        None => format!("{}://{}", url.scheme(), host),
    };
    Some(Target {
        url: url.to_string(),
        origin,
        host,
        app,
    })
}

fn login_url(state: &State, redirect: &str, csrf: &str, idp: Option<&str>) -> String {
    let mut u = format!(
        "{}{}/login?redirect_url={}&csrf={}",
        state.auth_origin,
        state.prefix(),
        urlencode(redirect),
        urlencode(csrf)
    );
    if let Some(i) = idp {
        u.push_str("&idp=");
        u.push_str(&urlencode(i));
    }
    u
}

fn redirect_uri(state: &State) -> String {
    format!("{}{}/callback", state.auth_origin, state.prefix())
}

/// The live auth-domain session from the `_sso` cookie, if any.
pub async fn sso_session(
    state: &State,
    req: &RequestHeader,
) -> Option<(SessionRecord, SessionClaims)> {
    for token in cookies::values(req, &state.sso_cookie) {
        let verified = state
            .keys
            .current()
            .verify_sso(token, &state.auth_origin, &state.sso_aud);
        let Ok(claims) = verified else {
            continue;
        };
        match state.store.get_session(&claims.sid).await {
            Ok(Some(rec)) if !rec.revoked && rec.expires_at > now_unix() => {
                return Some((rec, claims))
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Session store read failed"),
        }
    }
    None
}

/// `GET /login?redirect_url=…[&csrf=…][&idp=…]`
pub async fn login(state: &State, info: &RequestInfo<'_>, req: &RequestHeader) -> Reply {
    let Some(raw) = query_param(req, "redirect_url") else {
        return bad_request(info, "The login link is missing its destination.");
    };
    let Some(target) = check_redirect(state, &raw) else {
        return bad_request(
            info,
            "The login destination is not an application served here.",
        );
    };
    let on_auth = info.host() == state.auth_host;
    let csrf = query_param(req, "csrf")
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()));

    // On an app host: bind the browser with a nonce cookie, then go to the auth domain.
    if !on_auth || (csrf.is_none() && target.host == state.auth_host) {
        if target.host != info.host() {
            return bad_request(info, "The login destination is on another host.");
        }
        let (nonce, hash) = login_nonce();
        let idp = query_param(req, "idp");
        return Reply::redirect(&login_url(state, &target.url, &hash, idp.as_deref())).with_cookie(
            cookies::set_cookie(
                &state.nonce_cookie,
                &nonce,
                state.prefix(),
                STATE_TTL,
                state.secure_cookies,
            ),
        );
    }
    let Some(csrf) = csrf else {
        // Started on the auth domain for an app elsewhere: let the app host set its nonce first.
        return Reply::redirect(&format!(
            "{}{}/login?redirect_url={}",
            target.origin,
            state.prefix(),
            urlencode(&target.url)
        ));
    };

    let allowed = state.idps_for(&target.app);
    if let Some((rec, _)) = sso_session(state, req).await {
        // A user deactivated over SCIM may not reuse the auth-domain session.
        if allowed.iter().any(|p| p.name() == rec.identity.idp)
            && matches!(
                crate::scim::login_allowed(state, &rec.identity).await,
                Ok(true)
            )
        {
            return finish(state, &target, &rec, &csrf).await;
        }
    }

    let chosen = query_param(req, "idp");
    let provider = match (chosen.as_deref(), allowed.len()) {
        (Some(name), _) => match allowed.iter().find(|p| p.name() == name) {
            Some(p) => (*p).clone(),
            None => {
                return bad_request(
                    info,
                    "That sign-in method is not available for this application.",
                )
            }
        },
        (None, 1) => allowed[0].clone(),
        (None, 0) => {
            return Reply::page(
                500,
                "No sign-in method",
                "This application accepts no configured identity provider.",
            )
        }
        (None, _) => return chooser(state, &target, &csrf, &allowed),
    };
    start_idp_login(state, &provider, &target, &csrf).await
}

fn chooser(state: &State, target: &Target, csrf: &str, idps: &[&Arc<Provider>]) -> Reply {
    let mut links = String::from("<ul>");
    for p in idps {
        links.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>",
            html_escape(&login_url(state, &target.url, csrf, Some(p.name()))),
            html_escape(p.name())
        ));
    }
    links.push_str("</ul>");
    Reply::page_with(
        200,
        "Sign in",
        &format!("Choose how to sign in to {}.", target.app.name),
        &links,
    )
}

async fn start_idp_login(state: &State, provider: &Provider, target: &Target, csrf: &str) -> Reply {
    // Do not send the browser to an IdP that cannot finish the login.
    if let Err(e) = provider.ensure_reachable().await {
        count_login(state, provider.name(), idp_result_label(&e), None);
        return idp_failure(provider.name(), &e);
    }
    let now = now_unix();
    let st = random_token(24);
    let nonce = random_token(24);
    let verifier = provider.config().pkce_enabled.then(|| random_token(48));
    let challenge = verifier.as_deref().map(pkce_challenge);
    let url = match provider.authorize_url(&redirect_uri(state), &st, &nonce, challenge.as_deref())
    {
        Ok(u) => u,
        Err(e) => return idp_failure(provider.name(), &e),
    };
    let claims = LoginState {
        iss: state.auth_origin.clone(),
        aud: LOGIN_STATE_AUD.into(),
        state: st.clone(),
        nonce,
        pkce_verifier: verifier,
        redirect_url: target.url.clone(),
        idp: provider.name().to_string(),
        csrf: csrf.to_string(),
        iat: now,
        nbf: now,
        exp: now + STATE_TTL,
        typ: TokenKind::Login,
    };
    let token = match state.keys.current().mint_login(&claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "Login state signing failed");
            return Reply::page(
                500,
                "Something went wrong",
                "The login could not be started.",
            );
        }
    };
    Reply::redirect(&url).with_cookie(cookies::set_cookie(
        &format!("{}{}", state.state_cookie_prefix, &st[..12]),
        &token,
        state.prefix(),
        STATE_TTL,
        state.secure_cookies,
    ))
}

/// S256 PKCE challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn idp_failure(idp: &str, e: &IdpError) -> Reply {
    tracing::warn!(idp = %idp, error = %e, "Identity provider failed");
    match e {
        IdpError::Rejected(_) | IdpError::InvalidToken(_) => {
            Reply::page(400, "Sign-in failed", "The identity provider's answer could not be accepted. Please try again.")
        }
        IdpError::GroupsApi(_) => Reply::page(
            502,
            "Group memberships unavailable",
            "You signed in, but your group memberships could not be read from the identity provider, so access \
             cannot be decided and no session was created. Please try again in a moment; if this persists, \
             tell your administrator (Okta API token).",
        ),
        IdpError::Unavailable(_) => Reply::page(502, "Identity provider unavailable", "The identity provider could not be reached. Please try again in a moment."),
    }
}

/// Count a completed login attempt (`logins_total`) and write its access
/// log line; `user` is `(email, sub)` once the IdP vouched for one.
fn count_login(state: &State, idp: &str, result: &str, user: Option<(&str, &str)>) {
    metrics()
        .logins_total
        .with_label_values(&[idp, result])
        .inc();
    state.access_log.login(result, idp, user);
}

fn idp_result_label(e: &IdpError) -> &'static str {
    match e {
        IdpError::Rejected(_) => "rejected",
        IdpError::InvalidToken(_) => "invalid_token",
        IdpError::GroupsApi(_) => "groups_api_error",
        IdpError::Unavailable(_) => "idp_error",
    }
}

/// `GET /callback?code=…&state=…` on the auth domain.
pub async fn callback(state: &State, info: &RequestInfo<'_>, req: &RequestHeader) -> Reply {
    // Our states are base64url (`random_token`); anything else is not one,
    // and the cookie name is cut from its first 12 bytes.
    let Some(st) = query_param(req, "state").filter(|s| {
        (12..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) else {
        return bad_request(info, "The sign-in response is missing its state.");
    };
    let cookie_name = format!("{}{}", state.state_cookie_prefix, &st[..12]);
    let login = cookies::values(req, &cookie_name).find_map(|t| {
        state
            .keys
            .current()
            .verify_login(t, &state.auth_origin)
            .ok()
    });
    let Some(login) = login.filter(|l| bool::from(l.state.as_bytes().ct_eq(st.as_bytes()))) else {
        return bad_request(
            info,
            "This sign-in response does not belong to this browser.",
        );
    };
    let clear_state =
        cookies::set_cookie(&cookie_name, "", state.prefix(), 0, state.secure_cookies);
    match state
        .store
        .use_once(&format!("state:{}", login.state), login.exp)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return bad_request(info, "This sign-in response was already used.")
                .with_cookie(clear_state)
        }
        Err(e) if e.is_unavailable() => {
            state.store_health.contact_failed();
            return super::super::access::unavailable(info.browser).with_cookie(clear_state);
        }
        Err(e) => {
            tracing::warn!(error = %e, "Store failed at callback");
            return Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            );
        }
    }
    let Some(provider) = state.idp(&login.idp).cloned() else {
        return bad_request(info, "Unknown sign-in method.");
    };
    // RFC 9207: a response that names its issuer must name the provider
    // this login went to (mix-up defence with several providers).
    if let Some(iss) = query_param(req, "iss") {
        if !provider.is_issuer(&iss) {
            tracing::warn!(idp = %provider.name(), "Authorization response names another issuer");
            return bad_request(
                info,
                "The sign-in response came from another identity provider.",
            )
            .with_cookie(clear_state);
        }
    }
    if let Some(err) = query_param(req, "error") {
        let description = query_param(req, "error_description").unwrap_or_default();
        tracing::info!(idp = %provider.name(), error = ?err, description = ?description, "Identity provider refused the login");
        count_login(state, provider.name(), "denied", None);
        return Reply::page(
            403,
            "Sign-in refused",
            "The identity provider did not let you sign in.",
        )
        .with_cookie(clear_state);
    }
    let Some(code) = query_param(req, "code") else {
        return bad_request(info, "The sign-in response is missing its code.");
    };
    let identity = match provider
        .exchange(
            &code,
            &redirect_uri(state),
            login.pkce_verifier.as_deref(),
            &login.nonce,
        )
        .await
    {
        Ok(i) => i,
        Err(e) => {
            count_login(state, provider.name(), idp_result_label(&e), None);
            return idp_failure(provider.name(), &e).with_cookie(clear_state);
        }
    };
    match crate::scim::login_allowed(state, &identity).await {
        Ok(true) => {}
        Ok(false) => {
            let user = (identity.email.as_str(), identity.sub.as_str());
            count_login(state, provider.name(), "deprovisioned", Some(user));
            return Reply::page(403, "Access removed", "Your account has been deactivated.")
                .with_cookie(clear_state);
        }
        Err(e) => {
            tracing::warn!(error = %e, idp = %provider.name(), "SCIM link lookup failed; refusing the login");
            let user = (identity.email.as_str(), identity.sub.as_str());
            count_login(state, provider.name(), "store_error", Some(user));
            return Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            )
            .with_cookie(clear_state);
        }
    }
    let Some(target) = check_redirect(state, &login.redirect_url) else {
        return bad_request(
            info,
            "The login destination is not an application served here.",
        );
    };
    let now = now_unix();
    let expires_at = now + state.cfg.session.duration.as_secs() as i64;
    let rec = SessionRecord {
        sid: random_token(24),
        identity,
        created_at: now,
        expires_at,
        revoked: false,
    };
    if let Err(e) = state.store.create_session(&rec).await {
        if e.is_unavailable() {
            state.store_health.contact_failed();
            return super::super::access::unavailable(true);
        }
        tracing::warn!(error = %e, "Session store write failed");
        return Reply::page(
            500,
            "Something went wrong",
            "The sign-in could not be completed.",
        );
    }
    let user = (rec.identity.email.as_str(), rec.identity.sub.as_str());
    count_login(state, provider.name(), "success", Some(user));
    tracing::info!(idp = %provider.name(), user.sub = %rec.identity.sub, "Login succeeded");
    let sso = SessionClaims {
        iss: state.auth_origin.clone(),
        aud: vec![state.sso_aud.clone()],
        sub: rec.identity.sub.clone(),
        email: rec.identity.email.clone(),
        sid: rec.sid.clone(),
        iat: now,
        nbf: now,
        exp: expires_at,
        idp: rec.identity.idp.clone(),
        typ: TokenKind::Sso,
    };
    let Ok(sso_token) = state.keys.current().mint_sso(&sso) else {
        return Reply::page(
            500,
            "Something went wrong",
            "The sign-in could not be completed.",
        );
    };
    finish(state, &target, &rec, &login.csrf)
        .await
        .with_cookie(clear_state)
        .with_cookie(cookies::set_cookie(
            &state.sso_cookie,
            &sso_token,
            state.prefix(),
            expires_at - now,
            state.secure_cookies,
        ))
}

/// After a login (or with an existing auth-domain session): hand the session
/// to the app host with a transfer token, or set the app cookie directly when
/// the app lives on the auth domain.
async fn finish(state: &State, target: &Target, rec: &SessionRecord, csrf: &str) -> Reply {
    if target.host == state.auth_host {
        return app_cookie_redirect(state, target, rec).await;
    }
    let now = now_unix();
    let claims = TransferClaims {
        iss: state.auth_origin.clone(),
        aud: target.origin.clone(),
        sid: rec.sid.clone(),
        jti: random_token(18),
        csrf: csrf.to_string(),
        redirect_url: target.url.clone(),
        iat: now,
        nbf: now,
        exp: now + TRANSFER_TTL,
        typ: TokenKind::Transfer,
    };
    match state.keys.current().mint_transfer(&claims) {
        Ok(t) => Reply::redirect(&format!(
            "{}{}/authorized?token={}",
            target.origin,
            state.prefix(),
            urlencode(&t)
        )),
        Err(e) => {
            tracing::warn!(error = %e, "Transfer token signing failed");
            Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            )
        }
    }
}

/// Mint the app token, set the app cookie, record the seat, go to the URL.
async fn app_cookie_redirect(state: &State, target: &Target, rec: &SessionRecord) -> Reply {
    let app = &target.app;
    let now = now_unix();
    let exp = (now + state.app_duration(app).as_secs() as i64).min(rec.expires_at);
    let claims = SessionClaims {
        iss: state.auth_origin.clone(),
        aud: vec![app.aud.clone()],
        sub: rec.identity.sub.clone(),
        email: rec.identity.email.clone(),
        sid: rec.sid.clone(),
        iat: now,
        nbf: now,
        exp,
        idp: rec.identity.idp.clone(),
        typ: TokenKind::App,
    };
    let token = match state.keys.current().mint_app(&claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "Session token signing failed");
            return Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            );
        }
    };
    // The app's first request with the new cookie is then a cache hit. With
    // SCIM the identity must carry the live SCIM groups; if they cannot be
    // read, nothing is cached and that request loads (and denies) itself.
    if let Ok(identity) = state.policy_identity(rec.identity.clone()).await {
        let cached = CachedSession::new(claims, Arc::new(identity), exp);
        state.cache.insert(&token, Arc::new(cached)).await;
    }
    let seat = Seat {
        app: app.name.clone(),
        idp: rec.identity.idp.clone(),
        sub: rec.identity.sub.clone(),
        email: rec.identity.email.clone(),
        last_login: now,
    };
    if let Err(e) = state.store.upsert_seat(&seat).await {
        tracing::warn!(error = %e, "Seat write failed");
    }
    Reply::redirect(&target.url).with_cookie(cookies::set_cookie(
        &state.cfg.session.cookie_name,
        &token,
        &app.path,
        exp - now,
        state.secure_cookies,
    ))
}

/// `GET /authorized?token=…` on the app host.
pub async fn authorized(state: &State, info: &RequestInfo<'_>, req: &RequestHeader) -> Reply {
    let origin = format!("{}://{}", state.scheme(), info.authority);
    let Some(raw) = query_param(req, "token") else {
        return bad_request(info, "The sign-in link is incomplete.");
    };
    let verified = state
        .keys
        .current()
        .verify_transfer(&raw, &state.auth_origin, &origin);
    let Ok(t) = verified else {
        return bad_request(info, "The sign-in link is invalid or has expired.");
    };
    let nonce_ok = cookies::values(req, &state.nonce_cookie)
        .any(|n| bool::from(sha256_hex(n).as_bytes().ct_eq(t.csrf.as_bytes())));
    if !nonce_ok {
        return bad_request(info, "This sign-in link was not started in this browser.");
    }
    match state
        .store
        .use_once(&format!("transfer:{}", t.jti), t.exp)
        .await
    {
        Ok(true) => {}
        Ok(false) => return bad_request(info, "This sign-in link was already used."),
        Err(e) if e.is_unavailable() => {
            state.store_health.contact_failed();
            return super::super::access::unavailable(info.browser);
        }
        Err(e) => {
            tracing::warn!(error = %e, "Store failed at authorized");
            return Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            );
        }
    }
    let Some(target) = check_redirect(state, &t.redirect_url).filter(|t| t.origin == origin) else {
        return bad_request(
            info,
            "The login destination is not an application served here.",
        );
    };
    let rec = match state.store.get_session(&t.sid).await {
        Ok(Some(r)) if !r.revoked && r.expires_at > now_unix() => r,
        Ok(_) => return bad_request(info, "The session has ended. Please sign in again."),
        Err(e) if e.is_unavailable() => {
            state.store_health.contact_failed();
            return super::super::access::unavailable(info.browser);
        }
        Err(e) => {
            tracing::warn!(error = %e, "Session store read failed");
            return Reply::page(
                500,
                "Something went wrong",
                "The sign-in could not be completed.",
            );
        }
    };
    app_cookie_redirect(state, &target, &rec)
        .await
        .with_cookie(cookies::set_cookie(
            &state.nonce_cookie,
            "",
            state.prefix(),
            0,
            state.secure_cookies,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
