//! Compiling one `apps:` entry: domain pattern, normalised path prefix,
//! upstreams resolved to socket addresses, audience tag, session length,
//! IdP list and policies.

use std::net::SocketAddr;

use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use super::{selector, Cx, Key};
use crate::config::duration::parse_duration;
use crate::config::host::is_valid_hostname;
use crate::policy::model::{App, HostPattern, Upstream};
use crate::policy::raw::{OneOrMany, RawApp, Str};

/// Compile one app; `None` after recording its errors.
pub(super) fn compile(
    cx: &mut Cx<'_>,
    raw: &Spanned<RawApp>,
    key: Key<'_>,
    tokens: &[&str],
) -> Option<App> {
    let at = raw.referenced;
    let a = &raw.value;
    let name = cx
        .required(a.name.as_ref(), &at, key.field("name"))
        .and_then(|s| cx.non_empty(s, key.field("name")));
    let host = cx
        .required(a.domain.as_ref(), &at, key.field("domain"))
        .and_then(|s| domain(cx, s, key.field("domain")));
    let path = match &a.path {
        None => Some("/".to_string()),
        Some(s) => path(cx, s, key.field("path")),
    };
    let upstreams = cx
        .required(a.upstream.as_ref(), &at, key.field("upstream"))
        .and_then(|u| upstreams(cx, u, key.field("upstream")));
    let session_duration = match &a.session_duration {
        None => Some(None),
        Some(s) => match parse_duration(&s.value) {
            Ok(d) => Some(Some(d)),
            Err(e) => {
                cx.err(&s.referenced, key.field("session_duration"), e.to_string());
                None
            }
        },
    };
    let mut timeout = |raw: &Option<crate::policy::raw::Str>, field: &'static str| match raw {
        None => Some(None),
        Some(s) => match parse_duration(&s.value) {
            Ok(d) if !d.is_zero() && d <= std::time::Duration::from_secs(3600) => Some(Some(d)),
            Ok(_) => {
                cx.err(
                    &s.referenced,
                    key.field(field),
                    format!(
                        "{} is out of range: expected more than 0s and at most 1h",
                        s.value
                    ),
                );
                None
            }
            Err(e) => {
                cx.err(&s.referenced, key.field(field), e.to_string());
                None
            }
        },
    };
    let connect_timeout = timeout(&a.connect_timeout, "connect_timeout");
    let read_timeout = timeout(&a.read_timeout, "read_timeout");
    let aud = match &a.aud {
        None => name.as_deref().map(default_aud),
        Some(s) => aud(cx, s, key.field("aud")),
    };
    let identity_providers = match &a.identity_providers {
        None => Some(None),
        Some(list) => idps(cx, list, key.field("identity_providers")).map(Some),
    };
    let policies_key = key.field("policies");
    let policies = cx
        .required(a.policies.as_ref(), &at, policies_key)
        .and_then(|list| {
            if list.value.is_empty() {
                cx.err(
                    &list.referenced,
                    policies_key,
                    "must list at least one policy (an app without policies denies everyone)",
                );
                return None;
            }
            let mut out = Vec::with_capacity(list.value.len());
            let mut ok = true;
            for (i, p) in list.value.iter().enumerate() {
                let pkey = policies_key.index(i);
                match selector::policy(cx, p, pkey, tokens) {
                    Some(pol)
                        if out
                            .iter()
                            .any(|o: &crate::policy::model::Policy| o.name == pol.name) =>
                    {
                        let at = p.value.name.as_ref().map_or(p.referenced, |n| n.referenced);
                        cx.err(
                            &at,
                            pkey.field("name"),
                            format!("duplicate policy name `{}` in this app", pol.name),
                        );
                        ok = false;
                    }
                    Some(pol) => out.push(pol),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        });
    Some(App {
        name: name?,
        aud: aud?,
        host: host?,
        path: path?,
        case_insensitive_paths: a.case_insensitive_paths.unwrap_or(false),
        upstreams: upstreams?,
        session_duration: session_duration?,
        connect_timeout: connect_timeout?,
        read_timeout: read_timeout?,
        identity_providers: identity_providers?,
        policies: policies?,
        source: cx.source(&at),
        counters: Default::default(),
    })
}

/// Lowercase hex SHA-256 of the app name (Cloudflare-style AUD tag).
pub fn default_aud(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn domain(cx: &mut Cx<'_>, s: &Str, key: Key<'_>) -> Option<HostPattern> {
    let v = s.value.trim().to_ascii_lowercase();
    let fail = |cx: &mut Cx<'_>, m: String| {
        cx.err(&s.referenced, key, m);
        None
    };
    if v.contains("://") || v.contains('/') {
        return fail(cx, format!("`{v}` is not a host name: write the domain only, e.g. `grafana.example.com` (paths go in `path`)"));
    }
    if v.contains(':') {
        return fail(
            cx,
            format!("`{v}` must not include a port: host matching ignores the port"),
        );
    }
    if let Some(suffix) = v.strip_prefix("*.") {
        if is_valid_hostname(suffix) {
            return Some(HostPattern::Wildcard(format!(".{suffix}")));
        }
    } else if !v.contains('*') && (is_valid_hostname(&v) || v.parse::<std::net::Ipv4Addr>().is_ok())
    {
        return Some(HostPattern::Exact(v));
    }
    if v.contains('*') {
        return fail(cx, format!("invalid domain `{v}`: a wildcard is only allowed as the whole first label, e.g. `*.example.com`"));
    }
    fail(cx, format!("invalid domain `{v}`: expected a host name such as `grafana.example.com` or `*.example.com`"))
}

/// Check a path prefix: starts with `/`, already normalised. A trailing `/`
/// is dropped (`/admin/` is `/admin`).
fn path(cx: &mut Cx<'_>, s: &Str, key: Key<'_>) -> Option<String> {
    let v = s.value.trim();
    let problem = if !v.starts_with('/') {
        Some(format!("path `{v}` must start with `/`"))
    } else if v.contains("//") {
        Some(format!("path `{v}` must not contain `//`"))
    } else if v.split('/').any(|seg| seg == "." || seg == "..") {
        Some(format!("path `{v}` must not contain `.` or `..` segments"))
    } else if let Some(c) = v
        .chars()
        .find(|c| matches!(c, ';' | '%' | '?' | '#' | '\\'))
    {
        Some(format!("path `{v}` must not contain `{c}`: paths are matched after normalisation, write them decoded"))
    } else if v
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || !c.is_ascii())
    {
        Some(format!("path `{v}` must be printable ASCII without spaces"))
    } else {
        None
    };
    if let Some(m) = problem {
        cx.err(&s.referenced, key, m);
        return None;
    }
    let trimmed = v.trim_end_matches('/');
    Some(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

fn upstreams(cx: &mut Cx<'_>, u: &Spanned<OneOrMany>, key: Key<'_>) -> Option<Vec<Upstream>> {
    let list = &u.value.0;
    if list.is_empty() {
        cx.err(&u.referenced, key, "must name at least one upstream URL");
        return None;
    }
    let single = list.len() == 1 && list[0].referenced == Location::UNKNOWN;
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, s) in list.iter().enumerate() {
        let (k, at) = if single {
            (key, u.referenced)
        } else {
            (key.index(i), s.referenced)
        };
        match upstream(s.value.trim()) {
            Ok(up) => out.push(up),
            Err(m) => {
                cx.err(&at, k, m);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Parse `http(s)://host[:port]`. An IP literal is the address; a name is
/// resolved when a request is forwarded.
fn upstream(url_text: &str) -> Result<Upstream, String> {
    let url =
        url::Url::parse(url_text).map_err(|e| format!("invalid upstream URL `{url_text}`: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "upstream `{url_text}` has scheme `{other}`: expected http or https"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "upstream `{url_text}` must not contain credentials"
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "upstream `{url_text}` must be scheme://host[:port] without a path or query"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("upstream `{url_text}` has no host"))?;
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(SocketAddr::new(ip.into(), port)),
        Some(url::Host::Ipv6(ip)) => Some(SocketAddr::new(ip.into(), port)),
        _ => None,
    };
    Ok(Upstream {
        url: url_text.to_string(),
        addr,
        authority: format!("{host}:{port}").into(),
        tls,
        host: bare.to_string(),
    })
}

fn aud(cx: &mut Cx<'_>, s: &Str, key: Key<'_>) -> Option<String> {
    let v = cx.non_empty(s, key)?;
    if v.len() > 128
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        cx.err(
            &s.referenced,
            key,
            format!("invalid audience tag `{v}`: up to 128 letters, digits, `-`, `.`, `_`"),
        );
        return None;
    }
    Some(v)
}

fn idps(cx: &mut Cx<'_>, list: &Spanned<Vec<Str>>, key: Key<'_>) -> Option<Vec<String>> {
    if list.value.is_empty() {
        cx.err(
            &list.referenced,
            key,
            "must name at least one identity provider (omit the key to allow all)",
        );
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(list.value.len());
    let mut ok = true;
    for (i, s) in list.value.iter().enumerate() {
        let k = key.index(i);
        match cx.idp_name(s, k) {
            Some(v) if out.contains(&v) => {
                cx.err(
                    &s.referenced,
                    k,
                    format!("duplicate identity provider `{v}`"),
                );
                ok = false;
            }
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
