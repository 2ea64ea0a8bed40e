//! Identity providers: the OIDC client for Okta and generic OpenID providers
//! (`oidc`), Okta's groups API (`okta_api`), and the dev IdP (`dev`) used by
//! `demo`, tests and benches.
//!
//! [`IdpError`] is shared by all of them so that the proxy can map any IdP
//! failure to a response in one place: `Unavailable` is a 502 page, the others
//! fail the login.

pub mod dev;
mod http;
pub mod oidc;
pub mod okta_api;

/// Why talking to an identity provider failed. Every variant fails the login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    /// The IdP could not be reached, answered 5xx or garbage at discovery,
    /// or has not been discovered yet. The proxy shows a 502 page.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the request (`invalid_grant`,
    /// `invalid_client`, …); the error code is kept.
    #[error("identity provider rejected the request: {0}")]
    Rejected(String),
    /// The ID token (or the token response carrying it) failed verification.
    #[error("invalid id token: {0}")]
    InvalidToken(String),
    /// Okta's groups API failed; the login fails rather than using a partial
    /// group list.
    #[error("okta groups api: {0}")]
    GroupsApi(String),
}
