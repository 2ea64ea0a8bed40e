//! Policy loading tests: every selector, defaults, and the exact
//! `file:line:col: key: message` lines users see.

use std::path::Path;
use std::time::Duration;

use crate::identity::GroupId;
use crate::policy::load::{
    compile_sources, compile_sources_cached, load_path, ParsedFiles, PolicyErrors,
};
use crate::policy::model::{Decision, HostPattern, PolicySet, Selector};

const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn compile(files: &[(&str, &str)]) -> Result<PolicySet, PolicyErrors> {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    compile_sources(&sources)
}

fn ok(text: &str) -> PolicySet {
    match compile(&[("p.yaml", text)]) {
        Ok(s) => s,
        Err(e) => panic!("expected valid policies, got:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    errors_in(&[("p.yaml", text)])
}

fn errors_in(files: &[(&str, &str)]) -> Vec<String> {
    match compile(files) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// One app around the given policies.
fn app_with(policies: &str) -> String {
    format!(
        "service_tokens:
  - {{ name: ci, client_id: ci-id, client_secret_sha256: {TOKEN_HASH} }}
apps:
  - name: a
    domain: a.example.com
    upstream: http://127.0.0.1:3000
    policies:
{policies}"
    )
}

#[test]
fn minimal_app_gets_defaults() {
    let set = ok("apps:
  - name: grafana
    domain: Grafana.Example.COM
    upstream: http://127.0.0.1:3000
    policies:
      - { name: all, decision: allow, include: [{ everyone: true }] }
");
    let app = &set.apps[0];
    assert_eq!(app.name, "grafana");
    assert_eq!(
        app.host,
        HostPattern::Exact("grafana.example.com".to_string())
    );
    assert_eq!(app.path, "/");
    assert!(!app.case_insensitive_paths);
    assert_eq!(app.session_duration, None);
    assert_eq!(app.identity_providers, None);
    assert_eq!(app.source, "p.yaml:2:5");
    // printf %s grafana | sha256sum
    assert_eq!(
        app.aud,
        "cace491b69555e8d0f77747d47ae54e31ce4cc322fe51a7bdcf64402f3676ebf"
    );
    let up = &app.upstreams[0];
    assert_eq!(up.addr, Some("127.0.0.1:3000".parse().unwrap()));
    assert_eq!(&*up.authority, "127.0.0.1:3000");
    assert!(!up.tls);
    assert_eq!(up.host, "127.0.0.1");
    assert_eq!(up.url, "http://127.0.0.1:3000");
}

#[test]
fn full_app_keeps_every_setting() {
    let set = ok("apps:
  - name: admin
    domain: '*.Example.com'
    path: /Admin/
    case_insensitive_paths: true
    upstream: [http://127.0.0.1:3000, 'https://localhost:8443']
    session_duration: 1h30m
    aud: my-aud-tag
    identity_providers: [okta, corp]
    policies:
      - { name: all, decision: allow, include: [{ everyone: true }] }
");
    let app = &set.apps[0];
    assert_eq!(app.host, HostPattern::Wildcard(".example.com".to_string()));
    assert_eq!(app.path, "/Admin");
    assert!(app.case_insensitive_paths);
    assert_eq!(app.upstreams.len(), 2);
    assert!(app.upstreams[1].tls);
    assert_eq!(app.upstreams[1].host, "localhost");
    // A name is resolved when a request is forwarded, not at load.
    assert_eq!(app.upstreams[1].addr, None);
    assert_eq!(&*app.upstreams[1].authority, "localhost:8443");
    assert_eq!(app.session_duration, Some(Duration::from_secs(5_400)));
    assert_eq!(app.aud, "my-aud-tag");
    assert_eq!(
        app.identity_providers,
        Some(vec!["okta".to_string(), "corp".to_string()])
    );
}

#[test]
fn every_selector_compiles() {
    let set = ok(&app_with(
        "      - name: everything
        decision: allow
        include:
          - everyone: true
          - email: Alice@Example.com
          - email_domain: Example.COM
          - group: Engineering Team
          - ip: 10.1.2.3/8
          - ip: 2001:db8::/32
          - ip: 192.0.2.7
          - auth_method: mfa
          - login_method: okta
          - claim: { name: department, value: 42 }
      - name: robots
        decision: service_auth
        include: [{ service_token: ci }, { any_valid_service_token: true }]
",
    ));
    let p = &set.apps[0].policies;
    assert_eq!(
        p[0].include,
        vec![
            Selector::Everyone,
            Selector::Email("alice@example.com".to_string()),
            Selector::EmailDomain("example.com".to_string()),
            Selector::Group(GroupId::intern("Engineering Team")),
            Selector::Ip("10.0.0.0/8".parse().unwrap()),
            Selector::Ip("2001:db8::/32".parse().unwrap()),
            Selector::Ip("192.0.2.7/32".parse().unwrap()),
            Selector::AuthMethod("mfa".to_string()),
            Selector::LoginMethod("okta".to_string()),
            Selector::Claim {
                name: "department".to_string(),
                value: "42".to_string()
            },
        ]
    );
    assert_eq!(p[1].decision, Decision::ServiceAuth);
    assert_eq!(
        p[1].include,
        vec![
            Selector::ServiceToken("ci".to_string()),
            Selector::AnyValidServiceToken
        ]
    );
    let t = &set.service_tokens[0];
    assert_eq!((&*t.name, t.client_id.as_str()), ("ci", "ci-id"));
    assert_eq!(hex::encode(t.client_secret_sha256), TOKEN_HASH);
}

#[test]
fn json_policy_file_is_accepted() {
    let set = ok(
        r#"{"apps": [{"name": "j", "domain": "j.example.com", "upstream": "http://127.0.0.1:1",
      "policies": [{"name": "p", "decision": "block", "include": [{"group": "x"}], "exclude": [{"email": "a@b.c"}]}]}]}"#,
    );
    assert_eq!(set.apps[0].policies[0].decision, Decision::Block);
}

#[test]
fn selector_errors_have_exact_messages() {
    let text = app_with(
        "      - name: bad
        decision: allow
        include:
          - everyone: false
          - email: not-an-address
          - email: a@b@c
          - email_domain: '@example.com'
          - email_domain: 'exa mple.com'
          - ip: 10.0.0.300/8
          - group: '  '
          - claim: { name: department }
",
    );
    assert_eq!(
        errors(&text),
        [
            "p.yaml:11:23: apps[0].policies[0].include[0].everyone: only `true` is allowed (remove the selector instead)",
            "p.yaml:12:20: apps[0].policies[0].include[1].email: invalid email address `not-an-address`",
            "p.yaml:13:20: apps[0].policies[0].include[2].email: invalid email address `a@b@c`",
            "p.yaml:14:27: apps[0].policies[0].include[3].email_domain: write the domain without `@`: `example.com`",
            "p.yaml:15:27: apps[0].policies[0].include[4].email_domain: invalid email domain `exa mple.com`",
            "p.yaml:16:17: apps[0].policies[0].include[5].ip: invalid IP address or CIDR `10.0.0.300/8` (e.g. `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`)",
            "p.yaml:17:20: apps[0].policies[0].include[6].group: must not be empty",
            "p.yaml:18:13: apps[0].policies[0].include[7].claim.value: required key is missing",
        ]
    );
}

#[test]
fn unknown_selector_suggests_a_near_miss() {
    let errs = errors(&app_with(
        "      - { name: p, decision: allow, include: [{ emial: a@b.c }] }\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:8:49: apps[0].policies[0].include[0]: unknown value `emial`, did you mean `email`?"]
    );
}

#[test]
fn unknown_app_key_suggests_a_near_miss() {
    let errs = errors("apps:\n  - name: a\n    domian: a.example.com\n");
    assert_eq!(
        errs,
        ["p.yaml:3:5: apps[0].domian: unknown key `domian`, did you mean `domain`?"]
    );
}

#[test]
fn unknown_decision_suggests() {
    let errs = errors(&app_with(
        "      - { name: p, decision: alow, include: [{ everyone: true }] }\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:8:30: apps[0].policies[0].decision: unknown value `alow`, did you mean `allow`?"]
    );
}

#[test]
fn two_keys_in_one_selector_is_an_error() {
    let errs = errors(&app_with(
        "      - name: p\n        decision: allow\n        include:\n          - email: a@b.c\n            group: x\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:12:13: apps[0].policies[0].include[0].email: expected a map with exactly one key (one selector per list item)"]
    );
}

#[test]
fn bypass_and_service_auth_refuse_identity_selectors() {
    let errs = errors(&app_with(
        "      - { name: b, decision: bypass, include: [{ ip: 10.0.0.0/8 }], require: [{ group: ops }] }
      - { name: s, decision: service_auth, include: [{ email: a@b.c }] }
",
    ));
    assert_eq!(
        errs,
        [
            "p.yaml:8:79: apps[0].policies[0].require[0].group: `bypass` policies may only use everyone, ip, service_token and any_valid_service_token; `group` needs a logged-in user",
            "p.yaml:9:54: apps[0].policies[1].include[0].email: `service_auth` policies may only use everyone, ip, service_token and any_valid_service_token; `email` needs a logged-in user",
        ]
    );
}

#[test]
fn allow_refuses_service_token_selectors() {
    let errs = errors(&app_with(
        "      - { name: p, decision: allow, include: [{ service_token: ci }] }\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:8:47: apps[0].policies[0].include[0].service_token: `service_token` never matches in an `allow` policy: service tokens are admitted by `decision: service_auth`"]
    );
}

#[test]
fn unknown_service_token_suggests() {
    let errs = errors(&app_with(
        "      - { name: p, decision: service_auth, include: [{ service_token: cl }] }\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:8:71: apps[0].policies[0].include[0].service_token: unknown service token `cl`, did you mean `ci`?"]
    );
}

#[test]
fn service_tokens_from_another_file_are_visible() {
    let tokens = format!("service_tokens:\n  - {{ name: deploy, client_id: d, client_secret_sha256: {TOKEN_HASH} }}\n");
    let app = "apps:
  - name: a
    domain: a.example.com
    upstream: http://127.0.0.1:1
    policies: [{ name: p, decision: service_auth, include: [{ service_token: deploy }] }]
";
    let set = compile(&[("00-tokens.yaml", &tokens), ("10-app.yaml", app)]).expect("compiles");
    assert_eq!(&*set.service_tokens[0].name, "deploy");
}

#[test]
fn service_token_errors() {
    let text = format!(
        "service_tokens:
  - {{ name: ci, client_id: x, client_secret_sha256: abc }}
  - {{ name: ok, client_id: y, client_secret_sha256: {TOKEN_HASH} }}
  - {{ name: ok, client_id: z, client_secret_sha256: {TOKEN_HASH} }}
  - {{ name: other, client_id: y, client_secret_sha256: {TOKEN_HASH} }}
  - {{ name: missing }}
apps:
  - {{ name: a, domain: a.example.com, upstream: 'http://127.0.0.1:1', policies: [{{ name: p, decision: allow, include: [{{ everyone: true }}] }}] }}
"
    );
    assert_eq!(
        errors(&text),
        [
            "p.yaml:2:53: service_tokens[0].client_secret_sha256: expected the SHA-256 of the client secret as 64 hex digits (e.g. `printf %s \"$SECRET\" | sha256sum`)",
            "p.yaml:4:13: service_tokens[2].name: duplicate service token name `ok` (first defined at p.yaml:3:5)",
            "p.yaml:5:31: service_tokens[3].client_id: client_id is already used by service token `ok` (p.yaml:3:5)",
            "p.yaml:6:5: service_tokens[4].client_id: required key is missing",
            "p.yaml:6:5: service_tokens[4].client_secret_sha256: required key is missing",
        ]
    );
}

#[test]
fn app_errors_have_exact_messages() {
    let text = "apps:
  - name: a
    domain: https://a.example.com
    path: admin
    upstream: ftp://127.0.0.1
    session_duration: 8
    aud: 'bad aud'
    identity_providers: []
    policies: []
  - name: b
    domain: a.*.example.com
    path: /a/../b
    upstream: [http://127.0.0.1:1/base, 'http://127.0.0.1:2']
    policies:
      - { decision: allow }
  - domain: c.example.com:8080
    path: /a;b
    upstream: http://127.0.0.1:3
    policies: [{ name: p, decision: allow, include: [] }]
";
    assert_eq!(
        errors(text),
        [
            "p.yaml:3:13: apps[0].domain: `https://a.example.com` is not a host name: write the domain only, e.g. `grafana.example.com` (paths go in `path`)",
            "p.yaml:4:11: apps[0].path: path `admin` must start with `/`",
            "p.yaml:5:15: apps[0].upstream: upstream `ftp://127.0.0.1` has scheme `ftp`: expected http or https",
            "p.yaml:6:23: apps[0].session_duration: invalid duration `8`: expected a number with a unit (d, h, m, s), e.g. `24h`, `1h30m`, `90s`",
            "p.yaml:7:10: apps[0].aud: invalid audience tag `bad aud`: up to 128 letters, digits, `-`, `.`, `_`",
            "p.yaml:8:25: apps[0].identity_providers: must name at least one identity provider (omit the key to allow all)",
            "p.yaml:9:15: apps[0].policies: must list at least one policy (an app without policies denies everyone)",
            "p.yaml:11:13: apps[1].domain: invalid domain `a.*.example.com`: a wildcard is only allowed as the whole first label, e.g. `*.example.com`",
            "p.yaml:12:11: apps[1].path: path `/a/../b` must not contain `.` or `..` segments",
            "p.yaml:13:16: apps[1].upstream[0]: upstream `http://127.0.0.1:1/base` must be scheme://host[:port] without a path or query",
            "p.yaml:15:9: apps[1].policies[0].name: required key is missing",
            "p.yaml:15:9: apps[1].policies[0].include: required key is missing",
            "p.yaml:16:5: apps[2].name: required key is missing",
            "p.yaml:16:13: apps[2].domain: `c.example.com:8080` must not include a port: host matching ignores the port",
            "p.yaml:17:11: apps[2].path: path `/a;b` must not contain `;`: paths are matched after normalisation, write them decoded",
            "p.yaml:19:53: apps[2].policies[0].include: must list at least one selector",
        ]
    );
}

#[test]
fn an_upstream_name_is_not_resolved_at_load() {
    // `check` works offline: a name that does not resolve here still loads.
    let set = ok(&app_with(
        "      - { name: p, decision: allow, include: [{ everyone: true }] }\n",
    )
    .replace("http://127.0.0.1:3000", "http://no-such-host.invalid:80"));
    let up = &set.apps[0].upstreams[0];
    assert_eq!(up.addr, None);
    assert_eq!(&*up.authority, "no-such-host.invalid:80");
    assert_eq!(up.host, "no-such-host.invalid");
}

#[test]
fn ip_literal_upstreams_keep_their_address() {
    let set = ok(&app_with(
        "      - { name: p, decision: allow, include: [{ everyone: true }] }\n",
    )
    .replace(
        "http://127.0.0.1:3000",
        "[http://10.1.2.3, 'https://[::1]:8443']",
    ));
    let ups = &set.apps[0].upstreams;
    assert_eq!(ups[0].addr, Some("10.1.2.3:80".parse().unwrap()));
    assert_eq!(ups[1].addr, Some("[::1]:8443".parse().unwrap()));
    assert_eq!(&*ups[1].authority, "[::1]:8443");
    assert_eq!(ups[1].host, "::1");
}

#[test]
fn duplicate_names_and_routes_across_files_are_errors() {
    let a = "apps:
  - { name: one, domain: x.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
";
    let b = "apps:
  - { name: one, domain: y.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
  - { name: two, domain: X.example.com, path: /, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
  - { name: three, aud: my-tag, domain: z.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
  - { name: four, aud: my-tag, domain: w.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
";
    assert_eq!(
        errors_in(&[("a.yaml", a), ("b.yaml", b)]),
        [
            "b.yaml:2:5: apps[0].name: duplicate app name `one` (first defined at a.yaml:2:5)",
            "b.yaml:3:5: apps[1].domain: same domain and path (x.example.com /) as app `one` (a.yaml:2:5)",
            "b.yaml:5:5: apps[3].aud: audience tag `my-tag` is already used by app `three` (b.yaml:4:5)",
        ]
    );
}

#[test]
fn case_insensitive_path_clash_is_a_duplicate_route() {
    let text = "apps:
  - { name: a, domain: x.example.com, path: /Admin, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
  - { name: b, domain: x.example.com, path: /admin, case_insensitive_paths: true, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }
";
    assert_eq!(
        errors(text),
        ["p.yaml:3:5: apps[1].domain: same domain and path (x.example.com /admin) as app `a` (p.yaml:2:5)"]
    );
}

#[test]
fn paths_differing_in_case_clash_only_when_an_app_ignores_case() {
    let app = |name: &str, path: &str, ci: bool| {
        format!("  - {{ name: {name}, domain: x.example.com, path: {path}, case_insensitive_paths: {ci}, upstream: 'http://127.0.0.1:1', policies: [{{ name: p, decision: allow, include: [{{ everyone: true }}] }}] }}\n")
    };
    let text = format!(
        "apps:\n{}{}{}{}",
        app("a", "/Admin", false),
        app("b", "/admin", false),
        app("c", "/ADMIN", true),
        app("d", "/admin", false),
    );
    assert_eq!(
        errors(&text),
        [
            "p.yaml:4:5: apps[2].domain: same domain and path (x.example.com /ADMIN) as app `a` (p.yaml:2:5)",
            "p.yaml:5:5: apps[3].domain: same domain and path (x.example.com /admin) as app `b` (p.yaml:3:5)",
        ]
    );
}

#[test]
fn duplicate_policy_names_in_one_app_are_errors() {
    let errs = errors(&app_with(
        "      - { name: p, decision: allow, include: [{ everyone: true }] }\n      - { name: p, decision: block, include: [{ everyone: true }] }\n",
    ));
    assert_eq!(
        errs,
        ["p.yaml:9:17: apps[0].policies[1].name: duplicate policy name `p` in this app"]
    );
}

#[test]
fn errors_from_every_file_are_collected_in_file_order() {
    let errs = errors_in(&[
        ("a.yaml", "apps: [\n"),
        ("b.yaml", "bogus: 1\n"),
        ("c.yaml", ""),
    ]);
    assert_eq!(errs.len(), 3);
    assert!(errs[0].starts_with("a.yaml:"), "{}", errs[0]);
    assert_eq!(
        errs[1],
        "b.yaml:1:1: bogus: unknown key `bogus`, expected one of: apps, service_tokens"
    );
    assert_eq!(errs[2], "c.yaml:1:1: (file): policy file is empty");
}

#[test]
fn no_apps_at_all_is_an_error() {
    let errs = errors_in(&[("t.yaml", "service_tokens: []\n")]);
    assert_eq!(
        errs,
        ["t.yaml:1:1: (file): no apps defined: every request would get 404"]
    );
}

#[test]
fn folder_is_read_in_lexical_order_yaml_and_yml_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = |name: &str| {
        format!(
            "apps:\n  - {{ name: {name}, domain: {name}.example.com, upstream: 'http://127.0.0.1:1', policies: [{{ name: p, decision: allow, include: [{{ everyone: true }}] }}] }}\n"
        )
    };
    std::fs::write(dir.path().join("20-b.yml"), app("b")).unwrap();
    std::fs::write(dir.path().join("10-a.yaml"), app("a")).unwrap();
    std::fs::write(dir.path().join("30-c.yaml.bak"), "not yaml: [").unwrap();
    std::fs::write(dir.path().join("README.md"), "# notes").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "broken: [").unwrap();
    let set = load_path(dir.path(), None).expect("loads");
    let names: Vec<&str> = set.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        set.apps[0].source.ends_with("10-a.yaml:2:5"),
        "{}",
        set.apps[0].source
    );
}

#[test]
fn one_bad_file_fails_the_whole_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apps:\n  - { name: a, domain: a.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: p, decision: allow, include: [{ everyone: true }] }] }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.yaml"), "apps:\n  - name: b\n").unwrap();
    let e = load_path(dir.path(), None).unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    assert!(
        e.to_string()
            .contains("b.yaml:2:5: apps[0].domain: required key is missing"),
        "{e}"
    );
}

#[test]
fn empty_folder_and_missing_path_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_path(dir.path(), None).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("(file): no policy files (*.yaml, *.yml) in this folder"),
        "{e}"
    );
    let e = load_path(Path::new("/nonexistent/policies"), None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policies:1:1: (file): cannot read policies: "),
        "{e}"
    );
}

#[test]
fn example_policies_in_conf_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/policies");
    let set = match load_path(&dir, None) {
        Ok(s) => s,
        Err(e) => panic!("conf/policies:\n{e}"),
    };
    assert!(set.apps.len() >= 3);
    let kinds: std::collections::BTreeSet<&str> = set
        .apps
        .iter()
        .flat_map(|a| &a.policies)
        .flat_map(|p| p.include.iter().chain(&p.require).chain(&p.exclude))
        .map(Selector::kind)
        .collect();
    for k in [
        "everyone",
        "email",
        "email_domain",
        "group",
        "ip",
        "service_token",
        "any_valid_service_token",
        "auth_method",
        "login_method",
        "claim",
    ] {
        assert!(kinds.contains(k), "example policies never use `{k}`");
    }
}

#[test]
fn keys_render_as_paths_into_the_file() {
    use crate::policy::load::Key;
    let apps = Key::Root("apps");
    let app = apps.index(3);
    let policies = app.field("policies");
    let policy = policies.index(2);
    let include = policy.field("include");
    let sel = include.index(0);
    assert_eq!(
        sel.field("group").to_string(),
        "apps[3].policies[2].include[0].group"
    );
    assert_eq!(apps.to_string(), "apps");
}

// ---------------------------------------------------------------- parse cache

/// `(name, text)` sources of apps `names`, one file per app.
fn one_file_per_app(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            (
                format!("{n}.yaml"),
                format!(
                    "apps:\n  - name: {n}\n    domain: {n}.example.com\n    upstream: http://127.0.0.1:1\n    policies:\n      - {{ name: p, decision: allow, include: [{{ group: g-{n} }}] }}\n"
                ),
            )
        })
        .collect()
}

