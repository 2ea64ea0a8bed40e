//! Integration tests: the real proxy on free loopback ports, in process, with
//! the dev IdP as Okta and an echo upstream; one binary, one module per area.

// Test environment builders: proxy, dev IdP, upstream, browser-like client.
mod harness;
// Browser login, sessions, logout, second app, restart.
mod login;
// Policy decisions over the wire: groups, domains, mfa, exclude, block, bypass, service tokens.
mod decisions;
// Attacks: tampered tokens, open redirects, path confusion, header spoofing, CSRF, replay.
mod attacks;
// Hot reload and metrics.
mod operations;
// Okta in full: groups API beyond 100, authorization servers, claims, PKCE, test-idp, readiness, rotation, outages, several IdPs.
mod okta;
// SCIM 2.0 provisioning: Okta request sequences, errors, deprovisioning, durability, concurrency.
mod scim;
// SCIM to the letter: 405s, /.search, PATCH remove, ServiceProviderConfig's claims, the RFC check list.
mod scim_rfc;
// The command line: check and explain.
mod cli;
// Fleet mode: several instances on one PostgreSQL database behind a balancer.
mod fleet;
// Upstream failures (502/504 pages, counted) and the operator metrics.
mod upstream;
// Who the client is: trusted proxies, X-Forwarded-For, request ids.
mod client;
// The real binary as a process: start, signals, logs.
mod process;
// SIGHUP: TLS certificates, policies, config keys that need a restart.
mod reload;
// Graceful upgrade: a new process takes the listening sockets over.
mod upgrade;
// PROXY protocol listeners: the header's source as client, refusals, HAProxy in front.
mod proxy_protocol;
// Deployment: secrets read from files, the install script into a staging folder.
mod deploy;
// HTTP/2 to the letter: cookies joined for the origin, pseudo-headers checked, limits.
mod http2;
// A request body shorter than its content-length: what the origin sees (a reset connection), on HTTP/1 and HTTP/2.
mod short_body;
// Access log: request lines, events, text format, rotation, nothing secret.
mod access_log;
