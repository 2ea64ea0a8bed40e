//! [`PgStore`] against a real PostgreSQL server: the shared conformance
//! suite (sessions and SCIM), plus what fleet mode adds: migrations under
//! a lock and a refused newer schema, the change feed (NOTIFY and the
//! catch-up poll), the signing keys, concurrent SCIM writes from several
//! instances, and durability across a database crash.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::scim::model::{GroupRecord, MemberOp, Outcome};
use crate::store::conformance::scim::{group, member_ids, user};
use crate::store::{conformance, DirectoryStore as _, FeedEvent};
use crate::testing::postgres::PgServer;

/// A store on a new database of the shared server.
async fn pg() -> PgStore {
    let url = PgServer::shared().fresh_database().await;
    PgStore::open(&url, 8).await.unwrap()
}

conformance::session_suite!(pg().await);
conformance::scim_suite!(pg().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_once_is_single_use_under_concurrency() {
    conformance::use_once_is_single_use_under_concurrency(Arc::new(pg().await)).await;
}

#[tokio::test]
async fn schema_version_counts_every_migration() {
    let s = pg().await;
    assert_eq!(s.schema_version().await.unwrap(), MIGRATIONS.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let url = PgServer::shared().fresh_database().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url, 2).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let s = PgStore::open(&url, 2).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn a_newer_schema_is_refused_with_one_line() {
    let url = PgServer::shared().fresh_database().await;
    let s = PgStore::open(&url, 2).await.unwrap();
    sqlx::query("UPDATE portcullis_schema SET version = 99")
        .execute(s.pool())
        .await
        .unwrap();
    let err = PgStore::open(&url, 2).await.unwrap_err().to_string();
    assert!(err.contains("schema version 99 is newer"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_wrong_password_fails_fast_without_echoing_it() {
    let server = PgServer::shared();
    let url = format!(
        "postgres://nobody:s3cret@127.0.0.1:{}/postgres",
        server.port()
    );
    let started = std::time::Instant::now();
    let err = PgStore::open(&url, 2).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_fails_within_the_connect_timeout() {
    // A port nothing listens on: refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u:pw@127.0.0.1:{port}/db");
    let started = std::time::Instant::now();
    let err = PgStore::open(&url, 2).await.unwrap_err();
    assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(2));
    assert!(
        err.is_unavailable() || err.to_string().contains("did not answer"),
        "{err}"
    );
}

/// The next change the feed delivers, skipping catch-up signals.
async fn next_change(rx: &mut tokio::sync::mpsc::Receiver<FeedEvent>) -> Change {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a change within 5 s")
            .expect("feed open");
        if let FeedEvent::Change(c) = ev {
            return c;
        }
    }
}

#[tokio::test]
async fn a_revocation_is_announced_to_another_instance() {
    let url = PgServer::shared().fresh_database().await;
    let writer = PgStore::open(&url, 2).await.unwrap();
    let reader = PgStore::open(&url, 2).await.unwrap();
    let mut feed = reader.subscribe().unwrap();
    // The listener says it is connected (CatchUp) before anything else.
    let first = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert_eq!(first.unwrap(), Some(FeedEvent::CatchUp));
    let rec = conformance::record("okta", "alice", 3600);
    writer.create_session(&rec).await.unwrap();
    assert!(writer.revoke_session(&rec.sid).await.unwrap());
    let c = next_change(&mut feed).await;
    assert_eq!(
        c.kind,
        ChangeKind::Revoked {
            sid: rec.sid.clone()
        }
    );
    writer.announce_user_change("okta", "bob").await.unwrap();
    let c = next_change(&mut feed).await;
    assert_eq!(
        c.kind,
        ChangeKind::User {
            idp: "okta".into(),
            sub: "bob".into()
        }
    );
}

#[tokio::test]
async fn changes_since_lists_what_a_disconnected_instance_missed() {
    let s = pg().await;
    let cursor = s.change_cursor().await.unwrap();
    let rec = conformance::record("okta", "carol", 3600);
    s.create_session(&rec).await.unwrap();
    s.revoke_user_sessions("okta", "carol").await.unwrap();
    s.announce_user_change("okta", "carol").await.unwrap();
    let (changes, next) = s.changes_since(cursor).await.unwrap();
    let kinds: Vec<_> = changes.into_iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ChangeKind::Revoked { sid: rec.sid },
            ChangeKind::User {
                idp: "okta".into(),
                sub: "carol".into()
            }
        ]
    );
    assert!(next >= cursor);
}

#[tokio::test]
async fn a_failed_write_announces_nothing() {
    let s = pg().await;
    let cursor = s.change_cursor().await.unwrap();
    // Revoking an unknown session changes nothing and announces nothing.
    assert!(!s.revoke_session("no-such-sid").await.unwrap());
    let (changes, _) = s.changes_since(cursor).await.unwrap();
    assert!(changes.is_empty(), "{changes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_first_key_is_stored_when_instances_race() {
    let url = PgServer::shared().fresh_database().await;
    let mut tasks = Vec::new();
    for i in 0..3 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let s = PgStore::open(&url, 2).await.unwrap();
            let key = StoredKey {
                kid: format!("k{i}"),
                pkcs8_pem: format!("pem{i}"),
                created_at: i,
                signs_from: i,
            };
            s.add_signing_key(&key, true).await.unwrap()
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += usize::from(t.await.unwrap());
    }
    assert_eq!(stored, 1);
    let s = PgStore::open(&url, 2).await.unwrap();
    assert_eq!(s.signing_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn keys_are_added_listed_and_removed() {
    let s = pg().await;
    let key = |kid: &str, at: i64| StoredKey {
        kid: kid.into(),
        pkcs8_pem: "pem".into(),
        created_at: at,
        signs_from: at,
    };
    assert!(s.add_signing_key(&key("a", 1), true).await.unwrap());
    assert!(!s.add_signing_key(&key("b", 2), true).await.unwrap());
    assert!(s.add_signing_key(&key("b", 2), false).await.unwrap());
    let kids: Vec<_> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["a", "b"]);
    assert!(s.remove_signing_key("a").await.unwrap());
    assert!(!s.remove_signing_key("a").await.unwrap());
}

use crate::store::StoredKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_member_adds_from_three_instances_all_land() {
    let url = PgServer::shared().fresh_database().await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(PgStore::open(&url, 4).await.unwrap()));
    }
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(user(&*stores[0], "okta", &format!("u{i}")).await.id);
    }
    let g = group(&*stores[0], "okta", "eng", &[]).await.group;
    let tasks: Vec<_> = ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, id)| {
            let s = stores[i % 3].clone();
            let gid = g.id.clone();
            tokio::spawn(async move {
                let keep = |_: &GroupRecord| Ok(None);
                s.scim_modify_group("okta", &gid, &keep, &[MemberOp::Add(vec![id])], false)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Outcome::Done(_)));
    }
    let got = stores[1]
        .scim_get_group("okta", &g.id, true)
        .await
        .unwrap()
        .unwrap();
    ids.sort();
    assert_eq!(member_ids(&got), ids);
    // One version step per write: ETags stay correct across instances.
    assert_eq!(got.version, 25);
}

