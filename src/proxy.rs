//! The Pingora proxy: the access phase (`access`), who the client is
//! (`client`: address behind trusted proxies, request id), proxy-owned endpoints
//! (`endpoints`), request facts (`request`), cookies (`cookies`), header
//! hygiene (`headers`), path normalisation (`path`), responses (`respond`),
//! shared state (`state`), the access log's request line (`log_line`) and
//! the `ProxyHttp` glue (`service`).

pub mod access;
pub mod client;
pub mod cookies;
pub mod endpoints;
pub mod headers;
pub mod health;
mod log_line;
pub mod path;
pub mod request;
pub mod resolve;
pub mod respond;
pub mod service;
pub mod state;

pub use service::Portcullis;
pub use state::State;
