//! The validate pass: raw config (`config::raw`) into [`Config`], expanding
//! `${VAR}` in strings, applying defaults, resolving relative paths against
//! the config folder and collecting every problem.

mod access_log;
mod idp;
pub(crate) use idp::DEFAULT_SCOPES;
mod listen;
mod public;
mod secret;
mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use crate::policy::ip_range::IpRange;

use super::duration::parse_duration;
use super::env::expand;
use super::host::{check_cookie_name, check_header_name, check_path_prefix, parse_host_port};
use super::load::ConfigError;
use super::raw::{
    RawCache, RawConfig, RawHeaders, RawSession, RawSwitchName, RawUpstreamHealth, Str,
};
use super::yaml::line_col;
use super::{CacheConfig, Config, HeaderNames, SessionConfig, UpstreamHealthConfig};

/// Defaults (DESIGN.md "Config defaults").
pub const DEFAULT_STORE: &str = "sqlite://portcullis.db";
pub const DEFAULT_KEY_DIR: &str = "keys";
pub const DEFAULT_COOKIE_NAME: &str = "CF_Authorization";
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_ENDPOINT_PREFIX: &str = "/cdn-cgi/access";
pub const DEFAULT_SCIM_PATH: &str = "/scim/v2";
pub const DEFAULT_ASSERTION_HEADER: &str = "Cf-Access-Jwt-Assertion";
pub const DEFAULT_EMAIL_HEADER: &str = "Cf-Access-Authenticated-User-Email";
pub const DEFAULT_GROUPS_HEADER: &str = "X-Portcullis-Groups";
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default `upstream_health.interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default `upstream_health.timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 5;
/// Default `upgrade_sock`, next to the config file.
pub const DEFAULT_UPGRADE_SOCK: &str = "portcullis-upgrade.sock";
/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes
/// with the closing NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Error collector with the file name and the env lookup.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
    /// Location of the whole document, for missing top-level keys.
    root: Location,
    pub errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, loc: &Location, key: &str, message: impl Into<String>) {
        let (line, col) = line_col(loc);
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The string with `${VAR}` expanded; records an error and returns `None` on failure.
    pub(crate) fn string(&mut self, s: &Str, key: &str) -> Option<String> {
        match expand(&s.value, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(&s.referenced, key, e.to_string());
                None
            }
        }
    }

    /// Like [`Ctx::string`] but also rejects empty (or all-blank) values.
    pub(crate) fn non_empty(&mut self, s: &Str, key: &str) -> Option<String> {
        let v = self.string(s, key)?;
        if v.trim().is_empty() {
            self.err(&s.referenced, key, "must not be empty");
            return None;
        }
        Some(v)
    }

    /// A required key: reports it missing at `at` when absent.
    pub(crate) fn required<'v, T>(
        &mut self,
        v: Option<&'v T>,
        at: &Location,
        key: &str,
    ) -> Option<&'v T> {
        if v.is_none() {
            self.err(at, key, "required key is missing");
        }
        v
    }

    fn path(&self, p: &str) -> PathBuf {
        resolve(self.base_dir, p)
    }
}

