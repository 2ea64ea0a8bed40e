//! [`SqliteStore`] against the shared conformance suite, plus what is
//! specific to SQLite: URLs, files, durability across reopen, migrations.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use super::*;
use crate::store::conformance;

async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn session_round_trip() {
    let (_dir, s) = temp_store().await;
    conformance::session_round_trip(&s).await;
}

#[tokio::test]
async fn duplicate_sid_is_refused() {
    let (_dir, s) = temp_store().await;
    conformance::duplicate_sid_is_refused(&s).await;
}

#[tokio::test]
async fn revoke_session_marks_it_revoked() {
    let (_dir, s) = temp_store().await;
    conformance::revoke_session_marks_it_revoked(&s).await;
}

#[tokio::test]
async fn revoking_an_ended_session_reports_not_live() {
    let (_dir, s) = temp_store().await;
    conformance::revoking_an_ended_session_reports_not_live(&s).await;
}

#[tokio::test]
async fn revoke_user_sessions_revokes_only_that_user() {
    let (_dir, s) = temp_store().await;
    conformance::revoke_user_sessions_revokes_only_that_user(&s).await;
}

#[tokio::test]
async fn revoked_since_lists_recent_revocations() {
    let (_dir, s) = temp_store().await;
    conformance::revoked_since_lists_recent_revocations(&s).await;
}

#[tokio::test]
async fn use_once_is_single_use() {
    let (_dir, s) = temp_store().await;
    conformance::use_once_is_single_use(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_once_is_single_use_under_concurrency() {
    let (_dir, s) = temp_store().await;
    conformance::use_once_is_single_use_under_concurrency(Arc::new(s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_once_is_single_use_under_concurrency_in_memory() {
    let s = SqliteStore::open(MEMORY_URL).await.unwrap();
    conformance::use_once_is_single_use_under_concurrency(Arc::new(s)).await;
}

#[tokio::test]
async fn seats_upsert_list_and_remove() {
    let (_dir, s) = temp_store().await;
    conformance::seats_upsert_list_and_remove(&s).await;
}

#[tokio::test]
async fn memory_store_passes_the_suite() {
    let s = SqliteStore::open(MEMORY_URL).await.unwrap();
    conformance::session_round_trip(&s).await;
    conformance::revoke_user_sessions_revokes_only_that_user(&s).await;
    conformance::use_once_is_single_use(&s).await;
    conformance::seats_upsert_list_and_remove(&s).await;
}

#[tokio::test]
async fn writes_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let written = conformance::durable_write(&store).await;
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&url).await.unwrap();
    conformance::durable_check(&reopened, &written).await;
}

#[tokio::test]
async fn writes_survive_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let written = conformance::durable_write(&store).await;
    drop(store);
    let reopened = SqliteStore::open(&url).await.unwrap();
    conformance::durable_check(&reopened, &written).await;
}

#[tokio::test]
async fn open_creates_parent_folders_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("state.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.is_file());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn reopening_keeps_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let first = SqliteStore::open(&url).await.unwrap();
    assert_eq!(
        first.schema_version().await.unwrap(),
        MIGRATIONS.len() as i64
    );
    drop(first);
    let second = SqliteStore::open(&url).await.unwrap();
    assert_eq!(
        second.schema_version().await.unwrap(),
        MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn appended_migrations_run_once_on_open() {
    let (_dir, s) = temp_store().await;
    const EXTRA: &str = "CREATE TABLE extra (id INTEGER PRIMARY KEY) STRICT;";
    let mut list = MIGRATIONS.to_vec();
    list.push(EXTRA);
    migrate(s.pool(), &list).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), list.len() as i64);
    // A second run must not re-apply it (CREATE TABLE without IF NOT EXISTS would fail).
    migrate(s.pool(), &list).await.unwrap();
}

#[tokio::test]
async fn newer_schema_than_known_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = SqliteStore::open(&url).await.unwrap();
    sqlx::raw_sql("PRAGMA user_version = 99")
        .execute(s.pool())
        .await
        .unwrap();
    drop(s);
    let err = SqliteStore::open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Data(_)), "{err}");
}

