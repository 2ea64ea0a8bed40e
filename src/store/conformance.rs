//! The conformance suite every [`Store`] implementation runs: one function
//! per behaviour of the trait, each taking the store under test. Ids are
//! random so the functions can share one database.

pub mod scim;

use std::sync::Arc;

use super::{Seat, SessionRecord, Store};
use crate::identity::Identity;
use crate::session::token::{now_unix, random_token};

fn identity(idp: &str, sub: &str) -> Identity {
    let mut custom = serde_json::Map::new();
    custom.insert("department".into(), serde_json::json!("R&D"));
    Identity {
        sub: sub.into(),
        email: format!("{sub}@example.com"),
        email_verified: true,
        name: Some("Alice Ünicode".into()),
        idp: idp.into(),
        idp_type: "okta".into(),
        groups: ["admins", "eng, core"].into_iter().collect(),
        amr: vec!["pwd".into(), "mfa".into()],
        custom: custom.into(),
    }
}

/// A live session of `sub` at `idp` with a random sid.
pub fn record(idp: &str, sub: &str, expires_in: i64) -> SessionRecord {
    let now = now_unix();
    SessionRecord {
        sid: random_token(16),
        identity: identity(idp, sub),
        created_at: now,
        expires_at: now + expires_in,
        revoked: false,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", random_token(8))
}

/// A created session reads back identical; an unknown sid is `None`.
pub async fn session_round_trip(store: &dyn Store) {
    let rec = record("okta", &unique("alice"), 3600);
    store.create_session(&rec).await.unwrap();
    assert_eq!(store.get_session(&rec.sid).await.unwrap(), Some(rec));
    assert_eq!(store.get_session(&random_token(16)).await.unwrap(), None);
}

/// Creating a second session with an existing sid fails (never overwrites).
pub async fn duplicate_sid_is_refused(store: &dyn Store) {
    let rec = record("okta", &unique("alice"), 3600);
    store.create_session(&rec).await.unwrap();
    let mut other = record("okta", &unique("mallory"), 3600);
    other.sid = rec.sid.clone();
    assert!(store.create_session(&other).await.is_err());
    assert_eq!(store.get_session(&rec.sid).await.unwrap(), Some(rec));
}

/// Revoking a live session reports it, marks it, and is idempotent.
pub async fn revoke_session_marks_it_revoked(store: &dyn Store) {
    let rec = record("okta", &unique("alice"), 3600);
    store.create_session(&rec).await.unwrap();
    assert!(store.revoke_session(&rec.sid).await.unwrap());
    let got = store.get_session(&rec.sid).await.unwrap().unwrap();
    assert!(got.revoked);
    assert!(
        !store.revoke_session(&rec.sid).await.unwrap(),
        "second revoke"
    );
    assert!(
        !store.revoke_session(&random_token(16)).await.unwrap(),
        "unknown sid"
    );
}

/// An ended session is not "live" but is still marked revoked.
pub async fn revoking_an_ended_session_reports_not_live(store: &dyn Store) {
    let rec = record("okta", &unique("alice"), -10);
    store.create_session(&rec).await.unwrap();
    assert!(!store.revoke_session(&rec.sid).await.unwrap());
    assert!(store.get_session(&rec.sid).await.unwrap().unwrap().revoked);
}

/// Revoking a user's sessions touches only that user of that IdP.
pub async fn revoke_user_sessions_revokes_only_that_user(store: &dyn Store) {
    let alice = unique("alice");
    let a1 = record("okta", &alice, 3600);
    let a2 = record("okta", &alice, 3600);
    let a_done = record("okta", &alice, 3600);
    let a_other_idp = record("other", &alice, 3600);
    let bob = record("okta", &unique("bob"), 3600);
    for r in [&a1, &a2, &a_done, &a_other_idp, &bob] {
        store.create_session(r).await.unwrap();
    }
    store.revoke_session(&a_done.sid).await.unwrap();

    let mut got = store.revoke_user_sessions("okta", &alice).await.unwrap();
    got.sort();
    let mut want = vec![a1.sid.clone(), a2.sid.clone()];
    want.sort();
    assert_eq!(got, want);
    for r in [&a1, &a2, &a_done] {
        assert!(store.get_session(&r.sid).await.unwrap().unwrap().revoked);
    }
    for r in [&a_other_idp, &bob] {
        assert!(!store.get_session(&r.sid).await.unwrap().unwrap().revoked);
    }
    assert!(
        store
            .revoke_user_sessions("okta", &alice)
            .await
            .unwrap()
            .is_empty(),
        "second call"
    );
    assert!(store
        .revoke_user_sessions("okta", &unique("nobody"))
        .await
        .unwrap()
        .is_empty());
}

/// Revocations are listed from `since` on, by either revoke call.
pub async fn revoked_since_lists_recent_revocations(store: &dyn Store) {
    let before = now_unix();
    let one = record("okta", &unique("alice"), 3600);
    let bob = unique("bob");
    let two = record("okta", &bob, 3600);
    let live = record("okta", &unique("carol"), 3600);
    for r in [&one, &two, &live] {
        store.create_session(r).await.unwrap();
    }
    store.revoke_session(&one.sid).await.unwrap();
    store.revoke_user_sessions("okta", &bob).await.unwrap();

    let listed = store.revoked_since(before).await.unwrap();
    assert!(listed.contains(&one.sid));
    assert!(listed.contains(&two.sid));
    assert!(!listed.contains(&live.sid));
    assert!(store
        .revoked_since(now_unix() + 3600)
        .await
        .unwrap()
        .is_empty());
}

/// A key is usable once; other keys are independent.
pub async fn use_once_is_single_use(store: &dyn Store) {
    let key = unique("transfer");
    let exp = now_unix() + 60;
    assert!(store.use_once(&key, exp).await.unwrap());
    assert!(!store.use_once(&key, exp).await.unwrap());
    assert!(!store.use_once(&key, exp + 1000).await.unwrap());
    assert!(store.use_once(&unique("transfer"), exp).await.unwrap());
}

/// Twenty concurrent uses of one key: exactly one wins.
pub async fn use_once_is_single_use_under_concurrency(store: Arc<dyn Store>) {
    let key = unique("state");
    let exp = now_unix() + 60;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.use_once(&key, exp).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

/// Seats upsert (refreshing email and last login), list in order, and are
/// removed per user across apps.
pub async fn seats_upsert_list_and_remove(store: &dyn Store) {
    let app = unique("app");
    let (alice, bob) = (unique("alice"), unique("bob"));
    let seat = |app: &str, sub: &str, email: &str, t: i64| Seat {
        app: app.into(),
        idp: "okta".into(),
        sub: sub.into(),
        email: email.into(),
        last_login: t,
    };
    store
        .upsert_seat(&seat(&format!("{app}-b"), &alice, "a@example.com", 1))
        .await
        .unwrap();
    store
        .upsert_seat(&seat(&format!("{app}-a"), &bob, "b@example.com", 2))
        .await
        .unwrap();
    store
        .upsert_seat(&seat(&format!("{app}-a"), &alice, "old@example.com", 3))
        .await
        .unwrap();
    store
        .upsert_seat(&seat(&format!("{app}-a"), &alice, "a@example.com", 4))
        .await
        .unwrap();

    let mine = |all: Vec<Seat>| {
        all.into_iter()
            .filter(|s| s.app.starts_with(&app))
            .collect::<Vec<_>>()
    };
    let listed = mine(store.list_seats().await.unwrap());
    assert_eq!(
        listed,
        vec![
            seat(&format!("{app}-a"), &alice, "a@example.com", 4),
            seat(&format!("{app}-a"), &bob, "b@example.com", 2),
            seat(&format!("{app}-b"), &alice, "a@example.com", 1),
        ]
    );

    assert_eq!(store.remove_seats("okta", &alice).await.unwrap(), 2);
    assert_eq!(store.remove_seats("okta", &alice).await.unwrap(), 0);
    assert_eq!(store.remove_seats("other", &bob).await.unwrap(), 0);
    let listed = mine(store.list_seats().await.unwrap());
    assert_eq!(
        listed,
        vec![seat(&format!("{app}-a"), &bob, "b@example.com", 2)]
    );
}

/// What [`durable_check`] expects to find after a reopen.
pub struct Written {
    session: SessionRecord,
    revoked: SessionRecord,
    used_key: String,
    seat: Seat,
}

impl Written {
    /// The live session written.
    pub fn session_sid(&self) -> String {
        self.session.sid.clone()
    }
}

/// First half of the durability test: write one of everything.
pub async fn durable_write(store: &dyn Store) -> Written {
    let session = record("okta", &unique("alice"), 3600);
    let revoked = record("okta", &unique("bob"), 3600);
    store.create_session(&session).await.unwrap();
    store.create_session(&revoked).await.unwrap();
    assert!(store.revoke_session(&revoked.sid).await.unwrap());
    let used_key = unique("transfer");
    assert!(store.use_once(&used_key, now_unix() + 60).await.unwrap());
    let seat = Seat {
        app: unique("app"),
        idp: "okta".into(),
        sub: session.identity.sub.clone(),
        email: session.identity.email.clone(),
        last_login: now_unix(),
    };
    store.upsert_seat(&seat).await.unwrap();
    Written {
        session,
        revoked,
        used_key,
        seat,
    }
}

/// Second half, on a reopened store: everything acknowledged is there.
pub async fn durable_check(store: &dyn Store, w: &Written) {
    assert_eq!(
        store.get_session(&w.session.sid).await.unwrap().as_ref(),
        Some(&w.session)
    );
    assert!(
        store
            .get_session(&w.revoked.sid)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(store
        .revoked_since(0)
        .await
        .unwrap()
        .contains(&w.revoked.sid));
    assert!(
        !store.use_once(&w.used_key, now_unix() + 60).await.unwrap(),
        "used key forgotten"
    );
    assert!(store.list_seats().await.unwrap().contains(&w.seat));
}

/// One `#[tokio::test]` per session conformance function taking a store,
/// each on a store made by `$open` (an expression evaluated inside the test).
macro_rules! session_suite {
    ($open:expr) => {
        #[tokio::test]
        async fn session_round_trip() {
            let s = $open;
            $crate::store::conformance::session_round_trip(&s).await;
        }
        #[tokio::test]
        async fn duplicate_sid_is_refused() {
            let s = $open;
            $crate::store::conformance::duplicate_sid_is_refused(&s).await;
        }
        #[tokio::test]
        async fn revoke_session_marks_it_revoked() {
            let s = $open;
            $crate::store::conformance::revoke_session_marks_it_revoked(&s).await;
        }
        #[tokio::test]
        async fn revoking_an_ended_session_reports_not_live() {
            let s = $open;
            $crate::store::conformance::revoking_an_ended_session_reports_not_live(&s).await;
        }
        #[tokio::test]
        async fn revoke_user_sessions_revokes_only_that_user() {
            let s = $open;
            $crate::store::conformance::revoke_user_sessions_revokes_only_that_user(&s).await;
        }
        #[tokio::test]
        async fn revoked_since_lists_recent_revocations() {
            let s = $open;
            $crate::store::conformance::revoked_since_lists_recent_revocations(&s).await;
        }
        #[tokio::test]
        async fn use_once_is_single_use() {
            let s = $open;
            $crate::store::conformance::use_once_is_single_use(&s).await;
        }
        #[tokio::test]
        async fn seats_upsert_list_and_remove() {
            let s = $open;
            $crate::store::conformance::seats_upsert_list_and_remove(&s).await;
        }
    };
}
pub(crate) use session_suite;

/// One `#[tokio::test]` per SCIM conformance function, each on a fresh
/// store made by `$open` (an expression evaluated inside the test).
macro_rules! scim_suite {
    ($open:expr) => {
        #[tokio::test]
        async fn created_user_reads_back() {
            let s = $open;
            $crate::store::conformance::scim::created_user_reads_back(&s).await;
        }
        #[tokio::test]
        async fn duplicate_user_name_conflicts_case_insensitively_within_an_idp() {
            let s = $open;
            $crate::store::conformance::scim::duplicate_user_name_conflicts_case_insensitively_within_an_idp(&s).await;
        }
        #[tokio::test]
        async fn edit_bumps_version_only_when_something_changed() {
            let s = $open;
            $crate::store::conformance::scim::edit_bumps_version_only_when_something_changed(&s).await;
        }
        #[tokio::test]
        async fn removing_active_keeps_the_deprovisioned_state() {
            let s = $open;
            $crate::store::conformance::scim::removing_active_keeps_the_deprovisioned_state(&s).await;
        }
        #[tokio::test]
        async fn edit_refusal_and_rename_conflict_change_nothing() {
            let s = $open;
            $crate::store::conformance::scim::edit_refusal_and_rename_conflict_change_nothing(&s).await;
        }
        #[tokio::test]
        async fn list_filters_and_pages_in_creation_order() {
            let s = $open;
            $crate::store::conformance::scim::list_filters_and_pages_in_creation_order(&s).await;
        }
        #[tokio::test]
        async fn group_create_checks_members_and_names() {
            let s = $open;
            $crate::store::conformance::scim::group_create_checks_members_and_names(&s).await;
        }
        #[tokio::test]
        async fn member_ops_apply_in_order_and_report_net_changes() {
            let s = $open;
            $crate::store::conformance::scim::member_ops_apply_in_order_and_report_net_changes(&s).await;
        }
        #[tokio::test]
        async fn rename_reports_other_members_and_checks_uniqueness() {
            let s = $open;
            $crate::store::conformance::scim::rename_reports_other_members_and_checks_uniqueness(&s).await;
        }
        #[tokio::test]
        async fn deleting_a_user_drops_memberships_and_bumps_groups() {
            let s = $open;
            $crate::store::conformance::scim::deleting_a_user_drops_memberships_and_bumps_groups(&s).await;
        }
        #[tokio::test]
        async fn deleting_a_group_reports_its_members() {
            let s = $open;
            $crate::store::conformance::scim::deleting_a_group_reports_its_members(&s).await;
        }
        #[tokio::test]
        async fn group_list_filters_by_display_name_and_member() {
            let s = $open;
            $crate::store::conformance::scim::group_list_filters_by_display_name_and_member(&s).await;
        }
        #[tokio::test]
        async fn link_prefers_external_id_and_falls_back_to_email() {
            let s = $open;
            $crate::store::conformance::scim::link_prefers_external_id_and_falls_back_to_email(&s).await;
        }
        #[tokio::test]
        async fn linked_subjects_come_from_sessions_and_seats() {
            let s = $open;
            $crate::store::conformance::scim::linked_subjects_come_from_sessions_and_seats(&s).await;
        }
        #[tokio::test]
        async fn secrets_seed_once_and_rotate() {
            let s = $open;
            $crate::store::conformance::scim::secrets_seed_once_and_rotate(&s).await;
        }
    };
}
pub(crate) use scim_suite;