/// `p` as is when absolute, else joined to `base`.
pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Validate `raw` into a [`Config`]. `base_dir` must be absolute.
pub(crate) fn validate(
    file: &str,
    raw: &Spanned<RawConfig>,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Ctx {
        file,
        env,
        base_dir,
        root: raw.referenced,
        errors: Vec::new(),
    };
    let root = cx.root;
    let r = &raw.value;

    let listen = listen::listeners(&mut cx, r.listen.as_ref());
    let auth_domain = cx
        .required(r.auth_domain.as_ref(), &root, "auth_domain")
        .and_then(|s| {
            let v = cx.string(s, "auth_domain")?;
            parse_host_port(&v)
                .map_err(|m| cx.err(&s.referenced, "auth_domain", m))
                .ok()
        });
    let threads = match &r.threads {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(t) if (1..=1024).contains(&t.value) => t.value as usize,
        Some(t) => {
            cx.err(
                &t.referenced,
                "threads",
                format!("{} is out of range: expected 1 to 1024", t.value),
            );
            1
        }
    };
    let metrics = listen::metrics(&mut cx, r, &listen);
    let store = store::store(&mut cx, r.store.as_ref(), threads);
    let key_dir = match &r.key_dir {
        None => Some(cx.path(DEFAULT_KEY_DIR)),
        // Fleet mode keeps the signing keys in the database; a `key_dir`
        // beside it would suggest files that are never read.
        Some(s) if store.as_ref().is_some_and(|s| s.postgres) => {
            cx.err(
                &s.referenced,
                "key_dir",
                "not used with a PostgreSQL store (signing keys live in the database); remove it",
            );
            None
        }
        Some(s) => cx.non_empty(s, "key_dir").map(|v| cx.path(&v)),
    };
    let session = session(&mut cx, r.session.as_ref());
    let identity_providers = idp::identity_providers(&mut cx, r.identity_providers.as_deref());
    let policies = cx
        .required(r.policies.as_ref(), &root, "policies")
        .and_then(|s| cx.non_empty(s, "policies"))
        .map(|v| cx.path(&v));
    let endpoint_prefix = path_prefix(
        &mut cx,
        r.endpoint_prefix.as_ref(),
        "endpoint_prefix",
        DEFAULT_ENDPOINT_PREFIX,
    );
    let scim_path = path_prefix(
        &mut cx,
        r.scim_path.as_ref(),
        "scim_path",
        DEFAULT_SCIM_PATH,
    );
    if let (Some(a), Some(b)) = (&endpoint_prefix, &scim_path) {
        if overlaps(a, b) {
            let at = r.scim_path.as_ref().map_or(root, |s| s.referenced);
            cx.err(
                &at,
                "scim_path",
                format!("`{b}` overlaps endpoint_prefix `{a}`"),
            );
        }
    }
    let headers = headers(&mut cx, r.headers.as_ref());
    let cache = cache(&mut cx, r.cache.as_ref());
    let upstream_health = upstream_health(&mut cx, r.upstream_health.as_ref());
    let public = public::public(&mut cx, r.public.as_ref());
    let trusted_proxies = trusted_proxies(&mut cx, r.trusted_proxies.as_ref());
    listen::check_proxy_protocol(&mut cx, r.listen.as_ref(), r.trusted_proxies.as_ref());
    let access_log = access_log::access_log(&mut cx, r.access_log.as_ref());
    if let (Some(a), Some(s), Ok(p)) = (&auth_domain, &r.auth_domain, &public) {
        public::check_auth_port(&mut cx, a, &s.referenced, p.as_ref());
    }
    let grace_period_seconds = match &r.grace_period_seconds {
        None => DEFAULT_GRACE_PERIOD_SECONDS,
        Some(g) if g.value <= 3600 => g.value,
        Some(g) => {
            cx.err(
                &g.referenced,
                "grace_period_seconds",
                format!("{} is out of range: expected 0 to 3600", g.value),
            );
            0
        }
    };

    let upgrade_sock = upgrade_sock(&mut cx, r.upgrade_sock.as_ref());

    let (Some(auth_domain), Some(store), Some(key_dir), Some(session), Some(policies)) =
        (auth_domain, store, key_dir, session, policies)
    else {
        return Err(never_empty(cx.errors));
    };
    let (Some(endpoint_prefix), Some(scim_path), Some(headers), Some(cache), Some(upstream_health)) =
        (endpoint_prefix, scim_path, headers, cache, upstream_health)
    else {
        return Err(never_empty(cx.errors));
    };
    let (Ok(public), Some(upgrade_sock)) = (public, upgrade_sock) else {
        return Err(never_empty(cx.errors));
    };
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Config {
        listen,
        auth_domain,
        threads,
        metrics,
        store: store.url,
        store_options: store.options,
        key_dir,
        session,
        identity_providers,
        policies,
        endpoint_prefix,
        scim_path,
        headers,
        cache,
        grace_period_seconds,
        upstream_health,
        public,
        trusted_proxies,
        upgrade_sock,
        access_log,
    })
}

