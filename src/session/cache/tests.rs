//! Tests of [`SessionCache`]: hits, expiry, revocation, eviction by user,
//! and load coalescing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::session::token::{now_unix, now_unix_coarse, TokenKind};

#[derive(Debug, PartialEq)]
enum LoadErr {
    Unusable(Unusable),
    Store,
}

impl From<Unusable> for LoadErr {
    fn from(u: Unusable) -> Self {
        LoadErr::Unusable(u)
    }
}

fn identity(idp: &str, sub: &str) -> Identity {
    Identity {
        sub: sub.into(),
        email: format!("{sub}@example.com"),
        email_verified: true,
        name: None,
        idp: idp.into(),
        idp_type: "okta".into(),
        groups: ["eng"].into_iter().collect(),
        amr: vec![],
        custom: Default::default(),
    }
}

fn cached(sid: &str, idp: &str, sub: &str, expires_in: i64) -> Arc<CachedSession> {
    cached_until(sid, idp, sub, now_unix() + expires_in)
}

/// A cached session that ends at `exp` (unix seconds).
fn cached_until(sid: &str, idp: &str, sub: &str, exp: i64) -> Arc<CachedSession> {
    let now = now_unix();
    Arc::new(CachedSession::new(
        SessionClaims {
            iss: "http://auth.localhost:8080".into(),
            aud: vec!["aud".into()],
            sub: sub.into(),
            email: format!("{sub}@example.com"),
            sid: sid.into(),
            iat: now,
            nbf: now,
            exp,
            idp: idp.into(),
            typ: TokenKind::App,
        },
        Arc::new(identity(idp, sub)),
        exp,
    ))
}

fn cache() -> SessionCache {
    SessionCache::new(1000, Duration::from_secs(300))
}

#[tokio::test]
async fn hit_after_insert() {
    let c = cache();
    let s = cached("sid1", "okta", "alice", 300);
    c.insert("tok-1", s.clone()).await;
    let hit = c.get("tok-1").await.expect("cached");
    assert!(Arc::ptr_eq(&hit, &s));
}

#[tokio::test]
async fn key_is_the_whole_token() {
    let c = cache();
    c.insert("header.payload.sig", cached("sid1", "okta", "alice", 300))
        .await;
    assert!(c.get("header.payload.si").await.is_none());
    assert!(c.get("header.payload.sig2").await.is_none());
    assert!(c.get("header.payload.sig").await.is_some());
}

