//! SCIM 2.0 provisioning (RFC 7643/7644) as Okta's client uses it.

use crate::identity::Identity;
use crate::proxy::state::State;

/// Whether a user who just authenticated at the IdP may get a session: a
/// user deactivated over SCIM may not.
pub async fn login_allowed(state: &State, identity: &Identity) -> bool {
    let _ = (state, identity);
    true
}

/// Serve a SCIM request (`rest` is the path after the SCIM base path).
pub async fn serve(state: &State, session: &mut pingora::proxy::Session, rest: &str) -> crate::proxy::respond::Reply {
    let _ = (state, session, rest);
    crate::proxy::respond::Reply::json_error(404, "not_found")
}

/// Start-up work for SCIM (seeding the secret).
pub async fn on_start(state: &State) {
    let _ = state;
}

/// `portcullis scim rotate-secret`: store a new secret (hashed), return it.
pub async fn rotate_secret(cfg: &crate::config::Config) -> Result<String, crate::store::StoreError> {
    let _ = cfg;
    Err(crate::store::StoreError::Data("SCIM is not implemented yet".into()))
}

/// The identity merged with the user's live SCIM group memberships.
pub async fn live_identity(store: &dyn crate::store::Store, identity: Identity) -> Identity {
    let _ = store;
    identity
}