/// `trusted_proxies`: CIDRs (or single addresses) of the load balancers
/// whose `X-Forwarded-For`, `X-Request-Id` and PROXY header are believed.
fn trusted_proxies(cx: &mut Ctx<'_>, raw: Option<&Spanned<Vec<Str>>>) -> Vec<IpRange> {
    let Some(list) = raw else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.value.len());
    for (i, s) in list.value.iter().enumerate() {
        let key = format!("trusted_proxies[{i}]");
        let Some(v) = cx.non_empty(s, &key) else {
            continue;
        };
        match v.parse::<IpRange>() {
            Ok(r) => out.push(r),
            Err(_) => cx.err(
                &s.referenced,
                &key,
                format!("`{v}` is not an IP address or CIDR range (e.g. 10.0.0.0/8)"),
            ),
        }
    }
    out
}

/// `upgrade_sock`: a path (relative to the config folder) short enough for
/// a Unix socket.
fn upgrade_sock(cx: &mut Ctx<'_>, raw: Option<&Str>) -> Option<PathBuf> {
    let (path, at) = match raw {
        None => return Some(cx.path(DEFAULT_UPGRADE_SOCK)),
        Some(s) => (cx.non_empty(s, "upgrade_sock").map(|v| cx.path(&v))?, s),
    };
    let len = path.as_os_str().len();
    if len > MAX_UNIX_SOCKET_PATH {
        cx.err(
            &at.referenced,
            "upgrade_sock",
            format!("the path is {len} bytes once resolved; a Unix socket path is at most {MAX_UNIX_SOCKET_PATH}"),
        );
        return None;
    }
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        cx.err(
            &at.referenced,
            "upgrade_sock",
            "must name a socket file, not a folder",
        );
        return None;
    }
    Some(path)
}

/// Every `None` above records an error; should one not, still fail closed.
fn never_empty(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    if errors.is_empty() {
        errors.push(ConfigError {
            file: String::new(),
            line: 1,
            col: 1,
            key: "(document)".to_string(),
            message: "internal error: incomplete configuration".to_string(),
        });
    }
    errors
}

fn session(cx: &mut Ctx<'_>, raw: Option<&RawSession>) -> Option<SessionConfig> {
    let cookie_name = match raw.and_then(|s| s.cookie_name.as_ref()) {
        None => Some(DEFAULT_COOKIE_NAME.to_string()),
        Some(s) => cx.string(s, "session.cookie_name").and_then(|v| {
            check_cookie_name(&v)
                .map(|()| v)
                .map_err(|m| cx.err(&s.referenced, "session.cookie_name", m))
                .ok()
        }),
    };
    let duration = duration(
        cx,
        raw.and_then(|s| s.duration.as_ref()),
        "session.duration",
        DEFAULT_SESSION_DURATION,
    );
    Some(SessionConfig {
        cookie_name: cookie_name?,
        duration: duration?,
    })
}

pub(crate) fn duration(
    cx: &mut Ctx<'_>,
    raw: Option<&Str>,
    key: &str,
    default: Duration,
) -> Option<Duration> {
    let Some(s) = raw else {
        return Some(default);
    };
    let v = cx.string(s, key)?;
    parse_duration(&v)
        .map_err(|e| cx.err(&s.referenced, key, e.to_string()))
        .ok()
}

fn path_prefix(cx: &mut Ctx<'_>, raw: Option<&Str>, key: &str, default: &str) -> Option<String> {
    let Some(s) = raw else {
        return Some(default.to_string());
    };
    let v = cx.string(s, key)?;
    check_path_prefix(&v)
        .map(|()| v)
        .map_err(|m| cx.err(&s.referenced, key, m))
        .ok()
}

/// One prefix equals the other or contains it on a segment boundary.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |long: &str, short: &str| {
        long == short
            || (long.starts_with(short) && long.as_bytes().get(short.len()) == Some(&b'/'))
    };
    under(a, b) || under(b, a)
}

