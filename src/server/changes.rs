//! Applying changes written by any instance to this instance's caches:
//! revoked sessions are refused, a user's cached sessions are evicted after
//! a SCIM change, and the signing keys are reloaded when they change.
//!
//! Two sources, one applier: the store's push feed (fleet mode: PostgreSQL
//! `LISTEN`), applied as it arrives, and a poll of
//! [`SessionStore::changes_since`](crate::store::SessionStore::changes_since) every
//! [`POLL_EVERY`] and at once whenever the feed says it may have missed
//! something (a reconnect, a payload it did not understand). The poll
//! alone keeps the "refused everywhere within 1 s" contract when the feed
//! is down; the feed makes it milliseconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;

use crate::metrics::metrics;
use crate::proxy::State;
use crate::session::keys::KeyRing;
use crate::session::token::now_unix;
use crate::store::{Change, ChangeKind, FeedEvent, KeyStore};

/// How often the change log is polled. A revocation the feed missed is
/// applied within this (plus one query).
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// How often the signing keys are re-read even without an announcement.
const KEYS_REFRESH: Duration = Duration::from_secs(30);

/// After a failed key reload, the next try comes this soon (not after
/// [`KEYS_REFRESH`]): a rotated key must be published before it signs.
const KEYS_RETRY: Duration = Duration::from_secs(2);

/// A poll that has not answered by then counts as a failed contact (a
/// database cut off without a reset would otherwise hang it for minutes),
/// and the feed is served again.
const POLL_LIMIT: Duration = Duration::from_secs(2);

/// Most change seqs remembered; past this the oldest are dropped (they are
/// then at worst applied twice, which is harmless).
const APPLIED_MAX: usize = 100_000;

/// Seqs of recently applied user changes: the poll re-reads a window of
/// the log that the feed may already have delivered, and a user eviction
/// scans the cache, so each is applied once.
#[derive(Default)]
struct Applied {
    /// seq → at_ms.
    seqs: BTreeMap<i64, i64>,
}

impl Applied {
    /// True the first time `c` is seen (changes without a seq always).
    fn first(&mut self, c: &Change) -> bool {
        if c.seq == 0 {
            return true;
        }
        let first = self.seqs.insert(c.seq, c.at_ms).is_none();
        while self.seqs.len() > APPLIED_MAX {
            self.seqs.pop_first();
        }
        first
    }

    /// Forget changes older than `before_ms`, which no poll reads again.
    fn prune(&mut self, before_ms: i64) {
        self.seqs.retain(|_, at| *at >= before_ms);
    }
}

/// Load the fleet's signing keys, generating the first one if the store
/// has none (instances starting together store exactly one).
pub async fn fleet_keys(ks: &dyn KeyStore) -> Result<KeyRing, crate::server::StartError> {
    let mut stored = ks.signing_keys().await?;
    if stored.is_empty() {
        let key = KeyRing::new_stored_key(now_unix())?;
        if ks.add_signing_key(&key, true).await? {
            tracing::info!(kid = %key.kid, "Generated the fleet's first session signing key");
        }
        stored = ks.signing_keys().await?;
    }
    Ok(KeyRing::from_stored(&stored, now_unix())?)
}

/// Start the applier for `state` on the current runtime; it ends when the
/// state is dropped.
pub fn spawn(state: &Arc<State>) {
    let feed = state.store.subscribe();
    let weak = Arc::downgrade(state);
    tokio::spawn(run(weak, feed));
}

async fn run(weak: Weak<State>, mut feed: Option<Receiver<FeedEvent>>) {
    let mut cursor = None;
    let mut applied = Applied::default();
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keys_due_at = tokio::time::Instant::now() + KEYS_REFRESH;
    loop {
        let event = tokio::select! {
            _ = poll.tick() => None,
            ev = next(&mut feed) => ev,
        };
        let Some(state) = weak.upgrade() else { return };
        let mut catch_up = event.is_none();
        match event {
            Some(FeedEvent::Change(c)) => {
                let lag_ms = (crate::scim::model::now_ms() - c.at_ms).max(0);
                if apply(&state, &mut applied, &c).await {
                    metrics()
                        .store_notify_lag_seconds
                        .observe(lag_ms as f64 / 1000.0);
                }
            }
            Some(FeedEvent::CatchUp) => catch_up = true,
            None => {}
        }
        if catch_up {
            let polled =
                tokio::time::timeout(POLL_LIMIT, poll_changes(&state, &mut cursor, &mut applied))
                    .await;
            if polled.is_err() {
                state.store_health.contact_failed();
            }
        }
        let keys_due = tokio::time::Instant::now() >= keys_due_at
            || state
                .keys
                .ring()
                .next_signer_at()
                .is_some_and(|at| at <= now_unix());
        if keys_due && state.store.key_store().is_some() {
            let ok = tokio::time::timeout(POLL_LIMIT, reload_keys(&state))
                .await
                .unwrap_or(false);
            keys_due_at = tokio::time::Instant::now() + if ok { KEYS_REFRESH } else { KEYS_RETRY };
        }
    }
}

