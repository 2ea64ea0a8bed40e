//! The dev IdP's HTTP side: shared state, the accept loop, routing and one
//! handler per endpoint (see the table in `dev.rs`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use url::Url;

use super::keys::{self, SigningKey};
use super::{DevIdpOptions, DevUser, Tamper};

/// Largest request body accepted (forms are tiny).
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// ID and access token lifetime.
const TOKEN_TTL: u64 = 3600;
/// Okta puts at most this many groups in the groups claim.
const MAX_GROUPS_IN_TOKEN: usize = 100;
/// Default and maximum page size of the groups API.
const GROUPS_PAGE_MAX: usize = 200;

type Body = Full<Bytes>;

struct UserEntry {
    user: DevUser,
    active: bool,
}

/// A code handed out by `/v1/login`, redeemable once at `/v1/token`.
struct CodeGrant {
    issuer: String,
    redirect_uri: String,
    user_id: String,
    nonce: Option<String>,
    scope: String,
    code_challenge: Option<String>,
    auth_time: u64,
    expires: Instant,
}

struct AccessGrant {
    user_id: String,
    scope: String,
    expires: Instant,
}

/// Everything the handlers share. Knobs are plain atomics and locks, cheap
/// to flip from a test.
pub(super) struct State {
    pub base: String,
    auth_server_id: String,
    pub client_id: String,
    pub client_secret: String,
    redirect_uris: Vec<String>,
    api_token: Option<String>,
    users: RwLock<Vec<UserEntry>>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    access_tokens: Mutex<HashMap<String, AccessGrant>>,
    keys: [SigningKey; 2],
    active_key: AtomicUsize,
    publish_both: AtomicBool,
    offline: AtomicBool,
    /// ID tokens carry `sub` and the protocol claims only; scope claims
    /// come from UserInfo (node-oidc-provider's default).
    minimal_id_token: AtomicBool,
    tamper: Mutex<Option<Tamper>>,
    code_ttl: Mutex<Duration>,
    groups_api_requests: AtomicUsize,
    groups_page_max: AtomicUsize,
}

impl State {
    pub fn new(opts: DevIdpOptions, addr: SocketAddr) -> State {
        // An unspecified bind address is not something a client can dial.
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), addr.port())
        } else {
            addr
        };
        State {
            base: format!("http://{host}"),
            auth_server_id: opts.auth_server_id,
            client_id: opts.client_id,
            client_secret: opts.client_secret,
            redirect_uris: opts.redirect_uris,
            api_token: opts.api_token,
            users: RwLock::new(
                opts.users
                    .into_iter()
                    .map(|user| UserEntry { user, active: true })
                    .collect(),
            ),
            codes: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            keys: SigningKey::fixed(),
            active_key: AtomicUsize::new(0),
            publish_both: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            minimal_id_token: AtomicBool::new(false),
            tamper: Mutex::new(None),
            code_ttl: Mutex::new(Duration::from_secs(60)),
            groups_api_requests: AtomicUsize::new(0),
            groups_page_max: AtomicUsize::new(GROUPS_PAGE_MAX),
        }
    }

    pub fn issuer(&self) -> String {
        format!("{}/oauth2/{}", self.base, self.auth_server_id)
    }

    /// ID tokens with `sub` and protocol claims only (`true`), or with
    /// the scope claims too (`false`, the default).
    pub fn set_minimal_id_token(&self, minimal: bool) {
        self.minimal_id_token.store(minimal, Ordering::Relaxed);
    }

    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    pub fn rotate_key(&self) {
        let next = 1 - self.active_key.load(Ordering::SeqCst);
        self.active_key.store(next, Ordering::SeqCst);
        self.publish_both.store(true, Ordering::SeqCst);
    }

    pub fn retire_old_key(&self) {
        self.publish_both.store(false, Ordering::SeqCst);
    }

    fn active(&self) -> &SigningKey {
        &self.keys[self.active_key.load(Ordering::SeqCst)]
    }

    pub fn active_kid(&self) -> &'static str {
        self.active().kid
    }

    pub fn add_user(&self, user: DevUser) {
        let mut users = self.users.write();
        match users.iter_mut().find(|e| e.user.id == user.id) {
            Some(entry) => entry.user = user,
            None => users.push(UserEntry { user, active: true }),
        }
    }

    pub fn set_user_active(&self, id: &str, active: bool) -> bool {
        match self.users.write().iter_mut().find(|e| e.user.id == id) {
            Some(entry) => {
                entry.active = active;
                true
            }
            None => false,
        }
    }

    pub fn set_tamper(&self, tamper: Tamper) {
        *self.tamper.lock() = Some(tamper);
    }

    pub fn set_code_ttl(&self, ttl: Duration) {
        *self.code_ttl.lock() = ttl;
    }

    pub fn groups_api_requests(&self) -> usize {
        self.groups_api_requests.load(Ordering::SeqCst)
    }

    pub fn set_groups_page_max(&self, max: usize) {
        self.groups_page_max.store(max.max(1), Ordering::SeqCst);
    }

    /// The user with this id (or, as Okta allows in the API, this login),
    /// and whether it is active.
    fn user(&self, id_or_login: &str) -> Option<(DevUser, bool)> {
        self.users
            .read()
            .iter()
            .find(|e| e.user.id == id_or_login || e.user.email.eq_ignore_ascii_case(id_or_login))
            .map(|e| (e.user.clone(), e.active))
    }
}

