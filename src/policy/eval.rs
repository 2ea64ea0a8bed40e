//! Policy evaluation: pure, allocation-free decision for one request.
//!
//! A policy matches when at least one `include` selector matches, every
//! `require` selector matches and no `exclude` selector matches. The access
//! phase calls [`evaluate`] per phase: first [`Phase::Bypass`] (before any
//! identity is known), then [`Phase::Service`] for a valid service token or
//! [`Phase::Identity`] for a user. Each selector kind is matched in
//! `eval/selector.rs`.

mod selector;

use std::net::IpAddr;

use crate::identity::Identity;
use crate::policy::model::{App, Decision, Policy, ServiceToken};

pub use selector::selector_matches;

/// Facts about the request that selectors may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView {
    /// The TCP peer address (never a client-supplied header).
    pub client_ip: IpAddr,
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// No identity (bypass phase).
    Anonymous,
    /// A valid service token.
    Service(&'a ServiceToken),
    /// A user with a verified session.
    User(&'a Identity),
}

/// The result of evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    /// The first matching policy decided.
    Matched(&'a Policy),
    /// No policy matched.
    NoMatch,
}

/// Which policies take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Only `bypass` policies.
    Bypass,
    /// Only `service_auth` policies (subject is a service token).
    Service,
    /// Only `allow` / `block` policies.
    Identity,
}

impl Phase {
    /// Whether a policy with `decision` takes part in this phase.
    pub fn admits(self, decision: Decision) -> bool {
        match self {
            Phase::Bypass => decision == Decision::Bypass,
            Phase::Service => decision == Decision::ServiceAuth,
            Phase::Identity => matches!(decision, Decision::Allow | Decision::Block),
        }
    }
}

/// Evaluate `app`'s policies of the given phase in file order; the first
/// matching one decides.
pub fn evaluate<'a>(
    app: &'a App,
    phase: Phase,
    subject: &Subject<'_>,
    req: &RequestView,
) -> Outcome<'a> {
    deciding_index(app, phase, subject, req)
        .and_then(|i| app.policies.get(i))
        .map_or(Outcome::NoMatch, Outcome::Matched)
}

/// Like [`evaluate`], but the deciding policy's index in `app.policies`:
/// the access phase keeps it, so the access log can name the policy
/// without copying its name.
pub fn deciding_index(
    app: &App,
    phase: Phase,
    subject: &Subject<'_>,
    req: &RequestView,
) -> Option<usize> {
    app.policies
        .iter()
        .position(|p| phase.admits(p.decision) && policy_matches(p, subject, req))
}

/// Whether one policy matches (include / require / exclude).
pub fn policy_matches(policy: &Policy, subject: &Subject<'_>, req: &RequestView) -> bool {
    let hit = |s| selector_matches(s, subject, req);
    policy.include.iter().any(hit)
        && policy.require.iter().all(hit)
        && !policy.exclude.iter().any(hit)
}

#[cfg(test)]
mod tests;
