//! Validation of `listen` (proxy listeners) and `metrics.listen`: socket
//! addresses, TLS file paths, `proxy_protocol` (only with
//! `trusted_proxies`), and the rule that metrics never share a public
//! listener.

use std::net::SocketAddr;

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw::{RawConfig, RawListener, Str};
use crate::config::{Listener, TlsFiles};

pub(super) fn listeners(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawListener>>>>,
) -> Vec<Listener> {
    let root = cx.root;
    let Some(list) = cx.required(raw, &root, "listen") else {
        return Vec::new();
    };
    if list.value.is_empty() {
        cx.err(
            &list.referenced,
            "listen",
            "at least one listener is required",
        );
    }
    let mut out: Vec<Listener> = Vec::new();
    for (i, l) in list.value.iter().enumerate() {
        let key = format!("listen[{i}]");
        let addr = cx
            .required(l.value.addr.as_ref(), &l.referenced, &format!("{key}.addr"))
            .and_then(|s| socket_addr(cx, s, &format!("{key}.addr")));
        let tls = l.value.tls.as_ref().and_then(|t| {
            let cert = cx
                .required(
                    t.value.cert.as_ref(),
                    &t.referenced,
                    &format!("{key}.tls.cert"),
                )
                .and_then(|s| cx.non_empty(s, &format!("{key}.tls.cert")));
            let tkey = cx
                .required(
                    t.value.key.as_ref(),
                    &t.referenced,
                    &format!("{key}.tls.key"),
                )
                .and_then(|s| cx.non_empty(s, &format!("{key}.tls.key")));
            Some(TlsFiles {
                cert: cx.path(&cert?),
                key: cx.path(&tkey?),
            })
        });
        if let Some(addr) = addr {
            if out.iter().any(|o| o.addr == addr) {
                let at = l.value.addr.as_ref().map_or(l.referenced, |s| s.referenced);
                cx.err(
                    &at,
                    &format!("{key}.addr"),
                    format!("duplicate listener address {addr}"),
                );
            }
            let proxy_protocol = l.value.proxy_protocol.as_ref().is_some_and(|p| p.value);
            out.push(Listener {
                addr,
                tls,
                proxy_protocol,
            });
        }
    }
    out
}

/// `listen[].proxy_protocol: true` believes the PROXY header of peers in
/// `trusted_proxies` only: without any, no connection could be accepted.
pub(super) fn check_proxy_protocol(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawListener>>>>,
    trusted: Option<&Spanned<Vec<Str>>>,
) {
    if trusted.is_some_and(|t| !t.value.is_empty()) {
        return;
    }
    let Some(list) = raw else {
        return;
    };
    for (i, l) in list.value.iter().enumerate() {
        if let Some(p) = l.value.proxy_protocol.as_ref().filter(|p| p.value) {
            cx.err(
                &p.referenced,
                &format!("listen[{i}].proxy_protocol"),
                "requires trusted_proxies: PROXY headers are accepted only from those peers (e.g. trusted_proxies: [10.0.0.0/8])",
            );
        }
    }
}

fn socket_addr(cx: &mut Ctx<'_>, s: &Str, key: &str) -> Option<SocketAddr> {
    let v = cx.string(s, key)?;
    match v.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(
                &s.referenced,
                key,
                format!(
                    "invalid address `{v}`: expected ip:port, e.g. `0.0.0.0:8443` or `[::]:8443`"
                ),
            );
            None
        }
    }
}

pub(super) fn metrics(cx: &mut Ctx<'_>, r: &RawConfig, listen: &[Listener]) -> Option<SocketAddr> {
    let m = r.metrics.as_ref()?;
    let s = cx.required(m.value.listen.as_ref(), &m.referenced, "metrics.listen")?;
    let addr = socket_addr(cx, s, "metrics.listen")?;
    let clash = listen.iter().any(|l| {
        l.addr.port() == addr.port()
            && (l.addr.ip() == addr.ip()
                || l.addr.ip().is_unspecified()
                || addr.ip().is_unspecified())
    });
    if clash {
        cx.err(
            &s.referenced,
            "metrics.listen",
            format!("{addr} clashes with a proxy listener: metrics are never served on a public listener"),
        );
    }
    Some(addr)
}
