//! Sessions: signing keys and JWKS (`keys`), the proxy's own JWTs — session,
//! transfer and login-state tokens (`token`) — and the cache of verified
//! sessions (`cache`).

pub mod cache;
pub mod crypto;
pub mod keys;
pub mod rotate;
pub mod token;
