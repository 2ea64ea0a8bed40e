//! The SCIM half of the conformance suite: uniqueness, atomic edits,
//! membership operations, list queries, linking and secrets, as every
//! [`Store`] must behave. Each function takes a fresh, empty store.

use serde_json::json;

use crate::identity::Identity;
use crate::scim::filter;
use crate::scim::model::{
    GroupChange, GroupRecord, LinkKeys, MemberOp, Outcome, Page, ScimLink, UserDraft, UserRecord,
};
use crate::scim::query::{plan_filter, Kind};
use crate::scim::resource::{group_from_body, user_from_body};
use crate::store::{Seat, SessionRecord, Store};

pub(crate) fn draft(user_name: &str, external_id: &str, email: &str) -> UserDraft {
    user_from_body(&json!({
        "userName": user_name,
        "externalId": external_id,
        "emails": [{"value": email, "primary": true}],
        "name": {"givenName": "G", "familyName": "F"},
    }))
    .unwrap()
}

/// Create a user from `d`; panics unless it was created.
pub(crate) async fn create(s: &dyn Store, idp: &str, d: &UserDraft) -> UserRecord {
    match s.scim_create_user(idp, d).await.unwrap() {
        Outcome::Done(u) => u,
        other => panic!("{other:?}"),
    }
}

pub(crate) async fn user(s: &dyn Store, idp: &str, name: &str) -> UserRecord {
    let d = draft(name, &format!("ext-{name}"), &format!("{name}@example.com"));
    create(s, idp, &d).await
}

pub(crate) async fn group(s: &dyn Store, idp: &str, name: &str, members: &[String]) -> GroupChange {
    let (d, _) = group_from_body(&json!({"displayName": name})).unwrap();
    match s.scim_create_group(idp, &d, members).await.unwrap() {
        Outcome::Done(g) => g,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn member_ids(g: &GroupRecord) -> Vec<String> {
    let mut ids: Vec<String> = g
        .members
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.value.clone())
        .collect();
    ids.sort();
    ids
}

pub(crate) fn identity(idp: &str, sub: &str, email: &str, verified: bool) -> Identity {
    Identity {
        sub: sub.into(),
        email: email.into(),
        email_verified: verified,
        name: None,
        idp: idp.into(),
        idp_type: "okta".into(),
        groups: Default::default(),
        amr: vec![],
        custom: Default::default(),
    }
}

pub async fn created_user_reads_back(s: &dyn Store) {
    let u = user(s, "okta", "alice").await;
    assert_eq!(u.version, 1);
    assert!(u.active);
    assert_eq!(u.external_id.as_deref(), Some("ext-alice"));
    assert_eq!(
        s.scim_get_user("okta", &u.id).await.unwrap(),
        Some(u.clone())
    );
    assert_eq!(
        s.scim_get_user("other-idp", &u.id).await.unwrap(),
        None,
        "users belong to one IdP"
    );
}

pub async fn duplicate_user_name_conflicts_case_insensitively_within_an_idp(s: &dyn Store) {
    user(s, "okta", "alice").await;
    let again = s
        .scim_create_user("okta", &draft("ALICE", "x", "x@example.com"))
        .await
        .unwrap();
    assert_eq!(again, Outcome::Conflict("userName"));
    assert!(matches!(
        s.scim_create_user("azure", &draft("alice", "x", "x@e.com"))
            .await
            .unwrap(),
        Outcome::Done(_)
    ));
}

pub async fn edit_bumps_version_only_when_something_changed(s: &dyn Store) {
    let u = user(s, "okta", "alice").await;
    let same = |cur: &UserRecord| crate::scim::resource::user_draft(cur.attrs.clone(), cur.active);
    let Outcome::Done(c) = s.scim_modify_user("okta", &u.id, &same).await.unwrap() else {
        panic!()
    };
    assert!(!c.changed);
    assert_eq!(c.after.version, 1);
    let deactivate = |cur: &UserRecord| {
        let mut a = cur.attrs.clone();
        a.insert("active".into(), json!(false));
        crate::scim::resource::user_draft(a, cur.active)
    };
    let Outcome::Done(c) = s
        .scim_modify_user("okta", &u.id, &deactivate)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(c.changed && !c.after.active && c.before.unwrap().active);
    assert_eq!(c.after.version, 2);
    assert!(c.after.modified_ms >= u.modified_ms);
    assert_eq!(c.after.created_ms, u.created_ms);
}

/// The deprovisioned state is kept apart from the `active` attribute: an
/// edit that drops the attribute keeps the state, reading back without it.
pub async fn removing_active_keeps_the_deprovisioned_state(s: &dyn Store) {
    let u = user(s, "okta", "alice").await;
    let set = |v: serde_json::Value| {
        move |cur: &UserRecord| {
            let mut a = cur.attrs.clone();
            if v.is_null() {
                a.remove("active");
            } else {
                a.insert("active".into(), v.clone());
            }
            crate::scim::resource::user_draft(a, cur.active)
        }
    };
    let Outcome::Done(c) = s
        .scim_modify_user("okta", &u.id, &set(json!(false)))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!c.after.active);
    let Outcome::Done(c) = s
        .scim_modify_user("okta", &u.id, &set(json!(null)))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(c.changed && !c.after.active && !c.after.attrs.contains_key("active"));
    let read = s.scim_get_user("okta", &u.id).await.unwrap().unwrap();
    assert!(!read.active, "still deprovisioned");
    assert!(!read.attrs.contains_key("active"), "attribute gone");
    let Outcome::Done(c) = s
        .scim_modify_user("okta", &u.id, &set(json!(true)))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(c.after.active && c.after.attrs["active"] == json!(true));
}

