//! Plain data for compiled policies: apps, their policies and selectors,
//! service tokens. Built by `policy::load`, read by `route` and `eval`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::identity::GroupId;
use crate::policy::ip_range::IpRange;

/// The whole compiled policy set: every app of every policy file, plus the
/// service tokens. Swapped atomically on reload.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Apps in file order (files in lexical order).
    pub apps: Vec<Arc<App>>,
    /// Service tokens from `service_tokens:` of every file.
    pub service_tokens: Vec<ServiceToken>,
    /// Router index built by `route::Router::build` at compile time.
    pub router: crate::policy::route::Router,
}

/// One protected application.
#[derive(Debug)]
pub struct App {
    /// Unique app name (metrics label, explain output).
    pub name: String,
    /// Audience tag: config `aud:` or lowercase hex SHA-256 of the name.
    pub aud: String,
    /// Host pattern (lower-case).
    pub host: HostPattern,
    /// Path prefix, normalised, starts with `/`, no trailing `/` unless it is `/`.
    pub path: String,
    /// Match the path prefix ignoring ASCII case.
    pub case_insensitive_paths: bool,
    /// Upstreams, round-robin.
    pub upstreams: Vec<Upstream>,
    /// Per-app session length; `None` means the global `session.duration`.
    pub session_duration: Option<Duration>,
    /// Connecting to an upstream gives up after this (then the next
    /// upstream is tried; none left: 504). `None`: `upstream_health.timeout`.
    pub connect_timeout: Option<Duration>,
    /// Waiting for the upstream's response (each read) gives up after this:
    /// 504. `None`: [`DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Option<Duration>,
    /// IdP names this app accepts; `None` = all.
    pub identity_providers: Option<Vec<String>>,
    /// Policies in file order.
    pub policies: Vec<Policy>,
    /// Where the app was defined (`file:line:col`), for messages.
    pub source: String,
    /// This app's metric children, resolved on first use.
    pub counters: crate::metrics::AppCounters,
}

/// How long an upstream may take to answer when the app sets no
/// `read_timeout` (nginx's `proxy_read_timeout` default).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Host part of an app: exact, or `*.suffix` (one or more labels, never the apex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `grafana.example.com`
    Exact(String),
    /// `*.example.com` stored as `.example.com`
    Wildcard(String),
}

/// A resolved upstream origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as written, for display.
    pub url: String,
    /// The address when the host is an IP literal. A host name is
    /// resolved when a request is forwarded (`proxy::resolve`), never at
    /// load, so `check` works offline.
    pub addr: Option<SocketAddr>,
    /// `host:port` to resolve (an IPv6 host in brackets).
    pub authority: std::sync::Arc<str>,
    /// `https://` upstream.
    pub tls: bool,
    /// Host name for SNI and the `Host` header sent upstream.
    pub host: String,
}

/// One policy of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub decision: Decision,
    pub include: Vec<Selector>,
    pub require: Vec<Selector>,
    pub exclude: Vec<Selector>,
}

/// What a matching policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block,
    Bypass,
    ServiceAuth,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Block => "block",
            Decision::Bypass => "bypass",
            Decision::ServiceAuth => "service_auth",
        }
    }
}

/// A rule inside include / require / exclude.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Everyone,
    /// Lower-cased full address.
    Email(String),
    /// Lower-cased domain, without `@`.
    EmailDomain(String),
    /// Exact group display name, interned.
    Group(GroupId),
    Ip(IpRange),
    /// Service token by name.
    ServiceToken(String),
    AnyValidServiceToken,
    /// A value of the `amr` claim, e.g. `mfa`.
    AuthMethod(String),
    /// IdP name.
    LoginMethod(String),
    /// A custom claim equal to a value (string compare; arrays match any element).
    Claim {
        name: String,
        value: String,
    },
}

impl Selector {
    /// The selector's key in policy files (`email`, `group`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Selector::Everyone => "everyone",
            Selector::Email(_) => "email",
            Selector::EmailDomain(_) => "email_domain",
            Selector::Group(_) => "group",
            Selector::Ip(_) => "ip",
            Selector::ServiceToken(_) => "service_token",
            Selector::AnyValidServiceToken => "any_valid_service_token",
            Selector::AuthMethod(_) => "auth_method",
            Selector::LoginMethod(_) => "login_method",
            Selector::Claim { .. } => "claim",
        }
    }

    /// Whether the selector looks only at the request or the service token,
    /// never at a user: the only kind `bypass` and `service_auth` may use.
    pub fn is_non_identity(&self) -> bool {
        matches!(
            self,
            Selector::Everyone
                | Selector::Ip(_)
                | Selector::ServiceToken(_)
                | Selector::AnyValidServiceToken
        )
    }

    /// Whether the selector matches service tokens only.
    pub fn is_service(&self) -> bool {
        matches!(
            self,
            Selector::ServiceToken(_) | Selector::AnyValidServiceToken
        )
    }
}

/// `group:engineering`, `ip:10.0.0.0/8`, `claim:department=eng`, `everyone`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Everyone | Selector::AnyValidServiceToken => f.write_str(self.kind()),
            Selector::Group(g) => write!(f, "group:{g}"),
            Selector::Email(v)
            | Selector::EmailDomain(v)
            | Selector::ServiceToken(v)
            | Selector::AuthMethod(v)
            | Selector::LoginMethod(v) => write!(f, "{}:{v}", self.kind()),
            Selector::Ip(net) => write!(f, "ip:{net}"),
            Selector::Claim { name, value } => write!(f, "claim:{name}={value}"),
        }
    }
}

impl HostPattern {
    /// The pattern as written: `grafana.example.com` or `*.example.com`.
    pub fn as_written(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        }
    }
}

/// A service token: `CF-Access-Client-Id` + secret whose SHA-256 is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    /// Shared: a request admitted by the token carries the name to the
    /// access log without copying it.
    pub name: std::sync::Arc<str>,
    pub client_id: String,
    pub client_secret_sha256: [u8; 32],
}
