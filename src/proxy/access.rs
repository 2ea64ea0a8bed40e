//! The access phase for app requests: route to an app, bypass, service
//! tokens, then a verified session checked against allow/block policies.
//! The result is a typed [`Verdict`]; turning denials into responses lives in
//! [`deny_reply`], checked in one fixed order. Fail closed: every error is a
//! denial.

use std::sync::Arc;

use pingora::http::RequestHeader;
use subtle::ConstantTimeEq;

use crate::metrics::metrics;
use crate::policy::eval::{deciding_index, Phase, RequestView, Subject};
use crate::policy::model::{App, Decision, PolicySet, ServiceToken};
use crate::session::cache::CachedSession;
use crate::session::token::{now_unix, sha256_hex, ServiceClaims, TokenKind};

use super::cookies;
use super::request::RequestInfo;
use super::respond::Reply;
use super::state::State;

// Request headers the access phase reads, as `HeaderName` constants: a
// lookup by `&str` would parse the name on every request.

/// Header a non-browser client may use instead of the cookie.
pub const TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static("cf-access-token");
/// Service-token id.
pub const CLIENT_ID_HEADER: http::HeaderName = http::HeaderName::from_static("cf-access-client-id");
/// Service-token secret.
pub const CLIENT_SECRET_HEADER: http::HeaderName =
    http::HeaderName::from_static("cf-access-client-secret");

/// Who was let through, and how.
#[derive(Debug, Clone)]
pub enum Permit {
    /// A `bypass` policy matched: forwarded without identity.
    Bypass,
    /// A valid service token admitted by a `service_auth` policy.
    Service {
        assertion: Arc<str>,
        /// The token's name (the access log's `service_token`).
        token: Arc<str>,
    },
    /// A user session admitted by an `allow` policy.
    User {
        /// Which of [`candidate_tokens`] carried the session: the token is
        /// re-read from the request when forwarding, so the hot path copies
        /// it only into the upstream header.
        candidate: usize,
        session: Arc<CachedSession>,
    },
}

/// Why a request may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No app for this host and path.
    NoApp,
    /// No usable session.
    Unauthenticated,
    /// Service-token headers present but invalid.
    BadServiceToken,
    /// A block policy matched, or no policy matched.
    Forbidden,
    /// Something failed inside the access phase.
    Internal,
    /// The store cannot be reached and the session is not (or no longer,
    /// past `outage_grace`) served from the cache: 503.
    Unavailable,
}

/// Who a denied request came from, as far as the access phase found out
/// (the access log's identity fields). A permit says it in [`Permit`].
#[derive(Debug, Clone, Default)]
pub enum Asker {
    /// No identity was established.
    #[default]
    Unknown,
    /// A valid service token (by name) that no `service_auth` policy admitted.
    Service(Arc<str>),
    /// A user with a valid session that no `allow` policy admitted.
    User(Arc<CachedSession>),
}

/// The access decision for one request. `policy` is the deciding policy's
/// index in `app.policies` (kept for the access log: the name is not
/// copied); a denial that no policy decided has none.
#[derive(Debug)]
pub enum Verdict {
    Permit {
        app: Arc<App>,
        permit: Permit,
        policy: usize,
    },
    Deny {
        app: Option<Arc<App>>,
        denial: Denial,
        policy: Option<usize>,
        asker: Asker,
    },
}

impl Verdict {
    fn deny(app: &Arc<App>, denial: Denial) -> Verdict {
        Verdict::forbid(app, denial, None, Asker::Unknown)
    }

    /// A denial of a known asker, by `policy` when one decided.
    fn forbid(app: &Arc<App>, denial: Denial, policy: Option<usize>, asker: Asker) -> Verdict {
        Verdict::Deny {
            app: Some(app.clone()),
            denial,
            policy,
            asker,
        }
    }
}

