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
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::config::UpstreamHealthConfig;
use crate::policy::model::Upstream;

use super::state::State;

/// Upstreams currently marked down, by `host:port`, with when.
#[derive(Debug, Default)]
pub struct Health {
    down: RwLock<HashMap<Arc<str>, Instant>>,
    /// `down.len()`, readable without the lock.
    count: AtomicUsize,
}

impl Health {
    /// Whether `authority` is marked down.
    pub fn is_down(&self, authority: &str) -> bool {
        self.count.load(Ordering::Acquire) != 0 && self.down.read().contains_key(authority)
    }

    /// Mark `authority` down (until a check connects to it). True when it
    /// was up.
    pub fn mark_down(&self, authority: &Arc<str>) -> bool {
        let mut down = self.down.write();
        let changed = down.insert(authority.clone(), Instant::now()).is_none();
        self.count.store(down.len(), Ordering::Release);
        changed
    }

    /// Mark `authority` up after a check that started at `checked`: a mark
    /// made after that (a connect that failed meanwhile) stands. True when
    /// it was down.
    pub fn mark_up(&self, authority: &str, checked: Instant) -> bool {
        if !self.is_down(authority) {
            return false;
        }
        let mut down = self.down.write();
        let stale = down.get(authority).is_some_and(|&at| at <= checked);
        if stale {
            down.remove(authority);
        }
        self.count.store(down.len(), Ordering::Release);
        stale
    }

    /// Which of `ups` a request tries: see [`pick`]. `turn` is the shared
    /// round-robin counter's value (used for a new request only).
    pub fn pick(
        &self,
        ups: &[Upstream],
        turn: usize,
        last: Option<usize>,
        tried: u64,
    ) -> Option<usize> {
        if last.is_none() && self.count.load(Ordering::Acquire) == 0 {
            return (!ups.is_empty()).then(|| turn % ups.len());
        }
        let down = self.down.read();
        pick(ups.len(), turn, last, tried, |i| {
            down.contains_key(&*ups[i].authority)
        })
    }

    /// Forget upstreams no app has any more.
    fn retain(&self, live: &HashSet<Arc<str>>) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut down = self.down.write();
        down.retain(|a, _| live.contains(a));
        self.count.store(down.len(), Ordering::Release);
    }
}

/// Which of `n` upstreams a request tries.
///
/// - A new request (`last` is `None`) takes the `turn`-th of the upstreams
///   that are up, so a down upstream's share spreads evenly over the rest;
///   with every upstream down (or none), the `turn`-th of all.
/// - A retry after upstream `last` failed takes the first upstream after
///   it that this request has not tried (`tried` has bit `i` set for each
///   one tried; upstreams past the 64th are never counted as tried),
///   preferring one that is up; `None` once every upstream was tried.
pub fn pick(
    n: usize,
    turn: usize,
    last: Option<usize>,
    tried: u64,
    is_down: impl Fn(usize) -> bool,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    match last {
        None => {
            let up = (0..n).filter(|&i| !is_down(i)).count();
            if up == 0 || up == n {
                return Some(turn % n);
            }
            (0..n).filter(|&i| !is_down(i)).nth(turn % up)
        }
        Some(last) => {
            let untried = || {
                (1..=n)
                    .map(move |k| (last + k) % n)
                    .filter(move |&i| tried & tried_bit(i) == 0)
            };
            untried()
                .find(|&i| !is_down(i))
                .or_else(|| untried().next())
        }
    }
}

/// Bit of upstream `i` in a `tried` mask (none past the 64th).
pub fn tried_bit(i: usize) -> u64 {
    if i < 64 {
        1 << i
    } else {
        0
    }
}

