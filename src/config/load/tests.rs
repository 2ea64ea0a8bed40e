//! Config loading tests: defaults, env expansion, IdP shapes, and the exact
//! `file:line:col: key: message` lines users see.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{load_file, parse_str, Config, ConfigErrors, IdpKind};

const BASE: &str = "\
listen:
  - addr: 0.0.0.0:8443
    tls: { cert: tls.crt, key: /etc/tls.key }
auth_domain: Auth.Example.com
policies: policies/
";

fn env(name: &str) -> Option<String> {
    match name {
        "OKTA_CLIENT_SECRET" => Some("okta-secret #1: x".to_string()),
        "OKTA_API_TOKEN" => Some("00api-token".to_string()),
        "PORTCULLIS_SCIM_SECRET" => Some("scim-secret-0123456789".to_string()),
        "PG_PASSWORD" => Some("pw".to_string()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str("portcullis.yaml", text, Path::new("/etc/portcullis"), &env)
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected valid config, got:\n{e}"),
    }
}

/// The error lines, rendered as users see them.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = ok(BASE);
    assert_eq!(c.auth_domain, "auth.example.com");
    assert_eq!(c.listen.len(), 1);
    assert_eq!(c.listen[0].addr, "0.0.0.0:8443".parse().unwrap());
    let tls = c.listen[0].tls.as_ref().expect("tls");
    assert_eq!(tls.cert, PathBuf::from("/etc/portcullis/tls.crt"));
    assert_eq!(tls.key, PathBuf::from("/etc/tls.key"));
    assert_eq!(c.scheme(), "https");
    assert!(c.threads >= 1);
    assert_eq!(c.metrics, None);
    assert_eq!(c.store, "sqlite:///etc/portcullis/portcullis.db");
    assert_eq!(c.key_dir, PathBuf::from("/etc/portcullis/keys"));
    assert_eq!(c.policies, PathBuf::from("/etc/portcullis/policies/"));
    assert_eq!(c.session.cookie_name, "CF_Authorization");
    assert_eq!(c.session.duration, Duration::from_secs(86_400));
    assert_eq!(c.endpoint_prefix, "/cdn-cgi/access");
    assert_eq!(c.scim_path, "/scim/v2");
    assert_eq!(c.headers.assertion, "Cf-Access-Jwt-Assertion");
    assert_eq!(c.headers.email, "Cf-Access-Authenticated-User-Email");
    assert_eq!(c.headers.groups.as_deref(), Some("X-Portcullis-Groups"));
    assert!(!c.headers.forward_claims);
    assert_eq!(c.cache.max_entries, 100_000);
    assert_eq!(c.cache.ttl, Duration::from_secs(300));
    assert_eq!(c.grace_period_seconds, 5);
    assert_eq!(c.upstream_health.interval, Duration::from_secs(5));
    assert_eq!(c.upstream_health.timeout, Duration::from_secs(2));
    assert!(c.identity_providers.is_empty());
}

#[test]
fn optional_keys_override_defaults() {
    let c = ok(&format!(
        "{BASE}threads: 3
metrics: {{ listen: 127.0.0.1:9464 }}
store: sqlite://state/db.sqlite?mode=rwc
key_dir: /var/lib/portcullis/keys
session: {{ cookie_name: MySess, duration: 1h30m }}
endpoint_prefix: /_auth
scim_path: /scim
headers: {{ assertion: X-Jwt, email: X-Email, groups: X-Groups, forward_claims: true }}
cache: {{ max_entries: 10, ttl: 90s }}
grace_period_seconds: 30
"
    ));
    assert_eq!(c.threads, 3);
    assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.store, "sqlite:///etc/portcullis/state/db.sqlite?mode=rwc");
    assert_eq!(c.key_dir, PathBuf::from("/var/lib/portcullis/keys"));
    assert_eq!(c.session.cookie_name, "MySess");
    assert_eq!(c.session.duration, Duration::from_secs(5_400));
    assert_eq!(c.endpoint_prefix, "/_auth");
    assert_eq!(c.scim_path, "/scim");
    assert_eq!(c.headers.assertion, "X-Jwt");
    assert_eq!(c.headers.groups.as_deref(), Some("X-Groups"));
    assert!(c.headers.forward_claims);
    assert_eq!(c.cache.max_entries, 10);
    assert_eq!(c.cache.ttl, Duration::from_secs(90));
    assert_eq!(c.grace_period_seconds, 30);
}

