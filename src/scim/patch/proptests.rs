//! Property tests of PATCH paths applied to a user: any path text with any
//! operation is answered (applied or refused with a SCIM error), never a
//! panic; a `replace` then a `remove` of the same attribute or
//! sub-attribute leaves it absent, whatever case the path is written in.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

fn user() -> Map<String, Value> {
    json!({
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"value": "test.user@okta.local", "type": "work", "primary": true}],
        "title": "Engineer",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn op_kind() -> impl Strategy<Value = OpKind> {
    proptest::sample::select(vec![OpKind::Add, OpKind::Remove, OpKind::Replace])
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        "[a-z]{0,6}".prop_map(Value::String),
        Just(json!({"value": "x", "type": "work"})),
        Just(json!([{"value": "y"}])),
        Just(json!({"givenName": "G"})),
    ]
}

/// Writable names (core, or in the enterprise extension) and sub-attributes.
fn writable() -> impl Strategy<Value = (String, Option<String>)> {
    prop_oneof![
        proptest::sample::select(vec![
            "title",
            "nickName",
            "displayName",
            "locale",
            "x-custom"
        ])
        .prop_map(|n| (n.to_string(), None)),
        proptest::sample::select(vec!["givenName", "familyName", "middleName"])
            .prop_map(|s| ("name".to_string(), Some(s.to_string()))),
        proptest::sample::select(vec!["department", "costCenter"]).prop_map(|s| {
            (
                format!("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:{s}"),
                None,
            )
        }),
    ]
}

/// `s` in a random mix of ASCII cases.
fn recased(s: String) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), s.len()).prop_map(move |up| {
        s.chars()
            .zip(up)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_path_with_any_op_is_applied_or_refused_never_a_panic(
        path in "\\PC{0,40}|[a-zA-Z.\\[\\] \"=:]{0,40}",
        kind in op_kind(),
        v in value(),
    ) {
        let op = PatchOp { op: kind, path: Some(path), value: Some(v) };
        if let Err(e) = apply_all(&user(), &[op], Kind::User) {
            prop_assert_eq!(e.status, 400);
            prop_assert!(!e.detail.is_empty());
        }
    }

    #[test]
    fn replace_then_remove_leaves_the_attribute_absent(
        (name, sub) in writable(),
        upper in any::<bool>(),
        text in "[a-z]{1,6}",
    ) {
        let path = match &sub {
            Some(s) => format!("{name}.{s}"),
            None => name.clone(),
        };
        let path = if upper && !path.starts_with("urn:") { path.to_ascii_uppercase() } else { path };
        let set = PatchOp { op: OpKind::Replace, path: Some(path.clone()), value: Some(Value::String(text.clone())) };
        let out = apply_all(&user(), std::slice::from_ref(&set), Kind::User).map_err(|e| TestCaseError::fail(e.detail))?;
        let read = |out: &Map<String, Value>| -> Option<Value> {
            if let Some(attr) = name.strip_prefix("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:") {
                return out.get(ENTERPRISE_SCHEMA)?.get(attr).cloned();
            }
            // Unknown attributes keep the spelling they were first given.
            let top = filter::get_ci(out, &name)?;
            match &sub {
                Some(s) => filter::get_ci(top.as_object()?, s).cloned(),
                None => Some(top.clone()),
            }
        };
        prop_assert_eq!(read(&out), Some(Value::String(text)), "{:?}", out);
        let remove = PatchOp { op: OpKind::Remove, path: Some(path), value: None };
        let out = apply_all(&user(), &[set, remove], Kind::User).map_err(|e| TestCaseError::fail(e.detail))?;
        prop_assert_eq!(read(&out), None, "{:?}", out);
    }

    #[test]
    fn path_case_does_not_change_what_is_removed(p in recased("name.givenName".to_string())) {
        let remove = PatchOp { op: OpKind::Remove, path: Some(p), value: None };
        let out = apply_all(&user(), &[remove], Kind::User).map_err(|e| TestCaseError::fail(e.detail))?;
        prop_assert_eq!(out.get("name"), Some(&json!({"familyName": "User"})));
    }
}