#[tokio::test]
async fn corrupt_identity_is_a_data_error() {
    let (_dir, s) = temp_store().await;
    sqlx::query("INSERT INTO sessions (sid, idp, sub, identity, created_at, expires_at) VALUES ('x', 'i', 's', 'not json', 0, 0)")
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(s.get_session("x").await, Err(StoreError::Data(_))));
}

#[tokio::test]
async fn in_place_read_returns_what_the_pool_wrote() {
    let (_dir, s) = temp_store().await;
    let rec = conformance::record("okta", "alice", 3600);
    s.create_session(&rec).await.unwrap();
    let now = s.get_session_now(&rec.sid).expect("offered").unwrap();
    assert_eq!(now, Some(rec.clone()));
    assert_eq!(now, s.get_session_pooled(&rec.sid).await.unwrap());
}

#[tokio::test]
async fn in_place_read_of_an_unknown_sid_is_none() {
    let (_dir, s) = temp_store().await;
    assert_eq!(
        s.get_session_now("no-such-sid").expect("offered").unwrap(),
        None
    );
}

#[tokio::test]
async fn in_place_read_sees_a_revocation_at_once() {
    let (_dir, s) = temp_store().await;
    let rec = conformance::record("okta", "alice", 3600);
    s.create_session(&rec).await.unwrap();
    // A connection that has read before (kept in the free list).
    assert!(
        !s.get_session_now(&rec.sid)
            .unwrap()
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(s.revoke_session(&rec.sid).await.unwrap());
    assert!(
        s.get_session_now(&rec.sid)
            .unwrap()
            .unwrap()
            .unwrap()
            .revoked
    );
}

#[tokio::test]
async fn in_place_read_reports_a_corrupt_identity() {
    let (_dir, s) = temp_store().await;
    sqlx::query("INSERT INTO sessions (sid, idp, sub, identity, created_at, expires_at) VALUES ('x', 'i', 's', 'not json', 0, 0)")
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(
        s.get_session_now("x"),
        Some(Err(StoreError::Data(_)))
    ));
}

#[tokio::test]
async fn in_place_reads_from_many_threads_agree_with_the_store() {
    let (_dir, s) = temp_store().await;
    let s = Arc::new(s);
    let mut recs = Vec::new();
    for i in 0..16 {
        let rec = conformance::record("okta", &format!("u{i}"), 3600);
        s.create_session(&rec).await.unwrap();
        recs.push(rec);
    }
    let recs = Arc::new(recs);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (s, recs) = (s.clone(), recs.clone());
            std::thread::spawn(move || {
                for round in 0..50 {
                    let rec = &recs[(t * 7 + round) % recs.len()];
                    let got = s.get_session_now(&rec.sid).unwrap().unwrap();
                    assert_eq!(got.as_ref(), Some(rec));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[tokio::test]
async fn memory_store_does_not_read_in_place() {
    let s = SqliteStore::open(MEMORY_URL).await.unwrap();
    assert!(s.get_session_now("any").is_none());
}

#[test]
fn urls_parse_to_locations() {
    assert_eq!(parse_url("sqlite::memory:").unwrap(), Location::Memory);
    assert_eq!(
        parse_url("sqlite:///var/lib/p/state.db").unwrap(),
        Location::File("/var/lib/p/state.db".into())
    );
    assert_eq!(
        parse_url("sqlite://portcullis.db").unwrap(),
        Location::File("portcullis.db".into())
    );
    for bad in [
        "sqlite://",
        "sqlite:x.db",
        "postgres://h/db",
        "state.db",
        "",
    ] {
        assert!(
            matches!(parse_url(bad), Err(StoreError::UnsupportedUrl(_))),
            "{bad}"
        );
    }
}