#[tokio::test]
async fn entry_is_not_served_after_exp() {
    let c = cache();
    let s = cached("sid1", "okta", "alice", 3);
    let expires_at = s.expires_at;
    c.insert("tok-1", s).await;
    assert!(c.get("tok-1").await.is_some());
    // Poll (with a deadline) until the clock passes `exp`.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while now_unix() < expires_at {
        assert!(
            std::time::Instant::now() < deadline,
            "clock did not advance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn expired_session_is_not_cached() {
    let c = cache();
    c.insert("tok-1", cached("sid1", "okta", "alice", 0)).await;
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn loaded_expired_session_is_refused() {
    let c = cache();
    let r = c
        .get_or_load("tok-1", || async {
            Ok::<_, LoadErr>(cached("sid1", "okta", "alice", -5))
        })
        .await;
    assert_eq!(*r.unwrap_err(), LoadErr::Unusable(Unusable::Expired));
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn revoked_sid_is_not_served() {
    let c = cache();
    c.insert("tok-1", cached("sid1", "okta", "alice", 300))
        .await;
    c.insert("tok-2", cached("sid2", "okta", "alice", 300))
        .await;
    c.revoke("sid1");
    assert!(c.is_revoked("sid1"));
    assert!(c.get("tok-1").await.is_none());
    assert!(c.get("tok-2").await.is_some());
}

#[tokio::test]
async fn session_loaded_after_revocation_is_refused() {
    let c = cache();
    c.revoke("sid1");
    // A load that read the store before the revocation landed.
    let r = c
        .get_or_load("tok-1", || async {
            Ok::<_, LoadErr>(cached("sid1", "okta", "alice", 300))
        })
        .await;
    assert_eq!(*r.unwrap_err(), LoadErr::Unusable(Unusable::Revoked));
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn entry_is_refused_in_the_last_second_before_exp() {
    // The coarse clock may lag by a tick, so the last second is given up
    // rather than risk serving past `exp`. `exp` is one second past the
    // coarse clock's own reading (the precise clock may already show the
    // next second, and the cache reads the coarse one, which only moves
    // forward), so the check is the same on any machine, at any load.
    let c = cache();
    let s = cached_until("sid1", "okta", "alice", now_unix_coarse() + 1);
    c.insert("tok-1", s).await;
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn entry_served_before_a_revocation_is_refused_after_it() {
    let c = cache();
    let s = cached("sid1", "okta", "alice", 300);
    c.insert("tok-1", s.clone()).await;
    assert!(c.get("tok-1").await.is_some());
    assert!(c.get("tok-1").await.is_some());
    c.revoke("sid1");
    // The same entry, put back as an in-flight load would.
    c.insert("tok-1", s).await;
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn revoking_one_sid_keeps_serving_the_others() {
    let c = cache();
    c.insert("tok-2", cached("sid2", "okta", "bob", 300)).await;
    assert!(c.get("tok-2").await.is_some());
    c.revoke("sid1");
    assert!(c.get("tok-2").await.is_some());
    assert!(c.get("tok-2").await.is_some());
}

#[tokio::test]
async fn revoked_sid_is_not_served_even_if_reinserted() {
    let c = cache();
    c.revoke("sid1");
    c.insert("tok-1", cached("sid1", "okta", "alice", 300))
        .await;
    assert!(c.get("tok-1").await.is_none());
}

#[tokio::test]
async fn invalidate_user_evicts_only_that_user() {
    let c = cache();
    c.insert("a1", cached("s1", "okta", "alice", 300)).await;
    c.insert("a2", cached("s2", "okta", "alice", 300)).await;
    c.insert("b1", cached("s3", "okta", "bob", 300)).await;
    c.insert("a3", cached("s4", "other-idp", "alice", 300))
        .await;
    c.invalidate_user("okta", "alice");
    assert!(c.get("a1").await.is_none());
    assert!(c.get("a2").await.is_none());
    assert!(c.get("b1").await.is_some());
    assert!(c.get("a3").await.is_some());
}

#[tokio::test]
async fn invalidate_sid_evicts_without_remembering() {
    let c = cache();
    c.insert("a1", cached("s1", "okta", "alice", 300)).await;
    c.invalidate_sid("s1");
    assert!(c.get("a1").await.is_none());
    assert!(!c.is_revoked("s1"));
    c.insert("a1", cached("s1", "okta", "alice", 300)).await;
    assert!(c.get("a1").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_get_or_load_runs_the_loader_once() {
    let c = Arc::new(cache());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, calls) = (c.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            c.get_or_load("tok-1", || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, LoadErr>(cached("sid1", "okta", "alice", 300))
            })
            .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(results.iter().all(|r| Arc::ptr_eq(r, &results[0])));
}

#[tokio::test]
async fn loader_errors_are_not_cached() {
    let c = cache();
    let r = c
        .get_or_load("tok-1", || async {
            Err::<Arc<CachedSession>, _>(LoadErr::Store)
        })
        .await;
    assert_eq!(*r.unwrap_err(), LoadErr::Store);
    let ok = c
        .get_or_load("tok-1", || async {
            Ok::<_, LoadErr>(cached("sid1", "okta", "alice", 300))
        })
        .await;
    assert!(ok.is_ok());
    assert!(c.get("tok-1").await.is_some());
}

#[tokio::test]
async fn get_or_load_serves_hits_without_loading() {
    let c = cache();
    c.insert("tok-1", cached("sid1", "okta", "alice", 300))
        .await;
    let r = c
        .get_or_load("tok-1", || async {
            Err::<Arc<CachedSession>, _>(LoadErr::Store)
        })
        .await
        .expect("served from cache");
    assert_eq!(&*r.sid, "sid1");
}

#[tokio::test]
async fn entry_count_counts_entries() {
    let c = cache();
    c.insert("a", cached("s1", "okta", "alice", 300)).await;
    c.insert("b", cached("s2", "okta", "bob", 300)).await;
    c.run_pending_tasks().await;
    assert_eq!(c.entry_count(), 2);
}

#[tokio::test]
async fn entry_is_dropped_after_the_cache_ttl_even_if_the_session_lives_on() {
    // Served while younger than the TTL, gone once older: polled with a
    // deadline, and the age at each check is measured, not assumed.
    let ttl = Duration::from_millis(1500);
    let c = SessionCache::new(1000, ttl);
    let inserted = std::time::Instant::now();
    c.insert("tok", cached("s", "i", "u", 3600)).await;
    let deadline = inserted + Duration::from_secs(20);
    loop {
        let age_before = inserted.elapsed();
        let served = c.get("tok").await.is_some();
        if !served {
            assert!(
                age_before >= ttl,
                "dropped at {age_before:?}, before the TTL"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
