//! The dev IdP: a small OpenID provider with Okta's shapes, for
//! `portcullis demo`, the integration tests and the benches. Never enabled by
//! `run`. It signs with fixed, public, DEV-ONLY RSA keys (`dev/keys.rs`).
//!
//! It runs as tokio tasks in the caller's runtime, on hyper 1, and serves:
//!
//! | path | what |
//! |---|---|
//! | `/oauth2/{id}/.well-known/openid-configuration` | discovery of the custom authorization server `{id}` (issuer `…/oauth2/{id}`) |
//! | `/.well-known/openid-configuration` | discovery of the org server (issuer = the base URL, endpoints under `/oauth2/v1/`) |
//! | `…/v1/authorize` | checks `client_id` and `redirect_uri` (exact), shows a page with one button per user |
//! | `…/v1/login` | POST from that page: 302 to `redirect_uri?code=…&state=…` |
//! | `…/v1/token` | authorization code grant, `client_secret_basic` or `_post`, PKCE S256 |
//! | `…/v1/keys` | JWKS |
//! | `…/v1/userinfo` | claims for a bearer access token |
//! | `/api/v1/users/{id}/groups` | Okta's groups API: `SSWS` token, `limit` + `after`, `Link: <…>; rel="next"` |
//!
//! # Logging in without a browser
//!
//! The login page only re-posts the authorize parameters, so a test can skip
//! it: take the query of the authorize URL, add `user=<user id>`, and POST it
//! form-encoded to `{issuer}/v1/login` ([`login_form`] builds both). Fields:
//! `user`, `client_id`, `redirect_uri`, `response_type` (`code`), `scope`
//! (must contain `openid`), `state`, `nonce` (optional), `code_challenge` and
//! `code_challenge_method` (`S256`, optional). The answer is a 302 whose
//! `Location` is `redirect_uri?code=…&state=…`, or
//! `redirect_uri?error=access_denied&…` for an unknown or deactivated user.
//!
//! # ID tokens
//!
//! RS256 with `kid`; claims `iss`, `aud` (the client id), `sub` (user id),
//! `iat`, `exp` (1 h), `auth_time`, `nonce` (when sent), `amr`, `idp`, `ver`,
//! `jti`; with scope `email`: `email`, `email_verified`; with `profile`:
//! `name`, `preferred_username`; with `groups`: `groups` (at most 100, as
//! Okta's groups claim; the groups API returns all). Each of the user's
//! custom claims is added last and may override any of these, so a test can
//! craft a claim of the wrong type.
//!
//! Token errors use the OAuth error JSON Okta sends
//! (`{"error":"invalid_grant","error_description":…}`); API errors use Okta's
//! `{"errorCode":"E0000011","errorSummary":…}`.

mod keys;
mod server;
#[cfg(test)]
mod tests;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use users::DevUser;

/// Default client id of [`DevIdpOptions::new`].
pub const DEV_CLIENT_ID: &str = "portcullis-dev";
/// Default client secret of [`DevIdpOptions::new`]. Dev only.
pub const DEV_CLIENT_SECRET: &str = "dev-client-secret";
/// Default Okta API token of [`DevIdpOptions::new`]. Dev only.
pub const DEV_API_TOKEN: &str = "dev-api-token";

/// How the dev IdP is set up.
#[derive(Debug, Clone)]
pub struct DevIdpOptions {
    /// Address to bind; `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Custom authorization server id (`default`): issuer `…/oauth2/<id>`.
    pub auth_server_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs, compared exactly.
    pub redirect_uris: Vec<String>,
    pub users: Vec<DevUser>,
    /// Token for the groups API (`Authorization: SSWS <token>`); `None`
    /// answers 401 to every API call.
    pub api_token: Option<String>,
}

impl DevIdpOptions {
    /// Demo users, authorization server `default`, [`DEV_CLIENT_ID`],
    /// [`DEV_CLIENT_SECRET`] and [`DEV_API_TOKEN`].
    pub fn new(bind: SocketAddr, redirect_uris: Vec<String>) -> DevIdpOptions {
        DevIdpOptions {
            bind,
            auth_server_id: "default".into(),
            client_id: DEV_CLIENT_ID.into(),
            client_secret: DEV_CLIENT_SECRET.into(),
            redirect_uris,
            users: DevUser::demo_users(),
            api_token: Some(DEV_API_TOKEN.into()),
        }
    }
}

