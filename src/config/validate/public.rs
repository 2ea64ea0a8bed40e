//! Validation of `public` (the scheme and port browsers see in front of a
//! load balancer) and its agreement with the port written in `auth_domain`.
//! The rule these feed is documented on [`crate::config::Public`].

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw::{RawPublic, Str};
use crate::config::{Public, Scheme};

/// Validate `public`. `Ok(None)` when absent; `Err(())` when an error was
/// recorded.
pub(super) fn public(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawPublic>>,
) -> Result<Option<Public>, ()> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let scheme = match &raw.value.scheme {
        None => Ok(None),
        Some(s) => scheme(cx, s).map(Some).ok_or(()),
    };
    let port = match &raw.value.port {
        None => Ok(None),
        Some(p) => match u16::try_from(p.value) {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => {
                cx.err(
                    &p.referenced,
                    "public.port",
                    format!("{} is out of range: expected 1 to 65535", p.value),
                );
                Err(())
            }
        },
    };
    Ok(Some(Public {
        scheme: scheme?,
        port: port?,
    }))
}

fn scheme(cx: &mut Ctx<'_>, s: &Str) -> Option<Scheme> {
    let v = cx.string(s, "public.scheme")?;
    match v.trim() {
        "https" => Some(Scheme::Https),
        "http" => Some(Scheme::Http),
        other => {
            cx.err(
                &s.referenced,
                "public.scheme",
                format!("unknown scheme `{other}`: expected `http` or `https`"),
            );
            None
        }
    }
}

/// An `auth_domain` written with a port must agree with `public.port`:
/// both say where browsers reach the auth domain. A port there that differs
/// is most likely the instance's inside port.
pub(super) fn check_auth_port(
    cx: &mut Ctx<'_>,
    auth_domain: &str,
    at: &serde_saphyr::Location,
    public: Option<&Public>,
) {
    let Some(public_port) = public.and_then(|p| p.port) else {
        return;
    };
    let Some(port) = auth_domain
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        return;
    };
    if port != public_port {
        cx.err(
            at,
            "auth_domain",
            format!(
                "port {port} differs from public.port {public_port}: browsers reach the auth domain on the public port; write auth_domain without a port"
            ),
        );
    }
}