/// Accept connections until the task is aborted; each connection is a task
/// in a `JoinSet`, so aborting the loop drops (and aborts) all of them.
pub(super) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "Dev IdP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "Dev IdP connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Which authorization server a path belongs to, and the rest of the path.
struct Server {
    issuer: String,
    /// Prefix of the `/v1/*` endpoints.
    endpoints: String,
}

enum Route<'a> {
    Oidc(Server, &'a str),
    Groups(String),
    NotFound,
}

fn route<'a>(state: &State, path: &'a str) -> Route<'a> {
    let org = || Server {
        issuer: state.base.clone(),
        endpoints: format!("{}/oauth2", state.base),
    };
    if path == "/.well-known/openid-configuration" {
        return Route::Oidc(org(), path);
    }
    if let Some(after) = path.strip_prefix("/oauth2") {
        if after.starts_with("/v1/") {
            return Route::Oidc(org(), after);
        }
        if let Some((id, _)) = after.strip_prefix('/').and_then(|r| r.split_once('/')) {
            if id == state.auth_server_id {
                let issuer = state.issuer();
                let server = Server {
                    endpoints: issuer.clone(),
                    issuer,
                };
                return Route::Oidc(server, &after[1 + id.len()..]);
            }
        }
        return Route::NotFound;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/users/") {
        if let Some(user) = rest.strip_suffix("/groups") {
            if !user.is_empty() && !user.contains('/') {
                let user = percent_encoding::percent_decode_str(user)
                    .decode_utf8_lossy()
                    .into_owned();
                return Route::Groups(user);
            }
        }
    }
    Route::NotFound
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    if state.offline.load(Ordering::SeqCst) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "dev idp is offline\n");
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match route(state, &path) {
        Route::Oidc(server, rest) => match (method, rest) {
            (Method::GET, "/.well-known/openid-configuration") => discovery(&server),
            (Method::GET, "/v1/keys") => jwks(state),
            (Method::GET, "/v1/authorize") => {
                authorize_page(state, &server, &query_pairs(req.uri().query()))
            }
            (Method::POST, "/v1/login") => match read_form(req).await {
                Ok(form) => login(state, &server, &form),
                Err(resp) => resp,
            },
            (Method::POST, "/v1/token") => {
                let auth = req.headers().get(header::AUTHORIZATION).cloned();
                match read_form(req).await {
                    Ok(form) => token(state, &server, auth.as_ref(), &form),
                    Err(resp) => resp,
                }
            }
            (Method::GET | Method::POST, "/v1/userinfo") => userinfo(state, req.headers()),
            (_, "/.well-known/openid-configuration" | "/v1/keys" | "/v1/authorize")
            | (_, "/v1/login" | "/v1/token") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        Route::Groups(user) if method == Method::GET => {
            groups_api(state, &user, req.uri().query(), req.headers())
        }
        Route::Groups(_) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn discovery(server: &Server) -> Response<Body> {
    let e = &server.endpoints;
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": server.issuer,
            "authorization_endpoint": format!("{e}/v1/authorize"),
            "token_endpoint": format!("{e}/v1/token"),
            "userinfo_endpoint": format!("{e}/v1/userinfo"),
            "jwks_uri": format!("{e}/v1/keys"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": [
                "iss", "ver", "sub", "aud", "iat", "exp", "jti", "auth_time", "amr", "idp",
                "nonce", "name", "preferred_username", "email", "email_verified", "groups"
            ],
            "code_challenge_methods_supported": ["S256"],
        }),
    )
}

