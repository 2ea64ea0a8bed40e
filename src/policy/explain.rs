//! `portcullis explain` and `portcullis check` output: the compiled table and
//! a per-policy account of why each matched or not.
//!
//! `explain` follows the access phase exactly: the URL is normalised with
//! the proxy's own `proxy::path::normalize`, the app found by the same
//! router, and every selector checked by `policy::eval`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{format_duration, Config};
use crate::identity::{Groups, Identity};
use crate::policy::eval::{selector_matches, Phase, RequestView, Subject};
use crate::policy::model::{App, Decision, Policy, PolicySet, Selector};

/// Who `explain` pretends is asking (the command line's flags).
#[derive(Debug, Clone, Default)]
pub struct ExplainSubject {
    /// `--email`; without it (and without a service token) there is no session.
    pub email: Option<String>,
    /// `--group`, repeatable.
    pub groups: Vec<String>,
    /// `--ip`; without it `ip` selectors do not match.
    pub ip: Option<IpAddr>,
    /// `--amr`, repeatable.
    pub amr: Vec<String>,
    /// `--idp`: the login method (IdP name).
    pub idp: Option<String>,
    /// `--claim NAME=VALUE`, repeatable; a name given twice is an array claim.
    pub claims: Vec<String>,
    /// `--service-token NAME`: a valid token of that name.
    pub service_token: Option<String>,
}

/// Bad `explain` input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("invalid URL `{0}`: expected an absolute http:// or https:// URL")]
    BadUrl(String),
    #[error("invalid claim `{0}`: expected NAME=VALUE")]
    BadClaim(String),
    #[error("unknown service token `{0}`")]
    UnknownServiceToken(String),
}

/// Explain which policy decides a request to `url` for `subject`, and why.
pub fn explain(
    set: &PolicySet,
    url: &str,
    subject: ExplainSubject,
) -> Result<String, ExplainError> {
    let (host, target) = split_url(url)?;
    let identity = identity(&subject)?;
    let token = match &subject.service_token {
        Some(name) => Some(
            set.service_tokens
                .iter()
                .find(|t| *t.name == **name)
                .ok_or_else(|| ExplainError::UnknownServiceToken(name.clone()))?,
        ),
        None => None,
    };
    let mut out = String::new();
    let _ = writeln!(out, "url: {url}");
    let path = match crate::proxy::path::normalize(target) {
        Ok(t) => t.path.into_owned(),
        Err(e) => {
            let _ = writeln!(out, "decision: 400 bad request ({e})");
            return Ok(out);
        }
    };
    let _ = writeln!(out, "host: {host}  path: {path}");
    let Some(app) = set.router.route(&set.apps, &host, &path) else {
        let _ = writeln!(out, "no app: 404");
        return Ok(out);
    };
    let _ = writeln!(
        out,
        "app: {} ({} {}, defined at {})",
        app.name,
        app.host.as_written(),
        app.path,
        app.source
    );
    let view = RequestView {
        client_ip: subject.ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
    };
    let ex = Explainer {
        ip_known: subject.ip.is_some(),
        view,
    };

    let _ = writeln!(out, "subject: {}", describe(&subject));
    if let Some(p) = ex.phase(
        &mut out,
        app,
        Phase::Bypass,
        &Subject::Anonymous,
        "bypass policies",
    ) {
        let _ = writeln!(
            out,
            "decision: bypass by policy `{}` (forwarded without identity)",
            p.name
        );
        return Ok(out);
    }
    if let Some(token) = token {
        let decided = ex.phase(
            &mut out,
            app,
            Phase::Service,
            &Subject::Service(token),
            "service_auth policies",
        );
        let _ = match decided {
            Some(p) => writeln!(out, "decision: allow by service_auth policy `{}`", p.name),
            None => writeln!(out, "decision: 403 no service_auth policy matched"),
        };
        return Ok(out);
    }
    let Some(identity) = identity else {
        let _ = writeln!(
            out,
            "decision: no session: browsers are sent to login (302), other clients get 401"
        );
        return Ok(out);
    };
    let decided = ex.phase(
        &mut out,
        app,
        Phase::Identity,
        &Subject::User(&identity),
        "allow/block policies",
    );
    let _ = match decided {
        Some(p) if p.decision == Decision::Allow => {
            writeln!(out, "decision: allow by policy `{}`", p.name)
        }
        Some(p) => writeln!(out, "decision: block (403) by policy `{}`", p.name),
        None => writeln!(out, "decision: 403 no policy matched"),
    };
    Ok(out)
}