#[test]
fn plain_http_listener_means_http_scheme() {
    let c = ok("listen: [{ addr: '127.0.0.1:8080' }]\nauth_domain: auth.localhost:8080\npolicies: p.yaml\n");
    assert_eq!(c.scheme(), "http");
    assert_eq!(c.auth_domain, "auth.localhost:8080");
}

#[test]
fn groups_header_can_be_turned_off() {
    for off in ["false", "null", "~"] {
        let c = ok(&format!("{BASE}headers: {{ groups: {off} }}\n"));
        assert_eq!(c.headers.groups, None, "{off}");
    }
}

#[test]
fn store_urls_resolve() {
    let c = ok(&format!("{BASE}store: sqlite:///var/lib/p.db\n"));
    assert_eq!(c.store, "sqlite:///var/lib/p.db");
}

#[test]
fn postgres_store_is_refused_at_check_without_echoing_the_url() {
    let errs = errors(&format!(
        "{BASE}store: postgres://u:${{PG_PASSWORD}}@db.example/portcullis\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .contains("store: the PostgreSQL store (fleet mode) is not available in this version"),
        "{}",
        errs[0]
    );
    assert!(!errs[0].contains("db.example"), "{}", errs[0]);
}

#[test]
fn env_expansion_applies_to_strings_and_never_parses_yaml() {
    let c = ok(&format!(
        "{BASE}identity_providers:
  - name: okta
    type: okta
    config:
      client_id: abc
      client_secret: ${{OKTA_CLIENT_SECRET}}
      okta_account: https://dev-1.okta.com
"
    ));
    assert_eq!(c.identity_providers[0].client_secret, "okta-secret #1: x");
}

#[test]
fn unset_env_var_is_an_error_naming_it() {
    let errs = errors(&format!("{BASE}key_dir: ${{NOT_SET}}/keys\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:10: key_dir: environment variable `NOT_SET` is not set"]
    );
}

#[test]
fn yaml_okta_idp_builds_issuer_from_account_and_server() {
    let c = ok(&format!(
        "{BASE}identity_providers:
  - name: my example idp
    type: okta
    config:
      client_id: '0oa123'
      client_secret: ${{OKTA_CLIENT_SECRET}}
      okta_account: https://dev-abc123.oktapreview.com/
      authorization_server_id: default
      api_token: ${{OKTA_API_TOKEN}}
      claims: [department]
      email_claim_name: email
      pkce_enabled: true
    scim_config:
      enabled: true
      secret: ${{PORTCULLIS_SCIM_SECRET}}
      user_deprovision: true
      seat_deprovision: true
      group_member_deprovision: false
"
    ));
    let idp = &c.identity_providers[0];
    assert_eq!(idp.name, "my example idp");
    assert_eq!(idp.kind, IdpKind::Okta);
    assert_eq!(idp.client_id, "0oa123");
    assert_eq!(
        idp.okta_account.as_deref(),
        Some("https://dev-abc123.oktapreview.com")
    );
    assert_eq!(
        idp.issuer,
        "https://dev-abc123.oktapreview.com/oauth2/default"
    );
    assert_eq!(idp.authorization_server_id.as_deref(), Some("default"));
    assert_eq!(idp.api_token.as_deref(), Some("00api-token"));
    assert_eq!(idp.claims, ["department"]);
    assert_eq!(idp.email_claim_name, "email");
    assert!(idp.pkce_enabled);
    assert_eq!(idp.scopes, ["openid", "email", "profile", "groups"]);
    let scim = idp.scim.as_ref().expect("scim");
    assert!(scim.enabled && scim.user_deprovision && scim.seat_deprovision);
    assert!(!scim.group_member_deprovision);
    assert_eq!(scim.secret.as_deref(), Some("scim-secret-0123456789"));
}

#[test]
fn okta_org_server_issuer_is_the_account() {
    let c = ok(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: okta, config: {{ client_id: a, client_secret: b, okta_account: 'https://x.okta.com' }} }}
"
    ));
    let idp = &c.identity_providers[0];
    assert_eq!(idp.issuer, "https://x.okta.com");
    assert!(!idp.pkce_enabled);
    assert_eq!(idp.email_claim_name, "email");
    assert!(idp.scim.is_none());
}

