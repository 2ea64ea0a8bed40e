//! What a committed SCIM write does to access, per the IdP's `scim_config`:
//!
//! - a deactivated or deleted user: with `user_deprovision` every session
//!   of the logins linked to it is revoked (store, then this instance's
//!   cache); with `seat_deprovision` their seats are removed;
//! - a membership change: with `group_member_deprovision` the member's
//!   sessions are revoked, otherwise their cached sessions are evicted so
//!   the next request sees the live SCIM groups;
//! - any other change (attributes, group rename): cached sessions of the
//!   linked logins are evicted.
//!
//! Evictions and revocations reach the other instances of a fleet through
//! the store (`SessionStore::announce_user_change`, and the revocation itself).
//!
//! Effects depend on the state after the write, not on the transition, so
//! a client retrying after a failed effect (a 500) gets them applied.

use crate::config::ScimConfig;
use crate::metrics::{metrics, REVOKED_BY_SCIM_DEPROVISION, REVOKED_BY_SCIM_GROUP_CHANGE};
use crate::proxy::state::State;
use crate::store::StoreError;

use super::model::{GroupChange, LinkKeys, UserRecord};

/// After a user was created or changed (`before` is the previous state).
pub async fn user_written(
    state: &State,
    idp: &str,
    cfg: &ScimConfig,
    before: Option<&UserRecord>,
    after: &UserRecord,
) -> Result<(), StoreError> {
    let mut keys = vec![after.link_keys()];
    if let Some(b) = before {
        if b.link_keys() != keys[0] {
            keys.push(b.link_keys());
        }
    }
    let subs = state.store.scim_linked_subjects(idp, &keys).await?;
    if !after.active {
        deprovision(state, idp, cfg, &subs).await?;
    }
    evict(state, idp, &subs).await
}

/// After a user was deleted.
pub async fn user_deleted(
    state: &State,
    idp: &str,
    cfg: &ScimConfig,
    user: &UserRecord,
) -> Result<(), StoreError> {
    let subs = state
        .store
        .scim_linked_subjects(idp, &[user.link_keys()])
        .await?;
    deprovision(state, idp, cfg, &subs).await?;
    evict(state, idp, &subs).await
}

/// After a group was created, changed or deleted.
pub async fn group_written(
    state: &State,
    idp: &str,
    cfg: &ScimConfig,
    change: &GroupChange,
) -> Result<(), StoreError> {
    let changed: Vec<LinkKeys> = change
        .added
        .iter()
        .chain(&change.removed)
        .cloned()
        .collect();
    if !changed.is_empty() {
        let subs = state.store.scim_linked_subjects(idp, &changed).await?;
        // Evict first: live groups show even if the revocation below fails.
        evict(state, idp, &subs).await?;
        if cfg.group_member_deprovision {
            revoke(state, idp, &subs, REVOKED_BY_SCIM_GROUP_CHANGE).await?;
        }
    }
    if !change.others.is_empty() {
        let subs = state
            .store
            .scim_linked_subjects(idp, &change.others)
            .await?;
        evict(state, idp, &subs).await?;
    }
    Ok(())
}

async fn deprovision(
    state: &State,
    idp: &str,
    cfg: &ScimConfig,
    subs: &[String],
) -> Result<(), StoreError> {
    if cfg.user_deprovision {
        revoke(state, idp, subs, REVOKED_BY_SCIM_DEPROVISION).await?;
    }
    if cfg.seat_deprovision {
        for sub in subs {
            let n = state.store.remove_seats(idp, sub).await?;
            if n > 0 {
                tracing::info!(idp = %idp, user.sub = %sub, seats = n, "SCIM deprovisioning removed seats");
            }
        }
    }
    Ok(())
}

async fn revoke(
    state: &State,
    idp: &str,
    subs: &[String],
    reason: &'static str,
) -> Result<(), StoreError> {
    for sub in subs {
        let sids = state.store.revoke_user_sessions(idp, sub).await?;
        for sid in &sids {
            state.cache.revoke(sid);
        }
        state.cache.invalidate_user(idp, sub);
        if !sids.is_empty() {
            metrics()
                .sessions_revoked_total
                .with_label_values(&[reason])
                .inc_by(sids.len() as u64);
            state
                .access_log
                .revocation(reason, idp, sub, sids.len() as u64);
            tracing::info!(idp = %idp, user.sub = %sub, sessions = sids.len(), reason, "Sessions revoked by SCIM");
        }
    }
    Ok(())
}

/// Evict the users' cached sessions here, and tell the other instances.
async fn evict(state: &State, idp: &str, subs: &[String]) -> Result<(), StoreError> {
    for sub in subs {
        state.cache.invalidate_user(idp, sub);
        state.store.announce_user_change(idp, sub).await?;
    }
    Ok(())
}