struct Explainer {
    ip_known: bool,
    view: RequestView,
}

impl Explainer {
    fn matches(&self, sel: &Selector, subject: &Subject<'_>) -> bool {
        if matches!(sel, Selector::Ip(_)) && !self.ip_known {
            return false;
        }
        selector_matches(sel, subject, &self.view)
    }

    /// Print each policy of `phase` in order with why it matched or not;
    /// returns the first that matched.
    fn phase<'a>(
        &self,
        out: &mut String,
        app: &'a App,
        phase: Phase,
        subject: &Subject<'_>,
        title: &str,
    ) -> Option<&'a Policy> {
        let mut decided: Option<&Policy> = None;
        let mut any = false;
        for (i, p) in app.policies.iter().enumerate() {
            if !phase.admits(p.decision) {
                continue;
            }
            if !any {
                let _ = writeln!(out, "{title}:");
                any = true;
            }
            let head = format!("  {}. {} ({})", i + 1, p.name, p.decision.as_str());
            if decided.is_some() {
                let _ = writeln!(out, "{head}: not reached");
                continue;
            }
            let (matched, why) = self.policy(p, subject);
            let _ = writeln!(
                out,
                "{head}: {why} → {}",
                if matched { "MATCH" } else { "no match" }
            );
            if matched {
                decided = Some(p);
            }
        }
        decided
    }

    fn policy(&self, p: &Policy, subject: &Subject<'_>) -> (bool, String) {
        let Some(inc) = p.include.iter().find(|s| self.matches(s, subject)) else {
            let tried: Vec<String> = p.include.iter().map(|s| self.label(s)).collect();
            return (false, format!("no include matched ({})", tried.join(", ")));
        };
        let mut why = format!("include {inc} matched");
        if let Some(req) = p.require.iter().find(|s| !self.matches(s, subject)) {
            let _ = write!(why, "; require {} did not match", self.label(req));
            return (false, why);
        }
        if !p.require.is_empty() {
            why.push_str("; every require matched");
        }
        if let Some(exc) = p.exclude.iter().find(|s| self.matches(s, subject)) {
            let _ = write!(why, "; exclude {exc} matched");
            return (false, why);
        }
        (true, why)
    }

    fn label(&self, sel: &Selector) -> String {
        if matches!(sel, Selector::Ip(_)) && !self.ip_known {
            format!("{sel} [no --ip given]")
        } else {
            sel.to_string()
        }
    }
}

/// Split an absolute URL into a lower-cased host without port and the
/// request target (`/path?query`, `/` when empty).
fn split_url(url: &str) -> Result<(String, &str), ExplainError> {
    let bad = || ExplainError::BadUrl(url.to_string());
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(bad());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad());
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let target = if target.is_empty() { "/" } else { target };
    Ok((host.to_ascii_lowercase(), target))
}

/// The identity `explain` evaluates allow/block policies against; `None`
/// when no `--email` was given.
fn identity(s: &ExplainSubject) -> Result<Option<Identity>, ExplainError> {
    let mut custom = serde_json::Map::new();
    for c in &s.claims {
        let (name, value) = c
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| ExplainError::BadClaim(c.clone()))?;
        let value = serde_json::Value::String(value.to_string());
        match custom.get_mut(name) {
            Some(serde_json::Value::Array(items)) => items.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.take(), value]),
            None => {
                custom.insert(name.to_string(), value);
            }
        }
    }
    let Some(email) = &s.email else {
        return Ok(None);
    };
    let id = Identity {
        sub: email.clone(),
        email: email.clone(),
        email_verified: true,
        name: None,
        idp: s.idp.clone().unwrap_or_default(),
        idp_type: String::new(),
        groups: Groups::from_names(&s.groups),
        amr: s.amr.clone(),
        custom: custom.into(),
    };
    Ok(Some(id))
}

