//! Filter and PATCH-path parsing and evaluation.

use serde_json::json;

use super::*;

fn path(name: &str, sub: Option<&str>) -> AttrPath {
    AttrPath {
        uri: None,
        name: name.into(),
        sub: sub.map(str::to_string),
    }
}

fn eq(name: &str, v: &str) -> Expr {
    Expr::Compare {
        path: path(name, None),
        op: CompareOp::Eq,
        value: Literal::Str(v.into()),
    }
}

#[test]
fn okta_user_lookup_parses() {
    assert_eq!(
        parse(r#"userName eq "test.user@okta.local""#).unwrap(),
        eq("userName", "test.user@okta.local")
    );
}

#[test]
fn operators_and_keywords_are_case_insensitive() {
    let e = parse(r#"userName EQ "a" AND displayName Eq "b""#).unwrap();
    assert_eq!(
        e,
        Expr::And(
            Box::new(eq("userName", "a")),
            Box::new(eq("displayName", "b"))
        )
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let e = parse(r#"userName eq "a" or userName eq "b" and externalId eq "c""#).unwrap();
    let want = Expr::Or(
        Box::new(eq("userName", "a")),
        Box::new(Expr::And(
            Box::new(eq("userName", "b")),
            Box::new(eq("externalId", "c")),
        )),
    );
    assert_eq!(e, want);
}

#[test]
fn parentheses_group() {
    let e = parse(r#"(userName eq "a" or userName eq "b") and externalId eq "c""#).unwrap();
    let want = Expr::And(
        Box::new(Expr::Or(
            Box::new(eq("userName", "a")),
            Box::new(eq("userName", "b")),
        )),
        Box::new(eq("externalId", "c")),
    );
    assert_eq!(e, want);
}

#[test]
fn sub_attribute_and_value_path_parse() {
    assert_eq!(
        parse(r#"emails.value eq "x@y""#).unwrap(),
        Expr::Compare {
            path: path("emails", Some("value")),
            op: CompareOp::Eq,
            value: Literal::Str("x@y".into())
        }
    );
    assert_eq!(
        parse(r#"emails[value eq "x@y"]"#).unwrap(),
        Expr::ValuePath {
            path: path("emails", None),
            filter: Box::new(eq("value", "x@y"))
        }
    );
}

#[test]
fn urn_prefixed_attribute_splits_schema() {
    let e = parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#).unwrap();
    let Expr::Compare { path, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        path.uri.as_deref(),
        Some("urn:ietf:params:scim:schemas:core:2.0:User")
    );
    assert_eq!(path.name, "userName");
}

#[test]
fn escaped_quotes_and_empty_strings_parse() {
    assert_eq!(
        parse(r#"displayName eq "say \"hi\"""#).unwrap(),
        eq("displayName", "say \"hi\"")
    );
    assert_eq!(
        parse(r#"displayName eq """#).unwrap(),
        eq("displayName", "")
    );
}

#[test]
fn literals_parse() {
    let e = parse("active eq true and x eq null and n gt -1.5").unwrap();
    let text = format!("{e:?}");
    assert!(
        text.contains("Bool(true)") && text.contains("Null") && text.contains("Num(-1.5)"),
        "{text}"
    );
}

#[test]
fn not_and_present_parse() {
    assert_eq!(
        parse(r#"not (userName eq "a")"#).unwrap(),
        Expr::Not(Box::new(eq("userName", "a")))
    );
    assert_eq!(
        parse("title pr").unwrap(),
        Expr::Present(path("title", None))
    );
}

#[test]
fn malformed_filters_are_errors_with_positions() {
    for (f, want_at) in [
        (r#"userName eq"#, 11),
        (r#"userName xx "a""#, 9),
        (r#"userName eq "a" or"#, 18),
        (r#"userName eq "a"#, 12),
        (r#"(userName eq "a""#, 16),
        (r#"userName eq "a")"#, 15),
        (r#"userName eq bare"#, 12),
        (r#"emails[value eq "a"[type eq "b"]]"#, 19),
        (r#"userName eq "a" ; drop"#, 16),
        ("", 0),
    ] {
        let err = parse(f).expect_err(f);
        assert_eq!(err.at, want_at, "{f}: {err}");
    }
}

#[test]
fn deep_nesting_is_refused() {
    let f = format!("{}userName eq \"a\"{}", "(".repeat(40), ")".repeat(40));
    assert!(parse(&f).unwrap_err().message.contains("nested deeper"));
}

#[test]
fn overlong_filter_is_refused() {
    let f = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN));
    assert!(parse(&f).is_err());
}

#[test]
fn patch_paths_parse() {
    let p = parse_path(r#"members[value eq "89bb1940-b905-4575-9e7f-6f887cfb368e"]"#).unwrap();
    assert_eq!(p.attr, path("members", None));
    assert_eq!(
        p.filter,
        Some(eq("value", "89bb1940-b905-4575-9e7f-6f887cfb368e"))
    );
    let p = parse_path("name.givenName").unwrap();
    assert_eq!(p.attr, path("name", Some("givenName")));
    assert_eq!(p.filter, None);
    let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(p.attr, path("emails", Some("value")));
    assert!(p.filter.is_some());
    let p = parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
        .unwrap();
    assert_eq!(
        p.attr.uri.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(p.attr.name, "department");
}

#[test]
fn bad_patch_paths_are_errors() {
    for p in [
        "",
        "members[",
        "members[value eq \"a\"",
        "1abc",
        "name.",
        "members[value eq \"a\"].1x",
        "a b",
    ] {
        assert!(parse_path(p).is_err(), "{p}");
    }
}

fn user() -> serde_json::Value {
    json!({
        "userName": "Alice@Example.com",
        "externalId": "00uAbC",
        "active": true,
        "name": {"givenName": "Alice"},
        "emails": [{"value": "alice@example.com", "type": "work", "primary": true}, {"value": "a@home.example", "type": "home"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
    })
}

#[test]
fn user_name_comparison_ignores_case() {
    assert!(parse(r#"userName eq "alice@EXAMPLE.com""#)
        .unwrap()
        .matches(&user()));
    assert!(parse(r#"USERNAME sw "ALICE""#).unwrap().matches(&user()));
    assert!(parse(r#"userName co "@example""#).unwrap().matches(&user()));
    assert!(!parse(r#"userName eq "bob@example.com""#)
        .unwrap()
        .matches(&user()));
}

#[test]
fn external_id_comparison_is_case_exact() {
    assert!(parse(r#"externalId eq "00uAbC""#).unwrap().matches(&user()));
    assert!(!parse(r#"externalId eq "00uabc""#).unwrap().matches(&user()));
}

#[test]
fn multi_valued_attributes_match_any_element() {
    assert!(parse(r#"emails.value eq "a@home.example""#)
        .unwrap()
        .matches(&user()));
    assert!(parse(r#"emails eq "alice@example.com""#)
        .unwrap()
        .matches(&user()));
    assert!(parse(r#"emails[type eq "work" and value co "alice"]"#)
        .unwrap()
        .matches(&user()));
    assert!(!parse(r#"emails[type eq "home" and value co "alice"]"#)
        .unwrap()
        .matches(&user()));
}

#[test]
fn boolean_not_present_and_extension_evaluate() {
    assert!(parse("active eq true").unwrap().matches(&user()));
    assert!(!parse("active eq false").unwrap().matches(&user()));
    assert!(parse(r#"not (userName eq "x")"#).unwrap().matches(&user()));
    assert!(parse("name.givenName pr").unwrap().matches(&user()));
    assert!(!parse("title pr").unwrap().matches(&user()));
    assert!(parse(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d""#
    )
    .unwrap()
    .matches(&user()));
}

#[test]
fn member_value_filter_matches_member_object() {
    let f = parse(r#"value eq "23a35c27""#).unwrap();
    assert!(f.matches(&json!({"value": "23a35c27", "display": "x"})));
    assert!(!f.matches(&json!({"value": "other"})));
}

#[test]
fn non_ascii_attribute_names_are_refused_by_the_tokenizer() {
    for f in [r#"abcé eq "x""#, r#"urné eq "x""#, r#"é eq "x""#] {
        assert!(parse(f).is_err(), "{f}");
    }
}

#[test]
fn strip_prefix_ci_never_cuts_inside_a_character() {
    assert_eq!(strip_prefix_ci("URN:x", "urn:"), Some("x"));
    assert_eq!(strip_prefix_ci("abcé", "urn:"), None);
    assert_eq!(strip_prefix_ci("ab", "urn:"), None);
    assert_eq!(strip_prefix_ci("éé", "urn"), None);
}
