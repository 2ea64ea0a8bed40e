//! Config loading tests: defaults, env expansion, IdP shapes, and the exact
//! `file:line:col: key: message` lines users see.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    load_file, parse_str, AccessLogConfig, AccessLogFormat, AccessLogTarget, Config, ConfigErrors,
    IdpKind, Public, Scheme, StoreOptions,
};

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
    assert_eq!(
        c.upgrade_sock,
        PathBuf::from("/etc/portcullis/portcullis-upgrade.sock")
    );
}

#[test]
fn upgrade_sock_resolves_against_the_config_folder() {
    let c = ok(&format!("{BASE}upgrade_sock: run/upgrade.sock\n"));
    assert_eq!(
        c.upgrade_sock,
        PathBuf::from("/etc/portcullis/run/upgrade.sock")
    );
    let c = ok(&format!(
        "{BASE}upgrade_sock: /run/portcullis/upgrade.sock\n"
    ));
    assert_eq!(
        c.upgrade_sock,
        PathBuf::from("/run/portcullis/upgrade.sock")
    );
}

#[test]
fn upgrade_sock_must_fit_a_unix_socket_path() {
    let long = format!("/run/{}/upgrade.sock", "d".repeat(100));
    assert_eq!(
        errors(&format!("{BASE}upgrade_sock: {long}\n")),
        ["portcullis.yaml:6:15: upgrade_sock: the path is 118 bytes once resolved; a Unix socket path is at most 107"]
    );
    assert_eq!(
        errors(&format!("{BASE}upgrade_sock: /run/portcullis/\n")),
        ["portcullis.yaml:6:15: upgrade_sock: must name a socket file, not a folder"]
    );
    assert_eq!(
        errors(&format!("{BASE}upgrade_sock: ''\n")),
        ["portcullis.yaml:6:15: upgrade_sock: must not be empty"]
    );
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
            "portcullis.yaml:7:8: store: unsupported store `mysql:…`: expected `sqlite://PATH` or `postgres://…`",
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
            "portcullis.yaml:9:13: identity_providers[0].config.client_secret: required key is missing (or set `client_secret_file`)",
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

/// `BASE` with a plain-HTTP listener, as behind a TLS-terminating balancer.
const PLAIN: &str = "\
listen: [{ addr: '10.0.0.5:8443' }]
auth_domain: auth.example.com
policies: policies/
";

#[test]
fn store_short_form_takes_a_postgres_url() {
    for url in [
        "postgres://portcullis:${PG_PASSWORD}@db.internal:5432/portcullis?sslmode=require",
        "postgresql://portcullis:${PG_PASSWORD}@db.internal:5432/portcullis?sslmode=require",
    ] {
        let c = ok(&format!("{BASE}threads: 4\nstore: {url}\n"));
        assert_eq!(c.store, url.replace("${PG_PASSWORD}", "pw"));
        assert_eq!(
            c.store_options,
            StoreOptions {
                pool_size: 8,
                outage_grace: Duration::from_secs(30)
            }
        );
    }
}

#[test]
fn store_map_form_reads_the_fleet_settings() {
    let c = ok(&format!(
        "{BASE}store:
  url: postgres://portcullis:${{PG_PASSWORD}}@db.internal:5432/portcullis?sslmode=require
  pool_size: 16
  outage_grace: 1m30s
"
    ));
    assert_eq!(
        c.store,
        "postgres://portcullis:pw@db.internal:5432/portcullis?sslmode=require"
    );
    assert_eq!(c.store_options.pool_size, 16);
    assert_eq!(c.store_options.outage_grace, Duration::from_secs(90));
}

#[test]
fn store_map_form_defaults() {
    // The pool defaults to 2 x threads, capped at the largest pool.
    for (threads, pool) in [(1, 2), (3, 6), (1024, 1000)] {
        let c = ok(&format!(
            "{BASE}threads: {threads}\nstore: {{ url: 'postgres://db.internal/portcullis' }}\n"
        ));
        assert_eq!(c.store, "postgres://db.internal/portcullis");
        assert_eq!(c.store_options.pool_size, pool, "threads {threads}");
        assert_eq!(c.store_options.outage_grace, Duration::from_secs(30));
    }
    // A SQLite URL in the map form resolves as in the short form.
    let c = ok(&format!("{BASE}store: {{ url: sqlite://state.db }}\n"));
    assert_eq!(c.store, "sqlite:///etc/portcullis/state.db");
    // Neither form given: the default SQLite file; the options still have
    // their defaults.
    let c = ok(&format!("{BASE}threads: 2\n"));
    assert_eq!(c.store, "sqlite:///etc/portcullis/portcullis.db");
    assert_eq!(c.store_options.pool_size, 4);
}

#[test]
fn store_errors_are_located_and_never_echo_the_url() {
    let cases: &[(&str, &str)] = &[
        (
            "store: postgres://u:hunter2@db.internal:99999/p\n",
            "portcullis.yaml:6:8: store: invalid PostgreSQL URL (invalid port number): expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`",
        ),
        (
            "store: 'postgresql://u:hunter2@/p'\n",
            "portcullis.yaml:6:8: store: invalid PostgreSQL URL (empty host): expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`",
        ),
        (
            "store: 'postgres:///p?password=hunter2'\n",
            "portcullis.yaml:6:8: store: PostgreSQL URL has no host: expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`",
        ),
        (
            "store:\n  url: postgres:hunter2\n",
            "portcullis.yaml:7:8: store.url: PostgreSQL URL has no host: expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`",
        ),
        (
            "store:\n  url: postgres://u:hunter2@db.internal/p\n  pool_size: 0\n",
            "portcullis.yaml:8:14: store.pool_size: 0 is out of range: expected 1 to 1000",
        ),
        (
            "store:\n  url: postgres://u:hunter2@db.internal/p\n  pool_size: 1001\n",
            "portcullis.yaml:8:14: store.pool_size: 1001 is out of range: expected 1 to 1000",
        ),
        (
            "store: { url: 'postgres://u:hunter2@db.internal/p', outage_grace: 0s }\n",
            "portcullis.yaml:6:67: store.outage_grace: duration must be greater than zero",
        ),
        (
            "store: { url: 'postgres://u:hunter2@db.internal/p', outage_grace: 25h }\n",
            "portcullis.yaml:6:67: store.outage_grace: must be at most 24h",
        ),
        (
            "store: { url: 'postgres://u:hunter2@db.internal/p', outage_grace: soon }\n",
            "portcullis.yaml:6:67: store.outage_grace: invalid duration `soon`: expected a number with a unit (d, h, m, s), e.g. `24h`, `1h30m`, `90s`",
        ),
        (
            "store:\n  pool_size: 4\n",
            "portcullis.yaml:7:3: store.url: required key is missing (or set `url_file`)",
        ),
        (
            "store:\n  url: postgres://u:hunter2@db.internal/p\n  pool_sise: 4\n",
            "portcullis.yaml:8:3: store.pool_sise: unknown key `pool_sise`, did you mean `pool_size`?",
        ),
        (
            "store:\n  url: sqlite://state.db\n  pool_size: 4\n",
            "portcullis.yaml:8:14: store.pool_size: only used with a PostgreSQL store (`postgres://…`); remove it",
        ),
        (
            "store: { url: sqlite://state.db, outage_grace: 30s }\n",
            "portcullis.yaml:6:48: store.outage_grace: only used with a PostgreSQL store (`postgres://…`); remove it",
        ),
        (
            "store: postgres://u:${PG_PASSWORD}@db.internal/p\nkey_dir: /var/lib/portcullis/keys\n",
            "portcullis.yaml:7:10: key_dir: not used with a PostgreSQL store (signing keys live in the database); remove it",
        ),
        (
            "store: { url: 'postgres://u:${NO_SUCH_VAR}@db.internal/p' }\n",
            "portcullis.yaml:6:15: store.url: environment variable `NO_SUCH_VAR` is not set",
        ),
    ];
    for (yaml, want) in cases {
        let errs = errors(&format!("{BASE}{yaml}"));
        assert_eq!(errs, [*want], "{yaml}");
        assert!(!errs[0].contains("hunter2"), "{}", errs[0]);
    }
}

#[test]
fn store_of_the_wrong_type_names_both_forms() {
    let errs = errors(&format!("{BASE}store: [a, b]\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:1: store: expected a store URL or a map with `url` (or `url_file`), `pool_size`, `outage_grace`, found sequence"]
    );
}

#[test]
fn key_dir_stays_for_sqlite_and_is_unused_with_postgres() {
    let c = ok(&format!("{BASE}store: postgres://db.internal/p\n"));
    assert_eq!(c.key_dir, PathBuf::from("/etc/portcullis/keys"));
    let c = ok(&format!(
        "{BASE}store: {{ url: sqlite://s.db }}\nkey_dir: /k\n"
    ));
    assert_eq!(c.key_dir, PathBuf::from("/k"));
}

#[test]
fn public_scheme_and_port_are_read() {
    let c = ok(&format!("{PLAIN}public: {{ scheme: https, port: 443 }}\n"));
    assert_eq!(
        c.public,
        Some(Public {
            scheme: Some(Scheme::Https),
            port: Some(443)
        })
    );
    let c = ok(&format!("{PLAIN}public: {{ port: 8080 }}\n"));
    assert_eq!(
        c.public,
        Some(Public {
            scheme: None,
            port: Some(8080)
        })
    );
    assert_eq!(ok(PLAIN).public, None);
}

#[test]
fn public_errors_are_located() {
    let cases: &[(&str, &[&str])] = &[
        (
            "public: { scheme: htps, port: 0 }\n",
            &[
                "portcullis.yaml:4:19: public.scheme: unknown scheme `htps`: expected `http` or `https`",
                "portcullis.yaml:4:31: public.port: 0 is out of range: expected 1 to 65535",
            ],
        ),
        (
            "public:\n  port: 65536\n",
            &["portcullis.yaml:5:9: public.port: 65536 is out of range: expected 1 to 65535"],
        ),
        (
            "public:\n  schema: https\n",
            &["portcullis.yaml:5:3: public.schema: unknown key `schema`, did you mean `scheme`?"],
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(errors(&format!("{PLAIN}{yaml}")), *want, "{yaml}");
    }
}

#[test]
fn auth_domain_port_must_agree_with_public_port() {
    let errs = errors(
        "listen: [{ addr: '10.0.0.5:8443' }]\nauth_domain: auth.example.com:8443\npolicies: p\npublic: { scheme: https, port: 443 }\n",
    );
    assert_eq!(
        errs,
        ["portcullis.yaml:2:14: auth_domain: port 8443 differs from public.port 443: browsers reach the auth domain on the public port; write auth_domain without a port"]
    );
    let c = ok(
        "listen: [{ addr: '10.0.0.5:8443' }]\nauth_domain: auth.example.com:8443\npolicies: p\npublic: { scheme: https, port: 8443 }\n",
    );
    assert_eq!(c.auth_origin(), "https://auth.example.com:8443");
}

#[test]
fn scheme_and_auth_origin_honour_public() {
    let tls = BASE;
    let cases: &[(&str, &str, &str, &str)] = &[
        // (listeners, public, scheme, auth origin)
        (PLAIN, "", "http", "http://auth.example.com"),
        (tls, "", "https", "https://auth.example.com"),
        (
            PLAIN,
            "public: { scheme: https }\n",
            "https",
            "https://auth.example.com",
        ),
        (
            PLAIN,
            "public: { scheme: https, port: 443 }\n",
            "https",
            "https://auth.example.com",
        ),
        (
            PLAIN,
            "public: { scheme: https, port: 4443 }\n",
            "https",
            "https://auth.example.com:4443",
        ),
        (
            PLAIN,
            "public: { scheme: http, port: 80 }\n",
            "http",
            "http://auth.example.com",
        ),
        (
            PLAIN,
            "public: { port: 8080 }\n",
            "http",
            "http://auth.example.com:8080",
        ),
        // 443 is not http's default port, so it shows.
        (
            PLAIN,
            "public: { port: 443 }\n",
            "http",
            "http://auth.example.com:443",
        ),
        (
            tls,
            "public: { port: 443 }\n",
            "https",
            "https://auth.example.com",
        ),
        (
            tls,
            "public: { scheme: http }\n",
            "http",
            "http://auth.example.com",
        ),
    ];
    for (listeners, public, scheme, origin) in cases {
        let c = ok(&format!("{listeners}{public}"));
        assert_eq!(c.scheme(), *scheme, "{public}");
        assert_eq!(c.auth_origin(), *origin, "{public}");
    }
    // An auth_domain with a port is used as written (today's behaviour).
    let c = ok("listen: [{ addr: '127.0.0.1:8080' }]\nauth_domain: auth.localhost:8080\npolicies: p\npublic: { scheme: https }\n");
    assert_eq!(c.auth_origin(), "https://auth.localhost:8080");
}

#[test]
fn redirect_ports_follow_public_port() {
    // Without `public.port`: the listeners' ports and the auth domain's.
    let c = ok(
        "listen: [{ addr: '10.0.0.5:8443' }]\nauth_domain: auth.example.com:9443\npolicies: p\n",
    );
    assert!(c.redirect_port_allowed(8443));
    assert!(c.redirect_port_allowed(9443));
    assert!(!c.redirect_port_allowed(443));
    // With it: that port only, never the inside listener's.
    let c = ok(&format!("{PLAIN}public: {{ scheme: https, port: 4443 }}\n"));
    assert!(c.redirect_port_allowed(4443));
    assert!(!c.redirect_port_allowed(8443));
    let c = ok(&format!("{PLAIN}public: {{ scheme: https, port: 443 }}\n"));
    assert!(!c.redirect_port_allowed(8443));
}

#[test]
fn host_ports_follow_public_port_else_the_arrival_port() {
    // Without `public.port`: the port the request arrived on, or any
    // listener's when it is not known.
    let c = ok("listen: [{ addr: '10.0.0.5:8443' }, { addr: '10.0.0.5:8080' }]\nauth_domain: auth.example.com\npolicies: p\n");
    assert!(c.host_port_expected(8443, Some(8443)));
    assert!(!c.host_port_expected(8080, Some(8443)));
    assert!(!c.host_port_expected(1, Some(8443)));
    assert!(c.host_port_expected(8080, None));
    assert!(!c.host_port_expected(1, None));
    // With it: that port only, never the inside listener's.
    let c = ok(&format!("{PLAIN}public: {{ scheme: https, port: 443 }}\n"));
    assert!(c.host_port_expected(443, Some(8080)));
    assert!(!c.host_port_expected(8080, Some(8080)));
}

#[test]
fn trusted_proxies_take_cidrs_and_addresses() {
    let c = ok(&format!(
        "{BASE}trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"fd00::/8\"]\n"
    ));
    let shown: Vec<String> = c.trusted_proxies.iter().map(|r| r.to_string()).collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
    assert!(ok(BASE).trusted_proxies.is_empty());
}

#[test]
fn trusted_proxies_errors_name_the_entry() {
    let errs = errors(&format!(
        "{BASE}trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("portcullis.yaml:6:31: trusted_proxies[1]: `10.0.0.0/33` is not"),
        "{}",
        errs[0]
    );
}

#[test]
fn proxy_protocol_is_off_unless_set() {
    let c = ok(&format!(
        "{BASE}trusted_proxies: [10.0.0.0/8]\nthreads: 1\n"
    ));
    assert!(!c.listen[0].proxy_protocol);
    let c = ok("\
listen:
  - addr: 0.0.0.0:8443
    tls: { cert: tls.crt, key: /etc/tls.key }
    proxy_protocol: true
  - addr: 0.0.0.0:8080
auth_domain: auth.example.com
policies: policies/
trusted_proxies: [10.0.0.0/8]
");
    assert!(c.listen[0].proxy_protocol);
    assert!(!c.listen[1].proxy_protocol);
}

#[test]
fn proxy_protocol_without_trusted_proxies_is_an_error_at_the_key() {
    let text = "\
listen:
  - addr: 0.0.0.0:8080
  - addr: 0.0.0.0:8443
    proxy_protocol: true
auth_domain: auth.example.com
policies: policies/
";
    assert_eq!(
        errors(text),
        ["portcullis.yaml:4:21: listen[1].proxy_protocol: requires trusted_proxies: PROXY headers are accepted only from those peers (e.g. trusted_proxies: [10.0.0.0/8])"]
    );
    let empty = format!("{text}trusted_proxies: []\n");
    assert_eq!(errors(&empty).len(), 1, "an empty list trusts no one");
    // `false` needs nothing.
    ok(&text.replace("proxy_protocol: true", "proxy_protocol: false"));
}

#[test]
fn access_log_is_off_unless_configured() {
    assert_eq!(ok(BASE).access_log, None);
}

#[test]
fn access_log_file_is_resolved_and_defaults_to_json() {
    let c = ok(&format!("{BASE}access_log: {{ path: log/access.log }}\n"));
    assert_eq!(
        c.access_log,
        Some(AccessLogConfig {
            target: AccessLogTarget::File(PathBuf::from("/etc/portcullis/log/access.log")),
            format: AccessLogFormat::Json,
        })
    );
}

#[test]
fn access_log_dash_is_stdout_and_text_is_a_format() {
    let c = ok(&format!(
        "{BASE}access_log:\n  path: \"-\"\n  format: text\n"
    ));
    assert_eq!(
        c.access_log,
        Some(AccessLogConfig {
            target: AccessLogTarget::Stdout,
            format: AccessLogFormat::Text,
        })
    );
}

#[test]
fn access_log_errors_name_the_key_and_place() {
    let errs = errors(&format!(
        "{BASE}access_log: {{ path: /var/log/a.log, format: xml }}\n"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:45: access_log.format: unknown format `xml`: expected `json` or `text`"]
    );
    let errs = errors(&format!("{BASE}access_log: {{ format: json }}\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:13: access_log.path: required key is missing"]
    );
    let errs = errors(&format!("{BASE}access_log: {{ path: \"\" }}\n"));
    assert_eq!(
        errs,
        ["portcullis.yaml:6:21: access_log.path: must not be empty"]
    );
    let errs = errors(&format!("{BASE}access_log: {{ file: a.log }}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("portcullis.yaml:6:"), "{}", errs[0]);
    assert!(errs[0].contains("file"), "{}", errs[0]);
}

// `…_file` twins of the secret keys.
mod secret_files;
