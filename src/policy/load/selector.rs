//! Compiling one policy (name, decision, include / require / exclude) and
//! its selectors, with the rule that `bypass` and `service_auth` policies use
//! only non-identity selectors and `allow` / `block` no service-token ones.

use serde_saphyr::Spanned;

use super::{Cx, Key};
use crate::config::host::is_valid_hostname;
use crate::config::yaml::suggest;
use crate::identity::GroupId;
use crate::policy::ip_range::IpRange;
use crate::policy::model::{Decision, Policy, Selector};
use crate::policy::raw::{RawDecision, RawPolicy, RawSelector, Str};

/// Compile one policy; `None` after recording its errors.
pub(super) fn policy(
    cx: &mut Cx<'_>,
    raw: &Spanned<RawPolicy>,
    key: Key<'_>,
    tokens: &[&str],
) -> Option<Policy> {
    let at = raw.referenced;
    let p = &raw.value;
    let name = cx
        .required(p.name.as_ref(), &at, key.field("name"))
        .and_then(|s| cx.non_empty(s, key.field("name")));
    let decision = cx
        .required(p.decision.as_ref(), &at, key.field("decision"))
        .map(|d| match d.value {
            RawDecision::Allow => Decision::Allow,
            RawDecision::Block => Decision::Block,
            RawDecision::Bypass => Decision::Bypass,
            RawDecision::ServiceAuth => Decision::ServiceAuth,
        });
    let include_key = key.field("include");
    let include = cx
        .required(p.include.as_ref(), &at, include_key)
        .and_then(|list| {
            if list.value.is_empty() {
                cx.err(
                    &list.referenced,
                    include_key,
                    "must list at least one selector",
                );
                return None;
            }
            selectors(cx, &list.value, include_key, tokens, decision)
        });
    let require = selectors(
        cx,
        p.require.as_deref().unwrap_or_default(),
        key.field("require"),
        tokens,
        decision,
    );
    let exclude = selectors(
        cx,
        p.exclude.as_deref().unwrap_or_default(),
        key.field("exclude"),
        tokens,
        decision,
    );
    Some(Policy {
        name: name?,
        decision: decision?,
        include: include?,
        require: require?,
        exclude: exclude?,
    })
}

fn selectors(
    cx: &mut Cx<'_>,
    list: &[Spanned<RawSelector>],
    key: Key<'_>,
    tokens: &[&str],
    decision: Option<Decision>,
) -> Option<Vec<Selector>> {
    let mut out = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, raw) in list.iter().enumerate() {
        let key = key.index(i);
        let Some(sel) = selector(cx, raw, key, tokens) else {
            ok = false;
            continue;
        };
        if let Some(msg) = decision.and_then(|d| misuse(d, &sel)) {
            cx.err(&raw.referenced, key.field(sel.kind()), msg);
            ok = false;
            continue;
        }
        out.push(sel);
    }
    ok.then_some(out)
}

/// Why `sel` cannot appear in a policy with decision `d`, if it cannot.
fn misuse(d: Decision, sel: &Selector) -> Option<String> {
    match d {
        Decision::Bypass | Decision::ServiceAuth if !sel.is_non_identity() => Some(format!(
            "`{}` policies may only use everyone, ip, service_token and any_valid_service_token; `{}` needs a logged-in user",
            d.as_str(),
            sel.kind()
        )),
        Decision::Allow | Decision::Block if sel.is_service() => Some(format!(
            "`{}` never matches in an `{}` policy: service tokens are admitted by `decision: service_auth`",
            sel.kind(),
            d.as_str()
        )),
        _ => None,
    }
}

fn selector(
    cx: &mut Cx<'_>,
    raw: &Spanned<RawSelector>,
    key: Key<'_>,
    tokens: &[&str],
) -> Option<Selector> {
    match &raw.value {
        RawSelector::Everyone(b) => flag(cx, b, key.field("everyone"), Selector::Everyone),
        RawSelector::AnyValidServiceToken(b) => flag(
            cx,
            b,
            key.field("any_valid_service_token"),
            Selector::AnyValidServiceToken,
        ),
        RawSelector::Email(s) => {
            let k = key.field("email");
            let v = cx.non_empty(s, k)?.to_ascii_lowercase();
            let mut parts = v.split('@');
            let valid = matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty())
                && !v.contains(char::is_whitespace);
            if !valid {
                cx.err(&s.referenced, k, format!("invalid email address `{v}`"));
                return None;
            }
            Some(Selector::Email(v))
        }
        RawSelector::EmailDomain(s) => {
            let k = key.field("email_domain");
            let v = cx.non_empty(s, k)?.to_ascii_lowercase();
            if let Some(bare) = v.strip_prefix('@') {
                cx.err(
                    &s.referenced,
                    k,
                    format!("write the domain without `@`: `{bare}`"),
                );
                return None;
            }
            if !is_valid_hostname(&v) {
                cx.err(&s.referenced, k, format!("invalid email domain `{v}`"));
                return None;
            }
            Some(Selector::EmailDomain(v))
        }
        RawSelector::Group(s) => cx
            .non_empty(s, key.field("group"))
            .map(|g| Selector::Group(GroupId::intern(&g))),
        RawSelector::Ip(s) => {
            let k = key.field("ip");
            let v = cx.non_empty(s, k)?;
            match v.parse::<IpRange>() {
                Ok(range) => Some(Selector::Ip(range)),
                Err(_) => {
                    cx.err(&s.referenced, k, format!("invalid IP address or CIDR `{v}` (e.g. `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`)"));
                    None
                }
            }
        }
        RawSelector::ServiceToken(s) => {
            let k = key.field("service_token");
            let v = cx.non_empty(s, k)?;
            if tokens.contains(&v.as_str()) {
                return Some(Selector::ServiceToken(v));
            }
            let msg = match suggest(&v, tokens) {
                Some(near) => format!("unknown service token `{v}`, did you mean `{near}`?"),
                None if tokens.is_empty() => {
                    format!("unknown service token `{v}`: no service_tokens are defined")
                }
                None => format!(
                    "unknown service token `{v}`, defined: {}",
                    tokens.join(", ")
                ),
            };
            cx.err(&s.referenced, k, msg);
            None
        }
        RawSelector::AuthMethod(s) => cx
            .non_empty(s, key.field("auth_method"))
            .map(Selector::AuthMethod),
        // A misspelt name would never match: in an `exclude` that excludes
        // no one, so it is refused like an unknown app IdP.
        RawSelector::LoginMethod(s) => cx
            .idp_name(s, key.field("login_method"))
            .map(Selector::LoginMethod),
        RawSelector::Claim(c) => {
            let name = need(cx, c.name.as_ref(), raw, key.field("claim").field("name"));
            let value = need(cx, c.value.as_ref(), raw, key.field("claim").field("value"));
            Some(Selector::Claim {
                name: name?,
                value: value?,
            })
        }
    }
}

fn need(
    cx: &mut Cx<'_>,
    v: Option<&Str>,
    at: &Spanned<RawSelector>,
    key: Key<'_>,
) -> Option<String> {
    let s = cx.required(v, &at.referenced, key)?;
    cx.non_empty(s, key)
}

fn flag(cx: &mut Cx<'_>, b: &Spanned<bool>, key: Key<'_>, sel: Selector) -> Option<Selector> {
    if b.value {
        Some(sel)
    } else {
        cx.err(
            &b.referenced,
            key,
            "only `true` is allowed (remove the selector instead)",
        );
        None
    }
}
