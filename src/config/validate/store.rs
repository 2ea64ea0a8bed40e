//! Validation of `store`: the short URL form or the map form (`url`,
//! `pool_size`, `outage_grace`; `url_file` instead of `url`). SQLite paths resolve against the config
//! folder; a PostgreSQL URL (fleet mode) must parse and name a host. Errors
//! never echo the URL: it may hold a password.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::{duration, resolve, secret, Ctx, DEFAULT_STORE};
use crate::config::raw::{RawStore, Str};
use crate::config::StoreOptions;

/// Default `store.outage_grace`.
pub const DEFAULT_OUTAGE_GRACE: Duration = Duration::from_secs(30);
/// Largest `store.outage_grace`: past a day, serving sessions the store can
/// no longer revoke is not a grace period.
const MAX_OUTAGE_GRACE: (Duration, &str) = (Duration::from_secs(86_400), "24h");
/// Largest `store.pool_size` (also caps the 2 × `threads` default).
pub const MAX_POOL_SIZE: u32 = 1000;

/// The validated `store`: the resolved URL and whether it is PostgreSQL.
pub(super) struct Store {
    pub url: String,
    pub postgres: bool,
    pub options: StoreOptions,
}

/// Validate `store` (absent: the default SQLite file). `threads` sizes the
/// default pool. `None` when an error was recorded.
pub(super) fn store(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawStore>>,
    threads: usize,
) -> Option<Store> {
    let default_pool = u32::try_from(threads.saturating_mul(2))
        .unwrap_or(MAX_POOL_SIZE)
        .clamp(1, MAX_POOL_SIZE);
    let defaults = StoreOptions {
        pool_size: default_pool,
        outage_grace: DEFAULT_OUTAGE_GRACE,
    };
    let Some(raw) = raw else {
        let url = store_url(DEFAULT_STORE, cx.base_dir).expect("default store URL is valid");
        return Some(Store {
            url,
            postgres: false,
            options: defaults,
        });
    };
    // The URL as written (or read from `url_file`), the key it came from
    // and where, for the errors of its check.
    let (url, map) = match &raw.value {
        RawStore::Url(u) => {
            let s = Spanned::new(u.clone(), raw.referenced, raw.defined);
            let given = cx.string(&s, "store").map(|value| secret::Given {
                value,
                key: "store".to_string(),
                at: raw.referenced,
            });
            (given, None)
        }
        RawStore::Map(m) => {
            let given = secret::required(
                cx,
                m.url.as_ref(),
                m.url_file.as_ref(),
                &raw.referenced,
                "store.url",
            )?;
            (Some(given), Some(m))
        }
    };
    let url = url.and_then(|g| {
        store_url(&g.value, cx.base_dir)
            .map_err(|m| cx.err(&g.at, &g.key, m))
            .ok()
    });
    let postgres = url.as_deref().is_some_and(is_postgres_url);
    let Some(m) = map else {
        return url.map(|url| Store {
            url,
            postgres,
            options: defaults,
        });
    };
    // With SQLite (or a URL that did not validate, whose kind is unknown)
    // the fleet settings are not checked further: a SQLite store reports them
    // as unused, so a mistyped PostgreSQL setup does not pass unnoticed.
    let sqlite = url.is_some() && !postgres;
    let pool_size = match &m.pool_size {
        None => Some(defaults.pool_size),
        Some(p) if sqlite => unused(cx, &p.referenced, "store.pool_size"),
        Some(p) => match u32::try_from(p.value) {
            Ok(n) if (1..=MAX_POOL_SIZE).contains(&n) => Some(n),
            _ => {
                cx.err(
                    &p.referenced,
                    "store.pool_size",
                    format!("{} is out of range: expected 1 to {MAX_POOL_SIZE}", p.value),
                );
                None
            }
        },
    };
    let outage_grace = match &m.outage_grace {
        None => Some(defaults.outage_grace),
        Some(s) if sqlite => unused(cx, &s.referenced, "store.outage_grace"),
        Some(s) => outage_grace(cx, s),
    };
    Some(Store {
        url: url?,
        postgres,
        options: StoreOptions {
            pool_size: pool_size?,
            outage_grace: outage_grace?,
        },
    })
}

fn unused<T>(cx: &mut Ctx<'_>, at: &Location, key: &str) -> Option<T> {
    cx.err(
        at,
        key,
        "only used with a PostgreSQL store (`postgres://…`); remove it",
    );
    None
}

fn outage_grace(cx: &mut Ctx<'_>, s: &Str) -> Option<Duration> {
    let key = "store.outage_grace";
    let d = duration(cx, Some(s), key, DEFAULT_OUTAGE_GRACE)?;
    if d > MAX_OUTAGE_GRACE.0 {
        cx.err(
            &s.referenced,
            key,
            format!("must be at most {}", MAX_OUTAGE_GRACE.1),
        );
        return None;
    }
    Some(d)
}

/// A `postgres:` or `postgresql:` URL (any case of the scheme).
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// Resolve a store URL: `sqlite://rel.db` → `sqlite:///abs/dir/rel.db`; a
/// PostgreSQL URL is checked (it parses, it names a host) and kept as
/// written. Errors never echo the URL (it may hold a password).
pub fn store_url(url: &str, base_dir: &Path) -> Result<String, String> {
    let url = url.trim();
    if url == "sqlite::memory:" {
        return Ok(url.to_string());
    }
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(
                "sqlite store needs a file path, e.g. `sqlite://portcullis.db`".to_string(),
            );
        }
        let abs = resolve(base_dir, path);
        let mut out = format!("sqlite://{}", abs.display());
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        return Ok(out);
    }
    if is_postgres_url(url) {
        // `url::ParseError` messages name the problem, never the input.
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("invalid PostgreSQL URL ({e}): expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`"))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(
                "PostgreSQL URL has no host: expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`"
                    .to_string(),
            );
        }
        return Ok(url.to_string());
    }
    let scheme = url.split(':').next().unwrap_or("");
    Err(format!(
        "unsupported store `{scheme}:…`: expected `sqlite://PATH` or `postgres://…`"
    ))
}