/// The next feed event; pending forever without a feed (or once it ended).
async fn next(feed: &mut Option<Receiver<FeedEvent>>) -> Option<FeedEvent> {
    let Some(rx) = feed.as_mut() else {
        return std::future::pending().await;
    };
    match rx.recv().await {
        Some(ev) => Some(ev),
        None => {
            *feed = None;
            std::future::pending().await
        }
    }
}

async fn poll_changes(state: &State, cursor: &mut Option<i64>, applied: &mut Applied) {
    let since = match *cursor {
        Some(c) => c,
        None => match state.store.change_cursor().await {
            Ok(c) => {
                *cursor = Some(c);
                c
            }
            Err(e) => {
                state.store_health.observe::<()>(&Err(e));
                tracing::debug!("Store change poll failed");
                return;
            }
        },
    };
    match state.store.changes_since(since).await {
        Ok((changes, next)) => {
            state.store_health.contact_ok();
            for c in &changes {
                apply(state, applied, c).await;
            }
            *cursor = Some(next);
            applied.prune(next - 2 * crate::store::postgres::CATCH_UP_OVERLAP_MS);
        }
        Err(e) => {
            if e.is_unavailable() {
                // StoreHealth logs the outage once.
                state.store_health.contact_failed();
            } else {
                tracing::warn!(error = %e, "Store change poll failed");
            }
        }
    }
}

/// Apply one change; `true` if it did something here for the first time.
async fn apply(state: &State, applied: &mut Applied, c: &Change) -> bool {
    match &c.kind {
        ChangeKind::Revoked { sid } => {
            if state.cache.is_revoked(sid) {
                return false;
            }
            state.cache.revoke(sid);
            true
        }
        ChangeKind::User { idp, sub } => {
            if !applied.first(c) {
                return false;
            }
            state.cache.invalidate_user(idp, sub);
            true
        }
        ChangeKind::Keys => {
            if !applied.first(c) {
                return false;
            }
            if !reload_keys(state).await {
                // Not applied: the next poll, or the retry, tries again.
                applied.seqs.remove(&c.seq);
            }
            true
        }
    }
}

/// Re-read the fleet's keys; `false` when that failed (the current ring
/// stays).
async fn reload_keys(state: &State) -> bool {
    let Some(ks) = state.store.key_store() else {
        return true;
    };
    let stored = match ks.signing_keys().await {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => {
            tracing::error!("The store holds no signing key; keeping the current ones");
            return false;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Reading the signing keys failed; keeping the current ones");
            return false;
        }
    };
    match KeyRing::from_stored(&stored, now_unix()) {
        Ok(ring) => {
            let before = state.keys.ring();
            if before.signing_kid() != ring.signing_kid() || before.kids().ne(ring.kids()) {
                tracing::info!(signing_kid = %ring.signing_kid(), keys = stored.len(), "Signing keys reloaded");
            }
            state.keys.replace(ring);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "Stored signing keys are not usable; keeping the current ones");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64, at_ms: i64) -> Change {
        Change {
            seq,
            at_ms,
            kind: ChangeKind::Keys,
        }
    }

    #[test]
    fn a_change_is_applied_once_until_pruned() {
        let mut a = Applied::default();
        assert!(a.first(&change(1, 100)));
        assert!(!a.first(&change(1, 100)));
        a.prune(101);
        assert!(a.first(&change(1, 100)));
    }

    #[test]
    fn changes_without_a_seq_always_apply() {
        let mut a = Applied::default();
        assert!(a.first(&change(0, 0)));
        assert!(a.first(&change(0, 0)));
    }
}