fn describe(s: &ExplainSubject) -> String {
    let mut parts = Vec::new();
    match (&s.service_token, &s.email) {
        (Some(t), _) => parts.push(format!("service token {t}")),
        (None, Some(e)) => parts.push(format!("user {e}")),
        (None, None) => parts.push("anonymous (no session)".to_string()),
    }
    if s.service_token.is_none() && s.email.is_some() {
        if !s.groups.is_empty() {
            parts.push(format!("groups: {}", s.groups.join(", ")));
        }
        if !s.amr.is_empty() {
            parts.push(format!("amr: {}", s.amr.join(", ")));
        }
        if let Some(idp) = &s.idp {
            parts.push(format!("idp: {idp}"));
        }
        if !s.claims.is_empty() {
            parts.push(format!("claims: {}", s.claims.join(", ")));
        }
    }
    parts.push(match s.ip {
        Some(ip) => format!("ip: {ip}"),
        None => "ip: not given".to_string(),
    });
    parts.join("; ")
}

/// The offline table `portcullis check` prints: one row per app, then its
/// policies in evaluation order, then the service tokens.
pub fn check_table(cfg: &Config, set: &PolicySet) -> String {
    let header = ["APP", "AUD", "HOST", "PATH", "UPSTREAMS", "SESSION"];
    let rows: Vec<[String; 6]> = set
        .apps
        .iter()
        .map(|a| {
            let session = match a.session_duration {
                Some(d) => format_duration(d),
                None => format!("{} (default)", format_duration(cfg.session.duration)),
            };
            let upstreams: Vec<&str> = a.upstreams.iter().map(|u| u.url.as_str()).collect();
            [
                a.name.clone(),
                a.aud.clone(),
                a.host.as_written(),
                a.path.clone(),
                upstreams.join(","),
                session,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(&header));
    for (app, row) in set.apps.iter().zip(&rows) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
        if app.case_insensitive_paths {
            let _ = writeln!(out, "    paths match case-insensitively");
        }
        if let Some(idps) = &app.identity_providers {
            let _ = writeln!(out, "    identity providers: {}", idps.join(", "));
        }
        for (i, p) in ordered(app) {
            let _ = writeln!(
                out,
                "    {}. {} [{}] {}",
                i + 1,
                p.name,
                p.decision.as_str(),
                selectors(p)
            );
        }
    }
    if !set.service_tokens.is_empty() {
        let _ = writeln!(out, "service tokens:");
        for t in &set.service_tokens {
            let _ = writeln!(out, "    {} (client id {})", t.name, t.client_id);
        }
    }
    out
}

/// Policies in the order the access phase evaluates them: bypass, then
/// service_auth, then allow/block; file order within each.
fn ordered(app: &App) -> Vec<(usize, &Policy)> {
    let mut v: Vec<(usize, &Policy)> = app.policies.iter().enumerate().collect();
    v.sort_by_key(|(_, p)| match p.decision {
        Decision::Bypass => 0,
        Decision::ServiceAuth => 1,
        Decision::Allow | Decision::Block => 2,
    });
    v
}

fn selectors(p: &Policy) -> String {
    let list = |name: &str, sels: &[Selector]| {
        let items: Vec<String> = sels.iter().map(Selector::to_string).collect();
        format!("{name}: {}", items.join(", "))
    };
    let mut parts = vec![list("include", &p.include)];
    if !p.require.is_empty() {
        parts.push(list("require", &p.require));
    }
    if !p.exclude.is_empty() {
        parts.push(list("exclude", &p.exclude));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests;
