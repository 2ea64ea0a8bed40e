//! Upstream host names, resolved when a request is forwarded rather than
//! when the policies load: `portcullis check` works offline, a policy
//! naming a host that does not resolve yet still loads, and a changed DNS
//! record is followed within [`TTL`] without a reload.
//!
//! An upstream written as an IP literal never comes here (its address is
//! fixed at load). A name is looked up with the system resolver
//! (`getaddrinfo`, on tokio's blocking pool), cached per `host:port`, and
//! concurrent requests for a name that is not cached share one lookup.
//! Failed lookups are not cached. Of the addresses a name has, the first
//! IPv4 one is used, else the first IPv6 one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

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
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(TTL)
    }
}

impl Resolver {
    /// Addresses are kept for `ttl`.
    pub fn new(ttl: Duration) -> Resolver {
        Resolver {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The address to connect to for `authority` (`host:port`, an IPv6
    /// host in brackets).
    pub async fn resolve(&self, authority: &Arc<str>) -> Result<SocketAddr, Arc<ResolveError>> {
        self.cache
            .try_get_with(authority.clone(), lookup(authority.clone()))
            .await
    }
}

async fn lookup(authority: Arc<str>) -> Result<SocketAddr, ResolveError> {
    let found = tokio::net::lookup_host(&*authority)
        .await
        .map_err(|e| ResolveError::Lookup {
            authority: authority.clone(),
            reason: e.to_string(),
        })?;
    pick(found).ok_or(ResolveError::NoAddress(authority))
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

    #[tokio::test]
    async fn localhost_resolves_to_loopback_with_its_port() {
        let r = Resolver::default();
        let got = r.resolve(&Arc::from("localhost:8081")).await.unwrap();
        assert!(got.ip().is_loopback(), "{got}");
        assert_eq!(got.port(), 8081);
    }

    #[tokio::test]
    async fn an_unknown_name_is_an_error_naming_it() {
        let r = Resolver::default();
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
}
