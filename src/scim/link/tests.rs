//! Login linking against a real (in-memory) store.

use serde_json::json;

use super::*;
use crate::scim::model::Outcome;
use crate::scim::resource::{group_from_body, user_from_body};
use crate::store::open_store;
use crate::store::sqlite::MEMORY_URL;

fn login(sub: &str, email: &str, verified: bool) -> Identity {
    Identity {
        sub: sub.into(),
        email: email.into(),
        email_verified: verified,
        name: None,
        idp: "okta".into(),
        idp_type: "okta".into(),
        groups: ["from-token"].into_iter().collect(),
        amr: vec![],
        custom: Default::default(),
    }
}

async fn store_with(user: serde_json::Value, groups: &[&str]) -> std::sync::Arc<dyn Store> {
    let s = open_store(MEMORY_URL).await.unwrap();
    let Outcome::Done(u) = s
        .scim_create_user("okta", &user_from_body(&user).unwrap())
        .await
        .unwrap()
    else {
        panic!()
    };
    for g in groups {
        let (d, _) = group_from_body(&json!({"displayName": g})).unwrap();
        let Outcome::Done(_) = s
            .scim_create_group("okta", &d, std::slice::from_ref(&u.id))
            .await
            .unwrap()
        else {
            panic!()
        };
    }
    s
}

#[tokio::test]
async fn unlinked_login_is_allowed_and_unchanged() {
    let s = store_with(json!({"userName": "bob@example.com"}), &["x"]).await;
    let id = login("00ualice", "alice@example.com", true);
    assert!(try_login_allowed(s.as_ref(), &id).await.unwrap());
    assert_eq!(try_live_identity(s.as_ref(), id.clone()).await.unwrap(), id);
}

#[tokio::test]
async fn deactivated_user_linked_by_external_id_may_not_log_in() {
    let s = store_with(
        json!({"userName": "other", "externalId": "00ubob", "active": false}),
        &[],
    )
    .await;
    assert!(
        !try_login_allowed(s.as_ref(), &login("00ubob", "bob@example.com", true))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn deactivated_user_linked_by_verified_email_only() {
    let s = store_with(json!({"userName": "Bob@Example.com", "active": false}), &[]).await;
    assert!(
        !try_login_allowed(s.as_ref(), &login("00ubob", "bob@example.com", true))
            .await
            .unwrap()
    );
    assert!(
        try_login_allowed(s.as_ref(), &login("00ubob", "bob@example.com", false))
            .await
            .unwrap(),
        "unverified email does not link"
    );
}

#[tokio::test]
async fn scim_groups_merge_sorted_and_deduplicated() {
    let s = store_with(
        json!({"userName": "a", "externalId": "00ualice"}),
        &["zeta", "from-token", "alpha"],
    )
    .await;
    let id = try_live_identity(s.as_ref(), login("00ualice", "alice@example.com", true))
        .await
        .unwrap();
    assert_eq!(
        id.groups,
        vec![
            "alpha".to_string(),
            "from-token".to_string(),
            "zeta".to_string()
        ]
    );
}