fn headers(cx: &mut Ctx<'_>, spanned: Option<&Spanned<RawHeaders>>) -> Option<HeaderNames> {
    let raw = spanned.map(|h| &h.value);
    let name = |cx: &mut Ctx<'_>, v: Option<&Str>, key: &str, default: &str| match v {
        None => Some(default.to_string()),
        Some(s) => cx.string(s, key).and_then(|v| {
            check_header_name(&v)
                .map(|()| v)
                .map_err(|m| cx.err(&s.referenced, key, m))
                .ok()
        }),
    };
    let assertion = name(
        cx,
        raw.and_then(|h| h.assertion.as_ref()),
        "headers.assertion",
        DEFAULT_ASSERTION_HEADER,
    );
    let email = name(
        cx,
        raw.and_then(|h| h.email.as_ref()),
        "headers.email",
        DEFAULT_EMAIL_HEADER,
    );
    let groups = match raw.and_then(|h| h.groups.as_ref()) {
        None => Some(Some(DEFAULT_GROUPS_HEADER.to_string())),
        Some(g) => match &g.value {
            RawSwitchName::Flag(false) | RawSwitchName::Null(()) => Some(None),
            RawSwitchName::Flag(true) => Some(Some(DEFAULT_GROUPS_HEADER.to_string())),
            RawSwitchName::Name(n) => {
                let s = Spanned::new(n.clone(), g.referenced, g.defined);
                name(cx, Some(&s), "headers.groups", DEFAULT_GROUPS_HEADER).map(Some)
            }
        },
    };
    let (assertion, email, groups) = (assertion?, email?, groups?);
    let mut seen: Vec<&str> = vec![&assertion, &email];
    seen.extend(groups.as_deref());
    for (i, a) in seen.iter().enumerate() {
        if seen[..i].iter().any(|b| b.eq_ignore_ascii_case(a)) {
            let at = spanned.map_or(cx.root, |h| h.referenced);
            cx.err(&at, "headers", format!("header name `{a}` is used twice"));
            return None;
        }
    }
    Some(HeaderNames {
        assertion,
        email,
        groups,
        forward_claims: raw.and_then(|h| h.forward_claims).unwrap_or(false),
    })
}

fn upstream_health(
    cx: &mut Ctx<'_>,
    raw: Option<&RawUpstreamHealth>,
) -> Option<UpstreamHealthConfig> {
    let mut bounded = |s: Option<&Str>, key: &str, default: Duration, max: (Duration, &str)| {
        let d = duration(cx, s, key, default)?;
        if d > max.0 {
            let at = s.map_or(Location::UNKNOWN, |s| s.referenced);
            cx.err(&at, key, format!("must be at most {}", max.1));
            return None;
        }
        Some(d)
    };
    let interval = bounded(
        raw.and_then(|h| h.interval.as_ref()),
        "upstream_health.interval",
        DEFAULT_HEALTH_INTERVAL,
        (Duration::from_secs(86_400), "24h"),
    );
    let timeout = bounded(
        raw.and_then(|h| h.timeout.as_ref()),
        "upstream_health.timeout",
        DEFAULT_HEALTH_TIMEOUT,
        (Duration::from_secs(300), "5m"),
    );
    Some(UpstreamHealthConfig {
        interval: interval?,
        timeout: timeout?,
    })
}

fn cache(cx: &mut Ctx<'_>, raw: Option<&RawCache>) -> Option<CacheConfig> {
    let max_entries = match raw.and_then(|c| c.max_entries.as_ref()) {
        None => Some(DEFAULT_CACHE_MAX_ENTRIES),
        Some(m) if m.value > 0 => Some(m.value),
        Some(m) => {
            cx.err(&m.referenced, "cache.max_entries", "must be at least 1");
            None
        }
    };
    let ttl = duration(
        cx,
        raw.and_then(|c| c.ttl.as_ref()),
        "cache.ttl",
        DEFAULT_CACHE_TTL,
    );
    Some(CacheConfig {
        max_entries: max_entries?,
        ttl: ttl?,
    })
}
