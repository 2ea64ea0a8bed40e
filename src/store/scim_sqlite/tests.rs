//! SCIM tables of [`SqliteStore`]: the shared SCIM conformance suite, plus
//! what is specific to SQLite: in-place links, durability across reopening
//! the file, concurrency on one file.

use std::sync::Arc;

use super::*;
use crate::scim::model::{GroupRecord, MemberOp, Outcome};
use crate::store::conformance::scim::{create, draft, group, member_ids, user};
use crate::store::directory::link_pooled;
use crate::store::sqlite::MEMORY_URL;
use crate::store::DirectoryStore as _;

async fn mem() -> SqliteStore {
    SqliteStore::open(MEMORY_URL).await.unwrap()
}

crate::store::conformance::scim_suite!(mem().await);

/// A store on a file: the only kind that offers in-place reads.
async fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    (dir, SqliteStore::open(&url).await.unwrap())
}

#[tokio::test]
async fn schema_version_includes_scim_tables() {
    let s = mem().await;
    assert_eq!(s.schema_version().await.unwrap(), 2);
}

#[tokio::test]
async fn in_place_link_agrees_with_the_async_link() {
    let (_dir, s) = file_store().await;
    let alice = user(&s, "okta", "alice").await; // externalId ext-alice
    let by_mail = create(
        &s,
        "okta",
        &draft("someone", "ext-other", "Alice.B@Example.com"),
    )
    .await;
    let second = create(
        &s,
        "okta",
        &draft("alice.b@example.com", "ext-3", "x@example.com"),
    )
    .await;
    let bob = user(&s, "azure", "bob").await;
    let mut off = draft("gone", "ext-gone", "gone@example.com");
    off.active = false;
    let gone = create(&s, "okta", &off).await;
    group(&s, "okta", "eng", &[alice.id.clone(), by_mail.id.clone()]).await;
    group(&s, "okta", "gone-team", std::slice::from_ref(&gone.id)).await;
    group(&s, "okta", "sales", std::slice::from_ref(&by_mail.id)).await;
    group(&s, "okta", "ops", std::slice::from_ref(&second.id)).await;
    group(&s, "azure", "eng", std::slice::from_ref(&bob.id)).await;
    let logins: [(&str, &str, Option<&str>); 8] = [
        ("okta", "ext-alice", Some("alice.b@example.com")),
        ("okta", "ext-gone", None),
        ("okta", "00u-unknown", Some("ALICE.B@example.com")),
        ("okta", "00u-unknown", None),
        ("okta", "ext-3", None),
        ("azure", "ext-bob", None),
        ("azure", "ext-alice", Some("alice@example.com")),
        ("okta", "nobody", Some("nobody@example.com")),
    ];
    for (idp, sub, email) in logins {
        let now = s.scim_link_now(idp, sub, email).expect("offered").unwrap();
        let pooled = link_pooled(&s, idp, sub, email).await.unwrap();
        assert_eq!(now, pooled, "{idp} {sub} {email:?}");
    }
    // A deactivated user is linked, and reported inactive (login refused).
    let off = s.scim_link_now("okta", "ext-gone", None).unwrap().unwrap();
    assert_eq!(off.users, vec![(gone.id.clone(), false)]);
    assert_eq!(off.groups, ["gone-team"]);
    // Two users linked by email: both, and the union of their groups.
    let two = s
        .scim_link_now("okta", "00u-unknown", Some("alice.b@example.com"))
        .unwrap()
        .unwrap();
    assert_eq!(two.users.len(), 2);
    assert_eq!(two.groups, ["eng", "ops", "sales"]);
}

#[tokio::test]
async fn in_place_link_sees_a_membership_change_at_once() {
    let (_dir, s) = file_store().await;
    let alice = user(&s, "okta", "alice").await;
    let g = group(&s, "okta", "eng", &[]).await.group;
    let link = || s.scim_link_now("okta", "ext-alice", None).unwrap().unwrap();
    assert!(link().groups.is_empty());
    let keep = |_: &GroupRecord| Ok(None);
    let add = [MemberOp::Add(vec![alice.id.clone()])];
    s.scim_modify_group("okta", &g.id, &keep, &add, false)
        .await
        .unwrap();
    assert_eq!(link().groups, ["eng"]);
    s.scim_delete_group("okta", &g.id).await.unwrap();
    assert!(link().groups.is_empty());
}

#[tokio::test]
async fn memory_store_does_not_link_in_place() {
    assert!(mem().await.scim_link_now("okta", "x", None).is_none());
}

#[tokio::test]
async fn writes_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = SqliteStore::open(&url).await.unwrap();
    let a = user(&s, "okta", "alice").await;
    let g = group(&s, "okta", "eng", std::slice::from_ref(&a.id))
        .await
        .group;
    s.close().await;
    drop(s);
    let s = SqliteStore::open(&url).await.unwrap();
    assert_eq!(
        s.scim_get_user("okta", &a.id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        member_ids(
            &s.scim_get_group("okta", &g.id, true)
                .await
                .unwrap()
                .unwrap()
        ),
        vec![a.id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_member_adds_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let s = Arc::new(SqliteStore::open(&url).await.unwrap());
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(user(&*s, "okta", &format!("u{i}")).await.id);
    }
    let g = group(&*s, "okta", "eng", &[]).await.group;
    let tasks: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let s = s.clone();
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
    let got = s
        .scim_get_group("okta", &g.id, true)
        .await
        .unwrap()
        .unwrap();
    ids.sort();
    assert_eq!(member_ids(&got), ids);
    assert_eq!(got.version, 21);
}
