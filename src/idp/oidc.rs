//! The OpenID Connect client used at login, one [`Provider`] per
//! `identity_providers` entry (Okta or any OpenID provider), on
//! openidconnect 4.1.
//!
//! Discovery (metadata + JWKS) happens off the request path
//! ([`Provider::spawn_refresh`]); logins use the last good copy, so an IdP
//! outage after start-up does not make the proxy unready.
//!
//! Reachability: every contact with the IdP's OIDC endpoints (discovery,
//! token exchange) leaves a verdict. Before a browser is sent to the IdP,
//! [`Provider::ensure_reachable`] trusts a verdict younger than 5 s (1 s when
//! it was a failure) and otherwise re-runs discovery, once for all logins
//! waiting: an unreachable IdP gets the user a 502 page from the proxy
//! instead of a dead end at the IdP, logins recover by themselves when it is
//! back, and metadata and JWKS are refreshed at most every 5 s under login
//! traffic, never on the session-cached request path.
//!
//! ID-token verification (openidconnect's verifier plus the checks it
//! leaves out): `iss` equals the discovered issuer, `aud` contains the client
//! id and nothing untrusted, `azp` (when present) is the client id, `exp` in
//! the future, `iat` not in the future (60 s skew), `nonce` equal, and the
//! signature checked with a JWKS key whose type fits `alg`. `alg` must be an
//! asymmetric algorithm the discovery document lists: never `none`, never
//! HS*. A token without `kid` is accepted only when the JWKS holds exactly
//! one signing key; an unknown `kid` refetches the JWKS (at most once per
//! minute per provider) and is tried once more. Key material in the token
//! (`jku`, `jwk`, `x5u`, `x5c`) is never used. Claims of the wrong JSON type
//! fail the login.
//!
//! `email_verified`: when the email comes from the `email` claim (the
//! default `email_claim_name`), the IdP's `email_verified` is used; when
//! that claim is missing, Okta counts as verified (Okta's directory holds
//! the address the admin manages) and any other provider as not verified.
//! When `email_claim_name` names another claim, only Okta (whose custom
//! claims are admin-mapped profile attributes) counts as verified, unless
//! the value equals the `email` claim's value, which carries
//! `email_verified`.

mod claims;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreErrorResponseType, CoreIdToken,
    CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    reqwest, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKey, JsonWebKeyUse, JwsSigningAlgorithm, Nonce,
    OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};

use super::http::{self, read_body, HttpError, OidcHttp};
use super::okta_api;
pub use super::IdpError;
use crate::config::{IdpConfig, IdpKind};
use crate::identity::{Groups, Identity};

/// First retry delay of the discovery task; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often discovery is refreshed once it has succeeded.
const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// An unknown `kid` refetches the JWKS at most this often.
const JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(60);
/// Tolerated clock skew for `iat` in the future.
const IAT_SKEW_SECS: i64 = 60;
/// A successful contact vouches for the IdP at login start this long.
const REACHABLE_TTL: Duration = Duration::from_secs(5);
/// A failed contact stands this long before a login start probes again.
const UNREACHABLE_TTL: Duration = Duration::from_secs(1);
/// How far `freeze_last_contact` dates the last contact ahead (tests).
#[cfg(test)]
const FROZEN_FOR: Duration = Duration::from_secs(3600);
/// The deliberately invalid code `test_connection` sends.
const TEST_CODE: &str = "portcullis-test-idp-invalid-code";

/// Called with an endpoint label (`discovery`, `jwks`, `token`, `groups`)
/// and the duration of each request to the IdP.
pub type Observer = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

/// A JSON object (JWT header or claims).
type JsonObject = Map<String, Value>;

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The result of a successful discovery.
struct Discovered {
    metadata: CoreProviderMetadata,
    client: OidcClient,
    issuer: IssuerUrl,
    jwks: CoreJsonWebKeySet,
    /// Asymmetric algorithms from the discovery document.
    algs: Vec<CoreJwsSigningAlgorithm>,
}