#[test]
fn json_shaped_config_and_idp_are_accepted() {
    let text = r#"{
  "listen": [{"addr": "127.0.0.1:8080"}],
  "auth_domain": "auth.localhost:8080",
  "policies": "policies",
  "identity_providers": [
    {
      "name": "Okta",
      "type": "okta",
      "config": {
        "client_id": "0oa1",
        "client_secret": "${OKTA_CLIENT_SECRET}",
        "okta_account": "https://dev-1.okta.com",
        "authorization_server_id": "aus1",
        "claims": ["department", "title"],
        "email_claim_name": "email",
        "pkce_enabled": true
      },
      "scim_config": {"enabled": true, "user_deprovision": true, "seat_deprovision": false, "group_member_deprovision": true}
    },
    {
      "name": "Other",
      "type": "oidc",
      "config": {"client_id": "c", "client_secret": "s", "issuer": "https://login.example.org/realm/", "scopes": ["openid", "email"]}
    }
  ]
}"#;
    let c = ok(text);
    assert_eq!(c.identity_providers.len(), 2);
    let okta = &c.identity_providers[0];
    assert_eq!(okta.issuer, "https://dev-1.okta.com/oauth2/aus1");
    assert_eq!(okta.claims, ["department", "title"]);
    assert_eq!(okta.scim.as_ref().map(|s| s.secret.is_none()), Some(true));
    let oidc = &c.identity_providers[1];
    assert_eq!(oidc.kind, IdpKind::Oidc);
    assert_eq!(oidc.issuer, "https://login.example.org/realm/");
    assert_eq!(oidc.okta_account, None);
    assert_eq!(oidc.scopes, ["openid", "email"]);
}

#[test]
fn unknown_key_suggests_a_near_miss() {
    let errs = errors(&format!("{BASE}sesion: {{ duration: 1h }}\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:1: sesion: unknown key `sesion`, did you mean `session`?"]
    );
}

#[test]
fn unknown_nested_idp_key_names_its_path() {
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - name: o
    type: okta
    config: {{ client_id: a, client_secret: b, okta_acount: 'https://x.okta.com' }}
"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:9:47: identity_providers[0].config.okta_acount: unknown key `okta_acount`, did you mean `okta_account`?"]
    );
}

