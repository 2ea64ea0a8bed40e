//! Validation, canonical names and rendering of users and groups.

use serde_json::json;

use super::*;
use crate::scim::model::{GroupRecord, MemberRef, UserRecord};

/// The user Okta POSTs when provisioning.
fn okta_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

#[test]
fn okta_create_body_becomes_a_draft_without_password_or_groups() {
    let d = user_from_body(&okta_user()).unwrap();
    assert_eq!(d.user_name, "test.user@okta.local");
    assert_eq!(d.external_id.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
    assert_eq!(d.display_name.as_deref(), Some("Test User"));
    assert!(d.active);
    assert_eq!(d.emails, vec!["test.user@okta.local".to_string()]);
    assert_eq!(d.primary_email.as_deref(), Some("test.user@okta.local"));
    for gone in ["password", "groups", "schemas", "id", "meta"] {
        assert!(!d.attrs.contains_key(gone), "{gone} kept");
    }
    assert_eq!(d.attrs["locale"], "en-US");
}

#[test]
fn read_only_attributes_in_a_put_body_are_ignored() {
    let mut body = okta_user();
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"version": "W/\"9\""});
    let d = user_from_body(&body).unwrap();
    assert!(!d.attrs.contains_key("id") && !d.attrs.contains_key("meta"));
}

#[test]
fn attribute_names_are_made_canonical() {
    let d = user_from_body(
        &json!({"USERNAME": "a", "Name": {"GIVENNAME": "A"}, "Emails": [{"VALUE": "a@b.c"}]}),
    )
    .unwrap();
    assert_eq!(d.user_name, "a");
    assert_eq!(d.attrs["name"], json!({"givenName": "A"}));
    assert_eq!(d.attrs["emails"], json!([{"value": "a@b.c"}]));
}

#[test]
fn enterprise_extension_and_unknown_attributes_are_kept_as_given() {
    let d = user_from_body(&json!({
        "userName": "a",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "R&D", "manager": {"value": "m"}},
        "customThing": [1, 2]
    }))
    .unwrap();
    assert_eq!(
        d.attrs[ENTERPRISE_SCHEMA],
        json!({"Department": "R&D", "manager": {"value": "m"}})
    );
    assert_eq!(d.attrs["customThing"], json!([1, 2]));
}

#[test]
fn user_name_is_required_and_must_be_a_string() {
    for body in [
        json!({}),
        json!({"userName": ""}),
        json!({"userName": "  "}),
        json!({"userName": 7}),
    ] {
        let e = user_from_body(&body).unwrap_err();
        assert_eq!(
            (e.status, e.scim_type),
            (400, Some("invalidValue")),
            "{body}"
        );
        assert!(e.detail.contains("userName"));
    }
}

#[test]
fn active_accepts_strings_and_defaults_to_true() {
    assert!(user_from_body(&json!({"userName": "a"})).unwrap().active);
    let d = user_from_body(&json!({"userName": "a", "active": "False"})).unwrap();
    assert!(!d.active);
    assert_eq!(d.attrs["active"], json!(false));
    assert!(user_from_body(&json!({"userName": "a", "active": 0})).is_err());
}

#[test]
fn missing_active_on_an_update_keeps_the_current_value() {
    let attrs = user_attrs(&json!({"userName": "a"})).unwrap();
    assert!(!user_draft(attrs.clone(), false).unwrap().active);
    assert!(user_draft(attrs, true).unwrap().active);
    let null = user_attrs(&json!({"userName": "a", "active": null})).unwrap();
    assert!(!user_draft(null, false).unwrap().active);
}

#[test]
fn missing_active_is_not_shown_but_the_state_stays() {
    let attrs = user_attrs(&json!({"userName": "a"})).unwrap();
    let d = user_draft(attrs, false).unwrap();
    assert!(!d.active, "still deprovisioned");
    assert!(!d.attrs.contains_key("active"), "the attribute is gone");
    let d = user_draft(
        user_attrs(&json!({"userName": "a", "active": "TRUE"})).unwrap(),
        false,
    )
    .unwrap();
    assert!(d.active, "only an explicit true reactivates");
    assert_eq!(d.attrs["active"], json!(true));
}

#[test]
fn projection_of_non_ascii_attribute_names_is_safe() {
    for names in [
        "urné",
        "abcé",
        "urn:ietf:params:scim:schemas:core:2.0:Useré",
        "é",
    ] {
        let mut v = json!({"id": "1", "userName": "a", "schemas": [], "meta": {}});
        project(&mut v, Some(names), None);
        project(&mut v, None, Some(names));
        assert_eq!(v["id"], "1", "{names}");
    }
}

#[test]
fn projection_strips_a_core_schema_urn() {
    let mut v = json!({"id": "1", "userName": "a", "displayName": "A", "schemas": [], "meta": {}});
    project(
        &mut v,
        Some("urn:ietf:params:scim:schemas:core:2.0:User:userName"),
        None,
    );
    assert_eq!(v["userName"], "a");
    assert!(v.get("displayName").is_none(), "{v}");
}