pub async fn edit_refusal_and_rename_conflict_change_nothing(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    user(s, "okta", "bob").await;
    let refuse = |_: &UserRecord| Err(crate::scim::error::ScimError::invalid_value("no"));
    assert!(matches!(
        s.scim_modify_user("okta", &a.id, &refuse).await.unwrap(),
        Outcome::Rejected(_)
    ));
    let rename = |_: &UserRecord| Ok(draft("Bob", "e", "e@example.com"));
    assert_eq!(
        s.scim_modify_user("okta", &a.id, &rename).await.unwrap(),
        Outcome::Conflict("userName")
    );
    assert_eq!(s.scim_get_user("okta", &a.id).await.unwrap(), Some(a));
    assert_eq!(
        s.scim_modify_user("okta", "nope", &rename).await.unwrap(),
        Outcome::NotFound
    );
}

pub async fn list_filters_and_pages_in_creation_order(s: &dyn Store) {
    let mut ids = Vec::new();
    for n in ["carol", "alice", "bob", "alina"] {
        ids.push(user(s, "okta", n).await.id);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let q = |f: &str| plan_filter(f, Kind::User).unwrap();
    let page = Page {
        offset: 0,
        limit: 100,
    };
    let names = |v: Vec<UserRecord>| v.into_iter().map(|u| u.user_name).collect::<Vec<_>>();
    let (t, v) = s
        .scim_list_users("okta", Some(&q(r#"userName eq "ALICE""#)), page)
        .await
        .unwrap();
    assert_eq!((t, names(v)), (1, vec!["alice".to_string()]));
    let (t, v) = s
        .scim_list_users("okta", Some(&q(r#"userName sw "al""#)), page)
        .await
        .unwrap();
    assert_eq!(
        (t, names(v)),
        (2, vec!["alice".to_string(), "alina".to_string()])
    );
    let (t, _) = s
        .scim_list_users("okta", Some(&q(r#"emails.value co "ROL@""#)), page)
        .await
        .unwrap();
    assert_eq!(t, 1, "carol");
    let (t, _) = s
        .scim_list_users(
            "okta",
            Some(&q(
                r#"emails[value eq "BOB@example.com"] or externalId eq "ext-carol""#,
            )),
            page,
        )
        .await
        .unwrap();
    assert_eq!(t, 2);
    let (t, _) = s
        .scim_list_users(
            "okta",
            Some(&q(r#"userName eq "bob" and externalId eq "ext-carol""#)),
            page,
        )
        .await
        .unwrap();
    assert_eq!(t, 0);
    let (t, v) = s
        .scim_list_users(
            "okta",
            None,
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (t, names(v)),
        (4, vec!["alice".to_string(), "bob".to_string()])
    );
    let (t, v) = s
        .scim_list_users(
            "okta",
            None,
            Page {
                offset: 0,
                limit: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!((t, v.len()), (4, 0));
    let (t, _) = s.scim_list_users("azure", None, page).await.unwrap();
    assert_eq!(t, 0);
    let (_, v) = s.scim_list_users("okta", None, page).await.unwrap();
    assert_eq!(v.into_iter().map(|u| u.id).collect::<Vec<_>>(), ids);
}

pub async fn group_create_checks_members_and_names(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    let g = group(s, "okta", "Engineering", std::slice::from_ref(&a.id)).await;
    assert_eq!(member_ids(&g.group), vec![a.id.clone()]);
    assert_eq!(g.added, vec![a.link_keys()]);
    let (d, _) = group_from_body(&json!({"displayName": "ENGINEERING"})).unwrap();
    assert_eq!(
        s.scim_create_group("okta", &d, &[]).await.unwrap(),
        Outcome::Conflict("displayName")
    );
    let (d, _) = group_from_body(&json!({"displayName": "Other"})).unwrap();
    let Outcome::Rejected(e) = s
        .scim_create_group("okta", &d, &["ghost".into()])
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(e.detail.contains("ghost"));
    let Outcome::Rejected(_) = s
        .scim_create_group("azure", &d, std::slice::from_ref(&a.id))
        .await
        .unwrap()
    else {
        panic!("a user of another IdP is not a member candidate")
    };
    let (t, _) = s
        .scim_list_groups(
            "okta",
            None,
            Page {
                offset: 0,
                limit: 10,
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(t, 1, "refused creations left nothing");
}

pub async fn member_ops_apply_in_order_and_report_net_changes(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    let b = user(s, "okta", "bob").await;
    let c = user(s, "okta", "carol").await;
    let g = group(s, "okta", "eng", std::slice::from_ref(&a.id))
        .await
        .group;
    let keep = |_: &GroupRecord| Ok(None);
    let f = filter::parse(&format!("value eq \"{}\"", a.id)).unwrap();
    let ops = [
        MemberOp::RemoveWhere(f),
        MemberOp::Add(vec![b.id.clone(), c.id.clone()]),
        MemberOp::Remove(vec![c.id.clone()]),
    ];
    let Outcome::Done(ch) = s
        .scim_modify_group("okta", &g.id, &keep, &ops, true)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(member_ids(&ch.group), vec![b.id.clone()]);
    assert_eq!(ch.added, vec![b.link_keys()]);
    assert_eq!(ch.removed, vec![a.link_keys()]);
    assert_eq!(ch.group.version, 2);
    let ops = [MemberOp::Replace(vec![a.id.clone(), b.id.clone()])];
    let Outcome::Done(ch) = s
        .scim_modify_group("okta", &g.id, &keep, &ops, true)
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(member_ids(&ch.group), want);
    assert_eq!((ch.added.len(), ch.removed.len()), (1, 0));
    let Outcome::Done(ch) = s
        .scim_modify_group(
            "okta",
            &g.id,
            &keep,
            &[MemberOp::Add(vec![a.id.clone()])],
            false,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(ch.added.is_empty() && ch.group.members.is_none());
    assert_eq!(ch.group.version, 3, "no change, no new version");
    let Outcome::Done(ch) = s
        .scim_modify_group("okta", &g.id, &keep, &[MemberOp::RemoveAll], true)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(ch.removed.len(), 2);
    assert!(ch.group.members.unwrap().is_empty());
}

pub async fn rename_reports_other_members_and_checks_uniqueness(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    let g = group(s, "okta", "eng", std::slice::from_ref(&a.id))
        .await
        .group;
    group(s, "okta", "ops", &[]).await;
    let rename = |to: &'static str| {
        move |cur: &GroupRecord| {
            let mut attrs = cur.attrs.clone();
            attrs.insert("displayName".into(), json!(to));
            crate::scim::resource::group_draft(attrs).map(Some)
        }
    };
    let r = rename("Ops");
    assert_eq!(
        s.scim_modify_group("okta", &g.id, &r, &[], false)
            .await
            .unwrap(),
        Outcome::Conflict("displayName")
    );
    let r = rename("platform");
    let Outcome::Done(ch) = s
        .scim_modify_group("okta", &g.id, &r, &[], false)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(ch.group.display_name, "platform");
    assert_eq!(ch.others, vec![a.link_keys()]);
}

pub async fn deleting_a_user_drops_memberships_and_bumps_groups(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    let g = group(s, "okta", "eng", std::slice::from_ref(&a.id))
        .await
        .group;
    assert_eq!(
        s.scim_delete_user("okta", &a.id)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(a.id.clone())
    );
    assert_eq!(s.scim_delete_user("okta", &a.id).await.unwrap(), None);
    let g2 = s
        .scim_get_group("okta", &g.id, true)
        .await
        .unwrap()
        .unwrap();
    assert!(g2.members.unwrap().is_empty());
    assert_eq!(g2.version, g.version + 1);
}

pub async fn deleting_a_group_reports_its_members(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    let g = group(s, "okta", "eng", std::slice::from_ref(&a.id))
        .await
        .group;
    let ch = s.scim_delete_group("okta", &g.id).await.unwrap().unwrap();
    assert_eq!(ch.removed, vec![a.link_keys()]);
    assert_eq!(s.scim_get_group("okta", &g.id, false).await.unwrap(), None);
    assert!(s.scim_user_groups(&a.id).await.unwrap().is_empty());
}

pub async fn group_list_filters_by_display_name_and_member(s: &dyn Store) {
    let a = user(s, "okta", "alice").await;
    group(s, "okta", "Test SCIMv2", std::slice::from_ref(&a.id)).await;
    group(s, "okta", "other", &[]).await;
    let page = Page {
        offset: 0,
        limit: 10,
    };
    let q = plan_filter(r#"displayName eq "test scimv2""#, Kind::Group).unwrap();
    let (t, v) = s
        .scim_list_groups("okta", Some(&q), page, true)
        .await
        .unwrap();
    assert_eq!((t, v[0].display_name.as_str()), (1, "Test SCIMv2"));
    assert_eq!(v[0].members.as_ref().unwrap()[0].display, "alice");
    let q = plan_filter(&format!("members[value eq \"{}\"]", a.id), Kind::Group).unwrap();
    let (t, v) = s
        .scim_list_groups("okta", Some(&q), page, false)
        .await
        .unwrap();
    assert_eq!((t, v[0].members.is_none()), (1, true));
}

pub async fn link_prefers_external_id_and_falls_back_to_email(s: &dyn Store) {
    let by_ext = user(s, "okta", "alice").await; // externalId ext-alice
    let by_mail = create(
        s,
        "okta",
        &draft("someone", "ext-other", "Alice.B@Example.com"),
    )
    .await;
    group(s, "okta", "eng", std::slice::from_ref(&by_ext.id)).await;
    group(s, "okta", "sales", std::slice::from_ref(&by_mail.id)).await;
    let l = s
        .scim_link("okta", "ext-alice", Some("alice.b@example.com"))
        .await
        .unwrap();
    assert_eq!(l.users, vec![(by_ext.id.clone(), true)]);
    assert_eq!(l.groups, vec!["eng".to_string()]);
    let l = s
        .scim_link("okta", "00u-unknown", Some("ALICE.B@example.com"))
        .await
        .unwrap();
    assert_eq!(l.users, vec![(by_mail.id.clone(), true)]);
    assert_eq!(l.groups, vec!["sales".to_string()]);
    let l = s.scim_link("okta", "00u-unknown", None).await.unwrap();
    assert_eq!(l, ScimLink::default());
    let l = s
        .scim_link("azure", "ext-alice", Some("alice@example.com"))
        .await
        .unwrap();
    assert_eq!(l, ScimLink::default(), "only SCIM users of the login's IdP");
    let l = s.scim_link("okta", "x", Some("alice")).await.unwrap();
    assert_eq!(l.users.len(), 1, "userName links too");
}

pub async fn linked_subjects_come_from_sessions_and_seats(s: &dyn Store) {
    let now = crate::session::token::now_unix();
    let rec = |sid: &str, sub: &str, email: &str| SessionRecord {
        sid: sid.into(),
        identity: identity("okta", sub, email, true),
        created_at: now,
        expires_at: now + 3600,
        revoked: false,
    };
    s.create_session(&rec("s1", "ext-alice", "x@x.com"))
        .await
        .unwrap();
    s.create_session(&rec("s2", "00u-mail", "ALICE@example.com"))
        .await
        .unwrap();
    s.create_session(&rec("s3", "00u-other", "bob@example.com"))
        .await
        .unwrap();
    s.upsert_seat(&Seat {
        app: "app".into(),
        idp: "okta".into(),
        sub: "00u-seat".into(),
        email: "alice@example.com".into(),
        last_login: now,
    })
    .await
    .unwrap();
    let keys = LinkKeys {
        external_id: Some("ext-alice".into()),
        user_name: "alice@example.com".into(),
        primary_email: None,
    };
    let subs = s
        .scim_linked_subjects("okta", std::slice::from_ref(&keys))
        .await
        .unwrap();
    assert_eq!(
        subs,
        vec![
            "00u-mail".to_string(),
            "00u-seat".to_string(),
            "ext-alice".to_string()
        ]
    );
    assert!(s
        .scim_linked_subjects("azure", &[keys])
        .await
        .unwrap()
        .is_empty());
}

pub async fn secrets_seed_once_and_rotate(s: &dyn Store) {
    assert!(s.scim_seed_secret("okta", &[1; 32]).await.unwrap());
    assert!(!s.scim_seed_secret("okta", &[2; 32]).await.unwrap());
    assert_eq!(
        s.scim_secret_hashes().await.unwrap(),
        vec![("okta".to_string(), vec![1; 32])]
    );
    s.scim_set_secret("okta", &[3; 32]).await.unwrap();
    assert_eq!(
        s.scim_secret_hashes().await.unwrap(),
        vec![("okta".to_string(), vec![3; 32])]
    );
}
