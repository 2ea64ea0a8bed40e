//! `explain` and `check` output tests.

use std::path::Path;

use crate::policy::explain::{check_table, explain, ExplainError, ExplainSubject};
use crate::policy::load::compile_sources;
use crate::policy::model::PolicySet;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn set() -> PolicySet {
    let text = format!(
        "apps:
  - name: grafana
    domain: grafana.example.com
    upstream: http://127.0.0.1:3000
    session_duration: 8h
    policies:
      - name: health
        decision: bypass
        include: [{{ ip: 10.0.0.0/8 }}]
      - name: no interns
        decision: block
        include: [{{ email: intern@example.com }}]
      - name: engineers
        decision: allow
        include: [{{ group: engineering }}, {{ email_domain: example.com }}]
        require: [{{ auth_method: mfa }}]
        exclude: [{{ email: bob@example.com }}]
      - name: ci
        decision: service_auth
        include: [{{ service_token: ci }}]
  - name: wiki
    domain: '*.wiki.example.com'
    path: /docs
    upstream: [http://127.0.0.1:4000, http://127.0.0.1:4001]
    identity_providers: [okta]
    policies:
      - name: finance
        decision: allow
        include: [{{ claim: {{ name: department, value: finance }} }}]
service_tokens:
  - {{ name: ci, client_id: ci-id, client_secret_sha256: {HASH} }}
"
    );
    compile_sources(&[("p.yaml".to_string(), text)]).expect("compiles")
}

fn user(email: &str) -> ExplainSubject {
    ExplainSubject {
        email: Some(email.to_string()),
        ip: Some("192.0.2.1".parse().unwrap()),
        ..ExplainSubject::default()
    }
}

fn run(url: &str, subject: ExplainSubject) -> String {
    explain(&set(), url, subject).expect("explains")
}

#[test]
fn allowed_user_shows_each_policy_and_why() {
    let mut s = user("alice@example.com");
    s.groups = vec!["engineering".to_string()];
    s.amr = vec!["pwd".to_string(), "mfa".to_string()];
    let out = run("https://Grafana.Example.com:8443/dashboards?x=1", s);
    assert_eq!(
        out,
        "url: https://Grafana.Example.com:8443/dashboards?x=1
host: grafana.example.com  path: /dashboards
app: grafana (grafana.example.com /, defined at p.yaml:2:5)
subject: user alice@example.com; groups: engineering; amr: pwd, mfa; ip: 192.0.2.1
bypass policies:
  1. health (bypass): no include matched (ip:10.0.0.0/8) → no match
allow/block policies:
  2. no interns (block): no include matched (email:intern@example.com) → no match
  3. engineers (allow): include group:engineering matched; every require matched → MATCH
decision: allow by policy `engineers`
"
    );
}

#[test]
fn failing_require_is_named() {
    let mut s = user("alice@example.com");
    s.groups = vec!["engineering".to_string()];
    let out = run("https://grafana.example.com/", s);
    assert!(
        out.contains("  3. engineers (allow): include group:engineering matched; require auth_method:mfa did not match → no match\n"),
        "{out}"
    );
    assert!(out.ends_with("decision: 403 no policy matched\n"), "{out}");
}

#[test]
fn matching_exclude_is_named() {
    let mut s = user("bob@example.com");
    s.amr = vec!["mfa".to_string()];
    let out = run("https://grafana.example.com/", s);
    assert!(
        out.contains("include email_domain:example.com matched; every require matched; exclude email:bob@example.com matched → no match"),
        "{out}"
    );
}

#[test]
fn block_decides_and_later_policies_are_not_reached() {
    let out = run("https://grafana.example.com/", user("intern@example.com"));
    assert!(
        out.contains("  2. no interns (block): include email:intern@example.com matched → MATCH\n"),
        "{out}"
    );
    assert!(
        out.contains("  3. engineers (allow): not reached\n"),
        "{out}"
    );
    assert!(
        out.ends_with("decision: block (403) by policy `no interns`\n"),
        "{out}"
    );
}

#[test]
fn bypass_decides_before_identity() {
    let mut s = user("alice@example.com");
    s.ip = Some("10.1.1.1".parse().unwrap());
    let out = run("https://grafana.example.com/health", s);
    assert!(
        out.contains("  1. health (bypass): include ip:10.0.0.0/8 matched → MATCH\n"),
        "{out}"
    );
    assert!(
        out.ends_with("decision: bypass by policy `health` (forwarded without identity)\n"),
        "{out}"
    );
    assert!(!out.contains("allow/block"), "{out}");
}

#[test]
fn ip_selectors_say_when_no_ip_was_given() {
    let out = run("https://grafana.example.com/", ExplainSubject::default());
    assert!(
        out.contains("no include matched (ip:10.0.0.0/8 [no --ip given])"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "decision: no session: browsers are sent to login (302), other clients get 401\n"
        ),
        "{out}"
    );
}

#[test]
fn service_token_uses_service_auth_policies() {
    let s = ExplainSubject {
        service_token: Some("ci".to_string()),
        ..ExplainSubject::default()
    };
    let out = run("https://grafana.example.com/api", s);
    assert!(out.contains("service_auth policies:\n  4. ci (service_auth): include service_token:ci matched → MATCH\n"), "{out}");
    assert!(
        out.ends_with("decision: allow by service_auth policy `ci`\n"),
        "{out}"
    );
}

#[test]
fn service_token_without_policy_is_403() {
    let s = ExplainSubject {
        service_token: Some("ci".to_string()),
        ..ExplainSubject::default()
    };
    let out = run("https://x.wiki.example.com/docs", s);
    assert!(
        out.ends_with("decision: 403 no service_auth policy matched\n"),
        "{out}"
    );
}

#[test]
fn claims_and_wildcard_apps() {
    let mut s = user("carol@example.org");
    s.claims = vec!["department=finance".to_string()];
    let out = run("http://team.wiki.example.com/docs/page", s);
    assert!(
        out.contains("app: wiki (*.wiki.example.com /docs, defined at p.yaml:21:5)"),
        "{out}"
    );
    assert!(
        out.contains("include claim:department=finance matched → MATCH"),
        "{out}"
    );
}

#[test]
fn repeated_claim_becomes_an_array() {
    let mut s = user("carol@example.org");
    s.claims = vec![
        "department=sales".to_string(),
        "department=finance".to_string(),
    ];
    let out = run("http://team.wiki.example.com/docs", s);
    assert!(
        out.ends_with("decision: allow by policy `finance`\n"),
        "{out}"
    );
}

#[test]
fn no_app_is_404() {
    let out = run("https://nope.example.com/", user("a@example.com"));
    assert!(out.ends_with("no app: 404\n"), "{out}");
    let out = run("https://x.wiki.example.com/other", user("a@example.com"));
    assert!(out.ends_with("no app: 404\n"), "{out}");
}

#[test]
fn path_is_normalised_like_the_proxy() {
    let out = run(
        "https://x.wiki.example.com/other/../docs/./a",
        user("a@example.com"),
    );
    assert!(out.contains("path: /docs/a\n"), "{out}");
    assert!(out.contains("app: wiki"), "{out}");
    let out = run("https://grafana.example.com/admin;x", user("a@example.com"));
    assert!(out.contains("decision: 400 bad request"), "{out}");
    let out = run("https://grafana.example.com/a%2Fb", user("a@example.com"));
    assert!(out.contains("decision: 400 bad request"), "{out}");
}

#[test]
fn bad_input_is_an_error() {
    let s = set();
    assert_eq!(
        explain(&s, "grafana.example.com/", ExplainSubject::default()),
        Err(ExplainError::BadUrl("grafana.example.com/".to_string()))
    );
    assert_eq!(
        explain(
            &s,
            "https://user@grafana.example.com/",
            ExplainSubject::default()
        ),
        Err(ExplainError::BadUrl(
            "https://user@grafana.example.com/".to_string()
        ))
    );
    let bad_claim = ExplainSubject {
        claims: vec!["novalue".to_string()],
        ..user("a@example.com")
    };
    assert_eq!(
        explain(&s, "https://grafana.example.com/", bad_claim),
        Err(ExplainError::BadClaim("novalue".to_string()))
    );
    let unknown = ExplainSubject {
        service_token: Some("nope".to_string()),
        ..ExplainSubject::default()
    };
    assert_eq!(
        explain(&s, "https://grafana.example.com/", unknown),
        Err(ExplainError::UnknownServiceToken("nope".to_string()))
    );
}

#[test]
fn check_table_lists_apps_and_policies_in_evaluation_order() {
    let cfg = crate::config::parse_str(
        "c.yaml",
        "listen: [{ addr: '127.0.0.1:8080' }]\nauth_domain: auth.localhost\npolicies: p\n",
        Path::new("/etc"),
        &|_| None,
    )
    .expect("config");
    let out = check_table(&cfg, &set());
    let grafana_aud = crate::policy::load::default_aud("grafana");
    let wiki_aud = crate::policy::load::default_aud("wiki");
    let want = format!(
        "APP      AUD{pad}HOST                 PATH   UPSTREAMS                                    SESSION
grafana  {grafana_aud}  grafana.example.com  /      http://127.0.0.1:3000                        8h
    1. health [bypass] include: ip:10.0.0.0/8
    4. ci [service_auth] include: service_token:ci
    2. no interns [block] include: email:intern@example.com
    3. engineers [allow] include: group:engineering, email_domain:example.com; require: auth_method:mfa; exclude: email:bob@example.com
wiki     {wiki_aud}  *.wiki.example.com   /docs  http://127.0.0.1:4000,http://127.0.0.1:4001  24h (default)
    identity providers: okta
    1. finance [allow] include: claim:department=finance
service tokens:
    ci (client id ci-id)
",
        pad = " ".repeat(64 - 3 + 2)
    );
    assert_eq!(out, want);
}
