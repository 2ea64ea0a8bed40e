//! moka cache of verified sessions keyed by the whole token.
//!
//! A token is verified and its session record loaded once; later requests
//! with the same token bytes are served from here (SECURITY.md rule 9: the
//! key is the whole token, never a prefix, `sid` or hash). No entry
//! is served past the token's `exp` or the session's end: every hit checks
//! `expires_at` and evicts an entry past it, and moka drops every entry
//! `ttl` after it was cached.
//!
//! Revocation: [`SessionCache::revoke`] marks the `sid` in [`RevokedSids`],
//! then bumps a revocation counter, then evicts the sid's entries. A hit
//! probes [`RevokedSids`] whenever the counter moved since that entry was
//! last probed (always on an entry's first hit), so a revoked session is
//! never served, even one that an in-flight load inserted after the
//! eviction; while nothing is revoked a hit costs one atomic load instead of
//! a second map probe. Policy is never cached here: only "who is this
//! token".
//!
//! Expiry uses the coarse clock ([`now_unix_coarse`]), which may lag the
//! real time by one tick: an entry is refused from one second before its
//! `expires_at`, so it is never served past it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::token::{now_unix_coarse, SessionClaims};
use crate::identity::Identity;

/// How long a revoked `sid` is remembered: longer than any session lives
/// (`session.duration` defaults to 24h).
pub const REVOKED_SID_TTL: Duration = Duration::from_secs(25 * 3600);

/// Most revoked sids remembered at once.
pub const REVOKED_SID_CAPACITY: u64 = 1_000_000;

/// A verified token and the identity behind it. Of the token's claims only
/// what a cached request needs is kept (the rest repeat the identity).
#[derive(Debug)]
pub struct CachedSession {
    /// The session (`sid`): revocation and logout act on it.
    pub sid: Box<str>,
    /// The token's audiences; a request is served only for one of them.
    pub aud: Box<[Box<str>]>,
    /// The token's `iat`.
    pub iat: i64,
    /// Identity from the session record, merged with live SCIM groups.
    pub identity: Arc<Identity>,
    /// Unix seconds: the earlier of the token's `exp` and the session's end.
    pub expires_at: i64,
    /// Upstream header values built from `identity` on first use, so that
    /// forwarding a cached session copies no strings.
    pub forward: std::sync::OnceLock<ForwardValues>,
    /// The revocation count this entry was last found unrevoked at
    /// (`NEVER_PROBED` until its first hit).
    probed_at: AtomicU64,
}

/// `probed_at` of an entry no hit has probed yet; the revocation counter
/// never reaches it.
const NEVER_PROBED: u64 = u64::MAX;

impl CachedSession {
    /// A cache entry for verified `claims`, usable until `expires_at`.
    pub fn new(claims: SessionClaims, identity: Arc<Identity>, expires_at: i64) -> CachedSession {
        CachedSession {
            sid: claims.sid.into_boxed_str(),
            aud: claims.aud.into_iter().map(String::into_boxed_str).collect(),
            iat: claims.iat,
            identity,
            expires_at,
            forward: std::sync::OnceLock::new(),
            probed_at: AtomicU64::new(NEVER_PROBED),
        }
    }

    /// True when `aud` is one of the token's audiences.
    pub fn aud_matches(&self, aud: &str) -> bool {
        self.aud.iter().any(|a| &**a == aud)
    }
}

/// Pre-built upstream header values of a cached session.
#[derive(Debug, Clone)]
pub struct ForwardValues {
    pub email: Option<http::HeaderValue>,
    pub groups: Option<http::HeaderValue>,
    /// `X-Portcullis-Claim-<name>` headers.
    pub claims: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Why a cached or freshly loaded session may not be used. Loader error
/// types convert from it so [`SessionCache::get_or_load`] can deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("session revoked")]
    Revoked,
    #[error("session expired")]
    Expired,
}

/// Sids revoked recently, remembered for [`REVOKED_SID_TTL`].
pub struct RevokedSids {
    inner: moka::sync::Cache<String, (), FastHash>,
}

/// Hasher of both caches: seeded per process, several times faster than
/// SipHash on a 500-byte token. Only verified tokens are ever inserted, so an
/// attacker cannot fill a bucket with chosen keys.
type FastHash = foldhash::fast::RandomState;

impl RevokedSids {
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        RevokedSids {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build_with_hasher(FastHash::default()),
        }
    }

    /// Remember `sid` as revoked.
    pub fn mark(&self, sid: &str) {
        self.inner.insert(sid.to_string(), ());
    }

    /// True when `sid` was revoked (within the TTL).
    pub fn contains(&self, sid: &str) -> bool {
        self.inner.contains_key(sid)
    }
}

