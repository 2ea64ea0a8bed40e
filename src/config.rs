//! The main configuration file: raw serde schema (`raw`), `${ENV}` expansion
//! (`env`), YAML loading with located errors (`load`, `yaml`), the validate
//! pass (`validate`), and the validated runtime type [`Config`] that the rest
//! of the proxy reads. `duration` and `host` hold small parsers that policy
//! files share.

pub mod duration;
pub mod env;
pub mod host;
pub mod load;
pub mod raw;
pub(crate) mod validate;
pub(crate) mod yaml;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::{format_duration, parse_duration};
pub use load::{load_file, parse_str, policies_hint, ConfigError, ConfigErrors};

/// Validated configuration. Relative paths are already resolved against the
/// config file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Listener>,
    /// Host with optional port, lower-case (`auth.example.com`, `auth.localhost:8080`).
    pub auth_domain: String,
    /// Worker threads per listener.
    pub threads: usize,
    /// Metrics listener address, if any.
    pub metrics: Option<SocketAddr>,
    /// Store URL (`sqlite://…` with an absolute path).
    pub store: String,
    pub key_dir: PathBuf,
    pub session: SessionConfig,
    pub identity_providers: Vec<IdpConfig>,
    /// Policy file or folder.
    pub policies: PathBuf,
    /// Prefix of proxy-owned endpoints, default `/cdn-cgi/access`.
    pub endpoint_prefix: String,
    /// SCIM base path on the auth domain, default `/scim/v2`.
    pub scim_path: String,
    pub headers: HeaderNames,
    pub cache: CacheConfig,
    /// Seconds to wait for in-flight requests on graceful shutdown.
    pub grace_period_seconds: u64,
    pub upstream_health: UpstreamHealthConfig,
}

/// Active health checks of apps with several upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamHealthConfig {
    /// Time between two checks of an upstream (default 5 s).
    pub interval: Duration,
    /// Connect timeout of a check, and of forwarding (default 2 s).
    pub timeout: Duration,
}

impl Config {
    /// The identity providers' names, which policies may name.
    pub fn idp_names(&self) -> Vec<String> {
        self.identity_providers
            .iter()
            .map(|i| i.name.clone())
            .collect()
    }

    /// `https` if any listener has TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.listen.iter().any(|l| l.tls.is_some()) {
            "https"
        } else {
            "http"
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Default `CF_Authorization`.
    pub cookie_name: String,
    /// Default 24h.
    pub duration: Duration,
}

/// Names of the identity headers sent upstream.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    /// Default `Cf-Access-Jwt-Assertion`.
    pub assertion: String,
    /// Default `Cf-Access-Authenticated-User-Email`.
    pub email: String,
    /// Default `X-Portcullis-Groups`; `None` when configured off.
    pub groups: Option<String>,
    /// Forward configured custom claims as `X-Portcullis-Claim-<name>`.
    pub forward_claims: bool,
}

/// Session cache sizing.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Max cached verified sessions (default 100_000).
    pub max_entries: u64,
    /// Max time an entry lives in the cache (default 5 min; never beyond `exp`).
    pub ttl: Duration,
}

/// One `identity_providers` entry (Cloudflare's API shape).
#[derive(Debug, Clone)]
pub struct IdpConfig {
    pub name: String,
    pub kind: IdpKind,
    pub client_id: String,
    pub client_secret: String,
    /// Issuer URL used for discovery: `okta_account` (org server) or
    /// `okta_account/oauth2/<authorization_server_id>`, or `issuer` for `oidc`.
    pub issuer: String,
    /// Okta org URL (for the groups API), `None` for `oidc`.
    pub okta_account: Option<String>,
    pub authorization_server_id: Option<String>,
    pub api_token: Option<String>,
    pub claims: Vec<String>,
    /// Default `email`.
    pub email_claim_name: String,
    pub pkce_enabled: bool,
    /// Default `openid email profile groups`.
    pub scopes: Vec<String>,
    pub scim: Option<ScimConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKind {
    Okta,
    Oidc,
}

impl IdpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdpKind::Okta => "okta",
            IdpKind::Oidc => "oidc",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScimConfig {
    pub enabled: bool,
    pub secret: Option<String>,
    pub user_deprovision: bool,
    pub seat_deprovision: bool,
    pub group_member_deprovision: bool,
}