fn jwks(state: &State) -> Response<Body> {
    let active = state.active_key.load(Ordering::SeqCst);
    let mut keys = vec![state.keys[active].jwk.clone()];
    if state.publish_both.load(Ordering::SeqCst) {
        keys.push(state.keys[1 - active].jwk.clone());
    }
    json_response(StatusCode::OK, &json!({ "keys": keys }))
}

/// Authorize parameters after the checks that must not redirect (client and
/// redirect URI) and those that do.
struct AuthorizeParams {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    code_challenge: Option<String>,
}

/// Either the checked params, or the response to send (an error page when
/// the client or redirect URI is wrong, a redirect with `error` otherwise).
fn check_authorize(
    state: &State,
    params: &HashMap<String, String>,
) -> Result<AuthorizeParams, Box<Response<Body>>> {
    let get = |k: &str| params.get(k).cloned();
    if get("client_id").as_deref() != Some(state.client_id.as_str()) {
        return Err(Box::new(page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>Unknown <code>client_id</code>.</p>",
        )));
    }
    let redirect_uri = match get("redirect_uri") {
        Some(r) if state.redirect_uris.contains(&r) => r,
        _ => {
            return Err(Box::new(page(
                StatusCode::BAD_REQUEST,
                "Error",
                "<p>The <code>redirect_uri</code> is not registered for this client.</p>",
            )))
        }
    };
    let client_state = get("state");
    let fail = |code: &str, description: &str| {
        Err(Box::new(redirect_with(
            &redirect_uri,
            &[
                ("error", code),
                ("error_description", description),
                ("state", client_state.as_deref().unwrap_or("")),
            ],
        )))
    };
    if get("response_type").as_deref() != Some("code") {
        return fail(
            "unsupported_response_type",
            "Only the code flow is supported.",
        );
    }
    let scope = get("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "The scope must include openid.");
    }
    if client_state.as_deref().unwrap_or("").is_empty() {
        return fail("invalid_request", "The state parameter is required.");
    }
    let code_challenge = get("code_challenge");
    if code_challenge.is_some() && get("code_challenge_method").as_deref() != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256.");
    }
    Ok(AuthorizeParams {
        redirect_uri,
        state: client_state,
        nonce: get("nonce"),
        scope,
        code_challenge,
    })
}

/// The OAuth parameters the login page carries over to `/v1/login`.
const CARRIED_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

fn authorize_page(
    state: &State,
    server: &Server,
    params: &Result<HashMap<String, String>, String>,
) -> Response<Body> {
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Error",
                &format!("<p>{}</p>", esc(e)),
            )
        }
    };
    if let Err(resp) = check_authorize(state, params) {
        return *resp;
    }
    let hidden: String = CARRIED_PARAMS
        .iter()
        .filter_map(|k| params.get(*k).map(|v| (k, v)))
        .map(|(k, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                esc(k),
                esc(v)
            )
        })
        .collect();
    let action = format!("{}/v1/login", server.endpoints);
    let mut rows = String::new();
    for entry in state.users.read().iter() {
        let u = &entry.user;
        let groups = if u.groups.len() > 5 {
            format!("{} groups", u.groups.len())
        } else {
            u.groups.join(", ")
        };
        rows.push_str(&format!(
            r#"<li><form method="post" action="{action}">{hidden}<input type="hidden" name="user" value="{id}"><button type="submit"{disabled}>{name}</button> <code>{email}</code>{unverified} &middot; {groups} &middot; amr: {amr}{inactive}</form></li>"#,
            action = esc(&action),
            id = esc(&u.id),
            name = esc(&u.name),
            email = esc(&u.email),
            unverified = if u.email_verified { "" } else { " (email not verified)" },
            groups = esc(&groups),
            amr = esc(&u.amr.join(" ")),
            disabled = if entry.active { "" } else { " disabled" },
            inactive = if entry.active { "" } else { " &middot; <em>deactivated</em>" },
        ));
    }
    page(
        StatusCode::OK,
        "Dev IdP sign-in",
        &format!(
            "<p>This is the portcullis <strong>development</strong> identity provider. \
             Choose a user to sign in as:</p><ul>{rows}</ul>"
        ),
    )
}

