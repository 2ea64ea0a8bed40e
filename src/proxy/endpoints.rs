//! Proxy-owned endpoints under the configured prefix (`/cdn-cgi/access`):
//! `login`, `callback`, `authorized` (in `login`), `logout` (in `logout`),
//! `get-identity` and `certs` (here). Served on the auth domain and on every
//! configured app host; never forwarded.

pub mod login;
pub mod logout;

use std::sync::Arc;

use crate::identity::Identity;
use crate::policy::model::{App, HostPattern};
use crate::session::cache::CachedSession;
use crate::store::Store;

use super::request::RequestInfo;
use super::respond::Reply;
use super::state::State;

/// Serve a proxy-owned endpoint; `rest` is the path after the prefix.
pub async fn serve(
    state: &State,
    req: &pingora::http::RequestHeader,
    info: &RequestInfo<'_>,
    rest: &str,
) -> Reply {
    let on_auth = info.host() == state.auth_host;
    let on_app = on_auth || !apps_on_host(state, info.host()).is_empty();
    if !on_app {
        return not_found(info, "There is no application at this address.");
    }
    let method = req.method.clone();
    // Fleet mode, store unreachable: the endpoints that need it answer at
    // once rather than after a connection timeout.
    if state.store_health.is_down()
        && matches!(rest, "/login" | "/callback" | "/authorized" | "/logout")
    {
        return super::access::unavailable(info.browser);
    }
    match rest {
        // The OIDC redirect URI exists only on the auth domain.
        "/callback" if !on_auth => not_found(info, "There is no such page."),
        "/login" if info.method_is_get_or_head => login::login(state, info, req).await,
        "/callback" if info.method_is_get_or_head => login::callback(state, info, req).await,
        "/authorized" if info.method_is_get_or_head => login::authorized(state, info, req).await,
        "/logout" if info.method_is_get_or_head || method == http::Method::POST => {
            logout::logout(state, info, req, method == http::Method::POST).await
        }
        "/get-identity" if info.method_is_get_or_head => get_identity(state, info, req).await,
        "/certs" if info.method_is_get_or_head => {
            Reply::new(200, "application/json", state.keys.jwks_json().to_string())
        }
        "/logout" => method_not_allowed(info, "GET, HEAD, POST"),
        "/login" | "/callback" | "/authorized" | "/get-identity" | "/certs" => {
            method_not_allowed(info, "GET, HEAD")
        }
        _ => not_found(info, "There is no such page."),
    }
}

/// 404: a page for a browser, JSON otherwise.
fn not_found(info: &RequestInfo<'_>, message: &str) -> Reply {
    Reply::error(info.browser, 404, "not_found", "Not found", message)
}

/// 405 naming the methods the endpoint takes (`allow`).
fn method_not_allowed(info: &RequestInfo<'_>, allow: &'static str) -> Reply {
    Reply::error(
        info.browser,
        405,
        "method_not_allowed",
        "Method not allowed",
        "This address does not take that method.",
    )
    .with_header("allow", allow.into())
}

/// Whether `host` (lower-case, no port) matches an app host pattern.
pub fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Exact(h) => h == host,
        HostPattern::Wildcard(suffix) => {
            host.len() > suffix.len() && host.ends_with(suffix.as_str())
        }
    }
}

/// Apps served on `host`.
pub fn apps_on_host(state: &State, host: &str) -> Vec<Arc<App>> {
    let set = state.policies.current();
    set.apps
        .iter()
        .filter(|a| host_matches(&a.host, host))
        .cloned()
        .collect()
}

/// The user's identity as policies see it now: the IdP groups fixed at
/// login, merged with live SCIM group memberships.
pub async fn live_identity(store: &dyn Store, identity: Identity) -> Identity {
    crate::scim::live_identity(store, identity).await
}

/// The verified session behind the cookies of this request, for any app on
/// this host (or the auth-domain session on the auth host).
pub async fn current_session(
    state: &State,
    info: &RequestInfo<'_>,
    req: &pingora::http::RequestHeader,
) -> Option<Arc<CachedSession>> {
    for app in apps_on_host(state, info.host()) {
        if let Ok(Some((_, s))) = super::access::find_session(state, &app, req).await {
            return Some(s);
        }
    }
    if info.host() == state.auth_host {
        if let Some((rec, claims)) = login::sso_session(state, req).await {
            let identity = Arc::new(live_identity(state.store.as_ref(), rec.identity).await);
            let expires_at = claims.exp;
            return Some(Arc::new(CachedSession::new(claims, identity, expires_at)));
        }
    }
    None
}

async fn get_identity(
    state: &State,
    info: &RequestInfo<'_>,
    req: &pingora::http::RequestHeader,
) -> Reply {
    let Some(s) = current_session(state, info, req).await else {
        return Reply::json_error(401, "unauthorized");
    };
    let id = &s.identity;
    let idp_type = id.idp_type.clone();
    Reply::json(
        200,
        &serde_json::json!({
            "email": id.email,
            "name": id.name,
            "sub": id.sub,
            "idp": { "name": id.idp, "type": idp_type },
            "groups": id.groups,
            "amr": id.amr,
            "custom": id.custom,
            "iat": s.iat,
            "exp": s.expires_at,
        }),
    )
}