/// One step of [`Provider::test_connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestStep {
    /// `discovery`, `jwks` or `client credentials`.
    pub name: &'static str,
    /// What was found, or why the step failed.
    pub result: Result<String, String>,
}

/// What the last contact with the IdP's OIDC endpoints showed.
#[derive(Debug, Clone, Copy)]
struct Contact {
    at: Instant,
    reachable: bool,
}

/// An OpenID provider as configured, and what discovery found out about it.
pub struct Provider {
    cfg: IdpConfig,
    http: reqwest::Client,
    client_id: ClientId,
    client_secret: ClientSecret,
    state: ArcSwapOption<Discovered>,
    last_kid_refetch: Mutex<Option<Instant>>,
    last_contact: Mutex<Option<Contact>>,
    /// Held while [`Provider::ensure_reachable`] probes, so that concurrent
    /// login starts share one probe.
    probe: tokio::sync::Mutex<()>,
    observer: RwLock<Option<Observer>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.cfg.name)
            .field("issuer", &self.cfg.issuer)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider for `cfg`; nothing is fetched until [`Provider::discover`].
    pub fn new(cfg: IdpConfig) -> Result<Provider, IdpError> {
        IssuerUrl::new(cfg.issuer.clone()).map_err(|e| {
            IdpError::Unavailable(format!("invalid issuer url {:?}: {e}", cfg.issuer))
        })?;
        if let Some(account) = &cfg.okta_account {
            url::Url::parse(account).map_err(|e| {
                IdpError::Unavailable(format!("invalid okta_account url {account:?}: {e}"))
            })?;
        }
        Ok(Provider {
            client_id: ClientId::new(cfg.client_id.clone()),
            client_secret: ClientSecret::new(cfg.client_secret.clone()),
            cfg,
            http: http::client(),
            state: ArcSwapOption::empty(),
            last_kid_refetch: Mutex::new(None),
            last_contact: Mutex::new(None),
            probe: tokio::sync::Mutex::new(()),
            observer: RwLock::new(None),
        })
    }

    /// The configured name (`identity_providers[].name`).
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn config(&self) -> &IdpConfig {
        &self.cfg
    }

    /// The HTTP client used for this provider (redirects off, timeouts).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Report each IdP request's duration to `f`.
    pub fn set_observer(&self, f: Observer) {
        *self.observer.write() = Some(f);
    }

    fn observe(&self, endpoint: &'static str, took: Duration) {
        let observer = self.observer.read().clone();
        if let Some(f) = observer {
            f(endpoint, took);
        }
    }

    /// True once a discovery has succeeded; stays true during later outages.
    pub fn is_ready(&self) -> bool {
        self.state.load().is_some()
    }

    fn discovered(&self) -> Result<Arc<Discovered>, IdpError> {
        self.state.load_full().ok_or_else(|| {
            IdpError::Unavailable(format!("{} has not been discovered yet", self.cfg.name))
        })
    }

    /// Fetch the discovery document and the JWKS, and keep them.
    pub async fn discover(&self) -> Result<(), IdpError> {
        let result = self.discover_once().await;
        self.note_contact(result.is_ok());
        result
    }

    async fn discover_once(&self) -> Result<(), IdpError> {
        let metadata = self.fetch_metadata().await?;
        let jwks = self.fetch_jwks(&metadata).await?;
        self.install(metadata, jwks)?;
        Ok(())
    }

    fn note_contact(&self, reachable: bool) {
        *self.last_contact.lock() = Some(Contact {
            at: Instant::now(),
            reachable,
        });
    }

    /// The last contact's verdict while it is fresh enough to trust.
    fn fresh_verdict(&self) -> Option<bool> {
        let c = (*self.last_contact.lock())?;
        let ttl = if c.reachable {
            REACHABLE_TTL
        } else {
            UNREACHABLE_TTL
        };
        (c.at.elapsed() < ttl).then_some(c.reachable)
    }

    /// Date the last contact [`FROZEN_FOR`] into the future, so that it
    /// stays fresh however long the test takes until it ages it again
    /// (`age_last_contact(FROZEN_FOR + ttl)`): an injected clock for the
    /// verdict's age, not a race against a busy machine.
    #[cfg(test)]
    fn freeze_last_contact(&self) {
        if let Some(c) = self.last_contact.lock().as_mut() {
            c.at += FROZEN_FOR;
        }
    }

    /// Make the last contact look `by` older (tests of the verdict's age).
    #[cfg(test)]
    fn age_last_contact(&self, by: Duration) {
        if let Some(c) = self.last_contact.lock().as_mut() {
            c.at = c.at.checked_sub(by).unwrap_or(c.at);
        }
    }

    fn verdict(&self, reachable: bool) -> Result<(), IdpError> {
        if reachable {
            Ok(())
        } else {
            Err(IdpError::Unavailable(format!(
                "{} could not be reached moments ago",
                self.cfg.name
            )))
        }
    }

    /// Before a browser is sent to the IdP: `Ok` when it answered lately,
    /// else after a fresh discovery (which also refreshes metadata and
    /// JWKS). [`IdpError::Unavailable`] when it cannot be reached.
    pub async fn ensure_reachable(&self) -> Result<(), IdpError> {
        if let Some(reachable) = self.fresh_verdict() {
            return self.verdict(reachable);
        }
        let _probe = self.probe.lock().await;
        if let Some(reachable) = self.fresh_verdict() {
            return self.verdict(reachable);
        }
        let result = self.discover().await;
        if let Err(e) = &result {
            tracing::warn!(idp.name = %self.cfg.name, error = %e, "Identity provider unreachable at login");
        }
        result
    }

    /// Retry discovery in the background (1 s doubling to 30 s) until it
    /// succeeds, then refresh it every 10 minutes. The task ends when the
    /// provider is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak: Weak<Provider> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = INITIAL_BACKOFF;
            loop {
                let Some(provider) = weak.upgrade() else {
                    return;
                };
                let wait = match provider.discover().await {
                    Ok(()) => {
                        tracing::debug!(idp.name = %provider.cfg.name, "Discovery refreshed");
                        backoff = INITIAL_BACKOFF;
                        REFRESH_INTERVAL
                    }
                    Err(e) => {
                        tracing::warn!(
                            idp.name = %provider.cfg.name,
                            error = %e,
                            retry.secs = backoff.as_secs(),
                            "Discovery failed"
                        );
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                };
                drop(provider);
                tokio::time::sleep(wait).await;
            }
        });
    }

    async fn fetch_metadata(&self) -> Result<CoreProviderMetadata, IdpError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let started = Instant::now();
        let body = self.get_json(&url).await;
        self.observe("discovery", started.elapsed());
        let body = body.map_err(|e| IdpError::Unavailable(format!("discovery: {e}")))?;
        let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| IdpError::Unavailable(format!("malformed discovery document: {e}")))?;
        let found = metadata.issuer().as_str();
        if found.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
            return Err(IdpError::Unavailable(format!(
                "discovery document names issuer {found:?}, expected {:?}",
                self.cfg.issuer
            )));
        }
        Ok(metadata)
    }

    async fn get_json(&self, url: &str) -> Result<Vec<u8>, HttpError> {
        let resp = self
            .http
            .get(url)
            .header(::http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(HttpError::Transport)?;
        if !resp.status().is_success() {
            return Err(HttpError::Status(resp.status().as_u16()));
        }
        read_body(resp).await
    }

    async fn fetch_jwks(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> Result<CoreJsonWebKeySet, IdpError> {
        let started = Instant::now();
        let body = self.get_json(metadata.jwks_uri().as_str()).await;
        self.observe("jwks", started.elapsed());
        let body = body.map_err(|e| IdpError::Unavailable(format!("jwks: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| IdpError::Unavailable(format!("malformed jwks: {e}")))
    }

    /// Keep a new discovery result (or a refetched JWKS).
    fn install(
        &self,
        metadata: CoreProviderMetadata,
        jwks: CoreJsonWebKeySet,
    ) -> Result<Arc<Discovered>, IdpError> {
        let algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| !a.uses_shared_secret() && !matches!(a, CoreJwsSigningAlgorithm::None))
            .cloned()
            .collect();
        if algs.is_empty() {
            return Err(IdpError::Unavailable(
                "the discovery document lists no asymmetric id token signing algorithm".into(),
            ));
        }
        let metadata = metadata.set_jwks(jwks.clone());
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        );
        // HTTP Basic unless the server says it takes only the secret in the
        // form body (`client_secret_post`).
        let client = if secret_in_body(metadata.token_endpoint_auth_methods_supported()) {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        };
        let discovered = Arc::new(Discovered {
            issuer: metadata.issuer().clone(),
            metadata,
            client,
            jwks,
            algs,
        });
        self.state.store(Some(discovered.clone()));
        Ok(discovered)
    }

    /// The URL to send the browser to. Scopes come from the config
    /// (`openid` is always included once).
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        pkce_challenge_s256: Option<&str>,
    ) -> Result<String, IdpError> {
        let d = self.discovered()?;
        let redirect = redirect_url(redirect_uri)?;
        let (state, nonce) = (state.to_string(), nonce.to_string());
        let mut req = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_redirect_uri(Cow::Owned(redirect));
        // The default scopes ask for `groups`, which many servers do not
        // define (Keycloak, an Okta custom authorization server) and
        // refuse with `invalid_scope`: of the defaults, only those the
        // server lists in `scopes_supported` are asked for. Scopes set in
        // the config are sent as written.
        let supported = d
            .metadata
            .scopes_supported()
            .map(|l| l.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        for scope in requested_scopes(&self.cfg.scopes, supported.as_deref()) {
            req = req.add_scope(Scope::new(scope.to_string()));
        }
        if let Some(challenge) = pkce_challenge_s256 {
            req = req
                .add_extra_param("code_challenge", challenge.to_string())
                .add_extra_param("code_challenge_method", "S256");
        }
        let (url, _, _) = req.url();
        Ok(url.to_string())
    }

    /// Whether `iss`, the issuer an authorization response named (RFC
    /// 9207), is this provider's. False before discovery.
    pub fn is_issuer(&self, iss: &str) -> bool {
        self.discovered().is_ok_and(|d| d.issuer.as_str() == iss)
    }

    /// Redeem an authorization code and verify the ID token it brings;
    /// build the login's [`Identity`] (groups from Okta's API when an
    /// `api_token` is configured).
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&str>,
        nonce: &str,
    ) -> Result<Identity, IdpError> {
        let d = self.discovered()?;
        let redirect = redirect_url(redirect_uri)?;
        let mut req = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| {
                IdpError::Unavailable("the discovery document has no token endpoint".into())
            })?
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = pkce_verifier {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()));
        }
        let started = Instant::now();
        let resp = req.request_async(&OidcHttp(self.http.clone())).await;
        self.observe("token", started.elapsed());
        let resp = resp.map_err(token_error);
        self.note_contact(!matches!(resp, Err(IdpError::Unavailable(_))));
        let resp = resp?;
        let id_token = resp
            .id_token()
            .ok_or_else(|| IdpError::InvalidToken("the token response has no id_token".into()))?;
        let mut claims = self.verify_id_token(d.clone(), id_token, nonce).await?;
        // With the code flow, an OP may send the scope claims (email,
        // groups, …) only from UserInfo (OIDC Core 5.4; node-oidc-provider's
        // default). Without the email in the ID token, ask UserInfo.
        if !claims.contains_key(self.cfg.email_claim_name.as_str()) {
            if let Some(endpoint) = d.metadata.userinfo_endpoint() {
                let info = self
                    .userinfo(endpoint.url(), resp.access_token().secret())
                    .await?;
                merge_userinfo(&mut claims, info)?;
            }
        }
        let mut identity = claims::identity(&self.cfg, &claims)?;
        if let (IdpKind::Okta, Some(token), Some(account)) = (
            self.cfg.kind,
            self.cfg.api_token.as_deref(),
            self.cfg.okta_account.as_deref(),
        ) {
            let started = Instant::now();
            let groups =
                okta_api::fetch_user_groups(&self.http, account, token, &identity.sub).await;
            self.observe("groups", started.elapsed());
            identity.groups = Groups::from_names(groups?);
        }
        Ok(identity)
    }

    /// The UserInfo claims for `access_token` (plain JSON; a signed
    /// `application/jwt` answer is refused).
    async fn userinfo(
        &self,
        url: &url::Url,
        access_token: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let started = Instant::now();
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        self.observe("userinfo", started.elapsed());
        let resp =
            resp.map_err(|e| IdpError::Unavailable(format!("userinfo request failed: {e}")))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(IdpError::Unavailable(format!("userinfo answered {status}")));
        }
        if !status.is_success() {
            return Err(IdpError::Rejected(format!("userinfo answered {status}")));
        }
        let json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return Err(IdpError::InvalidToken(
                "the userinfo answer is not application/json (signed userinfo is not supported)"
                    .into(),
            ));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| IdpError::Unavailable(format!("userinfo read failed: {e}")))?;
        if body.len() > MAX_USERINFO_BYTES {
            return Err(IdpError::InvalidToken(format!(
                "the userinfo answer is over {MAX_USERINFO_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            IdpError::InvalidToken(format!("the userinfo answer is not a JSON object: {e}"))
        })
    }

    /// Verify `token` and return its (now trusted) claims as JSON.
    async fn verify_id_token(
        &self,
        mut d: Arc<Discovered>,
        token: &CoreIdToken,
        nonce: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let raw = token.to_string();
        let (header, payload) = split_jwt(&raw)?;
        match header.get("alg") {
            Some(Value::String(alg))
                if alg.eq_ignore_ascii_case("none") || alg.starts_with("HS") =>
            {
                return Err(IdpError::InvalidToken(format!("alg {alg} is not allowed")))
            }
            Some(Value::String(_)) => {}
            _ => return Err(IdpError::InvalidToken("missing alg".into())),
        }
        match header.get("kid") {
            None => {
                let n = signing_keys(&d.jwks);
                if n != 1 {
                    return Err(IdpError::InvalidToken(format!(
                        "the id token has no kid and the jwks holds {n} signing keys"
                    )));
                }
            }
            Some(Value::String(kid)) => {
                if !has_kid(&d.jwks, kid) {
                    d = self.refetch_jwks_for(kid).await?;
                }
            }
            Some(_) => return Err(IdpError::InvalidToken("kid is not a string".into())),
        }
        let verifier = CoreIdTokenVerifier::new_public_client(
            self.client_id.clone(),
            d.issuer.clone(),
            d.jwks.clone(),
        )
        .set_allowed_algs(d.algs.clone())
        .set_issue_time_verifier_fn(|iat| {
            if iat.timestamp() > unix_now() + IAT_SKEW_SECS {
                Err("iat is in the future".to_string())
            } else {
                Ok(())
            }
        });
        let verified = token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map_err(|e| IdpError::InvalidToken(error_chain(&e)))?;
        if let Some(azp) = verified.authorized_party() {
            if azp.as_str() != self.client_id.as_str() {
                return Err(IdpError::InvalidToken(format!(
                    "azp {:?} is not this client",
                    azp.as_str()
                )));
            }
        } else if verified.audiences().len() > 1 {
            return Err(IdpError::InvalidToken(
                "several audiences and no azp claim".into(),
            ));
        }
        Ok(payload)
    }

    /// The token names a `kid` the JWKS lacks: refetch the JWKS unless that
    /// happened less than a minute ago, and return the state to retry with.
    async fn refetch_jwks_for(&self, kid: &str) -> Result<Arc<Discovered>, IdpError> {
        let unknown = || IdpError::InvalidToken(format!("unknown kid {kid:?}"));
        {
            let mut last = self.last_kid_refetch.lock();
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_COOLDOWN) {
                return Err(unknown());
            }
            *last = Some(Instant::now());
        }
        let current = self.discovered()?;
        let jwks = self.fetch_jwks(&current.metadata).await?;
        tracing::info!(idp.name = %self.cfg.name, "JWKS refetched for an unknown kid");
        let d = self.install(current.metadata.clone(), jwks)?;
        if has_kid(&d.jwks, kid) {
            Ok(d)
        } else {
            Err(unknown())
        }
    }

    /// The "Test" button: discovery, JWKS, then client credentials (a token
    /// request with a deliberately invalid code: `invalid_grant` means the
    /// credentials were accepted). Stops at the first failure. A successful
    /// discovery is kept, as [`Provider::discover`] would.
    pub async fn test_connection(&self, redirect_uri: &str) -> Vec<TestStep> {
        let mut steps = Vec::new();
        let metadata = match self.fetch_metadata().await {
            Ok(m) => {
                steps.push(TestStep {
                    name: "discovery",
                    result: Ok(format!(
                        "issuer {}, authorization endpoint {}",
                        m.issuer().as_str(),
                        m.authorization_endpoint().as_str()
                    )),
                });
                m
            }
            Err(e) => {
                steps.push(TestStep {
                    name: "discovery",
                    result: Err(e.to_string()),
                });
                return steps;
            }
        };
        let jwks = match self.fetch_jwks(&metadata).await {
            Ok(jwks) if signing_keys(&jwks) > 0 => {
                steps.push(TestStep {
                    name: "jwks",
                    result: Ok(format!("{} signing keys", signing_keys(&jwks))),
                });
                jwks
            }
            Ok(_) => {
                steps.push(TestStep {
                    name: "jwks",
                    result: Err("the jwks holds no usable signing key".into()),
                });
                return steps;
            }
            Err(e) => {
                steps.push(TestStep {
                    name: "jwks",
                    result: Err(e.to_string()),
                });
                return steps;
            }
        };
        let d = match self.install(metadata, jwks) {
            Ok(d) => d,
            Err(e) => {
                steps.push(TestStep {
                    name: "jwks",
                    result: Err(e.to_string()),
                });
                return steps;
            }
        };
        let result = self.probe_credentials(&d, redirect_uri).await;
        steps.push(TestStep {
            name: "client credentials",
            result,
        });
        steps
    }

    async fn probe_credentials(
        &self,
        d: &Discovered,
        redirect_uri: &str,
    ) -> Result<String, String> {
        let redirect = redirect_url(redirect_uri).map_err(|e| e.to_string())?;
        let req = d
            .client
            .exchange_code(AuthorizationCode::new(TEST_CODE.to_string()))
            .map_err(|_| "the discovery document has no token endpoint".to_string())?
            .set_redirect_uri(Cow::Owned(redirect));
        let started = Instant::now();
        let resp = req.request_async(&OidcHttp(self.http.clone())).await;
        self.observe("token", started.elapsed());
        match resp {
            Err(RequestTokenError::ServerResponse(e)) => match e.error() {
                CoreErrorResponseType::InvalidGrant => {
                    Ok("credentials accepted (a dummy code was refused with invalid_grant)".into())
                }
                CoreErrorResponseType::InvalidClient => {
                    Err("invalid_client: check client_id and client_secret".into())
                }
                other => Err(format!("the token endpoint answered {}", other.as_ref())),
            },
            Err(RequestTokenError::Request(HttpError::Status(401))) => {
                Err("http 401: check client_id and client_secret".into())
            }
            Err(e) => Err(error_chain(&e)),
            Ok(_) => Err("the token endpoint accepted a dummy code".into()),
        }
    }
}

