//! Upstream health (DESIGN: "round-robin with health checks"). An app with
//! several upstreams sends requests only to those not marked down, as long
//! as one is left; with all down it tries them in turn anyway.
//!
//! An upstream is marked down by an active check (a TCP connect every
//! `upstream_health.interval` that does not succeed within
//! `upstream_health.timeout`) or at once when forwarding fails to connect
//! to it or its name does not resolve; it is marked up by the next check
//! that connects. Health is kept per `host:port`, so apps sharing an
//! upstream share what is known about it. Apps with one upstream are not
//! checked: there is nothing to choose.
//!
//! On the request path this is one atomic load while every upstream is up,
//! and a read of a small map otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use crate::config::UpstreamHealthConfig;
use crate::policy::model::Upstream;

use super::state::State;

/// Upstreams currently marked down, by `host:port`.
#[derive(Debug, Default)]
pub struct Health {
    down: RwLock<HashSet<Arc<str>>>,
    /// `down.len()`, readable without the lock.
    count: AtomicUsize,
}

impl Health {
    /// Whether `authority` is marked down.
    pub fn is_down(&self, authority: &str) -> bool {
        self.count.load(Ordering::Acquire) != 0 && self.down.read().contains(authority)
    }

    /// Mark `authority` down (until a check connects to it). True when it
    /// was up.
    pub fn mark_down(&self, authority: &Arc<str>) -> bool {
        let mut down = self.down.write();
        let changed = down.insert(authority.clone());
        self.count.store(down.len(), Ordering::Release);
        changed
    }

    /// Mark `authority` up. True when it was down.
    pub fn mark_up(&self, authority: &str) -> bool {
        if !self.is_down(authority) {
            return false;
        }
        let mut down = self.down.write();
        let changed = down.remove(authority);
        self.count.store(down.len(), Ordering::Release);
        changed
    }

    /// Index `i` of `ups` if that upstream is up, else the next one in
    /// order that is; `i` when all are down.
    pub fn first_up_from(&self, ups: &[Upstream], i: usize) -> usize {
        if ups.len() < 2 || self.count.load(Ordering::Acquire) == 0 {
            return i;
        }
        let down = self.down.read();
        (0..ups.len())
            .map(|k| (i + k) % ups.len())
            .find(|&j| !down.contains(&*ups[j].authority))
            .unwrap_or(i)
    }

    /// Forget upstreams no app has any more.
    fn retain(&self, live: &HashSet<Arc<str>>) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut down = self.down.write();
        down.retain(|a| live.contains(a));
        self.count.store(down.len(), Ordering::Release);
    }
}

/// Check the upstreams of every app with more than one, every
/// `cfg.interval`, for as long as `state` lives.
pub fn spawn_checker(state: &Arc<State>, cfg: UpstreamHealthConfig) {
    let weak: Weak<State> = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            check_all(&state, cfg.timeout).await;
        }
    });
}

/// One round: connect to each distinct upstream of the multi-upstream apps
/// at once, and mark each up or down.
async fn check_all(state: &Arc<State>, timeout: Duration) {
    let mut targets: HashMap<Arc<str>, Upstream> = HashMap::new();
    for app in &state.policies.current().apps {
        if app.upstreams.len() > 1 {
            for up in &app.upstreams {
                targets
                    .entry(up.authority.clone())
                    .or_insert_with(|| up.clone());
            }
        }
    }
    state
        .health
        .retain(&targets.keys().cloned().collect::<HashSet<_>>());
    let mut checks = tokio::task::JoinSet::new();
    for (authority, up) in targets {
        let state = state.clone();
        checks.spawn(async move {
            let result = connect(&state, &up, timeout).await;
            match result {
                Ok(()) => {
                    if state.health.mark_up(&authority) {
                        tracing::info!(upstream = %up.url, "Upstream is up again");
                    }
                }
                Err(reason) => {
                    if state.health.mark_down(&authority) {
                        tracing::warn!(upstream = %up.url, reason = %reason, "Upstream is down");
                    }
                }
            }
        });
    }
    while checks.join_next().await.is_some() {}
}

/// A TCP connect to `up` within `timeout`.
async fn connect(state: &State, up: &Upstream, timeout: Duration) -> Result<(), String> {
    let addr = match up.addr {
        Some(addr) => addr,
        None => state
            .resolver
            .resolve(&up.authority)
            .await
            .map_err(|e| e.to_string())?,
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(names: &[&str]) -> Vec<Upstream> {
        names
            .iter()
            .map(|n| Upstream {
                url: format!("http://{n}"),
                addr: None,
                authority: Arc::from(*n),
                tls: false,
                host: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn with_all_up_the_pick_stands() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1", "c:1"]);
        assert_eq!(
            (0..3).map(|i| h.first_up_from(&u, i)).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn a_down_upstream_is_passed_over_for_the_next_up_one() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1", "c:1"]);
        h.mark_down(&u[1].authority);
        assert_eq!(
            (0..3).map(|i| h.first_up_from(&u, i)).collect::<Vec<_>>(),
            [0, 2, 2]
        );
        h.mark_down(&u[2].authority);
        assert_eq!(
            (0..3).map(|i| h.first_up_from(&u, i)).collect::<Vec<_>>(),
            [0, 0, 0]
        );
    }

    #[test]
    fn with_all_down_the_pick_stands() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1"]);
        for up in &u {
            h.mark_down(&up.authority);
        }
        assert_eq!(h.first_up_from(&u, 1), 1);
    }

    #[test]
    fn marking_reports_changes_only() {
        let h = Health::default();
        let a: Arc<str> = Arc::from("a:1");
        assert!(!h.is_down(&a));
        assert!(h.mark_down(&a));
        assert!(!h.mark_down(&a));
        assert!(h.is_down(&a));
        assert!(h.mark_up(&a));
        assert!(!h.mark_up(&a));
        assert!(!h.is_down(&a));
    }

    #[test]
    fn health_is_shared_by_every_app_naming_the_upstream() {
        let h = Health::default();
        let one = ups(&["shared:1", "x:1"]);
        let two = ups(&["y:1", "shared:1"]);
        h.mark_down(&one[0].authority);
        assert_eq!(h.first_up_from(&two, 1), 0);
    }

    #[test]
    fn upstreams_no_app_has_are_forgotten() {
        let h = Health::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a:1"), Arc::from("b:1"));
        h.mark_down(&a);
        h.mark_down(&b);
        h.retain(&HashSet::from([b.clone()]));
        assert!(!h.is_down(&a));
        assert!(h.is_down(&b));
    }
}
