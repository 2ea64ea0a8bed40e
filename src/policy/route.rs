//! Request routing: host (exact first, then longest `*.suffix` wildcard) and
//! longest path prefix on segment boundaries.
//!
//! The index is built once per (re)load; a lookup allocates nothing: exact
//! hosts are one `HashMap` probe, wildcard suffixes one probe per label of
//! the request host, and each host's apps are pre-sorted longest path first.
//! The maps hash with foldhash (seeded per process): their keys come from
//! policy files, and a request can only look up, never insert.

use std::sync::Arc;

use foldhash::HashMap;

use crate::policy::model::{App, HostPattern};

/// Index over the apps of a `PolicySet`, built once per (re)load.
#[derive(Debug, Default)]
pub struct Router {
    /// Exact host → indices into `apps`, longest path first.
    exact: HashMap<String, Vec<usize>>,
    /// Wildcard suffix (`.example.com`) → indices, longest path first.
    wildcard: HashMap<String, Vec<usize>>,
}

impl Router {
    /// Build the index. `apps` are in file order.
    pub fn build(apps: &[Arc<App>]) -> Router {
        let mut r = Router::default();
        for (i, app) in apps.iter().enumerate() {
            let (map, key) = match &app.host {
                HostPattern::Exact(h) => (&mut r.exact, h),
                HostPattern::Wildcard(s) => (&mut r.wildcard, s),
            };
            map.entry(key.clone()).or_default().push(i);
        }
        for list in r.exact.values_mut().chain(r.wildcard.values_mut()) {
            // Stable: equal lengths keep file order.
            list.sort_by_key(|&i| std::cmp::Reverse(apps[i].path.len()));
        }
        r
    }

    /// Find the app for a lower-cased host without port and a normalised path.
    /// Exact-host apps are tried first; only if none of them matches the path
    /// are wildcard apps tried (longest suffix wins).
    pub fn route<'a>(
        &'a self,
        apps: &'a [Arc<App>],
        host: &str,
        path: &str,
    ) -> Option<&'a Arc<App>> {
        if let Some(app) = self
            .exact
            .get(host)
            .and_then(|c| first_path_match(apps, c, path))
        {
            return Some(app);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Each `.` after a non-empty first label starts a candidate suffix,
        // left to right = longest first; `*.` never matches the apex.
        let bytes = host.as_bytes();
        for (i, &b) in bytes.iter().enumerate().skip(1) {
            if b != b'.' || bytes[i - 1] == b'.' {
                continue;
            }
            if let Some(app) = self
                .wildcard
                .get(&host[i..])
                .and_then(|c| first_path_match(apps, c, path))
            {
                return Some(app);
            }
        }
        None
    }
}

fn first_path_match<'a>(
    apps: &'a [Arc<App>],
    candidates: &[usize],
    path: &str,
) -> Option<&'a Arc<App>> {
    candidates
        .iter()
        .filter_map(|&i| apps.get(i))
        .find(|app| path_matches(app, path))
}

/// `app.path` is a prefix of `path` on a segment boundary (`/admin` matches
/// `/admin` and `/admin/x`, not `/administrator`); `/` matches everything.
pub fn path_matches(app: &App, path: &str) -> bool {
    let prefix = app.path.as_bytes();
    let p = path.as_bytes();
    if prefix == b"/" {
        return true;
    }
    if p.len() < prefix.len() {
        return false;
    }
    let head = &p[..prefix.len()];
    let same = if app.case_insensitive_paths {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (p.len() == prefix.len() || p[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests;