/// Decide for an app request (not a proxy-owned endpoint).
pub async fn decide(state: &State, info: &RequestInfo<'_>, req: &RequestHeader) -> Verdict {
    let set = state.policies.current();
    let Some(app) = set.router.route(&set.apps, info.host(), &info.target.path) else {
        return Verdict::Deny {
            app: None,
            denial: Denial::NoApp,
            policy: None,
            asker: Asker::Unknown,
        };
    };
    let app = app.clone();
    let view = RequestView {
        client_ip: info.client_ip,
    };

    if let Some(policy) = deciding_index(&app, Phase::Bypass, &Subject::Anonymous, &view) {
        return Verdict::Permit {
            app,
            permit: Permit::Bypass,
            policy,
        };
    }

    let id = req.headers.get(&CLIENT_ID_HEADER);
    let secret = req.headers.get(&CLIENT_SECRET_HEADER);
    if id.is_some() || secret.is_some() {
        let token = match (
            id.and_then(|v| v.to_str().ok()),
            secret.and_then(|v| v.to_str().ok()),
        ) {
            (Some(id), Some(secret)) => find_service_token(&set, id, secret),
            _ => None,
        };
        let Some(token) = token else {
            return Verdict::deny(&app, Denial::BadServiceToken);
        };
        let asker = || Asker::Service(token.name.clone());
        return match deciding_index(&app, Phase::Service, &Subject::Service(token), &view) {
            Some(i) if app.policies[i].decision == Decision::ServiceAuth => {
                match service_assertion(state, &app, token) {
                    Ok(assertion) => Verdict::Permit {
                        permit: Permit::Service {
                            assertion,
                            token: token.name.clone(),
                        },
                        app,
                        policy: i,
                    },
                    Err(()) => Verdict::forbid(&app, Denial::Internal, Some(i), asker()),
                }
            }
            i => Verdict::forbid(&app, Denial::Forbidden, i, asker()),
        };
    }

    let (candidate, session) = match find_session(state, &app, req).await {
        Ok(Some(found)) => found,
        Ok(None) => return Verdict::deny(&app, Denial::Unauthenticated),
        Err(denial) => return Verdict::deny(&app, denial),
    };
    match deciding_index(
        &app,
        Phase::Identity,
        &Subject::User(&session.identity),
        &view,
    ) {
        Some(i) if app.policies[i].decision == Decision::Allow => Verdict::Permit {
            app,
            permit: Permit::User { candidate, session },
            policy: i,
        },
        // A block policy, or none matched.
        i => Verdict::forbid(&app, Denial::Forbidden, i, Asker::User(session)),
    }
}

/// Find a service token by client id and check the secret's SHA-256 in
/// constant time.
pub fn find_service_token<'a>(
    set: &'a PolicySet,
    client_id: &str,
    secret: &str,
) -> Option<&'a ServiceToken> {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    let mut found = None;
    for t in &set.service_tokens {
        let id_ok = t.client_id.as_bytes().ct_eq(client_id.as_bytes());
        let secret_ok = t.client_secret_sha256.ct_eq(&digest);
        if bool::from(id_ok & secret_ok) {
            found = Some(t);
        }
    }
    found
}

/// The proxy-signed assertion forwarded for a service token, cached per
/// token and app until a minute before it expires.
fn service_assertion(state: &State, app: &App, token: &ServiceToken) -> Result<Arc<str>, ()> {
    let key = format!("{}\n{}", token.client_id, app.aud);
    let now = now_unix();
    if let Some((t, exp)) = state.service_assertions.get(&key) {
        if exp - 60 > now {
            return Ok(t);
        }
    }
    let exp = now + 600;
    let claims = ServiceClaims {
        iss: state.auth_origin.clone(),
        aud: vec![app.aud.clone()],
        sub: String::new(),
        common_name: token.client_id.clone(),
        iat: now,
        nbf: now,
        exp,
        typ: TokenKind::App,
    };
    let signed: Arc<str> = state
        .keys
        .current()
        .mint_service(&claims)
        .map_err(|e| tracing::warn!(error = %e, "Service assertion signing failed"))?
        .into();
    state.service_assertions.insert(key, (signed.clone(), exp));
    Ok(signed)
}