#[test]
fn bad_shapes_are_invalid_value() {
    for body in [
        json!({"userName": "a", "emails": "x"}),
        json!({"userName": "a", "emails": [{"type": "work"}]}),
        json!({"userName": "a", "name": "A B"}),
        json!({"userName": "a", "externalId": 5}),
    ] {
        assert_eq!(user_from_body(&body).unwrap_err().status, 400, "{body}");
    }
    assert_eq!(
        user_from_body(&json!([1])).unwrap_err().scim_type,
        Some("invalidSyntax")
    );
    assert_eq!(
        user_from_body(&json!({"userName": "a", "username": "b"}))
            .unwrap_err()
            .scim_type,
        Some("invalidSyntax")
    );
}

#[test]
fn primary_email_is_the_marked_one_else_the_first() {
    let d = user_from_body(&json!({"userName": "a", "emails": [{"value": "X@b.c"}, {"value": "y@b.c", "primary": true}]})).unwrap();
    assert_eq!(d.primary_email.as_deref(), Some("y@b.c"));
    assert_eq!(d.emails, vec!["x@b.c".to_string(), "y@b.c".to_string()]);
    let d = user_from_body(&json!({"userName": "a", "emails": [{"value": "X@b.c"}]})).unwrap();
    assert_eq!(d.primary_email.as_deref(), Some("X@b.c"));
}

#[test]
fn okta_group_push_body_parses() {
    let (d, members) = group_from_body(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Test SCIMv2",
        "members": []
    }))
    .unwrap();
    assert_eq!(d.display_name, "Test SCIMv2");
    assert_eq!(members, Some(vec![]));
    assert!(!d.attrs.contains_key("members"));
}

#[test]
fn group_members_must_be_users_with_ids() {
    let ids =
        member_ids(&json!([{"value": "u1", "display": "a"}, {"value": "u2"}, {"value": "u1"}]))
            .unwrap();
    assert_eq!(ids, vec!["u1".to_string(), "u2".to_string()]);
    assert!(member_ids(&json!([{"display": "a"}])).is_err());
    assert!(member_ids(&json!([{"value": "g", "type": "Group"}]))
        .unwrap_err()
        .detail
        .contains("nested groups"));
    assert!(group_from_body(&json!({"members": []}))
        .unwrap_err()
        .detail
        .contains("displayName"));
}

fn user_record() -> UserRecord {
    let d = user_from_body(&okta_user()).unwrap();
    UserRecord {
        id: "u-1".into(),
        idp: "okta".into(),
        user_name: d.user_name,
        external_id: d.external_id,
        display_name: d.display_name,
        primary_email: d.primary_email,
        active: true,
        attrs: d.attrs,
        created_ms: 1_700_000_000_123,
        modified_ms: 1_700_000_001_000,
        version: 2,
    }
}

#[test]
fn user_json_has_id_schemas_groups_and_meta() {
    let groups = [MemberRef {
        value: "g-1".into(),
        display: "eng".into(),
    }];
    let v = user_json(&user_record(), &groups, "https://auth.example.com/scim/v2");
    assert_eq!(v["id"], "u-1");
    assert_eq!(v["schemas"], json!([USER_SCHEMA]));
    assert_eq!(v["userName"], "test.user@okta.local");
    assert_eq!(v["active"], true);
    assert!(v.get("password").is_none());
    assert_eq!(v["groups"][0]["display"], "eng");
    assert_eq!(v["meta"]["resourceType"], "User");
    assert_eq!(v["meta"]["created"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["meta"]["lastModified"], "2023-11-14T22:13:21Z");
    assert_eq!(
        v["meta"]["location"],
        "https://auth.example.com/scim/v2/Users/u-1"
    );
    assert_eq!(v["meta"]["version"], "W/\"2\"");
}

#[test]
fn extension_schemas_are_listed() {
    let mut u = user_record();
    u.attrs
        .insert(ENTERPRISE_SCHEMA.into(), json!({"department": "x"}));
    let v = user_json(&u, &[], "b");
    assert_eq!(v["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
}

#[test]
fn group_json_lists_members_when_loaded() {
    let mut g = GroupRecord {
        id: "g-1".into(),
        idp: "okta".into(),
        display_name: "eng".into(),
        external_id: None,
        attrs: json!({"displayName": "eng"}).as_object().unwrap().clone(),
        created_ms: 0,
        modified_ms: 0,
        version: 1,
        members: None,
    };
    assert!(group_json(&g, "b").get("members").is_none());
    g.members = Some(vec![MemberRef {
        value: "u-1".into(),
        display: "a@b.c".into(),
    }]);
    let v = group_json(&g, "b");
    assert_eq!(
        v["members"],
        json!([{"value": "u-1", "display": "a@b.c", "type": "User", "$ref": "b/Users/u-1"}])
    );
    assert_eq!(v["meta"]["resourceType"], "Group");
}

#[test]
fn projection_keeps_id_schemas_meta() {
    let mut v = user_json(&user_record(), &[], "b");
    project(&mut v, Some("userName,name.givenName"), None);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(v.get("name").is_some() && v.get("emails").is_none());
    let mut v = user_json(&user_record(), &[], "b");
    project(&mut v, None, Some("emails,id"));
    assert!(v.get("emails").is_none() && v.get("id").is_some());
}

#[test]
fn members_are_loaded_unless_excluded() {
    assert!(wants_members(None, None));
    assert!(!wants_members(None, Some("members")));
    assert!(!wants_members(Some("displayName"), None));
    assert!(wants_members(Some("displayName,members"), None));
}