/// A way to spoil the next ID token, for tests of the relying party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` (and `iat`) in the past.
    Expired,
    /// A bit of the RS256 signature flipped.
    BadSignature,
    /// `nonce` differs from the one sent.
    WrongNonce,
    /// `alg: none`, no signature.
    NoneAlg,
    /// HS256 keyed with the client secret (algorithm confusion).
    Hs256ClientSecret,
    /// Correctly signed, but without `kid` in the header.
    NoKid,
}

/// A running dev IdP. Dropping it (or [`DevIdp::shutdown`]) stops the
/// listener and every open connection.
pub struct DevIdp {
    addr: SocketAddr,
    state: Arc<server::State>,
    task: JoinHandle<()>,
}

/// Start the dev IdP on `opts.bind` in the current tokio runtime.
pub async fn start(opts: DevIdpOptions) -> std::io::Result<DevIdp> {
    let listener = TcpListener::bind(opts.bind).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(server::State::new(opts, addr));
    let task = tokio::spawn(server::serve(listener, state.clone()));
    tracing::info!(idp.addr = %addr, idp.issuer = %state.issuer(), "Dev IdP started");
    Ok(DevIdp { addr, state, task })
}

impl DevIdp {
    /// The bound address (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Issuer of the custom authorization server:
    /// `http://127.0.0.1:PORT/oauth2/<auth_server_id>`.
    pub fn issuer(&self) -> String {
        self.state.issuer()
    }

    /// The Okta org URL (`http://127.0.0.1:PORT`): the org authorization
    /// server's issuer and the base of the groups API.
    pub fn okta_account(&self) -> String {
        self.state.base.clone()
    }

    pub fn client_id(&self) -> &str {
        &self.state.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.state.client_secret
    }

    /// Stop serving. Equivalent to dropping the handle.
    pub fn shutdown(self) {}

    /// While offline every endpoint answers 503.
    pub fn set_offline(&self, offline: bool) {
        self.state.set_offline(offline);
    }

    /// Issue ID tokens with `sub` and the protocol claims only, leaving
    /// email, groups and the rest to UserInfo, as node-oidc-provider does
    /// by default for the code flow (OIDC Core 5.4).
    pub fn set_minimal_id_token(&self, minimal: bool) {
        self.state.set_minimal_id_token(minimal);
    }

    /// Sign with the other key from now on and publish both keys (new one
    /// first), as Okta does during a rotation.
    pub fn rotate_key(&self) {
        self.state.rotate_key();
    }

    /// Stop publishing the key that is not signing (end of a rotation).
    pub fn retire_old_key(&self) {
        self.state.retire_old_key();
    }

    /// `kid` of the key currently signing ID tokens.
    pub fn active_kid(&self) -> &'static str {
        self.state.active_kid()
    }

    /// Add a user, replacing one with the same id.
    pub fn add_user(&self, user: DevUser) {
        self.state.add_user(user);
    }

    /// Deactivate or reactivate a user: a deactivated user cannot log in or
    /// redeem a code. Returns false when there is no such user.
    pub fn set_user_active(&self, id: &str, active: bool) -> bool {
        self.state.set_user_active(id, active)
    }

    /// Spoil the next ID token issued (once).
    pub fn set_next_id_token_tamper(&self, tamper: Tamper) {
        self.state.set_tamper(tamper);
    }

    /// How long an authorization code stays redeemable (default 60 s).
    pub fn set_code_ttl(&self, ttl: Duration) {
        self.state.set_code_ttl(ttl);
    }

    /// Number of requests served so far to the groups API (for tests).
    pub fn groups_api_requests(&self) -> usize {
        self.state.groups_api_requests()
    }

    /// Largest page the groups API returns (default 200, Okta's maximum),
    /// whatever `limit` asks for: a smaller one makes a client follow
    /// `Link: …; rel="next"` through several pages.
    pub fn set_groups_page_max(&self, max: usize) {
        self.state.set_groups_page_max(max);
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks (a JoinSet): aborting it
        // closes them too.
        self.task.abort();
    }
}

/// The login request for `user_id` that the login page would send for
/// `authorize_url`: the URL to POST to (`…/v1/login`, next to
/// `…/v1/authorize`) and the form (the authorize query plus `user`).
pub fn login_form(
    authorize_url: &str,
    user_id: &str,
) -> Result<(String, Vec<(String, String)>), url::ParseError> {
    let mut url = url::Url::parse(authorize_url)?;
    let mut form: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "user")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("user".into(), user_id.into()));
    let path = url.path();
    let login_path = match path.strip_suffix("/authorize") {
        Some(prefix) => format!("{prefix}/login"),
        None => format!("{}/login", path.trim_end_matches('/')),
    };
    url.set_path(&login_path);
    url.set_query(None);
    Ok((url.to_string(), form))
}
