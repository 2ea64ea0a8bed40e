//! portcullis: an identity-aware edge proxy on Pingora.
//!
//! Every request passes an access phase (`proxy::access`) that decides, from
//! YAML policies (`policy`), a verified session (`session`) and the identity
//! provider's claims (`idp`), whether it may reach an upstream. Users and groups
//! arrive over SCIM 2.0 (`scim`) and live in the `store`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod access_log;
pub mod cli;
pub mod config;
pub mod demo;
pub mod identity;
pub mod idp;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod scim;
pub mod server;
pub mod session;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