/// Verified sessions by token.
pub struct SessionCache {
    sessions: Cache<String, Arc<CachedSession>, FastHash>,
    revoked: RevokedSids,
    /// Number of [`revoke`](Self::revoke) calls so far; bumped after the sid
    /// is marked, so a hit that reads a count sees every mark before it.
    revocations: AtomicU64,
}

impl SessionCache {
    /// At most `max_entries` sessions, each kept at most `ttl` (and never
    /// past its `expires_at`).
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        // No per-entry expiry in moka (its timer wheel costs a node per
        // entry and work on every read): an entry lives at most `ttl`, and
        // `check` refuses (and evicts) it on the first hit past `expires_at`.
        let sessions = Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build_with_hasher(FastHash::default());
        SessionCache {
            sessions,
            revoked: RevokedSids::new(REVOKED_SID_TTL, REVOKED_SID_CAPACITY),
            revocations: AtomicU64::new(0),
        }
    }

    /// The cached session for exactly these token bytes, if it is still
    /// usable. Does not allocate on a hit.
    pub async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        let hit = self.sessions.get(token).await?;
        match self.check(&hit) {
            Ok(()) => Some(hit),
            Err(_) => {
                self.sessions.invalidate(token).await;
                None
            }
        }
    }

    /// The cached session for `token`, or the result of `load`, cached.
    /// Concurrent misses for one token run `load` once; errors are not
    /// cached. A session that is revoked or expired (also one that a
    /// concurrent load produced) is refused with `E::from(Unusable)`.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        token: &str,
        load: F,
    ) -> Result<Arc<CachedSession>, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<CachedSession>, E>>,
        E: From<Unusable> + Send + Sync + 'static,
    {
        // moka returns a present entry without running `load`; it is checked
        // below like a fresh one.
        let entry = self
            .sessions
            .try_get_with_by_ref(token, async { load().await })
            .await?;
        match self.check(&entry) {
            Ok(()) => Ok(entry),
            Err(why) => {
                self.sessions.invalidate(token).await;
                Err(Arc::new(E::from(why)))
            }
        }
    }

    /// Cache a session just minted for `token` (after login). An unusable
    /// session is not cached.
    pub async fn insert(&self, token: &str, session: Arc<CachedSession>) {
        if self.check(&session).is_ok() {
            self.sessions.insert(token.to_string(), session).await;
        }
    }

    /// Revoke `sid` here: remember it and evict its entries.
    pub fn revoke(&self, sid: &str) {
        self.revoked.mark(sid);
        self.revocations.fetch_add(1, Ordering::AcqRel);
        self.invalidate_sid(sid);
    }

    /// True when `sid` was revoked through [`revoke`](Self::revoke).
    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains(sid)
    }

    /// Evict every entry of session `sid`.
    pub fn invalidate_sid(&self, sid: &str) {
        let sid = sid.to_string();
        self.invalidate_if(move |s| *s.sid == *sid);
    }

    /// Evict every entry of a user (after a SCIM change), so the next
    /// request reloads the identity.
    pub fn invalidate_user(&self, idp: &str, sub: &str) {
        let (idp, sub) = (idp.to_string(), sub.to_string());
        self.invalidate_if(move |s| s.identity.idp == idp && s.identity.sub == sub);
    }

    /// Approximate number of cached sessions.
    pub fn entry_count(&self) -> u64 {
        self.sessions.entry_count()
    }

    /// Run moka's pending maintenance (evictions, counts) now.
    pub async fn run_pending_tasks(&self) {
        self.sessions.run_pending_tasks().await;
    }

    fn invalidate_if(&self, pred: impl Fn(&CachedSession) -> bool + Send + Sync + 'static) {
        if let Err(e) = self.sessions.invalidate_entries_if(move |_, s| pred(s)) {
            // Only possible if invalidation closures were not enabled at
            // build time; fail closed by dropping everything.
            tracing::error!(error = %e, "Session cache predicate invalidation failed; clearing the cache");
            self.sessions.invalidate_all();
        }
    }

    fn check(&self, s: &CachedSession) -> Result<(), Unusable> {
        // The coarse clock may be up to a tick behind: one second of margin
        // keeps "never past expires_at" true.
        if s.expires_at <= now_unix_coarse() + 1 {
            return Err(Unusable::Expired);
        }
        // Read the count before probing: every sid marked before it was
        // bumped is visible to the probe below.
        let seen = self.revocations.load(Ordering::Acquire);
        if s.probed_at.load(Ordering::Acquire) != seen {
            if self.revoked.contains(&s.sid) {
                return Err(Unusable::Revoked);
            }
            s.probed_at.store(seen, Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