/// Most session tokens looked at per request (a browser sends one cookie per
/// app path on the host; nested app paths make a few).
const MAX_CANDIDATES: usize = 4;

/// Candidate session tokens: every cookie of the configured name, then the
/// `cf-access-token` header. Collected up front (no allocation) so that no
/// borrowing iterator lives across an `.await`.
pub fn candidate_tokens<'a>(
    state: &'a State,
    req: &'a RequestHeader,
) -> [Option<&'a str>; MAX_CANDIDATES] {
    let mut out = [None; MAX_CANDIDATES];
    let header = req.headers.get(&TOKEN_HEADER).and_then(|v| v.to_str().ok());
    let all = cookies::values(req, &state.cfg.session.cookie_name).chain(header);
    for (slot, t) in out.iter_mut().zip(all) {
        *slot = Some(t);
    }
    out
}

/// The verified session for `app`, from the cache or verified and loaded
/// once. `Err` for internal failures and store outages, which deny: past
/// `outage_grace` without contact with the store, not even a cached
/// session is served.
pub(crate) async fn find_session(
    state: &State,
    app: &App,
    req: &RequestHeader,
) -> Result<Option<(usize, Arc<CachedSession>)>, Denial> {
    if state.store_health.is_past_grace() {
        return Err(Denial::Unavailable);
    }
    let mut failed = None;
    for (i, token) in candidate_tokens(state, req).into_iter().enumerate() {
        let Some(token) = token else { break };
        if token.is_empty() || token.len() > 8192 {
            continue;
        }
        if let Some(hit) = state.cache.get(token).await {
            metrics().session_cache_hit.inc();
            if hit.aud_matches(&app.aud) {
                return Ok(Some((i, hit)));
            }
            continue;
        }
        metrics().session_cache_miss.inc();
        match load_session(state, app, token).await {
            Ok(Some(s)) => return Ok(Some((i, s))),
            Ok(None) => {}
            Err(denial) => failed = Some(denial),
        }
    }
    match failed {
        Some(denial) => Err(denial),
        None => Ok(None),
    }
}

/// Verify a token and load its session record, once per token (concurrent
/// misses coalesce in the cache), then check that it is meant for `app`.
async fn load_session(
    state: &State,
    app: &App,
    token: &str,
) -> Result<Option<Arc<CachedSession>>, Denial> {
    let loaded = state
        .cache
        .get_or_load(token, || verify_and_load(state, token))
        .await;
    match loaded {
        Ok(s) if s.aud_matches(&app.aud) => Ok(Some(s)),
        Ok(_) => {
            tracing::debug!(app.name = %app.name, "Session token refused: issued for another app");
            Ok(None)
        }
        Err(e) => match &*e {
            LoadError::Gone => Ok(None),
            LoadError::Refused(why) => {
                tracing::debug!(app.name = %app.name, error = %why, "Session token refused");
                Ok(None)
            }
            LoadError::Store(err) if err.is_unavailable() => {
                state.store_health.contact_failed();
                Err(Denial::Unavailable)
            }
            LoadError::Store(err) => {
                tracing::warn!(error = %err, "Session store read failed");
                Err(Denial::Internal)
            }
        },
    }
}

