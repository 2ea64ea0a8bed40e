//! The main configuration file: raw serde schema (`raw`), `${ENV}` expansion
//! (`env`), YAML loading with located errors (`load`, `yaml`), secrets read
//! from files (`secret_file`), the validate pass (`validate`), and the
//! validated runtime type [`Config`] that the rest of the proxy reads.
//! `duration` and `host` hold small parsers that policy files share.

pub mod duration;
pub mod env;
pub mod host;
pub mod load;
pub mod raw;
pub mod secret_file;
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
    /// Store URL: `sqlite://…` with an absolute path, `sqlite::memory:`, or
    /// `postgres://…` (fleet mode; may hold a password: never log it as is).
    pub store: String,
    /// `store.pool_size` and `store.outage_grace`, defaults filled in; only
    /// read with a PostgreSQL store (set with SQLite, they are config errors).
    pub store_options: StoreOptions,
    /// Signing keys folder (SQLite store only: with PostgreSQL the keys live
    /// in the database and an explicit `key_dir` is a config error; this
    /// then holds the unused default).
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
    /// What browsers see when a load balancer sits in front; `None` when
    /// not configured (scheme derived from the listeners).
    pub public: Option<Public>,
    /// `trusted_proxies`: peers whose `X-Forwarded-For`, `X-Request-Id`
    /// and PROXY header are believed. Empty: none, the TCP peer is the
    /// client.
    pub trusted_proxies: Vec<crate::policy::ip_range::IpRange>,
    /// The Unix socket through which a graceful upgrade hands the listening
    /// sockets to the new process (`upgrade_sock`; absolute).
    pub upgrade_sock: PathBuf,
    /// `access_log`; `None` (absent): no access log.
    pub access_log: Option<AccessLogConfig>,
}

/// `access_log`: where the access log goes, and in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    /// Default `json`.
    pub format: AccessLogFormat,
}

/// `access_log.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// `"-"`: standard output.
    Stdout,
    /// A file, appended to (resolved against the config folder).
    File(PathBuf),
}

/// `access_log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// One human-readable line per event.
    Text,
}

/// Fleet-mode (PostgreSQL) store settings, from the map form of `store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in the pool (`store.pool_size`, 1 to 1000; default
    /// 2 × `threads`).
    pub pool_size: u32,
    /// How long sessions already cached keep being served after the last
    /// successful contact with the store (`store.outage_grace`, at most 1 d;
    /// default 30 s). After that, requests that need a session get 503.
    pub outage_grace: Duration,
}

/// `public`: the scheme and port browsers use to reach the proxy when they
/// differ from its listeners' (TLS ends at a load balancer; 443 outside,
/// 8443 inside). The balancer must pass `Host` through unchanged.
///
/// The rule every URL the proxy builds or checks follows:
/// - Scheme: `scheme` when set, else `https` if any listener has TLS, else
///   `http` ([`Config::scheme`]). It is the scheme of the auth origin, of app
///   origins, of `redirect_url`, of `X-Forwarded-Proto`, and `https` makes
///   every cookie `Secure`.
/// - Auth origin ([`Config::auth_origin`]): an `auth_domain` written with a
///   port is used as written (and `port`, when set, must equal it). Without
///   one, `port` is appended unless it is the scheme's default (443 for
///   https, 80 for http): `auth.example.com` with `port: 443` is
///   `https://auth.example.com`, with `port: 8443` it is
///   `https://auth.example.com:8443`. Without `port` nothing is appended.
/// - App origins stay `<scheme>://<Host as received>`: the browser's `Host`
///   already carries the public port (none for the default one).
/// - A `redirect_url` may carry an explicit port only if it is `port` (when
///   set; the listeners' ports are inside ports browsers never use), else
///   one we listen on or the auth domain's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Public {
    /// `public.scheme`; `None` = derived from the listeners.
    pub scheme: Option<Scheme>,
    /// `public.port` (1 to 65535); `None` = as in `auth_domain` and `Host`.
    pub port: Option<u16>,
}

/// A URL scheme the proxy is reached by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL of this scheme leaves out.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
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

    /// The scheme browsers use: `public.scheme` when set, else `https` if
    /// any listener has TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        self.public_scheme().as_str()
    }

    fn public_scheme(&self) -> Scheme {
        match self.public.and_then(|p| p.scheme) {
            Some(s) => s,
            None if self.listen.iter().any(|l| l.tls.is_some()) => Scheme::Https,
            None => Scheme::Http,
        }
    }

    /// `public.port`, if set.
    pub fn public_port(&self) -> Option<u16> {
        self.public.and_then(|p| p.port)
    }

    /// Whether a `redirect_url` may name `port` explicitly: with
    /// `public.port` set, only that port (the listeners' are inside ports
    /// browsers never use); else a port we listen on or the auth domain's.
    pub fn redirect_port_allowed(&self, port: u16) -> bool {
        if let Some(public) = self.public_port() {
            return port == public;
        }
        let auth_port = self
            .auth_domain
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        self.listen.iter().any(|l| l.addr.port() == port) || auth_port == Some(port)
    }

    /// Whether a request's `Host` (`:authority` over HTTP/2) may carry
    /// `port` on to the origin: with `public.port` set, only that port
    /// (what browsers use); else the port the request arrived on
    /// (`arrived_on`, any listener's when it is not known). Any other port
    /// is dropped from the forwarded `Host` (see `proxy::request`).
    pub fn host_port_expected(&self, port: u16, arrived_on: Option<u16>) -> bool {
        match (self.public_port(), arrived_on) {
            (Some(public), _) => port == public,
            (None, Some(local)) => port == local,
            (None, None) => self.listen.iter().any(|l| l.addr.port() == port),
        }
    }

    /// `<scheme>://<auth_domain>`, with `public.port` appended when
    /// `auth_domain` has no port and it is not the scheme's default (see
    /// [`Public`]). The `iss` of every token the proxy mints.
    pub fn auth_origin(&self) -> String {
        let scheme = self.public_scheme();
        // `auth_domain` is a DNS name or IPv4 address (no IPv6 brackets), so
        // a colon means a port.
        let has_port = self.auth_domain.contains(':');
        match self.public_port() {
            Some(p) if !has_port && p != scheme.default_port() => {
                format!("{}://{}:{p}", scheme.as_str(), self.auth_domain)
            }
            _ => format!("{}://{}", scheme.as_str(), self.auth_domain),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// `proxy_protocol`: every connection starts with a PROXY v1/v2 header
    /// from a peer in `trusted_proxies` (default false).
    pub proxy_protocol: bool,
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