#[test]
fn unknown_idp_type_suggests() {
    let errs = errors(&format!(
        "{BASE}identity_providers:\n  - {{ name: o, type: otka, config: {{}} }}\n"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:7:22: identity_providers[0].type: unknown value `otka`, did you mean `okta`?"]
    );
}

#[test]
fn missing_required_keys_are_all_reported() {
    let errs = errors("threads: 2\n");
    assert_eq!(
        errs,
        [
            "portcullis.yaml:1:1: listen: required key is missing",
            "portcullis.yaml:1:1: auth_domain: required key is missing",
            "portcullis.yaml:1:1: policies: required key is missing",
        ]
    );
}

#[test]
fn validation_errors_are_all_collected_with_exact_messages() {
    let text = "\
listen:
  - addr: localhost:80
  - tls: { cert: a }
auth_domain: https://auth.example.com
threads: 0
metrics: { listen: 0.0.0.0:8443 }
store: mysql://u:secret@h/db
session: { cookie_name: 'bad name', duration: 10 }
endpoint_prefix: /cdn-cgi/access/
headers: { email: 'X Email' }
cache: { max_entries: 0, ttl: 0s }
grace_period_seconds: 99999
policies: ''
";
    assert_eq!(
        errors(text),
        [
            "portcullis.yaml:2:11: listen[0].addr: invalid address `localhost:80`: expected ip:port, e.g. `0.0.0.0:8443` or `[::]:8443`",
            "portcullis.yaml:3:5: listen[1].addr: required key is missing",
            "portcullis.yaml:3:10: listen[1].tls.key: required key is missing",
            "portcullis.yaml:4:14: auth_domain: `https://auth.example.com` is a URL; expected a host name with an optional port, e.g. `auth.example.com`",
            "portcullis.yaml:5:10: threads: 0 is out of range: expected 1 to 1024",
            "portcullis.yaml:7:8: store: unsupported store `mysql:…`: expected `sqlite://PATH`",
            "portcullis.yaml:8:25: session.cookie_name: invalid cookie name `bad name`: use letters, digits and `-`, `_`, `.`",
            "portcullis.yaml:8:47: session.duration: invalid duration `10`: expected a number with a unit (d, h, m, s), e.g. `24h`, `1h30m`, `90s`",
            "portcullis.yaml:9:18: endpoint_prefix: `/cdn-cgi/access/` must not end with `/`",
            "portcullis.yaml:10:19: headers.email: invalid header name `X Email`",
            "portcullis.yaml:11:23: cache.max_entries: must be at least 1",
            "portcullis.yaml:11:31: cache.ttl: duration must be greater than zero",
            "portcullis.yaml:12:23: grace_period_seconds: 99999 is out of range: expected 0 to 3600",
            "portcullis.yaml:13:11: policies: must not be empty",
        ]
    );
}

#[test]
fn metrics_on_a_proxy_listener_is_refused() {
    let errs = errors(&format!("{BASE}metrics: {{ listen: 127.0.0.1:8443 }}\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:20: metrics.listen: 127.0.0.1:8443 clashes with a proxy listener: metrics are never served on a public listener"]
    );
}

#[test]
fn store_errors_never_echo_the_url() {
    let errs = errors(&format!("{BASE}store: mysql://user:hunter2@db/x\n"));
    assert!(!errs[0].contains("hunter2"), "{}", errs[0]);
}

#[test]
fn idp_errors_per_type() {
    let text = format!(
        "{BASE}identity_providers:
  - name: a
    type: okta
    config: {{ client_id: x, issuer: 'https://i.example.com' }}
  - name: b
    type: oidc
    config: {{ client_id: x, client_secret: y, okta_account: 'https://x.okta.com', issuer: 'http://idp.example.com' }}
  - name: c
    type: okta
    config: {{ client_id: x, client_secret: y, okta_account: 'https://x.okta.com/oauth2/default', scopes: [email, 'a b'] }}
  - name: A
    type: oidc
    config: {{ client_id: x, client_secret: y, issuer: 'http://127.0.0.1:9000/oauth2/default' }}
    scim_config: {{ enabled: true, secret: short }}
"
    );
    assert_eq!(
        errors(&text),
        [
            "portcullis.yaml:9:13: identity_providers[0].config.client_secret: required key is missing",
            "portcullis.yaml:9:13: identity_providers[0].config.okta_account: required key is missing",
            "portcullis.yaml:9:37: identity_providers[0].config.issuer: `issuer` is only for type `oidc`; for `okta` set `okta_account` (and `authorization_server_id`)",
            "portcullis.yaml:12:61: identity_providers[1].config.okta_account: `okta_account` is only for type `okta`",
            "portcullis.yaml:12:91: identity_providers[1].config.issuer: `http://idp.example.com` must be an https:// URL (http:// only for loopback hosts)",
            "portcullis.yaml:15:61: identity_providers[2].config.okta_account: `https://x.okta.com/oauth2/default` must be the Okta org URL without a path, e.g. `https://dev-123456.okta.com`",
            "portcullis.yaml:15:114: identity_providers[2].config.scopes[1]: scope `a b` must not contain spaces: list each scope separately",
            "portcullis.yaml:19:43: identity_providers[3].scim_config.secret: too short: use at least 16 characters (or omit it to generate one)",
        ]
    );
}

#[test]
fn duplicate_idp_names_are_refused() {
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com' }} }}
  - {{ name: O, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com' }} }}
"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:8:13: identity_providers[1].name: duplicate identity provider name `O`"]
    );
}

#[test]
fn scopes_must_include_openid() {
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com', scopes: [email] }} }}
"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:7:111: identity_providers[0].config.scopes: must include `openid`"]
    );
}

