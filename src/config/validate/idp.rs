//! Validation of `identity_providers` entries (Cloudflare's API shape):
//! required keys per `type`, issuer derivation for Okta, SCIM settings.

use serde_saphyr::{Location, Spanned};

use super::{secret, Ctx};
use crate::config::raw::{RawIdp, RawIdpKind, RawIdpSettings, RawScim, Str};
use crate::config::{IdpConfig, IdpKind, ScimConfig};

/// Scopes requested when `scopes` is not set.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "email", "profile", "groups"];
/// Shortest accepted `scim_config.secret`.
pub const MIN_SCIM_SECRET_LEN: usize = 16;

pub(super) fn identity_providers(
    cx: &mut Ctx<'_>,
    raw: Option<&[Spanned<RawIdp>]>,
) -> Vec<IdpConfig> {
    let mut out: Vec<IdpConfig> = Vec::new();
    for (i, entry) in raw.unwrap_or_default().iter().enumerate() {
        let key = format!("identity_providers[{i}]");
        let Some(idp) = one(cx, entry, &key) else {
            continue;
        };
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(&idp.name)) {
            let at = entry
                .value
                .name
                .as_ref()
                .map_or(entry.referenced, |n| n.referenced);
            cx.err(
                &at,
                &format!("{key}.name"),
                format!("duplicate identity provider name `{}`", idp.name),
            );
            continue;
        }
        let same_secret = idp
            .scim
            .as_ref()
            .and_then(|s| s.secret.as_ref())
            .and_then(|secret| {
                out.iter()
                    .find(|o| o.scim.as_ref().and_then(|s| s.secret.as_ref()) == Some(secret))
            });
        if let Some(other) = same_secret {
            // Where the secret was given: `secret`, else `secret_file`.
            let scim = entry.value.scim_config.as_ref().map(|s| &s.value);
            let (at, leaf) = match scim.map(|s| (&s.secret, &s.secret_file)) {
                Some((Some(s), _)) => (s.referenced, "secret"),
                Some((None, Some(f))) => (f.referenced, "secret_file"),
                _ => (entry.referenced, "secret"),
            };
            cx.err(
                &at,
                &format!("{key}.scim_config.{leaf}"),
                format!(
                    "same SCIM secret as identity provider `{}`: each provider needs its own",
                    other.name
                ),
            );
            continue;
        }
        out.push(idp);
    }
    out
}

fn one(cx: &mut Ctx<'_>, entry: &Spanned<RawIdp>, key: &str) -> Option<IdpConfig> {
    let at = entry.referenced;
    let raw = &entry.value;
    let name = cx
        .required(raw.name.as_ref(), &at, &format!("{key}.name"))
        .and_then(|s| cx.non_empty(s, &format!("{key}.name")));
    let kind = cx
        .required(raw.kind.as_ref(), &at, &format!("{key}.type"))
        .map(|k| k.value);
    let config = cx.required(raw.config.as_ref(), &at, &format!("{key}.config"));
    let scim = raw
        .scim_config
        .as_ref()
        .and_then(|s| scim(cx, &s.value, &format!("{key}.scim_config")));
    let (Some(name), Some(kind), Some(config)) = (name, kind, config) else {
        return None;
    };
    let c = &config.value;
    let ck = format!("{key}.config");
    let client_id = need(
        cx,
        c.client_id.as_ref(),
        &config.referenced,
        &format!("{ck}.client_id"),
    );
    let client_secret = secret::required(
        cx,
        c.client_secret.as_ref(),
        c.client_secret_file.as_ref(),
        &config.referenced,
        &format!("{ck}.client_secret"),
    )
    .map(|g| g.value);
    let parts = match kind {
        RawIdpKind::Okta => okta(cx, c, &config.referenced, &ck),
        RawIdpKind::Oidc => oidc(cx, c, &config.referenced, &ck),
    };
    let claims = claims(cx, c, &ck);
    let email_claim_name = match &c.email_claim_name {
        None => Some("email".to_string()),
        Some(s) => cx.non_empty(s, &format!("{ck}.email_claim_name")),
    };
    let scopes = scopes(cx, c, &ck);
    let (kind, issuer, okta_account, authorization_server_id, api_token) = parts?;
    Some(IdpConfig {
        name,
        kind,
        client_id: client_id?,
        client_secret: client_secret?,
        issuer,
        okta_account,
        authorization_server_id,
        api_token,
        claims: claims?,
        email_claim_name: email_claim_name?,
        pkce_enabled: c.pkce_enabled.unwrap_or(false),
        scopes: scopes?,
        scim,
    })
}

fn need(cx: &mut Ctx<'_>, v: Option<&Str>, at: &Location, key: &str) -> Option<String> {
    let s = cx.required(v, at, key)?;
    cx.non_empty(s, key)
}

