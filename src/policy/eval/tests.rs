//! Evaluation tests: include / require / exclude, phases, first match, and
//! every selector kind against users, service tokens and anonymous requests.

use std::net::IpAddr;

use serde_json::json;

use crate::identity::{GroupId, Groups, Identity};
use crate::policy::eval::{
    evaluate, policy_matches, selector_matches, Outcome, Phase, RequestView, Subject,
};
use crate::policy::model::{App, Decision, HostPattern, Policy, Selector, ServiceToken};

fn user() -> Identity {
    let mut id = Identity {
        sub: "00u1".to_string(),
        email: "Alice@Example.com".to_string(),
        email_verified: true,
        name: Some("Alice".to_string()),
        idp: "okta".to_string(),
        idp_type: "okta".to_string(),
        groups: ["engineering", "Admins"].into_iter().collect(),
        amr: vec!["pwd".to_string(), "mfa".to_string()],
        custom: Default::default(),
    };
    id.custom.insert("department".to_string(), json!("finance"));
    id.custom
        .insert("teams".to_string(), json!(["red", 7, true]));
    id.custom.insert("level".to_string(), json!(3));
    id.custom.insert("contractor".to_string(), json!(false));
    id.custom.insert("meta".to_string(), json!({ "a": "b" }));
    id
}

fn token(name: &str) -> ServiceToken {
    ServiceToken {
        name: name.into(),
        client_id: format!("{name}-id"),
        client_secret_sha256: [0; 32],
    }
}