#[test]
fn a_cached_compile_equals_a_fresh_one() {
    let mut cache = ParsedFiles::default();
    let mut sources = one_file_per_app(&["a", "b", "c"]);
    compile_sources_cached(&sources, &mut cache).unwrap();
    sources[1].1 = sources[1].1.replace("g-b", "g-changed");
    let warm = compile_sources_cached(&sources, &mut cache).unwrap();
    let fresh = compile_sources(&sources).unwrap();
    // (The router is built from the apps; its maps' order is random.)
    let shown = |s: &PolicySet| format!("{:?} {:?}", s.apps, s.service_tokens);
    assert_eq!(shown(&warm), shown(&fresh));
    assert!(shown(&warm).contains("g-changed"));
}

#[test]
fn only_changed_files_are_parsed_again() {
    let mut cache = ParsedFiles::default();
    let mut sources = one_file_per_app(&["a", "b"]);
    compile_sources_cached(&sources, &mut cache).unwrap();
    let before = |c: &ParsedFiles, f: &str| c.files[f].1.clone();
    let (a0, b0) = (before(&cache, "a.yaml"), before(&cache, "b.yaml"));
    sources[1].1.push_str("# edited\n");
    compile_sources_cached(&sources, &mut cache).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a0, &cache.files["a.yaml"].1),
        "a reused"
    );
    assert!(
        !std::sync::Arc::ptr_eq(&b0, &cache.files["b.yaml"].1),
        "b parsed again"
    );
}

#[test]
fn removed_files_leave_the_cache() {
    let mut cache = ParsedFiles::default();
    let sources = one_file_per_app(&["a", "b"]);
    compile_sources_cached(&sources, &mut cache).unwrap();
    assert_eq!(cache.files.len(), 2);
    compile_sources_cached(&sources[..1], &mut cache).unwrap();
    assert_eq!(cache.files.len(), 1);
}

#[test]
fn errors_are_the_same_with_a_warm_cache() {
    let mut cache = ParsedFiles::default();
    let mut sources = one_file_per_app(&["a", "b"]);
    compile_sources_cached(&sources, &mut cache).unwrap();
    // A cross-file error (same domain twice) in files that parsed before,
    // and a parse error in a third file.
    sources[1].1 = sources[1].1.replace("b.example.com", "a.example.com");
    sources.push(("c.yaml".to_string(), "apps: [".to_string()));
    let warm = compile_sources_cached(&sources, &mut cache)
        .unwrap_err()
        .to_string();
    let fresh = compile_sources(&sources).unwrap_err().to_string();
    assert_eq!(warm, fresh);
    assert_eq!(warm.lines().count(), 2, "{warm}");
    // A file that did not parse is not kept.
    assert!(!cache.files.contains_key("c.yaml"));
}
