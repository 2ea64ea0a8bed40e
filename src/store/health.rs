//! What this instance knows about reaching its store, for fleet mode's
//! outage rules (DESIGN "Store unreachable"): while the database does not
//! answer, logins, logout, SCIM and `/authorized` answer 503 at once;
//! sessions already cached keep being served until `outage_grace` after
//! the last successful contact, then every request that needs a session
//! gets 503 (fail closed). Recovery is automatic on the next successful
//! contact.
//!
//! Contact is reported by the change applier's poll (every 500 ms, each
//! with a time limit): the grace runs from the last poll that succeeded,
//! whatever made the later ones fail (refused, hung, an error of the
//! database's own), so an instance cut off without noticing still stops
//! serving at the end of the grace. Store calls that fail because the
//! database is unreachable also mark it down, for the 503s. The access
//! phase reads two relaxed atomics per request that needs a session.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// The store's reachability as this instance last saw it.
#[derive(Debug)]
pub struct StoreHealth {
    /// Only a shared (fleet) store has outages to manage: an embedded
    /// SQLite file is never "unreachable".
    shared: bool,
    grace_secs: i64,
    /// Unix seconds of the last successful contact.
    last_ok: AtomicI64,
    /// The last contact failed because the database was unreachable.
    down: AtomicBool,
}

impl StoreHealth {
    /// Health of a store; `shared` for fleet mode.
    pub fn new(shared: bool, outage_grace: Duration) -> StoreHealth {
        StoreHealth {
            shared,
            grace_secs: i64::try_from(outage_grace.as_secs()).unwrap_or(i64::MAX),
            last_ok: AtomicI64::new(crate::session::token::now_unix()),
            down: AtomicBool::new(false),
        }
    }

    /// The store answered.
    pub fn contact_ok(&self) {
        self.last_ok
            .store(crate::session::token::now_unix(), Ordering::Relaxed);
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Store reachable again");
        }
    }

    /// The store could not be reached.
    pub fn contact_failed(&self) {
        if self.shared && !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                outage_grace_secs = self.grace_secs,
                "Store unreachable: logins, logout and SCIM answer 503; cached sessions are served for outage_grace"
            );
        }
    }

    /// Record the outcome of a store call: only "unreachable" counts (a
    /// query or data error says the database answered).
    pub fn observe<T>(&self, r: &Result<T, super::StoreError>) {
        match r {
            Ok(_) => {}
            Err(e) if e.is_unavailable() => self.contact_failed(),
            Err(_) => {}
        }
    }

    /// The store is unreachable now: answer what needs it with 503 at once.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// No successful contact for `outage_grace` (fleet mode): cached
    /// sessions are no longer served.
    pub fn is_past_grace(&self) -> bool {
        self.shared && self.is_past_grace_at(crate::session::token::now_unix_coarse())
    }

    fn is_past_grace_at(&self, now: i64) -> bool {
        now - self.last_ok.load(Ordering::Relaxed) >= self.grace_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reachable_store_is_neither_down_nor_past_grace() {
        let h = StoreHealth::new(true, Duration::from_secs(30));
        assert!(!h.is_down());
        assert!(!h.is_past_grace());
    }

    #[test]
    fn no_contact_for_the_grace_is_past_it_even_without_a_failure() {
        // A poll that hangs never fails: the grace still runs out.
        let h = StoreHealth::new(true, Duration::from_secs(30));
        let last_ok = h.last_ok.load(Ordering::Relaxed);
        assert!(!h.is_down());
        assert!(!h.is_past_grace_at(last_ok + 29));
        assert!(h.is_past_grace_at(last_ok + 30));
    }

    #[test]
    fn an_outage_is_within_grace_until_it_lasts_longer() {
        let h = StoreHealth::new(true, Duration::from_secs(30));
        h.contact_failed();
        let last_ok = h.last_ok.load(Ordering::Relaxed);
        assert!(h.is_down());
        assert!(!h.is_past_grace_at(last_ok + 29));
        assert!(h.is_past_grace_at(last_ok + 30));
    }

    #[test]
    fn contact_ends_an_outage() {
        let h = StoreHealth::new(true, Duration::from_secs(1));
        h.contact_failed();
        h.contact_ok();
        assert!(!h.is_down());
        assert!(!h.is_past_grace());
    }

    #[test]
    fn an_embedded_store_is_never_down() {
        let h = StoreHealth::new(false, Duration::from_secs(1));
        h.contact_failed();
        assert!(!h.is_down());
        h.last_ok.store(0, Ordering::Relaxed);
        assert!(!h.is_past_grace());
    }

    #[test]
    fn only_unreachable_errors_count() {
        let h = StoreHealth::new(true, Duration::from_secs(1));
        h.observe::<()>(&Err(super::super::StoreError::Data("bad row".into())));
        assert!(!h.is_down());
        h.observe::<()>(&Err(super::super::StoreError::from(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(h.is_down());
    }
}