#[tokio::test]
async fn acknowledged_writes_survive_a_database_crash() {
    let server = PgServer::start();
    let url = server.fresh_database().await;
    let s = PgStore::open(&url, 2).await.unwrap();
    let written = conformance::durable_write(&s).await;
    server.restart();
    // The pool's connections died with the server: the first query on each
    // fails, and the pool opens new ones. A new store sees the same data.
    let again = PgStore::open(&url, 2).await.unwrap();
    conformance::durable_check(&again, &written).await;
    // The old store recovers by itself once its dead connections are gone.
    let mut ok = false;
    for _ in 0..5 {
        if s.get_session(&written.session_sid()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the store did not recover after the restart");
    server.stop();
}

#[tokio::test]
async fn a_notification_it_does_not_understand_asks_for_a_catch_up_and_the_feed_goes_on() {
    let url = PgServer::shared().fresh_database().await;
    let writer = PgStore::open(&url, 2).await.unwrap();
    let reader = PgStore::open(&url, 2).await.unwrap();
    let mut feed = reader.subscribe().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert_eq!(first.unwrap(), Some(FeedEvent::CatchUp));
    sqlx::query("SELECT pg_notify('portcullis_changes', 'not a change')")
        .execute(writer.pool())
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert_eq!(next.unwrap(), Some(FeedEvent::CatchUp));
    let rec = conformance::record("okta", "erin", 3600);
    writer.create_session(&rec).await.unwrap();
    writer.revoke_session(&rec.sid).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await.kind,
        ChangeKind::Revoked { sid: rec.sid }
    );
}

#[tokio::test]
async fn the_feed_reconnects_and_asks_for_a_catch_up_after_its_connection_is_killed() {
    let url = PgServer::shared().fresh_database().await;
    let writer = PgStore::open(&url, 2).await.unwrap();
    let reader = PgStore::open(&url, 2).await.unwrap();
    let mut feed = reader.subscribe().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), feed.recv()).await;
    assert_eq!(first.unwrap(), Some(FeedEvent::CatchUp));
    // Kill every listening backend of this database, as a restart would.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
    )
    .execute(writer.pool())
    .await
    .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), feed.recv()).await;
    assert_eq!(next.unwrap(), Some(FeedEvent::CatchUp));
    let rec = conformance::record("okta", "fay", 3600);
    writer.create_session(&rec).await.unwrap();
    writer.revoke_session(&rec.sid).await.unwrap();
    assert_eq!(
        next_change(&mut feed).await.kind,
        ChangeKind::Revoked { sid: rec.sid }
    );
}
