//! The identity of an authenticated user, as the access phase and policies see it.
//!
//! Built at login from the ID token (and the Okta API / SCIM), stored in the
//! server-side session record, and served from the session cache afterwards.

pub mod claims;
pub mod groups;

use serde::{Deserialize, Serialize};

pub use claims::Claims;
pub use groups::{GroupId, Groups};

/// A logged-in user. Groups are interned ([`Groups`]): sorted by name,
/// de-duplicated, 4 bytes each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The IdP's subject identifier (`sub` of the ID token).
    pub sub: String,
    /// E-mail address as the IdP gave it.
    pub email: String,
    /// `email_verified` from the IdP; email selectors never match `false`.
    pub email_verified: bool,
    /// Display name, when the IdP sent one.
    pub name: Option<String>,
    /// Name of the identity provider entry (config `identity_providers[].name`).
    pub idp: String,
    /// Type of that provider (`okta`, `oidc`).
    pub idp_type: String,
    /// Group display names: the union of ID-token / Okta-API groups and
    /// SCIM-pushed groups.
    pub groups: Groups,
    /// Authentication methods (`amr` claim), e.g. `pwd`, `mfa`.
    pub amr: Vec<String>,
    /// Configured custom claims copied from the ID token.
    pub custom: Claims,
}

impl Identity {
    /// True when the user is in `group` (exact display-name match).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.contains_name(group)
    }
}