fn login(state: &State, server: &Server, form: &HashMap<String, String>) -> Response<Body> {
    let params = match check_authorize(state, form) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let client_state = params.state.clone().unwrap_or_default();
    let user_id = form.get("user").cloned().unwrap_or_default();
    match state.user(&user_id) {
        Some((user, true)) if user.id == user_id => {}
        _ => {
            return redirect_with(
                &params.redirect_uri,
                &[
                    ("error", "access_denied"),
                    (
                        "error_description",
                        "User is not assigned to the client application.",
                    ),
                    ("state", &client_state),
                ],
            )
        }
    }
    let code = random_token();
    let ttl = *state.code_ttl.lock();
    let now = Instant::now();
    let mut codes = state.codes.lock();
    codes.retain(|_, g| g.expires > now);
    codes.insert(
        code.clone(),
        CodeGrant {
            issuer: server.issuer.clone(),
            redirect_uri: params.redirect_uri.clone(),
            user_id,
            nonce: params.nonce,
            scope: params.scope,
            code_challenge: params.code_challenge,
            auth_time: unix_now(),
            expires: now + ttl,
        },
    );
    drop(codes);
    redirect_with(
        &params.redirect_uri,
        &[("code", &code), ("state", &client_state)],
    )
}

fn token(
    state: &State,
    server: &Server,
    authorization: Option<&HeaderValue>,
    form: &HashMap<String, String>,
) -> Response<Body> {
    // Client authentication: exactly one of basic or post.
    let basic = authorization.map(parse_basic);
    let posted = form
        .get("client_secret")
        .map(|s| (form.get("client_id").cloned(), s.clone()));
    let (client_id, secret) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Cannot supply multiple client credentials.",
            )
        }
        (Some(Some(pair)), None) => pair,
        (None, Some((Some(id), secret))) => (id, secret),
        _ => return invalid_client(),
    };
    let id_ok = client_id.as_bytes().ct_eq(state.client_id.as_bytes());
    let secret_ok = secret.as_bytes().ct_eq(state.client_secret.as_bytes());
    if !bool::from(id_ok & secret_ok) {
        return invalid_client();
    }
    if form
        .get("client_id")
        .is_some_and(|id| *id != state.client_id)
    {
        return invalid_client();
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    let invalid_grant = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let Some(code) = form.get("code") else {
        return invalid_grant("The authorization code is invalid or has expired.");
    };
    // Single use: the code is gone whatever happens next.
    let grant = state.codes.lock().remove(code);
    let Some(grant) = grant.filter(|g| g.expires > Instant::now() && g.issuer == server.issuer)
    else {
        return invalid_grant("The authorization code is invalid or has expired.");
    };
    if form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid_grant(
            "The 'redirect_uri' does not match the redirection URI used in the authorization request.",
        );
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (None, None) => {}
        (Some(challenge), Some(verifier)) => {
            let valid_shape = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if !valid_shape || computed != *challenge {
                return invalid_grant("PKCE verification failed.");
            }
        }
        (Some(_), None) => return invalid_grant("PKCE verification failed."),
        (None, Some(_)) => return invalid_grant("PKCE verification failed."),
    }
    let user = match state.user(&grant.user_id) {
        Some((user, true)) => user,
        _ => return invalid_grant("The user is not active."),
    };
    let access_token = random_token();
    {
        let now = Instant::now();
        let mut tokens = state.access_tokens.lock();
        tokens.retain(|_, g| g.expires > now);
        tokens.insert(
            access_token.clone(),
            AccessGrant {
                user_id: user.id.clone(),
                scope: grant.scope.clone(),
                expires: now + Duration::from_secs(TOKEN_TTL),
            },
        );
    }
    let id_token = id_token(state, &grant, &user);
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
            "access_token": access_token,
            "scope": grant.scope,
            "id_token": id_token,
        }),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The claims a user's tokens carry for `scope` (without the protocol ones).