fn req(ip: &str) -> RequestView {
    RequestView {
        client_ip: ip.parse::<IpAddr>().unwrap(),
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

fn policy(name: &str, decision: Decision, include: Vec<Selector>) -> Policy {
    Policy {
        name: s(name),
        decision,
        include,
        require: vec![],
        exclude: vec![],
    }
}

fn app(policies: Vec<Policy>) -> App {
    App {
        name: s("app"),
        aud: s("aud"),
        host: HostPattern::Exact(s("app.example.com")),
        path: s("/"),
        case_insensitive_paths: false,
        upstreams: vec![],
        session_duration: None,
        connect_timeout: None,
        read_timeout: None,
        identity_providers: None,
        policies,
        source: s("test"),
        counters: Default::default(),
    }
}

/// Whether `sel` matches the standard user from 10.1.2.3.
fn user_hit(sel: Selector) -> bool {
    let id = user();
    selector_matches(&sel, &Subject::User(&id), &req("10.1.2.3"))
}

#[test]
fn include_any_require_all_exclude_none() {
    let id = user();
    let who = Subject::User(&id);
    let r = req("10.1.2.3");
    let mut p = policy(
        "p",
        Decision::Allow,
        vec![
            Selector::Group(GroupId::intern("nope")),
            Selector::Group(GroupId::intern("engineering")),
        ],
    );
    assert!(policy_matches(&p, &who, &r));
    p.require = vec![
        Selector::AuthMethod(s("mfa")),
        Selector::Ip("10.0.0.0/8".parse().unwrap()),
    ];
    assert!(policy_matches(&p, &who, &r));
    p.require.push(Selector::AuthMethod(s("hwk")));
    assert!(!policy_matches(&p, &who, &r), "one failing require denies");
    p.require.pop();
    p.exclude = vec![
        Selector::Group(GroupId::intern("nope")),
        Selector::Email(s("alice@example.com")),
    ];
    assert!(!policy_matches(&p, &who, &r), "one matching exclude denies");
    p.exclude.remove(1);
    assert!(policy_matches(&p, &who, &r));
    p.include = vec![Selector::Group(GroupId::intern("nope"))];
    assert!(!policy_matches(&p, &who, &r), "no include matched");
}

#[test]
fn first_matching_policy_in_file_order_decides() {
    let a = app(vec![
        policy(
            "no admins",
            Decision::Block,
            vec![Selector::Group(GroupId::intern("Admins"))],
        ),
        policy(
            "engineers",
            Decision::Allow,
            vec![Selector::Group(GroupId::intern("engineering"))],
        ),
    ]);
    let id = user();
    match evaluate(&a, Phase::Identity, &Subject::User(&id), &req("10.1.2.3")) {
        Outcome::Matched(p) => assert_eq!(p.name, "no admins"),
        Outcome::NoMatch => panic!("expected a match"),
    }
}

#[test]
fn no_matching_policy_is_no_match() {
    let a = app(vec![policy(
        "x",
        Decision::Allow,
        vec![Selector::Group(GroupId::intern("nope"))],
    )]);
    let id = user();
    assert_eq!(
        evaluate(&a, Phase::Identity, &Subject::User(&id), &req("10.1.2.3")),
        Outcome::NoMatch
    );
}

#[test]
fn phases_see_only_their_decisions() {
    let a = app(vec![
        policy(
            "bypass",
            Decision::Bypass,
            vec![Selector::Ip("10.0.0.0/8".parse().unwrap())],
        ),
        policy("svc", Decision::ServiceAuth, vec![Selector::Everyone]),
        policy("allow", Decision::Allow, vec![Selector::Everyone]),
    ]);
    let id = user();
    let t = token("ci");
    let name = |o: Outcome<'_>| match o {
        Outcome::Matched(p) => p.name.clone(),
        Outcome::NoMatch => s("-"),
    };
    assert_eq!(
        name(evaluate(
            &a,
            Phase::Bypass,
            &Subject::Anonymous,
            &req("10.0.0.1")
        )),
        "bypass"
    );
    assert_eq!(
        name(evaluate(
            &a,
            Phase::Bypass,
            &Subject::Anonymous,
            &req("192.0.2.1")
        )),
        "-"
    );
    assert_eq!(
        name(evaluate(
            &a,
            Phase::Service,
            &Subject::Service(&t),
            &req("192.0.2.1")
        )),
        "svc"
    );
    assert_eq!(
        name(evaluate(
            &a,
            Phase::Identity,
            &Subject::User(&id),
            &req("10.0.0.1")
        )),
        "allow"
    );
}

#[test]
fn email_is_case_insensitive_on_the_whole_address() {
    assert!(user_hit(Selector::Email(s("alice@example.com"))));
    assert!(!user_hit(Selector::Email(s("alice@example.co"))));
    assert!(!user_hit(Selector::Email(s("lice@example.com"))));
}

#[test]
fn email_selectors_never_match_unverified_addresses() {
    let mut id = user();
    id.email_verified = false;
    let who = Subject::User(&id);
    let r = req("10.1.2.3");
    assert!(!selector_matches(
        &Selector::Email(s("alice@example.com")),
        &who,
        &r
    ));
    assert!(!selector_matches(
        &Selector::EmailDomain(s("example.com")),
        &who,
        &r
    ));
}

#[test]
fn email_domain_matches_exact_domain_only() {
    assert!(user_hit(Selector::EmailDomain(s("example.com"))));
    assert!(!user_hit(Selector::EmailDomain(s("ample.com"))));
    let mut id = user();
    id.email = s("alice@sub.example.com");
    assert!(!selector_matches(
        &Selector::EmailDomain(s("example.com")),
        &Subject::User(&id),
        &req("10.1.2.3")
    ));
}

#[test]
fn email_domain_never_matches_an_address_with_two_ats() {
    let mut id = user();
    for email in [
        "evil@example.com@attacker.net",
        "evil@attacker.net@example.com",
        "@example.com",
    ] {
        id.email = s(email);
        let hit = selector_matches(
            &Selector::EmailDomain(s("example.com")),
            &Subject::User(&id),
            &req("10.1.2.3"),
        );
        assert!(!hit, "{email}");
    }
}

#[test]
fn email_domain_agrees_with_splitting_at_the_one_at() {
    // The reference: split at the only `@`, compare the rest.
    fn reference(email: &str, domain: &str) -> bool {
        match email.split_once('@') {
            Some((local, d)) => {
                !local.is_empty()
                    && !d.is_empty()
                    && !d.contains('@')
                    && d.eq_ignore_ascii_case(domain)
            }
            None => false,
        }
    }
    let emails = [
        "a@example.com",
        "A@EXAMPLE.COM",
        "@example.com",
        "a@",
        "a",
        "",
        "a@b@example.com",
        "a@example.com@b",
        "ab@xexample.com",
        "a@sub.example.com",
        "a@x@example.com",
    ];
    let domains = [
        "example.com",
        "Example.Com",
        "",
        "x@example.com",
        "com",
        "b",
    ];
    let mut id = user();
    for email in emails {
        for domain in domains {
            id.email = s(email);
            let hit = selector_matches(
                &Selector::EmailDomain(s(domain)),
                &Subject::User(&id),
                &req("10.1.2.3"),
            );
            assert_eq!(hit, reference(email, domain), "{email:?} at {domain:?}");
        }
    }
}

#[test]
fn group_is_an_exact_name() {
    assert!(user_hit(Selector::Group(GroupId::intern("engineering"))));
    assert!(user_hit(Selector::Group(GroupId::intern("Admins"))));
    assert!(!user_hit(Selector::Group(GroupId::intern("admins"))));
    assert!(!user_hit(Selector::Group(GroupId::intern("engineer"))));
}

#[test]
fn missing_groups_mean_no_groups() {
    let mut id = user();
    id.groups = Groups::default();
    assert!(!selector_matches(
        &Selector::Group(GroupId::intern("engineering")),
        &Subject::User(&id),
        &req("10.1.2.3")
    ));
}

#[test]
fn ip_matches_v4_v6_and_v4_mapped_peers() {
    let net = |n: &str| Selector::Ip(n.parse().unwrap());
    let id = user();
    let who = Subject::User(&id);
    assert!(selector_matches(
        &net("10.0.0.0/8"),
        &who,
        &req("10.255.0.1")
    ));
    assert!(!selector_matches(
        &net("10.0.0.0/8"),
        &who,
        &req("11.0.0.1")
    ));
    assert!(selector_matches(
        &net("2001:db8::/32"),
        &who,
        &req("2001:db8::1")
    ));
    assert!(!selector_matches(
        &net("2001:db8::/32"),
        &who,
        &req("2001:db9::1")
    ));
    assert!(selector_matches(
        &net("10.0.0.0/8"),
        &who,
        &req("::ffff:10.1.2.3")
    ));
    assert!(selector_matches(
        &net("192.0.2.7/32"),
        &Subject::Anonymous,
        &req("192.0.2.7")
    ));
}

#[test]
fn auth_method_matches_any_amr_entry() {
    assert!(user_hit(Selector::AuthMethod(s("mfa"))));
    assert!(user_hit(Selector::AuthMethod(s("pwd"))));
    assert!(!user_hit(Selector::AuthMethod(s("hwk"))));
}

#[test]
fn login_method_is_the_idp_name() {
    assert!(user_hit(Selector::LoginMethod(s("okta"))));
    assert!(!user_hit(Selector::LoginMethod(s("corp"))));
}

#[test]
fn claim_matches_strings_array_elements_numbers_and_bools() {
    let claim = |n: &str, v: &str| Selector::Claim {
        name: s(n),
        value: s(v),
    };
    let cases = [
        ("department", "finance", true),
        ("department", "Finance", false),
        ("teams", "red", true),
        ("teams", "7", true),
        ("teams", "true", true),
        ("teams", "blue", false),
        ("level", "3", true),
        ("level", "3.0", false),
        ("contractor", "false", true),
        ("contractor", "true", false),
        ("meta", "b", false),
        ("missing", "x", false),
    ];
    for (name, value, want) in cases {
        assert_eq!(user_hit(claim(name, value)), want, "{name}={value}");
    }
}

#[test]
fn service_selectors_match_only_service_tokens() {
    let ci = token("ci");
    let other = token("other");
    let id = user();
    let r = req("10.1.2.3");
    let named = Selector::ServiceToken(s("ci"));
    assert!(selector_matches(&named, &Subject::Service(&ci), &r));
    assert!(!selector_matches(&named, &Subject::Service(&other), &r));
    assert!(!selector_matches(&named, &Subject::User(&id), &r));
    assert!(!selector_matches(&named, &Subject::Anonymous, &r));
    assert!(selector_matches(
        &Selector::AnyValidServiceToken,
        &Subject::Service(&other),
        &r
    ));
    assert!(!selector_matches(
        &Selector::AnyValidServiceToken,
        &Subject::User(&id),
        &r
    ));
    assert!(!selector_matches(
        &Selector::AnyValidServiceToken,
        &Subject::Anonymous,
        &r
    ));
}

#[test]
fn identity_selectors_never_match_tokens_or_anonymous() {
    let ci = token("ci");
    let r = req("10.1.2.3");
    let sels = [
        Selector::Email(s("alice@example.com")),
        Selector::EmailDomain(s("example.com")),
        Selector::Group(GroupId::intern("engineering")),
        Selector::AuthMethod(s("mfa")),
        Selector::LoginMethod(s("okta")),
        Selector::Claim {
            name: s("department"),
            value: s("finance"),
        },
    ];
    for sel in &sels {
        assert!(user_hit(sel.clone()), "{sel}");
        assert!(!selector_matches(sel, &Subject::Service(&ci), &r), "{sel}");
        assert!(!selector_matches(sel, &Subject::Anonymous, &r), "{sel}");
    }
}

#[test]
fn everyone_matches_every_subject() {
    let ci = token("ci");
    let id = user();
    let r = req("10.1.2.3");
    for who in [
        Subject::Anonymous,
        Subject::Service(&ci),
        Subject::User(&id),
    ] {
        assert!(selector_matches(&Selector::Everyone, &who, &r));
    }
}
