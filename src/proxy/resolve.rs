//! Upstream host names, resolved when a request is forwarded rather than
//! when the policies load: `portcullis check` works offline, a policy
//! naming a host that does not resolve yet still loads, and a changed DNS
//! record is followed within [`TTL`] without a reload.
//!
//! An upstream written as an IP literal never comes here (its address is
//! fixed at load). A name is looked up with the system resolver
//! (`getaddrinfo`, on tokio's blocking pool), within a time limit, cached
//! per `host:port`, and concurrent requests for a name that is not cached
//! share one lookup. When a lookup fails or times out, the name's last
//! good address is used (and cached like a fresh one), so a DNS outage does
//! not take down upstreams that resolved before; a name that never
//! resolved is an error, not cached. Of the addresses a name has, the first
//! IPv4 one is used, else the first IPv6 one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use parking_lot::RwLock;

/// How long a resolved address is used before the name is looked up again.
pub const TTL: Duration = Duration::from_secs(30);

/// Most names kept.
const CAPACITY: u64 = 10_000;

/// Why an upstream name gave no address.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve upstream `{authority}`: {reason}")]
    Lookup { authority: Arc<str>, reason: String },
    #[error("upstream `{0}` resolves to no address")]
    NoAddress(Arc<str>),
}

/// Cached lookups of upstream `host:port` authorities.
pub struct Resolver {
    cache: Cache<Arc<str>, SocketAddr>,
    /// The last address each name resolved to, for when DNS fails. Holds
    /// only names from the policy files, so it stays small.
    last_good: RwLock<HashMap<Arc<str>, SocketAddr>>,
    lookup_timeout: Duration,
}

impl Resolver {
    /// Addresses are kept for `ttl`; a lookup gives up after
    /// `lookup_timeout`.
    pub fn new(ttl: Duration, lookup_timeout: Duration) -> Resolver {
        Resolver {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
            last_good: RwLock::default(),
            lookup_timeout,
        }
    }

    /// The address to connect to for `authority` (`host:port`, an IPv6
    /// host in brackets).
    pub async fn resolve(&self, authority: &Arc<str>) -> Result<SocketAddr, Arc<ResolveError>> {
        self.cache
            .try_get_with(authority.clone(), self.refresh(authority.clone()))
            .await
    }

    /// A fresh lookup, or the last good address when it fails.
    async fn refresh(&self, authority: Arc<str>) -> Result<SocketAddr, ResolveError> {
        match lookup(authority.clone(), self.lookup_timeout).await {
            Ok(addr) => {
                self.last_good.write().insert(authority, addr);
                Ok(addr)
            }
            Err(e) => match self.last_good.read().get(&authority) {
                Some(&stale) => {
                    tracing::warn!(error = %e, address = %stale, "Upstream name lookup failed; using its last address");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }
}

async fn lookup(authority: Arc<str>, limit: Duration) -> Result<SocketAddr, ResolveError> {
    let failed = |reason: String| ResolveError::Lookup {
        authority: authority.clone(),
        reason,
    };
    let found = tokio::time::timeout(limit, tokio::net::lookup_host(&*authority))
        .await
        .map_err(|_| failed(format!("no answer within {limit:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    pick(found).ok_or_else(|| ResolveError::NoAddress(authority.clone()))
}

/// The first IPv4 address, else the first address.
fn pick(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for a in addrs {
        if a.is_ipv4() {
            return Some(a);
        }
        first.get_or_insert(a);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_ipv4_address_is_preferred() {
        let got = pick([addr("[::1]:80"), addr("10.0.0.2:80"), addr("10.0.0.3:80")]);
        assert_eq!(got, Some(addr("10.0.0.2:80")));
    }

    #[test]
    fn an_ipv6_only_name_uses_its_first_address() {
        let got = pick([addr("[::2]:80"), addr("[::1]:80")]);
        assert_eq!(got, Some(addr("[::2]:80")));
    }

    #[test]
    fn no_addresses_is_none() {
        assert_eq!(pick([]), None);
    }

    fn resolver() -> Resolver {
        Resolver::new(TTL, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_with_its_port() {
        let r = resolver();
        let got = r.resolve(&Arc::from("localhost:8081")).await.unwrap();
        assert!(got.ip().is_loopback(), "{got}");
        assert_eq!(got.port(), 8081);
    }

    #[tokio::test]
    async fn an_unknown_name_is_an_error_naming_it() {
        let r = resolver();
        let err = r
            .resolve(&Arc::from("no-such-host.invalid:80"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot resolve upstream `no-such-host.invalid:80`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_failed_lookup_falls_back_to_the_last_good_address() {
        // No TTL to speak of: every resolve looks the name up again.
        let r = Resolver::new(Duration::from_millis(1), Duration::from_secs(5));
        let name: Arc<str> = Arc::from("no-such-host.invalid:80");
        let known: SocketAddr = "192.0.2.7:80".parse().unwrap();
        r.last_good.write().insert(name.clone(), known);
        assert_eq!(r.resolve(&name).await.unwrap(), known);
    }

    #[tokio::test]
    async fn a_good_lookup_is_remembered_for_later_failures() {
        let r = resolver();
        let name: Arc<str> = Arc::from("localhost:81");
        let addr = r.resolve(&name).await.unwrap();
        assert_eq!(r.last_good.read().get(&name), Some(&addr));
    }
}