#[test]
fn type_errors_name_the_key() {
    let errs = errors(&format!("{BASE}threads: many\n"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("portcullis.yaml:6:10: threads: "),
        "{}",
        errs[0]
    );
}

#[test]
fn empty_file_is_an_error() {
    assert_eq!(
        errors("# nothing here\n"),
        ["portcullis.yaml:1:1: (file): config file is empty"]
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let e = load_file(Path::new("/nonexistent/portcullis.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/portcullis.yaml:1:1: (file): cannot read config file: "),
        "{e}"
    );
}

#[test]
fn example_config_in_conf_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let text = std::fs::read_to_string(dir.join("portcullis.yaml")).expect("conf/portcullis.yaml");
    let c = match parse_str("conf/portcullis.yaml", &text, &dir, &env) {
        Ok(c) => c,
        Err(e) => panic!("conf/portcullis.yaml:\n{e}"),
    };
    assert_eq!(c.policies, dir.join("policies/"));
    assert_eq!(c.identity_providers[0].kind, IdpKind::Okta);
    assert_eq!(c.identity_providers[0].client_secret, "okta-secret #1: x");
}

#[test]
fn header_names_must_differ() {
    let errs = errors(&format!("{BASE}headers: {{ email: x-a, groups: X-A }}\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:10: headers: header name `X-A` is used twice"]
    );
}

#[test]
fn scim_path_must_not_overlap_the_endpoint_prefix() {
    let errs = errors(&format!(
        "{BASE}endpoint_prefix: /auth\nscim_path: /auth/scim\n"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:7:12: scim_path: `/auth/scim` overlaps endpoint_prefix `/auth`"]
    );
}

#[test]
fn two_idps_may_not_share_a_scim_secret() {
    let idp = |name: &str| {
        format!(
            "  - {{ name: {name}, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com' }}, scim_config: {{ enabled: true, secret: '${{PORTCULLIS_SCIM_SECRET}}' }} }}\n"
        )
    };
    let errs = errors(&format!(
        "{BASE}identity_providers:\n{}{}",
        idp("one"),
        idp("two")
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:8:145: identity_providers[1].scim_config.secret: same SCIM secret as identity provider `one`: each provider needs its own"]
    );
}

#[test]
fn upstream_health_settings_are_read_and_checked() {
    let c = ok(&format!(
        "{BASE}upstream_health: {{ interval: 30s, timeout: 3s }}\n"
    ));
    assert_eq!(c.upstream_health.interval, Duration::from_secs(30));
    assert_eq!(c.upstream_health.timeout, Duration::from_secs(3));
    let errs = errors(&format!("{BASE}upstream_health: {{ interval: 0s }}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("upstream_health.interval: duration must be greater than zero"),
        "{}",
        errs[0]
    );
    let errs = errors(&format!(
        "{BASE}upstream_health: {{ timeout: 9300000000000000000s, interval: 25h }}\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    // In file order: `timeout` comes first on the line.
    assert!(
        errs[1].contains("upstream_health.interval: must be at most 24h"),
        "{errs:?}"
    );
    assert!(
        errs[0].contains("upstream_health.timeout: must be at most 5m"),
        "{errs:?}"
    );
}
