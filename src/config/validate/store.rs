//! Validation of the `store` URL: SQLite paths resolved against the config
//! folder, PostgreSQL URLs kept as written.

use std::path::Path;

use super::resolve;

/// Resolve a store URL: `sqlite://rel.db` → `sqlite:///abs/dir/rel.db`;
/// `postgres://…` unchanged. Errors never echo the URL (it may hold a password).
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
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            if rest.is_empty() {
                return Err(
                    "postgres store needs a host, e.g. `postgres://user@host/db`".to_string(),
                );
            }
            return Ok(url.to_string());
        }
    }
    let scheme = url.split(':').next().unwrap_or("");
    Err(format!(
        "unsupported store `{scheme}:…`: expected `sqlite://PATH` or `postgres://…`"
    ))
}