fn user_claims(user: &DevUser, scope: &str) -> Map<String, Value> {
    let has = |s: &str| scope.split(' ').any(|x| x == s);
    let mut c = Map::new();
    c.insert("sub".into(), json!(user.id));
    if has("email") {
        c.insert("email".into(), json!(user.email));
        c.insert("email_verified".into(), json!(user.email_verified));
    }
    if has("profile") {
        c.insert("name".into(), json!(user.name));
        c.insert("preferred_username".into(), json!(user.email));
    }
    if has("groups") {
        let groups: Vec<&String> = user.groups.iter().take(MAX_GROUPS_IN_TOKEN).collect();
        c.insert("groups".into(), json!(groups));
    }
    c
}

fn id_token(state: &State, grant: &CodeGrant, user: &DevUser) -> String {
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("ver".into(), json!(1));
    claims.insert("jti".into(), json!(format!("ID.{}", random_token())));
    claims.insert("iss".into(), json!(grant.issuer));
    claims.insert("aud".into(), json!(state.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + TOKEN_TTL));
    claims.insert("auth_time".into(), json!(grant.auth_time));
    claims.insert("idp".into(), json!("00odevidp"));
    claims.insert("amr".into(), json!(user.amr));
    if let Some(nonce) = &grant.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if state.minimal_id_token.load(Ordering::Relaxed) {
        claims.insert("sub".into(), json!(user.id));
    } else {
        claims.extend(user_claims(user, &grant.scope));
        claims.extend(user.custom.clone());
    }

    let tamper = state.tamper.lock().take();
    match tamper {
        Some(Tamper::WrongAudience) => {
            claims.insert("aud".into(), json!("some-other-client"));
        }
        Some(Tamper::WrongIssuer) => {
            claims.insert("iss".into(), json!(format!("{}/oauth2/evil", state.base)));
        }
        Some(Tamper::Expired) => {
            claims.insert("iat".into(), json!(now - 2 * TOKEN_TTL));
            claims.insert("exp".into(), json!(now - TOKEN_TTL));
        }
        Some(Tamper::WrongNonce) => {
            claims.insert("nonce".into(), json!(format!("not-{}", random_token())));
        }
        _ => {}
    }
    let claims = Value::Object(claims);
    let key = state.active();
    match tamper {
        Some(Tamper::BadSignature) => keys::corrupt_signature(&key.sign(&claims, true)),
        Some(Tamper::NoneAlg) => keys::unsigned(&claims, key.kid),
        Some(Tamper::Hs256ClientSecret) => keys::hs256(&claims, key.kid, &state.client_secret),
        Some(Tamper::NoKid) => key.sign(&claims, false),
        _ => key.sign(&claims, true),
    }
}

fn userinfo(state: &State, headers: &http::HeaderMap) -> Response<Body> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let grant = token.and_then(|t| {
        let tokens = state.access_tokens.lock();
        tokens
            .get(t)
            .filter(|g| g.expires > Instant::now())
            .map(|g| (g.user_id.clone(), g.scope.clone()))
    });
    let Some((user_id, scope)) = grant else {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is invalid.",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        return resp;
    };
    match state.user(&user_id) {
        Some((user, true)) => {
            let mut claims = user_claims(&user, &scope);
            claims.extend(user.custom.clone());
            json_response(StatusCode::OK, &Value::Object(claims))
        }
        _ => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The user is not active.",
        ),
    }
}

/// Okta group id for a group name: stable, Okta-shaped (`00g…`).
fn group_id(name: &str) -> String {
    format!("00g{}", &hex::encode(Sha256::digest(name.as_bytes()))[..17])
}