type KindParts = (
    IdpKind,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn okta(cx: &mut Ctx<'_>, c: &RawIdpSettings, at: &Location, ck: &str) -> Option<KindParts> {
    if let Some(i) = &c.issuer {
        cx.err(
            &i.referenced,
            &format!("{ck}.issuer"),
            "`issuer` is only for type `oidc`; for `okta` set `okta_account` (and `authorization_server_id`)",
        );
    }
    let account_key = format!("{ck}.okta_account");
    let account = cx
        .required(c.okta_account.as_ref(), at, &account_key)
        .and_then(|s| {
            let v = cx.non_empty(s, &account_key)?;
            let v = v.trim().trim_end_matches('/').to_string();
            check_url(&v, false)
                .map(|()| v)
                .map_err(|m| cx.err(&s.referenced, &account_key, m))
                .ok()
        });
    let server_key = format!("{ck}.authorization_server_id");
    let server = match &c.authorization_server_id {
        None => Some(None),
        Some(s) => cx.non_empty(s, &server_key).and_then(|v| {
            let ok = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Some(Some(v))
            } else {
                cx.err(
                    &s.referenced,
                    &server_key,
                    format!(
                        "invalid authorization server id `{v}`: letters, digits, `-` and `_` only"
                    ),
                );
                None
            }
        }),
    };
    let api_token = secret::optional(
        cx,
        c.api_token.as_ref(),
        c.api_token_file.as_ref(),
        &format!("{ck}.api_token"),
    )
    .map(|g| g.map(|g| g.value))
    .ok();
    let (account, server, api_token) = (account?, server?, api_token?);
    let issuer = match &server {
        Some(id) => format!("{account}/oauth2/{id}"),
        None => account.clone(),
    };
    Some((IdpKind::Okta, issuer, Some(account), server, api_token))
}

fn oidc(cx: &mut Ctx<'_>, c: &RawIdpSettings, at: &Location, ck: &str) -> Option<KindParts> {
    for (v, name) in [
        (&c.okta_account, "okta_account"),
        (&c.authorization_server_id, "authorization_server_id"),
        (&c.api_token, "api_token"),
        (&c.api_token_file, "api_token_file"),
    ] {
        if let Some(s) = v {
            cx.err(
                &s.referenced,
                &format!("{ck}.{name}"),
                format!("`{name}` is only for type `okta`"),
            );
        }
    }
    let key = format!("{ck}.issuer");
    let issuer = cx.required(c.issuer.as_ref(), at, &key).and_then(|s| {
        let v = cx.non_empty(s, &key)?;
        check_url(v.trim(), true)
            .map(|()| v.trim().to_string())
            .map_err(|m| cx.err(&s.referenced, &key, m))
            .ok()
    })?;
    Some((IdpKind::Oidc, issuer, None, None, None))
}

/// An https URL (http only on loopback, for local IdPs) without query,
/// fragment or credentials; `allow_path` for OIDC issuers.
fn check_url(v: &str, allow_path: bool) -> Result<(), String> {
    let url = url::Url::parse(v).map_err(|e| format!("invalid URL `{v}`: {e}"))?;
    let host = url.host_str().unwrap_or("");
    let loopback = host == "localhost"
        || host.ends_with(".localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "`{v}` must be an https:// URL (http:// only for loopback hosts)"
            ))
        }
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "`{v}` must not have a query, fragment or credentials"
        ));
    }
    if !allow_path && url.path() != "/" {
        return Err(format!(
            "`{v}` must be the Okta org URL without a path, e.g. `https://dev-123456.okta.com`"
        ));
    }
    Ok(())
}

fn claims(cx: &mut Ctx<'_>, c: &RawIdpSettings, ck: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, s) in c.claims.as_deref().unwrap_or_default().iter().enumerate() {
        let key = format!("{ck}.claims[{i}]");
        match cx.non_empty(s, &key) {
            Some(v) if out.contains(&v) => {
                cx.err(&s.referenced, &key, format!("duplicate claim `{v}`"));
                ok = false;
            }
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn scopes(cx: &mut Ctx<'_>, c: &RawIdpSettings, ck: &str) -> Option<Vec<String>> {
    let Some(list) = &c.scopes else {
        return Some(DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, s) in list.value.iter().enumerate() {
        let key = format!("{ck}.scopes[{i}]");
        match cx.non_empty(s, &key) {
            Some(v) if v.contains(char::is_whitespace) => {
                cx.err(
                    &s.referenced,
                    &key,
                    format!("scope `{v}` must not contain spaces: list each scope separately"),
                );
                ok = false;
            }
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    if ok && !out.iter().any(|s| s == "openid") {
        cx.err(
            &list.referenced,
            &format!("{ck}.scopes"),
            "must include `openid`",
        );
        ok = false;
    }
    ok.then_some(out)
}

fn scim(cx: &mut Ctx<'_>, raw: &RawScim, key: &str) -> Option<ScimConfig> {
    let given = secret::optional(
        cx,
        raw.secret.as_ref(),
        raw.secret_file.as_ref(),
        &format!("{key}.secret"),
    )
    .ok()?;
    let secret = match given {
        None => None,
        Some(g) if g.value.chars().count() < MIN_SCIM_SECRET_LEN => {
            cx.err(
                &g.at,
                &g.key,
                format!("too short: use at least {MIN_SCIM_SECRET_LEN} characters (or omit it to generate one)"),
            );
            return None;
        }
        Some(g) => Some(g.value),
    };
    Some(ScimConfig {
        enabled: raw.enabled.unwrap_or(false),
        secret,
        user_deprovision: raw.user_deprovision.unwrap_or(false),
        seat_deprovision: raw.seat_deprovision.unwrap_or(false),
        group_member_deprovision: raw.group_member_deprovision.unwrap_or(false),
    })
}
