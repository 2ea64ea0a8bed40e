//! `/logout`: revoke the whole session (`sid`) server-side — the auth-domain
//! session and every app token minted from it — and clear this host's
//! cookies. A cross-site GET gets a confirmation page with a POST button
//! instead (logout CSRF). A browser whose app cookies did not reach an app
//! host's `/logout` (they are scoped to the app's path) is sent on to the
//! auth domain's, which finds the session by its `_sso` cookie.

use pingora::http::RequestHeader;

use crate::metrics::metrics;
use crate::proxy::cookies;
use crate::proxy::request::RequestInfo;
use crate::proxy::respond::{html_escape, Reply};
use crate::proxy::state::State;
use crate::session::token::SessionClaims;

use super::apps_on_host;

pub async fn logout(
    state: &State,
    info: &RequestInfo<'_>,
    req: &RequestHeader,
    post: bool,
) -> Reply {
    let cross_site = req
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if !post && cross_site {
        let action = format!("{}/logout", state.prefix());
        let form = format!(
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
            html_escape(&action)
        );
        return Reply::page_with(200, "Sign out?", "Do you want to sign out?", &form);
    }

    let apps = apps_on_host(state, info.host());
    // The sessions found, with their claims (for the access log).
    let mut sids: Vec<SessionClaims> = Vec::new();
    for token in cookies::values(req, &state.cfg.session.cookie_name) {
        for app in &apps {
            let verified =
                state
                    .keys
                    .current()
                    .verify_app(token, &state.auth_origin, Some(&app.aud));
            if let Ok(c) = verified {
                sids.push(c);
                break;
            }
        }
    }
    let on_auth = info.host() == state.auth_host;
    if on_auth {
        for token in cookies::values(req, &state.sso_cookie) {
            let verified =
                state
                    .keys
                    .current()
                    .verify_sso(token, &state.auth_origin, &state.sso_aud);
            if let Ok(c) = verified {
                sids.push(c);
            }
        }
    }
    sids.sort_by(|a, b| a.sid.cmp(&b.sid));
    sids.dedup_by(|a, b| a.sid == b.sid);
    for claims in &sids {
        let sid = &claims.sid;
        state.cache.revoke(sid);
        match state.store.revoke_session(sid).await {
            Ok(true) => {
                let reason = crate::metrics::REVOKED_BY_LOGOUT;
                metrics()
                    .sessions_revoked_total
                    .with_label_values(&[reason])
                    .inc();
                let log = &state.access_log;
                let email = Some(claims.email.as_str()).filter(|e| !e.is_empty());
                log.logout(&claims.idp, &claims.sub, email);
                log.revocation(reason, &claims.idp, &claims.sub, 1);
            }
            Ok(false) => {}
            Err(e) if e.is_unavailable() => {
                state.store_health.contact_failed();
                return crate::proxy::access::unavailable(info.browser);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Session revocation failed");
                return Reply::error(
                    info.browser,
                    500,
                    "internal_error",
                    "Something went wrong",
                    "Sign-out could not be completed. Try again.",
                );
            }
        }
    }
    // A browser: a page GET, or the confirmation form's POST.
    let browser = info.browser || (post && crate::proxy::request::accepts_html(req));
    let mut reply = if !on_auth && sids.is_empty() && browser {
        // The app cookie is scoped to its app's path, so on a host whose
        // apps live under a path the browser sent none here. The session
        // is still known on the auth domain (`_sso`): continue there, so
        // the whole session is revoked as DESIGN asks. The target is fixed;
        // nothing of the request goes into it.
        Reply::redirect(&format!("{}{}/logout", state.auth_origin, state.prefix()))
    } else if info.browser || post {
        Reply::page(200, "Signed out", "You have been signed out.")
    } else {
        Reply::json(200, &serde_json::json!({ "logged_out": true }))
    };
    let mut paths: Vec<&str> = apps.iter().map(|a| a.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    for p in paths {
        reply = reply.with_cookie(cookies::set_cookie(
            &state.cfg.session.cookie_name,
            "",
            p,
            0,
            state.secure_cookies,
        ));
    }
    if on_auth {
        reply = reply.with_cookie(cookies::set_cookie(
            &state.sso_cookie,
            "",
            state.prefix(),
            0,
            state.secure_cookies,
        ));
    }
    reply
}
