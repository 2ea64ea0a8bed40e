//! Validation of the `store` URL: SQLite paths resolved against the config
//! folder. A PostgreSQL URL is refused until fleet mode ships.

use std::path::Path;

use super::resolve;

/// Resolve a store URL: `sqlite://rel.db` → `sqlite:///abs/dir/rel.db`.
/// Errors never echo the URL (it may hold a password).
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
    // Fleet mode (DESIGN "Store") is not built yet: refuse it here, where
    // `check` reports it with its location, rather than at start.
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(
            "the PostgreSQL store (fleet mode) is not available in this version: use `sqlite://PATH`"
                .to_string(),
        );
    }
    let scheme = url.split(':').next().unwrap_or("");
    Err(format!(
        "unsupported store `{scheme}:…`: expected `sqlite://PATH`"
    ))
}
