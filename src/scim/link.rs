//! Linking logins to SCIM users (DESIGN "Groups and SCIM linking"): a login
//! of IdP X is linked to the SCIM users that X's SCIM client created whose
//! `externalId` equals the ID token's `sub`, else whose `userName` or
//! primary email equals the login's verified email (ASCII
//! case-insensitive). A linked user that is inactive may not log in; the
//! linked users' groups join the identity's groups.

use crate::identity::Identity;
use crate::scim::model::ScimLink;
use crate::store::{Store, StoreError};

/// The email a login may be linked by: only a verified, non-empty one.
fn verified_email(identity: &Identity) -> Option<&str> {
    (identity.email_verified && !identity.email.is_empty()).then_some(identity.email.as_str())
}

/// The SCIM users linked to this login and their groups (an SQLite file
/// store reads them in place, on this thread).
async fn link(store: &dyn Store, identity: &Identity) -> Result<ScimLink, StoreError> {
    let email = verified_email(identity);
    store.scim_link(&identity.idp, &identity.sub, email).await
}

/// Whether a user who just authenticated may get a session: false when a
/// linked SCIM user is deactivated. A store failure is an error (the caller
/// denies, with an error page rather than "deactivated").
pub async fn try_login_allowed(store: &dyn Store, identity: &Identity) -> Result<bool, StoreError> {
    let link = link(store, identity).await?;
    Ok(link.users.iter().all(|(_, active)| *active))
}

/// Display names of the groups of the SCIM users linked to this login.
pub async fn scim_groups(
    store: &dyn Store,
    identity: &Identity,
) -> Result<Vec<String>, StoreError> {
    Ok(link(store, identity).await?.groups)
}

/// Add `groups` to the identity's groups (sorted, de-duplicated).
pub fn merge_groups(identity: &mut Identity, groups: Vec<String>) {
    if !groups.is_empty() {
        identity.groups = identity.groups.union(groups);
    }
}

/// The identity with the linked SCIM users' groups merged in.
pub async fn try_live_identity(
    store: &dyn Store,
    mut identity: Identity,
) -> Result<Identity, StoreError> {
    let groups = scim_groups(store, &identity).await?;
    merge_groups(&mut identity, groups);
    Ok(identity)
}

#[cfg(test)]
mod tests;
