//! PATCH parsing and application, with the bodies Okta and Azure AD send.

use serde_json::{json, Map, Value};

use super::*;

fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn user() -> Map<String, Value> {
    attrs(json!({
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"value": "test.user@okta.local", "type": "work", "primary": true}],
        "active": true,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
    }))
}

fn run(body: Value, a: &Map<String, Value>) -> Result<Map<String, Value>, ScimError> {
    apply_all(a, &parse_request(&body)?, Kind::User)
}

fn ops(list: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": list})
}

#[test]
fn okta_deactivate_is_a_pathless_replace() {
    let out = run(
        ops(json!([{"op": "replace", "value": {"active": false}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["active"], json!(false));
    assert_eq!(out["userName"], "test.user@okta.local");
}

#[test]
fn op_names_are_case_insensitive() {
    let out = run(
        ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["active"], json!("False"), "coerced later by validation");
    assert!(!crate::scim::resource::user_draft(out, true).unwrap().active);
}

#[test]
fn replace_sub_attribute_by_path() {
    let out = run(
        ops(json!([{"op": "replace", "path": "name.givenName", "value": "Tess"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(
        out["name"],
        json!({"givenName": "Tess", "familyName": "User"})
    );
}

#[test]
fn pathless_replace_of_complex_attribute_merges_sub_attributes() {
    let out = run(
        ops(json!([{"op": "replace", "value": {"name": {"familyName": "Usr"}}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(
        out["name"],
        json!({"givenName": "Test", "familyName": "Usr"})
    );
}

#[test]
fn pathless_replace_with_dotted_keys() {
    let out = run(
        ops(json!([{"op": "replace", "value": {"name.givenName": "T", "displayName": "T U"}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["name"]["givenName"], "T");
    assert_eq!(out["displayName"], "T U");
}

#[test]
fn replace_emails_replaces_the_list() {
    let out = run(ops(json!([{"op": "replace", "path": "emails", "value": [{"value": "new@x.y", "primary": true}]}])), &user()).unwrap();
    assert_eq!(
        out["emails"],
        json!([{"value": "new@x.y", "primary": true}])
    );
}

#[test]
fn replace_filtered_sub_attribute() {
    let out = run(
        ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.y"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["emails"][0]["value"], "w@x.y");
    let err = run(
        ops(json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "h"}])),
        &user(),
    )
    .unwrap_err();
    assert_eq!(err.scim_type, Some("noTarget"));
}

#[test]
fn add_appends_to_multi_valued_without_duplicates() {
    let out = run(
        ops(json!([{"op": "add", "path": "emails", "value": [{"value": "test.user@okta.local", "type": "work", "primary": true}, {"value": "h@x.y", "type": "home"}]}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["emails"].as_array().unwrap().len(), 2);
}

#[test]
fn pathless_add_sets_new_attributes() {
    let out = run(
        ops(json!([{"op": "add", "value": {"title": "Engineer", "nickName": "tu"}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(
        (out["title"].as_str(), out["nickName"].as_str()),
        (Some("Engineer"), Some("tu"))
    );
}

#[test]
fn remove_by_path_and_by_filter() {
    let out = run(
        ops(json!([{"op": "remove", "path": "name.givenName"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["name"], json!({"familyName": "User"}));
    let out = run(
        ops(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])),
        &user(),
    )
    .unwrap();
    assert!(!out.contains_key("emails"), "empty list removed");
    let out = run(ops(json!([{"op": "remove", "path": "title"}])), &user()).unwrap();
    assert_eq!(out, user(), "removing a missing attribute succeeds");
}

#[test]
fn extension_attributes_by_urn_path() {
    let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let out = run(
        ops(json!([{"op": "replace", "path": format!("{urn}:department"), "value": "Ops"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out[urn], json!({"department": "Ops"}));
    let out = run(
        ops(json!([{"op": "add", "path": format!("{urn}:employeeNumber"), "value": "7"}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out[urn]["employeeNumber"], "7");
    let out = run(
        ops(json!([{"op": "replace", "value": {urn: {"costCenter": "c1"}}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out[urn], json!({"department": "R&D", "costCenter": "c1"}));
}

#[test]
fn password_is_ignored_and_never_stored() {
    let out = run(
        ops(json!([{"op": "replace", "value": {"password": "hunter2"}}])),
        &user(),
    )
    .unwrap();
    assert!(!out.contains_key("password"));
    let out = run(
        ops(json!([{"op": "replace", "path": "password", "value": "hunter2"}])),
        &user(),
    )
    .unwrap();
    assert!(!out.contains_key("password"));
}

#[test]
fn pathless_id_is_ignored_but_explicit_id_path_is_mutability() {
    let out = run(
        ops(json!([{"op": "replace", "value": {"id": "x", "displayName": "D"}}])),
        &user(),
    )
    .unwrap();
    assert_eq!(out["displayName"], "D");
    assert!(!out.contains_key("id"));
    let err = run(
        ops(json!([{"op": "replace", "path": "id", "value": "x"}])),
        &user(),
    )
    .unwrap_err();
    assert_eq!(err.scim_type, Some("mutability"));
    let err = run(
        ops(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
        &user(),
    )
    .unwrap_err();
    assert_eq!(err.scim_type, Some("mutability"));
}

#[test]
fn null_value_unassigns() {
    let out = run(
        ops(json!([{"op": "replace", "path": "name", "value": null}])),
        &user(),
    )
    .unwrap();
    assert!(!out.contains_key("name"));
}

#[test]
fn malformed_patch_bodies_are_refused() {
    let cases = [
        (json!([]), "invalidSyntax"),
        (json!({"Operations": []}), "invalidSyntax"),
        (
            json!({"schemas": ["urn:wrong"], "Operations": [{"op": "add", "value": {}}]}),
            "invalidSyntax",
        ),
        (ops(json!([{"op": "move", "value": {}}])), "invalidSyntax"),
        (ops(json!([{"op": "remove"}])), "noTarget"),
        (ops(json!([{"op": "add", "path": "title"}])), "invalidValue"),
        (
            ops(json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])),
            "invalidPath",
        ),
        (
            ops(json!([{"op": "replace", "value": "x"}])),
            "invalidValue",
        ),
    ];
    for (body, want) in cases {
        let err = run(body.clone(), &user()).unwrap_err();
        assert_eq!(err.scim_type, Some(want), "{body}: {}", err.detail);
    }
}

#[test]
fn operations_key_is_case_insensitive_and_schemas_optional() {
    let out = run(
        json!({"operations": [{"op": "replace", "value": {"active": false}}]}),
        &user(),
    )
    .unwrap();
    assert_eq!(out["active"], json!(false));
}

/// One failing operation fails the whole request: no result comes back
/// to be stored, though the operations before it would apply on their own
/// (the control). `apply_all` takes the attributes by reference, so "the
/// input is unchanged" would hold whatever it did; what is stored is
/// checked over the wire in `tests/it/scim.rs`
/// (`a_patch_with_a_failing_operation_changes_nothing`).
#[test]
fn a_failing_operation_keeps_nothing() {
    let good = json!({"op": "replace", "path": "title", "value": "x"});
    let bad = json!({"op": "replace", "path": "id", "value": "y"});
    let alone = run(ops(json!([good.clone()])), &user()).unwrap();
    assert_eq!(alone["title"], json!("x"), "control: the first op applies");
    assert!(run(ops(json!([good, bad])), &user()).is_err());
}

fn group_ops(list: Value) -> (Vec<PatchOp>, Vec<MemberOp>) {
    split_group_ops(&parse_request(&ops(list)).unwrap()).unwrap()
}

#[test]
fn okta_membership_patch_splits_into_member_ops() {
    let (attr_ops, member_ops) = group_ops(json!([
        {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
        {"op": "add", "path": "members", "value": [{"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}]}
    ]));
    assert!(attr_ops.is_empty());
    assert_eq!(member_ops.len(), 2);
    let MemberOp::RemoveWhere(f) = &member_ops[0] else {
        panic!("{member_ops:?}")
    };
    assert!(f.matches(&json!({"value": "89bb1940-b905-4575-9e7f-6f887cfb368e"})));
    assert_eq!(
        member_ops[1],
        MemberOp::Add(vec!["23a35c27-23d3-4c03-b4c5-6443c09e7173".into()])
    );
}

#[test]
fn okta_rename_is_an_attribute_op() {
    let (attr_ops, member_ops) =
        group_ops(json!([{"op": "replace", "value": {"id": "g1", "displayName": "Test SCIMv2"}}]));
    assert!(member_ops.is_empty());
    let out = apply_all(
        &attrs(json!({"displayName": "old"})),
        &attr_ops,
        Kind::Group,
    )
    .unwrap();
    assert_eq!(out, attrs(json!({"displayName": "Test SCIMv2"})));
}

#[test]
fn full_push_replace_and_remove_forms() {
    let (_, m) = group_ops(
        json!([{"op": "replace", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}]),
    );
    assert_eq!(m, vec![MemberOp::Replace(vec!["a".into(), "b".into()])]);
    let (_, m) = group_ops(json!([{"op": "remove", "path": "members"}]));
    assert_eq!(m, vec![MemberOp::RemoveAll]);
    let (_, m) = group_ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "a"}]}]));
    assert_eq!(m, vec![MemberOp::Remove(vec!["a".into()])]);
    let (a, m) = group_ops(
        json!([{"op": "add", "value": {"members": [{"value": "c"}], "externalId": "e"}}]),
    );
    assert_eq!(m, vec![MemberOp::Add(vec!["c".into()])]);
    assert_eq!(a.len(), 1);
    let (_, m) = group_ops(
        json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": [{"value": "d"}]}]),
    );
    assert_eq!(m, vec![MemberOp::Add(vec!["d".into()])]);
}

#[test]
fn unsupported_member_paths_are_invalid_path() {
    let body =
        ops(json!([{"op": "replace", "path": "members[value eq \"a\"].display", "value": "x"}]));
    let err = split_group_ops(&parse_request(&body).unwrap()).unwrap_err();
    assert_eq!(err.scim_type, Some("invalidPath"));
}

#[test]
fn non_ascii_paths_are_refused_not_a_panic() {
    for path in ["abcé", "urné", "é", "urn:é"] {
        let e = run(
            ops(json!([{"op": "replace", "path": path, "value": "x"}])),
            &user(),
        )
        .unwrap_err();
        assert_eq!(e.status, 400, "{path}");
    }
    let out = run(
        ops(json!([{"op": "replace", "value": {"abcé": "x"}}])),
        &user(),
    );
    assert_eq!(out.unwrap_err().scim_type, Some("invalidPath"));
}