fn groups_api(
    state: &State,
    user_id: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Response<Body> {
    state.groups_api_requests.fetch_add(1, Ordering::SeqCst);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("SSWS "));
    let authorized = match (&state.api_token, presented) {
        (Some(expected), Some(got)) => bool::from(expected.as_bytes().ct_eq(got.as_bytes())),
        _ => false,
    };
    if !authorized {
        return okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        );
    }
    let params = match query_pairs(query) {
        Ok(p) => p,
        Err(e) => return okta_error(StatusCode::BAD_REQUEST, "E0000001", &e),
    };
    let page_max = state.groups_page_max.load(Ordering::SeqCst);
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => page_max,
        Some(Ok(n)) if n >= 1 => n.min(page_max),
        Some(_) => {
            return okta_error(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: limit",
            )
        }
    };
    let Some((user, _)) = state.user(user_id) else {
        return okta_error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {user_id} (User)"),
        );
    };
    let ids: Vec<String> = user.groups.iter().map(|g| group_id(g)).collect();
    let start = match params.get("after") {
        None => 0,
        Some(after) => match ids.iter().position(|id| id == after) {
            Some(i) => i + 1,
            None => {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: after",
                )
            }
        },
    };
    let end = (start + limit).min(ids.len());
    let page: Vec<Value> = user.groups[start..end]
        .iter()
        .zip(&ids[start..end])
        .map(|(name, id)| {
            json!({
                "id": id,
                "created": "2024-01-01T00:00:00.000Z",
                "lastUpdated": "2024-01-01T00:00:00.000Z",
                "lastMembershipUpdated": "2024-01-01T00:00:00.000Z",
                "objectClass": ["okta:user_group"],
                "type": "OKTA_GROUP",
                "profile": { "name": name, "description": null },
                "_links": {},
            })
        })
        .collect();
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
    let path = format!(
        "{}/api/v1/users/{}/groups",
        state.base,
        percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC)
    );
    let self_link = match params.get("after") {
        Some(after) => format!("<{path}?limit={limit}&after={after}>; rel=\"self\""),
        None => format!("<{path}?limit={limit}>; rel=\"self\""),
    };
    append_header(&mut resp, header::LINK, &self_link);
    if end < ids.len() {
        let next = format!(
            "<{path}?limit={limit}&after={}>; rel=\"next\"",
            ids[end - 1]
        );
        append_header(&mut resp, header::LINK, &next);
    }
    resp
}

// ---- helpers ---------------------------------------------------------------

/// Query parameters; a repeated parameter is an error (RFC 6749 §3.1).
fn query_pairs(query: Option<&str>) -> Result<HashMap<String, String>, String> {
    parse_pairs(query.unwrap_or("").as_bytes())
}

fn parse_pairs(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k} repeated"));
        }
    }
    Ok(out)
}

async fn read_form(req: Request<Incoming>) -> Result<HashMap<String, String>, Response<Body>> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Expected a form-encoded body.",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Unreadable body.",
            )
        })?
        .to_bytes();
    parse_pairs(&body).map_err(|e| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e))
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))`, as
/// RFC 6749 §2.3.1 says and openidconnect sends. `None` when malformed.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let b64 = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn append_header(resp: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(name, v);
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    response(status, "application/json", body.to_string())
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "error": code, "error_description": description }),
    )
}

fn invalid_client() -> Response<Body> {
    let mut resp = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed. Either the client or the client credentials are invalid.",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    resp
}

fn okta_error(status: StatusCode, code: &str, summary: &str) -> Response<Body> {
    json_response(
        status,
        &json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": format!("oae{}", &random_token()[..20]),
            "errorCauses": [],
        }),
    )
}

/// 302 to `base` with `params` appended to its query.
fn redirect_with(base: &str, params: &[(&str, &str)]) -> Response<Body> {
    let location = match Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "invalid redirect_uri\n"),
    };
    let mut resp = response(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "invalid redirect_uri\n"),
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:48rem;margin:2rem auto}}\
         li{{margin:.5rem 0}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    response(status, "text/html; charset=utf-8", html)
}

/// HTML-escape text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