/// Check the upstreams of every app with more than one, every
/// `cfg.interval`, for as long as `state` lives.
pub fn spawn_checker(state: &Arc<State>, cfg: UpstreamHealthConfig) {
    let weak: Weak<State> = Arc::downgrade(state);
    tokio::spawn(async move {
        // The first round after one interval: until then only failed
        // connects mark upstreams down.
        let first = tokio::time::Instant::now() + cfg.interval;
        let mut tick = tokio::time::interval_at(first, cfg.interval);
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
            let started = Instant::now();
            let result = connect(&state, &up, timeout).await;
            match result {
                Ok(()) => {
                    if state.health.mark_up(&authority, started) {
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

/// A TCP connect to `up` within `timeout` (the name lookup is bounded by
/// the resolver's own timeout).
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

    /// Picks of `n` new requests over `ups` with `down` marked down.
    fn new_picks(h: &Health, ups: &[Upstream], n: usize) -> Vec<usize> {
        (0..n).map(|t| h.pick(ups, t, None, 0).unwrap()).collect()
    }

    #[test]
    fn new_requests_take_upstreams_in_turn() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1", "c:1"]);
        assert_eq!(new_picks(&h, &u, 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(h.pick(&[], 0, None, 0), None);
        assert_eq!(h.pick(&u[..1], 5, None, 0), Some(0));
    }

    #[test]
    fn a_down_upstreams_share_spreads_evenly_over_the_rest() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1", "c:1"]);
        h.mark_down(&u[1].authority);
        assert_eq!(new_picks(&h, &u, 6), [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn with_all_down_new_requests_still_take_turns() {
        let h = Health::default();
        let u = ups(&["a:1", "b:1"]);
        for up in &u {
            h.mark_down(&up.authority);
        }
        assert_eq!(new_picks(&h, &u, 4), [0, 1, 0, 1]);
    }

    #[test]
    fn a_retry_takes_the_next_untried_upstream_preferring_one_up() {
        let down = |d: &'static [usize]| move |i: usize| d.contains(&i);
        // After 0 failed: 1 is next.
        assert_eq!(pick(3, 0, Some(0), 0b001, down(&[0])), Some(1));
        // 1 is down: 2 first, then 1 (untried) before giving up.
        assert_eq!(pick(3, 0, Some(0), 0b001, down(&[0, 1])), Some(2));
        assert_eq!(pick(3, 0, Some(2), 0b101, down(&[0, 1, 2])), Some(1));
        // Every upstream tried: none left.
        assert_eq!(pick(3, 0, Some(1), 0b111, down(&[])), None);
    }

    #[test]
    fn a_retry_never_returns_to_a_tried_upstream_while_one_is_untried() {
        // B was marked down by a blip but is up; A then C failed.
        let all_down = |_: usize| true;
        assert_eq!(pick(3, 0, Some(2), 0b101, all_down), Some(1));
    }

    #[test]
    fn a_retry_ignores_the_round_robin_turn() {
        for turn in 0..4 {
            assert_eq!(pick(2, turn, Some(0), 0b01, |_| false), Some(1));
        }
    }

    #[test]
    fn marking_reports_changes_only() {
        let h = Health::default();
        let a: Arc<str> = Arc::from("a:1");
        assert!(!h.is_down(&a));
        assert!(h.mark_down(&a));
        assert!(!h.mark_down(&a));
        assert!(h.is_down(&a));
        assert!(h.mark_up(&a, Instant::now()));
        assert!(!h.mark_up(&a, Instant::now()));
        assert!(!h.is_down(&a));
    }

    #[test]
    fn a_check_older_than_a_failure_does_not_undo_it() {
        let h = Health::default();
        let a: Arc<str> = Arc::from("a:1");
        let check_started = Instant::now();
        h.mark_down(&a);
        assert!(!h.mark_up(&a, check_started));
        assert!(h.is_down(&a));
    }

    #[test]
    fn health_is_shared_by_every_app_naming_the_upstream() {
        let h = Health::default();
        let one = ups(&["shared:1", "x:1"]);
        let two = ups(&["y:1", "shared:1"]);
        h.mark_down(&one[0].authority);
        assert_eq!(new_picks(&h, &two, 3), [0, 0, 0]);
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