/// Map a failed token request to the error the proxy acts on.
fn token_error(
    e: RequestTokenError<HttpError, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> IdpError {
    match e {
        RequestTokenError::ServerResponse(e) => IdpError::Rejected(e.error().as_ref().to_string()),
        RequestTokenError::Request(HttpError::Status(s)) if s < 500 => {
            IdpError::Rejected(format!("token endpoint answered http {s}"))
        }
        RequestTokenError::Request(e) => IdpError::Unavailable(format!("token endpoint: {e}")),
        // Non-success statuses never reach the parser (see `http::send`), so
        // this is a 200 whose body (or ID token) does not parse.
        RequestTokenError::Parse(e, _) => {
            IdpError::InvalidToken(format!("malformed token response: {e}"))
        }
        RequestTokenError::Other(e) => IdpError::Unavailable(format!("token endpoint: {e}")),
    }
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, IdpError> {
    RedirectUrl::new(uri.to_string())
        .map_err(|e| IdpError::Unavailable(format!("invalid redirect uri {uri:?}: {e}")))
}

/// Keys usable to check signatures: `use` absent or `sig`, asymmetric.
fn signing_keys(jwks: &CoreJsonWebKeySet) -> usize {
    jwks.keys()
        .iter()
        .filter(|k| k.key_use().is_none_or(|u| u.allows_signature()))
        .filter(|k| {
            !matches!(
                k.key_type(),
                openidconnect::core::CoreJsonWebKeyType::Symmetric
            )
        })
        .count()
}

fn has_kid(jwks: &CoreJsonWebKeySet, kid: &str) -> bool {
    jwks.keys()
        .iter()
        .any(|k| k.key_id().is_some_and(|id| id.as_str() == kid))
}

/// Header and payload of a compact JWS as JSON objects.
fn split_jwt(raw: &str) -> Result<(JsonObject, JsonObject), IdpError> {
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdpError::InvalidToken("not a compact jws".into()));
    };
    let decode = |part: &str, what: &str| -> Result<JsonObject, IdpError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| IdpError::InvalidToken(format!("{what} is not base64url")))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| IdpError::InvalidToken(format!("{what} is not a json object")))
    };
    Ok((decode(h, "header")?, decode(p, "payload")?))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An error and its sources, `: `-separated (openidconnect's top-level
/// messages are vague, the cause is in the chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The scopes to ask for besides `openid`: those configured; but when the
/// list is the default one, only those the server lists in
/// `scopes_supported` (when it publishes the list).
fn requested_scopes<'a>(configured: &'a [String], supported: Option<&[&str]>) -> Vec<&'a str> {
    let defaulted = configured == crate::config::validate::DEFAULT_SCOPES;
    configured
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "openid")
        .filter(|s| !defaulted || supported.is_none_or(|l| l.contains(s)))
        .collect()
}

