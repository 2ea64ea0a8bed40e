//! Shared state of a running proxy: config, the live policy set, signing
//! keys, session cache, store and identity providers. Built once at start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::identity::Identity;
use crate::idp::oidc::Provider;
use crate::policy::model::App;
use crate::policy::reload::PolicyHandle;
use crate::session::cache::SessionCache;
use crate::session::keys::{KeyRing, LiveKeys};
use crate::store::{Store, StoreError};

use super::headers::Protected;

/// Everything the proxy shares between requests.
pub struct State {
    pub cfg: Config,
    pub policies: Arc<PolicyHandle>,
    pub keys: LiveKeys,
    pub cache: SessionCache,
    pub store: Arc<dyn Store>,
    /// Whether the store answers (fleet mode's outage rules).
    pub store_health: crate::store::health::StoreHealth,
    pub idps: Vec<Arc<Provider>>,
    pub protected: Protected,
    /// `scheme://auth_domain` (with `public.port` when set: `Config::auth_origin`);
    /// also the `iss` of every token we mint.
    pub auth_origin: String,
    /// Host of the auth domain without port.
    pub auth_host: String,
    /// Audience of the auth-domain (SSO) session token.
    pub sso_aud: String,
    pub secure_cookies: bool,
    /// Cookie names derived from `session.cookie_name`.
    pub sso_cookie: String,
    pub nonce_cookie: String,
    pub state_cookie_prefix: String,
    /// Service-token assertions per `client_id` + app aud: (token, exp).
    pub service_assertions: moka::sync::Cache<String, (Arc<str>, i64)>,
    /// Upstream identity header names, parsed once (cloning is a refcount).
    pub upstream_headers: UpstreamHeaders,
    /// Some IdP provisions over SCIM: session loads merge SCIM groups.
    pub scim_enabled: bool,
    /// Lookups of upstream host names (IP literals skip it).
    pub resolver: crate::proxy::resolve::Resolver,
    /// Upstreams marked down by health checks or failed connects.
    pub health: crate::proxy::health::Health,
    /// The access log (`access_log`); off until `server::build_state`
    /// opens it.
    pub access_log: crate::access_log::AccessLog,
    rr: AtomicUsize,
}

/// The configured upstream header names, lower-case and validated, as
/// shared bytes: Pingora's `insert_header` takes `Bytes` as the name to
/// send without copying it (a `HeaderName` it would copy on every request).
pub struct UpstreamHeaders {
    pub assertion: bytes::Bytes,
    pub email: bytes::Bytes,
    pub groups: Option<bytes::Bytes>,
}

impl UpstreamHeaders {
    fn new(h: &crate::config::HeaderNames) -> UpstreamHeaders {
        // The config loader validated the names; an invalid one falls back
        // to the default rather than forwarding without identity.
        let parse = |s: &str, d: &'static str| match http::HeaderName::from_bytes(s.as_bytes()) {
            Ok(n) => bytes::Bytes::copy_from_slice(n.as_str().as_bytes()),
            Err(_) => bytes::Bytes::from_static(d.as_bytes()),
        };
        UpstreamHeaders {
            assertion: parse(&h.assertion, "cf-access-jwt-assertion"),
            email: parse(&h.email, "cf-access-authenticated-user-email"),
            groups: h.groups.as_deref().map(|g| parse(g, "x-portcullis-groups")),
        }
    }
}

impl State {
    /// The identity policies see for a session record: with SCIM on, the
    /// user's live SCIM groups merged in. A store failure is an error, not
    /// "no SCIM groups": those groups may carry block or exclude rules.
    pub async fn policy_identity(&self, identity: Identity) -> Result<Identity, StoreError> {
        if self.scim_enabled {
            crate::scim::link::try_live_identity(self.store.as_ref(), identity).await
        } else {
            Ok(identity)
        }
    }

    pub fn new(
        cfg: Config,
        policies: Arc<PolicyHandle>,
        keys: KeyRing,
        store: Arc<dyn Store>,
        idps: Vec<Arc<Provider>>,
    ) -> State {
        let scheme = cfg.scheme();
        let auth_origin = cfg.auth_origin();
        let auth_host = match crate::proxy::request::split_host(&cfg.auth_domain) {
            Some(n) => cfg.auth_domain[..n].to_string(),
            None => cfg.auth_domain.clone(),
        };
        let name = cfg.session.cookie_name.clone();
        // Only a shared store (fleet mode, which keeps the keys) has outages.
        let store_health = crate::store::health::StoreHealth::new(
            store.key_store().is_some(),
            cfg.store_options.outage_grace,
        );
        State {
            protected: Protected::new(&cfg.headers),
            upstream_headers: UpstreamHeaders::new(&cfg.headers),
            scim_enabled: cfg
                .identity_providers
                .iter()
                .any(|i| i.scim.as_ref().is_some_and(|s| s.enabled)),
            cache: SessionCache::new(cfg.cache.max_entries, cfg.cache.ttl),
            sso_aud: auth_origin.clone(),
            auth_origin,
            auth_host,
            secure_cookies: scheme == "https",
            sso_cookie: format!("{name}_sso"),
            nonce_cookie: format!("{name}_nonce"),
            state_cookie_prefix: format!("{name}_state_"),
            service_assertions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            resolver: crate::proxy::resolve::Resolver::new(
                crate::proxy::resolve::TTL,
                cfg.upstream_health.timeout,
            ),
            health: crate::proxy::health::Health::default(),
            access_log: crate::access_log::AccessLog::off(),
            rr: AtomicUsize::new(0),
            cfg,
            policies,
            keys: LiveKeys::new(keys),
            store_health,
            store,
            idps,
        }
    }

    pub fn scheme(&self) -> &'static str {
        self.cfg.scheme()
    }

    /// Which of `app`'s upstreams to try: for a new request (`last` is
    /// `None`) the next in round-robin among those up; for a retry after
    /// upstream `last` failed, the next one this request has not tried
    /// (`tried`, bit per upstream), whatever other requests did meanwhile.
    /// `None` when there is none (`proxy::health::pick`).
    pub fn pick_upstream(&self, app: &App, last: Option<usize>, tried: u64) -> Option<usize> {
        let turn = match (app.upstreams.len(), last) {
            (0 | 1, _) | (_, Some(_)) => 0,
            (_, None) => self.rr.fetch_add(1, Ordering::Relaxed),
        };
        self.health.pick(&app.upstreams, turn, last, tried)
    }

    /// Identity provider by config name.
    pub fn idp(&self, name: &str) -> Option<&Arc<Provider>> {
        self.idps.iter().find(|p| p.name() == name)
    }

    /// IdPs an app accepts, in config order.
    pub fn idps_for(&self, app: &App) -> Vec<&Arc<Provider>> {
        self.idps
            .iter()
            .filter(|p| match &app.identity_providers {
                None => true,
                Some(list) => list.iter().any(|n| n == p.name()),
            })
            .collect()
    }

    /// Session length for an app.
    pub fn app_duration(&self, app: &App) -> Duration {
        app.session_duration.unwrap_or(self.cfg.session.duration)
    }

    /// The configured prefix of proxy-owned endpoints.
    pub fn prefix(&self) -> &str {
        &self.cfg.endpoint_prefix
    }
}