/// The cache loader: verify the token, then read its session record. The
/// store is touched only for a token that verified; an SQLite file store
/// reads it in place, on this thread (a few microseconds, where a hop to
/// sqlx's worker thread and back costs about 90). `aud` is checked
/// by the caller: one verified token serves every request that presents it.
async fn verify_and_load(state: &State, token: &str) -> Result<Arc<CachedSession>, LoadError> {
    let claims = state
        .keys
        .current()
        .verify_app(token, &state.auth_origin, None)
        .map_err(LoadError::Refused)?;
    // While the store is unreachable a miss fails at once (503) instead of
    // waiting for a connection.
    if state.store_health.is_down() {
        return Err(LoadError::Store(crate::store::StoreError::Unavailable));
    }
    let rec = state
        .store
        .get_session(&claims.sid)
        .await
        .map_err(LoadError::Store)?
        .ok_or(LoadError::Gone)?;
    if rec.revoked || rec.expires_at <= now_unix() {
        return Err(LoadError::Gone);
    }
    let identity = state
        .policy_identity(rec.identity)
        .await
        .map_err(LoadError::Store)?;
    let expires_at = claims.exp.min(rec.expires_at);
    Ok(Arc::new(CachedSession::new(
        claims,
        Arc::new(identity),
        expires_at,
    )))
}

/// Why a verified token did not yield a session.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("session revoked, expired or unknown")]
    Gone,
    #[error("token refused: {0}")]
    Refused(crate::session::keys::TokenError),
    #[error(transparent)]
    Store(crate::store::StoreError),
}

impl From<crate::session::cache::Unusable> for LoadError {
    fn from(_: crate::session::cache::Unusable) -> LoadError {
        LoadError::Gone
    }
}

/// The one place denials become responses, in a fixed order.
pub fn deny_reply(
    state: &State,
    info: &RequestInfo<'_>,
    app: Option<&App>,
    denial: Denial,
) -> Reply {
    match denial {
        Denial::NoApp => Reply::error(
            info.browser,
            404,
            "not_found",
            "Not found",
            "There is no application at this address.",
        ),
        Denial::Unauthenticated if info.browser => {
            let (nonce, hash) = login_nonce();
            let original = format!(
                "{}://{}{}",
                state.scheme(),
                info.authority,
                info.target.to_uri_string()
            );
            let location = format!(
                "{}{}/login?redirect_url={}&csrf={}",
                state.auth_origin,
                state.prefix(),
                urlencode(&original),
                hash
            );
            let _ = app;
            Reply::redirect(&location).with_cookie(cookies::set_cookie(
                &state.nonce_cookie,
                &nonce,
                state.prefix(),
                600,
                state.secure_cookies,
            ))
        }
        // Browsers never get here without a session (they are sent to
        // login); an invalid service token is answered by `Accept`.
        Denial::Unauthenticated => Reply::json_error(401, "unauthorized"),
        Denial::BadServiceToken => Reply::error(
            info.browser,
            401,
            "unauthorized",
            "Access denied",
            "The service token was not accepted.",
        ),
        Denial::Forbidden => Reply::error(
            info.browser,
            403,
            "forbidden",
            "Access denied",
            "You do not have access to this application.",
        ),
        Denial::Internal => Reply::error(
            info.browser,
            500,
            "internal_error",
            "Something went wrong",
            "The request could not be checked. Try again later.",
        ),
        Denial::Unavailable => unavailable(info.browser),
    }
}

/// 503 while the store cannot be reached (fleet mode): a page for a
/// browser, `{"error":"unavailable"}` otherwise.
pub fn unavailable(browser: bool) -> Reply {
    Reply::error(
        browser,
        503,
        "unavailable",
        "Temporarily unavailable",
        "The service cannot reach its database. Try again in a moment.",
    )
    .with_header("retry-after", "5".into())
}

/// A fresh login nonce and its hash (for the nonce cookie and the state).
pub fn login_nonce() -> (String, String) {
    let nonce = crate::session::token::random_token(24);
    let hash = sha256_hex(&nonce);
    (nonce, hash)
}

/// Percent-encode a query parameter value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Label for `portcullis_requests_total{decision}`.
pub fn denial_label(d: Denial) -> &'static str {
    match d {
        Denial::NoApp => "no_app",
        Denial::Unauthenticated => "unauthenticated",
        Denial::BadServiceToken => "unauthenticated",
        Denial::Forbidden => "forbidden",
        Denial::Internal => "error",
        Denial::Unavailable => "unavailable",
    }
}