/// Whether the client secret goes in the token request's body: only when
/// the server lists its methods, without `client_secret_basic` and with
/// `client_secret_post`.
fn secret_in_body(methods: Option<&Vec<CoreClientAuthMethod>>) -> bool {
    methods.is_some_and(|l| {
        !l.contains(&CoreClientAuthMethod::ClientSecretBasic)
            && l.contains(&CoreClientAuthMethod::ClientSecretPost)
    })
}

/// Largest UserInfo answer accepted (a user in thousands of groups fits).
const MAX_USERINFO_BYTES: usize = 1 << 20;

/// Claims that describe the token or the authentication event: they count
/// only from the verified ID token, never from UserInfo.
const ID_TOKEN_ONLY: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "auth_time",
    "acr",
    "amr",
    "at_hash",
    "c_hash",
    "sid",
    "jti",
];

/// Add the UserInfo claims the ID token lacks (profile, email, groups,
/// custom claims); the ID token's own claims stand, and the claims of
/// [`ID_TOKEN_ONLY`] are never taken from UserInfo (an `amr` there could
/// otherwise satisfy an `auth_method: mfa` rule). UserInfo must be about
/// the same subject (OIDC Core 5.3.2).
fn merge_userinfo(
    claims: &mut Map<String, Value>,
    info: Map<String, Value>,
) -> Result<(), IdpError> {
    if info.get("sub") != claims.get("sub") {
        return Err(IdpError::InvalidToken(
            "the userinfo sub is not the id token's".into(),
        ));
    }
    for (k, v) in info {
        if !ID_TOKEN_ONLY.contains(&k.as_str()) {
            claims.entry(k).or_insert(v);
        }
    }
    Ok(())
}
